"""``ReplicaEndpoint``: the replica of one aggregate on this node, as the
mirror link sees it (issue 10 item 5; shared/reference/cluster.md §7(a)
"When the client is answered", "Ordering").

It runs on the link's connection thread (``mirror_wire``): the
``ReplicaMirror`` core takes each APPEND as the thread parses it, and once
the thread has handled everything one ``recv`` brought (``on_batch_end``),
the writes are carried out right there, consecutive ``ReplicaWrite``s as one
frame with one fdatasync, and one cumulative ACK goes out for the group.
APPENDs that arrive during the fdatasync wait in the socket and form the
next group (group commit, as on the primary).  No thread hop and no event
loop is on the path from the APPEND's arrival to its ACK.

Some writes go to a worker thread of the replica's own instead, which then
sends their ACK itself (one thread hop, still no event loop):

- a snapshot install (it writes every record, then a new log generation of
  them) must not stall the connection thread;
- while this node's own aggregates wait for ACKs on the same connection
  (``MirrorLink.may_write_inline`` is False: both nodes own aggregates and
  commit), an fdatasync on the connection thread would hold those ACKs in
  the socket behind it, so the write is handed over and the thread goes
  back to reading.

While the worker holds actions, every later action of this replica queues
behind them (disk actions keep their order) and the worker carries them out
and sends their ACKs; once it has caught up the connection thread writes
again.  (A write that sets off the log's own compaction, past 16 MB and 4x
the live records, still compacts on the thread that writes.)

The core is called from the connection thread, the worker and the loop
(``status``), so every call into it holds ``_lock``; the disk itself is
touched by one thread at a time (``_disk_lock``), never under ``_lock``.
After a failed write the replica never ACKs again: it unregisters and drops
the connection (the primary degrades or resyncs).
"""

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

from smbcad.cluster.mirror_core import Action, ReplicaWrite, Send, SnapshotInstall
from smbcad.cluster.mirror_proto import (
    Ack, AggregatePosition, Append, Message, Refuse, SnapshotBegin, SnapshotChunk, SnapshotEnd)
from smbcad.cluster.replica import ReplicaStore
from smbcad.cluster.replica_core import ReplicaMirror

log = logging.getLogger("smbcad.cluster")

_REPLICA_MESSAGES = (Append, SnapshotBegin, SnapshotChunk, SnapshotEnd)


