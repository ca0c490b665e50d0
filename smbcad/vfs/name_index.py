"""A per-directory index of names by case key, so that a case-insensitive
lookup ([MS-FSA] 2.1.5.1 phase 6) does not scan the directory (issues 14, 17).

Windows names are case-insensitive; the disk is not.  Every CREATE of a new
name, and every open of a name in another case, must know whether the
directory holds the name in some other case.  Without an index that is a scan
of the whole directory per request: a 20,000-file directory made each create
cost ~10 ms.  With it, the scan happens once per directory and each later
lookup is one dict probe.

Two layers:

- ``DirNames`` (sans-IO): one directory's listable names by case key
  (``fold``), with add, remove and ``match``.  Several spellings of one key
  (``a`` and ``A``, made by local processes) are all kept; ``match`` answers
  the lowest code point spelling, as the scan did.
- ``NameIndex`` (the shell): the ``DirNames`` of recently used directories,
  kept current by inotify(7) and checked against the directory's identity and
  timestamps at every lookup.

Invalidation.  The kernel queues an inotify event for every name created,
removed or moved in a watched directory before the syscall that made it
returns, whoever made it: our own creates, renames and deletes, another
process, a local admin.  Each lookup first applies the queued events, so it
sees every change that completed before it (a change racing the lookup is a
race on the disk too, as with the scan).  What inotify cannot see (a writer on
another host or kernel, a file system mounted over the directory) is caught by
the directory's stamp: a lookup that finds (st_dev, st_ino) absent from the
index builds it; one that finds mtime or ctime moved without any event
explaining it since the stamp was taken rebuilds it.  After a takeover the
adopting node opens the share afresh (a new ``ShareFs``, so a new index); a
share given back finds its old index gone with its ``ShareFs`` too.  A queue
overflow drops every directory; a directory removed or its file system
unmounted drops its own (IN_DELETE_SELF, IN_UNMOUNT, IN_IGNORED).

Where inotify is unavailable (no instance left under
fs.inotify.max_user_instances, no watch under max_user_watches), the
directory is not kept: each lookup scans it, as before the index.

Bounds.  At most ``max_dirs`` directories (least recently used go first) and
``max_names`` names over all of them; a directory holding more than
``max_names`` names on its own is scanned per lookup rather than kept.  The
defaults (512 directories, 400,000 names per share) hold at most ~76 MB at
~190 bytes a name (a 27-character ASCII name ~76, its key and dict slot
~100-115; ``tests/unit/vfs/test_vfs_name_index.py`` measures it).  Each kept
directory holds one inotify watch (~1 KiB of kernel memory).

Thread safety: lookups run on the event loop and in worker threads (a large
directory's first scan, ``LargeDirectory``), so the state sits behind one
lock, held for dict work only: a scan runs outside it, with the events that
arrive meanwhile recorded for the directory and applied on top of the scan
(each name's last event wins, so the order of scan and events does not
matter).
"""

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

from smbcad.proto.errors import SmbError
from smbcad.vfs.errors import LargeDirectory, smb_error
from smbcad.vfs.notify import (IN_ATTRIB, IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_IGNORED,
                               IN_MOVE_SELF, IN_MOVED_FROM, IN_MOVED_TO, IN_ONLYDIR,
                               IN_Q_OVERFLOW, IN_UNMOUNT, Inotify, InotifyEvent)
from smbcad.vfs.paths import is_valid_component

DEFAULT_MAX_DIRS = 512
DEFAULT_MAX_NAMES = 400_000

# What the index watches: names appearing and disappearing, and the changes
# of the directory itself that move its mtime or ctime without a name event.
INDEX_MASK = (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF
              | IN_MOVE_SELF | IN_ATTRIB | IN_ONLYDIR)
_ADDED = IN_CREATE | IN_MOVED_TO
_REMOVED = IN_DELETE | IN_MOVED_FROM
_GONE = IN_DELETE_SELF | IN_UNMOUNT | IN_IGNORED


