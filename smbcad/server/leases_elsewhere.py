"""Leases and oplocks when worker processes share the node's files
(docs/multicore.md, "Caching across workers").

Each worker publishes what its holders of a file cache in the file's
open-state record (``record.CACHING_BITS`` on its entries: caching, H, W,
an oplock, a lease with H; ``sync_caching`` after every change, and
``claim_caching`` at a grant, in ``Leasing._grantable``).  Another worker
then decides as for local holders ([MS-FSA] 2.1.4.12 case OPEN):

- A CREATE through another worker that conflicts with that caching (write
  caching always, handle caching when the share modes refuse it, any
  caching when it overwrites) asks the holding worker to break
  (``BreakForOpen``, carrying what the open asks).  The holder runs the
  same ``oplocks.decide_open`` over its holders (a batch oplock breaks to
  level II, an RWH lease to RH, ...).  The CREATE waits while the records
  still show what it waits for, then runs again.
- Read caching (a level II oplock, an R or RH lease) is shared: an open
  that does not overwrite breaks none of it, and a new open may get it too.
- A WRITE, a SET_INFO of the end of file or allocation and a LOCK through
  one worker break the others' read caching to none, as locally
  (``Leasing.break_read_caching``; level II breaks need no ack).
"""

import asyncio
from dataclasses import dataclass
from typing import Callable

from smbcad.openstate import record
from smbcad.proto.constants import CreateDisposition, CreateOptions
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import files, oplocks
from smbcad.server.context import Pending
from smbcad.server.oplocks import NONE, Event, Kind

POLL_S = 0.02                   # how often a waiting CREATE looks at the records
WAIT_LIMIT_S = 70.0             # twice the 35 s break timeout, as a local wait
_OVERWRITE = (CreateDisposition.SUPERSEDE, CreateDisposition.OVERWRITE,
              CreateDisposition.OVERWRITE_IF)


@dataclass(frozen=True, slots=True)
class ForeignOpen:
    """What another worker's holders must know of a new open to decide it
    ([MS-FSA] 2.1.4.12 case OPEN): ``oplocks.decide_open``'s inputs."""

    access: int
    overwrite: bool = False
    sharing_violation: bool = False
    delete_on_close: bool = False
    # Not an open: a rename or delete disposition through an open of the
    # file, or a rename replacing it, takes every holder's handle caching
    # (a lease loses H, a batch oplock goes to level II) and waits for it
    # ([MS-FSA] 2.1.4.12 case SET_INFORMATION; ``renames``).
    take_handle: bool = False

    def waits_on(self) -> int:
        """The record.CACHING_BITS that this open waits to see broken: W
        (H when the share modes refuse it; a lease's H when it deletes)."""
        if self.take_handle:
            return record.CACHING_HANDLE
        bits = record.CACHING_HANDLE if self.sharing_violation else record.CACHING_WRITE
        if self.delete_on_close:
            bits |= record.CACHING_HANDLE_LEASE
        return bits

    def breaks(self, foreign: int) -> bool:
        """Whether holders with ``foreign`` (record.CACHING_BITS) break for it."""
        return bool(foreign & self.waits_on() or (self.overwrite and foreign))


TAKE_HANDLE = ForeignOpen(0, take_handle=True)


def opener_of(request, access: int, sharing_violation: bool) -> ForeignOpen:
    """The ForeignOpen of a CREATE of ``access``."""
    return ForeignOpen(access, overwrite=request.create_disposition in _OVERWRITE,
                       sharing_violation=sharing_violation,
                       delete_on_close=bool(request.create_options
                                            & CreateOptions.DELETE_ON_CLOSE))


@dataclass(frozen=True, slots=True)
class Foreign:
    """Other workers' part in a grant ([MS-FSA] 2.1.5.18): whether they
    have the file open, hold oplocks or handle-caching leases on it, or
    byte-range locks; ``claim`` then publishes the grant unless any of that
    changed meanwhile."""

    state: tuple[int, bool]         # OpenStateTable.foreign_state
    has_locks: bool

    @classmethod
    def of(cls, records, key: tuple) -> "Foreign":
        return cls(records.foreign_state(key), bool(records.locks_of(key)))

    @property
    def opened(self) -> int:
        return int(self.state[1])

    @property
    def oplocks(self) -> int:
        return int(bool(self.state[0] & record.CACHING_OPLOCK))

    @property
    def handle_leases(self) -> int:
        return int(bool(self.state[0] & record.CACHING_HANDLE_LEASE))

    def claim(self, leasing, key: tuple, level: int, is_lease: bool) -> bool:
        records = leasing.server.opens.open_state
        return records.claim_caching(key, local_bits(leasing, key) | bits_of(level, is_lease),
                                     expected=self.state)


def before_open(leasing, ctx, request, access: int, retry: Callable,
                key: tuple) -> Pending | None:
    """``Leasing.before_open``'s step for other workers' holders of ``key``:
    the same decision as for local ones, made on what their records say.
    None: nothing there to wait for."""
    foreign = ctx.server.opens.open_state.foreign_caching(key)
    if not foreign:
        return None
    violation = False
    try:
        files.check_share_access(ctx.server, key, access, request.share_access)
    except SmbError as exc:
        if exc.status != NtStatus.SHARING_VIOLATION or not handle_caching(foreign):
            raise           # no holder there may close its handle: refused at once
        violation = True
    opener = opener_of(request, access, violation)
    if not opener.breaks(foreign):
        return None
    if foreign & opener.waits_on():
        return wait_then_retry(leasing, ctx, key, retry, opener)
    leasing.break_elsewhere(key, opener)        # read caching: broken, not waited for
    return None


