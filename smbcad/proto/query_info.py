"""QUERY_INFO request and response ([MS-SMB2] 2.2.37, 2.2.38).

The output buffer holds an [MS-FSCC] 2.4/2.5 class or a security descriptor,
encoded elsewhere (smbcad.proto.fscc).
"""

import struct
from dataclasses import dataclass

from smbcad.proto._util import slice_checked
from smbcad.proto.constants import HEADER_SIZE, InfoType
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

# StructureSize, InfoType, FileInfoClass, OutputBufferLength,
# InputBufferOffset, Reserved, InputBufferLength, AdditionalInformation,
# Flags, FileId.
_REQUEST = struct.Struct("<HBBIHHIIIQQ")
_REQUEST_END = HEADER_SIZE + _REQUEST.size           # 104: where Buffer starts
# StructureSize, OutputBufferOffset, OutputBufferLength.
_RESPONSE = struct.Struct("<HHI")
OUTPUT_BUFFER_OFFSET = HEADER_SIZE + _RESPONSE.size  # 72
FILE_FULL_EA_INFORMATION = 15   # [MS-FSCC] 2.4: the one FILE class with an input buffer


class QueryInfoFlags:
    """QUERY_INFO Flags for FileFullEaInformation (2.2.37)."""

    SL_RESTART_SCAN = 0x00000001
    SL_RETURN_SINGLE_ENTRY = 0x00000002
    SL_INDEX_SPECIFIED = 0x00000004


class SecurityInformation:
    """AdditionalInformation bits of a security query (2.2.37)."""

    OWNER = 0x00000001
    GROUP = 0x00000002
    DACL = 0x00000004
    SACL = 0x00000008
    LABEL = 0x00000010
    ATTRIBUTE = 0x00000020
    SCOPE = 0x00000040
    BACKUP = 0x00010000


def _takes_input(info_type: int, file_info_class: int) -> bool:
    return info_type == InfoType.QUOTA or (
        info_type == InfoType.FILE and file_info_class == FILE_FULL_EA_INFORMATION)


@dataclass(frozen=True, slots=True)
class QueryInfoRequest:
    """SMB2 QUERY_INFO Request (2.2.37).

    ``input_buffer`` is only read for quota and FileFullEaInformation queries
    (an SMB2_QUERY_QUOTA_INFO or a FILE_GET_EA_INFORMATION list); for all
    others "the server MUST ignore the InputBufferLength value" (3.3.5.20)
    and it is empty.
    """

    info_type: int
    file_info_class: int
    output_buffer_length: int
    input_buffer: bytes
    additional_information: int
    flags: int
    file_id: FileId

    @classmethod
    def decode(cls, msg) -> "QueryInfoRequest":
        if len(msg) < _REQUEST_END:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short QUERY_INFO")
        (size, info_type, info_class, output_length, input_offset, _, input_length,
         additional, flags, persistent, volatile) = _REQUEST.unpack_from(msg, HEADER_SIZE)
        if size != 41:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad QUERY_INFO StructureSize")
        data = b""
        if input_length and _takes_input(info_type, info_class):
            if input_offset < _REQUEST_END:
                raise SmbError(NtStatus.INVALID_PARAMETER, "input overlaps the fixed part")
            data = bytes(slice_checked(msg, input_offset, input_length))
        return cls(info_type, info_class, output_length, data, additional, flags,
                   FileId(persistent, volatile))


@dataclass(frozen=True, slots=True)
class QueryInfoResponse:
    """SMB2 QUERY_INFO Response (2.2.38)."""

    output_buffer: bytes

    def encode(self) -> bytes:
        # An empty Buffer still occupies the byte that StructureSize 9 counts.
        return (_RESPONSE.pack(9, OUTPUT_BUFFER_OFFSET, len(self.output_buffer))
                + (bytes(self.output_buffer) or b"\x00"))
