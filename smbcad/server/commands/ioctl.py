"""IOCTL ([MS-SMB2] 3.3.5.15): a table of FSCTL handlers.

Each handler takes (ctx, request, open or None) and returns the output bytes.
FSCTLs that carry no FileId (VALIDATE_NEGOTIATE_INFO, QUERY_NETWORK_INTERFACE_INFO)
are marked so; the rest resolve their Open first.  The issue-3 FSCTLs (copy
chunk, sparse, zero data, allocated ranges, trim, reflink) join this table.
"""

import struct

from smbcad.proto.errors import ProtocolViolation, SmbError
from smbcad.proto.ioctl import CtlCode, IoctlFlags, IoctlRequest, IoctlResponse
from smbcad.proto.status import NtStatus
from smbcad.server import pipes

_VALIDATE_IN = struct.Struct("<I16sHH")
_VALIDATE_OUT = struct.Struct("<I16sHH")
_NO_FILE_ID = (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)


def _validate_negotiate_info(ctx, request, open_) -> bytes:
    """3.3.5.15.12: the client re-states its NEGOTIATE; any mismatch means a
    downgrade attack, so the connection is dropped."""
    conn = ctx.connection
    data = request.input
    if len(data) < _VALIDATE_IN.size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "short VALIDATE_NEGOTIATE_INFO")
    caps, guid, mode, count = _VALIDATE_IN.unpack_from(data)
    if len(data) < _VALIDATE_IN.size + 2 * count:
        raise SmbError(NtStatus.INVALID_PARAMETER, "short dialect list")
    dialects = struct.unpack_from(f"<{count}H", data, _VALIDATE_IN.size)
    if request.max_output_response < _VALIDATE_OUT.size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "output buffer too small")
    if (caps != conn.client_capabilities or bytes(guid) != conn.client_guid
            or mode != conn.client_security_mode or tuple(dialects) != tuple(conn.client_dialects)):
        raise ProtocolViolation("VALIDATE_NEGOTIATE_INFO mismatch")
    return _VALIDATE_OUT.pack(conn.server_capabilities, ctx.server.server_guid,
                              conn.server_security_mode, conn.dialect)


def _pipe_transceive(ctx, request, open_):
    if not open_.is_pipe:
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "not a pipe")
    return pipes.transceive(ctx, open_, request)


def _object_id(ctx, request, open_) -> bytes:
    """FSCTL_CREATE_OR_GET_OBJECT_ID / FSCTL_GET_OBJECT_ID ([MS-FSCC] 2.3.8, 2.3.25,
    2.1.3.1 FILE_OBJECTID_BUFFER): a stable id from the file's identity, so the
    same file always reports the same ObjectId without storing anything."""
    if open_.is_pipe:
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "pipe")
    device, inode = open_.file_key
    object_id = struct.pack("<QQ", inode, device)
    volume = struct.pack("<QQ", device, 0)
    return object_id + volume + object_id + bytes(16)


_FSCTL_GET_OBJECT_ID = 0x0009009C
_FSCTL_CREATE_OR_GET_OBJECT_ID = 0x000900C0

# ctl code → (handler, needs an open)
FSCTL_TABLE = {
    CtlCode.FSCTL_VALIDATE_NEGOTIATE_INFO: (_validate_negotiate_info, False),
    CtlCode.FSCTL_PIPE_TRANSCEIVE: (_pipe_transceive, True),
    _FSCTL_GET_OBJECT_ID: (_object_id, True),
    _FSCTL_CREATE_OR_GET_OBJECT_ID: (_object_id, True),
}


def handle(ctx):
    request = IoctlRequest.decode(ctx.message)
    if request.flags != IoctlFlags.IS_FSCTL:
        # Plain IOCTLs are not passed through by SMB2 servers (3.3.5.15).
        raise SmbError(NtStatus.NOT_SUPPORTED, "IOCTL without IS_FSCTL")
    if len(request.input) > ctx.connection.max_transact_size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "input larger than MaxTransactSize")
    if request.max_output_response > ctx.connection.max_transact_size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "output larger than MaxTransactSize")
    entry = FSCTL_TABLE.get(request.ctl_code)
    needs_open = entry[1] if entry is not None else True
    open_ = None
    if needs_open:
        open_ = ctx.lookup_open(request.file_id)    # FILE_CLOSED comes first
    elif tuple(request.file_id) != _NO_FILE_ID:
        raise SmbError(NtStatus.INVALID_PARAMETER, "FileId must be all ones")
    if entry is None:
        # What Windows answers for an FSCTL its file system does not implement.
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, f"FSCTL 0x{request.ctl_code:08x}")
    handler = entry[0]
    result = handler(ctx, request, open_)
    status = NtStatus.SUCCESS
    if isinstance(result, tuple):
        result, status = result
    if len(result) > request.max_output_response:
        raise SmbError(NtStatus.BUFFER_TOO_SMALL, "output does not fit")
    body = IoctlResponse(request.ctl_code, request.file_id, result).encode()
    if status != NtStatus.SUCCESS:
        from smbcad.server.context import Reply
        return Reply(body, status)
    return body
