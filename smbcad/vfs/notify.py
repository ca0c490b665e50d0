"""inotify(7): the I/O shell under CHANGE_NOTIFY ([MS-SMB2] 3.3.5.19).

A thin wrapper: create the instance, add and remove watches on directories
beneath an open directory, read the queued events, and hook the descriptor
into the event loop.  Everything that decides what an event *means* lives in
``smbcad.server.notify`` and is tested without a kernel.

Watches are added through ``/proc/self/fd/N`` of a directory first opened
with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a name that a local
process swapped for a symlink never puts a watch outside the share.
inotify watches inodes: one instance serves the whole server, and adding a
watch on an inode already watched returns the same descriptor (wd).

This is the one module allowed to do file I/O on the event loop thread (the
reader callback); each call is a few syscalls.
"""

import ctypes
import errno
import os
import struct
from typing import Callable, NamedTuple

from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.vfs._openat2 import RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, Syscalls

# include/uapi/linux/inotify.h
IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

# What every watch asks for: names, data, metadata, and the closes that let
# the server report a renamed file's MODIFIED the way Windows does.  Reads
# (IN_ACCESS) and opens are left out: Windows does not report them either.
WATCH_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_MOVED_FROM
              | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
              | IN_ONLYDIR | IN_EXCL_UNLINK)

_EVENT = struct.Struct("iIII")          # wd, mask, cookie, len (native, as the kernel writes it)
_READ_SIZE = 64 * 1024
# A directory that vanished or stopped being one between the event and the watch.
_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV})
_BENEATH = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS


class InotifyEvent(NamedTuple):
    """One ``struct inotify_event``; ``name`` is "" for events on the watched
    directory itself (decoded with surrogateescape)."""

    wd: int
    mask: int
    cookie: int
    name: str


class WatchedDir(NamedTuple):
    """A new (or existing) watch and, when asked for, the directory's entries
    as (name, is_directory) pairs, listed after the watch was in place."""

    wd: int
    entries: tuple[tuple[str, bool], ...]


def parse_events(data: bytes) -> list[InotifyEvent]:
    """Split a read(2) of the inotify descriptor into events."""
    events = []
    offset = 0
    while offset + _EVENT.size <= len(data):
        wd, mask, cookie, length = _EVENT.unpack_from(data, offset)
        offset += _EVENT.size
        raw = data[offset:offset + length].split(b"\0", 1)[0]
        offset += length
        events.append(InotifyEvent(wd, mask, cookie, os.fsdecode(raw)))
    return events


class Inotify:
    """One inotify instance (non-blocking, close-on-exec)."""

    def __init__(self, syscalls: Syscalls | None = None) -> None:
        self._sys = syscalls or Syscalls()
        libc = ctypes.CDLL(None, use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._add.restype = ctypes.c_int
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = (ctypes.c_int, ctypes.c_int)
        self._rm.restype = ctypes.c_int
        init1 = libc.inotify_init1
        init1.argtypes = (ctypes.c_int,)
        init1.restype = ctypes.c_int
        fd = init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            # EMFILE: fs.inotify.max_user_instances is used up.
            raise SmbError(NtStatus.NOT_SUPPORTED, f"inotify_init1: {os.strerror(err)}")
        self._fd = fd
        self._loop = None

    def fileno(self) -> int:
        return self._fd

    # -- watches ---------------------------------------------------------------

    def watch(self, base_fd: int, relpath: str, *, list_entries: bool = False,
              mask: int = WATCH_MASK) -> WatchedDir | None:
        """Watch the directory ``relpath`` ("" = ``base_fd`` itself) beneath the
        open directory ``base_fd`` for the events of ``mask``.  ``None`` if it is gone or no directory;
        STATUS_INSUFFICIENT_RESOURCES when fs.inotify.max_user_watches is reached."""
        try:
            fd = self._sys.openat2(base_fd, relpath or ".", os.O_RDONLY | os.O_DIRECTORY,
                                   resolve=_BENEATH)
        except OSError as err:
            if err.errno in _GONE or err.errno == errno.EACCES:
                return None
            raise SmbError(NtStatus.INSUFFICIENT_RESOURCES, f"open for watch: {err}") from err
        try:
            wd = self._add(self._fd, f"/proc/self/fd/{fd}".encode(), mask)
            if wd < 0:
                err = ctypes.get_errno()
                if err in _GONE or err == errno.EACCES:
                    return None
                raise SmbError(NtStatus.INSUFFICIENT_RESOURCES,
                               f"inotify_add_watch: {os.strerror(err)}")
            entries: tuple = ()
            if list_entries:
                entries = _list(fd)
            return WatchedDir(wd, entries)
        finally:
            os.close(fd)

    def unwatch(self, wd: int) -> None:
        """Remove a watch; one the kernel already dropped (EINVAL) is fine."""
        if self._fd >= 0:
            self._rm(self._fd, wd)

    # -- events ------------------------------------------------------------------

    def read(self) -> list[InotifyEvent]:
        """Everything queued now; ``[]`` when nothing is."""
        events: list[InotifyEvent] = []
        while self._fd >= 0:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not data:
                break
            events.extend(parse_events(data))
        return events

    def attach(self, loop, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop whenever events are queued."""
        self._loop = loop
        loop.add_reader(self._fd, callback)

    def close(self) -> None:
        if self._fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self._fd)
                self._loop = None
            fd, self._fd = self._fd, -1
            os.close(fd)


def _list(fd: int) -> tuple[tuple[str, bool], ...]:
    try:
        with os.scandir(fd) as entries:
            return tuple((entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries)
    except OSError as err:
        if err.errno in _GONE:
            return ()
        raise SmbError(NtStatus.INSUFFICIENT_RESOURCES, f"list for watch: {err}") from err
