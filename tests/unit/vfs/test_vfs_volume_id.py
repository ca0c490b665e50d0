"""Volume identity of a share root (smbcad/vfs/volume_id.py): the superblock
parsers on hand-built bytes, the folds, the choice of source, mountinfo, and
how ``ShareFs`` carries the id into every ``FileInfo``.  The same file system
seen through two block devices is in test_vfs_volume_id_mounts.py (root)."""

import logging
import os

import pytest

from smbcad.vfs import ShareFs, volume_id
from smbcad.vfs.volume_id import (
    VolumeId,
    choose,
    ext_uuid,
    fold_uuid,
    mount_of,
    parse_volume_id,
    xfs_uuid,
)

# A UUID from `mkfs.ext4` and the f_fsid Linux 6.18 reported for that ext4
# (statvfs on the mount, measured here): the fold must reproduce the kernel's.
UUID = bytes.fromhex("f94c5bf4cc2d40a3be2557597f516ea1")
EXT4_FSID = 0x022E7CB3AD0C6947


def ext_head(uuid: bytes = UUID, magic: bytes = b"\x53\xef") -> bytes:
    """The first 4 KiB of an ext4 device: s_magic at 0x438, s_uuid at 0x468."""
    head = bytearray(4096)
    head[0x438:0x43A] = magic
    head[0x468:0x478] = uuid
    return bytes(head)


def xfs_head(uuid: bytes = UUID, magic: bytes = b"XFSB") -> bytes:
    """The first 4 KiB of an XFS device: sb_magicnum at 0, sb_uuid at 32."""
    head = bytearray(4096)
    head[0:4] = magic
    head[4:8] = (4096).to_bytes(4, "big")       # sb_blocksize: not read, but real
    head[32:48] = uuid
    return bytes(head)


# --- parsers -------------------------------------------------------------------------

def test_ext_superblock_uuid():
    assert ext_uuid(ext_head()) == UUID


def test_ext_superblock_needs_its_magic():
    assert ext_uuid(ext_head(magic=b"\xef\x53")) is None       # byte-swapped
    assert ext_uuid(xfs_head()) is None


def test_ext_superblock_cut_short():
    assert ext_uuid(ext_head()[:0x470]) is None
    assert ext_uuid(b"") is None


def test_xfs_superblock_uuid():
    assert xfs_uuid(xfs_head()) == UUID


def test_xfs_superblock_needs_its_magic():
    assert xfs_uuid(xfs_head(magic=b"BSFX")) is None
    assert xfs_uuid(ext_head()) is None
    assert xfs_uuid(xfs_head()[:40]) is None


# --- folds -----------------------------------------------------------------------------

def test_fold_is_ext4s_f_fsid():
    # le64(f94c5bf4cc2d40a3) ^ le64(be2557597f516ea1)
    assert fold_uuid(UUID) == 0xA3402DCCF45B4CF9 ^ 0xA16E517F595725BE == EXT4_FSID


def test_fold_of_the_nil_uuid_or_a_wrong_length_is_nothing():
    assert fold_uuid(bytes(16)) is None
    assert fold_uuid(UUID[:15]) is None


def test_serial_is_the_low_word_and_identity_maps_only_the_roots_device():
    vol = VolumeId(EXT4_FSID, "ext4-uuid", root_dev=0x700)
    assert vol.serial == 0xAD0C6947
    assert vol.device_of(0x700) == EXT4_FSID
    assert vol.device_of(0x2A) == 0x2A              # a file system mounted inside
    st = os.stat_result((0o100644, 12345, 0x700, 1, 0, 0, 0, 0, 0, 0))
    assert vol.key_of(st) == (EXT4_FSID, 12345)


# --- configured ids ------------------------------------------------------------------------

def test_configured_id_of_sixteen_digits_is_the_id():
    assert parse_volume_id("0123456789abcdef") == 0x0123456789ABCDEF
    assert parse_volume_id("0x00000000000000FF") == 0xFF
    assert parse_volume_id("7") == 7


def test_configured_uuid_folds_like_the_superblock():
    assert parse_volume_id("f94c5bf4-cc2d-40a3-be25-57597f516ea1") == EXT4_FSID
    assert parse_volume_id("F94C5BF4CC2D40A3BE2557597F516EA1") == EXT4_FSID


@pytest.mark.parametrize("text", ["", "  ", "xyz", "0", "00000000-0000-0000-0000-000000000000",
                                  "0123456789abcdef0", "f94c5bf4cc2d40a3be2557597f516ea1ff"])
def test_bad_configured_ids(text):
    with pytest.raises(ValueError):
        parse_volume_id(text)


# --- choosing the source ---------------------------------------------------------------------

def test_ext4_prefers_the_superblock_uuid():
    assert choose("ext4", ext_head(), fsid=0x1234) == (EXT4_FSID, "ext4-uuid")
    assert choose("ext2", ext_head(), fsid=0) == (EXT4_FSID, "ext4-uuid")


