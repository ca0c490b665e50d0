"""QUERY_INFO file classes: exact bytes laid out by hand from [MS-FSCC] 2.4, the
OutputBufferLength rules of [MS-SMB2] 3.3.5.20.1, and cross-checks against
smbprotocol's structure definitions."""

import dataclasses

import pytest
from smbprotocol import file_info as spf

from smbcad.proto.constants import Dialect
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (FILE_INFO_CLASSES, FILE_INFO_ENCODERS, FileInfoClass as C,
                               QueryContext, StreamInfo, encode_file_info, fit_output,
                               query_file_info)
from smbcad.proto.status import NtStatus


def q(v: int) -> bytes:
    return v.to_bytes(8, "little", signed=True)


def d(v: int) -> bytes:
    return v.to_bytes(4, "little")


def u16(s: str) -> bytes:
    return s.encode("utf-16-le")


PATH = "\\dir\\a.txt"                   # 10 characters, 20 bytes


@pytest.fixture
def ctx(file_info):
    return QueryContext(file_info, name="dir\\a.txt", access_mask=0x0012019F,
                        position=4096, mode=0x20 | 0x1000, alignment=0,
                        volume_serial=0x1122334455667788)


def expected_basic(f, attrs=0x20):
    # CreationTime, LastAccessTime, LastWriteTime, ChangeTime, FileAttributes, Reserved
    return q(f.creation_time) + q(f.last_access_time) + q(f.last_write_time) + \
        q(f.change_time) + d(attrs) + d(0)


def expected_standard(f, delete=0, directory=0):
    # AllocationSize, EndOfFile, NumberOfLinks, DeletePending, Directory, Reserved
    return q(f.allocation_size) + q(f.end_of_file) + d(f.number_of_links) + \
        bytes([delete, directory]) + b"\x00\x00"


def test_basic(ctx, file_info):
    data = encode_file_info(C.FILE_BASIC, ctx)
    assert len(data) == 40
    assert data == expected_basic(file_info)


def test_basic_directory_and_normal_attributes(dir_info, file_info):
    assert encode_file_info(C.FILE_BASIC, QueryContext(dir_info))[32:36] == d(0x10)
    plain = dataclasses.replace(file_info, attributes=0)
    assert encode_file_info(C.FILE_BASIC, QueryContext(plain))[32:36] == d(0x80)


def test_standard(ctx, file_info, dir_info):
    assert encode_file_info(C.FILE_STANDARD, ctx) == expected_standard(file_info)
    assert encode_file_info(C.FILE_STANDARD, QueryContext(dir_info)) == \
        expected_standard(dir_info, directory=1)
    unlinked = dataclasses.replace(file_info, number_of_links=0)
    assert encode_file_info(C.FILE_STANDARD, QueryContext(unlinked))[20] == 1
    pending = dataclasses.replace(file_info, delete_pending=True)
    assert encode_file_info(C.FILE_STANDARD, QueryContext(pending))[20] == 1


@pytest.mark.parametrize("level, expected", [
    (C.FILE_INTERNAL, q(0x0000_1234_5678_9ABC)),
    (C.FILE_EA, d(0)),
    (C.FILE_ACCESS, d(0x0012019F)),
    (C.FILE_POSITION, q(4096)),
    (C.FILE_MODE, d(0x20)),                     # DELETE_ON_CLOSE (0x1000) never reported
    (C.FILE_ALIGNMENT, d(0)),
    (C.FILE_NAME, d(20) + u16(PATH)),
    (C.FILE_NORMALIZED_NAME, d(18) + u16("dir\\a.txt")),
    (C.FILE_ATTRIBUTE_TAG, d(0x20) + d(0)),
    # CompressedFileSize, CompressionFormat, three shifts, Reserved[3]
    (C.FILE_COMPRESSION, q(8192) + b"\x00\x00" + bytes(3) + bytes(3)),
    # VolumeSerialNumber, FileId (128 bits: the 64-bit id zero-extended)
    (C.FILE_ID, q(0x1122334455667788) + q(0x0000_1234_5678_9ABC) + bytes(8)),
])
def test_small_classes(ctx, level, expected):
    assert encode_file_info(level, ctx) == expected


def test_network_open(ctx, file_info):
    f = file_info
    expected = (q(f.creation_time) + q(f.last_access_time) + q(f.last_write_time)
                + q(f.change_time) + q(8192) + q(5000) + d(0x20) + d(0))
    data = encode_file_info(C.FILE_NETWORK_OPEN, ctx)
    assert len(data) == 56 and data == expected


