"""errno → NTSTATUS, in one table.

Based on Samba's ``libcli/util/errmap_unix.c`` with the choices below.
Context decides a few codes before this table is consulted: ``share.py``
turns EXDEV/ELOOP/ENOENT met while *resolving* a name into
OBJECT_NAME_NOT_FOUND (last component) or OBJECT_PATH_NOT_FOUND (a parent),
because an escaping symlink must look like a missing file (Samba with
``wide links = no``).  Here EXDEV is the rename(2) meaning: another mount.
"""

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType

from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

class LargeDirectory(Exception):
    """A lookup asked not to scan directories past ``max_scan_bytes`` met one
    it would have to scan for another spelling of a name; the caller runs the
    lookup again where blocking is allowed (a worker thread, issue 17)."""


ERRNO_STATUS = MappingProxyType({
    errno.ENOENT: NtStatus.OBJECT_NAME_NOT_FOUND,
    # [MS-FSA] 2.1.5.1 phase 6: a parent that is not a directory.
    errno.ENOTDIR: NtStatus.OBJECT_PATH_NOT_FOUND,
    errno.ELOOP: NtStatus.OBJECT_PATH_NOT_FOUND,
    errno.EEXIST: NtStatus.OBJECT_NAME_COLLISION,
    errno.EACCES: NtStatus.ACCESS_DENIED,
    errno.EPERM: NtStatus.ACCESS_DENIED,
    errno.EISDIR: NtStatus.FILE_IS_A_DIRECTORY,
    errno.ENOTEMPTY: NtStatus.DIRECTORY_NOT_EMPTY,
    # Samba: "Windows apps need this, not NT_STATUS_QUOTA_EXCEEDED".
    errno.ENOSPC: NtStatus.DISK_FULL,
    errno.EDQUOT: NtStatus.DISK_FULL,
    errno.EFBIG: NtStatus.DISK_FULL,
    errno.EROFS: NtStatus.MEDIA_WRITE_PROTECTED,
    errno.ENAMETOOLONG: NtStatus.OBJECT_NAME_INVALID,
    errno.EXDEV: NtStatus.NOT_SAME_DEVICE,
    errno.EINVAL: NtStatus.INVALID_PARAMETER,
    errno.EBADF: NtStatus.INVALID_HANDLE,
    errno.EBUSY: NtStatus.SHARING_VIOLATION,
    errno.ETXTBSY: NtStatus.SHARING_VIOLATION,
    errno.EMFILE: NtStatus.TOO_MANY_OPENED_FILES,
    errno.ENFILE: NtStatus.TOO_MANY_OPENED_FILES,
    errno.ENOMEM: NtStatus.NO_MEMORY,
    errno.EOPNOTSUPP: NtStatus.NOT_SUPPORTED,
    errno.ENOSYS: NtStatus.NOT_SUPPORTED,
    errno.EIO: NtStatus.UNEXPECTED_IO_ERROR,
    errno.ETIMEDOUT: NtStatus.IO_TIMEOUT,
})


def status_for_errno(code: int | None) -> int:
    """The NTSTATUS for an errno; unknown ones are STATUS_UNEXPECTED_IO_ERROR."""
    return ERRNO_STATUS.get(code, NtStatus.UNEXPECTED_IO_ERROR)


def smb_error(err: OSError) -> SmbError:
    """Wrap an ``OSError`` as the ``SmbError`` the client sees (keeps the text for logs)."""
    return SmbError(status_for_errno(err.errno), f"{err.strerror} ({errno.errorcode.get(err.errno or 0, '?')})")


@contextmanager
def translated() -> Iterator[None]:
    """Turn any ``OSError`` raised inside the block into its ``SmbError``."""
    try:
        yield
    except OSError as err:
        raise smb_error(err) from err
