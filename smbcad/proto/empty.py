"""The 4-byte bodies of ECHO, LOGOFF, TREE_DISCONNECT and CANCEL
([MS-SMB2] 2.2.7, 2.2.8, 2.2.11, 2.2.12, 2.2.28, 2.2.29, 2.2.30).
"""

import struct

from smbcad.proto._util import slice_checked
from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

_EMPTY = struct.Struct("<HH")
EMPTY_BODY = _EMPTY.pack(4, 0)


def decode_empty(msg) -> None:
    """Validate a StructureSize-4 body; the Reserved field is ignored."""
    size, _ = _EMPTY.unpack(slice_checked(msg, HEADER_SIZE, 4))
    if size != 4:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad StructureSize")