def fold(name: str) -> str:
    """Case key: per-character upper-casing, like the NTFS upcase table (1:1, no "ß"→"SS")."""
    upper = name.upper()
    if len(upper) == len(name):
        return upper
    return "".join(c if len(c.upper()) != 1 else c.upper() for c in name)


class DirNames:
    """One directory's listable names by case key (sans-IO)."""

    __slots__ = ("_by_key", "count")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._by_key: dict[str, str | tuple[str, ...]] = {}
        self.count = 0
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        """A name appeared; names Windows cannot show are left out (``is_listable``)."""
        if not is_valid_component(name):
            return
        key = fold(name)
        held = self._by_key.get(key)
        if held is None:
            self._by_key[key] = name
        elif isinstance(held, str):
            if held == name:
                return
            self._by_key[key] = (held, name)
        elif name in held:
            return
        else:
            self._by_key[key] = (*held, name)
        self.count += 1

    def remove(self, name: str) -> None:
        """A name went (a name never added is fine)."""
        key = fold(name)
        held = self._by_key.get(key)
        if held is None:
            return
        if isinstance(held, str):
            if held != name:
                return
            del self._by_key[key]
        elif name not in held:
            return
        else:
            rest = tuple(other for other in held if other != name)
            self._by_key[key] = rest[0] if len(rest) == 1 else rest
        self.count -= 1

    def match(self, name: str) -> str | None:
        """The spelling on disk equal to ``name`` ignoring case, other than
        ``name`` itself (already tried exactly); the lowest wins."""
        held = self._by_key.get(fold(name))
        if held is None:
            return None
        if isinstance(held, str):
            return held if held != name else None
        others = [other for other in held if other != name]
        return min(others) if others else None


class _Dir:
    """A kept directory: its names (None while its first scan runs), the
    events met during that scan, and the stamp it was last checked against."""

    __slots__ = ("wd", "names", "pending", "stamp", "seen")

    def __init__(self, wd: int, stamp: tuple[int, int]) -> None:
        self.wd = wd
        self.names: DirNames | None = None
        self.pending: dict[str, bool] = {}
        self.stamp = stamp
        self.seen = False       # an event was applied since ``stamp`` was taken


def _stamp(st: os.stat_result) -> tuple[int, int]:
    return st.st_mtime_ns, st.st_ctime_ns


def _scan(dir_fd: int) -> list[str]:
    try:
        return os.listdir(dir_fd)
    except OSError as err:
        raise smb_error(err) from err


