"""The open-state database: LMDB under the share-mode records (I/O shell).

docs/multicore.md step 1: the state every worker process of a node must see
to decide a CREATE lives in one memory-mapped LMDB environment that each
process reads and changes itself, in short transactions; processes do not
ask each other.  Its ``files`` sub-database holds, per file,
``smbcad.openstate.record`` bytes (its opens' owner, id, access and share
access, and delete-pending); ``locks`` the byte-range locks
(``lockrecord``); ``dirleases`` who holds directory leases where
(``dirleaserecord``); ``connections`` each process's connections, in all
and per client address (``countrecord``).  ``smbcad.openstate.table`` says what each operation
does to them.

It is volatile state, rebuilt from nothing at every start (Samba's
CLEAR_IF_FIRST TDBs): whatever must survive a restart is in the handle
store, and ``OpenTable.adopt`` registers restored opens again.  So LMDB
runs without fsync (``sync=False``): a process crash loses nothing that a
later start would keep, and LMDB's robust writer mutex recovers from a
process that dies inside a transaction.  A write transaction holds the
single writer lock for a few microseconds.
"""

import os
import shutil
import tempfile
import weakref

import lmdb

from smbcad.openstate.table import OpenStateError, OpenStateFull, OpenStateTable

# Virtual address space, not memory or disk: the file grows only with use.
# One open costs ~20 bytes of record plus B-tree overhead; a million opens
# fit in a small fraction of it.
MAP_SIZE = 1 << 30
# LMDB copies pages on write, so even a removal needs free pages: adds stop
# this many pages short of the map's end, and CLOSE always finds room.
RESERVE_PAGES = 128
_CHECK_EVERY = 16          # adds between looks at the map's high-water mark


class OpenStateDb(OpenStateTable):
    """One process's handle on the environment at ``path``."""

    _full_errors = (lmdb.MapFullError,)

    def __init__(self, path: str, *, create_empty: bool, owner: int | None = None,
                 map_size: int = MAP_SIZE) -> None:
        """``create_empty``: the process that starts a node's workers makes the
        database anew (any file left from an earlier run goes); the others
        open what it made.  ``owner`` names this process in its entries
        (default: its pid)."""
        self.path = path
        self.owner = os.getpid() if owner is None else owner
        try:
            if create_empty:
                shutil.rmtree(path, ignore_errors=True)
            os.makedirs(path, mode=0o700, exist_ok=True)
            self._env = lmdb.open(path, map_size=map_size, max_dbs=4, sync=False,
                                  metasync=False, writemap=True, readahead=False,
                                  meminit=False, subdir=True, create=create_empty)
            self._files = self._env.open_db(b"files")
            self._locks = self._env.open_db(b"locks")
            self._dir_leases = self._env.open_db(b"dirleases")
            self._connections = self._env.open_db(b"connections")
            pages = map_size // self._env.stat()["psize"]
        except (OSError, lmdb.Error) as exc:
            raise OpenStateError(f"{path}: {exc}") from None
        if pages <= 2 * RESERVE_PAGES:
            raise OpenStateError(f"{path}: a map of {map_size} bytes leaves no room")
        self._last_page_for_adds = pages - RESERVE_PAGES
        self._adds = 0
        self._full = False

    @classmethod
    def private(cls) -> "OpenStateDb":
        """A database of this process alone, in a temporary directory removed
        when the object goes (tests that run the server over LMDB)."""
        where = "/dev/shm" if os.path.isdir("/dev/shm") else None
        path = tempfile.mkdtemp(prefix="smbcad-openstate-", dir=where)
        db = cls(path, create_empty=True)
        weakref.finalize(db, _remove, db._env, path)
        return db

    def close(self) -> None:
        self._env.close()

    def add_open(self, key: tuple, open_id: int, access: int, share: int, *,
                 checked: bool = False, stat_open: bool = False) -> None:
        # The high-water mark only grows (freed pages are reused below it),
        # so a map that once came within the reserve stays closed to adds:
        # at 1 GiB that takes millions of opens at once.
        self._adds += 1
        if self._full or not self._adds % _CHECK_EVERY:
            self._full = self._env.info()["last_pgno"] >= self._last_page_for_adds
            if self._full:
                raise OpenStateFull(f"no room for another open of {key}: {self.path} "
                                    f"is within {RESERVE_PAGES} pages of its map size")
        super().add_open(key, open_id, access, share, checked=checked, stat_open=stat_open)

    shared = True

    def _begin(self, write: bool = False, locks: bool = False, dirleases: bool = False,
               connections: bool = False) -> lmdb.Transaction:
        db = (self._connections if connections else self._dir_leases if dirleases
              else self._locks if locks else self._files)
        return self._env.begin(db=db, write=write)

    @staticmethod
    def _scan(txn: lmdb.Transaction) -> list:
        return list(txn.cursor())

    def count(self) -> int:
        with self._begin() as txn:
            return txn.stat(self._files)["entries"]


def _remove(env, path: str) -> None:
    env.close()
    shutil.rmtree(path, ignore_errors=True)
