"""Group commit of write-through WRITEs (smbcad.server.write_sync)."""

import asyncio
import threading

from smbcad.server.write_sync import FileSync


class SlowSync:
    """A sync_data stand-in that records which writes each call covered."""

    def __init__(self, delay_s: float = 0.02, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.written = 0           # writes in the "page cache"
        self.stable = 0            # writes a finished sync made stable
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.calls += 1
            covered = self.written
            fail = self.fail            # as the call started
        threading.Event().wait(self.delay_s)
        if fail:
            raise OSError(5, "I/O error")
        with self.lock:
            self.stable = max(self.stable, covered)


def test_concurrent_writers_share_syncs_and_each_is_stable_when_answered():
    fs = SlowSync()
    sync = FileSync()

    async def writer():
        fs.written += 1
        mine = fs.written
        await sync.sync(fs)
        assert fs.stable >= mine          # never answered before its data is stable

    async def main():
        await asyncio.gather(*(writer() for _ in range(50)))
    asyncio.run(main())
    assert fs.stable == 50
    assert fs.calls <= 3                  # one running + one for the rest, not fifty
    assert sync.syncs == fs.calls


def test_a_write_arriving_during_a_sync_waits_for_the_next_one():
    fs = SlowSync(delay_s=0.05)
    sync = FileSync()

    async def main():
        fs.written += 1
        first = asyncio.ensure_future(sync.sync(fs))
        await asyncio.sleep(0.01)         # the first sync is running now
        fs.written += 1
        await sync.sync(fs)
        assert fs.stable == 2
        await first
    asyncio.run(main())
    assert fs.calls == 2


def test_a_failed_sync_fails_every_writer_it_covered_and_the_next_one_runs():
    fs = SlowSync(fail=True)
    sync = FileSync()

    async def main():
        fs.written += 2
        results = await asyncio.gather(sync.sync(fs), sync.sync(fs), return_exceptions=True)
        assert all(isinstance(r, OSError) for r in results)
        fs.fail = False
        await sync.sync(fs)               # not stuck after a failure
        assert fs.stable == 2
    asyncio.run(main())


def test_sequential_writers_each_get_their_own_sync():
    fs = SlowSync(delay_s=0)
    sync = FileSync()

    async def main():
        for _ in range(3):
            fs.written += 1
            await sync.sync(fs)
    asyncio.run(main())
    assert fs.calls == 3


def test_a_write_arriving_during_a_failed_sync_is_covered_by_the_next_one():
    fs = SlowSync(delay_s=0.05, fail=True)
    sync = FileSync()

    async def main():
        fs.written += 1
        first = sync.begin(fs)
        await asyncio.sleep(0.01)         # the failing sync is running now
        fs.fail = False
        fs.written += 1
        await sync.sync(fs)               # not failed by a sync that did not cover it
        assert fs.stable == 2
        try:
            await first
        except OSError:
            pass
        else:
            raise AssertionError("the covered write was not failed")
    asyncio.run(main())
    assert fs.calls == 2
