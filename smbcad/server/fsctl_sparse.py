"""Sparse files, zeroing, trimming and cloning: FSCTL_SET_SPARSE,
FSCTL_SET_ZERO_DATA, FSCTL_QUERY_ALLOCATED_RANGES, FSCTL_FILE_LEVEL_TRIM and
FSCTL_DUPLICATE_EXTENTS_TO_FILE ([MS-FSA] 2.1.5.10.38, .39, .22, .6, .4;
[MS-FSCC] 2.3.7, 2.3.13, 2.3.51, 2.3.83, 2.3.85; [MS-SMB2] 3.3.5.15.14, .17).

Linux holes stand in for NTFS sparse allocation: a file is "sparse" when its
FILE_ATTRIBUTE_SPARSE_FILE is set (the DOS record), zeroing a sparse file
punches holes, and its allocated ranges are what SEEK_DATA/SEEK_HOLE report.
A file not marked sparse keeps its blocks when zeroed and reports every byte
below end of file as allocated, as NTFS does; clearing the flag allocates the
holes (2.1.5.10.38).  Where Windows and the pseudocode differ, smbtorture's
expectations (run against Windows Server) win and the docstring says so.
"""

import asyncio
import struct

from smbcad.proto.constants import AccessMask, CreateOptions
from smbcad.proto.constants import FileAttributes as FA
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import locks
from smbcad.server.context import Pending
from smbcad.server.fsctl_common import (
    READ_DATA, STATUS_INTEGER_OVERFLOW, WRITE_DATA, require_access, require_disk_file,
    require_writable)

_MAX_SIGNED = (1 << 63) - 1
_U64_MAX = (1 << 64) - 1
_SYNC_OPTIONS = CreateOptions.WRITE_THROUGH | CreateOptions.NO_INTERMEDIATE_BUFFERING
_SYNC_INTERIM_S = 0.5
_PAIR = struct.Struct("<QQ")                     # FileOffset/Length, FileOffset/BeyondFinalZero
RANGE_SIZE = _PAIR.size                          # FILE_ALLOCATED_RANGE_BUFFER: 16 bytes
_TRIM_HEAD = struct.Struct("<II")                # Key, NumRanges
_TRIM_OUTPUT = struct.Struct("<I")               # NumRangesProcessed
_PAGE = 4096                                     # Volume.SystemPageSize for trim alignment
# SourceFileID, SourceFileOffset, TargetFileOffset, ByteCount
_DUP_EXTENTS = struct.Struct("<QQqqq")
# Setting the flag needs one of these (2.1.5.10.38); Windows also takes APPEND
# (smbtorture sparse_perms), and WRITE_EA alone is refused.
_SET_SPARSE_ACCESS = (AccessMask.FILE_WRITE_DATA | AccessMask.FILE_WRITE_ATTRIBUTES
                      | AccessMask.FILE_APPEND_DATA)


def _is_sparse(info) -> bool:
    return bool(info.attributes & FA.SPARSE_FILE)


def _flush_later(open_, body: bytes):
    """Write-through and unbuffered opens get the change on stable storage
    before the answer ([MS-FSA] 2.1.5.10.39); the fsync runs in a thread."""
    fs = open_.tree.share.fs

    async def flush_then_answer():
        await asyncio.to_thread(fs.flush, open_.handle)
        return body
    return Pending(flush_then_answer(), _SYNC_INTERIM_S)


# --- FSCTL_SET_SPARSE (2.1.5.10.38) -------------------------------------------------------

def set_sparse(ctx, request, open_) -> bytes:
    """FILE_SET_SPARSE_BUFFER is optional: no buffer means TRUE, a longer one
    is fine (smbtorture sparse_set_nobuf, sparse_set_oversize).  Clearing the
    flag allocates the file's holes first; STATUS_DISK_FULL if it cannot."""
    require_disk_file(open_)
    require_writable(open_)
    require_access(open_, _SET_SPARSE_ACCESS, "FSCTL_SET_SPARSE")
    sparse = len(request.input) == 0 or request.input[0] != 0
    fs = ctx.tree.share.fs
    if not sparse:
        info = fs.stat(open_.handle)
        if _is_sparse(info) and info.end_of_file:
            fs.allocate(open_.handle, info.end_of_file)
    fs.set_sparse(open_.handle, sparse)
    return b""


# --- FSCTL_SET_ZERO_DATA (2.1.5.10.39) ----------------------------------------------------

