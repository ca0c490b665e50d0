"""CLOSE request and response ([MS-SMB2] 2.2.15, 2.2.16)."""

import struct
from dataclasses import dataclass

from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.fileinfo import FileInfo
from smbcad.proto.status import NtStatus

# StructureSize, Flags, Reserved, FileId.
_REQUEST = struct.Struct("<HHIQQ")
# StructureSize, Flags, Reserved, CreationTime, LastAccessTime, LastWriteTime,
# ChangeTime, AllocationSize, EndofFile, FileAttributes.
_RESPONSE = struct.Struct("<HHIQQQQQQI")


class CloseFlags:
    """CLOSE Flags (2.2.15, 2.2.16)."""

    POSTQUERY_ATTRIB = 0x0001


@dataclass(frozen=True, slots=True)
class CloseRequest:
    """SMB2 CLOSE Request (2.2.15)."""

    flags: int
    file_id: FileId

    @property
    def postquery_attrib(self) -> bool:
        return bool(self.flags & CloseFlags.POSTQUERY_ATTRIB)

    @classmethod
    def decode(cls, msg) -> "CloseRequest":
        if len(msg) < HEADER_SIZE + _REQUEST.size:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short CLOSE")
        size, flags, _, persistent, volatile = _REQUEST.unpack_from(msg, HEADER_SIZE)
        if size != 24:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad CLOSE StructureSize")
        return cls(flags, FileId(persistent, volatile))


@dataclass(frozen=True, slots=True)
class CloseResponse:
    """SMB2 CLOSE Response (2.2.16).

    Without POSTQUERY_ATTRIB every attribute field is zero (the defaults);
    ``with_attributes`` fills them from a ``FileInfo`` and sets the flag.
    """

    flags: int = 0
    creation_time: int = 0
    last_access_time: int = 0
    last_write_time: int = 0
    change_time: int = 0
    allocation_size: int = 0
    end_of_file: int = 0
    file_attributes: int = 0

    @classmethod
    def with_attributes(cls, info: FileInfo) -> "CloseResponse":
        return cls(CloseFlags.POSTQUERY_ATTRIB, info.creation_time, info.last_access_time,
                   info.last_write_time, info.change_time, info.allocation_size,
                   info.end_of_file, info.attributes)

    def encode(self) -> bytes:
        return _RESPONSE.pack(60, self.flags, 0, self.creation_time,
                              self.last_access_time, self.last_write_time,
                              self.change_time, self.allocation_size,
                              self.end_of_file, self.file_attributes)
