"""The partner mirror of one aggregate's handle store, as sans-IO state
machines: ``PrimaryMirror`` on the owner (here), ``ReplicaMirror`` on the
partner (``replica_core``); the actions both return, the state tables and
the resync decision (issue 10 item 5; shared/reference/cluster.md §7(a)).

No I/O, no clock, no randomness: every method takes the input (and ``now``,
seconds on a monotonic clock) and returns a list of actions for the driver
(``mirrored_engine``/``mirror_link``, or a test harness) to carry out, and the
driver reports completions back as inputs.  Disk actions of one kind (journal,
marker, replica log) must be carried out in the order they are returned.

The position record
-------------------
Key 0 is never a DurableFileId (``LocalHandleStore`` refuses it), so every
batch carries ``META_KEY → encode_position(epoch, generation, mseq)`` among
its ops.  The primary's local log, the replica's log, a snapshot and the
degraded journal thus each record, atomically with their records, which
frame they hold: a restarted node knows its position without a second file.

Primary: when a commit completes
--------------------------------
``submit(changes)`` gives the batch its ``mseq`` (the ops to write locally
and the APPEND to send, in parallel).  The batch's callers may be answered
(``CommitDone``) only when its local write is durable (``local_done``) and,
depending on the marker state, the next owner can see it:

======================  ===========================  ==========================
marker state            durable marker may say       the batch also needs
======================  ===========================  ==========================
CLEAN                   in sync                      ACK >= mseq
RESETTING               outdated                     journaled (after the reset)
JOURNALING              in sync                      ACK >= mseq
WRITING_OUTDATED        either                       (wait for the marker)
OUTDATED                outdated                     journaled
CLEARING                either                       ACK >= mseq and journaled
CLEARING_LOST           either                       ACK >= mseq and journaled
======================  ===========================  ==========================

The next owner reads the marker (``<mount_point>/.smbca/handles.state``):
"outdated" → it adopts the journal, else the replica.  Hence degrading
(ack timeout, default 1 s, or ``partner_lost``) first rewrites the journal
with the full current image (``JournalReset``; every batch submitted before
it is then journaled), appends the batches submitted after it
(``JournalAppend``), and writes the "outdated" marker only once the journal
holds every batch already answered (some complete on their ACK meanwhile).
Both files are on the aggregate's LUN, so a fenced node's degrade fails and
nothing is acknowledged that the next owner cannot see.  Departure from cluster.md (which appends
only frames to the journal): a journal that starts with the full image is
self-contained, so adoption needs no reasoning about where the replica's
frames end and the journal's begin; it costs one image write per degrade.

A primary started while the marker says "outdated" (``outdated=True``:
after adoption, or a restart while degraded) first rewrites the journal with
its own image (RESETTING): a journal may hold batches a crashed predecessor
journaled but never made durable locally nor answered, which must not reach
the next owner mixed with this start's batches (found by the property test).

The marker is cleared (``WriteMarker(in_sync=True)``, then ``DeleteJournal``)
only when the link is caught up and the replica has acknowledged every batch
completed so far.  Commits complete in mseq order.

Primary: resync (``decide_resync``, a rule table)
-------------------------------------------------
On each connection the partner's HELLO gives its position; the first rule
that matches decides: higher epoch → FENCED (we are a zombie: stop); a
primary of the same epoch → CONFLICT (drop the link); same epoch and
generation, and every frame after its mseq still in the window → FRAMES; else
SNAPSHOT (next generation, base = current mseq).  A constructed primary
(start, restart, adoption) is given a generation that was never used before
(``MirroredEngine`` takes a fresh block of 2^32 per start, recorded in
``state.json`` before use) and starts with an empty window, so a replica
holding frames that a crashed primary sent but never made durable can never
be taken for the same lineage: it always gets a snapshot.  ACKs name their
generation; ACKs of another one are ignored.

The replica's machine is ``replica_core.ReplicaMirror``.
"""

import enum
import struct
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from smbcad.cluster.mirror_proto import (
    Ack, AggregatePosition, Append, Message, Ops, Refuse, RefuseReason, Role, ops_size,
    snapshot_messages)

META_KEY = 0
_META = struct.Struct("<8sQQQ")
_META_MAGIC = b"SMBCAPOS"

DEFAULT_ACK_TIMEOUT_S = 1.0
DEFAULT_WINDOW_FRAMES = 4096
DEFAULT_WINDOW_BYTES = 64 << 20