def set_zero_data(ctx, request, open_):
    """Zero [FileOffset, BeyondFinalZero) below end of file; the size never
    changes, a range at or past EOF succeeds doing nothing.  Sparse files get
    holes; others keep their blocks.  The part below EOF must not meet a
    byte-range lock (STATUS_FILE_LOCK_CONFLICT, smbtorture sparse_lock).
    Needs FILE_WRITE_DATA (smbtorture sparse_perms)."""
    require_disk_file(open_)
    require_access(open_, WRITE_DATA, "FSCTL_SET_ZERO_DATA")
    if len(request.input) < _PAIR.size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "FILE_ZERO_DATA_INFORMATION too short")
    offset, beyond = _PAIR.unpack_from(request.input)
    if offset > _MAX_SIGNED or beyond > _MAX_SIGNED or offset > beyond:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad zero range")
    require_writable(open_)
    fs = ctx.tree.share.fs
    info = fs.stat(open_.handle)
    end = min(beyond, info.end_of_file)
    if offset >= end:
        return b""
    locks.check_io(ctx.server, open_, offset, end - offset, write=True)
    fs.punch_hole(open_.handle, offset, end - offset, keep_allocated=not _is_sparse(info))
    if open_.create_options & _SYNC_OPTIONS:
        return _flush_later(open_, b"")
    return b""


# --- FSCTL_QUERY_ALLOCATED_RANGES (2.1.5.10.22) -------------------------------------------

def query_allocated_ranges(ctx, request, open_):
    """FILE_ALLOCATED_RANGE_BUFFERs for the allocated parts of the range.

    Clipped to end of file, for non-sparse files too (one range up to EOF,
    nothing past it: smbtorture sparse_qar_ob1 and sparse_punch_invalid
    against Windows, where the pseudocode would echo the request).  With
    ranges to return and MaxOutputResponse below one range:
    STATUS_BUFFER_TOO_SMALL; room for only some: as many as fit and
    STATUS_BUFFER_OVERFLOW.  An empty answer needs no room at all
    (smbtorture sparse_qar_malformed).  Needs FILE_READ_DATA.
    """
    require_disk_file(open_)
    require_access(open_, READ_DATA, "FSCTL_QUERY_ALLOCATED_RANGES")
    if len(request.input) < _PAIR.size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "FILE_ALLOCATED_RANGE_BUFFER too short")
    offset, length = _PAIR.unpack_from(request.input)
    if offset > _MAX_SIGNED or length > _MAX_SIGNED or length > _MAX_SIGNED - offset:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad range")
    fs = ctx.tree.share.fs
    info = fs.stat(open_.handle)
    end = min(offset + length, info.end_of_file)
    if length == 0 or offset >= end:
        return b""
    if _is_sparse(info):
        ranges = fs.allocated_ranges(open_.handle, offset, end - offset)
    else:
        ranges = [(offset, end - offset)]
    if not ranges:
        return b""
    room = request.max_output_response // RANGE_SIZE
    if room == 0:
        raise SmbError(NtStatus.BUFFER_TOO_SMALL, "no room for one range")
    body = b"".join(_PAIR.pack(start, size) for start, size in ranges[:room])
    if len(ranges) > room:
        return body, NtStatus.BUFFER_OVERFLOW
    return body


# --- FSCTL_FILE_LEVEL_TRIM (2.1.5.10.6, [MS-SMB2] 3.3.5.15.14) ----------------------------

def trim_extent(offset: int, length: int, allocation: int) -> tuple[int, int]:
    """A FILE_LEVEL_TRIM_RANGE after 2.1.5.10.6's adjustments: the start
    rounded up to a page, the range cut at the allocation size, the length
    rounded down to whole pages.  (offset, 0) means nothing to trim."""
    misalign = offset % _PAGE
    if misalign:
        skip = _PAGE - misalign
        offset += skip
        length = length - skip if length >= skip else 0
    if offset < allocation and offset + length > allocation:
        length = allocation - offset
    length -= length % _PAGE
    return offset, length


