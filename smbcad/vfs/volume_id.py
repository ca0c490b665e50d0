"""The volume identity of a share root: the same on every node and block device.

File identity is (volume id, inode): the share-mode key, the handle store's
check that a reopened file is the one recorded, QFid ([MS-SMB2] 2.2.14.2.9
VolumeId), FILE_ID_INFORMATION's VolumeSerialNumber ([MS-FSCC] 2.4.26) and
FileFsVolumeInformation's ([MS-FSCC] 2.5.9).  ``st_dev`` cannot be the
volume half: a shared LUN is ``sdX`` through one initiator and ``sdY``
through the other, so after a takeover every stored open would look like
another file (shared/reference/cluster.md key finding 6, section 7(d)).

Where the id comes from, first match wins (``VolumeId.source`` says which,
and a log line at share open, so an admin can see what a share relies on):

- ``config``: an explicit hex string (``parse_volume_id``), e.g. the LUN's
  VPD page 0x83 identifier or the file system UUID as blkid prints it.
- ``ext4-uuid``: ext2/3/4 superblock ``s_uuid`` (device offset 0x468, magic
  0xEF53 at 0x438).
- ``xfs-uuid``: XFS superblock ``sb_uuid`` (offset 32, magic "XFSB" at 0).
  XFS's ``f_fsid`` is the device number (``xfs_fs_statfs``), so never used.
- ``fsid``: statvfs ``f_fsid``, only where the kernel derives it from the
  file system UUID: ext2/3/4 (``ext4_statfs``, when the device cannot be
  read) and btrfs (``btrfs_statfs``: fsid folded with the subvolume id).
- ``st_dev``: anything else (tmpfs, overlay, NFS, an unreadable device),
  with a warning: that identity does not survive a move.

The backing device is found without shelling out: the ``major:minor`` of the
root's ``st_dev`` in ``/proc/self/mountinfo`` gives the file system type and
mount source; the device node is ``/dev/block/M:m``, else ``/dev/<DEVNAME>``
from ``/sys/dev/block/M:m/uevent``, else the mount source, and only a block
device whose ``st_rdev`` is that ``st_dev`` is read.

Folds (deterministic, documented so another implementation can match):

- 16-byte UUID → 64 bits: ``le64(uuid[0:8]) XOR le64(uuid[8:16])``, exactly
  what ``ext4_statfs`` puts in ``f_fsid`` (glibc's statvfs joins its two
  halves low word first), so on ext4 the superblock and ``f_fsid`` routes,
  and a configured UUID, give the same id.
- 64-bit volume id → 32-bit serial: its low 32 bits, as NTFS reports the low
  half of its 64-bit serial in FileFsVolumeInformation while
  FILE_ID_INFORMATION carries all 64 bits; the low word of the UUID fold is
  itself a fold of the UUID (bytes 0-3 XOR bytes 8-11).
"""

import logging
import os
import re
import stat
from dataclasses import dataclass

log = logging.getLogger("smbcad.vfs.volume_id")

MOUNTINFO = "/proc/self/mountinfo"
SOURCES = ("config", "ext4-uuid", "xfs-uuid", "fsid", "st_dev")

