"""Caching state of oplocks and leases, sans I/O: the break state machine as a
table, and the decisions an open or a write makes about whom to break
([MS-SMB2] 3.3.4.6, 3.3.4.7, 3.3.5.9.8, 3.3.5.9.11, 3.3.5.22;
[MS-FSA] 2.1.4.12, 2.1.5.18, 2.1.5.19).

Both kinds of caching grant are modelled as lease states built from the
bits R (read), H (handle) and W (write), as Samba does: a level II oplock is
R, an exclusive oplock RW and a batch oplock RWH.  One *holder* is a lease
(shared by all opens with the same ClientGuid and LeaseKey) or one open's
oplock.  Its state is a ``CacheState``: the level held, and while a break is
outstanding the level the notification asked for (``breaking_to``) and the
level later conflicts require (``required``, never more than
``breaking_to``).

``TABLE`` maps every (state, event) pair to a ``Transition``; ``step`` is the
only way a holder's state changes.  ``render_table`` prints it for review.
Nothing here does I/O: the runtime (``smbcad.server.leases``) executes the
actions.
"""

from dataclasses import dataclass

from smbcad.proto.constants import OplockLevel

# Lease state bits (2.2.13.2.8) and the five legal levels.
NONE = 0x0
R = 0x1
H = 0x2
W = 0x4
RH = R | H
RW = R | W
RWH = R | W | H
LEVELS = (NONE, R, RH, RW, RWH)

# SMB2 oplock levels (2.2.13) as lease states, and back.
_OPLOCK_AS_LEASE = {OplockLevel.NONE: NONE, OplockLevel.LEVEL_II: R,
                    OplockLevel.EXCLUSIVE: RW, OplockLevel.BATCH: RWH}


def lease_of_oplock(oplock_level: int) -> int:
    return _OPLOCK_AS_LEASE.get(oplock_level, NONE)


def oplock_of_lease(level: int) -> int:
    """The oplock a lease state amounts to (level II for R and RH)."""
    if level & W:
        return OplockLevel.BATCH if level & H else OplockLevel.EXCLUSIVE
    return OplockLevel.LEVEL_II if level & R else OplockLevel.NONE


def level_name(level: int) -> str:
    return "".join(c for bit, c in ((R, "R"), (W, "W"), (H, "H")) if level & bit) or "-"


def normalise(level: int) -> int:
    """A requested lease state as it can be granted: H or W need R, so
    "", H, W and HW grant nothing (smb2.lease.request; [MS-FSA] 2.1.5.18)."""
    level &= RWH
    return level if level & R else NONE


def _subset(a: int, b: int) -> bool:
    return a & ~b == 0


@dataclass(frozen=True, slots=True)
class CacheState:
    """One holder's caching state (3.3.1.12 Lease.LeaseState/Breaking/
    BreakToLeaseState; 3.3.1.10 Open.OplockLevel/OplockState)."""

    held: int
    breaking_to: int | None = None     # sent in the break notification
    required: int | None = None        # what conflicts since then need

    @property
    def breaking(self) -> bool:
        return self.breaking_to is not None

    def __str__(self) -> str:
        text = level_name(self.held)
        if self.breaking:
            text += ">" + level_name(self.breaking_to)
            if self.required != self.breaking_to:
                text += "/" + level_name(self.required)
        return text


class Kind:
    BREAK = "break"        # a conflicting operation needs the holder at ``level`` or less
    ACK = "ack"            # the client acknowledges with ``level`` (3.3.5.22)
    TIMEOUT = "timeout"    # the break acknowledgment timer fired (3.3.6.1, 3.3.2.5)
    GRANT = "grant"        # the same holder asks for ``level`` on another open (upgrade)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    level: int = NONE

    def __str__(self) -> str:
        return self.kind if self.kind == Kind.TIMEOUT else f"{self.kind}:{level_name(self.level)}"


class Action:
    """What the runtime does after a transition, in this order."""

    NEW_EPOCH = "new_epoch"            # Lease.Epoch += 1 (3.3.4.7, 3.3.5.9.11)
    NOTIFY_ACK = "notify_ack"          # break notification, ACK_REQUIRED, next.held → next.breaking_to
    NOTIFY = "notify"                  # break notification R → none, no acknowledgment
    START_TIMER = "start_timer"        # (re)start the 35 s acknowledgment timer
    STOP_TIMER = "stop_timer"
    WAKE = "wake"                      # operations waiting for this break may retry
    # Rejected acknowledgments (the state does not change):
    NOT_BREAKING = "not_breaking"      # lease: STATUS_UNSUCCESSFUL; oplock: INVALID_OPLOCK_PROTOCOL
    BAD_LEVEL = "bad_level"            # lease: STATUS_REQUEST_NOT_ACCEPTED (3.3.5.22.2)