def test_all(ctx, file_info):
    expected = (expected_basic(file_info) + expected_standard(file_info)
                + q(file_info.file_id)      # InternalInformation
                + d(0)                      # EaInformation
                + d(0x0012019F)             # AccessInformation
                + q(4096)                   # PositionInformation
                + d(0x20)                   # ModeInformation
                + d(0)                      # AlignmentInformation
                + d(20) + u16(PATH))        # NameInformation
    data = encode_file_info(C.FILE_ALL, ctx)
    assert data == expected
    assert len(data) == 96 + 4 + 20


def test_all_of_share_root(dir_info):
    data = encode_file_info(C.FILE_ALL, QueryContext(dir_info))
    assert len(data) == 102 and data[96:] == d(2) + u16("\\")


def test_all_cross_check_smbprotocol(ctx, file_info):
    data = encode_file_info(C.FILE_ALL, ctx)
    s = spf.FileAllInformation()
    rest = s.unpack(data)
    assert rest == b""
    assert s.pack() == data
    assert s["basic_information"]["file_attributes"].get_value() == 0x20
    assert s["standard_information"]["number_of_links"].get_value() == 2
    assert s["standard_information"]["end_of_file"].get_value() == 5000
    assert s["internal_information"]["index_number"].get_value() == file_info.file_id
    assert s["access_information"]["access_flags"].get_value() == 0x0012019F
    assert s["name_information"]["file_name"].get_value() == PATH


def test_basic_cross_check_smbprotocol(ctx, file_info):
    data = encode_file_info(C.FILE_BASIC, ctx)
    s = spf.FileBasicInformation()
    assert s.unpack(data) == b""
    assert s.pack() == data
    assert s["file_attributes"].get_value() == 0x20


def test_alternate_name(file_info):
    with pytest.raises(SmbError) as err:
        encode_file_info(C.FILE_ALTERNATE_NAME, QueryContext(file_info))
    assert err.value.status == NtStatus.OBJECT_NAME_NOT_FOUND
    data = encode_file_info(C.FILE_ALTERNATE_NAME, QueryContext(file_info, short_name="A~1.TXT"))
    assert data == d(14) + u16("A~1.TXT")


def test_name_of_share_root(dir_info):
    assert encode_file_info(C.FILE_NAME, QueryContext(dir_info, name="")) == d(2) + u16("\\")
    assert encode_file_info(C.FILE_NORMALIZED_NAME, QueryContext(dir_info, name="")) == d(0)
    assert encode_file_info(C.FILE_NAME, QueryContext(dir_info, name="\\x/y")) == \
        d(8) + u16("\\x\\y")


def test_attribute_tag_reparse(file_info):
    f = dataclasses.replace(file_info, attributes=0x420)
    data = encode_file_info(C.FILE_ATTRIBUTE_TAG, QueryContext(f, reparse_tag=0xA000000C))
    assert data == d(0x420) + d(0xA000000C)
    # The tag is only reported for a reparse point.
    assert encode_file_info(C.FILE_ATTRIBUTE_TAG,
                            QueryContext(file_info, reparse_tag=0xA000000C)) == d(0x20) + d(0)


def test_stream_default(ctx):
    # NextEntryOffset, StreamNameLength, StreamSize, StreamAllocationSize, StreamName
    assert encode_file_info(C.FILE_STREAM, ctx) == \
        d(0) + d(14) + q(5000) + q(8192) + u16("::$DATA")


def test_stream_directory_has_none(dir_info):
    assert encode_file_info(C.FILE_STREAM, QueryContext(dir_info)) == b""


def two_streams(file_info):
    return QueryContext(file_info, streams=(StreamInfo("", 5000, 8192),
                                            StreamInfo("meta", 10, 4096)))


def test_stream_list(file_info):
    first = d(40) + d(14) + q(5000) + q(8192) + u16("::$DATA") + b"\x00\x00"   # 38 + pad
    second = d(0) + d(22) + q(10) + q(4096) + u16(":meta:$DATA")
    assert encode_file_info(C.FILE_STREAM, two_streams(file_info)) == first + second


@pytest.mark.parametrize("length, expected_len, status", [
    (86, 86, NtStatus.SUCCESS),
    (85, 38, NtStatus.BUFFER_OVERFLOW),     # only whole entries
    (38, 38, NtStatus.BUFFER_OVERFLOW),
    (37, 0, NtStatus.BUFFER_OVERFLOW),
    (32, 0, NtStatus.BUFFER_OVERFLOW),
])
def test_stream_truncation(file_info, length, expected_len, status):
    data, st = query_file_info(C.FILE_STREAM, two_streams(file_info), length)
    assert (len(data), st) == (expected_len, status)
    if data and st == NtStatus.BUFFER_OVERFLOW:
        assert data[:4] == d(0)             # the last returned entry ends the chain


