"""Reservation verbs over one SCSI device (an ``SgDevice``, or a fake with
the same ``execute``/``reset`` coroutines): the port the executors use.

Two implementations with the same verbs, so the arbitration executor and
the aggregate executor never branch on the mode:

- ``Scsi2Reservation``: RESERVE(6)/RELEASE(6) (SPC-2 r20 7.22, 7.17) and a
  LUN or target reset to break another initiator's reservation (SPC-2 r20
  5.5.1: a reset releases SPC-2 reservations).  This is the Microsoft
  cluster design (KB 309186).
- ``PrReservation``: SCSI-3 persistent reservations (SPC-3 r23 5.6, SPC-4
  r17 5.7): each node registers its own key, the owner holds a reservation
  (WRITE EXCLUSIVE - REGISTRANTS ONLY on the quorum), a taker PREEMPTs the
  other node's key.  Fencing is immediate: a preempted node's writes fail.

Each verb returns a ``Verdict`` (OK / CONFLICT / FAILED) plus a message;
nothing here raises for a SCSI outcome.
"""

import enum
import logging
from dataclasses import dataclass

from clusdisk.scsi import cdb, pages
from clusdisk.scsi.cdb import PrType
from clusdisk.scsi.errors import ScsiError
from clusdisk.scsi.sense import OutcomeKind
from clusdisk.scsi.sgio import ResetKind

log = logging.getLogger("clusdisk.reservations")


class Verdict(enum.Enum):
    OK = "ok"
    CONFLICT = "conflict"      # another initiator holds it, or we were fenced
    FAILED = "failed"          # the device did not answer usefully


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


OK = Answer(Verdict.OK)


def _answer(result, what: str) -> Answer:
    kind = result.outcome.kind
    if kind is OutcomeKind.GOOD:
        return OK
    if kind is OutcomeKind.RESERVATION_CONFLICT:
        return Answer(Verdict.CONFLICT, f"{what}: reservation conflict")
    return Answer(Verdict.FAILED, f"{what}: {result.outcome.describe()}")


@dataclass(frozen=True)
class ReservationState:
    """What ``probe`` saw, for ``clusdisk scan`` and the control socket."""

    mode: str
    summary: str
    holder_key: int | None = None
    registered_keys: tuple[int, ...] = ()


class Scsi2Reservation:
    """SPC-2 reservations: renew is RESERVE again (the owner re-reserves
    every renew period, which restores the reservation after a challenger's
    reset), break is a reset."""

    mode = "scsi2"

    def __init__(self, device, reset_kind: ResetKind = ResetKind.DEVICE) -> None:
        self.device = device
        self.reset_kind = reset_kind

    async def register(self) -> Answer:
        return OK

    async def reserve(self) -> Answer:
        return _answer(await self.device.execute(cdb.reserve_6()), "RESERVE(6)")

    async def renew(self) -> Answer:
        return await self.reserve()

    async def release(self) -> Answer:
        return _answer(await self.device.execute(cdb.release_6()), "RELEASE(6)")

    async def reset(self) -> Answer:
        try:
            await self.device.reset(self.reset_kind)
        except ScsiError as exc:
            return Answer(Verdict.FAILED, str(exc))
        return OK

    async def preempt(self) -> Answer:
        return Answer(Verdict.FAILED, "PREEMPT needs persistent reservations (mode pr)")

    async def take(self, break_foreign: bool = True) -> Answer:
        """Reserve; with ``break_foreign``, break another initiator's
        reservation with a reset first.  Break only a disk whose previous
        owner the quorum arbitration has already fenced."""
        answer = await self.reserve()
        if answer.verdict is not Verdict.CONFLICT or not break_foreign:
            return answer
        log.info("%s held by another initiator: resetting (%s) to break it",
                 self.device, self.reset_kind.name)
        reset = await self.reset()
        if not reset.ok:
            return reset
        return await self.reserve()

    async def probe(self) -> ReservationState:
        result = await self.device.execute(cdb.test_unit_ready())
        kind = result.outcome.kind
        if kind is OutcomeKind.RESERVATION_CONFLICT:
            return ReservationState(self.mode, "reserved by another initiator (SPC-2)")
        if kind is OutcomeKind.GOOD:
            return ReservationState(self.mode, "not reserved by another initiator")
        return ReservationState(self.mode, f"unknown: {result.outcome.describe()}")


