"""Server-side copy: FSCTL_SRV_REQUEST_RESUME_KEY, FSCTL_SRV_COPYCHUNK and
FSCTL_SRV_COPYCHUNK_WRITE ([MS-SMB2] 2.2.31.1, 2.2.32.1, 2.2.32.3,
3.3.5.15.5, 3.3.5.15.6).

The resume key is derived, not stored: Open.DurableFileId and Open.FileId
(the spec's SHOULD) plus the first 8 bytes of the ServerGuid, so a key finds
its Open through the server's open table and dies with it, with no key table
to keep in step with CLOSE, LOGOFF or disconnects.  Only an Open of the same
session may be the source (else STATUS_OBJECT_NAME_NOT_FOUND).

The chunks are copied in a worker thread (``asyncio.to_thread``) with
copy_file_range(2) through the share port, on descriptors duplicated for the
copy, so a 16 MiB request neither stalls the event loop nor writes through a
descriptor number a concurrent CLOSE gave back.  No file data crosses the
connection: the bytes count in smbcad_server_side_copy_bytes_total, not in
the READ/WRITE counters.
"""

import asyncio
import functools
import struct
from dataclasses import dataclass

from smbcad.proto.constants import AccessMask, CreateOptions
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import locks
from smbcad.server.context import Pending
from smbcad.server.fsctl_common import STATUS_INVALID_VIEW_SIZE, Fsctl

# ServerSideCopyMaxNumberofChunks / MaxChunkSize / MaxDataSize: Windows' values (<222>-<224>).
MAX_CHUNKS = 256
MAX_CHUNK_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024
# A TargetOffset of -1 is the NT "write at end of file" offset; other negatives are invalid.
APPEND_OFFSET = 0xFFFFFFFFFFFFFFFF
_MAX_OFFSET = (1 << 63) - 1
# Copies normally finish well within this; slower ones get an interim response (3.3.4.2).
COPY_INTERIM_S = 0.5

RESUME_KEY_SIZE = 24
# ResumeKey, ContextLength (0); Windows sends 32 bytes (smbtorture, Samba's NDR),
# so four zero bytes of Context follow.
_RESUME_KEY = struct.Struct("<QQ8s")
_RESUME_RESPONSE_SIZE = 32
# SourceKey, ChunkCount, Reserved; then ChunkCount ×
# (SourceOffset, TargetOffset, Length, Reserved).
_COPY_HEAD = struct.Struct("<24sII")
_CHUNK = struct.Struct("<QQII")
_COPY_RESPONSE = struct.Struct("<III")
COPY_RESPONSE_SIZE = _COPY_RESPONSE.size

_SOURCE_ACCESS = AccessMask.FILE_READ_DATA | AccessMask.FILE_EXECUTE
_TARGET_ACCESS = AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
_SYNC_OPTIONS = CreateOptions.WRITE_THROUGH | CreateOptions.NO_INTERMEDIATE_BUFFERING


@dataclass(frozen=True, slots=True)
class Chunk:
    """SRV_COPYCHUNK (2.2.31.1.1)."""

    source_offset: int
    target_offset: int
    length: int


@dataclass(frozen=True, slots=True)
class CopyChunkResponse:
    """SRV_COPYCHUNK_RESPONSE (2.2.32.1)."""

    chunks_written: int
    chunk_bytes_written: int
    total_bytes_written: int

    def encode(self) -> bytes:
        return _COPY_RESPONSE.pack(self.chunks_written, self.chunk_bytes_written,
                                   self.total_bytes_written)


# 3.3.5.15.6.2: an invalid request is answered with the server's limits.
LIMITS = CopyChunkResponse(MAX_CHUNKS, MAX_CHUNK_BYTES, MAX_TOTAL_BYTES)


class _Invalid(Exception):
    """The request breaks a rule of 3.3.5.15.6: answer with LIMITS."""


