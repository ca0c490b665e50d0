"""QUERY_DIRECTORY request and response ([MS-SMB2] 2.2.33, 2.2.34).

The entries in the output buffer are [MS-FSCC] 2.4 information classes,
encoded by smbcad.proto.fscc.
"""

import struct
from dataclasses import dataclass

from smbcad.proto._util import decode_utf16, slice_checked
from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

# StructureSize, FileInformationClass, Flags, FileIndex, FileId,
# FileNameOffset, FileNameLength, OutputBufferLength.
_REQUEST = struct.Struct("<HBBIQQHHI")
_REQUEST_END = HEADER_SIZE + _REQUEST.size           # 96: where Buffer starts
# StructureSize, OutputBufferOffset, OutputBufferLength.
_RESPONSE = struct.Struct("<HHI")
OUTPUT_BUFFER_OFFSET = HEADER_SIZE + _RESPONSE.size  # 72


class QueryDirectoryFlags:
    """QUERY_DIRECTORY Flags (2.2.33)."""

    RESTART_SCANS = 0x01
    RETURN_SINGLE_ENTRY = 0x02
    INDEX_SPECIFIED = 0x04
    REOPEN = 0x10


@dataclass(frozen=True, slots=True)
class QueryDirectoryRequest:
    """SMB2 QUERY_DIRECTORY Request (2.2.33); ``file_name`` is the search pattern
    ("" when none was sent)."""

    file_information_class: int
    flags: int
    file_index: int
    file_id: FileId
    file_name: str
    output_buffer_length: int

    @classmethod
    def decode(cls, msg) -> "QueryDirectoryRequest":
        if len(msg) < _REQUEST_END:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short QUERY_DIRECTORY")
        (size, info_class, flags, file_index, persistent, volatile, name_offset,
         name_length, output_length) = _REQUEST.unpack_from(msg, HEADER_SIZE)
        if size != 33:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad QUERY_DIRECTORY StructureSize")
        name = ""
        if name_length:
            if name_offset < _REQUEST_END:
                raise SmbError(NtStatus.INVALID_PARAMETER, "pattern overlaps the fixed part")
            name = decode_utf16(slice_checked(msg, name_offset, name_length))
        return cls(info_class, flags, file_index, FileId(persistent, volatile), name,
                   output_length)


@dataclass(frozen=True, slots=True)
class QueryDirectoryResponse:
    """SMB2 QUERY_DIRECTORY Response (2.2.34)."""

    output_buffer: bytes

    def encode(self) -> bytes:
        # An empty Buffer still occupies the byte that StructureSize 9 counts.
        return (_RESPONSE.pack(9, OUTPUT_BUFFER_OFFSET, len(self.output_buffer))
                + (bytes(self.output_buffer) or b"\x00"))
