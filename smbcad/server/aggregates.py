"""Shares that follow their aggregate: online on the node that adopted the
aggregate, offline everywhere else (shared/ARCHITECTURE.md, "Shares follow
their aggregate"; shared/reference/cluster.md 7(b) step 6 and 7(c) step 2).

- **adopt**: open every share of the aggregate (its mount point is mounted
  by now), rebuild the persistent opens its store holds as disconnected
  opens, and only then let tree connects in.
- **release**: stop taking requests on the connections that carry a tree of
  the aggregate, let in-flight ones finish (bounded, planned release only),
  close those connections (their persistent opens are disconnected and
  committed), hand the persistent opens over with their records intact,
  wait for the store, and close every fd on the mount point so the cluster
  service can unmount it.
- **scope**: a tree connect for a share of aggregate Y arriving on an
  address (LIF) of aggregate X is refused, so moving X never disturbs Y's
  sessions (the Windows scoped-share model); a tree connect for a share
  whose aggregate is being adopted or released here waits for the outcome,
  because clients give up re-establishing a session on a tree-connect
  failure ([MS-SMB2] 3.2.4.4 / 3.2.5.5).
"""

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

log = logging.getLogger("smbcad.aggregates")

# How long a tree connect waits for an adoption or release in progress.
TREE_CONNECT_HOLD_S = 30.0
# How long a planned release lets requests already running finish.
RELEASE_DRAIN_S = 2.0
_CLOSE_WAIT_S = 5.0
_QUIET_WAIT_S = 2.0            # a planned release: for a request being received to end
_NEXT_REQUEST_WAIT_S = 1.0     # ... and before that, for each client's next request


class Phase(enum.Enum):
    OFFLINE = "offline"
    ADOPTING = "adopting"
    ONLINE = "online"
    RELEASING = "releasing"


class AggregateError(Exception):
    """An adopt or release that cannot be done; the message says why."""


@dataclass(eq=False)
class Aggregate:
    """One aggregate as this node sees it."""

    name: str
    mount_point: str
    addresses: tuple[str, ...] = ()
    phase: Phase = Phase.OFFLINE
    store: Any = None
    changed: asyncio.Event | None = None     # set whenever the phase settles
    adopted: dict = field(default_factory=dict)   # the last adoption's counts
    last_pause_s: float = 0.0                # the last release's client-visible pause
    detail: str = ""                         # why the last adopt or release failed

    def settle(self, phase: Phase, detail: str = "") -> None:
        self.phase = phase
        self.detail = detail
        if self.changed is not None:
            self.changed.set()
            self.changed = None


