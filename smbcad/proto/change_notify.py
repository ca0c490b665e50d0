"""CHANGE_NOTIFY request and response ([MS-SMB2] 2.2.35, 2.2.36) and the
FILE_NOTIFY_INFORMATION list they carry ([MS-FSCC] 2.7.1)."""

import struct
from dataclasses import dataclass
from typing import Iterable

from smbcad.proto._util import encode_utf16
from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

# StructureSize, Flags, OutputBufferLength, FileId, CompletionFilter, Reserved.
_REQUEST = struct.Struct("<HHIQQII")
# StructureSize, OutputBufferOffset, OutputBufferLength.
_RESPONSE = struct.Struct("<HHI")
OUTPUT_BUFFER_OFFSET = HEADER_SIZE + _RESPONSE.size  # 72
# FILE_NOTIFY_INFORMATION: NextEntryOffset, Action, FileNameLength.
_NOTIFY = struct.Struct("<III")


class ChangeNotifyFlags:
    """CHANGE_NOTIFY request Flags (2.2.35)."""

    WATCH_TREE = 0x0001


class CompletionFilter:
    """FILE_NOTIFY_CHANGE_* (2.2.35)."""

    FILE_NAME = 0x00000001
    DIR_NAME = 0x00000002
    ATTRIBUTES = 0x00000004
    SIZE = 0x00000008
    LAST_WRITE = 0x00000010
    LAST_ACCESS = 0x00000020
    CREATION = 0x00000040
    EA = 0x00000080
    SECURITY = 0x00000100
    STREAM_NAME = 0x00000200
    STREAM_SIZE = 0x00000400
    STREAM_WRITE = 0x00000800
    VALID = 0x00000FFF


class FileAction:
    """FILE_NOTIFY_INFORMATION Action ([MS-FSCC] 2.7.1)."""

    ADDED = 0x00000001
    REMOVED = 0x00000002
    MODIFIED = 0x00000003
    RENAMED_OLD_NAME = 0x00000004
    RENAMED_NEW_NAME = 0x00000005
    ADDED_STREAM = 0x00000006
    REMOVED_STREAM = 0x00000007
    MODIFIED_STREAM = 0x00000008
    REMOVED_BY_DELETE = 0x00000009
    ID_NOT_TUNNELLED = 0x0000000A
    TUNNELLED_ID_COLLISION = 0x0000000B


@dataclass(frozen=True, slots=True)
class ChangeNotifyRequest:
    """SMB2 CHANGE_NOTIFY Request (2.2.35)."""

    flags: int
    output_buffer_length: int
    file_id: FileId
    completion_filter: int

    @property
    def watch_tree(self) -> bool:
        return bool(self.flags & ChangeNotifyFlags.WATCH_TREE)

    @classmethod
    def decode(cls, msg) -> "ChangeNotifyRequest":
        if len(msg) < HEADER_SIZE + _REQUEST.size:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short CHANGE_NOTIFY")
        (size, flags, output_length, persistent, volatile, completion_filter,
         _) = _REQUEST.unpack_from(msg, HEADER_SIZE)
        if size != 32:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad CHANGE_NOTIFY StructureSize")
        return cls(flags, output_length, FileId(persistent, volatile), completion_filter)


@dataclass(frozen=True, slots=True)
class FileNotifyInformation:
    """One FILE_NOTIFY_INFORMATION entry ([MS-FSCC] 2.7.1); ``file_name`` is
    relative to the watched directory."""

    action: int
    file_name: str


def encode_file_notify_information(entries: Iterable[FileNotifyInformation]) -> bytes:
    """The FILE_NOTIFY_INFORMATION chain ([MS-FSCC] 2.7.1).

    Every entry but the last is padded to a 4-byte boundary and points at the
    next; the last has NextEntryOffset 0 and no padding (as Samba sends it).
    """
    items = list(entries)
    out = bytearray()
    for index, entry in enumerate(items):
        name = encode_utf16(entry.file_name)
        size = _NOTIFY.size + len(name)
        last = index == len(items) - 1
        padded = (size + 3) & ~3
        out += _NOTIFY.pack(0 if last else padded, entry.action, len(name))
        out += name
        if not last:
            out += bytes(padded - size)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class ChangeNotifyResponse:
    """SMB2 CHANGE_NOTIFY Response (2.2.36); ``output_buffer`` is the
    ``encode_file_notify_information`` chain."""

    output_buffer: bytes

    def encode(self) -> bytes:
        # An empty Buffer still occupies the byte that StructureSize 9 counts.
        return (_RESPONSE.pack(9, OUTPUT_BUFFER_OFFSET, len(self.output_buffer))
                + (bytes(self.output_buffer) or b"\x00"))
