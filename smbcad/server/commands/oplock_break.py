"""OPLOCK_BREAK acknowledgments ([MS-SMB2] 3.3.5.22).

No oplock or lease is granted yet (issue 3), so no break can be in progress:
an acknowledgment is answered as the spec says for that case.
"""

from smbcad.proto.errors import SmbError
from smbcad.proto.oplock_break import decode_oplock_break_acknowledgment
from smbcad.proto.status import NtStatus


def handle(ctx):
    decode_oplock_break_acknowledgment(ctx.message)
    # 3.3.5.22.1: "If Open.OplockState is not Breaking, ... STATUS_INVALID_OPLOCK_PROTOCOL".
    raise SmbError(NtStatus.INVALID_OPLOCK_PROTOCOL, "no break in progress")
