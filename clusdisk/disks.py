"""Cluster disks by identity, and the host side of "offline until owned".

**Identity.** Windows clusters name a shared disk by its signature; clusdisk
names it by a logical-unit designator of its Device Identification VPD page
(SPC-3 r23 7.6.3): ``naa.<hex>``, ``eui.<hex>``, ``t10.<ascii>`` (see
``clusdisk.scsi.pages.Designator.name``).  ``scan`` walks sysfs
(``class/scsi_generic/*/device`` -> ``H:C:T:L``, its ``block/*``, and the
kernel's cached ``vpd_pg83``/``vpd_pg80``; an SG_IO INQUIRY callback fills in
when the kernel has no cached page) and ``resolve`` maps each configured
disk to exactly one sg/block device pair.  Only designators whose
association is the logical unit count: target-port designators differ from
path to path.  A designator no LUN has (missing), one that two LUNs have
(duplicated: two paths to one disk on this node, as in the QEMU lab where
both initiators live in one guest; restrict ``scsi_hosts``), or two config
entries naming one LUN (ambiguous) is a ``DiskError`` naming the disk.

**Offline until owned.** ``BLKROSET`` (through ``clusdisk.scsi.sgio``, the
only module that issues ioctls) keeps a block device read-only until this
node holds its reservation.  Mounting uses the mount(2) / umount2(2) system
calls through libc (``Mounter``), not the mount binary: no output parsing,
exact errno, no helper programs; the price is that the filesystem type is
always explicit (config requires it) and generic options (``noatime`` ...)
are mapped to MS_* flags here, the rest passed as filesystem data.  fsck has
no system call: ``check_filesystem`` runs ``e2fsck -p`` for ext2/3/4; XFS
has no boot-time fsck (fsck.xfs is a no-op), its log is replayed by mount.
"""

import ctypes
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from clusdisk.errors import ClusdiskError
from clusdisk.scsi import pages
from clusdisk.scsi.errors import ScsiError
from clusdisk.scsi.sgio import set_block_read_only

KNOWN_PREFIXES = ("naa.", "eui.", "t10.", "name.", "uuid.")
SUPPORTED_FILESYSTEMS = ("ext2", "ext3", "ext4", "xfs")


class DiskError(ClusdiskError):
    """A configured disk cannot be used; ``status`` is missing / duplicated /
    ambiguous / mount / fsck."""

    def __init__(self, disk: str, status: str, message: str) -> None:
        super().__init__(f"disk {disk}: {message}", status)
        self.disk = disk


@dataclass(frozen=True)
class LunPath:
    """One LUN as this node sees it through one SCSI host."""

    sg: str
    hctl: str
    block: str | None = None
    vendor: str = ""
    model: str = ""
    serial: str | None = None
    size_bytes: int | None = None
    designators: tuple[str, ...] = ()
    problem: str = ""

    @property
    def host(self) -> int | None:
        head = self.hctl.split(":")[0]
        return int(head) if head.isdigit() else None


