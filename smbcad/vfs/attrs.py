"""DOS attributes and creation time, kept in one xattr per file.

Linux has no place for FILE_ATTRIBUTE_* ([MS-FSCC] 2.6) or a settable birth
time ([MS-FSCC] 2.4.7 CreationTime), so, like Samba's ``user.DOSATTRIB``, we
keep them in ``user.smbca.dos``: a fixed little-endian record

    version u16 | attributes u32 | creation FILETIME u64

A file system without user xattrs (ENOTSUP) or a missing / foreign record
reads as ``None``; callers then derive the values from stat, so requests never
fail just because the xattr is unavailable.
"""

import errno
import os
import struct
from dataclasses import dataclass

from smbcad.proto.constants import FileAttributes as FA

XATTR_NAME = "user.smbca.dos"
_VERSION = 1
_RECORD = struct.Struct("<HIQ")

# Bits the record may hold.  DIRECTORY and NORMAL are derived from the file
# type, never stored ([MS-FSCC] 2.6: NORMAL is valid only alone).
STORABLE = (FA.READONLY | FA.HIDDEN | FA.SYSTEM | FA.ARCHIVE | FA.TEMPORARY
            | FA.SPARSE_FILE | FA.OFFLINE | FA.NOT_CONTENT_INDEXED)

# "No user xattrs here": the file system, the file type (symlinks, devices) or
# an O_PATH descriptor cannot carry one.  Derived values are used instead.
_UNSUPPORTED = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA,
                          errno.EPERM, errno.EBADF, errno.ENOENT, errno.ENOTDIR})


@dataclass(frozen=True, slots=True)
class DosRecord:
    """The decoded xattr: stored attribute bits and creation FILETIME (0 = unset)."""

    attributes: int
    creation_time: int


def encode(record: DosRecord) -> bytes:
    """Record → xattr value."""
    return _RECORD.pack(_VERSION, record.attributes & STORABLE, record.creation_time)


def decode(value: bytes) -> DosRecord | None:
    """xattr value → record; ``None`` for another version or a short value."""
    if len(value) < _RECORD.size:
        return None
    version, attributes, creation = _RECORD.unpack_from(value)
    if version != _VERSION:
        return None
    return DosRecord(attributes & STORABLE, creation)


def read(target: int | str, *, follow: bool = True) -> DosRecord | None:
    """Read the record of a real fd, or of a path (``follow`` says whether a final symlink is followed)."""
    try:
        if isinstance(target, int):
            value = os.getxattr(target, XATTR_NAME)
        else:
            value = os.getxattr(target, XATTR_NAME, follow_symlinks=follow)
    except OSError as err:
        if err.errno in _UNSUPPORTED:
            return None
        raise
    return decode(value)


def write(fd: int, record: DosRecord) -> bool:
    """Store the record on an open (non-O_PATH) fd; False if xattrs are unsupported.

    Real failures (EROFS, ENOSPC, EDQUOT) propagate as ``OSError``.
    """
    try:
        os.setxattr(fd, XATTR_NAME, encode(record))
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    return True
