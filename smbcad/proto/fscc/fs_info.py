"""QUERY_INFO file system information classes ([MS-FSCC] 2.5) encoded from an ``FsInfo``.

Served: FileFsVolumeInformation (1), FileFsSizeInformation (3),
FileFsDeviceInformation (4), FileFsAttributeInformation (5),
FileFsFullSizeInformation (7), FileFsObjectIdInformation (8, only when the
volume has an object ID; otherwise STATUS_INVALID_PARAMETER as [MS-FSA]
2.1.5.13.8 says for a store without object IDs) and FileFsSectorSizeInformation
(11).  Everything else gets ``fs_query_unsupported_status``: NOT_SUPPORTED for a
documented level (FileFsControlInformation included: we keep no quotas),
INVALID_INFO_CLASS otherwise ([MS-SMB2] 3.3.5.20.2).
"""

import struct
from collections.abc import Callable
from dataclasses import dataclass

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc._common import utf16
from smbcad.proto.fscc.info_classes import FsInfoClass as C, fs_query_unsupported_status
from smbcad.proto.status import NtStatus

_VOLUME = struct.Struct("<qIIBx")           # 2.5.9 up to VolumeLabel, 18 bytes
_SIZE = struct.Struct("<qqII")              # 2.5.8, 24 bytes
_DEVICE = struct.Struct("<II")              # 2.5.10
_ATTRIBUTE = struct.Struct("<IiI")          # 2.5.1 up to FileSystemName, 12 bytes
_FULL_SIZE = struct.Struct("<qqqII")        # 2.5.4, 32 bytes
_OBJECT_ID = struct.Struct("<16s48s")       # 2.5.6, 64 bytes
_SECTOR_SIZE = struct.Struct("<IIIIIII")    # 2.5.7, 28 bytes
_CONTROL = struct.Struct("<qqqqqI4x")       # 2.5.2, 48 bytes


class FsAttributes:
    """FileSystemAttributes ([MS-FSCC] 2.5.1)."""

    CASE_SENSITIVE_SEARCH = 0x00000001
    CASE_PRESERVED_NAMES = 0x00000002
    UNICODE_ON_DISK = 0x00000004
    PERSISTENT_ACLS = 0x00000008
    FILE_COMPRESSION = 0x00000010
    VOLUME_QUOTAS = 0x00000020
    SUPPORTS_SPARSE_FILES = 0x00000040
    SUPPORTS_REPARSE_POINTS = 0x00000080
    SUPPORTS_REMOTE_STORAGE = 0x00000100
    RETURNS_CLEANUP_RESULT_INFO = 0x00000200
    SUPPORTS_POSIX_UNLINK_RENAME = 0x00000400
    VOLUME_IS_COMPRESSED = 0x00008000
    SUPPORTS_OBJECT_IDS = 0x00010000
    SUPPORTS_ENCRYPTION = 0x00020000
    NAMED_STREAMS = 0x00040000
    READ_ONLY_VOLUME = 0x00080000
    SEQUENTIAL_WRITE_ONCE = 0x00100000
    SUPPORTS_TRANSACTIONS = 0x00200000
    SUPPORTS_HARD_LINKS = 0x00400000
    SUPPORTS_EXTENDED_ATTRIBUTES = 0x00800000
    SUPPORTS_OPEN_BY_FILE_ID = 0x01000000
    SUPPORTS_USN_JOURNAL = 0x02000000
    SUPPORT_INTEGRITY_STREAMS = 0x04000000
    SUPPORTS_BLOCK_REFCOUNTING = 0x08000000
    SUPPORTS_SPARSE_VDL = 0x10000000


# What we can honestly claim by default: names are case preserving and looked up
# case-insensitively over a case-sensitive store (as NTFS and Samba report the
# pair), Unicode names, and ACLs persisted through the POSIX mapping.
DEFAULT_FS_ATTRIBUTES = (FsAttributes.CASE_SENSITIVE_SEARCH | FsAttributes.CASE_PRESERVED_NAMES
                         | FsAttributes.UNICODE_ON_DISK | FsAttributes.PERSISTENT_ACLS
                         | FsAttributes.SUPPORTS_SPARSE_FILES)

