"""smbcad as a member of the pair: adopt and release an aggregate, with its
handle store and the partner mirror (shared/reference/cluster.md 7(a)-(c)).

Each aggregate has one handle store per node.  The owner's is a
``LocalHandleStore`` over a ``MirroredEngine``: every commit is durable
here and acknowledged by the partner's durable copy (or, with the partner
gone, journaled on the aggregate's own filesystem behind an "outdated"
marker) before the client is answered.  The other node keeps a replica
(``ReplicaEndpoint``) in the same place, ``<state_dir>/handles/<aggregate>/``,
so a role change moves no data.  Without a mirror configured
(``cluster.mirror_listen``), an aggregate's store is local only, in
``<state_dir>/aggregates/<aggregate>/handles/``.

With worker processes each worker is a member on its own, for its
partition of every aggregate (``partition.Partition``: its own state
directory, marker, journal and mirror link to the partner's worker of the
same index); the supervisor sends adopt and release to every worker and
answers when all have (``smbcad.workers.fanout``).

- ``adopt``: stop the replica, apply the adoption rule (replica plus
  degraded journal, or a refusal that says why: an outdated replica is
  never adopted silently), bump the epoch, open the store as primary,
  rebuild every record as a disconnected persistent open with its reconnect
  timer restarted now (the old owner's disconnect times are from another
  clock, and its death was no disconnect), and only then let tree connects
  to the aggregate's shares in.
- ``release``: planned, in-flight requests finish and every disconnect is
  committed (mirrored) before the answer, so the partner adopts with nothing
  lost; unplanned (clusdisk lost the aggregate), connections go at once.
  Then this node keeps a replica of the aggregate for its new owner.
"""

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable

from smbcad.cluster import aggregate_state as ags
from smbcad.cluster.aggregate_state import AdoptionRefused, commit_adoption, load_for_adoption
from smbcad.cluster.mirror_link import MirrorLink, ReplicaEndpoint
from smbcad.cluster.mirrored_engine import MirroredEngine
from smbcad.cluster.partition import SINGLE, Partition
from smbcad.cluster.tickles import TickleTracker
from smbcad.server.aggregates import AggregateError, Phase
from smbcad.store import LocalHandleStore, LogEngine, StoreError

log = logging.getLogger("smbcad.cluster")


