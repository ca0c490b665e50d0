"""READ ([MS-SMB2] 3.3.5.12).  Hot path: the data is read straight into the
connection's reusable response buffer, behind the spare bytes where the
frame length and header are packed later."""

from smbcad.proto.constants import AccessMask, HEADER_SIZE
from smbcad.proto.errors import SmbError
from smbcad.proto.read import DATA_OFFSET, ReadRequest, encode_read_response_prefix
from smbcad.proto.status import NtStatus
from smbcad.server import locks, pipes
from smbcad.server.context import READ_FRAME_AT, Reply

_READ_ACCESS = AccessMask.FILE_READ_DATA | AccessMask.FILE_EXECUTE
_MAX_OFFSET = (1 << 63) - 1


def handle(ctx):
    request = ReadRequest.decode(ctx.message)
    conn = ctx.connection
    if request.length > conn.max_read_size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "READ longer than MaxReadSize")
    open_ = ctx.lookup_open(request.file_id)
    if open_.is_pipe:
        return pipes.read(ctx, open_, request)
    if open_.is_directory:
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "READ on a directory")
    if not open_.granted_access & _READ_ACCESS:
        raise SmbError(NtStatus.ACCESS_DENIED, "no read access")
    if request.offset + request.length > _MAX_OFFSET:
        raise SmbError(NtStatus.INVALID_PARAMETER, "range beyond the largest offset")
    locks.check_io(ctx.server, open_, request.offset, request.length, write=False)
    length = request.length
    # [room for a TRANSFORM_HEADER][4: direct-TCP length][64: header]
    # [16: READ response][data] (Connection.read_buffer)
    start = READ_FRAME_AT + 4 + DATA_OFFSET
    buffer = ctx.connection.read_buffer(start + max(length, 1))
    view = memoryview(buffer)
    count = ctx.tree.share.fs.read_into(open_.handle, request.offset, view[start:start + length])
    if count < request.minimum_count or (count == 0 and length > 0):
        raise SmbError(NtStatus.END_OF_FILE)
    if count == 0:
        view[start] = 0                 # the Buffer field is at least one byte
    view[READ_FRAME_AT + 4 + HEADER_SIZE:start] = encode_read_response_prefix(count)
    open_.position = request.offset + count
    ctx.server.metrics.bytes_read.inc(count)
    ctx.tree.share.counters.read_bytes.inc(count)
    return Reply(view[READ_FRAME_AT:start + max(count, 1)], preframed=True)
