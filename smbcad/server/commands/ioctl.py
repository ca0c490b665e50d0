"""IOCTL ([MS-SMB2] 3.3.5.15): decode, check, look the FSCTL up in a table,
run its handler, encode.

The table says, per CtlCode, which handler runs and whether the request
names an Open or must carry the all-ones FileId (DFS referrals, network
interfaces, negotiate validation).  Handlers live with their kin in
``server/fsctl_*.py`` and return the output bytes, ``(output, status)``, or a
``Pending`` whose work returns one of those (server-side copy, write-through
zeroing).  Here, for every FSCTL: IS_FSCTL required, the sizes within
MaxTransactSize, the output within MaxOutputResponse (else
STATUS_BUFFER_TOO_SMALL), and a CtlCode nobody handles answered as Windows
does (``fsctl_common.unsupported_status``).
"""

import struct
from dataclasses import dataclass
from typing import Callable

from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import ProtocolViolation, SmbError
from smbcad.proto.ioctl import IoctlFlags, IoctlRequest, IoctlResponse
from smbcad.proto.status import NtStatus
from smbcad.server import fsctl_copy, fsctl_info, fsctl_resiliency, fsctl_sparse, pipes
from smbcad.server.context import Pending, Reply
from smbcad.server.fsctl_common import Fsctl, unsupported_status

_VALIDATE_IN = struct.Struct("<I16sHH")
_VALIDATE_OUT = struct.Struct("<I16sHH")
_NO_FILE_ID = FileId(0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)


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


def _dfs_referrals(ctx, request, open_):
    """3.3.5.15.2 with IsDfsCapable FALSE."""
    raise SmbError(NtStatus.FS_DRIVER_REQUIRED, "no DFS")


@dataclass(frozen=True)
class FsctlSpec:
    """One row: the handler, and whether the request names an Open
    (``needs_open``) or must carry the all-ones FileId (3.3.5.15)."""

    handler: Callable
    needs_open: bool = True


FSCTL_TABLE = {
    Fsctl.VALIDATE_NEGOTIATE_INFO: FsctlSpec(_validate_negotiate_info, needs_open=False),
    Fsctl.QUERY_NETWORK_INTERFACE_INFO: FsctlSpec(fsctl_info.query_network_interface_info,
                                                  needs_open=False),
    Fsctl.DFS_GET_REFERRALS: FsctlSpec(_dfs_referrals, needs_open=False),
    Fsctl.DFS_GET_REFERRALS_EX: FsctlSpec(_dfs_referrals, needs_open=False),
    Fsctl.PIPE_TRANSCEIVE: FsctlSpec(_pipe_transceive),
    # server-side copy (3.3.5.15.5, 3.3.5.15.6)
    Fsctl.SRV_REQUEST_RESUME_KEY: FsctlSpec(fsctl_copy.request_resume_key),
    Fsctl.SRV_COPYCHUNK: FsctlSpec(fsctl_copy.copychunk),
    Fsctl.SRV_COPYCHUNK_WRITE: FsctlSpec(fsctl_copy.copychunk),
    Fsctl.SRV_ENUMERATE_SNAPSHOTS: FsctlSpec(fsctl_info.enumerate_snapshots),
    # resilient handles (3.3.5.15.9)
    Fsctl.LMR_REQUEST_RESILIENCY: FsctlSpec(fsctl_resiliency.request_resiliency),
    # sparse files and allocation ([MS-FSA] 2.1.5.10)
    Fsctl.SET_SPARSE: FsctlSpec(fsctl_sparse.set_sparse),
    Fsctl.SET_ZERO_DATA: FsctlSpec(fsctl_sparse.set_zero_data),
    Fsctl.QUERY_ALLOCATED_RANGES: FsctlSpec(fsctl_sparse.query_allocated_ranges),
    Fsctl.FILE_LEVEL_TRIM: FsctlSpec(fsctl_sparse.file_level_trim),
    Fsctl.DUPLICATE_EXTENTS_TO_FILE: FsctlSpec(fsctl_sparse.duplicate_extents),
    # what a plain NTFS file answers
    Fsctl.GET_COMPRESSION: FsctlSpec(fsctl_info.get_compression),
    Fsctl.SET_COMPRESSION: FsctlSpec(fsctl_info.set_compression),
    Fsctl.GET_REPARSE_POINT: FsctlSpec(fsctl_info.get_reparse_point),
    Fsctl.GET_OBJECT_ID: FsctlSpec(fsctl_info.get_object_id),
    Fsctl.CREATE_OR_GET_OBJECT_ID: FsctlSpec(fsctl_info.create_or_get_object_id),
    Fsctl.GET_INTEGRITY_INFORMATION: FsctlSpec(fsctl_info.integrity_information),
    Fsctl.SET_INTEGRITY_INFORMATION: FsctlSpec(fsctl_info.integrity_information),
}


def handle(ctx):
    request = IoctlRequest.decode(ctx.message)
    if request.flags != IoctlFlags.IS_FSCTL:
        # Plain IOCTLs are not passed through by SMB2 servers (3.3.5.15).
        raise SmbError(NtStatus.NOT_SUPPORTED, "IOCTL without IS_FSCTL")
    limit = ctx.connection.max_transact_size
    if max(len(request.input), request.max_input_response, request.max_output_response) > limit:
        raise SmbError(NtStatus.INVALID_PARAMETER, "IOCTL sizes above MaxTransactSize")
    spec = FSCTL_TABLE.get(request.ctl_code)
    open_ = None
    if spec is not None and not spec.needs_open:
        if tuple(request.file_id) != _NO_FILE_ID:
            raise SmbError(NtStatus.INVALID_PARAMETER, "FileId must be all ones")
    else:
        open_ = ctx.lookup_open(request.file_id)    # FILE_CLOSED comes first
    if spec is None:
        raise SmbError(unsupported_status(request.ctl_code), f"FSCTL 0x{request.ctl_code:08x}")
    file_id = FileId(*open_.file_id) if open_ is not None else _NO_FILE_ID
    result = spec.handler(ctx, request, open_)
    if isinstance(result, Pending):
        return Pending(_encode_later(request, file_id, result.work), result.interim_after_s,
                       result.on_cancel)
    return encode_result(request, file_id, result)


async def _encode_later(request, file_id, work):
    return encode_result(request, file_id, await work)


def encode_result(request: IoctlRequest, file_id: FileId, result):
    """The IOCTL response for a handler's output (3.3.5.15): never more than
    MaxOutputResponse bytes of it (STATUS_BUFFER_TOO_SMALL otherwise), and a
    non-success status keeps its body (BUFFER_OVERFLOW, failed copy chunk)."""
    status = NtStatus.SUCCESS
    if isinstance(result, tuple):
        result, status = result
    if len(result) > request.max_output_response:
        raise SmbError(NtStatus.BUFFER_TOO_SMALL, "output does not fit")
    body = IoctlResponse(request.ctl_code, file_id, result).encode()
    return Reply(body, status) if status != NtStatus.SUCCESS else body
