"""The HandleStore verbs on both real engines, on tmp_path (smbcad/store/local.py,
log_store.py, sqlite_store.py)."""

import asyncio
import dataclasses
import errno
import os

import pytest

from smbcad.store import (
    LeaseRecord, LocalHandleStore, LogEngine, PersistentOpen, RecordExists, RecordNotFound,
    RecordTooNew, SqliteEngine, StoreFailed, VersionConflict, encode)

CLIENT_A = b"A" * 16
CLIENT_B = b"B" * 16


def rec(key: int, *, create_guid: bytes | None = None, client_guid: bytes = CLIENT_A,
        **changes) -> PersistentOpen:
    return PersistentOpen(
        durable_file_id=key,
        create_guid=create_guid if create_guid is not None else key.to_bytes(16, "little"),
        client_guid=client_guid, owner_user="alice", owner_domain="CORP", share_name="ca",
        path=f"dir/file{key}", is_durable=True, is_persistent=True, durable_timeout_ms=1000,
        **changes)


ENGINES = {
    "log": lambda path: LogEngine(str(path / "log")),
    "sqlite": lambda path: SqliteEngine(str(path / "handles.db")),
}


@pytest.fixture(params=sorted(ENGINES))
def make_engine(request, tmp_path):
    return lambda: ENGINES[request.param](tmp_path)


def run(coro):
    return asyncio.run(coro)


async def reopened(make_engine) -> dict[int, PersistentOpen]:
    store = await LocalHandleStore.open(make_engine())
    try:
        return {r.durable_file_id: r for r in await store.traverse()}
    finally:
        await store.shutdown()


def test_create_lookup_and_survive_a_restart(make_engine):
    async def scenario():
        store = await LocalHandleStore.open(make_engine())
        stored = await store.create(rec(1, lease=LeaseRecord(b"L" * 16, 2, 7)))
        assert stored.record_version == 1
        assert await store.lookup(1) == stored
        assert await store.lookup(2) is None
        with pytest.raises(RecordExists):
            await store.create(rec(1))
        await store.shutdown()
        assert await reopened(make_engine) == {1: stored}
    run(scenario())


def test_ids_above_2_63_round_trip(make_engine):
    async def scenario():
        store = await LocalHandleStore.open(make_engine())
        for key in (1 << 63, (1 << 64) - 1, (1 << 63) - 1):
            await store.create(rec(key))
        for bad in (0, 1 << 64):
            with pytest.raises(ValueError):
                await store.create(dataclasses.replace(rec(1), durable_file_id=bad))
        await store.shutdown()
        assert sorted(await reopened(make_engine)) == [(1 << 63) - 1, 1 << 63, (1 << 64) - 1]
    run(scenario())


def test_update_is_compare_and_set(make_engine):
    async def scenario():
        store = await LocalHandleStore.open(make_engine())
        v1 = await store.create(rec(1))
        v2 = await store.update(dataclasses.replace(v1, position=10))
        assert v2.record_version == 2 and v2.position == 10
        with pytest.raises(VersionConflict) as info:
            await store.update(dataclasses.replace(v1, position=99))   # built on a stale copy
        assert (info.value.expected, info.value.found) == (1, 2)
        with pytest.raises(RecordNotFound):
            await store.update(rec(5))
        assert (await store.lookup(1)).position == 10
        await store.shutdown()
        assert (await reopened(make_engine))[1] == v2
    run(scenario())


def test_update_many_is_all_or_nothing(make_engine):
    async def scenario():
        store = await LocalHandleStore.open(make_engine())
        a = await store.create(rec(1, lease=LeaseRecord(b"L" * 16, 2, 7)))
        b = await store.create(rec(2, lease=LeaseRecord(b"L" * 16, 2, 7)))
        b2 = await store.update(b)
        broken = LeaseRecord(b"L" * 16, 2, 3, epoch=1, breaking=True, break_to_state=3)
        with pytest.raises(VersionConflict):
            await store.update_many([dataclasses.replace(a, lease=broken),
                                     dataclasses.replace(b, lease=broken)])   # b is stale
        assert (await store.lookup(1)).lease.state == 7
        with pytest.raises(ValueError):
            await store.update_many([a, a])
        a3, b3 = await store.update_many([dataclasses.replace(a, lease=broken),
                                          dataclasses.replace(b2, lease=broken)])
        assert (a3.record_version, b3.record_version) == (2, 3)
        await store.shutdown()
        assert await reopened(make_engine) == {1: a3, 2: b3}
    run(scenario())