def test_stream_too_small(file_info):
    with pytest.raises(SmbError) as err:
        query_file_info(C.FILE_STREAM, two_streams(file_info), 31)
    assert err.value.status == NtStatus.INFO_LENGTH_MISMATCH


@pytest.mark.parametrize("level", sorted(FILE_INFO_CLASSES))
def test_fixed_size_rule(ctx, level):
    ctx = dataclasses.replace(ctx, short_name="A~1.TXT")
    fixed = FILE_INFO_CLASSES[level].fixed_size
    with pytest.raises(SmbError) as err:
        query_file_info(level, ctx, fixed - 1)
    assert err.value.status == NtStatus.INFO_LENGTH_MISMATCH
    data, status = query_file_info(level, ctx, 65536)
    assert status == NtStatus.SUCCESS and data == encode_file_info(level, ctx)


def test_all_name_truncated_on_character_boundary(ctx):
    data, status = query_file_info(C.FILE_ALL, ctx, 105)
    assert status == NtStatus.BUFFER_OVERFLOW
    assert len(data) == 104                  # 100 + two whole bytes of name
    assert data[96:100] == d(20)             # FileNameLength stays the full length
    data, status = query_file_info(C.FILE_ALL, ctx, 104)
    assert (len(data), status) == (104, NtStatus.BUFFER_OVERFLOW)


def test_name_truncated(ctx):
    data, status = query_file_info(C.FILE_NAME, ctx, 11)
    assert status == NtStatus.BUFFER_OVERFLOW
    assert data == d(20) + u16(PATH)[:6]


@pytest.mark.parametrize("level, status", [
    (C.FILE_DIRECTORY, NtStatus.INVALID_INFO_CLASS),        # <415>
    (C.FILE_ID_BOTH_DIRECTORY, NtStatus.INVALID_INFO_CLASS),
    (C.FILE_RENAME, NtStatus.INVALID_INFO_CLASS),
    (C.FILE_END_OF_FILE, NtStatus.INVALID_INFO_CLASS),
    (C.FILE_FULL_EA, NtStatus.NOT_SUPPORTED),               # handled by ea.py
    (C.FILE_PIPE, NtStatus.NOT_SUPPORTED),
    (C.FILE_PIPE_LOCAL, NtStatus.NOT_SUPPORTED),
    (C.FILE_OBJECT_ID, NtStatus.NOT_SUPPORTED),
    (C.FILE_HARD_LINK, NtStatus.NOT_SUPPORTED),
    (41, NtStatus.NOT_SUPPORTED),                           # <416>
    (52, NtStatus.INFO_LENGTH_MISMATCH),                    # <416>
    (0, NtStatus.INVALID_INFO_CLASS),
    (100, NtStatus.INVALID_INFO_CLASS),
    (255, NtStatus.INVALID_INFO_CLASS),
])
def test_unsupported_classes(ctx, level, status):
    with pytest.raises(SmbError) as err:
        encode_file_info(level, ctx)
    assert err.value.status == status


@pytest.mark.parametrize("level, dialect", [
    (C.FILE_ID, Dialect.SMB_2_1),
    (C.FILE_NORMALIZED_NAME, Dialect.SMB_3_0_2),
])
def test_dialect_gates(ctx, level, dialect):
    with pytest.raises(SmbError) as err:
        encode_file_info(level, dataclasses.replace(ctx, dialect=dialect))
    assert err.value.status == NtStatus.NOT_SUPPORTED


def test_fit_output():
    assert fit_output(b"0123456789", 10, 4) == (b"0123456789", NtStatus.SUCCESS)
    assert fit_output(b"0123456789", 6, 4) == (b"012345", NtStatus.BUFFER_OVERFLOW)
    for bad in (3, 0):
        with pytest.raises(SmbError) as err:
            fit_output(b"0123456789", bad, 4)
        assert err.value.status == NtStatus.INFO_LENGTH_MISMATCH


def test_registry_matches_classes():
    assert set(FILE_INFO_ENCODERS) == set(FILE_INFO_CLASSES)


def test_unencodable_name(file_info):
    with pytest.raises(SmbError) as err:
        encode_file_info(C.FILE_NAME, QueryContext(file_info, name="bad\udcff"))
    assert err.value.status == NtStatus.OBJECT_NAME_INVALID
