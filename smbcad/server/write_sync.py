"""Group commit for write-through WRITEs (issue 4 item 6, [MS-SMB2] 3.3.5.13
with SMB2_WRITEFLAG_WRITE_THROUGH or FILE_WRITE_THROUGH, forced on CA shares
by 3.3.5.9).

A write-through WRITE is answered only once its data is stable.  Writers of
one file share fdatasync calls: a WRITE whose data reached the page cache
before a sync started is covered by that sync; one that arrived during it
waits for the next, which starts as soon as the running one ends and covers
every writer that queued meanwhile.  So N concurrent writers cost about two
syncs, not N, and no acknowledged byte can be lost by a crash.
"""

import asyncio
from typing import Callable


class FileSync:
    """The sync state of one file (kept on ``opens.FileState``)."""

    __slots__ = ("requested", "done", "running", "syncs", "_waiters")

    def __init__(self) -> None:
        self.requested = 0       # writes that asked for a sync, numbered in arrival order
        self.done = 0            # every write numbered up to here is stable
        self.running = False
        self.syncs = 0           # fdatasync calls made (for tests and metrics)
        self._waiters: list = []     # (number, future, sync_data), in arrival order

    def begin(self, sync_data: Callable[[], None]) -> asyncio.Future:
        """A sync covering this caller's data (already written) starts now,
        or the caller joins the next one: the future is done once the data is
        stable, or fails as the sync that was to cover it.  A WRITE waits on
        it with no task of its own (context.Answer, issue 14 item 6)."""
        loop = asyncio.get_running_loop()
        self.requested += 1
        waiter = loop.create_future()
        self._waiters.append((self.requested, waiter, sync_data))
        if not self.running:
            self._start(loop, sync_data)
        return waiter

    async def sync(self, sync_data: Callable[[], None]) -> None:
        """``begin``, awaited."""
        await self.begin(sync_data)

    def _start(self, loop, sync_data: Callable[[], None]) -> None:
        self.running = True
        self.syncs += 1
        covers = self.requested
        loop.run_in_executor(None, sync_data).add_done_callback(
            lambda ran: self._ended(loop, covers, ran))

    def _ended(self, loop, covers: int, ran: asyncio.Future) -> None:
        """A sync ended: the writes it covered are answered, and the ones that
        came during it get the next sync at once."""
        self.running = False
        error = asyncio.CancelledError() if ran.cancelled() else ran.exception()
        if error is None:
            self.done = max(self.done, covers)
        waiting = []
        for entry in self._waiters:
            number, waiter, _sync_data = entry
            if number > covers:
                waiting.append(entry)
            elif waiter.done():
                continue
            elif error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)
        self._waiters = waiting
        if waiting:
            self._start(loop, waiting[0][2])
