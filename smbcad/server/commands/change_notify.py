"""CHANGE_NOTIFY ([MS-SMB2] 3.3.5.19).

The inotify-backed implementation is issue 3; until then a watch is refused
with STATUS_NOT_SUPPORTED (what Windows returns for a file system that cannot
notify) rather than left pending forever.
"""

from smbcad.proto.change_notify import ChangeNotifyRequest
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus


def handle(ctx):
    request = ChangeNotifyRequest.decode(ctx.message)
    open_ = ctx.lookup_open(request.file_id)
    if not open_.is_directory:
        raise SmbError(NtStatus.INVALID_PARAMETER, "CHANGE_NOTIFY on a file")
    raise SmbError(NtStatus.NOT_SUPPORTED, "change notify is not implemented yet")
