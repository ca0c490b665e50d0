"""The replica's durable copy of one aggregate's handle store: the disk side
of ``replica_core.ReplicaMirror`` (issue 10 item 5; shared/reference/
cluster.md §7(a) "What is sent", "Handshake and resync").

``ReplicaStore`` carries out the replica actions on a ``KeyedLogEngine`` in
``<state_dir>/handles/<aggregate>/``; every method blocks on disk I/O, so the
driver calls them on a writer thread (one per store, in action order):

- ``ReplicaWrite(mseq, ops)`` → ``write(ops)``: the ops as one frame, one
  fdatasync.  The ops carry the primary's position record (META_KEY), so the
  copy's position moves in the same frame as its records.  The ACK is sent
  only after this returns (cumulative: the replica's log is ordered).
- ``SnapshotStart/Write`` → staged in memory (a snapshot is ≈ 330 bytes a
  record, 33 MB for 100 k opens); ``SnapshotInstall`` → ``install()``: one
  frame turns the copy into exactly the snapshot (puts, plus removes of
  keys the snapshot lacks), then a compaction writes it as a new log
  generation (tmp, fsync, rename, dir fsync).  A crash before the frame is
  durable leaves the old copy, after it the new one: never a mix.
  ``state.json`` records the new epoch (the highest this node has seen).
- ``SnapshotAbort`` → ``abort()``.

The position (``position()``) after ``open()`` is what ``ReplicaMirror`` is
constructed with.
"""

from smbcad.cluster.aggregate_state import (
    AggregateState, KeyedLogEngine, Step, copy_dir, position_of, read_state, replace_all,
    write_state)
from smbcad.cluster.mirror_core import (
    META_KEY, Action, ReplicaWrite, SnapshotAbort, SnapshotInstall, SnapshotStart, SnapshotWrite)
from smbcad.cluster.mirror_proto import Ops


class ReplicaStore:
    def __init__(self, state_dir: str, aggregate: str, *, on_step: Step | None = None,
                 preallocate_bytes: int = 4 << 20) -> None:
        self.state_dir = state_dir
        self.aggregate = aggregate
        self._engine = KeyedLogEngine(copy_dir(state_dir, aggregate),
                                      preallocate_bytes=preallocate_bytes,
                                      on_compaction_step=on_step)
        self._on_step = on_step
        self._keys: set[int] = set()
        self._position = (0, 0, 0)
        self._highest_epoch = 0
        self._staged: dict[int, bytes] | None = None

    def open(self) -> tuple[int, int, int]:
        """Recover the copy; returns its (epoch, generation, mseq)."""
        records = self._engine.load_keyed()
        self._keys = set(records)
        self._position = position_of(records)
        state = read_state(self.state_dir, self.aggregate)
        self._highest_epoch = max(self._position[0], state.highest_epoch if state else 0)
        return self._position

    @property
    def highest_epoch(self) -> int:
        return self._highest_epoch

    def position(self) -> tuple[int, int, int]:
        return self._position

    def holds(self, durable_file_id: int) -> bool:
        """Whether the partner's copy has an open with this DurableFileId (a
        new open here must never take one; set reads are atomic in CPython)."""
        return durable_file_id in self._keys

    def write(self, ops: Ops) -> None:
        changes = dict(ops)
        self._engine.write(changes)
        for key, blob in changes.items():
            if blob is None:
                self._keys.discard(key)
            else:
                self._keys.add(key)
        if META_KEY in changes:
            self._position = position_of(changes)

    def snapshot_start(self) -> None:
        self._staged = {}

    def snapshot_write(self, ops: Ops) -> None:
        if self._staged is None:
            raise RuntimeError("snapshot chunk without a snapshot")
        for key, blob in ops:
            if blob is not None:
                self._staged[key] = blob

    def install(self, epoch: int, generation: int, base_mseq: int) -> None:
        staged, self._staged = self._staged, None
        if staged is None:
            raise RuntimeError("snapshot install without a snapshot")
        if position_of(staged) != (epoch, generation, base_mseq):
            raise RuntimeError(f"snapshot position {position_of(staged)} is not "
                               f"{(epoch, generation, base_mseq)}")
        replace_all(self._engine, self._keys, staged)
        self._keys = set(staged)
        self._position = (epoch, generation, base_mseq)
        self._highest_epoch = max(epoch, self._highest_epoch)
        write_state(self.state_dir, self.aggregate, AggregateState(
            "replica", epoch, generation, base_mseq, False, self._highest_epoch), self._on_step)

    def abort(self) -> None:
        self._staged = None

    def apply(self, action: Action) -> bool:
        """Carry out one replica action; True if it completes (the driver then
        calls ``write_done``/``snapshot_installed``)."""
        match action:
            case ReplicaWrite(_, ops):
                self.write(ops)
                return True
            case SnapshotStart():
                self.snapshot_start()
            case SnapshotWrite(ops):
                self.snapshot_write(ops)
            case SnapshotInstall(epoch, generation, base):
                self.install(epoch, generation, base)
                return True
            case SnapshotAbort():
                self.abort()
            case _:
                raise TypeError(f"not a replica action: {action!r}")
        return False

    def close(self) -> None:
        self._engine.close()
