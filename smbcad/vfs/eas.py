"""Extended attributes (EAs, [MS-FSCC] 2.4.16; [MS-FSA] 2.1.1.5 File.ExtendedAttributes)
kept in user xattrs.

EA names are case-insensitive ASCII; NTFS keeps them upper-cased.  Each EA is
one xattr keyed by the upper-cased name,

    user.smbca.ea.<NAME>  =  Flags u8 | len(name) u8 | name as set | value

so the spelling the client used and the FILE_NEED_EA flag survive.  (A
client's EA never reaches an xattr namespace of its own: every name is
prefixed with ``user.smbca.ea.``, so a client cannot read or write our other
xattrs, and never the root-only ``security.smbca.ntacl`` (``ntacl.py``),
through EAs.)

Limits: [MS-FSA] 2.1.5.15.6 caps a file's EAs at 64 KiB - 5 bytes
(STATUS_EA_TOO_LARGE); the file system may hold less (ext4 without
``ea_inode``: one 4 KiB block for all xattrs of a file), which is
STATUS_DISK_FULL.  Names longer than 241 bytes cannot form an xattr name and
are STATUS_INVALID_EA_NAME.  A file system without user xattrs has no EAs:
STATUS_EAS_NOT_SUPPORTED where one is set, none reported.
"""

import errno
import os
import struct
from collections.abc import Sequence

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import FsccStatus, FullEa, packed_ea_size
from smbcad.proto.status import NtStatus
from smbcad.vfs.errors import smb_error
from smbcad.vfs.model import OpenFile

PREFIX = "user.smbca.ea."
MAX_NAME_BYTES = 255 - len(PREFIX)      # XATTR_NAME_MAX
MAX_TOTAL = 0xFFFF - 5                  # [MS-FSA] 2.1.5.15.6: 64 KiB - 5 bytes
_HEAD = struct.Struct("<BB")            # Flags, name length
_NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})
_GONE = frozenset({errno.ENODATA, errno.ENOENT})


def xattr_name(name: str) -> str:
    """The xattr of EA ``name`` (any case)."""
    if len(name) > MAX_NAME_BYTES:
        raise SmbError(FsccStatus.INVALID_EA_NAME, "EA name too long to store")
    return PREFIX + name.upper()


def encode(ea: FullEa) -> bytes:
    raw = ea.name.encode("ascii")
    return _HEAD.pack(ea.flags, len(raw)) + raw + ea.value


def decode(key: str, value: bytes) -> FullEa:
    """An xattr back to its EA; a value we did not write is taken as the bare value."""
    if len(value) >= _HEAD.size:
        flags, length = _HEAD.unpack_from(value)
        raw = value[_HEAD.size:_HEAD.size + length]
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            name = ""
        if len(raw) == length and name.upper() == key:
            return FullEa(name, value[_HEAD.size + length:], flags)
    return FullEa(key, value, 0)


def _list(target: int | str, follow: bool) -> list[str]:
    """listxattr of an fd (``follow`` does not apply) or a path."""
    if isinstance(target, int):
        return os.listxattr(target)
    return os.listxattr(target, follow_symlinks=follow)


def read_all(target: int | str, follow: bool = False) -> list[FullEa]:
    """All EAs of an open fd, or of a path (``follow``: whether a final symlink
    is followed), ordered by upper-cased name (stable for index-based queries)."""
    try:
        names = _list(target, follow)
    except OSError as err:
        if err.errno in _NO_XATTRS or err.errno in _GONE:
            return []
        raise smb_error(err) from err
    found = []
    for key in sorted(name for name in names if name.startswith(PREFIX)):
        try:
            value = os.getxattr(target, key) if isinstance(target, int) else \
                os.getxattr(target, key, follow_symlinks=follow)
        except OSError as err:
            if err.errno in _GONE:
                continue            # removed meanwhile
            raise smb_error(err) from err
        found.append(decode(key[len(PREFIX):], value))
    return found


def size_of(target: int | str, follow: bool = False) -> int:
    """EaSize ([MS-FSA] 2.1.5.12.10; 2.1.5.6.3 directory entries): 0 without EAs.

    One listxattr when the file has none, which is the common case."""
    try:
        names = _list(target, follow)
    except OSError as err:
        if err.errno in _NO_XATTRS or err.errno in _GONE:
            return 0
        raise smb_error(err) from err
    if not any(name.startswith(PREFIX) for name in names):
        return 0
    return packed_ea_size(read_all(target, follow))


def apply(fd: int, changes: Sequence[FullEa]) -> None:
    """Set EAs on an open file, in order ([MS-FSA] 2.1.5.15.6): an empty value
    removes the EA, others replace it.  All or nothing: a list that would make
    the EAs too large (STATUS_EA_TOO_LARGE) or that the file system cannot hold
    (STATUS_DISK_FULL) leaves the EAs as they were."""
    current = {ea.name.upper(): ea for ea in read_all(fd)}
    final = dict(current)
    for ea in changes:
        xattr_name(ea.name)
        final.pop(ea.name.upper(), None)
        if ea.value:
            final[ea.name.upper()] = ea
    if packed_ea_size(list(final.values())) - 4 > MAX_TOTAL:
        raise SmbError(NtStatus.EA_TOO_LARGE, "EAs larger than 64 KiB")
    touched = [key for key in set(current) | set(final) if current.get(key) != final.get(key)]
    done = []
    try:
        for key in sorted(touched):
            _store(fd, key, final.get(key))
            done.append(key)
    except (OSError, SmbError):
        for key in done:
            try:
                _store(fd, key, current.get(key))
            except (OSError, SmbError):
                continue        # best effort: the first failure is the one reported
        raise


def _store(fd: int, key: str, ea: FullEa | None) -> None:
    name = PREFIX + key
    try:
        if ea is None:
            os.removexattr(fd, name)
        else:
            os.setxattr(fd, name, encode(ea))
    except OSError as err:
        if err.errno == errno.ENODATA and ea is None:
            return
        if err.errno in _NO_XATTRS:
            raise SmbError(NtStatus.EAS_NOT_SUPPORTED, "no user xattrs here") from err
        if err.errno == errno.E2BIG:
            raise SmbError(NtStatus.DISK_FULL, "EA does not fit in the file's xattrs") from err
        raise smb_error(err) from err


def probe(path: str) -> bool:
    """Whether the file system under ``path`` takes user xattrs (read-only check:
    a missing user xattr reads as ENODATA where they are supported)."""
    try:
        os.getxattr(path, "user.smbca.probe")
    except OSError as err:
        return err.errno not in _NO_XATTRS
    return True


class EaOps:
    """The EA half of ``ShareFs`` (mixed in); ``ShareFs`` supplies ``user_xattrs()``."""

    def get_eas(self, open_file: OpenFile) -> list[FullEa]:
        """The file's EAs (a stream handle's are its file's)."""
        return read_all(open_file.fd) if self.user_xattrs() else []

    def set_eas(self, open_file: OpenFile, changes: Sequence[FullEa]) -> None:
        """Apply a FILE_FULL_EA_INFORMATION list; STATUS_EAS_NOT_SUPPORTED without xattrs."""
        if not self.user_xattrs():
            raise SmbError(NtStatus.EAS_NOT_SUPPORTED, "no user xattrs on this share")
        apply(open_file.fd, changes)

    def ea_size(self, open_file: OpenFile) -> int:
        return size_of(open_file.fd) if self.user_xattrs() else 0