@dataclass(frozen=True, slots=True)
class Transition:
    next: CacheState
    actions: tuple = ()

    @property
    def rejected(self) -> bool:
        return Action.NOT_BREAKING in self.actions or Action.BAD_LEVEL in self.actions


class InvalidTransition(Exception):
    """A (state, event) pair outside the table: a bug in the caller."""


def _breaking_states():
    """Only W or H need an acknowledgment, so only RH, RW and RWH can be
    breaking; the target is a strictly smaller legal level."""
    for held in (RH, RW, RWH):
        for to in LEVELS:
            if to == held or not _subset(to, held):
                continue
            for required in LEVELS:
                if _subset(required, to):
                    yield CacheState(held, to, required)


STATES = tuple(CacheState(level) for level in LEVELS) + tuple(_breaking_states())
EVENTS = (tuple(Event(Kind.BREAK, level) for level in (NONE, R, RH, RW))
          + tuple(Event(Kind.ACK, level) for level in range(8))    # H, W, HW too: rejected
          + (Event(Kind.TIMEOUT),)
          + tuple(Event(Kind.GRANT, level) for level in LEVELS))


def _on_break(state: CacheState, to: int) -> Transition:
    """[MS-FSA] 2.1.4.12 and 3.3.4.7: break what the operation needs broken."""
    if state.breaking:
        # One notification at a time: remember the stricter need and ask for
        # it once this break is acknowledged (smb2.lease.breaking3).
        return Transition(CacheState(state.held, state.breaking_to, state.required & to))
    target = state.held & to
    if target == state.held:
        return Transition(state)
    if not state.held & (W | H):
        # R → none needs no acknowledgment (3.3.4.7: Flags 0, state none at once).
        return Transition(CacheState(NONE), (Action.NEW_EPOCH, Action.NOTIFY))
    return Transition(CacheState(state.held, target, target),
                      (Action.NEW_EPOCH, Action.NOTIFY_ACK, Action.START_TIMER))


def _on_ack(state: CacheState, acked: int) -> Transition:
    """3.3.5.22.2: the acknowledged state must be within what was asked."""
    if not state.breaking:
        return Transition(state, (Action.NOT_BREAKING,))
    if acked not in LEVELS or not _subset(acked, state.breaking_to):
        return Transition(state, (Action.BAD_LEVEL,))
    if _subset(acked, state.required):
        return Transition(CacheState(acked), (Action.STOP_TIMER, Action.WAKE))
    if acked & (W | H):
        # Conflicts arrived meanwhile: break again, from what the client now
        # holds, in steps through R as Windows does (smb2.lease.breaking3).
        required = acked & state.required
        return Transition(CacheState(acked, acked & (state.required | R), required),
                          (Action.NOTIFY_ACK, Action.START_TIMER, Action.WAKE))
    return Transition(CacheState(NONE), (Action.STOP_TIMER, Action.NOTIFY, Action.WAKE))


def _on_timeout(state: CacheState) -> Transition:
    """3.3.6.1 / 3.3.2.5: an unacknowledged break leaves the holder with nothing."""
    if not state.breaking:
        return Transition(state)
    return Transition(CacheState(NONE), (Action.STOP_TIMER, Action.WAKE))


def _on_grant(state: CacheState, level: int) -> Transition:
    """3.3.5.9.8/.11: promote only to a superset, and never while breaking."""
    if state.breaking or level == state.held or not _subset(state.held, level):
        return Transition(state)
    return Transition(CacheState(level), (Action.NEW_EPOCH,))


def _transition(state: CacheState, event: Event) -> Transition:
    if event.kind == Kind.BREAK:
        return _on_break(state, event.level)
    if event.kind == Kind.ACK:
        return _on_ack(state, event.level)
    if event.kind == Kind.TIMEOUT:
        return _on_timeout(state)
    return _on_grant(state, event.level)


# (state, event) → Transition for every state and event.
TABLE = {(state, event): _transition(state, event) for state in STATES for event in EVENTS}


def step(state: CacheState, event: Event) -> Transition:
    try:
        return TABLE[state, event]
    except KeyError:
        raise InvalidTransition(f"{state} × {event}") from None


