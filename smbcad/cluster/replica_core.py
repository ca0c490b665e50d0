"""The replica's side of one aggregate's partner mirror: ``ReplicaMirror``,
sans-IO like ``mirror_core`` (issue 10 item 5; shared/reference/cluster.md
§7(a) "Ordering", "Epochs").

Applies APPENDs in mseq order (``ReplicaWrite``) and ACKs, cumulatively, what
its own log has made durable (``write_done``).  A gap or an epoch it has not
installed → ``Refuse(GAP, position)`` (the primary decides again); an epoch
below the highest it has seen → ``Refuse(STALE_EPOCH)`` and the frame is
dropped (epochs are fencing tokens).  A snapshot is written aside and
installed as a new generation (``SnapshotInstall``), then ACKed.

Inputs are messages and disk completions; outputs are ``mirror_core``
actions (``Send``, ``ReplicaWrite``, ``Snapshot*``), carried out in order by
the driver (``mirror_link.ReplicaEndpoint``, or the test harness).
"""

from collections import deque

from smbcad.cluster.mirror_core import (
    Action, MirrorStateError, MirrorStatus, ReplicaWrite, Send, SnapshotAbort, SnapshotInstall,
    SnapshotStart, SnapshotWrite)
from smbcad.cluster.mirror_proto import (
    Ack, AggregatePosition, Append, Message, Refuse, RefuseReason, Role, SnapshotBegin,
    SnapshotChunk, SnapshotEnd)


class ReplicaMirror:
    """The partner's side: its copy stands at (epoch, generation, mseq), as
    recovered from the META_KEY record of its log (0, 0, 0 if empty)."""

    def __init__(self, aggregate: str, *, epoch: int, generation: int, mseq: int,
                 highest_epoch: int = 0) -> None:
        self.aggregate = aggregate
        self.epoch = epoch
        self.generation = generation
        self.received = mseq          # last frame handed to the log (durable or in flight)
        self.durable = mseq           # last frame the log has made durable
        self.highest_epoch = max(epoch, highest_epoch)
        self._durable_lineage = (epoch, generation)
        self._snapshot: list | None = None      # [epoch, generation, base, records]
        self._in_flight: deque[tuple[str, int, int, int]] = deque()
        self._gap_reported: int | None = None
        self.refused = dict.fromkeys((r.name.lower() for r in RefuseReason), 0)
        self.duplicates = 0

    def position(self) -> AggregatePosition:
        return AggregatePosition(self.aggregate, Role.REPLICA, self.epoch, self.generation,
                                 self.received)

    def received_message(self, message: Message) -> list[Action]:
        if isinstance(message, (Append, SnapshotBegin)) and message.epoch < self.highest_epoch:
            return [self._refuse(RefuseReason.STALE_EPOCH)]
        if isinstance(message, Append):
            return self._append(message)
        if isinstance(message, SnapshotBegin):
            actions: list[Action] = [SnapshotAbort()] if self._snapshot is not None else []
            self.highest_epoch = message.epoch
            self._snapshot = [message.epoch, message.generation, message.base_mseq, 0]
            actions.append(SnapshotStart(message.epoch, message.generation, message.base_mseq))
            return actions
        if isinstance(message, (SnapshotChunk, SnapshotEnd)):
            return self._snapshot_part(message)
        raise MirrorStateError(f"a replica does not take {type(message).__name__}")

    def _append(self, message: Append) -> list[Action]:
        if self._snapshot is not None:
            return []                 # cannot happen on one TCP stream; drop it
        if message.epoch != self.epoch or message.mseq > self.received + 1:
            if self._gap_reported == self.received:
                return []
            self._gap_reported = self.received
            return [self._refuse(RefuseReason.GAP)]
        if message.mseq <= self.received:
            self.duplicates += 1
            return []
        self.received = message.mseq
        self._gap_reported = None
        self._in_flight.append(("write", self.epoch, self.generation, message.mseq))
        return [ReplicaWrite(message.mseq, message.ops)]

    def _snapshot_part(self, message: SnapshotChunk | SnapshotEnd) -> list[Action]:
        snap = self._snapshot
        if snap is None or snap[:3] != [message.epoch, message.generation, message.base_mseq]:
            return []
        if isinstance(message, SnapshotChunk):
            snap[3] += len(message.ops)
            return [SnapshotWrite(message.ops)]
        self._snapshot = None
        if snap[3] != message.records:
            self._gap_reported = self.received
            return [SnapshotAbort(), self._refuse(RefuseReason.GAP)]
        self.epoch, self.generation, self.received = snap[0], snap[1], snap[2]
        self._gap_reported = None
        self._in_flight.append(("install", self.epoch, self.generation, self.received))
        return [SnapshotInstall(self.epoch, self.generation, self.received)]

    def write_done(self, mseq: int) -> list[Action]:
        return self._done("write", mseq)

    def snapshot_installed(self) -> list[Action]:
        return self._done("install", None)

    def _done(self, kind: str, mseq: int | None) -> list[Action]:
        if not self._in_flight or self._in_flight[0][0] != kind or (
                mseq is not None and self._in_flight[0][3] != mseq):
            raise MirrorStateError(f"{self.aggregate}: {kind} {mseq} completed out of order")
        _, epoch, generation, done = self._in_flight.popleft()
        self.durable = done
        self._durable_lineage = (epoch, generation)
        return [Send(Ack(self.aggregate, epoch, generation, done))]

    def connected(self) -> list[Action]:
        """A new connection: repeat the ACK of the durable position, which the
        old connection may have lost (the primary ignores it if stale)."""
        if self.durable == 0:
            return []
        return [Send(Ack(self.aggregate, *self._durable_lineage, self.durable))]

    def connection_lost(self) -> list[Action]:
        self._gap_reported = None
        if self._snapshot is None:
            return []
        self._snapshot = None
        return [SnapshotAbort()]

    def _refuse(self, reason: RefuseReason) -> Send:
        self.refused[reason.name.lower()] += 1
        epoch = self.highest_epoch if reason is RefuseReason.STALE_EPOCH else self.epoch
        return Send(Refuse(self.aggregate, reason, epoch, self.generation, self.received))

    def status(self) -> MirrorStatus:
        return MirrorStatus(
            self.aggregate, "replica", self.epoch, self.generation, self.received, self.durable,
            False, "snapshot" if self._snapshot is not None else "-", "-",
            self.received - self.durable, 0, 0, None, None, {}, False)
