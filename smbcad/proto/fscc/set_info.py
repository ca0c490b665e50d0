"""SET_INFO file information classes ([MS-FSCC] 2.4, [MS-SMB2] 2.2.39) decoded into typed records.

``decode_set_info(info_class, data)`` looks the class up in ``SET_INFO_DECODERS``.
Status choices, following Windows (the I/O manager checks a minimum length per
class, then the file system checks values):

* a buffer shorter than the class's fixed part: STATUS_INFO_LENGTH_MISMATCH
  (Samba says INVALID_PARAMETER for several classes; we follow Windows and
  [MS-SMB2] 3.3.5.21.1, which names INFO_LENGTH_MISMATCH for rename);
  longer buffers are fine, the excess is ignored;
* a value the spec rules out (negative size or offset, time below -2, unknown
  mode or disposition flags, a rename/link name length that overruns the
  buffer or is zero, a non-zero RootDirectory): STATUS_INVALID_PARAMETER;
* an undecodable UTF-16 name: STATUS_OBJECT_NAME_INVALID;
* EA lists: see ``ea`` (EA_LIST_INCONSISTENT / INVALID_EA_NAME);
* a class we do not decode: ``set_unsupported_status`` — e.g.
  FileShortNameInformation (40) and FilePipeInformation (23) are NOT_SUPPORTED,
  query-only classes INVALID_INFO_CLASS ([MS-SMB2] 3.3.5.21.1).

Rename and link accept a buffer of 20 bytes plus the name: the spec pads the
structure to 24, but clients such as impacket do not pad short names.
"""

import struct
from collections.abc import Callable
from dataclasses import dataclass

from smbcad.proto._util import decode_utf16
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc.ea import FullEa, decode_full_ea_list
from smbcad.proto.fscc.info_classes import FileInfoClass as C, set_unsupported_status
from smbcad.proto.status import NtStatus

_BASIC = struct.Struct("<qqqqI")        # 2.4.7 (Reserved ignored)
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_RENAME = struct.Struct("<B7xQI")       # 2.4.42.2 / 2.4.28.2 up to FileName, 20 bytes
_RENAME_EX = struct.Struct("<I4xQI")    # 2.4.43 up to FileName, 20 bytes

# FileBasicInformation time values with a meaning of their own ([MS-FSCC] 2.4.7).
TIME_UNCHANGED = 0          # leave this time alone
TIME_FREEZE = -1            # leave it alone, and stop updating it on this handle
TIME_UNFREEZE = -2          # resume updating it on this handle

# FILE_MODE_INFORMATION bits a client may set ([MS-FSCC] 2.4.31).
FILE_WRITE_THROUGH = 0x02
FILE_SEQUENTIAL_ONLY = 0x04
FILE_SYNCHRONOUS_IO_ALERT = 0x10
FILE_SYNCHRONOUS_IO_NONALERT = 0x20
_SETTABLE_MODE = (FILE_WRITE_THROUGH | FILE_SEQUENTIAL_ONLY
                  | FILE_SYNCHRONOUS_IO_ALERT | FILE_SYNCHRONOUS_IO_NONALERT)


class DispositionFlags:
    """FILE_DISPOSITION_INFORMATION_EX Flags ([MS-FSCC] 2.4.12)."""

    DO_NOT_DELETE = 0x00000000
    DELETE = 0x00000001
    POSIX_SEMANTICS = 0x00000002
    FORCE_IMAGE_SECTION_CHECK = 0x00000004
    ON_CLOSE = 0x00000008
    IGNORE_READONLY_ATTRIBUTE = 0x00000010
    VALID = 0x0000001F


class RenameFlags:
    """FILE_RENAME_INFORMATION_EX Flags ([MS-FSCC] 2.4.43)."""

    REPLACE_IF_EXISTS = 0x00000001
    POSIX_SEMANTICS = 0x00000002
    IGNORE_READONLY_ATTRIBUTE = 0x00000040


@dataclass(frozen=True, slots=True)
class FileBasicInfo:
    """FILE_BASIC_INFORMATION ([MS-FSCC] 2.4.7) as set by a client.

    Each time is a FILETIME to apply when positive, else TIME_UNCHANGED,
    TIME_FREEZE or TIME_UNFREEZE.  ``file_attributes`` 0 means unchanged.
    """

    creation_time: int
    last_access_time: int
    last_write_time: int
    change_time: int
    file_attributes: int

    @property
    def times(self) -> tuple[int, int, int, int]:
        return (self.creation_time, self.last_access_time, self.last_write_time,
                self.change_time)


