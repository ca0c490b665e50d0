"""QUERY_DIRECTORY information classes ([MS-FSCC] 2.4) and entry packing ([MS-FSA] 2.1.5.6.3).

Every class is the 64-byte FILE_DIRECTORY_INFORMATION prefix (NextEntryOffset
through FileNameLength; FileNamesInformation is the exception) followed by a
class-specific tail and the name.  The table ``DIR_INFO_CLASSES`` holds the tail
for each class; ``encode_directory_entries`` packs as many entries as fit.

Status choices (the caller turns results into statuses):

* A class outside [MS-SMB2] 3.3.5.18's list raises STATUS_INVALID_INFO_CLASS; we
  implement every listed class, so NOT_SUPPORTED never arises here.
* If not even the first entry fits, nothing is consumed and the caller answers
  STATUS_INFO_LENGTH_MISMATCH, as Samba does.  (Windows returns a cut name with
  STATUS_BUFFER_OVERFLOW when only the name is short, [MS-FSA] 2.1.5.6.3; we never
  return partial names.)
* No entries at all: STATUS_NO_SUCH_FILE on the first query, else
  STATUS_NO_MORE_FILES ([MS-FSA] 2.1.5.6.3), also the caller's decision.
"""

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from smbcad.proto.constants import FileAttributes
from smbcad.proto.errors import SmbError
from smbcad.proto.fileinfo import FileInfo
from smbcad.proto.fscc._common import U32, file_attributes, utf16
from smbcad.proto.fscc.file_info import file_id_128
from smbcad.proto.fscc.info_classes import FileInfoClass as C
from smbcad.proto.fscc.wildcard import match_pattern  # noqa: F401  (re-exported)
from smbcad.proto.status import NtStatus

