"""SET_INFO request and response ([MS-SMB2] 2.2.39, 2.2.40)."""

import struct
from dataclasses import dataclass

from smbcad.proto._util import slice_checked
from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

# StructureSize, InfoType, FileInfoClass, BufferLength, BufferOffset,
# Reserved, AdditionalInformation, FileId.
_REQUEST = struct.Struct("<HBBIHHIQQ")
_REQUEST_END = HEADER_SIZE + _REQUEST.size           # 96: where Buffer starts
SET_INFO_RESPONSE_BODY = struct.pack("<H", 2)


@dataclass(frozen=True, slots=True)
class SetInfoRequest:
    """SMB2 SET_INFO Request (2.2.39)."""

    info_type: int
    file_info_class: int
    buffer: bytes
    additional_information: int
    file_id: FileId

    @classmethod
    def decode(cls, msg) -> "SetInfoRequest":
        if len(msg) < _REQUEST_END:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short SET_INFO")
        (size, info_type, info_class, length, offset, _, additional, persistent,
         volatile) = _REQUEST.unpack_from(msg, HEADER_SIZE)
        if size != 33:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad SET_INFO StructureSize")
        # 3.3.5.21: "If the BufferLength field is zero, the server SHOULD fail
        # the request with STATUS_INVALID_PARAMETER."
        if length == 0:
            raise SmbError(NtStatus.INVALID_PARAMETER, "SET_INFO BufferLength is 0")
        if offset < _REQUEST_END:
            raise SmbError(NtStatus.INVALID_PARAMETER, "buffer overlaps the fixed part")
        data = bytes(slice_checked(msg, offset, length))
        return cls(info_type, info_class, data, additional, FileId(persistent, volatile))


@dataclass(frozen=True, slots=True)
class SetInfoResponse:
    """SMB2 SET_INFO Response (2.2.40): just StructureSize 2."""

    def encode(self) -> bytes:
        return SET_INFO_RESPONSE_BODY
