"""SET_INFO decoders ([MS-FSCC] 2.4, [MS-SMB2] 2.2.39, 3.3.5.21.1): good buffers,
malformed ones, and the status each failure carries."""

import struct

import pytest
from smbprotocol import file_info as spf

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (SET_INFO_DECODERS, FileAllocationInfo, FileBasicInfo,
                               FileDispositionInfo, FileDispositionInfoEx, FileEndOfFileInfo,
                               FileFullEaInfo, FileInfoClass as C, FileLinkInfo, FileModeInfo,
                               FilePositionInfo, FileRenameInfo, FileValidDataLengthInfo,
                               FsccStatus, FullEa, decode_set_info)
from smbcad.proto.status import NtStatus


def q(v: int) -> bytes:
    return v.to_bytes(8, "little", signed=True)


def d(v: int) -> bytes:
    return v.to_bytes(4, "little")


def u16(s: str) -> bytes:
    return s.encode("utf-16-le")


def rename_buffer(name: str, replace: int = 1, root: int = 0, length: int | None = None) -> bytes:
    raw = u16(name)
    # ReplaceIfExists, Reserved[7], RootDirectory, FileNameLength, FileName
    return bytes([replace]) + bytes(7) + q(root) + d(len(raw) if length is None else length) + raw


def status_of(level: int, data: bytes) -> int:
    with pytest.raises(SmbError) as err:
        decode_set_info(level, data)
    return err.value.status


# --- FileBasicInformation ------------------------------------------------------------

def test_basic():
    data = q(1) + q(0) + q(-1) + q(-2) + d(0x21) + d(0xFFFFFFFF)   # Reserved is ignored
    assert decode_set_info(C.FILE_BASIC, data) == FileBasicInfo(1, 0, -1, -2, 0x21)


def test_basic_extra_bytes_ignored():
    assert decode_set_info(C.FILE_BASIC, bytes(48)) == FileBasicInfo(0, 0, 0, 0, 0)


@pytest.mark.parametrize("data, status", [
    (bytes(39), NtStatus.INFO_LENGTH_MISMATCH),
    (bytes(36), NtStatus.INFO_LENGTH_MISMATCH),                 # the SMB1 size
    (q(-3) + bytes(32), NtStatus.INVALID_PARAMETER),            # below -2
    (bytes(24) + q(-(2 ** 63)) + bytes(8), NtStatus.INVALID_PARAMETER),
])
def test_basic_bad(data, status):
    assert status_of(C.FILE_BASIC, data) == status


def test_basic_cross_check_smbprotocol():
    s = spf.FileBasicInformation()
    s["file_attributes"] = 0x20
    info = decode_set_info(C.FILE_BASIC, s.pack())
    assert info.file_attributes == 0x20 and len(s.pack()) == 40


# --- Rename / Link -------------------------------------------------------------------

def test_rename():
    info = decode_set_info(C.FILE_RENAME, rename_buffer("dir\\new.txt"))
    assert info == FileRenameInfo(True, 0, "dir\\new.txt")


def test_rename_unpadded_short_name_accepted():
    data = rename_buffer("a", replace=0)                       # 22 bytes, spec pads to 24
    assert len(data) == 22
    assert decode_set_info(C.FILE_RENAME, data) == FileRenameInfo(False, 0, "a")


def test_rename_trailing_padding_ignored():
    data = rename_buffer("a") + bytes(2)
    assert decode_set_info(C.FILE_RENAME, data).file_name == "a"


def test_rename_cross_check_smbprotocol():
    s = spf.FileRenameInformation()
    s["replace_if_exists"] = True
    s["file_name"] = "x\\y.bin"
    info = decode_set_info(C.FILE_RENAME, s.pack())
    assert info == FileRenameInfo(True, 0, "x\\y.bin")


@pytest.mark.parametrize("data, status", [
    (bytes(19), NtStatus.INFO_LENGTH_MISMATCH),
    (rename_buffer("ab")[:21], NtStatus.INVALID_PARAMETER),    # name cut short
    (rename_buffer("ab", length=6), NtStatus.INVALID_PARAMETER),
    (rename_buffer("", length=0), NtStatus.INVALID_PARAMETER),
    (rename_buffer("ab", length=3), NtStatus.INVALID_PARAMETER),     # odd length
    (rename_buffer("ab", root=5), NtStatus.INVALID_PARAMETER),       # RootDirectory != 0
    (bytes(20 - 4) + d(2) + b"\x00\xd8", NtStatus.OBJECT_NAME_INVALID),  # lone surrogate
])
def test_rename_bad(data, status):
    assert status_of(C.FILE_RENAME, data) == status


def test_link():
    assert decode_set_info(C.FILE_LINK, rename_buffer("l.txt", replace=0)) == \
        FileLinkInfo(False, 0, "l.txt")
    assert status_of(C.FILE_LINK, bytes(10)) == NtStatus.INFO_LENGTH_MISMATCH


