"""QUERY_DIRECTORY classes: per-class layouts ([MS-FSCC] 2.4), packing and limits
([MS-FSA] 2.1.5.6.3), and cross-checks against smbprotocol."""

import dataclasses

import pytest
from smbprotocol import file_info as spf

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (DIR_INFO_CLASSES, DirEntry, FileInfoClass as C,
                               dir_entry_fixed_size, encode_dir_entry,
                               encode_directory_entries)
from smbcad.proto.status import NtStatus


def q(v: int) -> bytes:
    return v.to_bytes(8, "little", signed=True)


def d(v: int) -> bytes:
    return v.to_bytes(4, "little")


def u16(s: str) -> bytes:
    return s.encode("utf-16-le")


def prefix(f, name_len: int, attrs: int = 0x20, next_offset: int = 0, index: int = 0) -> bytes:
    """FILE_DIRECTORY_INFORMATION up to FileName ([MS-FSCC] 2.4.10), 64 bytes."""
    return (d(next_offset) + d(index) + q(f.creation_time) + q(f.last_access_time)
            + q(f.last_write_time) + q(f.change_time) + q(f.end_of_file)
            + q(f.allocation_size) + d(attrs) + d(name_len))


def short(name: str) -> bytes:
    """ShortNameLength, Reserved, ShortName[24]."""
    raw = u16(name)
    return bytes([len(raw), 0]) + raw + bytes(24 - len(raw))


FID = 0x0000_1234_5678_9ABC


@pytest.fixture
def entry(file_info):
    return DirEntry("a.txt", file_info, short_name="A.TXT")


def expected_entries(f):
    """Hand layout of the "a.txt" entry per class: fixed part after the prefix."""
    fid128 = q(FID) + bytes(8)
    return {
        C.FILE_DIRECTORY: b"",
        C.FILE_FULL_DIRECTORY: d(0),                                   # EaSize
        C.FILE_BOTH_DIRECTORY: d(0) + short("A.TXT"),
        C.FILE_ID_BOTH_DIRECTORY: d(0) + short("A.TXT") + b"\x00\x00" + q(FID),
        C.FILE_ID_FULL_DIRECTORY: d(0) + d(0) + q(FID),                # EaSize, Reserved, FileId
        C.FILE_ID_EXTD_DIRECTORY: d(0) + d(0) + fid128,                # EaSize, Tag, FileId128
        C.FILE_ID_64_EXTD_DIRECTORY: d(0) + d(0) + q(FID),
        C.FILE_ID_64_EXTD_BOTH_DIRECTORY: d(0) + d(0) + q(FID) + short("A.TXT"),
        C.FILE_ID_ALL_EXTD_DIRECTORY: d(0) + d(0) + q(FID) + fid128,
        C.FILE_ID_ALL_EXTD_BOTH_DIRECTORY: d(0) + d(0) + q(FID) + fid128 + short("A.TXT"),
    }


@pytest.mark.parametrize("level", sorted(set(DIR_INFO_CLASSES) - {C.FILE_NAMES}))
def test_layouts(entry, file_info, level):
    tail = expected_entries(file_info)[level]
    expected = prefix(file_info, 10) + tail + u16("a.txt")
    assert encode_dir_entry(level, entry) == expected
    assert dir_entry_fixed_size(level) == 64 + len(tail)


def test_fixed_sizes():
    # FieldOffset(FileName) per [MS-FSCC] 2.4.8 .. 2.4.33
    assert {level: cls.fixed_size for level, cls in DIR_INFO_CLASSES.items()} == {
        1: 64, 2: 68, 3: 94, 12: 12, 37: 104, 38: 80, 60: 88, 78: 80, 79: 106, 80: 96, 81: 122}


def test_names_information(entry):
    # NextEntryOffset, FileIndex, FileNameLength, FileName
    assert encode_dir_entry(C.FILE_NAMES, entry) == d(0) + d(0) + d(10) + u16("a.txt")


def test_reparse_tag_placement(file_info):
    f = dataclasses.replace(file_info, attributes=0x420, ea_size=99)
    e = DirEntry("l", f, reparse_tag=0xA000000C)
    # Older classes put the tag in EaSize ([MS-FSCC] 2.4.8) ...
    assert encode_dir_entry(C.FILE_FULL_DIRECTORY, e)[64:68] == d(0xA000000C)
    assert encode_dir_entry(C.FILE_ID_BOTH_DIRECTORY, e)[64:68] == d(0xA000000C)
    # ... the extended ones have both fields ([MS-FSCC] 2.4.23).
    assert encode_dir_entry(C.FILE_ID_EXTD_DIRECTORY, e)[64:72] == d(99) + d(0xA000000C)
    plain = DirEntry("l", dataclasses.replace(file_info, ea_size=99), reparse_tag=0xA000000C)
    assert encode_dir_entry(C.FILE_ID_EXTD_DIRECTORY, plain)[64:72] == d(99) + d(0)