def shared(leasing) -> bool:
    """Whether other processes see this one's records (worker processes)."""
    server = leasing.server
    return server is not None and server.opens.open_state.shared


def is_stat_open(access: int, overwrite: bool) -> bool:
    """An open that breaks no caching anywhere (decide_open's first test):
    it neither waits for another worker's holders nor stops their grants."""
    return not overwrite and oplocks.is_stat_open(access, against_lease=False)


def handle_caching(foreign: int) -> bool:
    """Whether ``OpenStateTable.foreign_caching``'s answer includes H."""
    return bool(foreign & record.CACHING_HANDLE)


def bits_of(held: int, is_lease: bool) -> int:
    """One holder's caching state as record.CACHING_BITS."""
    if not held:
        return 0
    bits = record.CACHING
    if held & oplocks.H:
        bits |= record.CACHING_HANDLE | (record.CACHING_HANDLE_LEASE if is_lease else 0)
    if held & oplocks.W:
        bits |= record.CACHING_WRITE
    if not is_lease:
        bits |= record.CACHING_OPLOCK
    return bits


def local_bits(leasing, key: tuple) -> int:
    """What this process's holders of ``key`` cache, as record.CACHING_BITS.
    A holder that is breaking still counts what it held until it acknowledges."""
    caching = leasing.files.get(key)
    bits = 0
    for holder in (caching.holders if caching is not None else ()):
        bits |= bits_of(holder.state.held, holder.is_lease)
    return bits


def sync_caching(leasing, key: tuple) -> None:
    """Publish what this process's holders of ``key`` cache now."""
    leasing.server.opens.open_state.set_caching(key, local_bits(leasing, key))


def break_for(leasing, key: tuple) -> None:
    """Another worker's client changes ``key``'s data (or caching must end
    for another reason): every caching of it here breaks to none, through
    the same state machine and timers as a local break (the break timer
    bounds a client that never acknowledges)."""
    caching = leasing.files.get(key)
    for holder in list(caching.holders if caching is not None else ()):
        state = holder.state
        if state.held and not (state.breaking and state.breaking_to == NONE):
            leasing.apply(holder, Event(Kind.BREAK, NONE))
    if shared(leasing):
        sync_caching(leasing, key)


def break_for_open(leasing, key: tuple, opener: ForeignOpen) -> None:
    """Another worker's client opens ``key``: this process's holders break
    as they would for a local open of the same kind (none of them shares
    the opener's lease: a client host's leases live on its one worker)."""
    caching = leasing.files.get(key)
    if opener.take_handle:
        for holder in list(caching.holders if caching is not None else ()):
            state = holder.state
            if state.held & oplocks.H and not state.breaking:
                level = state.held & ~oplocks.H if holder.is_lease else oplocks.R
                leasing.apply(holder, Event(Kind.BREAK, level))
    elif caching is not None and caching.holders:
        views = [oplocks.HolderView(holder, holder.is_lease, holder.state)
                 for holder in caching.holders]
        decision = oplocks.decide_open(
            views, access=opener.access, overwrite=opener.overwrite,
            sharing_violation=opener.sharing_violation, first_attempt=True,
            delete_on_close=opener.delete_on_close)
        for holder, level in decision.breaks:
            leasing.apply(holder, Event(Kind.BREAK, level))
    if shared(leasing):
        sync_caching(leasing, key)


def take_handle(leasing, ctx, key: tuple, retry: Callable) -> Pending | None:
    """Before a rename or delete disposition of ``key`` (or a rename replacing
    it): other workers' handle caching of it is broken first and waited for,
    as local holders' (``Leasing.before_handle_change``, ``renames``)."""
    if not shared(leasing) or not (ctx.server.opens.open_state.foreign_caching(key)
                                   & record.CACHING_HANDLE):
        return None
    return wait_then_retry(leasing, ctx, key, retry, TAKE_HANDLE)


def wait_then_retry(leasing, ctx, key: tuple, retry: Callable, opener: ForeignOpen) -> Pending:
    """A CREATE that another worker's caching of ``key`` must give way to:
    ask for the break, wait (bounded) until the records show nothing this
    open waits on, then run the CREATE again."""
    leasing.break_elsewhere(key, opener)
    waits_on = opener.waits_on()

    async def waited():
        loop = asyncio.get_running_loop()
        records = leasing.server.opens.open_state
        deadline = loop.time() + WAIT_LIMIT_S
        while records.foreign_caching(key) & waits_on and loop.time() < deadline:
            await asyncio.sleep(POLL_S)
        return await run_again(ctx, retry)
    return Pending(waited(), interim_after_s=0.0)


async def run_again(ctx, retry: Callable):
    """``retry(ctx)`` (the whole request again) after a wait, to its end."""
    if ctx.connection.closed:
        # Gone while it waited: an open made now would belong to no session
        # and never close.
        raise asyncio.CancelledError
    result = retry(ctx)
    while isinstance(result, Pending):
        result = await result.work
    return result
