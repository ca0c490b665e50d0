"""Global server state ([MS-SMB2] 3.3.1.5 Server) and its lifecycle hooks."""

import asyncio
import itertools
import logging
import secrets
import time

from smbcad.server.adm import Session, Share
from smbcad.server.leases import Leasing

log = logging.getLogger("smbcad.server")


class SmbServer:
    """Everything shared across connections: config, shares, users, sessions, opens.

    Built by ``smbcad.daemon`` with its ports injected (share filesystems, the
    authenticator, metrics, the server GUID from the state directory).
    """

    def __init__(self, config, *, server_guid: bytes, authenticator, metrics,
                 open_share_fs, clock=time.time, handle_store=None) -> None:
        self.config = config
        self.server_guid = server_guid
        self.authenticator = authenticator
        self.metrics = metrics
        self.clock = clock
        self.start_time = clock()
        self._open_share_fs = open_share_fs
        self.shares: dict[str, Share] = {}
        self.sessions: dict[int, Session] = {}           # GlobalSessionTable
        self.opens_by_persistent_id: dict[int, object] = {}   # GlobalOpenTable
        self.opens_by_file: dict[tuple, list] = {}       # share-mode table per (dev, ino)
        self.opens_by_create_guid: dict[bytes, object] = {}   # DH2Q opens (3.3.5.9.10)
        # (CreateGuid, ClientGuid) of DH2Q CREATEs waiting for a break → their requests
        self.creates_in_progress: dict[tuple, set] = {}
        # Persistent opens' durable records (smbcad.store); None: no persistent handles.
        self.handle_store = handle_store
        self._background: set = set()
        self.connections: set = set()
        self.pipe_environment = None                     # built on first IPC$ pipe open
        self.notify_registry = None                      # inotify watches, from the first CHANGE_NOTIFY
        self.leasing = Leasing()                         # oplocks and leases (issue 3)
        self.leasing.server = self                       # lease breaks, purges (issue 4)
        self._async_ids = itertools.count(1)
        self._volatile_ids = itertools.count(1)
        # Persistent ids must not repeat across restarts (issue 4 stores them);
        # a random 64-bit start makes a clash after restart vanishingly unlikely.
        self._persistent_ids = itertools.count(secrets.randbits(62) | 1)
        self._apply_shares(config)

    # --- ids ---------------------------------------------------------------------

    def next_async_id(self) -> int:
        return next(self._async_ids)

    def next_file_ids(self) -> tuple[int, int]:
        persistent_id = next(self._persistent_ids)
        while persistent_id in self.opens_by_persistent_id:    # restored after a restart
            persistent_id = next(self._persistent_ids)
        return persistent_id, next(self._volatile_ids)

    def next_volatile_id(self) -> int:
        return next(self._volatile_ids)

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
        shares = {"ipc$": self.shares.get("ipc$") or Share("IPC$", "", "IPC Service", is_ipc=True)}
        for cfg in config.shares:
            old = self.shares.get(cfg.name.lower())
            fs = old.fs if old is not None and old.path == cfg.path else self._open_share_fs(cfg.path)
            shares[cfg.name.lower()] = Share(
                name=cfg.name, path=cfg.path, comment=cfg.comment, is_ca=cfg.ca,
                encrypt_data=cfg.encrypt, read_only=cfg.read_only,
                ca_timeout_ms=cfg.ca_timeout_ms, fs=fs)
        self.shares = shares

    def reload(self, config, authenticator) -> None:
        """New shares and users take effect for new tree connects and sessions;
        existing ones keep what they have until they end."""
        self.config = config
        self.authenticator = authenticator
        self._apply_shares(config)
        log.info("reloaded: %d shares", len(config.shares))

    def find_share(self, name: str) -> Share | None:
        return self.shares.get(name.lower())

    # --- sessions -----------------------------------------------------------------

    def add_session(self, session: Session) -> None:
        self.sessions[session.session_id] = session
        self.metrics.sessions.set(len(self.sessions))

    def drop_session(self, session: Session, *, keep_durable: bool = False) -> None:
        """End a session (3.3.4.16 LOGOFF, 3.3.7.1 connection lost): its opens
        close, except, when ``keep_durable`` (the connection was lost, or the
        client reconnected with PreviousSessionId), the durable, persistent and
        resilient ones, which wait for a reconnect (smbcad.server.durable)."""
        from smbcad.server import durable, files
        for open_ in list(session.opens.values()):
            if keep_durable and open_.survives_disconnect and not open_.closed:
                commit = durable.disconnect(self, open_)
                if commit is not None:
                    self.spawn(commit)
            else:
                files.close_open(self, open_)
        session.opens.clear()
        for tree in list(session.trees.values()):
            self.metrics.tree_connects.dec()
        session.trees.clear()
        self.sessions.pop(session.session_id, None)
        session.connection.sessions.pop(session.session_id, None)
        self.metrics.sessions.set(len(self.sessions))
