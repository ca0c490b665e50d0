"""WRITE ([MS-SMB2] 3.3.5.13), honouring write-through."""

from smbcad.proto.constants import AccessMask, CreateOptions
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.proto.write import WriteFlags, WriteRequest, WriteResponse
from smbcad.server import leases, locks, pipes
from smbcad.server.context import Answer, Pending
from smbcad.server.write_sync import FileSync

_WRITE_ACCESS = AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
_MAX_OFFSET = (1 << 63) - 1
_MAX_FILE_SIZE = 0xFFFFFFF0000          # NTFS MAXFILESIZE (16 TiB - 64 KiB)
# Interim response only if the sync takes long (Samba's 0.5 s rule, 3.3.4.2).
_SYNC_INTERIM_S = 0.5


def handle(ctx):
    request = WriteRequest.decode(ctx.message)
    conn = ctx.connection
    length = len(request.data)
    if length > conn.max_write_size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "WRITE longer than MaxWriteSize")
    open_ = ctx.lookup_open(request.file_id)
    if open_.is_pipe:
        return pipes.write(ctx, open_, request)
    if open_.is_directory:
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "WRITE on a directory")
    if not open_.granted_access & _WRITE_ACCESS:
        raise SmbError(NtStatus.ACCESS_DENIED, "no write access")
    fs = ctx.tree.share.fs
    offset = request.offset
    # Windows' limits (smbtorture smb2.rw.invalid): no offset past INT64_MAX, no
    # write starting at MAXFILESIZE, DISK_FULL for one reaching it; empty writes pass.
    if offset > _MAX_OFFSET or (length and offset >= _MAX_FILE_SIZE):
        raise SmbError(NtStatus.INVALID_PARAMETER, "write beyond the maximum file size")
    if length and offset + length >= _MAX_FILE_SIZE:
        raise SmbError(NtStatus.DISK_FULL, "write reaches the maximum file size")
    if not open_.granted_access & AccessMask.FILE_WRITE_DATA:
        # Append-only opens may only write at the end ([MS-FSA] 2.1.5.3).
        if offset < fs.stat(open_.handle).end_of_file:
            raise SmbError(NtStatus.ACCESS_DENIED, "append-only open")
    locks.check_io(ctx.server, open_, offset, length, write=True)
    written = fs.write(open_.handle, offset, request.data) if length else 0
    # After the write: another worker's grant claimed after this reads the
    # new data, one claimed before shows in the record read here.
    leases.break_read_caching(ctx.server, open_)
    open_.position = offset + written
    ctx.server.metrics.bytes_written.inc(written)
    ctx.tree.share.counters.written_bytes.inc(written)
    body = WriteResponse(written).encode()
    if request.flags & WriteFlags.WRITE_THROUGH or open_.create_options & CreateOptions.WRITE_THROUGH:
        # stable before the answer, one fdatasync shared by concurrent writers
        state = ctx.server.opens.file_state(open_.file_key)
        if state.sync is None:
            state.sync = FileSync()
        handle = open_.handle
        return Pending(Answer(state.sync.begin(lambda: fs.sync_data(handle)), body),
                       _SYNC_INTERIM_S)
    return body