class ClusterMember:
    """Owns the per-aggregate stores, replicas and the mirror link, and runs
    adopt/release against the server."""

    def __init__(self, server, cluster_config, state_dir: str,
                 partition: Partition = SINGLE) -> None:
        self.server = server
        self.config = cluster_config
        self.partition = partition
        # This worker's (partition.py); the node's own with one process.
        self.state_dir = partition.state_dir(state_dir)
        self.link: MirrorLink | None = None
        self.tickles: TickleTracker | None = None
        self._stores: dict[str, object] = {}
        # name -> the commit-time callback of that aggregate's store (set by the daemon)
        self.commit_observer: Callable[[str], Callable[[float], None] | None] = \
            lambda _name: None
        self._engines: dict[str, MirroredEngine] = {}
        self._replicas: dict[str, ReplicaEndpoint] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # DurableFileIds carry the node id, so the partner's never clash with
        # ours unless two nodes share an id; the replicas say for sure.
        server.opens.foreign_ids = self.held_by_partner

    def held_by_partner(self, durable_file_id: int) -> bool:
        return any(replica.holds(durable_file_id) for replica in self._replicas.values())

    @property
    def mirrored(self) -> bool:
        return self.config.mirror_listen is not None

    def store_dir(self, aggregate: str) -> str:
        """The local-only store of an aggregate (no mirror configured)."""
        return os.path.join(self.state_dir, "aggregates", aggregate, "handles")

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    # --- start and stop ---------------------------------------------------------------

    async def start(self) -> None:
        """Bring up the mirror link and a replica of every aggregate: until
        clusdisk says adopt, this node is the partner of each."""
        if not self.mirrored:
            return
        config = self.config
        part = self.partition
        self.link = MirrorLink(
            node_id=part.link_name(config.node_id), cluster_key=config.cluster_key,
            incarnation=time.time_ns(), peer_node_id=part.link_name(config.partner),
            listen=(config.mirror_listen.host, part.port(config.mirror_listen.port)),
            peer=(config.mirror_peer.host, part.port(config.mirror_peer.port)))
        for aggregate in config.aggregates:
            await self._open_replica(aggregate.name)
        self.tickles = TickleTracker({a.name: a.addresses for a in config.aggregates},
                                     self.link.set_tickles,
                                     asyncio.get_running_loop().call_soon)
        self.server.connections.watchers.append(self.tickles)
        await self.link.start()
        for aggregate in config.aggregates:
            if await asyncio.to_thread(self._still_owner, aggregate.name, aggregate.mount_point):
                # smbcad restarted under a running clusdisk, which will not say
                # adopt again: take back what is still ours.
                log.info("%s: this node still owns it (epoch on its disk): adopting", aggregate.name)
                try:
                    await self.adopt(aggregate.name)
                except AggregateError as exc:
                    log.error("%s: cannot adopt it again after the restart: %s",
                              aggregate.name, exc)

    def _still_owner(self, name: str, mount_point: str) -> bool:
        """This node adopted the aggregate last and nobody has since: it was
        primary here, and the marker on the aggregate's own filesystem (only
        readable where it is mounted) carries the same epoch."""
        try:
            state = ags.read_state(self.state_dir, name)
            marker = ags.read_marker(mount_point, self.partition.name)
        except (StoreError, ags.MarkerUnreadable) as exc:
            log.warning("%s: not adopting it again: %s", name, exc)
            return False
        return (state is not None and state.role == "primary" and marker is not None
                and marker.epoch == state.epoch)

    async def shutdown(self) -> None:
        """smbcad stops: the stores close after the listener drained (every
        disconnect is committed by then); the aggregates stay this node's."""
        for name in list(self._stores):
            await self._close_store(name)
        for name in list(self._replicas):
            await self._close_replica(name)
        if self.link is not None:
            await self.link.stop()

    # --- adopt and release ------------------------------------------------------------

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
            source = "local"
            if self.mirrored:
                await self._close_replica(name)
                try:
                    source = await asyncio.to_thread(self._take_over_copy, name,
                                                     aggregate.mount_point)
                except AdoptionRefused as exc:
                    aggregate.detail = f"adoption refused: {exc.reason}"
                    log.error("%s", exc)
                    await self._open_replica(name)
                    raise AggregateError(str(exc)) from None
            try:
                store = await self._open_store(name, aggregate.mount_point)
                records = await store.traverse()
                result = await self.server.aggregates.adopt(name, store, records,
                                                            restart_timers=True)
            except BaseException:
                await self._close_store(name)
                if self.mirrored:
                    await self._open_replica(name)
                raise
            took = time.monotonic() - started
            # The former owner's client connections on the LIFs, for clusdisk
            # to tickle once they are up here.
            tickles = self.link.take_partner_tickles(name) if self.link is not None else ()
            log.info("adopted %s from its %s copy: %d persistent opens in %.3f s; "
                     "%d client connections to tickle", name, source, result.restored, took,
                     len(tickles))
            return {"aggregate": name, "phase": aggregate.phase.value, "source": source,
                    "restored": result.restored, "intents": result.intents,
                    "kept": result.kept, "dropped": result.dropped,
                    "seconds": round(took, 6), "tickles": [list(t) for t in tickles]}

    def _take_over_copy(self, name: str, mount_point: str) -> str:
        """The adoption rule and its commit (writer thread: file I/O)."""
        adoption = load_for_adoption(self.state_dir, name, mount_point, self.partition.name)
        commit_adoption(self.state_dir, mount_point, adoption, partition=self.partition.name)
        return adoption.source

    async def release(self, name: str, *, planned: bool, clients_cut_off: bool = False) -> dict:
        aggregate = self.server.aggregates.get(name)
        async with self._lock(name):
            if aggregate.phase is Phase.OFFLINE:
                return {"aggregate": name, "phase": "offline", "handed_over": 0}
            started = time.monotonic()
            try:
                handed = await self.server.aggregates.release(name, planned=planned,
                                                              clients_cut_off=clients_cut_off)
            finally:
                await self._close_store(name)
                if self.mirrored:
                    await asyncio.to_thread(self._record_replica_role, name)
                    await self._open_replica(name)      # the new owner's partner now
            took = time.monotonic() - started
            return {"aggregate": name, "phase": aggregate.phase.value,
                    "handed_over": handed, "seconds": round(took, 6)}

    def _record_replica_role(self, name: str) -> None:
        """Released: this node is no longer the owner, even before the next
        owner's epoch shows on the aggregate (a restart must not take it back)."""
        state = ags.read_state(self.state_dir, name)
        if state is not None and state.role != "replica":
            ags.write_state(self.state_dir, name, dataclasses.replace(state, role="replica"))

    # --- stores and replicas ------------------------------------------------------------

    def stores(self) -> dict:
        """The open handle stores of adopted aggregates, by aggregate name."""
        return dict(self._stores)

    async def _open_store(self, name: str, mount_point: str):
        try:
            if self.mirrored:
                engine = MirroredEngine(
                    state_dir=self.state_dir, aggregate=name, mount_point=mount_point,
                    link=self.link, partition=self.partition.name,
                    loop=asyncio.get_running_loop(),
                    ack_timeout_s=self.config.mirror_ack_timeout_ms / 1000)
                self._engines[name] = engine
            else:
                engine = LogEngine(self.store_dir(name))
            store = await LocalHandleStore.open(engine, self.commit_observer(name))
        except (StoreError, OSError) as exc:
            self._engines.pop(name, None)
            raise AggregateError(f"cannot open the handle store of {name!r}: {exc}") from exc
        self._stores[name] = store
        return store

    async def _close_store(self, name: str) -> None:
        store = self._stores.pop(name, None)
        self._engines.pop(name, None)
        if store is not None:
            await store.shutdown()

    async def _open_replica(self, name: str) -> None:
        if name in self._replicas:
            return
        try:
            replica = await ReplicaEndpoint.open(self.state_dir, name, self.link)
        except (StoreError, OSError) as exc:
            log.error("%s: cannot keep a replica: %s", name, exc)
            return
        self._replicas[name] = replica
        self.link.register(replica)

    async def _close_replica(self, name: str) -> None:
        replica = self._replicas.pop(name, None)
        if replica is not None:
            await replica.close()

    # --- status ---------------------------------------------------------------------------

    def partner_tickles(self, name: str) -> tuple:
        """The partner's last tickle list of ``name`` (kept: a LIF moved here
        alone uses it without adopting anything)."""
        return self.link.partner_tickles.get(name, ()) if self.link is not None else ()

    def mirror_status(self, name: str) -> dict | None:
        source = self._engines.get(name) or self._replicas.get(name)
        status = source.status() if source is not None else None
        return None if status is None else dataclasses.asdict(status)

    def status(self) -> dict:
        aggregates = self.server.aggregates.status()
        for entry in aggregates:
            entry["mirror"] = self.mirror_status(entry["name"])
        link = self.link
        return {"node_id": self.config.node_id, "cluster": self.config.name,
                "mirror_link": ("up" if link is not None and link.is_open
                                else "down" if link is not None else "not configured"),
                "mirror_link_counts": ({"connects": link.connects, "drops": link.drops,
                                        "refused_peers": link.refused_peers,
                                        "dropped_frames": dict(link.dropped_frames)}
                                       if link is not None else {}),
                "aggregates": aggregates}
