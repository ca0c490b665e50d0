"""What the FSCTL handlers share: control codes, Windows' allow list and the
small precondition checks ([MS-SMB2] 3.3.5.15, [MS-FSCC] 2.3, [MS-FSA] 2.1.5.10).

Handlers (``commands/ioctl.py`` keeps the table) take ``(ctx, request, open_)``
and return the output bytes, ``(output, status)`` for a response that carries
data with a non-success status (STATUS_BUFFER_OVERFLOW, a failed copy chunk),
or a ``Pending`` whose work returns one of those.
"""

from smbcad.proto.constants import AccessMask
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

# NTSTATUS codes proto/status.py does not list yet ([MS-ERREF] 2.3.1).
STATUS_INVALID_VIEW_SIZE = NtStatus.INVALID_VIEW_SIZE
STATUS_INTEGER_OVERFLOW = NtStatus.INTEGER_OVERFLOW


class Fsctl:
    """FSCTL codes handled or named here ([MS-FSCC] 2.3, [MS-SMB2] 2.2.31)."""

    DFS_GET_REFERRALS = 0x00060194
    DFS_GET_REFERRALS_EX = 0x000601B0
    GET_COMPRESSION = 0x0009003C
    GET_OBJECT_ID = 0x0009009C
    GET_REPARSE_POINT = 0x000900A8
    CREATE_OR_GET_OBJECT_ID = 0x000900C0
    SET_SPARSE = 0x000900C4
    GET_INTEGRITY_INFORMATION = 0x0009027C
    QUERY_ALLOCATED_RANGES = 0x000940CF
    SET_ZERO_DATA = 0x000980C8
    FILE_LEVEL_TRIM = 0x00098208
    DUPLICATE_EXTENTS_TO_FILE = 0x00098344
    SET_COMPRESSION = 0x0009C040
    SET_INTEGRITY_INFORMATION = 0x0009C280
    PIPE_TRANSCEIVE = 0x0011C017
    SRV_REQUEST_RESUME_KEY = 0x00140078
    LMR_REQUEST_RESILIENCY = 0x001401D4
    QUERY_NETWORK_INTERFACE_INFO = 0x001401FC
    VALIDATE_NEGOTIATE_INFO = 0x00140204
    SRV_ENUMERATE_SNAPSHOTS = 0x00144064
    SRV_COPYCHUNK = 0x001440F2
    SRV_COPYCHUNK_WRITE = 0x001480F2


# The CtlCodes a Windows 8+ server accepts at all: those of [MS-SMB2] 2.2.31
# and the pass-through list of <380> (3.3.5.15).  Anything else is refused
# with STATUS_NOT_SUPPORTED ("not allowed on the server"); an allowed code the
# file system does not implement is STATUS_INVALID_DEVICE_REQUEST.
WINDOWS_ALLOWED = frozenset({
    # [MS-SMB2] 2.2.31
    0x00060194, 0x0011400C, 0x00110018, 0x0011C017, 0x001440F2, 0x00144064,
    0x00140078, 0x001441BB, 0x001480F2, 0x001401D4, 0x001401FC, 0x000900A4,
    0x000601B0, 0x00098208, 0x00140204,
    # <380>: Windows 8 / Server 2012 and later
    0x000900C0, 0x000900A0, 0x000900AC, 0x00090060, 0x0009008F, 0x0009003C,
    0x00090064, 0x0009009C, 0x000900A8, 0x00090073, 0x0009002C, 0x001400EC,
    0x00094264, 0x00098268, 0x00090058, 0x00090284, 0x000940CF, 0x0009013C,
    0x00090138, 0x000900EB, 0x0009C040, 0x00098134, 0x0009C280, 0x00090098,
    0x000900BC, 0x000900A4, 0x000900C4, 0x000980C8, 0x00090194, 0x000900EF,
    # <380>: 8.1 / 2012 R2 and later (RSVD), 10 / 2016 and later, 11 / 2022
    0x00090304, 0x00090300, 0x00090364, 0x00098344, 0x000900FC, 0x000983E8,
    0x00090350, 0x000903D3, 0x0009042B, 0x00090440, 0x00090380,
})


def unsupported_status(ctl_code: int) -> int:
    """What Windows answers for a CtlCode nobody here handles (3.3.5.15 <380>)."""
    if ctl_code in WINDOWS_ALLOWED:
        return NtStatus.INVALID_DEVICE_REQUEST
    return NtStatus.NOT_SUPPORTED


def require_disk_file(open_, *, directory_ok: bool = False) -> None:
    """File-system FSCTLs on a pipe are STATUS_INVALID_DEVICE_REQUEST (<385>,
    <389>); on a directory, where the operation wants a data stream,
    STATUS_INVALID_PARAMETER ([MS-FSA] 2.1.5.10.22, .38, .39)."""
    if open_.is_pipe:
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "not on a pipe")
    if open_.is_directory and not directory_ok:
        raise SmbError(NtStatus.INVALID_PARAMETER, "needs a data stream, not a directory")


def require_access(open_, mask: int, what: str) -> None:
    """STATUS_ACCESS_DENIED unless the open was granted one of ``mask``."""
    if not open_.granted_access & mask:
        raise SmbError(NtStatus.ACCESS_DENIED, f"{what} needs access 0x{mask:x}")


def require_writable(open_) -> None:
    """A read-only share is a write-protected volume ([MS-FSA] IsReadOnly)."""
    if open_.tree.share.read_only:
        raise SmbError(NtStatus.MEDIA_WRITE_PROTECTED, "read-only share")


READ_DATA = AccessMask.FILE_READ_DATA
WRITE_DATA = AccessMask.FILE_WRITE_DATA
