"""Change notify without I/O: which changes an Open hears about, buffered how,
and when a waiting CHANGE_NOTIFY completes.

[MS-SMB2] 3.3.5.19 hands the work to the object store; this module is that
store's notify half ([MS-FSA] 2.1.1.8 ChangeNotifyEntry, 2.1.4.1 reporting a
change, 2.1.5.11 / 2.1.5.11.1 requests and their completion, 2.1.5.5 phase 5
cleanup on close, 2.1.5.15.3 delete pending), fed with inotify events.  The
kernel side is a port (``smbcad.vfs.notify.Inotify``): ``watch``, ``unwatch``
and ``read``; tests drive it with a fake.

What Windows does and inotify says differently:

- The first request on an Open fixes the filter, the watch-tree flag and the
  size of the buffer that keeps changes between requests (2.1.5.11; Samba's
  smb2.notify.mask-change and valid-req show it).  More changes than that
  buffer holds, or an inotify queue overflow, complete the next request with
  STATUS_NOTIFY_ENUM_DIR and no data.
- A rename inside one directory is RENAMED_OLD_NAME + RENAMED_NEW_NAME; across
  directories it is REMOVED + ADDED; in or out of the watched tree it is
  ADDED or REMOVED (IN_MOVED_FROM/IN_MOVED_TO paired by cookie).
- Creating a file stamps its DOS attributes in an xattr right away; that
  IN_ATTRIB is part of the ADDED, not a MODIFIED of its own.
- A renamed file's first close reports MODIFIED for ATTRIBUTES|CREATION, as
  Windows does (smb2.notify.mask-change), but only then (smb2.notify.rec).
- A recursive watch needs one inotify watch per directory; a directory that
  appears later is watched when its IN_CREATE arrives, and whatever it holds
  by then is reported as ADDED (then not again when its own events follow).
"""

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from smbcad.proto.change_notify import CompletionFilter as CF
from smbcad.proto.change_notify import FileAction, FileNotifyInformation, encode_file_notify_information
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.vfs import is_valid_component
from smbcad.vfs.notify import (
    IN_ATTRIB, IN_CLOSE_NOWRITE, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_DELETE_SELF,
    IN_IGNORED, IN_ISDIR, IN_MODIFY, IN_MOVED_FROM, IN_MOVED_TO, IN_Q_OVERFLOW)

log = logging.getLogger("smbcad.notify")

# What an IN_ATTRIB can be: chmod/chown/ACLs, utimensat, our DOS-attribute and
# creation-time xattr, user xattrs (EAs).  inotify does not say which.
_ATTRIB_FILTER = (CF.ATTRIBUTES | CF.LAST_WRITE | CF.LAST_ACCESS | CF.CREATION
                  | CF.SECURITY | CF.EA)
_RENAMED_FILE_FILTER = CF.ATTRIBUTES | CF.CREATION

# Named events on a child of a watched directory: inotify bit →
# (FILE_ACTION, CompletionFilter for a file, for a directory) ([MS-FSA] 2.1.4.1
# FilterMatch as the 2.1.5.x operations raise it).
EVENT_TABLE = {
    IN_CREATE: (FileAction.ADDED, CF.FILE_NAME, CF.DIR_NAME),
    IN_DELETE: (FileAction.REMOVED, CF.FILE_NAME, CF.DIR_NAME),
    IN_MODIFY: (FileAction.MODIFIED, CF.SIZE | CF.LAST_WRITE, CF.SIZE | CF.LAST_WRITE),
    IN_ATTRIB: (FileAction.MODIFIED, _ATTRIB_FILTER, _ATTRIB_FILTER),
}
_TABLE_BITS = IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB
_CLOSE_BITS = IN_CLOSE_WRITE | IN_CLOSE_NOWRITE

# One watch per directory: a tree bigger than this is reported as
# STATUS_NOTIFY_ENUM_DIR ("re-read it") rather than exhausting max_user_watches.
MAX_TREE_WATCHES = 65536
# Renamed files remembered per directory until their first close.
_MAX_RENAMED = 1024


