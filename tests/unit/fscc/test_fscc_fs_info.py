"""QUERY_INFO file system classes ([MS-FSCC] 2.5): exact bytes, buffer rules, cross-checks."""

import dataclasses

import pytest
from smbprotocol import file_info as spf

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (FS_INFO_CLASSES, FS_INFO_ENCODERS, FsAttributes, FsInfo,
                               FsInfoClass as F, encode_fs_info, query_fs_info)
from smbcad.proto.status import NtStatus


def q(v: int) -> bytes:
    return v.to_bytes(8, "little", signed=True)


def d(v: int) -> bytes:
    return v.to_bytes(4, "little")


def u16(s: str) -> bytes:
    return s.encode("utf-16-le")


VOLUME_CREATED = 132_500_000_000_000_000


@pytest.fixture
def fs() -> FsInfo:
    return FsInfo(total_allocation_units=1_000_000, available_units=250_000,
                  sectors_per_unit=8, bytes_per_sector=512, volume_serial=0xCAFEF00D,
                  volume_label="data", volume_creation_time=VOLUME_CREATED,
                  actual_available_units=300_000)


def test_volume(fs):
    # VolumeCreationTime, VolumeSerialNumber, VolumeLabelLength, SupportsObjects,
    # Reserved, VolumeLabel
    assert encode_fs_info(F.FILE_FS_VOLUME, fs) == \
        q(VOLUME_CREATED) + d(0xCAFEF00D) + d(8) + b"\x00" + b"\x00" + u16("data")


def test_volume_cross_check_smbprotocol(fs):
    data = encode_fs_info(F.FILE_FS_VOLUME, fs)
    s = spf.FileFsVolumeInformation()
    assert s.unpack(data) == b""
    assert s["volume_serial_number"].get_value() == 0xCAFEF00D
    assert s["volume_label"].get_value() == "data"


def test_volume_label_capped_at_32_chars(fs):
    data = encode_fs_info(F.FILE_FS_VOLUME, dataclasses.replace(fs, volume_label="x" * 40))
    assert data[12:16] == d(64) and len(data) == 18 + 64


def test_volume_serial_is_32_bits_and_objects_flag(fs):
    data = encode_fs_info(F.FILE_FS_VOLUME,
                          dataclasses.replace(fs, volume_serial=0x1_2345_6789,
                                              object_id=bytes(range(16))))
    assert data[8:12] == d(0x2345_6789) and data[16] == 1


def test_size(fs):
    assert encode_fs_info(F.FILE_FS_SIZE, fs) == q(1_000_000) + q(250_000) + d(8) + d(512)


def test_full_size(fs):
    data = encode_fs_info(F.FILE_FS_FULL_SIZE, fs)
    assert data == q(1_000_000) + q(250_000) + q(300_000) + d(8) + d(512)


def test_full_size_defaults_actual_to_available(fs):
    data = encode_fs_info(F.FILE_FS_FULL_SIZE,
                          dataclasses.replace(fs, actual_available_units=None))
    assert data[16:24] == q(250_000)


def test_full_size_cross_check_smbprotocol(fs):
    data = encode_fs_info(F.FILE_FS_FULL_SIZE, fs)
    s = spf.FileFsFullSizeInformation()
    assert s.unpack(data) == b""
    assert s.pack() == data
    assert s["total_allocation_units"].get_value() == 1_000_000
    assert s["caller_available_units"].get_value() == 250_000
    assert s["actual_available_units"].get_value() == 300_000
    assert s["sectors_per_unit"].get_value() == 8
    assert s["bytes_per_sector"].get_value() == 512


def test_device(fs):
    # FILE_DEVICE_DISK, FILE_DEVICE_IS_MOUNTED
    assert encode_fs_info(F.FILE_FS_DEVICE, fs) == d(7) + d(0x20)


def test_attribute(fs):
    # CASE_SENSITIVE_SEARCH | CASE_PRESERVED_NAMES | UNICODE_ON_DISK | PERSISTENT_ACLS
    # | SUPPORTS_SPARSE_FILES
    assert encode_fs_info(F.FILE_FS_ATTRIBUTE, fs) == d(0x4F) + d(255) + d(8) + u16("NTFS")