_EXT_TYPES = frozenset({"ext2", "ext3", "ext4"})
_FSID_TYPES = _EXT_TYPES | {"btrfs"}
_HEAD_BYTES = 4096                  # covers both superblocks read here
_EXT_MAGIC_AT, _EXT_MAGIC = 0x438, b"\x53\xef"      # s_magic, le16 0xEF53
_EXT_UUID_AT = 0x468                                # s_uuid
_XFS_MAGIC, _XFS_UUID_AT = b"XFSB", 32              # sb_magicnum, sb_uuid
_UUID_BYTES = 16
_U64 = 0xFFFF_FFFF_FFFF_FFFF
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class VolumeId:
    """The identity of the volume under one share root.

    ``root_dev`` is the root's ``st_dev`` on this node: files with that
    ``st_dev`` belong to the volume and get ``volume_id``; a file system
    mounted inside the share keeps its own ``st_dev`` (``device_of``).
    """

    volume_id: int      # u64
    source: str         # one of SOURCES
    root_dev: int
    fs_type: str = ""

    @property
    def serial(self) -> int:
        """The 32-bit volume serial number ([MS-FSCC] 2.5.9): the low word."""
        return self.volume_id & 0xFFFF_FFFF

    def device_of(self, st_dev: int) -> int:
        """The volume half of the identity of a file with this ``st_dev``."""
        return self.volume_id if st_dev == self.root_dev else st_dev

    def key_of(self, st: os.stat_result) -> tuple[int, int]:
        """(volume id, inode) of a stat result: a file's identity."""
        return self.device_of(st.st_dev), st.st_ino

    def same_volume(self, recorded: int, device_id: int) -> bool:
        """Whether a stored volume half (a handle store record's ``file_dev``)
        names the volume of a file whose ``FileInfo.device_id`` is ``device_id``.
        Records written before volume ids held ``st_dev``: on the node and
        device that wrote them they still match, so an upgrade keeps them."""
        return recorded == device_id or (recorded == self.root_dev
                                          and device_id == self.volume_id)


# -- pure parts: parsers, folds, the decision --------------------------------------------

def fold_uuid(uuid: bytes) -> int | None:
    """64-bit fold of a 16-byte UUID (module docstring); None for the nil UUID,
    which names no file system in particular."""
    if len(uuid) != _UUID_BYTES or not any(uuid):
        return None
    return int.from_bytes(uuid[:8], "little") ^ int.from_bytes(uuid[8:], "little")


def parse_volume_id(text: str) -> int:
    """A configured volume id: 1-16 hex digits are the id itself; 32 (a UUID,
    dashes allowed, as blkid prints it) are folded like a superblock UUID.
    ValueError for anything else, or zero."""
    digits = text.strip().lower().removeprefix("0x").replace("-", "")
    if not digits or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"volume_id {text!r} is not a hex string")
    if len(digits) == 2 * _UUID_BYTES:
        value = fold_uuid(bytes.fromhex(digits))
    elif len(digits) <= 16:
        value = int(digits, 16)
    else:
        raise ValueError(f"volume_id {text!r}: want up to 16 hex digits or a 32-digit UUID")
    if not value:
        raise ValueError(f"volume_id {text!r} is zero")
    return value


def ext_uuid(head: bytes) -> bytes | None:
    """``s_uuid`` of an ext2/3/4 superblock, from the device's first bytes."""
    if head[_EXT_MAGIC_AT:_EXT_MAGIC_AT + 2] != _EXT_MAGIC:
        return None
    uuid = head[_EXT_UUID_AT:_EXT_UUID_AT + _UUID_BYTES]
    return uuid if len(uuid) == _UUID_BYTES else None


def xfs_uuid(head: bytes) -> bytes | None:
    """``sb_uuid`` of an XFS superblock (sector 0 of the device)."""
    if head[:4] != _XFS_MAGIC:
        return None
    uuid = head[_XFS_UUID_AT:_XFS_UUID_AT + _UUID_BYTES]
    return uuid if len(uuid) == _UUID_BYTES else None


