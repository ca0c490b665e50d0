"""``MirroredEngine``: the handle store's Engine for an aggregate this node
owns, "durable locally and acknowledged by the partner's durable copy"
(issue 10 item 5; shared/reference/cluster.md §7(a) "When the client is
answered (protocol C, in parallel)").

``LocalHandleStore(MirroredEngine(...))`` keeps group commit unchanged.  The
engine is a ``SplitEngine`` (``smbcad.store.interface``): per batch,

1. ``begin`` (event loop) gives the batch to the ``PrimaryMirror`` (its mseq,
   and the position record added to its ops) and sends the APPEND at once,
   so the partner's write runs in parallel with ours;
2. ``write_local`` (the store's writer thread) writes the ops to the local
   ``KeyedLogEngine`` (pwrite + fdatasync);
3. ``finish`` (event loop) reports the local write to the core; the batch
   is done at once if its ACK came during the local write, else it waits
   for its ``CommitDone``: the ACK, or the degrade path (journal reset,
   "outdated" marker, journal appends; on a journal thread of its own).
   The wait is bounded by ``ack_timeout_s + degrade_budget_s``; past it, or
   if a journal/marker write fails (a fenced LUN) or the partner reports a
   higher epoch, ``finish`` raises StoreFailed and the store is poisoned:
   nothing is acknowledged that the next owner cannot see.

The ACK is read and given to the core on the link's connection thread
(``mirror_wire``), which then wakes the loop once for everything one read
brought (``on_batch_end``): the same ``call_soon_threadsafe`` by which the
writer thread wakes the loop after a local-only write.  So a commit costs
the thread hops of a local one (loop → writer → loop), and a third wake-up
(connection thread → loop) only when the ACK comes after the local write.

The core is not thread-safe and is called from four threads (the loop, the
connection thread, the journal thread, the writer thread in ``load``), so
every call into it holds one lock.  What its actions ask of the loop (sends,
timers, drops, resolving a batch's future) goes into one FIFO outbox under
that lock and runs on the loop in the order the core issued it: at once
when the core was called on the loop, else through one
``loop.call_soon_threadsafe``.

``load()`` recovers the local copy, takes a never-used generation (a fresh
2^32 block per start, in ``state.json`` before use) and starts the core; if
the marker says outdated, the journal is first rewritten with the local
image (``PrimaryMirror.start``).

Measured on this 2-core VM (one virtio disk, partner process on
127.0.0.1, ``--pin``: this process on CPU 0, the partner on CPU 1; load
average 1.5-1.8 from other work; ``bench/mirror_bench.py --repeat 1`` six
times, interleaved with the previous design, where the partner's event loop
read the APPEND, handed it to a writer thread and took its completion back
to send the ACK; p50 medians, ratio to local-only in brackets):

=================  ==========  ================  ================
p50                local only  mirrored before   mirrored now
=================  ==========  ================  ================
partner's copy on the same disk
lone commit        278-280 µs  476 µs (1.72x)    434 µs (1.55x)
CREATE+CLOSE       522-540 µs  934 µs (1.72x)    860 µs (1.64x)
16 committers      28 k/s      19.4 k/s          20.3 k/s
partner's copy on /dev/shm (a partner whose fsync is not behind ours)
lone commit        280-290 µs  414 µs (1.43x)    381 µs (1.38x)
CREATE+CLOSE       514-541 µs  784 µs (1.51x)    762 µs (1.41x)
16 committers      27 k/s      21.2 k/s          21.9 k/s
=================  ==========  ================  ================

Where a lone commit's time goes now (``bench/mirror_hops.py --pin``, medians
of 1000 commits, µs since the caller's await; local only: write starts at
40, durable at 229, answered at 260):

- here, before any write starts (both copies): begin at 33 (the store's
  own part, as in local only), APPEND on the wire at 81: the engine and core
  11, encoding and MAC ~5, the loopback send() ~25-31 (it delivers to the
  partner and wakes its idle CPU); the local write starts at 108, 68 later
  than local only (this CPU does all of it, in series);
- the partner: the APPEND is read at 99 and its write starts at 127 (recv,
  parse and MAC check, core: ~28), and it sends the ACK ~4 after its
  fdatasync (no hop: the connection thread does all of it; before, 108 of
  the partner's receive-to-ACK time were not the write, now ~71 including
  the ACK's send());
- same disk: the partner's copy is durable at 282 (its fdatasync runs with
  ours on one disk), ours at 334; the ACK leaves at 323 (send() 35: it wakes
  this idle CPU), is read at 351, parsed at 376, the loop resumes the batch
  at 407 and answers at 425.  So the commit pays local only's 260, plus 68
  before the writes start, plus the way back after the partner's write
  (143 against local only's 30 after its own);
- /dev/shm: the ACK is parsed at 202, before our write is durable (295);
  answered at 349: the 68 before the write plus ~20 in ``finish``.

The 1.3x target is not met on this machine: with the partner's copy on the
same disk ~1.55x, on /dev/shm ~1.38x (1.29x in the best runs).  What remains
is no longer a thread hop but (1) two loopback send()s that each wake an
idle vCPU (~25-35 µs each here; a NIC's send returns without running the
receiver) plus two wake-ups of a sleeping thread on the receiving side
(~15-28 µs), and (2) ~40 µs of CPU in Python per round trip (engine, core,
MAC and codec on both sides, the partner's log write), which on this VM
shows as ~70 µs of wall time.  The target needs two machines (own disk,
own cores, a NIC) or that per-frame work out of Python (the framing, MAC
and log write in C, one syscall each way).

The engine is the link's ``Endpoint`` for this aggregate (``position``,
``on_connected``, ``on_message``, ``on_batch_end``, ``on_connection_lost``,
``waits_for_acks``), and the ack timer runs on the loop (``SetTimer`` →
``loop.call_later`` → ``tick``; a timer that fires earlier than asked is
kept, so a run of commits arms one timer a second, not one each).
"""

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from smbcad.cluster import aggregate_state as ags
from smbcad.cluster.mirror_core import (
    DEFAULT_ACK_TIMEOUT_S, META_KEY, Action, CommitDone, DeleteJournal, DropConnection, Fenced,
    JournalAppend, JournalReset, MirrorFenced, MirrorStatus, PrimaryMirror, Send, SetTimer,
    WriteMarker)
