"""smbcad as a member of the pair: adopt and release an aggregate, with its
handle store (shared/reference/cluster.md 7(a)-(c)).

Each aggregate has its own handle store in the state directory,
``<state_dir>/aggregates/<aggregate>/handles/``: the owner commits there (and, with the
partner mirror, waits for the partner's durable copy), the partner keeps its
replica in the same place on its side, so a role change moves no data.

- ``adopt``: the aggregate's records become disconnected persistent opens,
  every reconnect timer restarted now (the old owner's disconnect times are
  from another clock, and its death was no disconnect); only then do its
  shares take tree connects.  Also the restart case: the same node adopting
  after smbcad restarted.
- ``release``: planned, every disconnect is committed before the answer, so
  the partner adopts with nothing lost; unplanned (clusdisk lost the
  aggregate), connections go at once.
"""

import asyncio
import logging
import os
import time

from smbcad.server.aggregates import AggregateError, Phase
from smbcad.store import LocalHandleStore, LogEngine, StoreError

log = logging.getLogger("smbcad.cluster")


class ClusterMember:
    """Owns the per-aggregate stores and runs adopt/release against the server."""

    def __init__(self, server, cluster_config, state_dir: str) -> None:
        self.server = server
        self.config = cluster_config
        self.state_dir = state_dir
        self._stores: dict[str, object] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def store_dir(self, aggregate: str) -> str:
        return os.path.join(self.state_dir, "aggregates", aggregate, "handles")

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def adopt(self, name: str, mount_point: str | None = None) -> dict:
        aggregate = self.server.aggregates.get(name)
        if mount_point is not None and os.path.normpath(mount_point) != aggregate.mount_point:
            raise AggregateError(f"aggregate {name!r} is mounted at {aggregate.mount_point!r} "
                                 f"in this node's config, not {mount_point!r}")
        async with self._lock(name):
            if aggregate.phase is Phase.ONLINE:
                return {"aggregate": name, "phase": aggregate.phase.value, **aggregate.adopted}
            if not os.path.isdir(aggregate.mount_point):
                raise AggregateError(f"{aggregate.mount_point!r} is not a directory")
            started = time.monotonic()
            store = await self._open_store(name)
            try:
                records = await store.traverse()
                result = await self.server.aggregates.adopt(name, store, records,
                                                            restart_timers=True)
            except BaseException:
                await self._close_store(name)
                raise
            took = time.monotonic() - started
            log.info("adopted %s: %d persistent opens in %.3f s", name, result.restored, took)
            return {"aggregate": name, "phase": aggregate.phase.value,
                    "restored": result.restored, "kept": result.kept,
                    "dropped": result.dropped, "seconds": round(took, 6)}

    async def release(self, name: str, *, planned: bool) -> dict:
        aggregate = self.server.aggregates.get(name)
        async with self._lock(name):
            if aggregate.phase is Phase.OFFLINE:
                return {"aggregate": name, "phase": "offline", "handed_over": 0}
            started = time.monotonic()
            handed = await self.server.aggregates.release(name, planned=planned)
            await self._close_store(name)
            took = time.monotonic() - started
            return {"aggregate": name, "phase": aggregate.phase.value,
                    "handed_over": handed, "seconds": round(took, 6)}

    async def _open_store(self, name: str):
        path = self.store_dir(name)
        try:
            store = await LocalHandleStore.open(LogEngine(path))
        except (StoreError, OSError) as exc:
            raise AggregateError(f"cannot open the handle store {path}: {exc}") from exc
        self._stores[name] = store
        return store

    async def _close_store(self, name: str) -> None:
        store = self._stores.pop(name, None)
        if store is not None:
            await store.shutdown()

    async def shutdown(self) -> None:
        """smbcad stops: the stores close after the listener drained (every
        disconnect is committed by then); the aggregates stay this node's."""
        for name in list(self._stores):
            await self._close_store(name)

    def status(self) -> dict:
        return {"node_id": self.config.node_id, "cluster": self.config.name,
                "aggregates": self.server.aggregates.status()}
