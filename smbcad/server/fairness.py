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

The turn is shared per client address (``ClientShare``): the connections
of one address that have requests queued split ``MESSAGES_PER_TURN``
between them (at least one request each).  Without it one host with a
hundred busy connections took a hundred turns per round of the loop, and a
new client elsewhere waited for all of them (the hostile soak of issue 17:
event-loop lag 130 ms median, NEGOTIATE p99 276 ms); with it, a round
costs about one turn per busy address plus one request per busy
connection.
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


class ClientShare:
    """The connections of one client address: how many there are
    (``members``) and how many have requests queued (``busy``)."""

    __slots__ = ("host", "members", "busy")

    def __init__(self, host: str) -> None:
        self.host = host
        self.members = 0
        self.busy = 0


class ClientShares:
    """One ``ClientShare`` per client address with a live connection; an
    address's entry goes with its last connection."""

    def __init__(self) -> None:
        self._by_host: dict[str, ClientShare] = {}

    def join(self, host: str) -> ClientShare:
        share = self._by_host.get(host)
        if share is None:
            share = self._by_host[host] = ClientShare(host)
        share.members += 1
        return share

    def leave(self, share: ClientShare) -> None:
        share.members -= 1
        if share.members <= 0:
            self._by_host.pop(share.host, None)

    def __len__(self) -> int:
        return len(self._by_host)


class Turn:
    """How much of its turn a connection has used; ``yields`` counts the
    times it gave the loop back (tests read it).  With a ``share`` (its
    client address), the limit is split between the address's busy
    connections."""

    __slots__ = ("limit", "used", "yields", "share", "_busy")

    def __init__(self, limit: int = MESSAGES_PER_TURN) -> None:
        self.limit = limit
        self.used = 0
        self.yields = 0
        self.share: ClientShare | None = None
        self._busy = False

    async def spend(self, units: int = 1) -> None:
        """Count ``units`` of work done; past the limit, let the others run."""
        if self.charge(units):
            self.used = 0
            self.yields += 1
            await asyncio.sleep(0)

    def charge(self, units: int = 1) -> bool:
        """Count ``units`` of work done; True once the turn is used up (the
        caller then lets the others run before this connection goes on)."""
        self.used += units
        limit = self.limit
        share = self.share
        if share is not None and share.busy > 1:
            limit = max(1, limit // share.busy)
        return self.used >= limit

    def used_up(self) -> bool:
        """Whether the turn is over without counting more (see ``charge``)."""
        return self.charge(0)

    def fresh(self) -> None:
        """The loop polled its sockets since this connection last ran: a new turn."""
        self.used = 0

    def join(self, shares: ClientShares, host: str) -> None:
        """Count this connection in its client address's share."""
        self.share = shares.join(host)

    def waiting(self) -> None:
        """The connection has nothing queued: it waits for input."""
        if self._busy and self.share is not None:
            self.share.busy -= 1
        self._busy = False

    def rested(self) -> None:
        """The connection waited for input (the loop ran others meanwhile)
        and has requests again."""
        self.used = 0
        if not self._busy and self.share is not None:
            self.share.busy += 1
        self._busy = True

    def leave(self, shares: ClientShares) -> None:
        """The connection is gone."""
        self.waiting()
        if self.share is not None:
            shares.leave(self.share)
            self.share = None