def test_close(make_engine):
    async def scenario():
        store = await LocalHandleStore.open(make_engine())
        a = await store.create(rec(1))
        await store.create(rec(2))
        assert await store.close(1) == a
        assert await store.close(1) is None
        with pytest.raises(VersionConflict):
            await store.close(2, record_version=7)
        await store.close(2, record_version=1)
        created = await store.create(rec(3))
        # create and close in one group commit: nothing reaches the disk
        await asyncio.gather(store.create(rec(4)), store.close(4))
        await store.shutdown()
        assert await reopened(make_engine) == {3: created}
    run(scenario())


def test_lookup_by_create_guid(make_engine):
    async def scenario():
        store = await LocalHandleStore.open(make_engine())
        guid = b"G" * 16
        first = await store.create(rec(1, create_guid=guid))
        other_client = await store.create(rec(2, create_guid=guid, client_guid=CLIENT_B))
        newest = await store.create(rec(3, create_guid=guid))
        await store.create(rec(4, create_guid=bytes(16)))       # DHnQ opens have none
        assert await store.lookup_by_create_guid(guid) == (newest, other_client, first)
        assert await store.lookup_by_create_guid(guid, CLIENT_A) == (newest, first)
        assert await store.lookup_by_create_guid(bytes(16)) == ()
        await store.close(3)
        moved = await store.update(dataclasses.replace(first, create_guid=b"H" * 16))
        assert await store.lookup_by_create_guid(guid) == (other_client,)
        assert await store.lookup_by_create_guid(b"H" * 16) == (moved,)
        await store.shutdown()
        store = await LocalHandleStore.open(make_engine())
        assert await store.lookup_by_create_guid(guid, CLIENT_B) == (other_client,)
        await store.shutdown()
    run(scenario())


def test_expire(make_engine):
    async def scenario():
        store = await LocalHandleStore.open(make_engine())
        connected = await store.create(rec(1))
        due = await store.create(rec(2, disconnected_at_ms=5000))             # expires 6000
        later = await store.create(rec(3, disconnected_at_ms=5500))           # expires 6500
        resilient = await store.create(rec(4, disconnected_at_ms=5000, is_resilient=True,
                                           resiliency_timeout_ms=2000))      # expires 7000
        assert await store.expire(5999) == ()
        assert await store.expire(6000) == (due,)
        # reconnected before its time: no longer a candidate
        back = await store.update(later.reconnected())
        assert await store.expire(10_000) == (resilient,)
        await store.shutdown()
        assert await reopened(make_engine) == {1: connected, 3: back}
        store = await LocalHandleStore.open(make_engine())
        gone = await store.update(back.disconnected(20_000))
        assert await store.expire(21_000) == (gone,)
        await store.shutdown()
    run(scenario())


def test_concurrent_commits_share_one_fsync(make_engine):
    async def scenario():
        store = await LocalHandleStore.open(make_engine())
        created = await asyncio.gather(*(store.create(rec(i)) for i in range(1, 65)))
        stats = store.stats()
        assert stats.commits == 64 and stats.batches <= 2 and stats.max_batch >= 32
        # the same record changed many times in one batch: written once
        one = created[0]
        for position in range(1, 6):
            pending = asyncio.ensure_future(store.update(dataclasses.replace(one,
                                                                            position=position)))
            await asyncio.sleep(0)
            one = dataclasses.replace(one, record_version=one.record_version + 1)
        await pending
        assert store.stats().commits == 69
        await store.shutdown()
        assert (await reopened(make_engine))[1].position == 5
    run(scenario())


def test_each_group_commit_reports_its_duration(make_engine):
    async def scenario():
        durations = []
        store = await LocalHandleStore.open(make_engine(), durations.append)
        await asyncio.gather(*(store.create(rec(i)) for i in range(1, 33)))
        await store.create(rec(40))
        assert len(durations) == store.stats().batches >= 2
        assert all(0 < seconds < 60 for seconds in durations)
        await store.shutdown()
    run(scenario())


def test_commit_barrier_waits_for_earlier_changes(make_engine):
    async def scenario():
        store = await LocalHandleStore.open(make_engine())
        tasks = [asyncio.ensure_future(store.create(rec(i))) for i in range(1, 10)]
        await asyncio.sleep(0)
        assert not all(task.done() for task in tasks)
        await store.commit_barrier()
        assert all(task.done() for task in tasks)
        await store.commit_barrier()                  # nothing pending: returns at once
        await store.shutdown()
        assert len(await reopened(make_engine)) == 9
    run(scenario())


def test_one_process_owns_the_store(make_engine):
    async def scenario():
        store = await LocalHandleStore.open(make_engine())
        with pytest.raises(StoreFailed):
            await LocalHandleStore.open(make_engine())
        await store.shutdown()
        with pytest.raises(StoreFailed):
            await store.lookup(1)
        await (await LocalHandleStore.open(make_engine())).shutdown()
    run(scenario())


