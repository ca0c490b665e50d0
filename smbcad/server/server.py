"""Global server state ([MS-SMB2] 3.3.1.5 Server) and its lifecycle hooks."""

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
                 open_share_fs, clock=time.time) -> None:
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
        self.connections: set = set()
        self.pipe_environment = None                     # built on first IPC$ pipe open
        self.notify_registry = None                      # inotify watches, from the first CHANGE_NOTIFY
        self.leasing = Leasing()                         # oplocks and leases (issue 3)
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
        return next(self._persistent_ids), next(self._volatile_ids)

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

    def drop_session(self, session: Session) -> None:
        """Close everything the session holds (3.3.4.16/3.3.7.1); durable opens
        survive in issue 4's store."""
        from smbcad.server import files
        for open_ in list(session.opens.values()):
            files.close_open(self, open_)
        session.opens.clear()
        for tree in list(session.trees.values()):
            self.metrics.tree_connects.dec()
        session.trees.clear()
        self.sessions.pop(session.session_id, None)
        session.connection.sessions.pop(session.session_id, None)
        self.metrics.sessions.set(len(self.sessions))