def decode_copy(data) -> tuple[bytes, list[Chunk]]:
    """SRV_COPYCHUNK_COPY (2.2.31.1) → (SourceKey, chunks), checked against the
    limits and offset rules of 3.3.5.15.6 (``_Invalid`` when broken)."""
    if len(data) < _COPY_HEAD.size:
        raise _Invalid("input shorter than SRV_COPYCHUNK_COPY")
    key, count, _ = _COPY_HEAD.unpack_from(data)
    if count > MAX_CHUNKS:
        raise _Invalid(f"{count} chunks")
    if len(data) < _COPY_HEAD.size + count * _CHUNK.size:
        raise _Invalid("input shorter than its chunk array")
    chunks = []
    total = 0
    for index in range(count):
        source, target, length, _ = _CHUNK.unpack_from(data, _COPY_HEAD.size + index * _CHUNK.size)
        if length == 0 or length > MAX_CHUNK_BYTES:
            raise _Invalid(f"chunk length {length}")
        if source > _MAX_OFFSET or (target > _MAX_OFFSET and target != APPEND_OFFSET):
            raise _Invalid("negative offset")
        total += length
        chunks.append(Chunk(source, target, length))
    if total > MAX_TOTAL_BYTES:
        raise _Invalid(f"{total} bytes in all")
    return key, chunks


# --- the resume key (3.3.5.15.5) ---------------------------------------------------------

def resume_key(server, open_) -> bytes:
    """Open.ResumeKey: DurableFileId, FileId, ServerGuid[:8]."""
    return _RESUME_KEY.pack(open_.persistent_id, open_.volatile_id, server.server_guid[:8])


def find_source(server, key: bytes):
    """The Open whose resume key this is, or None (closed, forged, another server)."""
    persistent, volatile, tag = _RESUME_KEY.unpack(key)
    if tag != server.server_guid[:8]:
        return None
    open_ = server.opens.lookup(persistent)
    if open_ is None or open_.volatile_id != volatile or open_.closed or open_.is_pipe:
        return None
    return open_


def request_resume_key(ctx, request, open_) -> bytes:
    """3.3.5.15.5: SRV_REQUEST_RESUME_KEY Response, 32 bytes."""
    if request.max_output_response < _RESUME_RESPONSE_SIZE:
        raise SmbError(NtStatus.INVALID_PARAMETER, "MaxOutputResponse below 32")
    if open_.is_pipe:
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "pipes have no resume key")
    return resume_key(ctx.server, open_) + bytes(_RESUME_RESPONSE_SIZE - RESUME_KEY_SIZE)


# --- the copy (3.3.5.15.6) ----------------------------------------------------------------

def copychunk(ctx, request, target):
    """3.3.5.15.6, in its order: find the source by key, MaxOutputResponse,
    the limits, access, same session, byte-range locks, then copy in a thread.
    FSCTL_SRV_COPYCHUNK also needs read access on the target (its CtlCode
    asks for FILE_READ_ACCESS); FSCTL_SRV_COPYCHUNK_WRITE does not."""
    data = request.input
    source = None
    if len(data) >= _COPY_HEAD.size:
        source = find_source(ctx.server, bytes(data[:RESUME_KEY_SIZE]))
        if source is None:
            raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "unknown resume key")
    if request.max_output_response < COPY_RESPONSE_SIZE:
        raise SmbError(NtStatus.INVALID_PARAMETER, "MaxOutputResponse below 12")
    try:
        _, chunks = decode_copy(data)
    except _Invalid:
        return LIMITS.encode(), NtStatus.INVALID_PARAMETER
    if target.is_pipe:
        return LIMITS.encode(), NtStatus.INVALID_PARAMETER
    if not source.granted_access & _SOURCE_ACCESS:
        raise SmbError(NtStatus.ACCESS_DENIED, "source not open for reading")
    if not target.granted_access & _TARGET_ACCESS:
        raise SmbError(NtStatus.ACCESS_DENIED, "target not open for writing")
    if (request.ctl_code == Fsctl.SRV_COPYCHUNK
            and not target.granted_access & AccessMask.FILE_READ_DATA):
        raise SmbError(NtStatus.ACCESS_DENIED, "SRV_COPYCHUNK needs read access on the target")
    if source.session is not target.session:
        raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "source belongs to another session")
    if source.is_directory or target.is_directory:
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "copy between directories")
    if not chunks:
        return CopyChunkResponse(0, 0, 0).encode()
    try:
        _check_locks(ctx.server, source, target, chunks)
    except SmbError as exc:
        return CopyChunkResponse(0, 0, 0).encode(), exc.status
    flush = bool(target.create_options & _SYNC_OPTIONS) or target.tree.share.is_ca
    return Pending(_copy(ctx.server, source, target, chunks, flush), COPY_INTERIM_S)


