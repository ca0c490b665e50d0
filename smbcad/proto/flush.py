"""FLUSH request and response ([MS-SMB2] 2.2.17, 2.2.18)."""

import struct
from dataclasses import dataclass

from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

# StructureSize, Reserved1, Reserved2, FileId.
_REQUEST = struct.Struct("<HHIQQ")
# StructureSize, Reserved.
_RESPONSE = struct.Struct("<HH")
FLUSH_RESPONSE_BODY = _RESPONSE.pack(4, 0)


@dataclass(frozen=True, slots=True)
class FlushRequest:
    """SMB2 FLUSH Request (2.2.17)."""

    file_id: FileId

    @classmethod
    def decode(cls, msg) -> "FlushRequest":
        if len(msg) < HEADER_SIZE + _REQUEST.size:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short FLUSH")
        size, _, _, persistent, volatile = _REQUEST.unpack_from(msg, HEADER_SIZE)
        if size != 24:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad FLUSH StructureSize")
        return cls(FileId(persistent, volatile))


@dataclass(frozen=True, slots=True)
class FlushResponse:
    """SMB2 FLUSH Response (2.2.18)."""

    def encode(self) -> bytes:
        return FLUSH_RESPONSE_BODY