def normalize_designator(text: str) -> str:
    """Canonical form for comparison: hex designators lower-cased, T10 ones
    with space runs collapsed (what ``Designator.name`` produces)."""
    text = text.strip()
    lowered = text.lower()
    if lowered.startswith(("naa.", "eui.", "uuid.")):
        return lowered
    if lowered.startswith("t10."):
        return "t10." + " ".join(text[4:].split())
    return text


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _describe_lun(sysfs: Path, entry: Path, dev_root: str, read_vpd83) -> LunPath | None:
    device = entry / "device"
    try:
        hctl = os.path.basename(os.path.realpath(device))
    except OSError:
        return None
    if _read_text(device / "type") not in ("0", None):
        return None                                        # not a direct-access block device
    sg = os.path.join(dev_root, entry.name)
    problem = ""
    vpd83 = _read_bytes(device / "vpd_pg83")
    if vpd83 is None and read_vpd83 is not None:
        try:
            vpd83 = read_vpd83(sg)
        except ScsiError as exc:
            problem = f"INQUIRY VPD 0x83: {exc}"
    designators: tuple[str, ...] = ()
    if vpd83:
        try:
            designators = pages.logical_unit_names(pages.parse_device_identification(vpd83))
        except ScsiError as exc:
            problem = f"VPD 0x83: {exc}"
    serial = None
    vpd80 = _read_bytes(device / "vpd_pg80")
    if vpd80:
        try:
            serial = pages.parse_unit_serial_number(vpd80)
        except ScsiError:
            serial = None
    block = size = None
    blocks = sorted(p.name for p in (device / "block").glob("*")) if (device / "block").is_dir() else []
    if blocks:
        block = os.path.join(dev_root, blocks[0])
        sectors = _read_text(sysfs / "block" / blocks[0] / "size")
        size = int(sectors) * 512 if sectors and sectors.isdigit() else None
    return LunPath(sg=sg, hctl=hctl, block=block, vendor=_read_text(device / "vendor") or "",
                   model=_read_text(device / "model") or "", serial=serial, size_bytes=size,
                   designators=designators, problem=problem)


def scan(sysfs_root: str = "/sys", dev_root: str = "/dev", read_vpd83=None) -> tuple[LunPath, ...]:
    """Every SCSI disk with an sg node, sorted by H:C:T:L.  ``read_vpd83(sg)``
    (optional) returns VPD page 0x83 when sysfs has no ``vpd_pg83``."""
    sysfs = Path(sysfs_root)
    out = []
    for entry in sorted((sysfs / "class" / "scsi_generic").glob("sg*")):
        lun = _describe_lun(sysfs, entry, dev_root, read_vpd83)
        if lun is not None:
            out.append(lun)
    return tuple(sorted(out, key=_hctl_key))


def _hctl_key(lun: LunPath) -> tuple:
    parts = lun.hctl.split(":")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (1 << 30, lun.hctl)


def resolve(disks: dict[str, str], luns, scsi_hosts=None) -> dict[str, LunPath]:
    """Map ``{disk name: designator}`` to one LUN each (see module doc)."""
    candidates = [lun for lun in luns if scsi_hosts is None or lun.host in scsi_hosts]
    chosen: dict[str, LunPath] = {}
    by_sg: dict[str, str] = {}
    for name, designator in disks.items():
        wanted = normalize_designator(designator)
        if not wanted.lower().startswith(KNOWN_PREFIXES):
            raise DiskError(name, "ambiguous", f"designator {designator!r} has no type prefix "
                            f"(one of {', '.join(KNOWN_PREFIXES)})")
        matches = [lun for lun in candidates
                   if wanted in (normalize_designator(d) for d in lun.designators)]
        if not matches:
            raise DiskError(name, "missing", f"no LUN has designator {wanted} "
                            f"({len(candidates)} LUNs scanned)")
        if len(matches) > 1:
            paths = ", ".join(f"{lun.sg} ({lun.hctl})" for lun in matches)
            raise DiskError(name, "duplicated", f"designator {wanted} is claimed by "
                            f"{len(matches)} LUNs: {paths}; restrict scsi_hosts")
        lun = matches[0]
        if lun.sg in by_sg:
            raise DiskError(name, "ambiguous",
                            f"{lun.sg} ({lun.hctl}) is also configured as disk {by_sg[lun.sg]}")
        if lun.block is None:
            raise DiskError(name, "missing", f"{lun.sg} ({lun.hctl}) has no block device")
        by_sg[lun.sg] = name
        chosen[name] = lun
    return chosen


# -- offline until owned -------------------------------------------------------

def set_offline(block: str, **ioctl_kwargs) -> None:
    """Block device read-only: no local writer reaches a disk we do not own."""
    set_block_read_only(block, True, **ioctl_kwargs)


