"""The three Linux syscalls Python's ``os`` module lacks: openat2, renameat2, fallocate.

openat2(2) (Linux 5.6) is what keeps every lookup inside the share: with
``RESOLVE_BENEATH`` the kernel refuses any resolution step (a ``..``, an
absolute path, an absolute or climbing symlink) that would leave the directory
the dirfd names, failing with EXDEV.  ``RESOLVE_NO_MAGICLINKS`` stops
``/proc/<pid>/fd``-style links from teleporting out.  ``RESOLVE_NO_XDEV`` is
deliberately not set, so a file system mounted inside the share is served.

The libc handle is loaded per instance (``ShareFs`` owns one), not at import
(shared/STYLE.md rule 15).
"""

import ctypes
import errno
import os
import platform
from types import MappingProxyType

# include/uapi/linux/openat2.h
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
SHARE_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS

# include/uapi/linux/fs.h, include/uapi/linux/falloc.h
RENAME_NOREPLACE = 0x1
FALLOC_FL_KEEP_SIZE = 0x1

# (openat2, renameat2) syscall numbers; asm-generic tables share openat2's 437.
_SYSCALL_NUMBERS = MappingProxyType({
    "x86_64": (437, 316),
    "amd64": (437, 316),
    "aarch64": (437, 276),
    "arm64": (437, 276),
})

# The kernel may answer EAGAIN under RESOLVE_BENEATH when a concurrent rename
# makes it unable to prove that a ".." inside a symlink target stayed beneath.
_EAGAIN_RETRIES = 8


def _c_path(path: str | bytes) -> bytes:
    """Encode for C; an embedded NUL would silently cut the path, so refuse it."""
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise OSError(errno.EINVAL, "embedded NUL in path")
    return raw


class _OpenHow(ctypes.Structure):
    """struct open_how (include/uapi/linux/openat2.h): flags, mode, resolve."""

    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_OPEN_HOW_SIZE = ctypes.sizeof(_OpenHow)


class Syscalls:
    """ctypes bindings; raise ``OSError`` with the kernel's errno on failure."""

    def __init__(self) -> None:
        numbers = _SYSCALL_NUMBERS.get(platform.machine().lower())
        if numbers is None:
            raise OSError(errno.ENOSYS, f"openat2: unsupported machine {platform.machine()!r}")
        self._nr_openat2, self._nr_renameat2 = numbers
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = self._libc.syscall
        self._syscall.restype = ctypes.c_long
        # openat2 on every CREATE: a function object of its own with argtypes,
        # so a call converts plain ints and bytes without wrapper objects.
        self._openat2 = self._libc["syscall"]
        self._openat2.restype = ctypes.c_long
        self._openat2.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p,
                                  ctypes.c_void_p, ctypes.c_size_t)
        self._fallocate = self._libc.fallocate
        self._fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
        self._fallocate.restype = ctypes.c_int

    def openat2(self, dirfd: int, path: str | bytes, flags: int, mode: int = 0,
                resolve: int = SHARE_RESOLVE) -> int:
        """openat2(dirfd, path, {flags | O_CLOEXEC, mode, resolve}) → new fd."""
        how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
        raw = _c_path(path)
        for _ in range(_EAGAIN_RETRIES):
            fd = self._openat2(self._nr_openat2, dirfd, raw, ctypes.addressof(how), _OPEN_HOW_SIZE)
            if fd >= 0:
                return fd
            err = ctypes.get_errno()
            if err not in (errno.EAGAIN, errno.EINTR):
                break
        raise OSError(err, os.strerror(err), os.fsdecode(raw))

    def renameat2(self, olddirfd: int, oldname: str | bytes, newdirfd: int,
                  newname: str | bytes, flags: int = 0) -> None:
        """renameat2(2); ``RENAME_NOREPLACE`` makes "fail if the target exists" atomic."""
        old, new = _c_path(oldname), _c_path(newname)
        while True:
            rc = self._syscall(ctypes.c_long(self._nr_renameat2), ctypes.c_int(olddirfd),
                               ctypes.c_char_p(old), ctypes.c_int(newdirfd),
                               ctypes.c_char_p(new), ctypes.c_uint(flags))
            if rc == 0:
                return
            err = ctypes.get_errno()
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err), os.fsdecode(new))

    def fallocate(self, fd: int, mode: int, offset: int, length: int) -> None:
        """fallocate(2); ``FALLOC_FL_KEEP_SIZE`` reserves blocks without moving EOF."""
        while True:
            if self._fallocate(fd, mode, offset, length) == 0:
                return
            err = ctypes.get_errno()
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))
