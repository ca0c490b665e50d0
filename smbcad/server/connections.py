"""``SmbServer.connections``: every live SMB connection, and the watchers told
when one comes or goes (the cluster member keeps the tickle list of each
aggregate's LIFs from it, shared/reference/cluster.md §1.3).

A ``set`` so that the request pipeline's membership tests and iteration stay
what they were; only ``add`` and ``discard`` (once per connection) say more.
"""

from typing import Protocol


class ConnectionWatcher(Protocol):
    def connection_added(self, connection) -> None: ...

    def connection_removed(self, connection) -> None: ...


class ConnectionSet(set):
    def __init__(self) -> None:
        super().__init__()
        self.watchers: list[ConnectionWatcher] = []

    def add(self, connection) -> None:
        if connection in self:
            return
        super().add(connection)
        for watcher in self.watchers:
            watcher.connection_added(connection)

    def discard(self, connection) -> None:
        if connection not in self:
            return
        super().discard(connection)
        for watcher in self.watchers:
            watcher.connection_removed(connection)
