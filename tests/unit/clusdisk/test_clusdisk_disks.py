"""Disks by identity over a fake sysfs tree, and the offline helpers with
injected ioctl/libc/subprocess."""

import errno
import os
import subprocess
from types import SimpleNamespace

import pytest

from clusdisk import disks
from clusdisk.disks import DiskError, LunPath
from clusdisk.scsi.errors import ScsiTransportError
from clusdisk.scsi.sgio import BLKROSET

NAA_Q = bytes.fromhex("6001405abcdef0123456789abcdef012")
NAA_D = bytes.fromhex("6001405abcdef0123456789abcdef013")


def vpd83(naa: bytes, serial: str, port: int) -> bytes:
    t10 = b"LIO-ORG " + serial.encode()
    body = (bytes([1, 3, 0, len(naa)]) + naa + bytes([2, 1, 0, len(t10)]) + t10
            + bytes([0x61, 0x94, 0, 4, 0, 0, 0, port]))
    return bytes([0, 0x83, 0, len(body)]) + body


def add_lun(root, sg: str, hctl: str, block: str | None, naa: bytes | None, serial: str,
            sectors: int = 131072, port: int = 1, dev_type: str = "0", vpd: bytes | None = None):
    device = root / "devices" / "platform" / f"host{hctl[0]}" / hctl
    device.mkdir(parents=True)
    (device / "type").write_text(dev_type + "\n")
    (device / "vendor").write_text("LIO-ORG \n")
    (device / "model").write_text(f"LAB-{serial.split('-')[-1].upper()}\n")
    if vpd is not None:
        (device / "vpd_pg83").write_bytes(vpd)
    elif naa is not None:
        (device / "vpd_pg83").write_bytes(vpd83(naa, serial, port))
    payload = serial.encode()
    (device / "vpd_pg80").write_bytes(bytes([0, 0x80, 0, len(payload)]) + payload)
    if block:
        (device / "block" / block).mkdir(parents=True)
        (root / "block" / block).mkdir(parents=True)
        (root / "block" / block / "size").write_text(f"{sectors}\n")
    link = root / "class" / "scsi_generic" / sg
    link.mkdir(parents=True)
    (link / "device").symlink_to(device)


@pytest.fixture
def lab_sysfs(tmp_path):
    """The shared/lab layout: quorum and data LUN, each through hosts 0 and 1."""
    root = tmp_path / "sys"
    add_lun(root, "sg0", "0:0:1:0", "sda", NAA_Q, "lab-lun0-quorum", port=1)
    add_lun(root, "sg1", "0:0:1:1", "sdb", NAA_D, "lab-lun1-data", 2097152, port=1)
    add_lun(root, "sg2", "1:0:1:0", "sdc", NAA_Q, "lab-lun0-quorum", port=2)
    add_lun(root, "sg3", "1:0:1:1", "sdd", NAA_D, "lab-lun1-data", 2097152, port=2)
    return root


def test_scan(lab_sysfs):
    luns = disks.scan(str(lab_sysfs))
    assert [lun.sg for lun in luns] == ["/dev/sg0", "/dev/sg1", "/dev/sg2", "/dev/sg3"]
    quorum = luns[0]
    assert quorum == LunPath(sg="/dev/sg0", hctl="0:0:1:0", block="/dev/sda", vendor="LIO-ORG",
                             model="LAB-QUORUM", serial="lab-lun0-quorum",
                             size_bytes=64 << 20,
                             designators=("naa." + NAA_Q.hex(), "t10.LIO-ORG lab-lun0-quorum"))
    assert luns[3].size_bytes == 1 << 30 and luns[3].host == 1


def test_scan_skips_non_disks_and_reports_bad_pages(tmp_path):
    root = tmp_path / "sys"
    add_lun(root, "sg0", "0:0:0:0", None, None, "cdrom", dev_type="5")
    add_lun(root, "sg1", "0:0:1:0", "sda", None, "bad", vpd=b"\x00\x83\x00\x09\x01\x03\x00\x10")
    [lun] = disks.scan(str(root))
    assert lun.sg == "/dev/sg1" and lun.designators == () and "VPD 0x83" in lun.problem


def test_scan_falls_back_to_sg_io_inquiry(tmp_path):
    root = tmp_path / "sys"
    add_lun(root, "sg0", "0:0:1:0", "sda", None, "lab-lun0-quorum")
    asked = []

    def read_vpd83(sg):
        asked.append(sg)
        return vpd83(NAA_Q, "lab-lun0-quorum", 1)

    [lun] = disks.scan(str(root), read_vpd83=read_vpd83)
    assert asked == ["/dev/sg0"] and lun.designators[0] == "naa." + NAA_Q.hex()

    def broken(sg):
        raise ScsiTransportError("SG_IO: no such device")

    [lun] = disks.scan(str(root), read_vpd83=broken)
    assert lun.designators == () and "no such device" in lun.problem


