"""LOCK ([MS-SMB2] 3.3.5.14).

Byte-range locking is issue 3 (shared and exclusive, blocking, cancellable,
checked on READ/WRITE).  Until it lands the server does not claim locks it
cannot enforce: every request is refused with STATUS_NOT_SUPPORTED.
"""

from smbcad.proto.errors import SmbError
from smbcad.proto.lock import LockRequest
from smbcad.proto.status import NtStatus


def handle(ctx):
    request = LockRequest.decode(ctx.message)
    ctx.lookup_open(request.file_id)
    raise SmbError(NtStatus.NOT_SUPPORTED, "byte-range locks are not implemented yet")