class Aggregates:
    """The aggregates of this node's config and the verbs that move them."""

    def __init__(self, server, cluster_config) -> None:
        self._server = server
        self.by_name: dict[str, Aggregate] = {}
        self._by_address: dict[str, str] = {}
        if cluster_config is not None:
            for cfg in cluster_config.aggregates:
                self.by_name[cfg.name] = Aggregate(cfg.name, cfg.mount_point, cfg.addresses)
                for address in cfg.addresses:
                    self._by_address[address] = cfg.name

    def get(self, name: str) -> Aggregate:
        aggregate = self.by_name.get(name)
        if aggregate is None:
            raise AggregateError(f"no aggregate {name!r} in this node's config")
        return aggregate

    # --- tree connect -------------------------------------------------------------

    def check_tree_connect(self, share, local_address: str):
        """None if ``share`` can be connected now; otherwise an awaitable to
        wait on (adoption or release in progress).  SmbError when refused.
        IPC$ is everywhere; a node-local share is not reachable through an
        aggregate's address either (moving the address would cut it off)."""
        if share.is_ipc:
            return None
        owner = self._by_address.get(local_address)
        if owner is not None and owner != share.aggregate:
            raise SmbError(NtStatus.BAD_NETWORK_NAME,
                           f"{share.name!r} is not reachable through {local_address} "
                           f"(an address of aggregate {owner!r})")
        if not share.aggregate:
            return None
        aggregate = self.by_name[share.aggregate]
        if aggregate.phase is Phase.ONLINE and share.fs is not None:
            return None
        # Through the aggregate's own LIF, an offline aggregate is one moving
        # away (or not yet here): no answer, so the client waits for the LIF's
        # new owner, which tickles it, instead of giving up on a failure.
        through_lif = owner == share.aggregate
        if aggregate.phase in (Phase.ADOPTING, Phase.RELEASING) or through_lif:
            return self._wait_for(aggregate, share, hold_offline=through_lif)
        raise SmbError(NtStatus.BAD_NETWORK_NAME,
                       f"aggregate {share.aggregate!r} of {share.name!r} is not online here")

    async def _wait_for(self, aggregate: Aggregate, share, *, hold_offline: bool) -> None:
        deadline = time.monotonic() + TREE_CONNECT_HOLD_S
        while aggregate.phase in (Phase.ADOPTING, Phase.RELEASING) or (
                hold_offline and aggregate.phase is Phase.OFFLINE):
            if aggregate.changed is None:
                aggregate.changed = asyncio.Event()
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    await aggregate.changed.wait()
            except TimeoutError:
                break
        if aggregate.phase is not Phase.ONLINE or share.fs is None:
            raise SmbError(NtStatus.BAD_NETWORK_NAME,
                           f"aggregate {aggregate.name!r} did not come online here")

    # --- adopt --------------------------------------------------------------------

    async def adopt(self, name: str, store, records, *, restart_timers: bool):
        """Bring the aggregate's shares online with the opens of ``records``
        (from ``store``, which then takes their commits).  Returns the
        OpenTable's AdoptResult."""
        aggregate = self.get(name)
        if aggregate.phase is Phase.ONLINE:
            raise AggregateError(f"aggregate {name!r} is already online here")
        if aggregate.phase is not Phase.OFFLINE:
            raise AggregateError(f"aggregate {name!r} is {aggregate.phase.value}")
        server = self._server
        aggregate.phase = Phase.ADOPTING
        shares = server.shares_of(name)
        opened = []
        try:
            for share in shares:
                share.fs = server.open_share_fs_for(share)
                share.store = store
                opened.append(share)
            result = await server.opens.adopt(
                records, {share.name.lower(): share for share in shares},
                restart_timers=restart_timers)
        except (OSError, SmbError, ValueError) as exc:
            for share in opened:
                server.opens.release(share)     # whatever was rebuilt: records stay
                _close_share(share)
            aggregate.settle(Phase.OFFLINE, f"adopt failed: {exc}")
            raise AggregateError(f"cannot adopt {name!r}: {exc}") from exc
        aggregate.store = store
        aggregate.adopted = {"restored": result.restored, "intents": result.intents,
                             "kept": result.kept, "dropped": result.dropped}
        aggregate.settle(Phase.ONLINE)
        log.info("aggregate %s online: %d shares, %d persistent opens adopted, %d dropped",
                 name, len(shares), result.restored, result.dropped,
                 extra={"aggregate": name, "state": "online"})
        return result

    # --- release ------------------------------------------------------------------

    async def release(self, name: str, *, planned: bool, clients_cut_off: bool = False) -> int:
        """Take the aggregate's shares offline; returns how many persistent
        opens were handed over with their records.  Planned: in-flight
        requests finish and every disconnect is committed before this returns,
        so the partner adopts with nothing lost.  ``clients_cut_off`` (planned
        only: this node's public links are down): the same, but nothing is
        waited for from the clients (no next request, no FIN): none can come."""
        aggregate = self.get(name)
        if aggregate.phase is Phase.OFFLINE:
            return 0
        if aggregate.phase is not Phase.ONLINE:
            raise AggregateError(f"aggregate {name!r} is {aggregate.phase.value}")
        server = self._server
        started = time.monotonic()
        aggregate.phase = Phase.RELEASING
        shares = server.shares_of(name)
        if not planned:
            # The aggregate is going away under us (clusdisk lost it; its LUN may
            # be fenced already): nothing more goes to its store.  The next
            # owner treats every open as disconnected anyway (cluster.md 7(a)).
            for share in shares:
                share.store = None
        try:
            await self._close_connections(shares, drain_s=RELEASE_DRAIN_S if planned else 0.0,
                                          clients_reachable=not clients_cut_off)
            await server.settle()        # the disconnects' commits (planned)
            handed = 0
            commits = []
            for share in shares:
                handed += sum(1 for open_ in server.opens.opens_on(share) if open_.persistent)
                commits += server.opens.release(share)
            for commit in commits:
                await commit
            if planned and aggregate.store is not None:
                await aggregate.store.commit_barrier()
        finally:
            for share in shares:
                _close_share(share)
            aggregate.store = None
            aggregate.last_pause_s = time.monotonic() - started
            aggregate.settle(Phase.OFFLINE)
        log.info("aggregate %s released (%s): %d persistent opens handed over in %.3f s",
                 name, "planned" if planned else "unplanned", handed, aggregate.last_pause_s,
                 extra={"aggregate": name, "state": "offline"})
        return handed

    async def _close_connections(self, shares, *, drain_s: float,
                                 clients_reachable: bool = True) -> None:
        """Every connection carrying a tree of ``shares`` stops reading, gets
        ``drain_s`` for the requests it is running, then goes (3.3.7.1 runs:
        its durable opens are kept, disconnected).  ``clients_reachable``
        False: the requests running still finish, but no client can send its
        next request or answer a FIN, so each connection is aborted at once
        (the waits for them took ~6 s of a cut-off node's handover)."""
        server = self._server
        share_set = set(shares)
        doomed = [conn for conn in list(server.connections)
                  if any(tree.share in share_set for session in conn.sessions.values()
                         for tree in session.trees.values())]
        for conn in doomed:
            if drain_s:
                conn.sink.hold_requests()
            else:
                conn.sink.stop_reading()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        while loop.time() < deadline and any(conn.pending for conn in doomed):
            await asyncio.sleep(0.01)
        # Planned: close each between two requests, its answers sent, and
        # preferably just after it sent one more (held, never answered): a
        # client that waits for that answer is not sending when the FIN
        # comes (Linux 6.1's cifs fails a request whose send it cuts off).
        graceful = bool(drain_s) and clients_reachable
        next_by = loop.time() + (_NEXT_REQUEST_WAIT_S if graceful else 0.0)
        quiet_by = next_by + (_QUIET_WAIT_S if graceful else 0.0)
        while loop.time() < quiet_by and not all(
                conn.sink.quiet() and (conn.sink.dropped() or loop.time() >= next_by)
                for conn in doomed):
            await asyncio.sleep(0.01)
        for conn in doomed:
            if graceful:
                conn.close_gracefully()         # FIN; the client closes its end
            else:
                conn.close()
        closed_by = loop.time() + _CLOSE_WAIT_S
        while loop.time() < closed_by and any(conn in server.connections for conn in doomed):
            await asyncio.sleep(0.01)
        for conn in doomed:
            if conn in server.connections:      # never reached its connection_lost
                conn.sink.close()
                conn.connection_lost()

    def addresses_not_served(self) -> frozenset[str]:
        """LIFs of aggregates that are not online here: whatever is still up
        of them leads elsewhere soon (FSCTL_QUERY_NETWORK_INTERFACE_INFO)."""
        return frozenset(address for address, name in self._by_address.items()
                         if self.by_name[name].phase is not Phase.ONLINE)

    # --- status ---------------------------------------------------------------------

    def status(self) -> list[dict]:
        return [{"name": aggregate.name, "mount_point": aggregate.mount_point,
                 "addresses": list(aggregate.addresses), "phase": aggregate.phase.value,
                 "shares": [share.name for share in self._server.shares_of(aggregate.name)],
                 "adopted": aggregate.adopted, "last_release_pause_s": aggregate.last_pause_s,
                 "detail": aggregate.detail}
                for aggregate in self.by_name.values()]


def _close_share(share) -> None:
    if share.fs is not None:
        share.fs.close()
    share.fs = None
    share.store = None