class NameIndex:
    """The ``DirNames`` of recently used directories of one share."""

    def __init__(self, max_dirs: int = DEFAULT_MAX_DIRS, max_names: int = DEFAULT_MAX_NAMES,
                 inotify: Callable[[], Inotify] = Inotify) -> None:
        self.max_dirs = max_dirs
        self.max_names = max_names
        self._make_inotify = inotify
        self._inotify: Inotify | None = None
        self._inotify_failed = False
        self._lock = threading.Lock()
        self._dirs: OrderedDict[tuple[int, int], _Dir] = OrderedDict()
        self._by_wd: dict[int, tuple[int, int]] = {}
        self.names = 0          # names held over all kept directories
        self.scans = 0          # directory scans made (tests and the bench read it)

    # -- lookups ------------------------------------------------------------

    def match(self, dir_fd: int, name: str, max_scan_bytes: int | None = None) -> str | None:
        """The spelling in the directory ``dir_fd`` (opened O_RDONLY) equal
        to ``name`` ignoring case, other than ``name``; ``LargeDirectory``
        rather than scan one past ``max_scan_bytes``."""
        try:
            st = os.fstat(dir_fd)
        except OSError as err:
            raise smb_error(err) from err
        key = (st.st_dev, st.st_ino)
        with self._lock:
            self._drain()
            kept = self._dirs.get(key)
            if kept is not None and kept.names is not None:
                if kept.stamp == _stamp(st) or kept.seen:
                    kept.stamp, kept.seen = _stamp(st), False
                    self._dirs.move_to_end(key)
                    return kept.names.match(name)
                self._drop(key)         # changed behind inotify's back: scan again
        if max_scan_bytes is not None and st.st_size > max_scan_bytes:
            raise LargeDirectory(name)
        return self._build(dir_fd, key, st).match(name)

    def close(self) -> None:
        """Drop everything; a lookup still running (in a worker thread) scans
        and keeps nothing, so no inotify instance outlives the share."""
        with self._lock:
            self._inotify_failed = True
            self._dirs.clear()
            self._by_wd.clear()
            self.names = 0
            if self._inotify is not None:
                self._inotify.close()
                self._inotify = None

    def __len__(self) -> int:
        return len(self._dirs)

    # -- building ------------------------------------------------------------

    def _build(self, dir_fd: int, key: tuple[int, int], st: os.stat_result) -> DirNames:
        with self._lock:
            wd = self._watch(dir_fd)
            if wd is not None:
                kept = _Dir(wd, _stamp(st))
                self._forget_wd(wd)
                self._dirs[key] = kept
                self._by_wd[wd] = key
            self.scans += 1
        names = DirNames(_scan(dir_fd))
        if wd is None:
            return names
        with self._lock:
            self._drain()
            if self._dirs.get(key) is not kept:
                return names        # dropped meanwhile (overflow, eviction): answer once
            for name, present in kept.pending.items():
                (names.add if present else names.remove)(name)
            kept.pending.clear()
            if names.count > self.max_names:
                self._drop(key)
                return names
            kept.names = names
            self.names += names.count
            self._evict()
        return names

    def _watch(self, dir_fd: int) -> int | None:
        """A watch on the directory, or None without inotify (then it is not kept)."""
        if self._inotify is None:
            if self._inotify_failed:
                return None
            try:
                self._inotify = self._make_inotify()
            except SmbError:
                self._inotify_failed = True     # no instance left: scan, as before the index
                return None
        try:
            watched = self._inotify.watch(dir_fd, "", mask=INDEX_MASK)
        except SmbError:
            return None                         # no watch left (max_user_watches)
        return None if watched is None else watched.wd

    def _evict(self) -> None:
        while self._dirs and (len(self._dirs) > self.max_dirs or self.names > self.max_names):
            self._drop(next(iter(self._dirs)))

    def _drop(self, key: tuple[int, int]) -> None:
        kept = self._dirs.pop(key, None)
        if kept is None:
            return
        if kept.names is not None:
            self.names -= kept.names.count
        if self._by_wd.get(kept.wd) == key:
            del self._by_wd[kept.wd]
            if self._inotify is not None:
                self._inotify.unwatch(kept.wd)

    def _forget_wd(self, wd: int) -> None:
        """inotify gives an inode already watched the same wd: a directory
        kept under another key with it is stale (its inode was reused)."""
        old = self._by_wd.pop(wd, None)
        if old is not None:
            kept = self._dirs.pop(old, None)
            if kept is not None and kept.names is not None:
                self.names -= kept.names.count

    # -- events ----------------------------------------------------------------

    def _drain(self) -> None:
        if self._inotify is None:
            return
        for event in self._inotify.read():
            self._apply(event)

    def _apply(self, event: InotifyEvent) -> None:
        if event.mask & IN_Q_OVERFLOW:
            for key in list(self._dirs):
                self._drop(key)
            return
        key = self._by_wd.get(event.wd)
        if key is None:
            return
        kept = self._dirs[key]
        if event.mask & _GONE:
            self._drop(key)
            return
        kept.seen = True
        if not event.name or not event.mask & (_ADDED | _REMOVED):
            return
        present = bool(event.mask & _ADDED)
        if kept.names is None:
            kept.pending[event.name] = present
            return
        before = kept.names.count
        (kept.names.add if present else kept.names.remove)(event.name)
        self.names += kept.names.count - before
        if self.names > self.max_names:
            self._evict()
