"""A primary and a replica mirror wired together (h11's ConnectionPair idea,
STYLE rule 14): real state machines, messages through the real codec, and
in-memory "disks" that only change when a disk action is carried out.  Each
queue (network both ways, local log, journal, marker, replica log) is
drained one step at a time by the test, so any interleaving can be played,
and a crash drops exactly what was not yet carried out."""

from collections import deque

from smbcad.cluster import mirror_core as mc
from smbcad.cluster import replica_core as rc
from smbcad.cluster import mirror_proto as mp

AGG = "aggr1"


def apply_ops(image: dict, ops) -> None:
    for key, blob in ops:
        if blob is None:
            image.pop(key, None)
        else:
            image[key] = blob


def adopt(marker, journal, replica):
    """The next owner's rule (aggregate_state.load_for_adoption, on dicts):
    the records it would adopt, or a refusal string."""
    if marker is not None and not marker[2]:
        if journal is None:
            return "marker says outdated and there is no journal"
        return dict(journal)
    return dict(replica)


class World:
    def __init__(self, ack_timeout_s=1.0, window_frames=8):
        self.now = 0.0
        self.primary = mc.PrimaryMirror(AGG, epoch=1, generation=1, mseq=0, image={},
                                        outdated=False, ack_timeout_s=ack_timeout_s,
                                        window_frames=window_frames)
        self.primary.start(self.now)
        self.replica = rc.ReplicaMirror(AGG, epoch=0, generation=0, mseq=0)
        self.replica_disk: dict = {}
        self.snapshot_tmp: dict | None = None
        self.journal_disk: dict | None = None
        self.marker_disk: tuple | None = None
        self.connected = False
        self.to_replica: deque = deque()
        self.to_primary: deque = deque()
        self.local_q: deque = deque()
        self.journal_q: deque = deque()
        self.marker_q: deque = deque()
        self.replica_q: deque = deque()
        self.timer: float | None = None
        self.local_disk: dict = {}
        # (generation, mseq) -> the store's records (no META_KEY) at that point of
        # that lineage; a snapshot's base names the same state in the new lineage.
        self.states = {(0, 0): {}, (1, 0): {}}
        self.last_key = (1, 0)
        self.max_generation = 1
        self.answered = 0              # highest mseq whose callers were answered
        self.last_submitted = 0        # by this incarnation of the primary
        self.fenced = False
        self.actions_seen: list = []

    # --- primary side ----------------------------------------------------------------

    def commit(self, changes: dict) -> int:
        mseq, ops, actions = self.primary.submit(changes, self.now)
        image = dict(self.states[self.last_key])
        apply_ops(image, ((k, v) for k, v in ops if k != mc.META_KEY))
        self.last_key = (self.primary.generation, mseq)
        self.states[self.last_key] = image
        self.local_q.append((mseq, ops))
        self.last_submitted = mseq
        self._primary_actions(actions)
        return mseq

    def _primary_actions(self, actions) -> None:
        for action in actions:
            self.actions_seen.append(action)
            match action:
                case mc.Send(message):
                    if isinstance(message, mp.SnapshotBegin):
                        key = (message.generation, message.base_mseq)
                        self.states[key] = self.states[self.last_key]
                        self.last_key = key
                        self.max_generation = max(self.max_generation, message.generation)
                    if self.connected:
                        self.to_replica.append(_wire(message))
                case mc.DropConnection():
                    self.disconnect()
                case mc.SetTimer(at):
                    self.timer = at
                case mc.JournalReset() | mc.JournalAppend() | mc.DeleteJournal():
                    self.journal_q.append(action)
                case mc.WriteMarker():
                    self.marker_q.append(action)
                case mc.CommitDone(mseq):
                    assert mseq > self.answered, "commits complete in order"
                    self.answered = mseq
                case mc.Fenced():
                    self.fenced = True
                case _:
                    raise AssertionError(f"unexpected primary action {action}")

    def local_step(self) -> bool:
        if not self.local_q:
            return False
        mseq, ops = self.local_q.popleft()
        apply_ops(self.local_disk, ops)
        self._primary_actions(self.primary.local_done(mseq, self.now))
        return True

    def journal_step(self) -> bool:
        if not self.journal_q:
            return False
        action = self.journal_q.popleft()
        match action:
            case mc.JournalReset(records, mseq):
                self.journal_disk = dict(records)
                self._primary_actions(self.primary.journal_reset_done(mseq, self.now))
            case mc.JournalAppend(mseq, ops):
                assert self.journal_disk is not None, "append to a journal never reset"
                apply_ops(self.journal_disk, ops)
                self._primary_actions(self.primary.journal_appended(mseq, self.now))
            case mc.DeleteJournal():
                self.journal_disk = None
        return True

    def marker_step(self) -> bool:
        if not self.marker_q:
            return False
        action = self.marker_q.popleft()
        self.marker_disk = (action.epoch, action.generation, action.in_sync)
        self._primary_actions(self.primary.marker_written(self.now))
        return True

    def to_primary_step(self) -> bool:
        if not self.to_primary:
            return False
        self._primary_actions(self.primary.received(_wire(self.to_primary.popleft()),
                                                    self.now))
        return True

    def advance(self, seconds: float) -> None:
        self.now += seconds
        if self.timer is not None and self.timer <= self.now:
            self.timer = None
            self._primary_actions(self.primary.tick(self.now))

    # --- replica side ----------------------------------------------------------------

    def _replica_actions(self, actions) -> None:
        for action in actions:
            self.actions_seen.append(action)
            if isinstance(action, mc.Send):
                if self.connected:
                    self.to_primary.append(_wire(action.message))
            else:
                self.replica_q.append(action)

    def to_replica_step(self) -> bool:
        if not self.to_replica:
            return False
        self._replica_actions(self.replica.received_message(_wire(self.to_replica.popleft())))
        return True

    def replica_disk_step(self) -> bool:
        if not self.replica_q:
            return False
        action = self.replica_q.popleft()
        match action:
            case mc.ReplicaWrite(mseq, ops):
                apply_ops(self.replica_disk, ops)
                self._replica_actions(self.replica.write_done(mseq))
            case mc.SnapshotStart():
                self.snapshot_tmp = {}
            case mc.SnapshotWrite(ops):
                apply_ops(self.snapshot_tmp, ops)
            case mc.SnapshotInstall():
                self.replica_disk, self.snapshot_tmp = self.snapshot_tmp, None
                self._replica_actions(self.replica.snapshot_installed())
            case mc.SnapshotAbort():
                self.snapshot_tmp = None
            case _:
                raise AssertionError(f"unexpected replica action {action}")
        return True

    # --- the link and crashes ----------------------------------------------------------

    def connect(self) -> None:
        if self.connected or self.fenced:
            return
        self.connected = True
        self._primary_actions(self.primary.connected(_wire_position(self.replica.position()),
                                                     self.now))
        self._replica_actions(self.replica.connected())

    def disconnect(self) -> None:
        if not self.connected:
            return
        self.connected = False
        self.to_replica.clear()
        self.to_primary.clear()
        self._primary_actions(self.primary.connection_lost(self.now))
        self._replica_actions(self.replica.connection_lost())

    def partner_lost(self) -> None:
        self.disconnect()
        self._primary_actions(self.primary.partner_lost(self.now))

    def crash_replica(self) -> None:
        self.disconnect()
        self.replica_q.clear()
        self.snapshot_tmp = None
        meta = self.replica_disk.get(mc.META_KEY)
        epoch, generation, mseq = mc.decode_position(meta) if meta else (0, 0, 0)
        self.replica = rc.ReplicaMirror(AGG, epoch=epoch, generation=generation, mseq=mseq)

    def pump(self, local: bool = False) -> None:
        """Run the network and the replica (and the local log if asked) until
        they stop; the journal and the marker wait."""
        while (self.to_replica_step() or self.replica_disk_step() or self.to_primary_step()
               or (local and self.local_step())):
            pass

    def restart_primary(self) -> None:
        """smbcad on the owner killed and started again on the same node: it
        recovers its local log and starts with a generation never used."""
        self.disconnect()
        self.local_q.clear(), self.journal_q.clear(), self.marker_q.clear()
        self.timer = None
        meta = self.local_disk.get(mc.META_KEY)
        epoch, generation, mseq = mc.decode_position(meta) if meta else (1, 0, 0)
        image = {k: v for k, v in self.local_disk.items() if k != mc.META_KEY}
        assert image == self.states[(generation, mseq) if meta else (0, 0)]
        self.max_generation += 1
        self.last_submitted = 0
        self.last_key = (self.max_generation, mseq)
        self.states[self.last_key] = image
        self.primary = mc.PrimaryMirror(
            AGG, epoch=epoch, generation=self.max_generation, mseq=mseq, image=self.local_disk,
            outdated=self.marker_disk is not None and not self.marker_disk[2],
            ack_timeout_s=self.primary.ack_timeout_s, window_frames=self.primary.window_frames)
        self._primary_actions(self.primary.start(self.now))

    def heal(self, rounds: int = 200) -> None:
        """Connect and run every queue until nothing moves."""
        self.connect()
        for _ in range(rounds):
            moved = False
            for step in (self.local_step, self.journal_step, self.marker_step,
                         self.to_replica_step, self.replica_disk_step, self.to_primary_step):
                while step():
                    moved = True
            if not moved:
                return
        raise AssertionError("the mirror did not settle")

    def adopted(self):
        return adopt(self.marker_disk, self.journal_disk, self.replica_disk)


def _wire(message):
    """Every message goes through its codec, as on a real connection."""
    return type(message).decode(memoryview(message.encode()))


def _wire_position(position):
    hello = mp.Hello("n", bytes(32), 0, (position,))
    return mp.Hello.decode(memoryview(hello.encode())).aggregates[0]