@dataclass(frozen=True, slots=True)
class FileRenameInfo:
    """FILE_RENAME_INFORMATION_TYPE_2 (2.4.42.2) or FILE_RENAME_INFORMATION_EX (2.4.43).

    ``file_name`` is as sent: share-relative, usually without a leading backslash,
    possibly a stream name (":name:$DATA").  ``flags`` is set for the Ex form only.
    """

    replace_if_exists: bool
    root_directory: int
    file_name: str
    flags: int = 0


@dataclass(frozen=True, slots=True)
class FileLinkInfo:
    """FILE_LINK_INFORMATION_TYPE_2 ([MS-FSCC] 2.4.28.2)."""

    replace_if_exists: bool
    root_directory: int
    file_name: str


@dataclass(frozen=True, slots=True)
class FileDispositionInfo:
    """FILE_DISPOSITION_INFORMATION ([MS-FSCC] 2.4.11)."""

    delete_pending: bool


@dataclass(frozen=True, slots=True)
class FileDispositionInfoEx:
    """FILE_DISPOSITION_INFORMATION_EX ([MS-FSCC] 2.4.12)."""

    flags: int

    @property
    def delete(self) -> bool:
        return bool(self.flags & DispositionFlags.DELETE)

    @property
    def posix_semantics(self) -> bool:
        return bool(self.flags & DispositionFlags.POSIX_SEMANTICS)

    @property
    def ignore_readonly(self) -> bool:
        return bool(self.flags & DispositionFlags.IGNORE_READONLY_ATTRIBUTE)


@dataclass(frozen=True, slots=True)
class FilePositionInfo:
    """FILE_POSITION_INFORMATION ([MS-FSCC] 2.4.40)."""

    current_byte_offset: int


@dataclass(frozen=True, slots=True)
class FileModeInfo:
    """FILE_MODE_INFORMATION ([MS-FSCC] 2.4.31).

    Whether the SYNCHRONOUS_IO bits match how the file was opened is the
    handler's check (it knows the open).
    """

    mode: int


@dataclass(frozen=True, slots=True)
class FileEndOfFileInfo:
    """FILE_END_OF_FILE_INFORMATION ([MS-FSCC] 2.4.14)."""

    end_of_file: int


@dataclass(frozen=True, slots=True)
class FileAllocationInfo:
    """FILE_ALLOCATION_INFORMATION ([MS-FSCC] 2.4.4)."""

    allocation_size: int


@dataclass(frozen=True, slots=True)
class FileValidDataLengthInfo:
    """FILE_VALID_DATA_LENGTH_INFORMATION ([MS-FSCC] 2.4.50)."""

    valid_data_length: int


@dataclass(frozen=True, slots=True)
class FileFullEaInfo:
    """FILE_FULL_EA_INFORMATION list ([MS-FSCC] 2.4.16)."""

    eas: tuple[FullEa, ...]


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise SmbError(NtStatus.INFO_LENGTH_MISMATCH, f"{what}: buffer too short")


def _non_negative(value: int, what: str) -> int:
    if value < 0:
        raise SmbError(NtStatus.INVALID_PARAMETER, f"{what}: negative value")
    return value


def decode_basic(data: bytes) -> FileBasicInfo:
    """FileBasicInformation (4): 40 bytes; times below -2 are invalid."""
    _need(data, 40, "FileBasicInformation")
    values = _BASIC.unpack_from(data)
    if any(t < TIME_UNFREEZE for t in values[:4]):
        raise SmbError(NtStatus.INVALID_PARAMETER, "FileBasicInformation: time below -2")
    return FileBasicInfo(*values)


def _name_after(data: bytes, name_length: int, what: str) -> str:
    fixed = _RENAME.size
    if name_length == 0 or name_length > len(data) - fixed:
        raise SmbError(NtStatus.INVALID_PARAMETER, f"{what}: bad FileNameLength")
    return decode_utf16(data[fixed:fixed + name_length])


def _root_directory(root: int, what: str) -> int:
    if root:
        raise SmbError(NtStatus.INVALID_PARAMETER, f"{what}: RootDirectory must be zero")
    return root


def decode_rename(data: bytes) -> FileRenameInfo:
    """FileRenameInformation (10), SMB2 form ([MS-SMB2] 3.3.5.21.1)."""
    _need(data, _RENAME.size, "FileRenameInformation")
    replace, root, name_length = _RENAME.unpack_from(data)
    return FileRenameInfo(bool(replace), _root_directory(root, "rename"),
                          _name_after(data, name_length, "FileRenameInformation"))


