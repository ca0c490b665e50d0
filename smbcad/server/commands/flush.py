"""FLUSH ([MS-SMB2] 3.3.5.11): fsync in a thread, so the loop keeps serving."""

import asyncio

from smbcad.proto.constants import AccessMask
from smbcad.proto.errors import SmbError
from smbcad.proto.flush import FLUSH_RESPONSE_BODY, FlushRequest
from smbcad.proto.status import NtStatus
from smbcad.server.context import Pending

_FLUSH_ACCESS = AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
_INTERIM_S = 0.5


def handle(ctx):
    request = FlushRequest.decode(ctx.message)
    open_ = ctx.lookup_open(request.file_id)
    if open_.is_pipe:
        return FLUSH_RESPONSE_BODY
    if not open_.granted_access & _FLUSH_ACCESS:
        # Windows refuses FLUSH without write access (3.3.5.11).
        raise SmbError(NtStatus.ACCESS_DENIED, "no write access")
    fs = ctx.tree.share.fs

    async def sync():
        await asyncio.to_thread(fs.flush, open_.handle)
        return FLUSH_RESPONSE_BODY
    return Pending(sync(), _INTERIM_S)