def test_ext4_without_a_readable_device_uses_f_fsid():
    assert choose("ext4", None, fsid=EXT4_FSID) == (EXT4_FSID, "fsid")
    # Not an ext superblock after all (a stale device): f_fsid, not garbage.
    assert choose("ext4", xfs_head(), fsid=EXT4_FSID) == (EXT4_FSID, "fsid")


def test_ext4_with_a_nil_uuid_and_no_fsid_has_no_volume_id():
    assert choose("ext4", ext_head(uuid=bytes(16)), fsid=0) is None


def test_xfs_uses_the_superblock_uuid_never_f_fsid():
    assert choose("xfs", xfs_head(), fsid=0x10300000007) == (EXT4_FSID, "xfs-uuid")
    assert choose("xfs", None, fsid=0x10300000007) is None
    assert choose("xfs", ext_head(), fsid=0x10300000007) is None


def test_btrfs_uses_f_fsid():
    assert choose("btrfs", None, fsid=0xDEADBEEF00C0FFEE) == (0xDEADBEEF00C0FFEE, "fsid")


@pytest.mark.parametrize("fs_type", ["tmpfs", "overlay", "nfs4", ""])
def test_other_file_systems_have_no_volume_id(fs_type):
    assert choose(fs_type, ext_head(), fsid=0x1234) is None


# --- mountinfo -------------------------------------------------------------------------

MOUNTINFO = (
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "45 27 7:0 / /srv/aggr\\040one rw,relatime shared:7 master:1 - ext4 /dev/loop0 rw\n"
    "46 27 7:0 /sub /srv/bind rw,relatime - ext4 /dev/loop0 rw\n"
    "47 27 8:16 / /srv/x rw - xfs /dev/disk\\040by\\134name rw,attr2\n"
    "48 27 0:55 / /srv/t rw - tmpfs tmpfs rw,size=1024k\n"
)


def test_mountinfo_finds_type_and_source_by_device():
    assert mount_of(MOUNTINFO, 7, 0) == ("ext4", "/dev/loop0")
    assert mount_of(MOUNTINFO, 0, 55) == ("tmpfs", "tmpfs")


def test_mountinfo_unescapes_the_source():
    assert mount_of(MOUNTINFO, 8, 16) == ("xfs", "/dev/disk by\\name")


def test_mountinfo_without_the_device():
    assert mount_of(MOUNTINFO, 8, 17) is None
    assert mount_of("garbage\n\n", 7, 0) is None


# --- on this machine ---------------------------------------------------------------------

def test_a_file_system_without_a_uuid_falls_back_to_st_dev(caplog):
    fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY)
    try:
        with caplog.at_level(logging.WARNING, logger="smbcad.vfs.volume_id"):
            found = volume_id.identify(fd, label="/proc")
    finally:
        os.close(fd)
    st_dev = os.stat("/proc").st_dev
    assert found == VolumeId(st_dev, "st_dev", st_dev, "proc")
    assert "st_dev" in caplog.text and "/proc" in caplog.text


def test_the_configured_id_wins(tmp_path, caplog):
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        with caplog.at_level(logging.INFO, logger="smbcad.vfs.volume_id"):
            found = volume_id.identify(fd, "f94c5bf4-cc2d-40a3-be25-57597f516ea1", label="s")
    finally:
        os.close(fd)
    assert found == VolumeId(EXT4_FSID, "config", os.stat(tmp_path).st_dev)
    assert "0x022e7cb3ad0c6947 from config" in caplog.text


def test_share_files_carry_the_volume_id(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_bytes(b"x")
    with ShareFs(str(tmp_path), volume_id="0123456789abcdef") as fs:
        assert fs.volume.source == "config"
        info = fs.stat_path(("dir", "a.txt"))
        assert (info.device_id, info.file_id) == (0x0123456789ABCDEF,
                                                   os.stat(tmp_path / "dir" / "a.txt").st_ino)
        opened = fs.open(("dir", "a.txt"))
        try:
            assert fs.stat(opened).device_id == 0x0123456789ABCDEF
        finally:
            opened.close()
        directory = fs.open(("dir",), directory=True)
        try:
            listed = {entry.name: entry.info for entry in fs.list_directory(directory)}
            assert {info.device_id for info in listed.values()} == {0x0123456789ABCDEF}
            assert fs.entry_info(directory, "a.txt").device_id == 0x0123456789ABCDEF
        finally:
            directory.close()
        assert fs.fs_id().volume_serial == 0x89ABCDEF


def test_a_stream_is_keyed_by_the_volume_id(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"x")
    with ShareFs(str(tmp_path), volume_id="0123456789abcdef") as fs:
        if not fs.user_xattrs():
            pytest.skip("no user xattrs on tmp_path")
        base = fs.lookup(("a.txt",))
        handle = fs.open_stream(base, "s")
        try:
            assert handle.file_key == (0x0123456789ABCDEF, base.info.file_id)
        finally:
            handle.close()


def test_a_malformed_configured_id_refuses_the_share_and_leaks_nothing(tmp_path):
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ValueError):
        ShareFs(str(tmp_path), volume_id="not hex")
    assert len(os.listdir("/proc/self/fd")) == before
