"""``LocalHandleStore``: the HandleStore on one local ``Engine``, with group commit.

The event loop owns the in-memory table (every live record, decoded, with an
index by CreateGuid and the set of disconnected opens), so reads and the
compare-and-set check never leave the loop.  A change is validated, applied to
the table, encoded and queued, all before the caller's first ``await``; so
changes take effect in call order.  The queue goes to the engine as one
batch on a single writer thread (a one-thread pool: SQLite connections are
thread-bound, and one writer at a time is the point), whose end comes back
to the loop as one callback that resolves the callers' futures.  Whatever queues up
while the engine is writing and syncing goes out together in the next batch:
concurrent commits share one fsync, and a lone commit waits for nobody.
Within a batch, later changes to one record replace earlier ones.

The event loop never waits on the disk: encoding (a few µs per record) runs on
the loop, the write and the fsync on the writer thread.

A ``SplitEngine`` (the partner mirror) gets each batch on the loop first
(``begin``: the APPEND leaves before the local write starts), then its local
write on the writer thread, then ``finish`` on the loop (waits for the
partner's ACK there): the same two thread hops per batch as a plain Engine.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from smbcad.store.errors import RecordExists, RecordNotFound, StoreFailed, VersionConflict
from smbcad.store.interface import Engine, SplitEngine, StoreStats
from smbcad.store.records import (
    ZERO_GUID, PersistentOpen, decode, encode, with_record_version)

log = logging.getLogger("smbcad.store")

_U64_LIMIT = 1 << 64


class LocalHandleStore:
    """HandleStore (``smbcad.store.interface``) backed by an Engine on local disk.

    Build it with ``await LocalHandleStore.open(engine)``; the daemon creates
    one and injects it into the server.  ``on_commit`` hears the duration of
    every group commit (the daemon's commit-latency histogram).
    """

    def __init__(self, engine: Engine | SplitEngine, executor: ThreadPoolExecutor,
                 loop: asyncio.AbstractEventLoop, records: Sequence[PersistentOpen],
                 on_commit: Callable[[float], None] | None = None) -> None:
        self._engine = engine
        self._on_commit = on_commit
        # A SplitEngine's batch starts on the loop (module docstring).
        self._begin = getattr(engine, "begin", None)
        self._executor = executor
        self._loop = loop
        self._records: dict[int, PersistentOpen] = {}
        self._by_create_guid: dict[bytes, list[int]] = {}
        self._disconnected: set[int] = set()
        self._pending: dict[int, bytes | None] = {}
        self._waiters: list[asyncio.Future] = []
        self._pending_commits = 0
        self._writing = False      # a batch is with the writer thread (or the partner)
        self._failure: BaseException | None = None
        self._shut = False
        self._commits = self._batches = self._written = self._max_batch = 0
        for record in records:
            if record.durable_file_id in self._records:
                raise StoreFailed(f"{engine.name}: open {record.durable_file_id:#x} "
                                  "stored twice")
            self._index(record)

    @classmethod
    async def open(cls, engine: Engine | SplitEngine,
                   on_commit: Callable[[float], None] | None = None) -> "LocalHandleStore":
        """Recover the engine's records (on the writer thread) and serve them."""
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smbcad-store")
        try:
            records = await loop.run_in_executor(executor, _load, engine)
            return cls(engine, executor, loop, records, on_commit)
        except BaseException:
            await loop.run_in_executor(executor, engine.close)
            executor.shutdown(wait=False)
            raise

    # --- HandleStore verbs ------------------------------------------------------------

    async def create(self, record: PersistentOpen) -> PersistentOpen:
        stored, durable = self._create(record)
        await durable
        return stored

    def begin_create(self, record: PersistentOpen) -> asyncio.Future:
        """``create`` started now, in the caller's turn of the loop: its commit
        is queued and the future is done once the record is durable.  A
        request that waits on it needs no task (issue 14 item 6)."""
        return self._started(self._create, record)

    def _create(self, record: PersistentOpen) -> tuple[PersistentOpen, asyncio.Future]:
        self._check_usable()
        key = record.durable_file_id
        if not 0 < key < _U64_LIMIT:
            raise ValueError(f"DurableFileId {key!r} is not a non-zero u64")
        if key in self._records:
            raise RecordExists(f"open {key:#x} already stored")
        stored = with_record_version(record, 1)
        blob = encode(stored)
        self._index(stored)
        return stored, self._commit({key: blob}, 1)

    async def update(self, record: PersistentOpen) -> PersistentOpen:
        return (await self.update_many((record,)))[0]

    async def update_many(self, records: Sequence[PersistentOpen]) -> tuple[PersistentOpen, ...]:
        self._check_usable()
        if not records:
            return ()
        seen = set()
        for record in records:
            self._check_version(record.durable_file_id, record.record_version)
            if record.durable_file_id in seen:
                raise ValueError(f"open {record.durable_file_id:#x} twice in one update")
            seen.add(record.durable_file_id)
        stored = tuple(with_record_version(record, record.record_version + 1)
                       for record in records)
        changes = {record.durable_file_id: encode(record) for record in stored}
        for record in stored:
            self._unindex(record.durable_file_id)
            self._index(record)
        await self._commit(changes, len(stored))
        return stored

    async def close(self, durable_file_id: int, *,
                    record_version: int | None = None) -> PersistentOpen | None:
        removed, durable = self._close(durable_file_id, record_version)
        if durable is not None:
            await durable
        return removed

    def begin_close(self, durable_file_id: int) -> asyncio.Future:
        """``close`` started now (see ``begin_create``); done at once when the
        open was not stored."""
        return self._started(lambda key: self._close(key, None), durable_file_id)

    def _close(self, durable_file_id: int, record_version: int | None
               ) -> tuple[PersistentOpen | None, asyncio.Future | None]:
        self._check_usable()
        if durable_file_id not in self._records:
            return None, None
        if record_version is not None:
            self._check_version(durable_file_id, record_version)
        removed = self._unindex(durable_file_id)
        return removed, self._commit({durable_file_id: None}, 1)

    def _started(self, verb, argument) -> asyncio.Future:
        """Run a verb's synchronous part; its refusal (a failed store, a taken
        DurableFileId) comes back through the future, as from the coroutine."""
        try:
            _record, durable = verb(argument)
        except Exception as exc:    # noqa: BLE001 - handed to whoever waits, as await would
            durable = self._loop.create_future()
            durable.set_exception(exc)
            return durable
        if durable is None:
            durable = self._loop.create_future()
            durable.set_result(None)
        return durable

    async def lookup(self, durable_file_id: int) -> PersistentOpen | None:
        self._check_usable()
        return self._records.get(durable_file_id)

    async def lookup_by_create_guid(self, create_guid: bytes, client_guid: bytes | None = None
                                    ) -> tuple[PersistentOpen, ...]:
        self._check_usable()
        keys = self._by_create_guid.get(create_guid, ())
        found = (self._records[key] for key in reversed(keys))
        if client_guid is None:
            return tuple(found)
        return tuple(record for record in found if record.client_guid == client_guid)

    async def traverse(self) -> tuple[PersistentOpen, ...]:
        self._check_usable()
        return tuple(self._records.values())

    async def expire(self, now_ms: int) -> tuple[PersistentOpen, ...]:
        self._check_usable()
        due = [record for record in map(self._records.__getitem__, self._disconnected)
               if record.expires_at_ms <= now_ms]
        if not due:
            return ()
        for record in due:
            self._unindex(record.durable_file_id)
        await self._commit({record.durable_file_id: None for record in due}, len(due))
        return tuple(due)

    async def commit_barrier(self) -> None:
        self._check_usable()
        if not self._writing and not self._pending:
            return
        await self._commit({}, 0)

    async def shutdown(self) -> None:
        if self._shut:
            return
        if self._failure is None and self._writing:
            try:
                await self.commit_barrier()
            except StoreFailed:
                log.warning("%s: pending commits failed at shutdown", self._engine.name)
        self._shut = True
        try:
            await self._loop.run_in_executor(self._executor, self._engine.close)
        finally:
            self._executor.shutdown(wait=False)

    @property
    def failed(self) -> bool:
        """A commit failed: the store refuses changes (read-only) until restart."""
        return self._failure is not None

    def stats(self) -> StoreStats:
        return StoreStats(len(self._records), self._commits, self._batches, self._written,
                          self._max_batch)

    # --- the table --------------------------------------------------------------------

    def _index(self, record: PersistentOpen) -> None:
        key = record.durable_file_id
        self._records[key] = record
        if record.create_guid != ZERO_GUID:
            self._by_create_guid.setdefault(record.create_guid, []).append(key)
        if record.disconnected_at_ms is not None:
            self._disconnected.add(key)

    def _unindex(self, key: int) -> PersistentOpen:
        record = self._records.pop(key)
        keys = self._by_create_guid.get(record.create_guid)
        if keys is not None:
            keys.remove(key)
            if not keys:
                del self._by_create_guid[record.create_guid]
        self._disconnected.discard(key)
        return record

    def _check_version(self, key: int, version: int) -> None:
        current = self._records.get(key)
        if current is None:
            raise RecordNotFound(f"open {key:#x} is not stored")
        if current.record_version != version:
            raise VersionConflict(key, version, current.record_version)

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise StoreFailed(f"{self._engine.name}: store failed earlier: {self._failure}")
        if self._shut:
            raise StoreFailed(f"{self._engine.name}: store is shut down")

    # --- group commit -----------------------------------------------------------------

    def _commit(self, changes: dict[int, bytes | None], count: int) -> asyncio.Future:
        self._pending.update(changes)
        self._pending_commits += count
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        if not self._writing:
            # The batch starts after the callbacks already due: commits made
            # in this pass of the loop (16 committers woken by the last
            # batch) share its fsync, as they did behind a flusher task.
            self._writing = True
            self._loop.call_soon(self._next_batch)
        return waiter

    def _next_batch(self) -> None:
        """Loop: hand what is queued to the writer thread as one batch.  Its
        end comes back as one callback (``_write_done``): no task per batch and
        no asyncio future chained to the executor's, which cost a CA
        CREATE+CLOSE several passes of the event loop (issue 14 item 6)."""
        if self._failure is not None:
            self._writing = False
            return
        batch, waiters, commits = self._pending, self._waiters, self._pending_commits
        self._pending, self._waiters, self._pending_commits = {}, [], 0
        self._writing = True
        if not batch:               # a barrier: what was queued before it is written
            self._settle(waiters, commits)
            return
        started = time.perf_counter()
        try:
            commit = None if self._begin is None else self._begin(batch)
            if commit is None:
                done = self._executor.submit(self._engine.write, batch)
            else:
                done = self._executor.submit(commit.write_local)
        except Exception as exc:    # noqa: BLE001 - any failure: durability unknown
            self._poison(exc, waiters)
            return
        done.add_done_callback(lambda written: self._call_on_loop(
            self._write_done, written, commit, waiters, commits, started, len(batch)))

    def _call_on_loop(self, callback, *args) -> None:
        """Writer thread: run ``callback`` on the loop (unless the loop is gone)."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:        # the loop closed under a commit: nobody waits for it
            log.warning("%s: a commit ended after the event loop closed", self._engine.name)

    def _write_done(self, written, commit, waiters, commits: int, started: float,
                    size: int) -> None:
        """Loop: the writer thread finished a batch's local write."""
        error = written.exception()
        if error is not None:
            self._poison(error, waiters)
            return
        if commit is None:
            self._durable(waiters, commits, started, size)
            return
        try:
            finishing = commit.finish()     # the partner's part (SplitEngine)
        except Exception as exc:    # noqa: BLE001 - any failure: durability unknown
            self._poison(exc, waiters)
            return
        if isinstance(finishing, asyncio.Future) and finishing.done():
            self._finished(finishing, waiters, commits, started, size)
        else:
            asyncio.ensure_future(finishing, loop=self._loop).add_done_callback(
                lambda done: self._finished(done, waiters, commits, started, size))

    def _finished(self, finishing: asyncio.Future, waiters, commits: int, started: float,
                  size: int) -> None:
        error = None if finishing.cancelled() else finishing.exception()
        if finishing.cancelled() or error is not None:
            self._poison(error or StoreFailed("partner commit cancelled"), waiters)
            return
        self._durable(waiters, commits, started, size)

    def _durable(self, waiters, commits: int, started: float, size: int) -> None:
        if self._on_commit is not None:
            self._on_commit(time.perf_counter() - started)
        self._batches += 1
        self._written += size
        self._settle(waiters, commits)

    def _settle(self, waiters, commits: int) -> None:
        """A batch is durable: its callers go on, and what queued meanwhile
        is the next batch."""
        self._commits += commits
        self._max_batch = max(self._max_batch, commits)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._writing = False
        if self._waiters and self._failure is None:
            self._next_batch()

    def _poison(self, exc: BaseException, waiters: list[asyncio.Future]) -> None:
        log.error("%s: commit failed, store is now read-only until restart: %s",
                  self._engine.name, exc, extra={"state": "failed"})
        self._failure = exc
        self._writing = False
        failure = StoreFailed(f"{self._engine.name}: commit failed: {exc}")
        for waiter in waiters + self._waiters:
            if not waiter.done():
                waiter.set_exception(failure)
        self._pending, self._waiters, self._pending_commits = {}, [], 0


def _load(engine: Engine) -> list[PersistentOpen]:
    """On the writer thread: recover the engine and decode its records."""
    return [decode(blob) for blob in engine.load()]
