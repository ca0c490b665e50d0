"""A regular file's data allocation from its extent map (FIEMAP).

ext4 (and XFS) count a file's out-of-inode xattr block in ``st_blocks``, so a
file whose streams, EAs or stored descriptor no longer fit in the inode
reports a block of allocation it has no data for.  AllocationSize ([MS-FSCC]
2.4.47, 2.4.34) counts data only (smb2.setinfo sets it to 0 and reads 0
back), so it is the sum of the file's data extents, written, unwritten
(preallocated) and delayed alike (Documentation/filesystems/fiemap.rst).
ext4's FIEMAP_FLAG_XATTR cannot be used to subtract the xattr block instead:
it reports the in-inode xattr area and hides the block when both exist.

``needs_extent_map`` says when ``st_blocks`` can be trusted as it stands: a
file whose blocks are exactly its size rounded up to blocks is dense and has
no extra block, which is most files, so most stats cost no ioctl.

The request and reply layouts are built and parsed by pure functions; the
ioctl is in ``data_allocation``.
"""

import errno
import fcntl
import os
import struct

# include/uapi/linux/fiemap.h
_FIEMAP = struct.Struct("<QQIIII")               # fm_start .. fm_reserved, 32 bytes
_EXTENT = struct.Struct("<QQQ16xI12x")           # fe_logical, fe_physical, fe_length, fe_flags
FS_IOC_FIEMAP = 0xC020660B                       # _IOWR('f', 11, struct fiemap)
FIEMAP_FLAG_SYNC = 0x00000001
FIEMAP_EXTENT_LAST = 0x00000001
_WHOLE_FILE = 0xFFFFFFFFFFFFFFFF
_EXTENTS_PER_CALL = 64
_MAX_CALLS = 16                                  # past 1024 extents st_blocks is close enough
_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EBADR, errno.EINVAL,
                          errno.ENOSYS})


def needs_extent_map(st: os.stat_result) -> bool:
    """Whether ``st_blocks`` may hold more (or less) than a dense file's data."""
    if st.st_blocks == 0:
        return False
    block = st.st_blksize or 4096
    dense = -(-st.st_size // block) * block
    return st.st_blocks * 512 != dense


def extent_request(start: int, count: int = _EXTENTS_PER_CALL) -> bytearray:
    """A ``struct fiemap`` for up to ``count`` data extents from byte ``start`` on."""
    buffer = bytearray(_FIEMAP.size + count * _EXTENT.size)
    _FIEMAP.pack_into(buffer, 0, start, _WHOLE_FILE - start, 0, 0, count, 0)
    return buffer


def parse_extents(reply: bytes) -> tuple[int, int | None]:
    """(bytes in the mapped extents, where the next request starts or None when
    the last extent was seen or nothing was mapped)."""
    mapped = _FIEMAP.unpack_from(reply, 0)[3]
    mapped = min(mapped, (len(reply) - _FIEMAP.size) // _EXTENT.size)
    total = 0
    next_start = None
    for index in range(mapped):
        logical, _, length, flags = _EXTENT.unpack_from(reply, _FIEMAP.size + index * _EXTENT.size)
        total += length
        next_start = None if flags & FIEMAP_EXTENT_LAST else logical + length
    return total, next_start


def data_allocation(fd: int, st: os.stat_result) -> int:
    """Bytes allocated to the data of the regular file open as ``fd`` (a real
    descriptor); ``st_blocks`` where the file system has no extent map."""
    total = 0
    start: int | None = 0
    for _ in range(_MAX_CALLS):
        request = extent_request(start)
        try:
            fcntl.ioctl(fd, FS_IOC_FIEMAP, request)
        except OSError as err:
            if err.errno in _UNSUPPORTED:
                return st.st_blocks * 512
            raise
        length, start = parse_extents(request)
        total += length
        if start is None:
            return total
    return st.st_blocks * 512