def test_directory_attributes(dir_info):
    assert encode_dir_entry(C.FILE_DIRECTORY, (".", dir_info))[56:60] == d(0x10)


def test_id_both_cross_check_smbprotocol(entry):
    data = encode_dir_entry(C.FILE_ID_BOTH_DIRECTORY, entry)
    s = spf.FileIdBothDirectoryInformation()
    assert s.unpack(data) == b""
    assert s.pack() == data
    assert s["file_id"].get_value() == FID
    assert s["end_of_file"].get_value() == 5000
    assert s["short_name"].get_value() == u16("A.TXT")
    assert s["file_name"].get_value() == u16("a.txt")


@pytest.mark.parametrize("level, cls", [
    (C.FILE_DIRECTORY, spf.FileDirectoryInformation),
    (C.FILE_FULL_DIRECTORY, spf.FileFullDirectoryInformation),
    (C.FILE_BOTH_DIRECTORY, spf.FileBothDirectoryInformation),
    (C.FILE_ID_FULL_DIRECTORY, spf.FileIdFullDirectoryInformation),
    (C.FILE_NAMES, spf.FileNamesInformation),
])
def test_other_classes_cross_check_smbprotocol(entry, level, cls):
    data = encode_dir_entry(level, entry)
    s = cls()
    assert s.unpack(data) == b""
    assert s.pack() == data
    assert s["file_name"].get_value() == u16("a.txt")


def test_packing_chain(file_info):
    entries = [("a.txt", file_info), ("bb", file_info)]
    data, consumed = encode_directory_entries(C.FILE_ID_BOTH_DIRECTORY, entries, 4096)
    assert consumed == 2
    first_len = 104 + 10                       # 114, padded to 120
    assert data[:4] == d(120)
    assert data[first_len:120] == bytes(6)      # alignment padding is zero
    assert data[120:124] == d(0)               # the last entry ends the chain
    assert len(data) == 120 + 104 + 4          # no padding after the last entry
    s = spf.FileIdBothDirectoryInformation()
    s.unpack(data[120:])
    assert s["file_name"].get_value() == u16("bb")


@pytest.mark.parametrize("limit, consumed, length", [
    (228, 2, 228),      # exactly fits, the last entry unpadded
    (227, 1, 114),
    (120, 1, 114),
    (114, 1, 114),
    (113, 0, 0),        # not even the first: caller answers INFO_LENGTH_MISMATCH
    (0, 0, 0),
])
def test_limits(file_info, limit, consumed, length):
    entries = [("a.txt", file_info), ("bb", file_info)]
    data, used = encode_directory_entries(C.FILE_ID_BOTH_DIRECTORY, entries, limit)
    assert (used, len(data)) == (consumed, length)
    if data:
        assert data[:4] == d(0 if consumed == 1 else 120)


def test_single_entry(file_info):
    entries = [("a.txt", file_info), ("bb", file_info)]
    data, used = encode_directory_entries(C.FILE_DIRECTORY, entries, 4096, single_entry=True)
    assert used == 1 and data[:4] == d(0) and len(data) == 64 + 10


def test_empty(file_info):
    assert encode_directory_entries(C.FILE_DIRECTORY, [], 4096) == (b"", 0)


def test_many_entries_alignment(file_info):
    names = [f"n{'x' * i}" for i in range(20)]
    data, used = encode_directory_entries(C.FILE_NAMES, [(n, file_info) for n in names], 65536)
    assert used == 20
    offset = 0
    seen = []
    while True:
        nxt, _index, length = (int.from_bytes(data[offset + i:offset + i + 4], "little")
                               for i in (0, 4, 8))
        seen.append(data[offset + 12:offset + 12 + length].decode("utf-16-le"))
        if not nxt:
            break
        assert nxt % 8 == 0
        offset += nxt
    assert seen == names


def test_unencodable_name_skipped_but_consumed(file_info):
    entries = [("bad\udcff", file_info), ("ok", file_info)]
    data, used = encode_directory_entries(C.FILE_NAMES, entries, 4096)
    assert used == 2 and data == d(0) + d(0) + d(4) + u16("ok")


def test_file_index_passed_through(file_info):
    e = DirEntry("x", file_info, file_index=7)
    assert encode_dir_entry(C.FILE_DIRECTORY, e)[4:8] == d(7)


@pytest.mark.parametrize("level", [0, 4, 18, 50, 77, 82, 255])
def test_unknown_class(file_info, level):
    with pytest.raises(SmbError) as err:
        encode_directory_entries(level, [("a", file_info)], 4096)
    assert err.value.status == NtStatus.INVALID_INFO_CLASS