def test_resolve(lab_sysfs):
    luns = disks.scan(str(lab_sysfs))
    chosen = disks.resolve({"quorum": "NAA." + NAA_Q.hex().upper(),
                            "aggr1": "t10.LIO-ORG   lab-lun1-data"}, luns, scsi_hosts={0})
    assert chosen["quorum"].sg == "/dev/sg0" and chosen["aggr1"].block == "/dev/sdb"
    assert disks.resolve({"q": "naa." + NAA_Q.hex()}, luns, scsi_hosts={1})["q"].sg == "/dev/sg2"


@pytest.mark.parametrize("config, hosts, status, text", [
    ({"quorum": "naa.600140500000000000000000000000ff"}, {0}, "missing", "no LUN has"),
    ({"quorum": "naa." + NAA_Q.hex()}, None, "duplicated", "/dev/sg0 (0:0:1:0), /dev/sg2"),
    ({"quorum": "naa." + NAA_Q.hex(), "again": "t10.LIO-ORG lab-lun0-quorum"}, {0},
     "ambiguous", "also configured as disk quorum"),
    ({"quorum": NAA_Q.hex()}, {0}, "ambiguous", "no type prefix"),
])
def test_resolve_errors_name_the_disk(lab_sysfs, config, hosts, status, text):
    with pytest.raises(DiskError) as info:
        disks.resolve(config, disks.scan(str(lab_sysfs)), scsi_hosts=hosts)
    assert info.value.status == status and text in str(info.value)
    assert str(info.value).startswith(f"disk {list(config)[-1]}:")


def test_offline_helpers_use_blkroset():
    calls = []

    def ioctl(fd, request, arg, mutate=True):
        calls.append((request, int.from_bytes(bytes(arg), "little")))
        return 0

    kwargs = dict(ioctl=ioctl, open_fd=lambda p, f: 3, close_fd=lambda fd: None)
    disks.set_offline("/dev/sdb", **kwargs)
    disks.set_writable("/dev/sdb", **kwargs)
    assert calls == [(BLKROSET, 1), (BLKROSET, 0)]


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
36 22 8:16 / /srv/aggr\\0401 rw,noatime shared:20 - xfs /dev/sdb rw,attr2
37 22 0:5 / /dev rw - devtmpfs udev rw
garbage line
"""


def test_mountinfo():
    entries = disks.parse_mountinfo(MOUNTINFO)
    assert entries[1] == disks.MountEntry(8, 16, "/srv/aggr 1", "xfs", "/dev/sdb")
    fake_stat = lambda path: SimpleNamespace(st_rdev=os.makedev(8, 16))
    assert disks.mount_points("/dev/sdb", MOUNTINFO, stat=fake_stat) == ("/srv/aggr 1",)


def test_mount_options():
    assert disks.split_mount_options("rw,noatime,discard,nodev,logbufs=8") == \
        (disks.MS_NOATIME | disks.MS_NODEV, "discard,logbufs=8")
    assert disks.split_mount_options("") == (0, "")


class FakeLibc:
    def __init__(self, rc=0):
        self.rc = rc
        self.calls = []

    def mount(self, *args):
        self.calls.append(("mount",) + args)
        return self.rc

    def umount2(self, *args):
        self.calls.append(("umount2",) + args)
        return self.rc


def test_mounter():
    libc = FakeLibc()
    mounter = disks.Mounter(libc=libc, get_errno=lambda: 0)
    mounter.mount("aggr1", "/dev/sdb", "/srv/aggr1", "xfs", "noatime,logbufs=8")
    mounter.unmount("aggr1", "/srv/aggr1")
    assert libc.calls == [("mount", b"/dev/sdb", b"/srv/aggr1", b"xfs", disks.MS_NOATIME,
                           b"logbufs=8"), ("umount2", b"/srv/aggr1", 0)]
    failing = disks.Mounter(libc=FakeLibc(-1), get_errno=lambda: errno.EBUSY)
    with pytest.raises(DiskError, match="umount /srv/aggr1: Device or resource busy"):
        failing.unmount("aggr1", "/srv/aggr1")
    with pytest.raises(DiskError) as info:
        failing.mount("aggr1", "/dev/sdb", "/srv/aggr1", "xfs")
    assert info.value.status == "mount" and info.value.disk == "aggr1"


def test_check_filesystem():
    ran = []

    def run(command, **kwargs):
        ran.append(command)
        return subprocess.CompletedProcess(command, 1, "fixed\n", "")

    disks.check_filesystem("aggr1", "/dev/sdb", "ext4", run=run)
    assert ran == [["e2fsck", "-p", "/dev/sdb"]]
    disks.check_filesystem("aggr1", "/dev/sdb", "xfs", run=run)        # no fsck for xfs
    assert len(ran) == 1

    def bad(command, **kwargs):
        return subprocess.CompletedProcess(command, 4, "", "UNEXPECTED INCONSISTENCY\n")

    with pytest.raises(DiskError, match="exited 4: UNEXPECTED INCONSISTENCY"):
        disks.check_filesystem("aggr1", "/dev/sdb", "ext4", run=bad)

    def missing(command, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    with pytest.raises(DiskError, match="fsck|e2fsck"):
        disks.check_filesystem("aggr1", "/dev/sdb", "ext4", run=missing)
    with pytest.raises(ValueError):
        disks.fsck_command("/dev/sdb", "btrfs")