from smbcad.cluster.mirror_link import MirrorLink
from smbcad.cluster.mirror_proto import AggregatePosition, Message, Ops
from smbcad.store.errors import StoreFailed

log = logging.getLogger("smbcad.cluster")

GENERATION_BLOCK_BITS = 32


class MirroredEngine:
    """SplitEngine (``smbcad.store.interface``) for aggregate ``aggregate``:
    the local copy in ``<state_dir>/handles/<aggregate>/``, the marker and
    the journal under ``mount_point``, the partner through ``link``."""

    name = "mirrored-log"

    def __init__(self, *, state_dir: str, aggregate: str, mount_point: str, link: MirrorLink,
                 partition: str = "",
                 loop: asyncio.AbstractEventLoop, ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
                 degrade_budget_s: float = 30.0, window_frames: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 preallocate_bytes: int = 4 << 20) -> None:
        self.aggregate = aggregate
        self.state_dir = state_dir
        self.mount_point = mount_point
        self.partition = partition                  # a worker's (aggregate_state)
        self.ack_timeout_s = ack_timeout_s
        self.degrade_budget_s = degrade_budget_s
        self._local = ags.KeyedLogEngine(ags.copy_dir(state_dir, aggregate),
                                         preallocate_bytes=preallocate_bytes)
        self._link = link
        self._loop = loop
        self._clock = clock
        self._window_frames = window_frames
        self._lock = threading.Lock()
        self._core: PrimaryMirror | None = None
        self._journal = ags.Journal(mount_point, partition=partition)
        self._disk = ThreadPoolExecutor(max_workers=1,
                                        thread_name_prefix=f"smbcad-journal-{aggregate}")
        self._waiters: dict[int, asyncio.Future] = {}
        self._outbox: deque[Callable[[], object]] = deque()
        self._drain_scheduled = False      # a _drain is queued on the loop
        self._deadline: float | None = None
        self._failure: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0               # when _timer fires (the clock's time)
        self._closed = False

    # --- SplitEngine ---------------------------------------------------------------------

    def load(self) -> Iterable[bytes]:
        """Writer thread: recover the local copy and start the mirror from its
        position.  After ``commit_adoption`` the copy holds the new epoch and
        the marker says outdated (the journal holds everything)."""
        records = self._local.load_keyed()
        epoch, generation, mseq = ags.position_of(records)
        try:
            marker = ags.read_marker(self.mount_point, self.partition)
        except ags.MarkerUnreadable as exc:
            raise StoreFailed(str(exc)) from exc
        generation = self._fresh_generation(epoch, generation, mseq)
        kwargs = {} if self._window_frames is None else {"window_frames": self._window_frames}
        core = PrimaryMirror(self.aggregate, epoch=epoch, generation=generation, mseq=mseq,
                             image=records, outdated=marker is not None and not marker.in_sync,
                             ack_timeout_s=self.ack_timeout_s, **kwargs)
        with self._lock:
            self._core = core
            self._dispatch(core.start(self._clock()))
            self._outbox.append(partial(self._link.register, self))
        self._loop.call_soon_threadsafe(self._drain)
        return [blob for key, blob in records.items() if key != META_KEY]

    def _fresh_generation(self, epoch: int, generation: int, mseq: int) -> int:
        """A generation no earlier start of this node can have sent: the next
        block of 2^32 above any recorded, written to state.json before use
        (snapshots within this start count up inside the block)."""
        state = ags.read_state(self.state_dir, self.aggregate)
        used = max(generation, state.generation if state else 0)
        fresh = ((used >> GENERATION_BLOCK_BITS) + 1) << GENERATION_BLOCK_BITS
        ags.write_state(self.state_dir, self.aggregate, ags.AggregateState(
            "primary", epoch, fresh, mseq, False,
            max(epoch, state.highest_epoch if state else 0)))
        return fresh

    def begin(self, changes: Mapping[int, bytes | None]) -> "_Batch":
        """Loop thread: number the batch and send its APPEND now, before the
        local write starts: the partner's path (round trip + its fsync) is
        the longer one, so it starts first.  Measured the other way round
        (the send queued behind the hand-off to the writer thread;
        ``bench/mirror_hops.py --pin``): the writer thread takes the core
        first, the APPEND leaves ~80 µs later and a lone commit took ~35 µs
        longer with the partner's copy on /dev/shm and ~40 µs longer on the
        same disk."""
        with self._lock:
            self._check()
            try:
                mseq, ops, actions = self._core.submit(changes, self._clock())
            except MirrorFenced as exc:
                raise StoreFailed(str(exc)) from exc
            done = self._loop.create_future()
            self._waiters[mseq] = done
            self._dispatch(actions)
        self._drain()
        return _Batch(self, mseq, ops, done)

    def _finish(self, batch: "_Batch") -> Awaitable[None]:
        """Loop thread, once the batch is durable here: done at once if its
        ACK came during the local write (else wait for it, or the journal).
        A plain future, no ``wait_for``: the wake-up on the ACK costs what
        the local-only path's does; the budget is a timer armed only when
        the batch must wait."""
        mseq = batch.mseq
        self._call(lambda now: self._core.local_done(mseq, now), on_loop=True)
        if batch.done.done():
            with self._lock:
                self._waiters.pop(mseq, None)
                self._check()
            return batch.done
        return self._wait(batch)

    async def _wait(self, batch: "_Batch") -> None:
        mseq = batch.mseq
        budget = self.ack_timeout_s + self.degrade_budget_s
        overdue = self._loop.call_later(budget, self._overdue, mseq, budget)
        try:
            await batch.done
        finally:
            overdue.cancel()
            with self._lock:
                self._waiters.pop(mseq, None)
        with self._lock:
            self._check()

    def _overdue(self, mseq: int, budget: float) -> None:
        self._fail(StoreFailed(f"{self.aggregate}: batch {mseq} neither acknowledged nor "
                               f"journaled within {budget} s"))

    def close(self) -> None:
        with self._lock:
            self._closed = True      # a late timer or ACK finds nothing to do
        self._loop.call_soon_threadsafe(self._link.unregister, self.aggregate)
        self._disk.shutdown(wait=True)
        self._journal.close()
        self._local.close()

    # --- status ----------------------------------------------------------------------

    def status(self) -> MirrorStatus | None:
        """None until ``load`` has recovered the copy (an adoption in progress)."""
        with self._lock:
            return None if self._core is None else self._core.status()

    # --- Endpoint (the link's connection thread; on_connected also the loop) ----------

    def position(self) -> AggregatePosition:
        with self._lock:
            return self._core.position()

    def on_connected(self, peer: AggregatePosition) -> None:
        self._call(lambda now: self._core.connected(peer, now), on_loop=False)

    def on_message(self, message: Message) -> None:
        """An ACK or REFUSE: the core takes it here; what it asks of the loop
        (resolving the batch, a send) waits for ``on_batch_end``."""
        with self._lock:
            if self._failure is None and not self._closed:
                self._dispatch(self._core.received(message, self._clock()))

    def on_batch_end(self) -> None:
        self._wake(on_loop=False)          # one loop wake-up for all ACKs of one read

    def on_connection_lost(self) -> None:
        self._call(self._core.connection_lost, on_loop=False)

    def waits_for_acks(self) -> bool:
        return bool(self._waiters)

    def partner_lost(self) -> None:
        """clusdisk says the partner is dead: degrade now if anything waits
        (any thread)."""
        self._call(self._core.partner_lost, on_loop=False)

    # --- the core and its actions ---------------------------------------------------------

    def _call(self, step: Callable[[float], list[Action]], *, on_loop: bool) -> None:
        with self._lock:
            if self._failure is None and not self._closed:
                self._dispatch(step(self._clock()))
        self._wake(on_loop)

    def _wake(self, on_loop: bool) -> None:
        """Run the outbox: now on the loop, else through one loop wake-up
        (none if one is already on its way)."""
        if on_loop:
            self._drain()
            return
        with self._lock:
            if not self._outbox or self._drain_scheduled:
                return
            self._drain_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            pass                           # the loop is closed: nobody waits any more

    def _drain(self) -> None:
        """Loop thread: what the core asked of the loop, in the order asked.
        One item at a time, so an item that calls the core again (register →
        on_connected) queues behind the ones already waiting."""
        while True:
            with self._lock:
                if not self._outbox:
                    self._drain_scheduled = False
                    return
                item = self._outbox.popleft()
            item()

    def _dispatch(self, actions: list[Action]) -> None:
        """Under the lock: carry out (or queue, in order) what the core asked."""
        for action in actions:
            match action:
                case Send(message):
                    self._outbox.append(partial(self._link.send, message))
                case SetTimer(at):
                    self._deadline = at
                    self._outbox.append(self._arm)
                case CommitDone(mseq):
                    done = self._waiters.get(mseq)
                    if done is not None:
                        self._outbox.append(partial(_resolve, done))
                case JournalReset() | JournalAppend() | WriteMarker() | DeleteJournal():
                    self._disk.submit(self._disk_action, action)
                case DropConnection(reason):
                    self._outbox.append(partial(self._link.drop, reason))
                case Fenced(reason):
                    self._fail_locked(StoreFailed(f"fenced: {reason}"))
                case _:
                    raise AssertionError(f"unexpected primary action {action!r}")

    def _disk_action(self, action: Action) -> None:
        """Journal thread: journal and marker writes, in the order issued."""
        try:
            match action:
                case JournalReset(records, mseq):
                    self._journal.reset(records)
                    self._call(lambda now: self._core.journal_reset_done(mseq, now),
                               on_loop=False)
                case JournalAppend(mseq, ops):
                    self._journal.append(ops)
                    self._call(lambda now: self._core.journal_appended(mseq, now),
                               on_loop=False)
                case WriteMarker(epoch, generation, in_sync):
                    ags.write_marker(self.mount_point, ags.Marker(epoch, generation, in_sync),
                                     partition=self.partition)
                    log.info("%s: marker written: epoch %d generation %d %s",
                             self.aggregate, epoch, generation,
                             "in sync" if in_sync else "OUTDATED")
                    self._call(self._core.marker_written, on_loop=False)
                case DeleteJournal():
                    self._journal.delete()
        except Exception as exc:         # noqa: BLE001 - a fenced LUN or a dead disk
            self._fail(StoreFailed(f"{self.aggregate}: {type(action).__name__} failed: {exc}"),
                       on_loop=False)

    def _arm(self) -> None:
        """Loop thread: one ack timer, at the latest SetTimer's deadline (the
        outbox may run an older SetTimer's item after a newer one was set).
        A timer already armed no later than that stays: an early ``tick``
        changes nothing but asks for the timer again, so a run of commits
        costs one timer a second instead of one each."""
        with self._lock:
            at = self._deadline
        if self._timer is not None:
            if at is not None and self._timer_at <= at:
                return
            self._timer.cancel()
            self._timer = None
        if at is not None:
            self._timer_at = at
            self._timer = self._loop.call_later(max(0.0, at - self._clock()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._call(self._core.tick, on_loop=True)

    def _fail(self, exc: BaseException, *, on_loop: bool = True) -> None:
        with self._lock:
            self._fail_locked(exc)
        self._wake(on_loop)

    def _fail_locked(self, exc: BaseException) -> None:
        if self._failure is None:
            log.error("%s: mirrored store failed: %s", self.aggregate, exc)
            self._failure = exc
        for done in self._waiters.values():
            self._outbox.append(partial(_resolve, done))

    def _check(self) -> None:
        if self._failure is not None:
            raise StoreFailed(f"{self.aggregate}: {self._failure}")


class _Batch:
    """One group commit between ``begin`` and ``finish`` (BegunCommit)."""

    __slots__ = ("engine", "mseq", "ops", "done")

    def __init__(self, engine: MirroredEngine, mseq: int, ops: Ops,
                 done: asyncio.Future) -> None:
        self.engine, self.mseq, self.ops, self.done = engine, mseq, ops, done

    def write_local(self) -> None:
        self.engine._local.write(dict(self.ops))     # raises StoreFailed: the store is poisoned

    def finish(self) -> Awaitable[None]:
        return self.engine._finish(self)


def _resolve(done: asyncio.Future) -> None:
    if not done.done():
        done.set_result(None)
