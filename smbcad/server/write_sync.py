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

    __slots__ = ("requested", "done", "running", "syncs")

    def __init__(self) -> None:
        self.requested = 0       # writes that asked for a sync, numbered in arrival order
        self.done = 0            # every write numbered up to here is stable
        self.running: asyncio.Future | None = None
        self.syncs = 0           # fdatasync calls made (for tests and metrics)

    async def sync(self, sync_data: Callable[[], None]) -> None:
        """Return once this caller's data (already written) is stable.  A failed
        sync raises in every caller it was to cover."""
        self.requested += 1
        mine = self.requested
        while self.done < mine:
            if self.running is None:
                self.running = asyncio.ensure_future(self._run(sync_data, self.requested))
            await asyncio.shield(self.running)

    async def _run(self, sync_data: Callable[[], None], covers: int) -> None:
        try:
            self.syncs += 1
            await asyncio.to_thread(sync_data)
            self.done = max(self.done, covers)
        finally:
            self.running = None