def render_table() -> str:
    """The table as text, one row per pair: the reviewable form of the machine."""
    lines = []
    for state in STATES:
        for event in EVENTS:
            transition = TABLE[state, event]
            lines.append(f"{str(state):12} {str(event):10} → {str(transition.next):12} "
                         f"{' '.join(transition.actions)}".rstrip())
    return "\n".join(lines) + "\n"


# --- decisions that do not depend on one holder --------------------------------

# Opens that only read or write attributes break nothing and are not counted as
# other openers ([MS-FSA] 2.1.4.12 case OPEN; smb2.oplock.statopen1, smb2.lease.statopen*).
_FILE_WRITE_DATA = 0x00000002
_FILE_READ_ATTRIBUTES = 0x00000080
_FILE_WRITE_ATTRIBUTES = 0x00000100
_READ_CONTROL = 0x00020000
_SYNCHRONIZE = 0x00100000
_OPLOCK_STAT_BITS = _FILE_READ_ATTRIBUTES | _FILE_WRITE_ATTRIBUTES | _SYNCHRONIZE
_LEASE_STAT_BITS = _OPLOCK_STAT_BITS | _READ_CONTROL


def is_stat_open(access: int, against_lease: bool) -> bool:
    """A stat open for the purpose of breaking a lease (READ_CONTROL allowed)
    or an oplock (READ_CONTROL breaks)."""
    bits = _LEASE_STAT_BITS if against_lease else _OPLOCK_STAT_BITS
    return bool(access & bits) and not access & ~bits


@dataclass(frozen=True, slots=True)
class HolderView:
    """One holder as the open-time decision sees it."""

    holder: object
    is_lease: bool
    state: CacheState
    same_lease: bool = False           # the lease the new open asks for


@dataclass(frozen=True, slots=True)
class OpenDecision:
    breaks: tuple = ()                 # (holder, level to break to)
    wait: bool = False                 # the open waits, then tries again


def decide_open(holders, *, access: int, overwrite: bool, sharing_violation: bool,
                first_attempt: bool, delete_on_close: bool = False) -> OpenDecision:
    """Which holders a new open breaks and whether it must wait ([MS-FSA]
    2.1.4.12 case OPEN, as Samba's delay_for_oplock applies it).

    A sharing violation breaks handle caching (the holder may close its
    handle); otherwise write caching is broken.  Overwriting also drops read
    caching.  An open that will delete the file breaks handle caching of
    leases as setting the delete disposition does (case SET_INFORMATION,
    FileDispositionInformation; smb2.lease.unlink).  Oplocks break only to
    level II or none.  The open waits while a holder gives up what it needs,
    or while a holder is still breaking.
    """
    if overwrite:
        access |= _FILE_WRITE_DATA          # truncating writes, whatever was asked
    if is_stat_open(access, against_lease=False):
        return OpenDecision()
    delay_mask = H if sharing_violation else W
    breaks = []
    wait = False
    for view in holders:
        if view.same_lease:
            continue
        if view.is_lease and is_stat_open(access, against_lease=True):
            continue
        held = view.state.held
        mask = delay_mask | (H if delete_on_close and view.is_lease else 0)
        keep = held & ~mask
        if overwrite:
            keep &= ~(H | R)
        if _subset(held, keep):
            wait = wait or view.state.breaking
            continue
        if overwrite:
            keep &= ~(R | W)
        if not view.is_lease:
            keep &= ~(H | W)
        breaks.append((view.holder, keep))
        if held & mask or (view.state.breaking and not first_attempt):
            wait = True
    return OpenDecision(tuple(breaks), wait)


def grantable(requested: int, *, is_lease: bool, other_opens: int, other_oplocks: int,
              other_handle_leases: int, is_directory: bool, has_locks: bool = False) -> int:
    """The caching level a new open gets ([MS-FSA] 2.1.5.18; 3.3.5.9.8).

    ``requested`` is a lease state (oplocks as R/RW/RWH).  ``other_opens``
    counts the file's other non-stat opens outside this lease; a writer must
    be alone.  A shared (read) grant is refused while the file has
    byte-range locks (2.1.5.18 LEVEL_TWO / READ_CACHING).  Leases lose H next
    to oplocks; oplocks get nothing next to a handle-caching lease.
    Directories get no oplock; a directory lease (3.3.5.9.11, v2 only: the
    caller checks) is R or RH, never W, whoever else has the directory open.
    """
    granted = normalise(requested)
    if is_directory:
        return granted & RH if is_lease else NONE
    if other_opens:
        granted &= ~W
    if has_locks and not granted & W:
        return NONE
    if is_lease:
        if other_oplocks:
            granted &= ~H
    elif other_handle_leases:
        granted = NONE
    return granted