def set_writable(block: str, **ioctl_kwargs) -> None:
    set_block_read_only(block, False, **ioctl_kwargs)


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo (proc(5))."""

    major: int
    minor: int
    mount_point: str
    fstype: str
    source: str


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def parse_mountinfo(text: str) -> tuple[MountEntry, ...]:
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        tail = right.split()
        if not sep or len(fields) < 5 or len(tail) < 2 or ":" not in fields[2]:
            continue
        major, minor = fields[2].split(":", 1)
        if not (major.isdigit() and minor.isdigit()):
            continue
        out.append(MountEntry(int(major), int(minor), _unescape(fields[4]), tail[0],
                              _unescape(tail[1])))
    return tuple(out)


def mount_points(block: str, mountinfo: str, stat=os.stat) -> tuple[str, ...]:
    """Where the block device ``block`` is mounted, from mountinfo text."""
    rdev = stat(block).st_rdev
    return tuple(m.mount_point for m in parse_mountinfo(mountinfo)
                 if (m.major, m.minor) == (os.major(rdev), os.minor(rdev)))


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS = 1, 2, 4, 8, 16
MS_DIRSYNC, MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_LAZYTIME = 128, 1024, 2048, 1 << 21, 1 << 25
_MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                "sync": MS_SYNCHRONOUS, "dirsync": MS_DIRSYNC, "noatime": MS_NOATIME,
                "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "lazytime": MS_LAZYTIME}
_NOOP_OPTIONS = ("rw", "defaults", "async", "suid", "dev", "exec")


def split_mount_options(options: str) -> tuple[int, str]:
    """``"noatime,rw,discard"`` -> (MS_NOATIME, "discard")."""
    flags, data = 0, []
    for option in (o.strip() for o in options.split(",")):
        if not option or option in _NOOP_OPTIONS:
            continue
        if option in _MOUNT_FLAGS:
            flags |= _MOUNT_FLAGS[option]
        else:
            data.append(option)
    return flags, ",".join(data)


@dataclass
class Mounter:
    """mount(2)/umount2(2) via libc; ``libc`` and ``get_errno`` injectable."""

    libc: object = None
    get_errno: object = ctypes.get_errno
    _bound: object = field(default=None, repr=False)

    def _lib(self):
        if self._bound is None:
            self._bound = self.libc if self.libc is not None else ctypes.CDLL(None, use_errno=True)
        return self._bound

    def mount(self, disk: str, source: str, target: str, fstype: str, options: str = "") -> None:
        flags, data = split_mount_options(options)
        rc = self._lib().mount(source.encode(), target.encode(), fstype.encode(), flags,
                               data.encode() or None)
        if rc != 0:
            err = self.get_errno()
            raise DiskError(disk, "mount", f"mount {source} on {target} ({fstype}): "
                            f"{os.strerror(err)}")

    def unmount(self, disk: str, target: str) -> None:
        """No lazy detach: a filesystem still busy must not outlive the
        reservation, so EBUSY is an error the caller has to handle."""
        if self._lib().umount2(target.encode(), 0) != 0:
            err = self.get_errno()
            raise DiskError(disk, "mount", f"umount {target}: {os.strerror(err)}")


def fsck_command(block: str, fstype: str) -> list[str] | None:
    if fstype in ("ext2", "ext3", "ext4"):
        return ["e2fsck", "-p", block]
    if fstype == "xfs":
        return None                            # log replay at mount; xfs_repair is manual
    raise ValueError(f"unsupported filesystem type {fstype!r}")


def check_filesystem(disk: str, block: str, fstype: str, run=subprocess.run,
                     timeout_s: float = 600.0) -> None:
    """e2fsck -p exit codes (e2fsck(8)): 0 clean, 1 errors corrected, 2
    corrected and reboot advised (only meaningful for the root fs): fine;
    4 and above: uncorrected errors, refuse to mount."""
    command = fsck_command(block, fstype)
    if command is None:
        return
    try:
        result = run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DiskError(disk, "fsck", f"{' '.join(command)}: {exc}") from None
    if result.returncode >= 4:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise DiskError(disk, "fsck", f"{' '.join(command)} exited {result.returncode}: "
                        + " / ".join(tail))
