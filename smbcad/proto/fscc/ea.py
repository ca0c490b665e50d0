"""Extended attribute lists: FILE_FULL_EA_INFORMATION and FILE_GET_EA_INFORMATION ([MS-FSCC] 2.4.16).

Used by SET_INFO/QUERY_INFO FileFullEaInformation and by the CREATE "ExtA" context.

Errors: a list whose lengths or offsets do not hold together is
STATUS_EA_LIST_INCONSISTENT ([MS-SMB2] 3.3.5.21.1); a bad name or Flags value is
STATUS_INVALID_EA_NAME ([MS-FSCC] 2.4.16).  Names must be ASCII (the spec's
"8-bit ASCII"); Windows is laxer about OEM bytes, we are not.  A NextEntryOffset
must be 4-aligned and reach past its own entry; Windows insists on the exact
padded size, Samba (like us) on less.

Query statuses the caller derives from ``encode_full_ea_list``'s count
([MS-FSA] 2.1.5.12.12): no EAs at all is STATUS_NO_EAS_ON_FILE, nothing fits is
STATUS_BUFFER_TOO_SMALL, some left over is STATUS_BUFFER_OVERFLOW.
"""

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc.info_classes import FsccStatus

_FULL_EA = struct.Struct("<IBBH")   # NextEntryOffset, Flags, EaNameLength, EaValueLength
_GET_EA = struct.Struct("<IB")      # NextEntryOffset, EaNameLength
FILE_NEED_EA = 0x80
_BAD_NAME_BYTES = frozenset(range(0x20)) | frozenset(b'\\/:*?"<>|,+=[];')


@dataclass(frozen=True, slots=True)
class FullEa:
    """One FILE_FULL_EA_INFORMATION entry; an empty value on SET means "delete this EA"."""

    name: str
    value: bytes
    flags: int = 0


def _inconsistent(why: str) -> SmbError:
    return SmbError(FsccStatus.EA_LIST_INCONSISTENT, why)


def _name(raw: bytes) -> str:
    if not raw or len(raw) > 254 or any(b in _BAD_NAME_BYTES or b > 0x7F for b in raw):
        raise SmbError(FsccStatus.INVALID_EA_NAME, "invalid EA name")
    return raw.decode("ascii")


def decode_full_ea_list(data: bytes) -> tuple[FullEa, ...]:
    """Parse a FILE_FULL_EA_INFORMATION chain."""
    data = bytes(data)
    out = []
    offset = 0
    while True:
        if len(data) - offset < _FULL_EA.size:
            raise _inconsistent("short EA entry")
        next_offset, flags, name_len, value_len = _FULL_EA.unpack_from(data, offset)
        name_at = offset + _FULL_EA.size
        value_at = name_at + name_len + 1
        end = value_at + value_len
        if end > len(data) or data[name_at + name_len] != 0:
            raise _inconsistent("EA entry overruns the buffer or lacks its NUL")
        if flags & ~FILE_NEED_EA:
            raise SmbError(FsccStatus.INVALID_EA_NAME, "invalid EA flags")
        out.append(FullEa(_name(data[name_at:name_at + name_len]), data[value_at:end], flags))
        if next_offset == 0:
            return tuple(out)
        if next_offset % 4 or offset + next_offset < end:
            raise _inconsistent("bad NextEntryOffset")
        offset += next_offset


def decode_get_ea_list(data: bytes) -> tuple[str, ...]:
    """Parse a FILE_GET_EA_INFORMATION chain (QUERY_INFO input, [MS-FSCC] 2.4.16.1)."""
    data = bytes(data)
    names = []
    offset = 0
    while True:
        if len(data) - offset < _GET_EA.size:
            raise _inconsistent("short EA name entry")
        next_offset, name_len = _GET_EA.unpack_from(data, offset)
        name_at = offset + _GET_EA.size
        end = name_at + name_len + 1
        if end > len(data) or data[name_at + name_len] != 0:
            raise _inconsistent("EA name overruns the buffer or lacks its NUL")
        names.append(_name(data[name_at:name_at + name_len]))
        if next_offset == 0:
            return tuple(names)
        if next_offset % 4 or offset + next_offset < end:
            raise _inconsistent("bad NextEntryOffset")
        offset += next_offset


def _full_ea_entry(ea: FullEa) -> bytes:
    raw = ea.name.encode("ascii")
    return _FULL_EA.pack(0, ea.flags, len(raw), len(ea.value)) + raw + b"\x00" + ea.value


def encode_full_ea_list(eas: Sequence[FullEa], max_len: int | None = None,
                        single_entry: bool = False) -> tuple[bytes, int]:
    """FILE_FULL_EA_INFORMATION chain, entries 4-byte aligned, the last offset 0.

    Only whole entries are returned ([MS-FSCC] 2.4.16); returns ``(data, count)``.
    """
    out = bytearray()
    last = -1
    count = 0
    for ea in eas:
        entry = _full_ea_entry(ea)
        start = (len(out) + 3) & ~3 if last >= 0 else 0
        if max_len is not None and start + len(entry) > max_len:
            break
        out += bytes(start - len(out))
        if last >= 0:
            struct.pack_into("<I", out, last, start - last)
        out += entry
        last = start
        count += 1
        if single_entry:
            break
    return bytes(out), count


def packed_ea_size(eas: Sequence[FullEa]) -> int:
    """EaSize for FileEaInformation and directory entries ([MS-FSA] 2.1.5.12.10).

    The size of the list in OS/2 FEALIST form (a 4-byte length, then per entry
    flags, name length, value length, name, NUL, value); 0 when there are no EAs.
    """
    if not eas:
        return 0
    return 4 + sum(5 + len(ea.name) + len(ea.value) for ea in eas)