# [MS-SMB2] 3.3.5.20.2: bits a server SHOULD clear before sending.
_CLEARED_ATTRIBUTES = (FsAttributes.SUPPORTS_USN_JOURNAL | FsAttributes.SUPPORTS_OPEN_BY_FILE_ID
                       | FsAttributes.SUPPORTS_TRANSACTIONS
                       | FsAttributes.RETURNS_CLEANUP_RESULT_INFO
                       | FsAttributes.SUPPORTS_POSIX_UNLINK_RENAME)

FILE_DEVICE_DISK = 0x00000007
FILE_DEVICE_IS_MOUNTED = 0x00000020
SSINFO_FLAGS_ALIGNED_DEVICE = 0x00000001
SSINFO_FLAGS_PARTITION_ALIGNED_ON_DEVICE = 0x00000002
SSINFO_FLAGS_TRIM_ENABLED = 0x00000008
_PAGE_SIZE = 4096
_MAX_LABEL_CHARS = 32


@dataclass(frozen=True, slots=True)
class FsInfo:
    """What the server knows about the volume behind a share.

    Allocation units are clusters: ``sectors_per_unit * bytes_per_sector`` bytes.
    ``available_units`` is what the caller may use (quota/reserve applied),
    ``actual_available_units`` the volume's free clusters (defaults to the same).
    ``object_id`` (16 bytes) enables FileFsObjectIdInformation.
    """

    total_allocation_units: int
    available_units: int
    sectors_per_unit: int
    bytes_per_sector: int
    volume_serial: int = 0
    volume_label: str = ""
    volume_creation_time: int = 0
    fs_name: str = "NTFS"
    max_component_length: int = 255
    fs_attributes: int = DEFAULT_FS_ATTRIBUTES
    object_id: bytes | None = None
    object_extended_info: bytes = bytes(48)
    actual_available_units: int | None = None
    device_characteristics: int = FILE_DEVICE_IS_MOUNTED
    physical_bytes_per_sector: int | None = None
    trim_enabled: bool = False          # FSCTL_FILE_LEVEL_TRIM punches holes


def encode_fs_volume(fs: FsInfo) -> bytes:
    """FILE_FS_VOLUME_INFORMATION ([MS-FSCC] 2.5.9); labels longer than 32 chars are cut.

    SupportsObjects is TRUE only when the volume has an object ID to report.
    """
    label = utf16(fs.volume_label[:_MAX_LABEL_CHARS])
    return _VOLUME.pack(fs.volume_creation_time, fs.volume_serial & 0xFFFFFFFF,
                        len(label), int(fs.object_id is not None)) + label


def encode_fs_size(fs: FsInfo) -> bytes:
    """FILE_FS_SIZE_INFORMATION ([MS-FSCC] 2.5.8)."""
    return _SIZE.pack(fs.total_allocation_units, fs.available_units,
                      fs.sectors_per_unit, fs.bytes_per_sector)


def encode_fs_device(fs: FsInfo) -> bytes:
    """FILE_FS_DEVICE_INFORMATION ([MS-FSCC] 2.5.10): always a disk."""
    return _DEVICE.pack(FILE_DEVICE_DISK, fs.device_characteristics)


def encode_fs_attribute(fs: FsInfo) -> bytes:
    """FILE_FS_ATTRIBUTE_INFORMATION ([MS-FSCC] 2.5.1), minus the bits SMB2 hides."""
    name = utf16(fs.fs_name)
    return _ATTRIBUTE.pack(fs.fs_attributes & ~_CLEARED_ATTRIBUTES,
                           fs.max_component_length, len(name)) + name


def encode_fs_full_size(fs: FsInfo) -> bytes:
    """FILE_FS_FULL_SIZE_INFORMATION ([MS-FSCC] 2.5.4)."""
    actual = fs.available_units if fs.actual_available_units is None \
        else fs.actual_available_units
    return _FULL_SIZE.pack(fs.total_allocation_units, fs.available_units, actual,
                           fs.sectors_per_unit, fs.bytes_per_sector)


def encode_fs_control(fs: FsInfo) -> bytes:
    """FILE_FS_CONTROL_INFORMATION ([MS-FSCC] 2.5.2): quotas are not tracked, so
    every threshold is zero and FileSystemControlFlags says none are enforced."""
    return _CONTROL.pack(0, 0, 0, 0, 0, 0)


