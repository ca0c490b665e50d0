"""What several commands share about open files: access mapping and the
share access check.  The share-mode table itself and closing an Open are the
open table's (``smbcad.server.opens``).

[MS-FSA] 2.1.5.1.2 (share access check), [MS-DTYP] 2.4.3 (generic mapping).
"""

from smbcad.proto.constants import AccessMask
from smbcad.proto.errors import SmbError

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
    """STATUS_SHARING_VIOLATION when the new open and an existing one of any
    process of the node exclude each other ([MS-FSA] 2.1.5.1.2.1, decided by
    ``smbcad.openstate.record``), STATUS_DELETE_PENDING on a delete-pending
    file."""
    conflict = server.opens.open_state.sharing_conflict(key, access, share)
    if conflict is not None:
        raise SmbError(conflict)
