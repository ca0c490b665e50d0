"""Global server state ([MS-SMB2] 3.3.1.5 Server) and its lifecycle hooks."""

import asyncio
import itertools
import logging
import secrets
import time

from smbcad.openstate.table import MemoryOpenState
from smbcad.server.adm import Session, SessionState, Share
from smbcad.server.aggregates import Aggregates
from smbcad.server.connections import ConnectionSet
from smbcad.server.leases import Leasing
from smbcad.server.limits import LimitReporter
from smbcad.server.opens import AdoptResult, OpenTable

log = logging.getLogger("smbcad.server")


class SmbServer:
    """Everything shared across connections: config, shares, users, sessions, opens.

    Built by ``smbcad.daemon`` with its ports injected (share filesystems, the
    authenticator, metrics, the server GUID from the state directory).
    """

    def __init__(self, config, *, server_guid: bytes, authenticator, metrics,
                 open_share_fs, clock=time.time, handle_store=None,
                 open_state=None, node_id: int = 0) -> None:
        self.config = config
        self.server_guid = server_guid
        self.authenticator = authenticator
        self.metrics = metrics
        self.clock = clock
        self.start_time = clock()
        self._open_share_fs = open_share_fs
        self.shares: dict[str, Share] = {}
        self.sessions: dict[int, Session] = {}           # GlobalSessionTable
        # The node's own store of persistent opens (smbcad.store) for shares
        # not on an aggregate; None: no persistent handles there.
        self.handle_store = handle_store
        self._background: set = set()
        self.connections = ConnectionSet()
        self.limits = LimitReporter(metrics.limit_hits)
        metrics.async_requests.set_function(
            lambda: sum(len(conn.pending) for conn in list(self.connections)))
        self.pipe_environment = None                     # built on first IPC$ pipe open
        self.notify_registry = None                      # inotify watches, from the first CHANGE_NOTIFY
        # The node's other worker processes (smbcad.workers.peers.Peers), set
        # by the daemon when server.workers > 1; None: this is the only one.
        self.peers = None
        self.leasing = Leasing()                         # oplocks and leases
        self.leasing.server = self                       # lease breaks reach connections
        # Share modes and delete-pending as every process of the node sees
        # them (smbcad.openstate): in this process's memory while it is the
        # node's only one, LMDB (OpenStateDb) once several share the node.
        self.opens = OpenTable(metrics=metrics, clock=clock, leasing=self.leasing,
                               spawn=self.spawn, loop=self.loop,
                               open_state=open_state or MemoryOpenState(),
                               node_id=node_id)
        self.opens.on_closed = self._open_closed
        # Worker processes: tell the others a directory became delete-pending
        # (their CHANGE_NOTIFYs on it complete); set by the daemon.
        self.directory_delete_pending_elsewhere = lambda _key: None
        self._async_ids = itertools.count(1)
        self._apply_shares(config)
        # Aggregates come from the config at start; a reload does not move them.
        self.aggregates = Aggregates(self, getattr(config, "cluster", None))

    # --- ids ---------------------------------------------------------------------

    def next_async_id(self) -> int:
        return next(self._async_ids)

    def next_file_ids(self) -> tuple[int, int]:
        return self.opens.next_file_ids()

    def _open_closed(self, open_, delete_pending: bool) -> None:
        if self.notify_registry is not None:
            self.notify_registry.open_closed(open_, delete_pending)
        if delete_pending and open_.is_directory:
            self.directory_delete_pending_elsewhere(open_.file_key)

    # --- background work -------------------------------------------------------------

    @staticmethod
    def loop():
        return asyncio.get_running_loop()

    def spawn(self, awaitable) -> asyncio.Future:
        """Run a store commit nobody waits for; failures are logged (the
        store poisons itself and says so)."""
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background store commit failed: %s", task.exception())

    async def settle(self) -> None:
        """Wait for background commits (clean shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def new_session_id(self) -> int:
        """Unguessable, never 0 or all-ones, unique in the session table."""
        while True:
            session_id = secrets.randbits(64)
            if session_id not in (0, 0xFFFFFFFFFFFFFFFF) and session_id not in self.sessions:
                return session_id

    # --- shares and users (SIGHUP reload) -----------------------------------------

    def _apply_shares(self, config) -> None:
        """Shares from the config.  A node-local share is online at once; a
        share on an aggregate stays offline (no fd on its mount point, so the
        cluster service can unmount it) until the aggregate is adopted here."""
        shares = {"ipc$": self.shares.get("ipc$") or Share(
            "IPC$", "", "IPC Service", is_ipc=True, counters=self.metrics.share_counters("IPC$"))}
        for cfg in config.shares:
            old = self.shares.get(cfg.name.lower())
            aggregate = getattr(cfg, "aggregate", "")
            volume_id = getattr(cfg, "volume_id", None)
            case_sensitive = getattr(cfg, "case_sensitive", False)
            same = (old is not None and old.path == cfg.path and old.aggregate == aggregate
                    and old.volume_id == volume_id and old.case_sensitive == case_sensitive)
            share = Share(
                name=cfg.name, path=cfg.path, comment=cfg.comment, is_ca=cfg.ca,
                encrypt_data=cfg.encrypt, read_only=cfg.read_only,
                ca_timeout_ms=cfg.ca_timeout_ms, aggregate=aggregate, volume_id=volume_id,
                case_sensitive=case_sensitive, counters=self.metrics.share_counters(cfg.name))
            if same:
                share.fs, share.store = old.fs, old.store
            elif not aggregate:
                share.fs, share.store = self.open_share_fs_for(share), self.handle_store
            shares[cfg.name.lower()] = share
        self.shares = shares

    def open_share_fs_for(self, share: Share):
        """The share's filesystem port (an fd on its root)."""
        options = {}
        if share.volume_id is not None:
            options["volume_id"] = share.volume_id
        if share.case_sensitive:
            options["case_sensitive"] = True
        return self._open_share_fs(share.path, **options)

    @property
    def offers_persistent_handles(self) -> bool:
        """3.3.5.4: a handle store for local shares, or aggregates to adopt."""
        return self.handle_store is not None or any(
            share.aggregate for share in self.shares.values())

    def shares_of(self, aggregate: str) -> list[Share]:
        return [share for share in self.shares.values() if share.aggregate == aggregate]

    async def start_local_shares(self, store) -> AdoptResult:
        """At start: the node's own store serves the node-local shares, and
        the persistent opens it holds from before a restart come back as
        disconnected opens (3.3.7.1) for their clients' DH2C.  Records of
        shares that are not online here are kept, never dropped."""
        self.handle_store = store
        local = {}
        for key, share in self.shares.items():
            if not share.is_ipc and not share.aggregate:
                share.store = store
                local[key] = share
        return await self.opens.adopt(await store.traverse(), local, restart_timers=False)

    def reload(self, config, authenticator) -> None:
        """New shares and users take effect for new tree connects and sessions;
        existing ones keep what they have until they end."""
        self.config = config
        previous, self.authenticator = self.authenticator, authenticator
        if previous is not authenticator:
            previous.close()         # its DC threads end once idle
        self._apply_shares(config)
        log.info("reloaded: %d shares", len(config.shares))

    def find_share(self, name: str) -> Share | None:
        return self.shares.get(name.lower())

    # --- what is held (issue 17: no growth) ----------------------------------------

    def tracked(self) -> dict[str, int]:
        """Sizes of everything the server keeps per connection, session,
        request or open; after the clients leave, all but durable opens must
        return to what they were before they came."""
        connections = list(self.connections)
        sessions = list(self.sessions.values())
        counts = {
            "connections": len(connections),
            "sessions": len(sessions),
            "sessions_in_setup": sum(1 for s in sessions if s.state == SessionState.IN_PROGRESS),
            "auth_exchanges": sum(1 for s in sessions if s.auth_exchange is not None),
            "tree_connects": sum(len(s.trees) for s in sessions),
            "channels": sum(len(s.channels) for s in sessions),
            "channel_bindings": sum(len(conn.bindings) for conn in connections),
            "pending_requests": sum(len(conn.pending) for conn in connections),
            "background_tasks": len(self._background),
        }
        counts.update(self.opens.tracked())
        counts.update(self.leasing.tracked())
        if self.notify_registry is not None:
            counts.update(self.notify_registry.tracked())
        return counts

    # --- sessions -----------------------------------------------------------------

    def add_session(self, session: Session) -> None:
        self.sessions[session.session_id] = session
        self.metrics.sessions.set(len(self.sessions))

    def drop_session(self, session: Session, *, keep_durable: bool = False) -> None:
        """End a session (3.3.4.16 LOGOFF, 3.3.7.1 connection lost): its opens
        close, except, when ``keep_durable`` (the connection was lost, or the
        client reconnected with PreviousSessionId), the durable, persistent and
        resilient ones, which wait for a reconnect (smbcad.server.opens)."""
        self.opens.end_session(session, keep_durable=keep_durable)
        for tree in list(session.trees.values()):
            self.metrics.tree_connects.dec()
        session.trees.clear()
        self.sessions.pop(session.session_id, None)
        # LOGOFF ends it on every channel (3.3.5.6).
        session.connection.sessions.pop(session.session_id, None)
        for conn in list(session.channels):
            conn.sessions.pop(session.session_id, None)
        session.channels.clear()
        self.metrics.sessions.set(len(self.sessions))
