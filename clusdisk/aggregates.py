"""The thin executor of ``clusdisk.resources`` plans: runs bring-up and
tear-down steps for data LUNs, filesystems, smbcad, LIFs and witnessd, and
renews the data LUN reservations (shared/STYLE.md rule 13).

Ports (all injected): ``reservations[aggregate]`` (clusdisk.reservations),
``host`` (``HostOps``: BLKROSET, fsck, mount(2)), ``notifier`` (smbcad and
witnessd, see clusdisk.control) and ``lifs`` (clusdisk.lif).  Blocking host
calls run in a thread.

Every step run is timed and reported to the ``steps`` list a caller
passes (``StepRecord``: the planned operations answer with them).  After
smbcad's adopt, each LIF goes up with the tickles smbcad's reply lists for
its address (cluster.md 7(b) step 7).

Failure handling: a bring-up step that fails undoes the steps already done
(``resources.undo``) and leaves the aggregate down; the next ``apply``
retries it.  During a tear-down, a failed unmount stops that tear-down
before the block device goes read-only and before the reservation is
released: a filesystem still mounted must never lose its fencing.  Other
tear-down failures are logged and the tear-down continues.
"""

import asyncio
import ipaddress
import logging
import os
import time
from dataclasses import dataclass

from clusdisk import disks, resources
from clusdisk.errors import ClusdiskError
from clusdisk.reservations import Verdict
from clusdisk.scsi.errors import ScsiError
from smbca.control import ControlError

log = logging.getLogger("clusdisk.aggregates")


class StepFailed(ClusdiskError):
    def __init__(self, step, message: str) -> None:
        super().__init__(f"{type(step).__name__} {step.aggregate}: {message}",
                         type(step).__name__)
        self.step = step


@dataclass(frozen=True)
class StepRecord:
    aggregate: str
    step: str               # resources.describe(step)
    seconds: float
    ok: bool
    detail: str = ""


def tickles_for(lif, tickles) -> tuple:
    """The (client ip, client port, server ip, server port) entries of
    smbcad's adopt reply whose server address is ``lif``'s."""
    address = ipaddress.ip_interface(lif.address).ip
    out = []
    for entry in tickles or ():
        try:
            if ipaddress.ip_address(entry[2]) == address:
                out.append(tuple(entry))
        except (ValueError, TypeError, IndexError):
            log.warning("ignoring a malformed tickle %r from smbcad", entry)
    return tuple(out)


@dataclass(frozen=True)
class AggregateStatus:
    name: str
    home_node: int
    up: bool
    error: str = ""


async def _thread(func, *args):
    return await asyncio.to_thread(func, *args)


class HostOps:
    """The host side of a disk, over clusdisk.disks (blocking calls)."""

    def __init__(self, mounter: disks.Mounter | None = None) -> None:
        self.mounter = mounter or disks.Mounter()

    def set_writable(self, aggregate, block: str) -> None:
        disks.set_writable(block)

    def set_read_only(self, aggregate, block: str) -> None:
        disks.set_offline(block)

    def check_filesystem(self, aggregate, block: str) -> None:
        disks.check_filesystem(aggregate.name, block, aggregate.filesystem)

    def mount(self, aggregate, block: str) -> None:
        os.makedirs(aggregate.mount_point, exist_ok=True)
        self.mounter.mount(aggregate.name, block, aggregate.mount_point, aggregate.filesystem,
                           aggregate.mount_options)

    def unmount(self, aggregate, block: str) -> None:
        self.mounter.unmount(aggregate.name, aggregate.mount_point)