def encode_fs_object_id(fs: FsInfo) -> bytes:
    """FILE_FS_OBJECTID_INFORMATION ([MS-FSCC] 2.5.6)."""
    if fs.object_id is None:
        raise SmbError(NtStatus.INVALID_PARAMETER, "volume has no object ID")
    return _OBJECT_ID.pack(fs.object_id, fs.object_extended_info)


def encode_fs_sector_size(fs: FsInfo) -> bytes:
    """FILE_FS_SECTOR_SIZE_INFORMATION ([MS-FSCC] 2.5.7) per [MS-FSA] 2.1.5.13.10."""
    logical = fs.bytes_per_sector
    physical = fs.physical_bytes_per_sector or logical
    if physical < logical or physical % logical or physical & (physical - 1):
        physical = logical
    return _SECTOR_SIZE.pack(logical, physical, physical, min(physical, _PAGE_SIZE),
                             SSINFO_FLAGS_ALIGNED_DEVICE
                             | SSINFO_FLAGS_PARTITION_ALIGNED_ON_DEVICE
                             | (SSINFO_FLAGS_TRIM_ENABLED if fs.trim_enabled else 0), 0, 0)


@dataclass(frozen=True, slots=True)
class FsInfoClassSpec:
    """One supported FS class: encoder and the smallest OutputBufferLength ([MS-FSA] 2.1.5.13)."""

    name: str
    encode: Callable[[FsInfo], bytes]
    fixed_size: int


FS_INFO_CLASSES: dict[int, FsInfoClassSpec] = {
    C.FILE_FS_VOLUME: FsInfoClassSpec("FileFsVolumeInformation", encode_fs_volume, 24),
    C.FILE_FS_SIZE: FsInfoClassSpec("FileFsSizeInformation", encode_fs_size, 24),
    C.FILE_FS_DEVICE: FsInfoClassSpec("FileFsDeviceInformation", encode_fs_device, 8),
    # 16, not 12: Windows wants room for part of the name (smb2.getinfo.qfs_buffercheck).
    C.FILE_FS_ATTRIBUTE: FsInfoClassSpec("FileFsAttributeInformation",
                                         encode_fs_attribute, 16),
    C.FILE_FS_CONTROL: FsInfoClassSpec("FileFsControlInformation", encode_fs_control, 48),
    C.FILE_FS_FULL_SIZE: FsInfoClassSpec("FileFsFullSizeInformation",
                                         encode_fs_full_size, 32),
    C.FILE_FS_OBJECT_ID: FsInfoClassSpec("FileFsObjectIdInformation",
                                         encode_fs_object_id, 64),
    C.FILE_FS_SECTOR_SIZE: FsInfoClassSpec("FileFsSectorSizeInformation",
                                           encode_fs_sector_size, 28),
}
FS_INFO_ENCODERS: dict[int, Callable[[FsInfo], bytes]] = {
    level: spec.encode for level, spec in FS_INFO_CLASSES.items()}


def _lookup(info_class: int) -> FsInfoClassSpec:
    spec = FS_INFO_CLASSES.get(info_class)
    if spec is None:
        raise SmbError(fs_query_unsupported_status(info_class), f"fs info class {info_class}")
    return spec


def encode_fs_info(info_class: int, fs: FsInfo) -> bytes:
    """The complete structure for ``info_class``, or SmbError with the status to return."""
    return _lookup(info_class).encode(fs)


def query_fs_info(info_class: int, fs: FsInfo, output_buffer_length: int) -> tuple[bytes, int]:
    """Encode and fit into ``output_buffer_length`` ([MS-SMB2] 3.3.5.20.2).

    Too small for the fixed part: SmbError(INFO_LENGTH_MISMATCH).  A label or file
    system name that does not fit is cut, its length field left whole, with
    STATUS_BUFFER_OVERFLOW ([MS-FSA] 2.1.5.13.1, 2.1.5.13.5).
    """
    spec = _lookup(info_class)
    if output_buffer_length < spec.fixed_size:
        raise SmbError(NtStatus.INFO_LENGTH_MISMATCH, f"{spec.name}: output buffer too small")
    data = spec.encode(fs)
    if len(data) <= output_buffer_length:
        return data, NtStatus.SUCCESS
    return data[:output_buffer_length], NtStatus.BUFFER_OVERFLOW
