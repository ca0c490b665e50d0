"""The tickle list: which client connections this node holds on each
aggregate's LIFs (shared/reference/cluster.md §1.3, §4 step 3; issue 11
item 1).

The list rides on the mirror to the partner.  When this node dies, the
partner's clusdisk brings the LIFs up and sends every listed client a TCP
ACK with sequence numbers it cannot expect; the client's kernel answers
with its own ACK, which the new owner's kernel (no such socket) answers with
a RST, and the client reconnects at once instead of after its TCP and SMB
echo timeouts.  Without the list an idle client (a VM whose disk is quiet)
notices nothing until it next writes.

``TickleTracker`` watches ``SmbServer.connections`` and publishes an
aggregate's whole list after a change, coalesced to one publication per
loop turn (a burst of reconnects after a failover is one message).
"""

from collections.abc import Callable, Iterable

from smbcad.cluster.mirror_proto import Tickle


def split_peer(peer: str) -> tuple[str, int] | None:
    """``"192.0.2.100:50123"`` or ``"fd00::1:50123"`` as (address, port)."""
    address, _, port = peer.rpartition(":")
    address = address.strip("[]").partition("%")[0]
    if not address or not port.isdigit():
        return None
    return address, int(port)


class TickleTracker:
    """``addresses``: aggregate name -> its LIF addresses.  ``publish(aggregate,
    connections)`` gets each changed aggregate's full list; ``schedule(fn)``
    runs ``fn`` later on the same thread (``loop.call_soon``)."""

    def __init__(self, addresses: dict[str, Iterable[str]],
                 publish: Callable[[str, tuple[Tickle, ...]], None],
                 schedule: Callable[[Callable[[], None]], object]) -> None:
        self._aggregate_of = {address: name for name, lifs in addresses.items()
                              for address in lifs}
        self._lists: dict[str, dict[object, Tickle]] = {name: {} for name in addresses}
        self._publish = publish
        self._schedule = schedule
        self._dirty: set[str] = set()

    def connections(self, aggregate: str) -> tuple[Tickle, ...]:
        return tuple(self._lists.get(aggregate, {}).values())

    def connection_added(self, connection) -> None:
        name = self._aggregate_of.get(connection.local_address)
        peer = split_peer(connection.peer)
        if name is None or peer is None:
            return
        self._lists[name][connection] = (*peer, connection.local_address, connection.local_port)
        self._changed(name)

    def connection_removed(self, connection) -> None:
        name = self._aggregate_of.get(connection.local_address)
        if name is not None and self._lists[name].pop(connection, None) is not None:
            self._changed(name)

    def _changed(self, name: str) -> None:
        if not self._dirty:
            self._schedule(self._flush)
        self._dirty.add(name)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for name in sorted(dirty):
            self._publish(name, self.connections(name))
