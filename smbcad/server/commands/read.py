"""READ ([MS-SMB2] 3.3.5.12).  Hot path: the data is read straight into the
response buffer, behind 64 spare bytes where the header is packed later."""

from smbcad.proto.constants import AccessMask, HEADER_SIZE
from smbcad.proto.errors import SmbError
from smbcad.proto.read import DATA_OFFSET, ReadRequest, encode_read_response_prefix
from smbcad.proto.status import NtStatus
from smbcad.server import pipes
from smbcad.server.context import Reply

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
    length = request.length
    buffer = bytearray(DATA_OFFSET + max(length, 1))
    count = ctx.tree.share.fs.read_into(
        open_.handle, request.offset, memoryview(buffer)[DATA_OFFSET:DATA_OFFSET + length])
    if count < request.minimum_count or (count == 0 and length > 0):
        raise SmbError(NtStatus.END_OF_FILE)
    if count < length:
        del buffer[DATA_OFFSET + max(count, 1):]
    buffer[HEADER_SIZE:DATA_OFFSET] = encode_read_response_prefix(count)
    open_.position = request.offset + count
    ctx.server.metrics.bytes_read.inc(count)
    return Reply(buffer, preframed=True)