def decode_rename_ex(data: bytes) -> FileRenameInfo:
    """FileRenameInformationEx (65): Flags in place of ReplaceIfExists."""
    _need(data, _RENAME_EX.size, "FileRenameInformationEx")
    flags, root, name_length = _RENAME_EX.unpack_from(data)
    return FileRenameInfo(bool(flags & RenameFlags.REPLACE_IF_EXISTS),
                          _root_directory(root, "rename"),
                          _name_after(data, name_length, "FileRenameInformationEx"), flags)


def decode_link(data: bytes) -> FileLinkInfo:
    """FileLinkInformation (11), SMB2 form ([MS-FSCC] 2.4.28.2)."""
    _need(data, _RENAME.size, "FileLinkInformation")
    replace, root, name_length = _RENAME.unpack_from(data)
    return FileLinkInfo(bool(replace), _root_directory(root, "link"),
                        _name_after(data, name_length, "FileLinkInformation"))


def decode_disposition(data: bytes) -> FileDispositionInfo:
    """FileDispositionInformation (13): one Boolean byte."""
    _need(data, 1, "FileDispositionInformation")
    return FileDispositionInfo(data[0] != 0)


def decode_disposition_ex(data: bytes) -> FileDispositionInfoEx:
    """FileDispositionInformationEx (64): Flags; unknown bits are invalid."""
    _need(data, 4, "FileDispositionInformationEx")
    flags = _U32.unpack_from(data)[0]
    if flags & ~DispositionFlags.VALID:
        raise SmbError(NtStatus.INVALID_PARAMETER, "unknown disposition flags")
    return FileDispositionInfoEx(flags)


def decode_position(data: bytes) -> FilePositionInfo:
    """FilePositionInformation (14): a non-negative offset."""
    _need(data, 8, "FilePositionInformation")
    return FilePositionInfo(_non_negative(_I64.unpack_from(data)[0], "position"))


def decode_mode(data: bytes) -> FileModeInfo:
    """FileModeInformation (16): only the settable bits, at most one SYNCHRONOUS_IO bit."""
    _need(data, 4, "FileModeInformation")
    mode = _U32.unpack_from(data)[0]
    both_sync = FILE_SYNCHRONOUS_IO_ALERT | FILE_SYNCHRONOUS_IO_NONALERT
    if mode & ~_SETTABLE_MODE or mode & both_sync == both_sync:
        raise SmbError(NtStatus.INVALID_PARAMETER, "invalid mode")
    return FileModeInfo(mode)


def decode_end_of_file(data: bytes) -> FileEndOfFileInfo:
    """FileEndOfFileInformation (20)."""
    _need(data, 8, "FileEndOfFileInformation")
    return FileEndOfFileInfo(_non_negative(_I64.unpack_from(data)[0], "end of file"))


def decode_allocation(data: bytes) -> FileAllocationInfo:
    """FileAllocationInformation (19)."""
    _need(data, 8, "FileAllocationInformation")
    return FileAllocationInfo(_non_negative(_I64.unpack_from(data)[0], "allocation size"))


def decode_valid_data_length(data: bytes) -> FileValidDataLengthInfo:
    """FileValidDataLengthInformation (39); the range check against EOF is the handler's."""
    _need(data, 8, "FileValidDataLengthInformation")
    return FileValidDataLengthInfo(_non_negative(_I64.unpack_from(data)[0],
                                                 "valid data length"))


def decode_full_ea(data: bytes) -> FileFullEaInfo:
    """FileFullEaInformation (15)."""
    return FileFullEaInfo(decode_full_ea_list(data))


SET_INFO_DECODERS: dict[int, Callable[[bytes], object]] = {
    C.FILE_BASIC: decode_basic,
    C.FILE_RENAME: decode_rename,
    C.FILE_LINK: decode_link,
    C.FILE_DISPOSITION: decode_disposition,
    C.FILE_POSITION: decode_position,
    C.FILE_FULL_EA: decode_full_ea,
    C.FILE_MODE: decode_mode,
    C.FILE_ALLOCATION: decode_allocation,
    C.FILE_END_OF_FILE: decode_end_of_file,
    C.FILE_VALID_DATA_LENGTH: decode_valid_data_length,
    C.FILE_DISPOSITION_EX: decode_disposition_ex,
    C.FILE_RENAME_EX: decode_rename_ex,
}


def decode_set_info(info_class: int, data: bytes) -> object:
    """Decode a SET_INFO FILE buffer, or raise SmbError with the status to return."""
    decoder = SET_INFO_DECODERS.get(info_class)
    if decoder is None:
        raise SmbError(set_unsupported_status(info_class), f"set info class {info_class}")
    return decoder(bytes(data))