def test_rename_ex():
    raw = u16("n")
    data = d(0x3) + bytes(4) + q(0) + d(len(raw)) + raw
    info = decode_set_info(C.FILE_RENAME_EX, data)
    assert info == FileRenameInfo(True, 0, "n", 0x3)
    data = d(0x2) + bytes(4) + q(0) + d(len(raw)) + raw
    assert decode_set_info(C.FILE_RENAME_EX, data).replace_if_exists is False


# --- Disposition ---------------------------------------------------------------------

@pytest.mark.parametrize("data, pending", [(b"\x01", True), (b"\x00", False), (b"\xff", True)])
def test_disposition(data, pending):
    assert decode_set_info(C.FILE_DISPOSITION, data) == FileDispositionInfo(pending)


def test_disposition_empty():
    assert status_of(C.FILE_DISPOSITION, b"") == NtStatus.INFO_LENGTH_MISMATCH


def test_disposition_ex():
    info = decode_set_info(C.FILE_DISPOSITION_EX, d(0x13))
    assert info == FileDispositionInfoEx(0x13)
    assert info.delete and info.posix_semantics and info.ignore_readonly
    assert not decode_set_info(C.FILE_DISPOSITION_EX, d(0)).delete
    assert status_of(C.FILE_DISPOSITION_EX, d(0x20)) == NtStatus.INVALID_PARAMETER
    assert status_of(C.FILE_DISPOSITION_EX, b"\x01") == NtStatus.INFO_LENGTH_MISMATCH


# --- Sizes and offsets ---------------------------------------------------------------

@pytest.mark.parametrize("level, record", [
    (C.FILE_POSITION, FilePositionInfo),
    (C.FILE_END_OF_FILE, FileEndOfFileInfo),
    (C.FILE_ALLOCATION, FileAllocationInfo),
    (C.FILE_VALID_DATA_LENGTH, FileValidDataLengthInfo),
])
def test_int64_classes(level, record):
    assert decode_set_info(level, q(123456789)) == record(123456789)
    assert decode_set_info(level, q(0)) == record(0)
    assert status_of(level, q(-1)) == NtStatus.INVALID_PARAMETER
    assert status_of(level, bytes(7)) == NtStatus.INFO_LENGTH_MISMATCH


# --- Mode ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [0, 0x2, 0x4, 0x6, 0x10, 0x20, 0x26])
def test_mode_ok(mode):
    assert decode_set_info(C.FILE_MODE, d(mode)) == FileModeInfo(mode)


@pytest.mark.parametrize("mode", [0x8, 0x1, 0x30, 0x1000, 0x80000000])
def test_mode_bad(mode):
    assert status_of(C.FILE_MODE, d(mode)) == NtStatus.INVALID_PARAMETER


# --- EAs -----------------------------------------------------------------------------

def test_full_ea():
    # NextEntryOffset, Flags, EaNameLength, EaValueLength, "AB\0", "xyz"  (14 -> 16)
    first = d(16) + b"\x00\x02" + struct.pack("<H", 3) + b"AB\x00" + b"xyz" + b"\x00\x00"
    second = d(0) + b"\x80\x01" + struct.pack("<H", 0) + b"C\x00"
    info = decode_set_info(C.FILE_FULL_EA, first + second)
    assert info == FileFullEaInfo((FullEa("AB", b"xyz"), FullEa("C", b"", 0x80)))


def test_full_ea_inconsistent():
    assert status_of(C.FILE_FULL_EA, d(0) + b"\x00\x05\x00\x00AB") == \
        FsccStatus.EA_LIST_INCONSISTENT


# --- Class policy --------------------------------------------------------------------

@pytest.mark.parametrize("level, status", [
    (C.FILE_SHORT_NAME, NtStatus.NOT_SUPPORTED),
    (C.FILE_PIPE, NtStatus.NOT_SUPPORTED),
    (C.FILE_QUOTA, NtStatus.NOT_SUPPORTED),
    (C.FILE_STANDARD, NtStatus.INVALID_INFO_CLASS),        # query-only
    (C.FILE_ALL, NtStatus.INVALID_INFO_CLASS),
    (C.FILE_NAME, NtStatus.INVALID_INFO_CLASS),            # LOCAL
    (30, NtStatus.NOT_SUPPORTED),                          # <428>
    (42, NtStatus.NOT_SUPPORTED),
    (0, NtStatus.INVALID_INFO_CLASS),
    (200, NtStatus.INVALID_INFO_CLASS),
])
def test_unsupported(level, status):
    assert status_of(level, bytes(64)) == status


def test_registry():
    assert set(SET_INFO_DECODERS) == {4, 10, 11, 13, 14, 15, 16, 19, 20, 39, 64, 65}