def _entry_size(item: FileNotifyInformation) -> int:
    """Bytes of one FILE_NOTIFY_INFORMATION before padding ([MS-FSCC] 2.7.1)."""
    return 12 + len(item.file_name.encode("utf-16-le"))


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


@dataclass(eq=False)
class NotifyWaiter:
    """One CHANGE_NOTIFY request waiting on an entry; ``resolve(status,
    FILE_NOTIFY_INFORMATION bytes)`` is called exactly once."""

    entry: "ChangeNotifyEntry"
    output_length: int
    resolve: Callable[[int, bytes], None]
    done: bool = False

    def finish(self, status: int, data: bytes = b"") -> None:
        if not self.done:
            self.done = True
            self.resolve(status, data)


@dataclass(eq=False)
class ChangeNotifyEntry:
    """[MS-FSA] 2.1.1.8 ChangeNotifyEntry of one Open, plus its watches.

    ``dirs`` maps each watched directory's wd to its path relative to the
    opened directory ("" for itself, "/"-separated); ``scanned`` holds names a
    scan already reported as ADDED, so their own IN_CREATE is not reported twice.
    """

    open: Any
    completion_filter: int
    watch_tree: bool
    buffer_limit: int                       # the first request's OutputBufferLength
    events: list = field(default_factory=list)
    padded_size: int = 0
    last_pad: int = 0
    overflow: bool = False
    marked_deleted: bool = False
    root_wd: int = -1
    waiters: deque = field(default_factory=deque)
    dirs: dict = field(default_factory=dict)
    scanned: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Encoded size of the buffered chain (the last entry is not padded)."""
        return self.padded_size - self.last_pad

    def clear(self) -> None:
        self.events = []
        self.padded_size = self.last_pad = 0
        self.overflow = False


class NotifyRegistry:
    """Every ChangeNotifyEntry of the server ([MS-FSA] 2.1.1.1
    Volume.ChangeNotifyList) and the inotify watches behind them."""

    def __init__(self, port) -> None:
        self._port = port
        self.entries: dict[Any, ChangeNotifyEntry] = {}     # Open → entry
        self._subs: dict[int, list[ChangeNotifyEntry]] = {}  # wd → entries watching it
        self._last_named: dict[int, tuple[int, str]] = {}    # wd → last (event bit, name)
        self._renamed: dict[int, set[str]] = {}              # wd → files renamed in, not yet closed
        # (wd, name) → closes of a directory this registry opened to watch it:
        # they say nothing of a client's handle (``_child``).
        self._own_closes: dict[tuple[int, str], int] = {}
        self._touched: list[ChangeNotifyEntry] = []

    def tracked(self) -> dict[str, int]:
        """Sizes of the registry's tables (SmbServer.tracked)."""
        return {"notify_entries": len(self.entries),
                "notify_waiters": sum(len(e.waiters) for e in self.entries.values()),
                "notify_watches": len(self._subs),
                "notify_renames": len(self._renamed) + len(self._last_named)
                + len(self._own_closes)}

    # -- requests (2.1.5.11) ---------------------------------------------------------

    def request(self, open_, completion_filter: int, watch_tree: bool, output_length: int,
                resolve: Callable[[int, bytes], None]) -> NotifyWaiter:
        """Queue a request on the Open's entry (made by the first request).

        Buffered changes complete it at once (``waiter.done``); otherwise it
        waits.  STATUS_DELETE_PENDING for a directory being deleted.
        """
        if open_.delete_on_close:
            # Open.ChangeNotifyDirectoryMarkedDeleted (2.1.5.1.1, 2.1.5.1.2, 2.1.5.15.3).
            raise SmbError(NtStatus.DELETE_PENDING, "directory is marked for deletion")
        entry = self.entries.get(open_)
        if entry is None:
            entry = ChangeNotifyEntry(open_, completion_filter & CF.VALID, watch_tree,
                                      output_length)
            self._attach(entry)
            self.entries[open_] = entry
        if entry.marked_deleted:
            raise SmbError(NtStatus.DELETE_PENDING, "watched directory was deleted")
        waiter = NotifyWaiter(entry, output_length, resolve)
        entry.waiters.append(waiter)
        self._deliver(entry)
        return waiter

    def cancel(self, waiter: NotifyWaiter) -> None:
        """CANCEL (3.3.5.16, [MS-FSA] 2.1.5.20): STATUS_CANCELLED; the entry and
        its buffered changes stay."""
        self.discard(waiter)
        waiter.finish(NtStatus.CANCELLED)

    def discard(self, waiter: NotifyWaiter) -> None:
        """Forget a waiter whose request went away (connection lost)."""
        try:
            waiter.entry.waiters.remove(waiter)
        except ValueError:
            pass

    def open_closed(self, open_, delete_pending: bool) -> None:
        """Close of an Open ([MS-FSA] 2.1.5.5 phase 5): its waiting requests
        complete with STATUS_NOTIFY_CLEANUP and its watches go.  When the
        close leaves the directory delete-pending, the other Opens' requests on
        it complete with STATUS_DELETE_PENDING (2.1.5.15.3)."""
        entry = self.entries.pop(open_, None)
        if entry is not None:
            self._detach(entry, NtStatus.NOTIFY_CLEANUP)
        if delete_pending and open_.is_directory:
            self.directory_delete_pending(open_.file_key)

    def directory_delete_pending(self, file_key: tuple) -> None:
        """Directory ``file_key`` is delete-pending (a close here or through
        another worker): the requests of its Opens complete with
        STATUS_DELETE_PENDING (2.1.5.15.3)."""
        for other in [e for e in self.entries.values() if e.open.file_key == file_key]:
            del self.entries[other.open]
            self._detach(other, NtStatus.DELETE_PENDING)

    # -- events -------------------------------------------------------------------------

    def pump(self) -> None:
        """Read what the kernel queued and apply it."""
        events = self._port.read()
        if events and events[-1].mask & IN_MOVED_FROM:
            # Its IN_MOVED_TO may sit just past the end of the read.
            events += self._port.read()
        if events:
            self.feed(events)

    def feed(self, events) -> None:
        """Apply a run of inotify events ([MS-FSA] 2.1.4.1), then complete the
        oldest waiting request of every entry that gained changes (2.1.5.11.1)."""
        if log.isEnabledFor(logging.DEBUG):
            for event in events:
                log.debug("inotify wd=%d mask=%#x cookie=%d name=%r", *event)
        index = 0
        while index < len(events):
            event = events[index]
            mask = event.mask
            if mask & IN_Q_OVERFLOW:
                for entry in self.entries.values():
                    self._overflow(entry)
            elif mask & IN_IGNORED:
                self._forget_wd(event.wd)
            elif mask & IN_MOVED_FROM:
                following = events[index + 1] if index + 1 < len(events) else None
                if (following is not None and following.mask & IN_MOVED_TO
                        and following.cookie == event.cookie):
                    self._move(event, following)
                    index += 1
                else:
                    self._move(event, None)
            elif mask & IN_MOVED_TO:
                self._move(None, event)
            elif not event.name:
                if mask & IN_DELETE_SELF:
                    self._directory_deleted(event.wd)
            else:
                self._child(event)
            index += 1
        touched, self._touched = self._touched, []
        for entry in touched:
            self._deliver(entry)

    def _child(self, event) -> None:
        wd, name, mask = event.wd, event.name, event.mask
        is_dir = bool(mask & IN_ISDIR)
        if mask & _CLOSE_BITS:
            own = self._own_closes.get((wd, name))
            if own:
                # This registry's own open to watch the directory.  With
                # workers the client's CREATE may still be stamping the new
                # directory's attributes on another process: the stamp
                # after this close is still part of its ADDED.
                if own == 1:
                    del self._own_closes[(wd, name)]
                else:
                    self._own_closes[(wd, name)] = own - 1
                return
            if self._last_named.get(wd) == (IN_CREATE, name):
                del self._last_named[wd]     # created and closed: attributes set later are news
            for entry in self._subs.get(wd, ()):
                seen = entry.scanned.get(wd)
                if seen:
                    seen.discard(name)
            renamed = self._renamed.get(wd)
            if renamed is not None and name in renamed:
                renamed.discard(name)
                for entry, path in self._targets(wd, name):
                    self._report(entry, FileAction.MODIFIED, path, _RENAMED_FILE_FILTER)
            return
        bit = mask & _TABLE_BITS
        if not bit:
            return
        if bit == IN_ATTRIB and self._last_named.get(wd) == (IN_CREATE, name):
            return      # the new file's attribute stamp belongs to its ADDED
        self._last_named[wd] = (bit, name)
        action, file_filter, dir_filter = EVENT_TABLE[bit & -bit]   # one type bit per event
        if bit & IN_DELETE:
            self._renamed.get(wd, set()).discard(name)
        for entry, path in self._targets(wd, name):
            if bit & IN_CREATE and self._seen_by_scan(entry, wd, name):
                continue
            if bit & IN_ATTRIB and name in entry.scanned.get(wd, ()):
                # Found by the scan of a directory watched after the entry
                # appeared, its IN_CREATE never came: its attribute stamp,
                # made by another process after the scan, is its ADDED too.
                continue
            if bit & IN_DELETE:
                entry.scanned.get(wd, set()).discard(name)
            self._report(entry, action, path, dir_filter if is_dir else file_filter)
            if bit & IN_CREATE and is_dir and entry.watch_tree:
                self._watch_subtree(entry, path, report=True, parent_wd=wd)

    def _move(self, source, target) -> None:
        """IN_MOVED_FROM / IN_MOVED_TO, paired by cookie when both are here."""
        is_dir = bool((source or target).mask & IN_ISDIR)
        name_filter = CF.DIR_NAME if is_dir else CF.FILE_NAME
        old_paths = {}
        new_paths = {}
        if source is not None:
            self._last_named[source.wd] = (IN_MOVED_FROM, source.name)
            self._renamed.get(source.wd, set()).discard(source.name)
            old_paths = dict(self._targets(source.wd, source.name))
        if target is not None:
            self._last_named[target.wd] = (IN_MOVED_TO, target.name)
            if not is_dir:
                renamed = self._renamed.setdefault(target.wd, set())
                if len(renamed) < _MAX_RENAMED:
                    renamed.add(target.name)
            new_paths = {entry: path for entry, path in self._targets(target.wd, target.name)
                         if not self._seen_by_scan(entry, target.wd, target.name)}
        same_dir = source is not None and target is not None and source.wd == target.wd
        for entry in [e for e in self.entries.values() if e in old_paths or e in new_paths]:
            old, new = old_paths.get(entry), new_paths.get(entry)
            if source is not None and old is not None:
                entry.scanned.get(source.wd, set()).discard(source.name)
            if old is not None and new is not None:
                if same_dir:
                    self._report(entry, FileAction.RENAMED_OLD_NAME, old, name_filter)
                    self._report(entry, FileAction.RENAMED_NEW_NAME, new, name_filter)
                else:
                    self._report(entry, FileAction.REMOVED, old, name_filter)
                    self._report(entry, FileAction.ADDED, new, name_filter)
                if is_dir:
                    self._rename_dirs(entry, old, new)
            elif old is not None:
                self._report(entry, FileAction.REMOVED, old, name_filter)
                if is_dir:
                    self._drop_dirs(entry, old)
            elif new is not None:
                self._report(entry, FileAction.ADDED, new, name_filter)
                if is_dir and entry.watch_tree:
                    self._watch_subtree(entry, new, report=False, parent_wd=target.wd)

    def _directory_deleted(self, wd: int) -> None:
        """The opened directory itself was removed (by anyone): its requests
        complete with STATUS_DELETE_PENDING, as will later ones."""
        for entry in list(self._subs.get(wd, ())):
            if entry.root_wd == wd and not entry.marked_deleted:
                entry.marked_deleted = True
                entry.clear()
                while entry.waiters:
                    entry.waiters.popleft().finish(NtStatus.DELETE_PENDING)

    def _forget_wd(self, wd: int) -> None:
        """IN_IGNORED: the kernel dropped the watch (directory gone, unmounted)."""
        for entry in self._subs.pop(wd, ()):
            entry.dirs.pop(wd, None)
            entry.scanned.pop(wd, None)
        self._last_named.pop(wd, None)
        self._renamed.pop(wd, None)
        for key in [key for key in self._own_closes if key[0] == wd]:
            del self._own_closes[key]

    # -- reporting (2.1.4.1) and completion (2.1.5.11.1) ------------------------------------

    def _targets(self, wd: int, name: str):
        """(entry, path relative to its opened directory) for each entry watching ``wd``."""
        if not is_valid_component(name):
            return []     # a name Windows cannot show (not UTF-8, reserved characters)
        return [(entry, _join(entry.dirs[wd], name)) for entry in self._subs.get(wd, ())]

    @staticmethod
    def _seen_by_scan(entry: ChangeNotifyEntry, wd: int, name: str) -> bool:
        seen = entry.scanned.get(wd)
        if seen and name in seen:
            seen.discard(name)
            return True
        return False

    def _report(self, entry: ChangeNotifyEntry, action: int, path: str, filter_match: int) -> None:
        if entry.marked_deleted or entry.overflow or not entry.completion_filter & filter_match:
            return
        item = FileNotifyInformation(action, path.replace("/", "\\"))
        if action == FileAction.MODIFIED and entry.events and entry.events[-1] == item:
            return      # one change, seen twice (write + close, xattr + utimes)
        size = _entry_size(item)
        padded = (size + 3) & ~3
        entry.events.append(item)
        entry.padded_size += padded
        entry.last_pad = padded - size
        if not entry.waiters and entry.size > entry.buffer_limit:
            self._overflow(entry)
        self._touch(entry)

    def _overflow(self, entry: ChangeNotifyEntry) -> None:
        entry.clear()
        entry.overflow = True
        self._touch(entry)

    def _touch(self, entry: ChangeNotifyEntry) -> None:
        if not entry.waiters:
            return
        if entry not in self._touched:
            self._touched.append(entry)

    @staticmethod
    def _deliver(entry: ChangeNotifyEntry) -> None:
        """Complete the oldest waiting request with everything buffered: the
        changes if they fit its OutputBufferLength, else STATUS_NOTIFY_ENUM_DIR."""
        if not entry.waiters or not (entry.events or entry.overflow):
            return
        waiter = entry.waiters.popleft()
        if entry.overflow or entry.size > waiter.output_length:
            status, data = NtStatus.NOTIFY_ENUM_DIR, b""
        else:
            status, data = NtStatus.SUCCESS, encode_file_notify_information(entry.events)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("notify: complete %#x with %s", status, entry.events)
        entry.clear()
        waiter.finish(status, data)

    # -- watches -------------------------------------------------------------------------

    def _attach(self, entry: ChangeNotifyEntry) -> None:
        """Watch the opened directory, and with WATCH_TREE every directory below it."""
        root = self._port.watch(entry.open.handle.fd, "", list_entries=entry.watch_tree)
        if root is None:
            raise SmbError(NtStatus.DELETE_PENDING, "watched directory is gone")
        entry.root_wd = root.wd
        self._subscribe(entry, root.wd, "")
        if entry.watch_tree:
            self._walk(entry, root, "", report=False)

    def _detach(self, entry: ChangeNotifyEntry, status: int) -> None:
        for wd in list(entry.dirs):
            self._unsubscribe(entry, wd)
        entry.clear()
        while entry.waiters:
            entry.waiters.popleft().finish(status)

    def _watch_subtree(self, entry: ChangeNotifyEntry, path: str, report: bool,
                       parent_wd: int) -> None:
        """Watch a directory that appeared under a tree watch (in the
        directory of ``parent_wd``), and all below it.  ``report``: its
        contents are new too (it was just created), so each is reported as
        ADDED."""
        watched = self._watch_one(entry, path, parent_wd)
        if watched is not None:
            self._walk(entry, watched, path, report)

    def _watch_one(self, entry: ChangeNotifyEntry, path: str, parent_wd: int | None = None):
        """Watch one directory for the entry; None if gone, already watched or
        refused (then the entry overflows: the client must re-read the tree).
        Watching opens and closes it: that close, on ``parent_wd``, is noted
        as this registry's own."""
        try:
            watched = self._port.watch(entry.open.handle.fd, path, list_entries=True)
        except SmbError as exc:
            log.warning("change notify: cannot watch %s: %s", path, exc)
            self._overflow(entry)
            return None
        if watched is not None and parent_wd is not None:
            key = (parent_wd, path.rpartition("/")[2])
            self._own_closes[key] = self._own_closes.get(key, 0) + 1
        if watched is None or not self._subscribe(entry, watched.wd, path):
            return None
        return watched

    def _walk(self, entry: ChangeNotifyEntry, watched, path: str, report: bool) -> None:
        """Depth first (parents before children) without recursion: trees can
        be deeper than Python's stack."""
        stack = [(self._children(entry, watched, path, report), watched.wd)]
        while stack:
            child = next(stack[-1][0], None)
            if child is None:
                stack.pop()
                continue
            child_path, is_dir = child
            if report:
                self._report(entry, FileAction.ADDED, child_path,
                             CF.DIR_NAME if is_dir else CF.FILE_NAME)
            if not is_dir:
                continue
            if len(entry.dirs) >= MAX_TREE_WATCHES:
                log.warning("change notify: more than %d directories under one watch",
                            MAX_TREE_WATCHES)
                self._overflow(entry)
                return
            below = self._watch_one(entry, child_path, stack[-1][1])
            if below is not None:
                stack.append((self._children(entry, below, child_path, report), below.wd))

    @staticmethod
    def _children(entry: ChangeNotifyEntry, watched, path: str, report: bool):
        if report and watched.entries:
            entry.scanned.setdefault(watched.wd, set()).update(name for name, _ in watched.entries)
        for name, is_dir in watched.entries:
            if is_valid_component(name):
                yield _join(path, name), is_dir

    def _subscribe(self, entry: ChangeNotifyEntry, wd: int, path: str) -> bool:
        if wd in entry.dirs:
            return False
        entry.dirs[wd] = path
        self._subs.setdefault(wd, []).append(entry)
        return True

    def _unsubscribe(self, entry: ChangeNotifyEntry, wd: int) -> None:
        entry.dirs.pop(wd, None)
        entry.scanned.pop(wd, None)
        subs = self._subs.get(wd)
        if subs is None:
            return
        if entry in subs:
            subs.remove(entry)
        if not subs:
            del self._subs[wd]
            self._last_named.pop(wd, None)
            self._renamed.pop(wd, None)
            self._port.unwatch(wd)

    @staticmethod
    def _under(path: str, top: str) -> bool:
        return path == top or path.startswith(top + "/")

    def _rename_dirs(self, entry: ChangeNotifyEntry, old: str, new: str) -> None:
        for wd, path in list(entry.dirs.items()):
            if path and self._under(path, old):
                entry.dirs[wd] = new + path[len(old):]

    def _drop_dirs(self, entry: ChangeNotifyEntry, old: str) -> None:
        for wd, path in list(entry.dirs.items()):
            if path and self._under(path, old):
                self._unsubscribe(entry, wd)