def file_level_trim(ctx, request, open_) -> bytes:
    """The ranges are punched out (the file system frees the blocks and the
    device gets its discard from there); reading them gives zeros.  Key must
    be 0 (3.3.5.15.14); each range must not meet a byte-range lock.  Needs
    FILE_WRITE_DATA, as the CtlCode's FILE_WRITE_ACCESS says."""
    require_disk_file(open_)
    require_access(open_, WRITE_DATA, "FSCTL_FILE_LEVEL_TRIM")
    data = request.input
    if len(data) < _TRIM_HEAD.size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "FILE_LEVEL_TRIM too short")
    key, count = _TRIM_HEAD.unpack_from(data)
    if key != 0:
        raise SmbError(NtStatus.INVALID_PARAMETER, "Key must be zero")
    if count == 0 or len(data) < _TRIM_HEAD.size + count * _PAIR.size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "no or truncated ranges")
    if 0 < request.max_output_response < _TRIM_OUTPUT.size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "MaxOutputResponse below 4")
    require_writable(open_)
    fs = ctx.tree.share.fs
    # Open.Stream.AllocationSize: end of file in whole pages (holes count as allocated).
    allocation = -(-fs.stat(open_.handle).end_of_file // _PAGE) * _PAGE
    extents = []
    for index in range(count):
        offset, length = _PAIR.unpack_from(data, _TRIM_HEAD.size + index * _PAIR.size)
        if offset + length > _U64_MAX or offset + _PAGE > _U64_MAX:
            raise SmbError(STATUS_INTEGER_OVERFLOW, "range overflows 64 bits")
        extents.append(trim_extent(offset, length, allocation))
    processed = 0
    for offset, length in extents:
        if not length:
            continue            # nothing left after alignment: not processed
        if offset < allocation:
            locks.check_io(ctx.server, open_, offset, length, write=True)
            fs.punch_hole(open_.handle, offset, min(length, allocation - offset))
        processed += 1
    return _TRIM_OUTPUT.pack(processed) if request.max_output_response else b""


# --- FSCTL_DUPLICATE_EXTENTS_TO_FILE (2.1.5.10.4, [MS-SMB2] 3.3.5.15.17) ------------------

def duplicate_extents(ctx, request, open_) -> bytes:
    """Reflink a range of the source into this (target) open.

    In 3.3.5.15.17's and 2.1.5.10.4's order, with Windows Server 2016's
    answers where smbtorture records them: a source FileId not in the
    session is STATUS_INVALID_HANDLE; a source range past its end of file,
    overlapping ranges of one file, or a sparse source into a non-sparse
    target are STATUS_NOT_SUPPORTED; a range past the target's end of file is
    cut there (the target never grows).  A file system without shared
    extents is STATUS_INVALID_DEVICE_REQUEST (the share port's clone_range),
    which is also NTFS's answer; so is what a client sees unless the volume
    advertises FILE_SUPPORTS_BLOCK_REFCOUNTING (MS-HVRS C0007), which a share
    does exactly when a clone probe on its file system works (vfs/_reflink.py).
    """
    require_disk_file(open_)
    data = request.input
    if len(data) < _DUP_EXTENTS.size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "SMB2_DUPLICATE_EXTENTS_DATA too short")
    persistent, volatile, source_offset, target_offset, count = _DUP_EXTENTS.unpack_from(data)
    source = ctx.session.opens.get(volatile)
    if source is None or source.persistent_id != persistent or source.closed:
        raise SmbError(NtStatus.INVALID_HANDLE, "source handle not open in this session")
    require_access(open_, WRITE_DATA, "FSCTL_DUPLICATE_EXTENTS_TO_FILE")
    require_writable(open_)
    if source_offset < 0 or target_offset < 0 or count < 0:
        raise SmbError(NtStatus.INVALID_PARAMETER, "negative offset or count")
    fs = ctx.tree.share.fs
    size = fs.statvfs()
    cluster = size.sectors_per_unit * size.bytes_per_sector
    if source_offset % cluster or target_offset % cluster or count % cluster:
        raise SmbError(NtStatus.INVALID_PARAMETER, "range not cluster aligned")
    if count == 0:
        return b""
    if source.is_pipe or source.is_directory:
        raise SmbError(NtStatus.INVALID_PARAMETER, "source is not a data stream")
    if not source.granted_access & (AccessMask.FILE_READ_DATA | AccessMask.FILE_READ_ATTRIBUTES):
        raise SmbError(NtStatus.INVALID_PARAMETER, "source not open for reading")  # <90>
    if source.tree.share.fs is not fs and source.file_key[0] != open_.file_key[0]:
        raise SmbError(NtStatus.INVALID_PARAMETER, "source on another volume")
    source_info = source.tree.share.fs.stat(source.handle)
    target_info = fs.stat(open_.handle)
    if source_offset + count > source_info.end_of_file:
        raise SmbError(NtStatus.NOT_SUPPORTED, "source range past end of file")
    if source.file_key == open_.file_key and abs(source_offset - target_offset) < count:
        raise SmbError(NtStatus.NOT_SUPPORTED, "overlapping ranges of one file")
    if _is_sparse(source_info) and not _is_sparse(target_info):
        raise SmbError(NtStatus.NOT_SUPPORTED, "sparse source, non-sparse target")
    count = min(count, max(target_info.end_of_file - target_offset, 0))
    if count == 0:
        return b""
    # No byte-range lock checks: ReFS makes none (<91>, <92>; smbtorture
    # dup_extents_src_lock and dup_extents_dest_lock expect success).
    fs.clone_range(source.handle, source_offset, open_.handle, target_offset, count)
    return b""