def encode_position(epoch: int, generation: int, mseq: int) -> bytes:
    return _META.pack(_META_MAGIC, epoch, generation, mseq)


def decode_position(blob: bytes) -> tuple[int, int, int]:
    """(epoch, generation, mseq) of a META_KEY record (ValueError if it is not one)."""
    if len(blob) != _META.size:
        raise ValueError("not a mirror position record")
    magic, epoch, generation, mseq = _META.unpack(blob)
    if magic != _META_MAGIC:
        raise ValueError("not a mirror position record")
    return epoch, generation, mseq


class MirrorStateError(Exception):
    """An input the state tables have no row for: a bug in the driver."""


class MirrorFenced(Exception):
    """The partner has seen a higher epoch: this node no longer owns the aggregate."""


# --- actions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    message: Message


@dataclass(frozen=True, slots=True)
class DropConnection:
    reason: str


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call ``tick(now)`` at ``at`` (replaces any earlier SetTimer)."""

    at: float


@dataclass(frozen=True, slots=True)
class JournalReset:
    """Replace the degraded journal by ``records`` (all of them, META_KEY
    included), durably; then call ``journal_reset_done()``."""

    records: Mapping[int, bytes]
    mseq: int


@dataclass(frozen=True, slots=True)
class JournalAppend:
    """Append one batch to the journal, durably; then ``journal_appended(mseq)``."""

    mseq: int
    ops: Ops


@dataclass(frozen=True, slots=True)
class WriteMarker:
    """Write the marker durably; then ``marker_written()``."""

    epoch: int
    generation: int
    in_sync: bool


@dataclass(frozen=True, slots=True)
class DeleteJournal:
    pass


@dataclass(frozen=True, slots=True)
class CommitDone:
    """The batch ``mseq`` may be acknowledged to its callers."""

    mseq: int


@dataclass(frozen=True, slots=True)
class Fenced:
    reason: str


@dataclass(frozen=True, slots=True)
class ReplicaWrite:
    """Write ``ops`` to the replica log durably; then ``write_done(mseq)``."""

    mseq: int
    ops: Ops


@dataclass(frozen=True, slots=True)
class SnapshotStart:
    epoch: int
    generation: int
    base_mseq: int


@dataclass(frozen=True, slots=True)
class SnapshotWrite:
    ops: Ops


@dataclass(frozen=True, slots=True)
class SnapshotInstall:
    """Make the snapshot the replica's copy (a new generation), durably;
    then ``snapshot_installed()``."""

    epoch: int
    generation: int
    base_mseq: int


@dataclass(frozen=True, slots=True)
class SnapshotAbort:
    pass


Action = (Send | DropConnection | SetTimer | JournalReset | JournalAppend | WriteMarker
          | DeleteJournal | CommitDone | Fenced | ReplicaWrite | SnapshotStart | SnapshotWrite
          | SnapshotInstall | SnapshotAbort)


# --- state tables --------------------------------------------------------------------


class Link(enum.Enum):
    DOWN = "down"           # no connection to the partner
    RESYNC = "resync"       # connected, replica catching up (frames or snapshot)
    UP = "up"               # replica caught up: synchronous mirroring


class LinkInput(enum.Enum):
    CONNECTED = "connected"
    CAUGHT_UP = "caught-up"
    LOST = "lost"


LINK_TABLE = MappingProxyType({
    (Link.DOWN, LinkInput.CONNECTED): Link.RESYNC,
    (Link.DOWN, LinkInput.LOST): Link.DOWN,
    (Link.RESYNC, LinkInput.CAUGHT_UP): Link.UP,
    (Link.RESYNC, LinkInput.LOST): Link.DOWN,
    (Link.UP, LinkInput.LOST): Link.DOWN,
})


class Marker(enum.Enum):
    CLEAN = "clean"
    RESETTING = "resetting"                 # outdated at start; journal reset to our image
    JOURNALING = "journaling"               # JournalReset in flight, marker still clean
    WRITING_OUTDATED = "writing-outdated"
    OUTDATED = "outdated"
    CLEARING = "clearing"                   # WriteMarker(in_sync) in flight
    CLEARING_LOST = "clearing-lost"         # ... and the link was lost meanwhile


class MarkerInput(enum.Enum):
    DEGRADE = "degrade"
    JOURNAL_DONE = "journal-done"
    MARKER_DONE = "marker-done"
    CAUGHT_UP = "caught-up"


MARKER_TABLE = MappingProxyType({
    (Marker.RESETTING, MarkerInput.DEGRADE): Marker.RESETTING,
    (Marker.RESETTING, MarkerInput.JOURNAL_DONE): Marker.OUTDATED,
    (Marker.CLEAN, MarkerInput.DEGRADE): Marker.JOURNALING,
    (Marker.JOURNALING, MarkerInput.DEGRADE): Marker.JOURNALING,
    (Marker.JOURNALING, MarkerInput.JOURNAL_DONE): Marker.WRITING_OUTDATED,
    (Marker.WRITING_OUTDATED, MarkerInput.DEGRADE): Marker.WRITING_OUTDATED,
    (Marker.WRITING_OUTDATED, MarkerInput.MARKER_DONE): Marker.OUTDATED,
    (Marker.OUTDATED, MarkerInput.DEGRADE): Marker.OUTDATED,
    (Marker.OUTDATED, MarkerInput.CAUGHT_UP): Marker.CLEARING,
    (Marker.CLEARING, MarkerInput.DEGRADE): Marker.CLEARING_LOST,
    (Marker.CLEARING, MarkerInput.MARKER_DONE): Marker.CLEAN,
    (Marker.CLEARING_LOST, MarkerInput.DEGRADE): Marker.CLEARING_LOST,
    (Marker.CLEARING_LOST, MarkerInput.MARKER_DONE): Marker.JOURNALING,
})

_NEEDS_ACK = frozenset({Marker.CLEAN, Marker.JOURNALING, Marker.CLEARING,
                        Marker.CLEARING_LOST})
_NEEDS_JOURNAL = frozenset({Marker.RESETTING, Marker.OUTDATED, Marker.CLEARING,
                            Marker.CLEARING_LOST})
# States where a missing ACK degrades (a timeout, a lost partner); in the
# others a degrade is already under way or done.
_DEGRADES = frozenset({Marker.CLEAN, Marker.CLEARING})
_JOURNAL_LIVE = frozenset({Marker.RESETTING, Marker.JOURNALING, Marker.WRITING_OUTDATED,
                           Marker.OUTDATED, Marker.CLEARING, Marker.CLEARING_LOST})


def _next(table: Mapping, state: enum.Enum, symbol: enum.Enum) -> enum.Enum:
    try:
        return table[state, symbol]
    except KeyError:
        raise MirrorStateError(f"no transition for {symbol.value} in {state.value}") from None


# --- the resync decision -------------------------------------------------------------


class Resync(enum.Enum):
    FENCED = "fenced"
    CONFLICT = "conflict"
    FRAMES = "frames"
    SNAPSHOT = "snapshot"


# (rule, predicate(primary, window_first, replica), decision): the first match wins.
RESYNC_RULES = (
    ("partner has a higher epoch", lambda p, w, r: r.epoch > p.epoch, Resync.FENCED),
    ("partner is primary in our epoch",
     lambda p, w, r: r.role is Role.PRIMARY and r.epoch == p.epoch, Resync.CONFLICT),
    ("same lineage, missing frames in the window",
     lambda p, w, r: (r.role is Role.REPLICA and r.epoch == p.epoch
                      and r.generation == p.generation and r.mseq <= p.mseq
                      and (r.mseq == p.mseq or r.mseq + 1 >= w)),
     Resync.FRAMES),
    ("anything else", lambda p, w, r: True, Resync.SNAPSHOT),
)


def decide_resync(primary: AggregatePosition, window_first: int,
                  replica: AggregatePosition) -> tuple[Resync, str]:
    """How to bring ``replica`` up to ``primary``; ``window_first`` is the
    lowest mseq the primary still holds.  Returns the decision and its rule."""
    for rule, predicate, decision in RESYNC_RULES:
        if predicate(primary, window_first, replica):
            return decision, rule
    raise AssertionError("the last rule matches everything")


# --- primary -------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    submitted_at: float
    size: int
    local_done: bool = False
    journaled: bool = False


@dataclass(frozen=True, slots=True)
class MirrorStatus:
    """Per-aggregate status and metrics (smbca status, smbcad_mirror_*)."""

    aggregate: str
    role: str
    epoch: int
    generation: int
    mseq: int
    acked_mseq: int
    in_sync: bool
    link: str
    marker: str
    lag_frames: int
    lag_bytes: int
    degrade_count: int
    last_ack_latency_s: float | None
    resync_duration_s: float | None
    resyncs: dict = field(default_factory=dict)
    fenced: bool = False


class PrimaryMirror:
    """The owner's side of one aggregate's mirror.

    ``image`` is the store's live records (DurableFileId → encoded bytes) as
    recovered; the mirror keeps its own view (the same bytes objects) for
    snapshots and journal resets.  ``outdated``: the durable marker says
    "outdated" (after adoption, or a restart while degraded), so the journal
    holds everything; the first batch then needs no journal reset.
    ``generation`` must never have been used on the wire before (module
    docstring); ``mseq`` is where the local copy stands."""

    def __init__(self, aggregate: str, *, epoch: int, generation: int, mseq: int,
                 image: Mapping[int, bytes], outdated: bool,
                 ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
                 window_frames: int = DEFAULT_WINDOW_FRAMES,
                 window_bytes: int = DEFAULT_WINDOW_BYTES) -> None:
        self.aggregate = aggregate
        self.epoch = epoch
        self.generation = generation
        self.mseq = mseq
        self.acked = 0                       # nothing acknowledged in this generation yet
        self.ack_timeout_s = ack_timeout_s
        self.window_frames = window_frames
        self.window_bytes = window_bytes
        self.link = Link.DOWN
        self.marker = Marker.RESETTING if outdated else Marker.CLEAN
        self._started = False
        self.fenced = False
        self._image = {key: blob for key, blob in image.items() if key != META_KEY}
        self._image[META_KEY] = encode_position(epoch, self.generation, mseq)
        self._window: deque[tuple[int, Ops, int]] = deque()
        self._window_size = 0
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._completed = mseq               # highest mseq whose callers were answered
        self._journal_reset = False          # the last JournalReset has completed
        self._journal_through = 0            # the journal holds every batch up to this
        self._partner_lost = True
        self._resync_target = 0
        self._resync_started: float | None = None
        self._timer_at: float | None = None
        self.degrade_count = 0
        self.last_ack_latency_s: float | None = None
        self.resync_duration_s: float | None = None
        self.resyncs = dict.fromkeys((r.value for r in Resync), 0)
        self.stale_acks = 0

    # --- inputs -----------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Call once, before anything else.  If the marker says outdated, the
        journal may hold batches of a previous start that never became durable
        here (nor were answered): it is rewritten with our image first."""
        if self._started:
            raise MirrorStateError(f"{self.aggregate}: started twice")
        self._started = True
        actions: list[Action] = []
        if self.marker is Marker.RESETTING:
            self._journal_reset = False
            actions.append(JournalReset(dict(self._image), self.mseq))
        self._settle(actions, now)
        return actions

    def submit(self, changes: Mapping[int, bytes | None], now: float
               ) -> tuple[int, Ops, list[Action]]:
        """A group commit: returns its mseq, the ops to write locally (the
        changes plus the position record) and the actions."""
        if self.fenced:
            raise MirrorFenced(f"{self.aggregate}: fenced at epoch {self.epoch}")
        if not self._started:
            raise MirrorStateError(f"{self.aggregate}: submit before start")
        if META_KEY in changes:
            raise ValueError("key 0 is the mirror's position record")
        self.mseq += 1
        meta = encode_position(self.epoch, self.generation, self.mseq)
        ops = (*changes.items(), (META_KEY, meta))
        for key, blob in ops:
            if blob is None:
                self._image.pop(key, None)
            else:
                self._image[key] = blob
        size = ops_size(ops)
        self._window.append((self.mseq, ops, size))
        self._window_size += size
        self._trim_window()
        self._pending[self.mseq] = _Pending(now, size)
        actions: list[Action] = []
        if self.link is not Link.DOWN:
            actions.append(Send(Append(self.aggregate, self.epoch, self.mseq, ops)))
        if self.marker in _JOURNAL_LIVE:
            actions.append(JournalAppend(self.mseq, ops))
        if self.link is Link.DOWN and self._partner_lost and self.marker in _DEGRADES:
            self._degrade(actions)
        self._settle(actions, now)
        return self.mseq, ops, actions

    def local_done(self, mseq: int, now: float) -> list[Action]:
        self._pending[mseq].local_done = True
        return self._settled(now)

    def journal_appended(self, mseq: int, now: float) -> list[Action]:
        pending = self._pending.get(mseq)
        if pending is not None:
            pending.journaled = True
        self._journal_through = mseq
        return self._settled(now)

    def journal_reset_done(self, mseq: int, now: float) -> list[Action]:
        for key, pending in self._pending.items():
            if key <= mseq:
                pending.journaled = True
        self._journal_reset, self._journal_through = True, mseq
        return self._settled(now)

    def marker_written(self, now: float) -> list[Action]:
        actions: list[Action] = []
        self._marker(MarkerInput.MARKER_DONE, actions)
        self._settle(actions, now)
        return actions

    def connected(self, partner: AggregatePosition, now: float) -> list[Action]:
        """The partner's HELLO (or a REFUSE carrying its position) arrived."""
        actions: list[Action] = []
        if self.fenced:
            return actions
        if self.link is not Link.DOWN:
            self.link = _next(LINK_TABLE, self.link, LinkInput.LOST)
        self._partner_lost = False
        me = AggregatePosition(self.aggregate, Role.PRIMARY, self.epoch, self.generation,
                               self.mseq)
        window_first = self._window[0][0] if self._window else self.mseq + 1
        decision, rule = decide_resync(me, window_first, partner)
        self.resyncs[decision.value] += 1
        if decision is Resync.FENCED:
            self._fence(f"partner has epoch {partner.epoch} > ours {self.epoch}", actions)
            return actions
        if decision is Resync.CONFLICT:
            actions.append(DropConnection(f"{self.aggregate}: partner is primary too ({rule})"))
            return actions
        self.link = _next(LINK_TABLE, self.link, LinkInput.CONNECTED)
        self._resync_started = now
        self._resync_target = self.mseq
        if decision is Resync.FRAMES:
            actions.extend(Send(Append(self.aggregate, self.epoch, mseq, ops))
                           for mseq, ops, _ in self._window if mseq > partner.mseq)
            self._check_caught_up(now)     # nothing missing and all of it acked already
        else:
            self.generation += 1
            self._image[META_KEY] = encode_position(self.epoch, self.generation, self.mseq)
            self.acked = 0           # acks count in the new generation only
            actions.extend(Send(message) for message in snapshot_messages(
                self.aggregate, self.epoch, self.generation, self.mseq, self._image))
            # Frames of the old generation are not in the new one's window.
            self._window.clear()
            self._window_size = 0
        self._settle(actions, now)
        return actions

    def received(self, message: Message, now: float) -> list[Action]:
        """An ACK or REFUSE for this aggregate."""
        if isinstance(message, Ack):
            return self._ack(message, now)
        if isinstance(message, Refuse):
            if message.reason is RefuseReason.STALE_EPOCH and message.epoch > self.epoch:
                actions: list[Action] = []
                self._fence(f"partner refused epoch {self.epoch}: it has {message.epoch}",
                            actions)
                return actions
            if message.reason is RefuseReason.GAP:
                return self.connected(AggregatePosition(
                    self.aggregate, Role.REPLICA, message.epoch, message.generation,
                    message.mseq), now)
            return self.connection_lost(now)
        raise MirrorStateError(f"a primary does not take {type(message).__name__}")

    def connection_lost(self, now: float) -> list[Action]:
        """The connection closed; acks may still come after a reconnect, so
        pending batches wait for the ack timeout."""
        self.link = _next(LINK_TABLE, self.link, LinkInput.LOST)
        return self._settled(now)

    def partner_lost(self, now: float) -> list[Action]:
        """clusdisk reports the partner dead: degrade at once if anything waits."""
        self.link = _next(LINK_TABLE, self.link, LinkInput.LOST)
        self._partner_lost = True
        actions: list[Action] = []
        if self._pending and self.marker in _DEGRADES:
            self._degrade(actions)
        self._settle(actions, now)
        return actions

    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        self._timer_at = None
        waiting = self._oldest_waiting_for_ack()
        if waiting is not None and waiting + self.ack_timeout_s <= now:
            if self.link is Link.UP:
                # Synchronous mode and no ack: the link or the partner is sick.
                self.link = _next(LINK_TABLE, self.link, LinkInput.LOST)
                actions.append(DropConnection(f"{self.aggregate}: no ACK within "
                                              f"{self.ack_timeout_s} s"))
            self._degrade(actions)
        self._settle(actions, now)
        return actions

    # --- internals --------------------------------------------------------------------

    def _ack(self, ack: Ack, now: float) -> list[Action]:
        if (ack.epoch, ack.generation) != (self.epoch, self.generation) or ack.mseq > self.mseq:
            self.stale_acks += 1
            return []
        if ack.mseq > self.acked:
            self.acked = ack.mseq
            pending = self._pending.get(ack.mseq)
            if pending is not None:
                self.last_ack_latency_s = now - pending.submitted_at
            while self._window and self._window[0][0] <= self.acked:
                self._window_size -= self._window.popleft()[2]
        self._check_caught_up(now)
        return self._settled(now)

    def _check_caught_up(self, now: float) -> None:
        if self.link is Link.RESYNC and self.acked >= self._resync_target:
            self.link = _next(LINK_TABLE, self.link, LinkInput.CAUGHT_UP)
            if self._resync_started is not None:
                self.resync_duration_s = now - self._resync_started

    def _degrade(self, actions: list[Action]) -> None:
        before = self.marker
        self._marker(MarkerInput.DEGRADE, actions)
        if before is Marker.CLEAN:
            self.degrade_count += 1

    def _marker(self, symbol: MarkerInput, actions: list[Action]) -> None:
        before = self.marker
        self.marker = _next(MARKER_TABLE, before, symbol)
        if self.marker is Marker.JOURNALING and before is not Marker.JOURNALING:
            self._journal_reset = False
            actions.append(JournalReset(dict(self._image), self.mseq))
        elif self.marker is Marker.WRITING_OUTDATED and before is Marker.JOURNALING:
            actions.append(WriteMarker(self.epoch, self.generation, False))
        elif self.marker is Marker.CLEARING and before is Marker.OUTDATED:
            actions.append(WriteMarker(self.epoch, self.generation, True))
        elif self.marker is Marker.CLEAN and before is Marker.CLEARING:
            actions.append(DeleteJournal())

    def _fence(self, reason: str, actions: list[Action]) -> None:
        self.fenced = True
        self.link = Link.DOWN
        actions.append(Fenced(f"{self.aggregate}: {reason}"))
        actions.append(DropConnection(reason))

    def _settled(self, now: float) -> list[Action]:
        actions: list[Action] = []
        self._settle(actions, now)
        return actions

    def _settle(self, actions: list[Action], now: float) -> None:
        """Complete what can complete, clear the marker when caught up, arm the timer."""
        if self.fenced:
            return
        blocked = self.marker is Marker.WRITING_OUTDATED
        needs_ack = self.marker in _NEEDS_ACK
        needs_journal = self.marker in _NEEDS_JOURNAL
        while self._pending and not blocked:
            mseq, pending = next(iter(self._pending.items()))
            if not pending.local_done or (needs_ack and self.acked < mseq) or (
                    needs_journal and not pending.journaled):
                break
            del self._pending[mseq]
            self._completed = mseq
            actions.append(CommitDone(mseq))
        # While JOURNALING, batches still complete on their ACK; the marker may
        # say "outdated" only once the journal holds every one of them.
        if (self.marker in (Marker.JOURNALING, Marker.RESETTING) and self._journal_reset
                and self._journal_through >= self._completed):
            self._marker(MarkerInput.JOURNAL_DONE, actions)
        if (self.marker is Marker.OUTDATED and self.link is Link.UP
                and self.acked >= self._completed):
            self._marker(MarkerInput.CAUGHT_UP, actions)
        waiting = self._oldest_waiting_for_ack()
        deadline = None if waiting is None else waiting + self.ack_timeout_s
        if deadline is not None and deadline != self._timer_at:
            actions.append(SetTimer(deadline))
        self._timer_at = deadline

    def _oldest_waiting_for_ack(self) -> float | None:
        # Only these states degrade on a timeout; once degrading, the timer has no role.
        if self.marker not in _DEGRADES:
            return None
        for mseq, pending in self._pending.items():
            if mseq > self.acked:
                return pending.submitted_at
        return None

    def _trim_window(self) -> None:
        while self._window and (len(self._window) > self.window_frames
                                or self._window_size > self.window_bytes):
            self._window_size -= self._window.popleft()[2]

    def position(self) -> AggregatePosition:
        return AggregatePosition(self.aggregate, Role.PRIMARY, self.epoch, self.generation,
                                 self.mseq)

    def status(self) -> MirrorStatus:
        return MirrorStatus(
            self.aggregate, "primary", self.epoch, self.generation, self.mseq, self.acked,
            self.link is Link.UP and self.marker is Marker.CLEAN, self.link.value,
            self.marker.value, self.mseq - self.acked,
            sum(size for mseq, _, size in self._window if mseq > self.acked),
            self.degrade_count, self.last_ack_latency_s, self.resync_duration_s,
            dict(self.resyncs), self.fenced)