class PrReservation:
    """SPC-3 persistent reservations with this node's ``key``.

    ``renew`` never re-registers: under a registrants-only type a preempted
    node that registered again could write again.  It reads the reservation
    and reports CONFLICT when another key holds it (or none does).
    """

    mode = "pr"

    def __init__(self, device, key: int, partner_key: int | None = None,
                 pr_type: PrType = PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
                 preempt_abort: bool = False) -> None:
        if key == 0:
            raise ValueError("a reservation key of 0 means 'unregistered'")
        self.device = device
        self.key = key
        self.partner_key = partner_key
        self.pr_type = PrType(pr_type)
        self.preempt_abort = preempt_abort

    async def _read(self, command, parse, what: str):
        result = await self.device.execute(command)
        if not result.outcome.ok:
            return None, _answer(result, what)
        try:
            return parse(result.data), OK
        except ScsiError as exc:
            return None, Answer(Verdict.FAILED, f"{what}: {exc}")

    async def read_reservation(self):
        return await self._read(cdb.read_reservation(), pages.parse_read_reservation,
                                "READ RESERVATION")

    async def read_keys(self):
        return await self._read(cdb.read_keys(), pages.parse_read_keys, "READ KEYS")

    async def register(self) -> Answer:
        command = cdb.pr_register(self.key, ignore_existing=True)
        return _answer(await self.device.execute(command), "REGISTER AND IGNORE EXISTING KEY")

    async def reserve(self) -> Answer:
        command = cdb.pr_reserve(self.key, self.pr_type)
        return _answer(await self.device.execute(command), "PR RESERVE")

    async def renew(self) -> Answer:
        reservation, answer = await self.read_reservation()
        if reservation is None:
            return answer
        if reservation.key == self.key:
            return OK
        holder = "nobody" if reservation.key is None else f"key 0x{reservation.key:016x}"
        return Answer(Verdict.CONFLICT, f"reservation held by {holder}")

    async def release(self) -> Answer:
        """Release (if held) and unregister: a clean leave."""
        released = _answer(await self.device.execute(cdb.pr_release(self.key, self.pr_type)),
                           "PR RELEASE")
        unregistered = _answer(await self.device.execute(
            cdb.pr_register(0, current_key=self.key)), "REGISTER (unregister)")
        if released.verdict is Verdict.FAILED:
            return released
        return unregistered if unregistered.verdict is Verdict.FAILED else OK

    async def reset(self) -> Answer:
        return OK              # persistent reservations survive resets; nothing to do

    async def preempt(self, victim_key: int | None = None) -> Answer:
        """PREEMPT (or PREEMPT AND ABORT) the partner's key.  A conflict is
        ambiguous (we are unregistered, or the victim key is not registered),
        so READ KEYS tells which."""
        victim = self.partner_key if victim_key is None else victim_key
        if victim is None:
            return Answer(Verdict.FAILED, "no partner key configured")
        command = cdb.pr_preempt(self.key, victim, self.pr_type, abort=self.preempt_abort)
        answer = _answer(await self.device.execute(command), command.name)
        if answer.verdict is not Verdict.CONFLICT:
            return answer
        keys, read = await self.read_keys()
        if keys is None:
            return read
        if self.key not in keys.keys:
            return Answer(Verdict.CONFLICT, "our key is no longer registered (preempted)")
        if victim not in keys.keys:
            return OK                                     # nothing left to preempt
        return answer

    async def take(self, break_foreign: bool = True) -> Answer:
        """Register, then hold the reservation: reserve if free; if another
        key holds it, preempt that key (``break_foreign``) or report CONFLICT."""
        answer = await self.register()
        if not answer.ok:
            return answer
        reservation, answer = await self.read_reservation()
        if reservation is None:
            return answer
        if reservation.key == self.key:
            return OK
        if reservation.key is not None:
            if not break_foreign:
                return Answer(Verdict.CONFLICT, f"held by key 0x{reservation.key:016x}")
            answer = await self.preempt(reservation.key)
            if not answer.ok:
                return answer
            reservation, answer = await self.read_reservation()
            if reservation is None:
                return answer
            if reservation.key == self.key:
                return OK
        return await self.reserve()

    async def probe(self) -> ReservationState:
        keys, answer = await self.read_keys()
        if keys is None:
            return ReservationState(self.mode, f"unknown: {answer.detail}")
        reservation, answer = await self.read_reservation()
        if reservation is None:
            return ReservationState(self.mode, f"unknown: {answer.detail}",
                                    registered_keys=keys.keys)
        if not reservation.held:
            summary = "no persistent reservation"
        else:
            kind = PrType(reservation.pr_type).name if isinstance(reservation.pr_type, PrType) \
                else f"type {reservation.pr_type}"
            summary = f"{kind} held by key 0x{reservation.key:016x}"
        return ReservationState(self.mode, summary, reservation.key, keys.keys)


async def probe_any(device) -> ReservationState:
    """Reservation state without knowing the mode (``clusdisk scan``): PR
    state when the device reports registrations, else the SPC-2 view."""
    pr = PrReservation(device, key=1)
    keys, _ = await pr.read_keys()
    if keys is not None and keys.keys:
        return await pr.probe()
    return await Scsi2Reservation(device).probe()