def test_a_record_from_a_newer_smbcad_stops_the_open(make_engine):
    blob = bytearray(encode(rec(7, record_version=1)))
    blob[2:4] = b"\x09\x00"                          # min_reader_version 9
    engine = make_engine()                            # the engine alone, on this thread
    engine.load()
    engine.write({7: bytes(blob)})
    engine.close()
    with pytest.raises(RecordTooNew):
        run(LocalHandleStore.open(make_engine()))
    # and the failed open released the files
    engine = make_engine()
    engine.load()
    engine.write({7: None})
    engine.close()
    assert run(reopened(make_engine)) == {}


class FailingLogEngine(LogEngine):
    """The real log engine whose disk starts failing after ``good`` writes."""

    def __init__(self, directory: str, good: int) -> None:
        super().__init__(directory)
        self.good = good

    def write(self, changes):
        if self.good == 0:
            raise OSError(errno.EIO, "injected I/O error")
        self.good -= 1
        super().write(changes)


def test_a_failed_commit_poisons_the_store(tmp_path):
    async def scenario():
        store = await LocalHandleStore.open(FailingLogEngine(str(tmp_path), good=1))
        ok = await store.create(rec(1))
        assert not store.failed
        results = await asyncio.gather(*(store.create(rec(i)) for i in range(2, 6)),
                                       return_exceptions=True)
        assert all(isinstance(r, StoreFailed) for r in results)
        assert store.failed                     # smbcad_store_failed
        for call in (store.lookup(1), store.update(ok), store.traverse(), store.expire(0)):
            with pytest.raises(StoreFailed):
                await call
        await store.shutdown()
        assert await reopened(lambda: LogEngine(str(tmp_path))) == {1: ok}
    run(scenario())


def test_event_loop_is_free_while_the_engine_syncs(make_engine):
    """The loop keeps running other tasks while a commit is in the engine."""
    async def scenario():
        store = await LocalHandleStore.open(make_engine())
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        for i in range(1, 21):
            await store.create(rec(i))
        task.cancel()
        await store.shutdown()
        assert ticks > 20
    run(scenario())


# --- log engine specifics ---------------------------------------------------------------------

def test_log_compacts_and_keeps_one_generation(tmp_path):
    async def scenario():
        engine = LogEngine(str(tmp_path), preallocate_bytes=8192, compact_min_bytes=16384,
                           compact_ratio=2.0)
        store = await LocalHandleStore.open(engine)
        records = [await store.create(rec(i)) for i in range(1, 11)]
        for round_ in range(30):
            records = list(await store.update_many([dataclasses.replace(r, position=round_)
                                                    for r in records]))
        await store.close(10)
        assert engine.compactions >= 3                   # one at open, the rest from growth
        await store.shutdown()
        logs = sorted(name for name in os.listdir(tmp_path) if name.endswith(".log"))
        assert len(logs) == 1 and not any(name.endswith(".tmp") for name in os.listdir(tmp_path))
        assert await reopened(lambda: LogEngine(str(tmp_path))) == {
            r.durable_file_id: r for r in records[:9]}
    run(scenario())


def test_log_preallocates_and_reads_zeros_as_the_end(tmp_path):
    async def scenario():
        store = await LocalHandleStore.open(LogEngine(str(tmp_path), preallocate_bytes=1 << 16))
        await store.create(rec(1))
        await store.shutdown()
        (log_name,) = [n for n in os.listdir(tmp_path) if n.endswith(".log")]
        assert os.path.getsize(tmp_path / log_name) >= 1 << 16
        assert list(await reopened(lambda: LogEngine(str(tmp_path)))) == [1]
    run(scenario())


def test_sqlite_refuses_an_unknown_table_layout(tmp_path):
    import sqlite3
    db = sqlite3.connect(tmp_path / "h.db")
    db.execute("PRAGMA user_version=5")
    db.commit()
    db.close()
    with pytest.raises(StoreFailed, match="table layout 5"):
        run(LocalHandleStore.open(SqliteEngine(str(tmp_path / "h.db"))))


def test_sqlite_normal_with_checkpoints_is_durable_too(tmp_path):
    async def scenario():
        store = await LocalHandleStore.open(SqliteEngine(str(tmp_path / "h.db"),
                                                         synchronous="NORMAL"))
        created = await store.create(rec(1))
        await store.shutdown()
        assert await reopened(lambda: SqliteEngine(str(tmp_path / "h.db"))) == {1: created}
    run(scenario())
    with pytest.raises(ValueError):
        SqliteEngine("x", synchronous="OFF")
