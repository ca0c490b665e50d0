"""Bounded work per turn (issue 17, fairness): one connection runs at most
``MESSAGES_PER_TURN`` requests (a large frame counting for more) before it
lets the event loop serve the others, whether they came as separate frames
queued while it waited or as the members of one compound.

Without it a connection's frame loop runs everything it has queued without
giving the loop back: a compound of a few thousand ECHOs (credits allow
8192) or a queue of 64 frames filled while it waited for a directory scan
held the loop for every other client, so a new client's NEGOTIATE waited
for all of it.  Responses keep their order: only this connection's own
frame loop runs its requests, and a compound's responses still go out
together once its last member has run ([MS-SMB2] 3.3.4.1.3 asks order only
within a compound).  Signing and encryption state is per session and
touched only by that loop and the response path, which a yield does not
reorder.

Steps whose cost grows with a directory (a QUERY_DIRECTORY snapshot, a
page of many entries, a case-insensitive scan for a name that CREATE did
not find under its exact spelling) run in a worker thread when the
directory is larger than ``INLINE_SCAN_BYTES`` (``context.Offloaded``).

A yield is ``asyncio.sleep(0)``: the task goes to the back of the ready
queue, so every callback already due runs, and the loop polls its sockets
once, before this connection runs again.
"""

import asyncio

MESSAGES_PER_TURN = 16
# A frame of this many bytes costs as much as one more request (decrypting
# or copying 8 MiB holds the loop for a few milliseconds).
BYTES_PER_UNIT = 256 * 1024

# A directory whose entries take more than this on disk (its st_size: ~300
# names on ext4) is scanned in a worker thread; a smaller one costs less
# than the hop to the thread (~100 µs with a cross-CPU wake-up).
INLINE_SCAN_BYTES = 16 * 1024


class Turn:
    """How much of its turn a connection has used; ``yields`` counts the
    times it gave the loop back (tests read it)."""

    __slots__ = ("limit", "used", "yields")

    def __init__(self, limit: int = MESSAGES_PER_TURN) -> None:
        self.limit = limit
        self.used = 0
        self.yields = 0

    async def spend(self, units: int = 1) -> None:
        """Count ``units`` of work done; past the limit, let the others run."""
        self.used += units
        if self.used >= self.limit:
            self.used = 0
            self.yields += 1
            await asyncio.sleep(0)

    def rested(self) -> None:
        """The connection waited for input: the loop ran others meanwhile."""
        self.used = 0