class AggregateManager:
    def __init__(self, aggregates, node_id: int, blocks: dict, reservations: dict, host,
                 notifier, lifs, *, run_blocking=_thread, observer=None) -> None:
        self.aggregates = tuple(aggregates)
        self.by_name = {a.name: a for a in self.aggregates}
        self.node_id = node_id
        self.blocks = blocks                      # aggregate name -> block device path
        self.reservations = reservations          # aggregate name -> reservation port
        self.host = host
        self.notifier = notifier
        self.lifs = lifs
        self._run_blocking = run_blocking
        self.observer = observer or (lambda *args: None)
        self.current: set[str] = set()
        self.stuck: set[str] = set()              # could not unmount: keep the reservation
        self.errors: dict[str, str] = {}
        self._tickles: dict[str, list] = {}       # aggregate -> smbcad's adopt reply list
        self._lock = asyncio.Lock()

    def status(self) -> tuple[AggregateStatus, ...]:
        return tuple(AggregateStatus(a.name, a.home_node, a.name in self.current,
                                     self.errors.get(a.name, "")) for a in self.aggregates)

    async def apply(self, view, *, planned: bool = False) -> resources.Plan:
        """Bring the node to ``view``'s desired set; returns the plan run.
        ``view`` may be a function returning the View, called once the lock
        is held (so a placement changed meanwhile is seen).  ``planned``:
        its tear-downs are planned (a clean shutdown)."""
        async with self._lock:
            if callable(view):
                view = view()
            plan = resources.plan(self.aggregates, view, frozenset(self.current),
                                  planned=planned)
            for aggregate, steps in plan.tear_down:
                await self._tear_down(aggregate, steps)
            for aggregate, steps in plan.bring_up:
                await self._bring_up(aggregate, steps)
            return plan

    async def bring_up(self, name: str, steps: list, *, break_foreign: bool = False,
                       before=None, after=None) -> bool:
        """Bring one aggregate up now (a planned move's destination; a
        rollback); ``before()`` runs under the lock first, ``after(up)``
        under the lock at the end (the placement change).  Returns whether
        it is up; ``steps`` gets the records."""
        aggregate = self.by_name[name]
        async with self._lock:
            if before is not None:
                before()
            up = name in self.current or await self._bring_up(
                aggregate, resources.bring_up(aggregate, break_foreign), steps)
            if after is not None:
                after(up)
            return up

    async def tear_down(self, name: str, steps: list, *, planned: bool = True,
                        clients_cut_off: bool = False, after=None) -> bool:
        """Take one aggregate down now (a planned move's source); ``after()``
        runs under the lock once it is down (the placement change)."""
        aggregate = self.by_name[name]
        async with self._lock:
            if name in self.current:
                await self._tear_down(
                    aggregate, resources.tear_down(aggregate, planned, clients_cut_off), steps)
            if name in self.current:
                return False
            if after is not None:
                after()
            return True

    async def lif(self, lif, up: bool, steps: list) -> bool:
        """One LIF alone up or down (a LIF migration)."""
        aggregate = next(a for a in self.aggregates if lif in a.lifs)
        step = resources.LifUp(aggregate.name, lif) if up else resources.LifDown(aggregate.name,
                                                                                 lif)
        if up:      # the clients the other node holds on this LIF, to tickle
            self._tickles[aggregate.name] = await self.notifier.partner_tickles(aggregate)
        try:
            await self._run(aggregate, step, steps)
        except StepFailed:
            return False
        return True

    async def _bring_up(self, aggregate, steps, records=None) -> bool:
        done = []
        try:
            for step in steps:
                await self._run(aggregate, step, records)
                done.append(step)
        except StepFailed as exc:
            log.error("bring-up of %s failed: %s; undoing %d steps", aggregate.name, exc,
                      len(done))
            self.errors[aggregate.name] = str(exc)
            self.observer("bring_up", aggregate.name, False)
            await self._tear_down(aggregate, resources.undo(tuple(done)), records)
            return False
        self.current.add(aggregate.name)
        self.errors.pop(aggregate.name, None)
        self.observer("bring_up", aggregate.name, True)
        log.info("aggregate %s is up on node %d", aggregate.name, self.node_id)
        return True

    async def _tear_down(self, aggregate, steps, records=None) -> None:
        for step in steps:
            try:
                await self._run(aggregate, step, records)
            except StepFailed as exc:
                if isinstance(step, resources.Unmount):
                    log.error("%s; keeping %s reserved and read-write", exc, aggregate.name)
                    self.errors[aggregate.name] = str(exc)
                    self.stuck.add(aggregate.name)
                    self.observer("tear_down", aggregate.name, False)
                    return
                log.warning("tear-down of %s: %s (continuing)", aggregate.name, exc)
        self.current.discard(aggregate.name)
        self.stuck.discard(aggregate.name)
        self.observer("tear_down", aggregate.name, True)

    async def _run(self, aggregate, step, records=None) -> None:
        started = time.monotonic()
        try:
            await self._execute(aggregate, step)
        except StepFailed as exc:
            if records is not None:
                records.append(StepRecord(aggregate.name, resources.describe(step),
                                          time.monotonic() - started, False, str(exc)))
            raise
        if records is not None:
            records.append(StepRecord(aggregate.name, resources.describe(step),
                                      time.monotonic() - started, True))

    async def _execute(self, aggregate, step) -> None:
        block = self.blocks[aggregate.name]
        try:
            if isinstance(step, resources.ReserveDisk):
                answer = await self.reservations[aggregate.name].take(step.break_foreign)
                if answer.verdict is not Verdict.OK:
                    raise StepFailed(step, answer.detail or answer.verdict.value)
            elif isinstance(step, resources.ReleaseDisk):
                answer = await self.reservations[aggregate.name].release()
                if answer.verdict is Verdict.FAILED:
                    raise StepFailed(step, answer.detail)
            elif isinstance(step, resources.SetWritable):
                await self._run_blocking(self.host.set_writable, aggregate, block)
            elif isinstance(step, resources.SetReadOnly):
                await self._run_blocking(self.host.set_read_only, aggregate, block)
            elif isinstance(step, resources.CheckFilesystem):
                await self._run_blocking(self.host.check_filesystem, aggregate, block)
            elif isinstance(step, resources.Mount):
                await self._run_blocking(self.host.mount, aggregate, block)
            elif isinstance(step, resources.Unmount):
                await self._run_blocking(self.host.unmount, aggregate, block)
            elif isinstance(step, resources.NotifySmbcad) and step.event == "adopt":
                reply = await self.notifier.smbcad("adopt", aggregate)
                self._tickles[aggregate.name] = (reply or {}).get("tickles") or []
            elif isinstance(step, resources.NotifySmbcad):
                await self.notifier.smbcad(step.event, aggregate, planned=step.planned,
                                           clients_cut_off=step.clients_cut_off)
            elif isinstance(step, resources.NotifyWitness):
                await self.notifier.witness(step.event, aggregate)
            elif isinstance(step, resources.LifUp):
                await self.lifs.up(step.lif,
                                   tickles=tickles_for(step.lif, self._tickles.get(aggregate.name)))
            elif isinstance(step, resources.LifDown):
                await self.lifs.down(step.lif)
            else:
                raise StepFailed(step, "unknown step")
        except StepFailed:
            raise
        except (ClusdiskError, ControlError, ScsiError, OSError) as exc:
            raise StepFailed(step, str(exc)) from None

    async def renew(self) -> list[str]:
        """Renew every data LUN reservation this node holds (every renew
        period, like the quorum).  An aggregate whose reservation is gone
        (CONFLICT) is torn down at once; returns the names lost."""
        lost = []
        for name in sorted(self.current):
            answer = await self.reservations[name].renew()
            self.observer("renew", name, answer.verdict is Verdict.OK)
            if answer.verdict is Verdict.CONFLICT:
                log.error("aggregate %s: data reservation lost (%s): taking it down", name,
                          answer.detail)
                lost.append(name)
        if lost:
            async with self._lock:
                for name in lost:
                    aggregate = self.by_name[name]
                    await self._tear_down(aggregate, resources.tear_down(aggregate))
                    self.errors[name] = "data reservation lost"
        return lost