def test_attribute_clears_bits_smb2_hides(fs):
    noisy = dataclasses.replace(fs, fs_attributes=0x0F | FsAttributes.SUPPORTS_USN_JOURNAL
                                | FsAttributes.SUPPORTS_OPEN_BY_FILE_ID
                                | FsAttributes.SUPPORTS_POSIX_UNLINK_RENAME
                                | FsAttributes.NAMED_STREAMS)
    assert encode_fs_info(F.FILE_FS_ATTRIBUTE, noisy)[:4] == d(0x0F | 0x00040000)


def test_object_id(fs):
    with pytest.raises(SmbError) as err:
        encode_fs_info(F.FILE_FS_OBJECT_ID, fs)
    assert err.value.status == NtStatus.INVALID_PARAMETER
    oid = bytes(range(16))
    data = encode_fs_info(F.FILE_FS_OBJECT_ID, dataclasses.replace(fs, object_id=oid))
    assert data == oid + bytes(48)


def test_sector_size(fs):
    # Logical, PhysicalForAtomicity, PhysicalForPerformance, FsEffective, Flags, 2 offsets
    assert encode_fs_info(F.FILE_FS_SECTOR_SIZE, fs) == \
        d(512) + d(512) + d(512) + d(512) + d(3) + d(0) + d(0)
    big = dataclasses.replace(fs, physical_bytes_per_sector=8192)
    assert encode_fs_info(F.FILE_FS_SECTOR_SIZE, big)[:16] == d(512) + d(8192) + d(8192) + d(4096)
    odd = dataclasses.replace(fs, physical_bytes_per_sector=1000)
    assert encode_fs_info(F.FILE_FS_SECTOR_SIZE, odd)[4:8] == d(512)


@pytest.mark.parametrize("level", sorted(FS_INFO_CLASSES))
def test_fixed_size_rule(fs, level):
    fs = dataclasses.replace(fs, object_id=bytes(16))
    fixed = FS_INFO_CLASSES[level].fixed_size
    with pytest.raises(SmbError) as err:
        query_fs_info(level, fs, fixed - 1)
    assert err.value.status == NtStatus.INFO_LENGTH_MISMATCH
    assert query_fs_info(level, fs, 4096) == (encode_fs_info(level, fs), NtStatus.SUCCESS)


def test_label_overflow(fs):
    data, status = query_fs_info(F.FILE_FS_VOLUME, fs, 24)
    assert status == NtStatus.BUFFER_OVERFLOW
    assert data[12:16] == d(8) and data[18:] == u16("data")[:6]


def test_attribute_name_overflow(fs):
    data, status = query_fs_info(F.FILE_FS_ATTRIBUTE, fs, 16)
    assert status == NtStatus.BUFFER_OVERFLOW and data == d(0x4F) + d(255) + d(8) + u16("NT")


def test_attribute_minimum_is_16(fs):
    # smbtorture smb2.getinfo.qfs_buffercheck: Windows' fixed part here is 16 bytes.
    with pytest.raises(SmbError) as err:
        query_fs_info(F.FILE_FS_ATTRIBUTE, fs, 15)
    assert err.value.status == NtStatus.INFO_LENGTH_MISMATCH


def test_control_reports_no_quotas(fs):
    data, status = query_fs_info(F.FILE_FS_CONTROL, fs, 48)
    assert status == NtStatus.SUCCESS and data == bytes(48)


@pytest.mark.parametrize("level, status", [
    (F.FILE_FS_LABEL, NtStatus.NOT_SUPPORTED),
    (F.FILE_FS_DRIVER_PATH, NtStatus.NOT_SUPPORTED),
    (F.FILE_FS_VOLUME_FLAGS, NtStatus.NOT_SUPPORTED),
    (0, NtStatus.INVALID_INFO_CLASS),
    (12, NtStatus.INVALID_INFO_CLASS),
])
def test_unsupported(fs, level, status):
    with pytest.raises(SmbError) as err:
        encode_fs_info(level, fs)
    assert err.value.status == status


def test_registry_matches_classes():
    assert set(FS_INFO_ENCODERS) == set(FS_INFO_CLASSES)