# NextEntryOffset, FileIndex, Creation/LastAccess/LastWrite/ChangeTime, EndOfFile,
# AllocationSize, FileAttributes, FileNameLength: FILE_DIRECTORY_INFORMATION (2.4.10).
_PREFIX = struct.Struct("<IIqqqqqqII")
_NAMES = struct.Struct("<III")              # FILE_NAMES_INFORMATION (2.4.33)
_EA = struct.Struct("<I")
_SHORT_NAME = struct.Struct("<Bx24s")       # ShortNameLength, Reserved, ShortName[12]
_ID_BOTH_TAIL = struct.Struct("<2xQ")       # Reserved2, FileId (2.4.22)
_ID_FULL_TAIL = struct.Struct("<I4xQ")      # EaSize, Reserved, FileId (2.4.24)
_EXTD_TAIL = struct.Struct("<II16s")        # EaSize, ReparsePointTag, FileId128 (2.4.23)
_ID64_TAIL = struct.Struct("<IIQ")          # EaSize, ReparsePointTag, FileId (2.4.19)
_ALL_TAIL = struct.Struct("<IIQ16s")        # ... FileId, FileId128 (2.4.21)
_SHORT_NAME_MAX_CHARS = 12
_PADDING = bytes(7)


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One name to report.  ``short_name`` is its 8.3 name, if any ([MS-FSCC] 2.1.5.2.1)."""

    name: str
    info: FileInfo
    short_name: str = ""
    reparse_tag: int = 0
    file_index: int = 0


def _as_entry(item: "DirEntry | tuple[str, FileInfo]") -> DirEntry:
    return item if isinstance(item, DirEntry) else DirEntry(item[0], item[1])


def _is_reparse(e: DirEntry) -> bool:
    return bool(e.info.attributes & FileAttributes.REPARSE_POINT)


def _ea_or_tag(e: DirEntry) -> int:
    """EaSize of the older classes: the reparse tag for a reparse point ([MS-FSCC] 2.4.8)."""
    return e.reparse_tag if _is_reparse(e) else e.info.ea_size


def _tag(e: DirEntry) -> int:
    return e.reparse_tag if _is_reparse(e) else 0


def _short(e: DirEntry) -> bytes:
    raw = utf16(e.short_name[:_SHORT_NAME_MAX_CHARS])
    return _SHORT_NAME.pack(len(raw), raw)


def _tail_none(e: DirEntry) -> bytes:
    return b""


def _tail_full(e: DirEntry) -> bytes:
    return _EA.pack(_ea_or_tag(e))


def _tail_both(e: DirEntry) -> bytes:
    return _EA.pack(_ea_or_tag(e)) + _short(e)


def _tail_id_both(e: DirEntry) -> bytes:
    return _EA.pack(_ea_or_tag(e)) + _short(e) + _ID_BOTH_TAIL.pack(e.info.file_id)


def _tail_id_full(e: DirEntry) -> bytes:
    return _ID_FULL_TAIL.pack(_ea_or_tag(e), e.info.file_id)


def _tail_id_extd(e: DirEntry) -> bytes:
    return _EXTD_TAIL.pack(e.info.ea_size, _tag(e), file_id_128(e.info.file_id))


def _tail_id64_extd(e: DirEntry) -> bytes:
    return _ID64_TAIL.pack(e.info.ea_size, _tag(e), e.info.file_id)


def _tail_id64_extd_both(e: DirEntry) -> bytes:
    return _tail_id64_extd(e) + _short(e)


def _tail_id_all_extd(e: DirEntry) -> bytes:
    return _ALL_TAIL.pack(e.info.ea_size, _tag(e), e.info.file_id,
                          file_id_128(e.info.file_id))


def _tail_id_all_extd_both(e: DirEntry) -> bytes:
    return _tail_id_all_extd(e) + _short(e)


@dataclass(frozen=True, slots=True)
class DirInfoClass:
    """One QUERY_DIRECTORY class: ``fixed_size`` is FieldOffset(FileName);
    ``short_name``: it carries ShortName (the "Both" classes), so a listing
    in it needs the 8.3 names, which no other class does."""

    name: str
    fixed_size: int
    tail: Callable[[DirEntry], bytes]
    short_name: bool = False


DIR_INFO_CLASSES: dict[int, DirInfoClass] = {
    C.FILE_DIRECTORY: DirInfoClass("FileDirectoryInformation", 64, _tail_none),
    C.FILE_FULL_DIRECTORY: DirInfoClass("FileFullDirectoryInformation", 68, _tail_full),
    C.FILE_BOTH_DIRECTORY: DirInfoClass("FileBothDirectoryInformation", 94, _tail_both, True),
    C.FILE_NAMES: DirInfoClass("FileNamesInformation", 12, _tail_none),
    C.FILE_ID_BOTH_DIRECTORY: DirInfoClass("FileIdBothDirectoryInformation", 104,
                                           _tail_id_both, True),
    C.FILE_ID_FULL_DIRECTORY: DirInfoClass("FileIdFullDirectoryInformation", 80,
                                           _tail_id_full),
    C.FILE_ID_EXTD_DIRECTORY: DirInfoClass("FileIdExtdDirectoryInformation", 88,
                                           _tail_id_extd),
    C.FILE_ID_64_EXTD_DIRECTORY: DirInfoClass("FileId64ExtdDirectoryInformation", 80,
                                              _tail_id64_extd),
    C.FILE_ID_64_EXTD_BOTH_DIRECTORY: DirInfoClass("FileId64ExtdBothDirectoryInformation",
                                                   106, _tail_id64_extd_both, True),
    C.FILE_ID_ALL_EXTD_DIRECTORY: DirInfoClass("FileIdAllExtdDirectoryInformation", 96,
                                               _tail_id_all_extd),
    C.FILE_ID_ALL_EXTD_BOTH_DIRECTORY: DirInfoClass("FileIdAllExtdBothDirectoryInformation",
                                                    122, _tail_id_all_extd_both, True),
}


def _lookup(info_class: int) -> DirInfoClass:
    cls = DIR_INFO_CLASSES.get(info_class)
    if cls is None:
        raise SmbError(NtStatus.INVALID_INFO_CLASS, f"directory info class {info_class}")
    return cls


def dir_entry_fixed_size(info_class: int) -> int:
    """FieldOffset(FileName) of ``info_class``: the least a buffer needs for one entry."""
    return _lookup(info_class).fixed_size


def dir_class_has_short_name(info_class: int) -> bool:
    """Whether entries of ``info_class`` carry an 8.3 ShortName ([MS-FSCC] 2.4.8, 2.4.17)."""
    return _lookup(info_class).short_name


def encode_dir_entry(info_class: int, entry: "DirEntry | tuple[str, FileInfo]") -> bytes:
    """One entry, unpadded, NextEntryOffset 0."""
    cls = _lookup(info_class)
    e = _as_entry(entry)
    return _encode(info_class, cls, e, utf16(e.name))


def _encode(info_class: int, cls: DirInfoClass, e: DirEntry, name: bytes) -> bytes:
    if info_class == C.FILE_NAMES:
        return _NAMES.pack(0, e.file_index, len(name)) + name
    i = e.info
    return b"".join((_PREFIX.pack(0, e.file_index, i.creation_time, i.last_access_time,
                                  i.last_write_time, i.change_time, i.end_of_file,
                                  i.allocation_size, file_attributes(i), len(name)),
                     cls.tail(e), name))


def encode_directory_entries(info_class: int,
                             entries: "Iterable[DirEntry | tuple[str, FileInfo]]",
                             max_output: int,
                             single_entry: bool = False) -> tuple[bytes, int]:
    """Pack entries for one QUERY_DIRECTORY response ([MS-FSA] 2.1.5.6.3).

    Entries start on 8-byte boundaries; each NextEntryOffset points at the next,
    the last one is 0, and no padding follows the last entry (so its padding need
    not fit in ``max_output``).  Packing stops before the first entry that would
    overflow ``max_output``, after one entry if ``single_entry``, or when
    ``entries`` runs out.

    Returns ``(buffer, consumed)``: ``consumed`` counts entries taken from the
    front of ``entries``, so the caller resumes its cursor there (pass a sequence,
    not a one-shot iterator).  A name that cannot be encoded as UTF-16 is skipped
    but still consumed, as Samba skips names it cannot convert.  ``consumed == 0``
    means not even the first entry fits: answer STATUS_INFO_LENGTH_MISMATCH.
    """
    cls = _lookup(info_class)
    out = bytearray()
    last = -1
    consumed = 0
    for item in entries:
        e = _as_entry(item)
        try:
            name = utf16(e.name)
        except SmbError:
            consumed += 1
            continue
        start = (len(out) + 7) & ~7 if last >= 0 else 0
        if start + cls.fixed_size + len(name) > max_output:
            break
        out += _PADDING[:start - len(out)]
        if last >= 0:
            U32.pack_into(out, last, start - last)
        out += _encode(info_class, cls, e, name)
        last = start
        consumed += 1
        if single_entry:
            break
    return bytes(out), consumed
