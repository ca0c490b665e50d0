"""``SqliteEngine``: the handle store in one SQLite table, WAL mode.

One row per open: ``handles(durable_file_id INTEGER PRIMARY KEY, body BLOB)``,
the body being the encoded record (``records.encode``).  No secondary index
on disk: the CreateGuid index lives in memory (``LocalHandleStore``) and is
rebuilt at load, so a commit writes one b-tree.  DurableFileIds are u64 and
SQLite integers are signed, so ids from 2**63 up are stored minus 2**64.

Settings:

- ``journal_mode=WAL``: a commit appends frames to the -wal file; with
  ``synchronous=FULL`` the WAL is fsync'd at every commit, so a commit is
  durable when it returns.  Checkpoints (every ``checkpoint_pages`` pages)
  copy the WAL into the database and let the WAL be overwritten from its
  start, so steady-state commits overwrite allocated blocks.
- ``synchronous="NORMAL"`` is offered only with an explicit
  ``wal_checkpoint`` after every batch (in WAL mode, NORMAL alone syncs only
  at checkpoints, so an acknowledged commit could be lost on power failure);
  the benchmark compares it with FULL.
- ``locking_mode=EXCLUSIVE``: this process owns the database for its whole
  life (no shared-memory WAL index, and a second smbcad fails at load).
- One group commit is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``).
"""

import os
import sqlite3
from collections.abc import Iterable, Mapping

from smbcad.store.errors import StoreFailed

SCHEMA = 1                          # PRAGMA user_version of the table layout
_SIGN = 1 << 63
_WRAP = 1 << 64


def _to_sql(key: int) -> int:
    return key - _WRAP if key >= _SIGN else key


class SqliteEngine:
    """Engine (``smbcad.store.interface``) on a SQLite database file."""

    name = "sqlite"

    def __init__(self, path: str, *, synchronous: str = "FULL",
                 checkpoint_pages: int = 1000) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = path
        self.synchronous = synchronous
        self.checkpoint_pages = checkpoint_pages
        self._db: sqlite3.Connection | None = None

    def load(self) -> Iterable[bytes]:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
            db = self._db = sqlite3.connect(self.path, isolation_level=None, timeout=0)
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreFailed(f"{self.path}: cannot use WAL mode (got {mode})")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute(f"PRAGMA wal_autocheckpoint={int(self.checkpoint_pages)}")
            db.execute("PRAGMA journal_size_limit=67108864")
            db.execute("BEGIN IMMEDIATE")          # takes the exclusive lock now
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                db.execute("CREATE TABLE IF NOT EXISTS handles ("
                           "durable_file_id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
                db.execute(f"PRAGMA user_version={SCHEMA}")
            elif version != SCHEMA:
                db.execute("ROLLBACK")
                raise StoreFailed(f"{self.path}: table layout {version}, this smbcad "
                                  f"reads {SCHEMA}")
            db.execute("COMMIT")
            return [body for (body,) in db.execute("SELECT body FROM handles")]
        except sqlite3.Error as exc:
            raise StoreFailed(f"{self.path}: {exc}") from exc

    def write(self, changes: Mapping[int, bytes | None]) -> None:
        db = self._db
        puts = [(_to_sql(key), blob) for key, blob in changes.items() if blob is not None]
        removals = [(_to_sql(key),) for key, blob in changes.items() if blob is None]
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if puts:
                    db.executemany("INSERT OR REPLACE INTO handles (durable_file_id, body) "
                                   "VALUES (?, ?)", puts)
                if removals:
                    db.executemany("DELETE FROM handles WHERE durable_file_id = ?", removals)
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            if self.synchronous == "NORMAL":
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            raise StoreFailed(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