def _check_locks(server, source, target, chunks: list[Chunk]) -> None:
    """3.3.5.15.6: no chunk may meet a lock that conflicts with reading the
    source or writing the target; then nothing is copied (FILE_LOCK_CONFLICT)."""
    target_end = None
    for chunk in chunks:
        locks.check_io(server, source, chunk.source_offset, chunk.length, write=False)
        offset = chunk.target_offset
        if offset == APPEND_OFFSET:
            if target_end is None:
                target_end = target.tree.share.fs.stat(target.handle).end_of_file
            offset = target_end
        locks.check_io(server, target, offset, chunk.length, write=True)


@dataclass(frozen=True, slots=True)
class CopyOutcome:
    """How far a copy got: the response fields and the status to send."""

    chunks_written: int
    partial_bytes: int
    total_bytes: int
    status: int = NtStatus.SUCCESS

    def response(self) -> CopyChunkResponse:
        return CopyChunkResponse(self.chunks_written, self.partial_bytes, self.total_bytes)


async def _copy(server, source, target, chunks: list[Chunk], flush: bool):
    # First step, on the loop: a handle closed since the request was checked
    # ends the copy before it starts.
    if source.closed or target.closed:
        raise SmbError(NtStatus.FILE_CLOSED, "handle closed before the copy started")
    source_fs, target_fs = source.tree.share.fs, target.tree.share.fs
    source_file = source_fs.duplicate(source.handle)
    try:
        target_file = target_fs.duplicate(target.handle)
    except SmbError:
        source_file.close()
        raise
    job = asyncio.ensure_future(asyncio.to_thread(
        copy_chunks, source_fs, source_file, target_fs, target_file, chunks, flush))
    job.add_done_callback(functools.partial(_copy_done, server, source_file, target_file))
    # A worker thread cannot be stopped: CANCEL or a lost connection ends the
    # request (STATUS_CANCELLED) while the copy runs on to the end of its
    # chunks, keeping its descriptors until then (_copy_done).
    outcome = await asyncio.shield(job)
    body = outcome.response().encode()
    return body if outcome.status == NtStatus.SUCCESS else (body, outcome.status)


def _copy_done(server, source_file, target_file, job) -> None:
    """When the worker has finished: release its descriptors, count its bytes."""
    source_file.close()
    target_file.close()
    if not job.cancelled() and job.exception() is None:
        server.metrics.server_copy_bytes.inc(job.result().total_bytes)


def copy_chunks(source_fs, source_file, target_fs, target_file, chunks: list[Chunk],
                flush: bool) -> CopyOutcome:
    """Copy chunk after chunk (blocking; runs in a worker thread).

    A chunk reaching past the source's end of file fails the request with
    STATUS_INVALID_VIEW_SIZE before any of its bytes are copied, keeping the
    chunks already done (Windows Server 2012, smbtorture
    copy_chunk_src_exceed_multi).  Any other failure stops the copy with its
    status (3.3.5.15.6.1).
    """
    written = total = 0
    try:
        for chunk in chunks:
            if chunk.source_offset + chunk.length > source_fs.stat(source_file).end_of_file:
                return CopyOutcome(written, 0, total, STATUS_INVALID_VIEW_SIZE)
            target_offset = chunk.target_offset
            if target_offset == APPEND_OFFSET:
                target_offset = target_fs.stat(target_file).end_of_file
            count = target_fs.copy_range(source_file, chunk.source_offset, target_file,
                                         target_offset, chunk.length)
            if count < chunk.length:            # the source shrank under the copy
                return CopyOutcome(written, count, total + count, STATUS_INVALID_VIEW_SIZE)
            written += 1
            total += count
        if flush:
            target_fs.flush(target_file)
    except SmbError as exc:
        return CopyOutcome(written, 0, total, exc.status)
    return CopyOutcome(written, 0, total)