def mount_of(mountinfo: str, major: int, minor: int) -> tuple[str, str] | None:
    """(file system type, mount source) of the device ``major:minor`` from
    ``/proc/<pid>/mountinfo`` text (proc(5)); None if nothing is mounted from it.
    Bind mounts repeat a device with the same superblock: the first line tells."""
    wanted = f"{major}:{minor}"
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 7 or fields[2] != wanted or "-" not in fields[6:]:
            continue
        tail = fields[fields.index("-", 6) + 1:]
        if len(tail) >= 2:
            return tail[0], _unescape(tail[1])
    return None


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as ``\\ooo``."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def choose(fs_type: str, head: bytes | None, fsid: int) -> tuple[int, str] | None:
    """The volume id and its source from what the file system shows; None
    when only ``st_dev`` is left.  ``head`` is the device's first bytes (None
    if unreadable), ``fsid`` statvfs ``f_fsid``."""
    if head is not None and fs_type in _EXT_TYPES:
        value = fold_uuid(ext_uuid(head) or b"")
        if value:
            return value, "ext4-uuid"
    if head is not None and fs_type == "xfs":
        value = fold_uuid(xfs_uuid(head) or b"")
        if value:
            return value, "xfs-uuid"
    if fs_type in _FSID_TYPES and fsid & _U64:
        return fsid & _U64, "fsid"
    return None


# -- I/O ---------------------------------------------------------------------------------

def identify(root_fd: int, configured: str | None = None, label: str = "") -> VolumeId:
    """The ``VolumeId`` of the file system holding ``root_fd`` (an O_PATH fd
    will do); ``configured`` (a share's ``volume_id``) wins.  ``label`` names
    the share root in the log line."""
    st = os.fstat(root_fd)
    if configured is not None:
        found = VolumeId(parse_volume_id(configured), "config", st.st_dev)
    else:
        found = _probe(root_fd, st.st_dev)
    if found.source == "st_dev":
        log.warning("share root %s (%s): no file system UUID readable, file identity uses "
                    "st_dev %#x and will not survive a move to another device or node; "
                    "set volume_id for this share", label, found.fs_type or "?", st.st_dev)
    else:
        log.info("share root %s: volume id %#018x from %s (%s)", label, found.volume_id,
                 found.source, found.fs_type or "configured")
    return found


def _probe(root_fd: int, st_dev: int) -> VolumeId:
    major, minor = os.major(st_dev), os.minor(st_dev)
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            mount = mount_of(f.read(), major, minor)
    except OSError:
        mount = None
    fs_type, source = mount or ("", "")
    head = _read_head(st_dev, source) if fs_type in _EXT_TYPES or fs_type == "xfs" else None
    try:
        fsid = os.statvfs(root_fd).f_fsid
    except OSError:
        fsid = 0
    chosen = choose(fs_type, head, fsid)
    if chosen is None:
        return VolumeId(st_dev, "st_dev", st_dev, fs_type)
    return VolumeId(chosen[0], chosen[1], st_dev, fs_type)


def _device_paths(st_dev: int, source: str) -> list[str]:
    """Candidate device nodes, best first (each is checked by ``_read_head``)."""
    major, minor = os.major(st_dev), os.minor(st_dev)
    paths = [f"/dev/block/{major}:{minor}"]
    devname = _sysfs_devname(major, minor)
    if devname:
        paths.append("/dev/" + devname)
    if source.startswith("/"):
        paths.append(source)
    return paths


def _sysfs_devname(major: int, minor: int) -> str:
    """DEVNAME of a block device from sysfs ("" without sysfs or the entry)."""
    try:
        with open(f"/sys/dev/block/{major}:{minor}/uevent", encoding="utf-8") as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return line.split("=", 1)[1].strip()
    except OSError:
        return ""
    return ""


def _read_head(st_dev: int, source: str) -> bytes | None:
    """The first bytes of the block device that is ``st_dev``, or None.

    Each candidate node is checked to be that very device before and after
    the open, so a stale mount source or a reused name is never read."""
    for path in _device_paths(st_dev, source):
        try:
            st = os.stat(path)
            if not stat.S_ISBLK(st.st_mode) or st.st_rdev != st_dev:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError:
            continue
        try:
            opened = os.fstat(fd)
            if stat.S_ISBLK(opened.st_mode) and opened.st_rdev == st_dev:
                return os.pread(fd, _HEAD_BYTES, 0)
        except OSError:
            continue
        finally:
            os.close(fd)
    return None
