"""What several commands share about open files: access mapping and the
share access check.  The share-mode table itself and closing an Open are the
open table's (``smbcad.server.opens``).

[MS-FSA] 2.1.5.1.2 (share access check), [MS-DTYP] 2.4.3 (generic mapping).
"""

from smbcad.proto.constants import AccessMask, ShareAccess
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

# The access bits that share modes govern ([MS-FSA] 2.1.5.1.2.1).
READ_LIKE = AccessMask.FILE_READ_DATA | AccessMask.FILE_EXECUTE
WRITE_LIKE = AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
DATA_ACCESS = READ_LIKE | WRITE_LIKE | AccessMask.DELETE

_GENERIC_MAP = (
    (AccessMask.GENERIC_READ, AccessMask.FILE_GENERIC_READ),
    (AccessMask.GENERIC_WRITE, AccessMask.FILE_GENERIC_WRITE),
    (AccessMask.GENERIC_EXECUTE, AccessMask.FILE_GENERIC_EXECUTE),
    (AccessMask.GENERIC_ALL, AccessMask.FILE_ALL_ACCESS),
)
WRITE_ACCESS = (AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
                | AccessMask.FILE_WRITE_EA | AccessMask.FILE_WRITE_ATTRIBUTES
                | AccessMask.DELETE | AccessMask.WRITE_DAC | AccessMask.WRITE_OWNER
                | AccessMask.FILE_DELETE_CHILD)


def map_generic(access: int, maximal: int) -> int:
    """GENERIC_* → specific rights; MAXIMUM_ALLOWED → what the tree allows
    ([MS-SMB2] 3.3.5.9, [MS-DTYP] 2.4.3)."""
    for generic, specific in _GENERIC_MAP:
        if access & generic:
            access = (access & ~generic) | specific
    if access & AccessMask.MAXIMUM_ALLOWED:
        access = (access & ~AccessMask.MAXIMUM_ALLOWED) | maximal
    return access


def check_share_access(server, key: tuple, access: int, share: int) -> None:
    """STATUS_SHARING_VIOLATION when the new open and an existing one exclude
    each other ([MS-FSA] 2.1.5.1.2.1); opens without data access never conflict."""
    state = server.opens.file_state(key)
    if state is None:
        return
    if state.delete_pending:
        raise SmbError(NtStatus.DELETE_PENDING)
    if not access & DATA_ACCESS:
        return
    for other in state.opens:
        if not other.granted_access & DATA_ACCESS:
            continue
        if _excludes(other.share_access, access) or _excludes(share, other.granted_access):
            raise SmbError(NtStatus.SHARING_VIOLATION)


def _excludes(share: int, access: int) -> bool:
    return bool((access & READ_LIKE and not share & ShareAccess.READ)
                or (access & WRITE_LIKE and not share & ShareAccess.WRITE)
                or (access & AccessMask.DELETE and not share & ShareAccess.DELETE))