class ReplicaEndpoint:
    """The replica of ``aggregate``: ``ReplicaMirror`` plus ``ReplicaStore``
    (module docstring).  ``link`` sends, unregisters and drops (any thread)."""

    def __init__(self, store: ReplicaStore, link, loop: asyncio.AbstractEventLoop) -> None:
        self.aggregate = store.aggregate
        self._store = store
        self._link = link
        self._loop = loop
        epoch, generation, mseq = store.position()
        self.core = ReplicaMirror(self.aggregate, epoch=epoch, generation=generation,
                                  mseq=mseq, highest_epoch=store.highest_epoch)
        self._worker = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"smbcad-replica-{self.aggregate}")
        self._lock = threading.Lock()            # the core, _queue, _worker_owns, _closed
        self._disk_lock = threading.Lock()       # the store: one writer at a time
        self._queue: deque[Action] = deque()     # disk actions not yet carried out, in order
        self._worker_owns = False                # the worker drains _queue until it is empty
        self._closed = False
        self.failure: BaseException | None = None

    @classmethod
    async def open(cls, state_dir: str, aggregate: str, link) -> "ReplicaEndpoint":
        store = ReplicaStore(state_dir, aggregate)
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(store.open)
        return cls(store, link, loop)

    # --- Endpoint (the connection thread; on_connected also the loop) ----------------

    def position(self) -> AggregatePosition:
        with self._lock:
            return self.core.position()

    def on_connected(self, peer: AggregatePosition) -> None:
        self._take(self.core.connected)          # an ACK only: nothing for the disk

    def on_message(self, message: Message) -> None:
        if self.failure is not None:
            return                   # never ACK after a failed write
        if isinstance(message, _REPLICA_MESSAGES):
            self._take(lambda: self.core.received_message(message))
        elif isinstance(message, (Ack, Refuse)):
            log.warning("%s: %s for a replica", self.aggregate, type(message).__name__)

    def on_connection_lost(self) -> None:
        self._take(self.core.connection_lost)
        self.on_batch_end()

    def on_batch_end(self) -> None:
        """Carry out what the messages just handled asked for: here, or on
        the worker (module docstring)."""
        inline = self._link.may_write_inline()
        with self._lock:
            if self._worker_owns or not self._queue or self._closed or self.failure:
                return
            if not inline or any(isinstance(action, SnapshotInstall)
                                 for action in self._queue):
                self._worker_owns = True
                self._worker.submit(self._work)
                return
            queued = list(self._queue)
            self._queue.clear()
        self._carry_out(queued)

    def waits_for_acks(self) -> bool:
        return False

    # --- carrying out the core's actions -------------------------------------------

    def _take(self, step) -> None:
        """One core step under the lock: sends go out now, disk actions queue."""
        with self._lock:
            actions = step()
            sends = []
            for action in actions:
                if isinstance(action, Send):
                    sends.append(action.message)
                else:
                    self._queue.append(action)
        for message in sends:
            self._link.send(message)

    def _work(self) -> None:
        """Worker thread: drain the queue, then leave it to the connection thread."""
        while True:
            with self._lock:
                if not self._queue or self._closed or self.failure is not None:
                    self._worker_owns = False
                    return
                queued = list(self._queue)
                self._queue.clear()
            self._carry_out(queued)

    def _carry_out(self, queued: list[Action]) -> None:
        """Write ``queued`` in order, consecutive ReplicaWrites as one frame
        (one fdatasync); then the core's completions and one ACK (cumulative:
        the last says it all)."""
        completed: list[Action] = []
        try:
            with self._disk_lock:
                if self._closed:
                    return
                for group in _groups(queued):
                    if isinstance(group, list):
                        self._store.write(tuple(chain.from_iterable(
                            write.ops for write in group)))
                        completed.extend(group)
                    elif self._store.apply(group):
                        completed.append(group)
        except Exception as exc:            # noqa: BLE001 - any failure: the copy is unknown
            self._failed(exc)
            return
        if not completed:
            return
        with self._lock:
            sends: list[Action] = []
            for action in completed:
                if isinstance(action, ReplicaWrite):
                    sends.extend(self.core.write_done(action.mseq))
                else:
                    sends.extend(self.core.snapshot_installed())
        if sends:
            self._link.send(sends[-1].message)

    def _failed(self, exc: BaseException) -> None:
        log.error("%s: replica write failed, the replica stops: %s", self.aggregate, exc)
        with self._lock:
            self.failure = exc
            self._queue.clear()
        self._link.unregister(self.aggregate)
        self._link.drop(f"{self.aggregate}: replica write failed")

    # --- the loop ----------------------------------------------------------------------

    def status(self):
        with self._lock:
            return self.core.status()

    def holds(self, durable_file_id: int) -> bool:
        return self._store.holds(durable_file_id)

    async def close(self) -> None:
        self._link.unregister(self.aggregate)
        await asyncio.to_thread(self._close_store)
        self._worker.shutdown(wait=True)

    def _close_store(self) -> None:
        """Once no write is in progress (the connection thread may be in one)."""
        with self._lock:
            self._closed = True
            self._queue.clear()
        with self._disk_lock:
            self._store.close()


def _groups(actions: list[Action]) -> list[Action | list[ReplicaWrite]]:
    """``actions`` in order, each run of consecutive ReplicaWrites as one list."""
    groups: list[Action | list[ReplicaWrite]] = []
    for action in actions:
        if isinstance(action, ReplicaWrite):
            if groups and isinstance(groups[-1], list):
                groups[-1].append(action)
            else:
                groups.append([action])
        else:
            groups.append(action)
    return groups
