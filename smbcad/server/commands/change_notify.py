"""CHANGE_NOTIFY ([MS-SMB2] 3.3.5.19), answered from inotify.

Decode and validate; queue the request on the Open's ChangeNotifyEntry
(``smbcad.server.notify``); answer at once when changes are buffered, else go
async (interim STATUS_PENDING right away, as Windows does for notify) until a
change, CANCEL (STATUS_CANCELLED), the handle's close (STATUS_NOTIFY_CLEANUP)
or the directory's deletion (STATUS_DELETE_PENDING).
"""

import asyncio

from smbcad.proto.change_notify import ChangeNotifyRequest, ChangeNotifyResponse
from smbcad.proto.constants import AccessMask
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server.context import Pending, Reply
from smbcad.server.notify import NotifyRegistry
from smbcad.vfs.notify import Inotify

# Statuses that still carry a CHANGE_NOTIFY response body (empty buffer).
_WITH_BODY = frozenset({NtStatus.SUCCESS, NtStatus.NOTIFY_ENUM_DIR, NtStatus.NOTIFY_CLEANUP})


def handle(ctx):
    request = ChangeNotifyRequest.decode(ctx.message)
    open_ = ctx.lookup_open(request.file_id)
    if request.output_buffer_length > ctx.connection.max_transact_size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "OutputBufferLength > MaxTransactSize")
    if open_.is_pipe or not open_.is_directory:
        raise SmbError(NtStatus.INVALID_PARAMETER, "CHANGE_NOTIFY on a file")
    if not open_.granted_access & AccessMask.FILE_LIST_DIRECTORY:
        raise SmbError(NtStatus.ACCESS_DENIED, "no FILE_LIST_DIRECTORY")

    registry = _registry(ctx.server)
    # Changes already queued in the kernel predate this request: they belong
    # to the entries that existed before it, not to one it may create now.
    registry.pump()
    loop = asyncio.get_running_loop()
    result = loop.create_future()

    def resolve(status: int, data: bytes) -> None:
        if not result.done():
            result.set_result((status, data))

    waiter = registry.request(open_, request.completion_filter, request.watch_tree,
                              request.output_buffer_length, resolve)
    if waiter.done:
        return _response(*result.result())
    if ctx.header.next_command:
        # Windows cannot take a request in the middle of a compound async: it
        # fails it with STATUS_INTERNAL_ERROR (smb2.compound.interim2, <159>).
        registry.discard(waiter)
        raise SmbError(NtStatus.INTERNAL_ERROR, "CHANGE_NOTIFY would go async mid-compound")

    async def wait():
        try:
            return _response(*await result)
        finally:
            registry.discard(waiter)

    return Pending(wait(), interim_after_s=0.0, on_cancel=lambda: registry.cancel(waiter))


def _response(status: int, data: bytes):
    if status not in _WITH_BODY:
        raise SmbError(status)
    return Reply(ChangeNotifyResponse(data).encode(), status)


def _registry(server) -> NotifyRegistry:
    """The server's registry, with its inotify instance on the running loop,
    made on the first CHANGE_NOTIFY.  STATUS_NOT_SUPPORTED without inotify."""
    registry = server.notify_registry
    if registry is None:
        inotify = Inotify()
        registry = NotifyRegistry(inotify)
        inotify.attach(asyncio.get_running_loop(), registry.pump)
        server.notify_registry = registry
    return registry
