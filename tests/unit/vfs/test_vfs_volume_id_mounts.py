"""The same file system through two block devices keeps its file identity.

On a cluster the shared LUN is ``sdX`` on one node and ``sdY`` on the other
(shared/reference/cluster.md key finding 6).  Here one image file is attached
to two loop devices at once; the file system is mounted through the first,
measured, unmounted, then mounted through the second (a different ``st_dev``),
for ext4 and for XFS.  The volume id, the volume serial and each file's
(device_id, file_id) must not change; ``st_dev`` does.  Needs root, loop
devices, mkfs.ext4 and mkfs.xfs.
"""

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from smbcad.vfs import ShareFs
from smbcad.vfs.volume_id import fold_uuid
from tests.unit.server.test_open_table import make_share, record_for, run_restore

pytestmark = pytest.mark.root

FS_UUID = uuid.UUID("5b0d1f0e-8c3a-4f7e-9a41-2c6d9e3b7a15")
# mkfs command and image size per file system (XFS's smallest comfortable size).
MKFS = {
    "ext4": (["mkfs.ext4", "-q", "-F", "-U", str(FS_UUID)], 64 << 20),
    "xfs": (["mkfs.xfs", "-q", "-f", "-m", f"uuid={FS_UUID}"], 320 << 20),
}


def _run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass
class TwoDevices:
    """One file system image attached to two loop devices; ``mount(i)``
    mounts it through device ``i`` at ``where`` (one at a time)."""

    devices: list[str]
    where: Path
    mounted: bool = False

    def mount(self, index: int) -> None:
        self.unmount()
        _run("mount", self.devices[index], str(self.where))
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted:
            _run("umount", str(self.where))
            self.mounted = False

    def tear_down(self) -> None:
        """Unmount (lazily if a failed test left something open) and detach."""
        try:
            self.unmount()
        except RuntimeError:
            _run("umount", "--lazy", str(self.where))
        for device in self.devices:
            _run("losetup", "--detach", device)


@pytest.fixture(params=sorted(MKFS))
def two_devices(request, tmp_path):
    fs_type = request.param
    command, size = MKFS[fs_type]
    if shutil.which(command[0]) is None or shutil.which("losetup") is None:
        pytest.skip(f"{command[0]} or losetup is not installed")
    image = tmp_path / f"{fs_type}.img"
    with open(image, "wb") as f:
        f.truncate(size)
    _run(*command, str(image))
    pair = TwoDevices([], tmp_path / "mnt")
    pair.where.mkdir()
    try:
        for _ in range(2):
            try:
                pair.devices.append(_run("losetup", "--find", "--show", str(image)))
            except RuntimeError as exc:
                pytest.skip(f"no loop devices here: {exc}")
        try:
            pair.mount(0)
        except RuntimeError as exc:
            pytest.skip(f"cannot mount here: {exc}")
        yield fs_type, pair
    finally:
        pair.tear_down()


@dataclass(frozen=True)
class Seen:
    st_dev: int
    fsid: int
    volume_id: int
    source: str
    serial: int
    file_key: tuple
    dir_key: tuple


def _look(where: Path) -> Seen:
    with ShareFs(str(where)) as fs:
        info = fs.stat_path(("dir", "file.txt"))
        directory = fs.stat_path(("dir",))
        assert info.device_id == directory.device_id == fs.volume.volume_id
        return Seen(os.stat(where).st_dev, os.statvfs(where).f_fsid, fs.volume.volume_id,
                    fs.volume.source, fs.fs_id().volume_serial,
                    (info.device_id, info.file_id), (directory.device_id, directory.file_id))


def test_identity_survives_a_change_of_block_device(two_devices):
    fs_type, pair = two_devices
    (pair.where / "dir").mkdir()
    (pair.where / "dir" / "file.txt").write_bytes(b"same file")
    first = _look(pair.where)
    pair.mount(1)
    second = _look(pair.where)

    assert first.st_dev != second.st_dev                    # another device
    assert first.source == second.source == f"{fs_type}-uuid"
    assert first.volume_id == second.volume_id == fold_uuid(FS_UUID.bytes)
    assert first.serial == second.serial == first.volume_id & 0xFFFFFFFF
    assert first.file_key == second.file_key
    assert first.dir_key == second.dir_key
    if fs_type == "ext4":
        # The kernel folds s_uuid into f_fsid the same way: both routes agree.
        assert first.fsid == second.fsid == first.volume_id
    else:
        # Why XFS's superblock is read: its f_fsid follows the device.
        assert first.fsid != second.fsid


def test_a_persistent_open_recorded_through_one_device_is_restored_through_the_other(
        two_devices):
    _, pair = two_devices
    make_share(pair.where)      # share/vm.vhdx and state/ on the file system itself
    record = record_for("vm.vhdx", pair.where / "share")
    pair.mount(1)
    assert record.file_dev != os.stat(pair.where / "share").st_dev
    server, result, remaining, _ = run_restore(pair.where, [record])
    assert result == (1, 0) and len(remaining) == 1
    open_ = server.opens.by_persistent_id[0x1234]
    try:
        assert open_.file_key == (record.file_dev, record.file_ino)
    finally:
        open_.handle.close()
        server.find_share("share").fs.close()


def test_a_file_system_mounted_inside_the_share_keeps_its_st_dev(two_devices):
    _, pair = two_devices
    inner = pair.where / "inner"
    inner.mkdir()
    _run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(inner))
    try:
        (inner / "f").write_bytes(b"x")
        with ShareFs(str(pair.where)) as fs:
            info = fs.stat_path(("inner", "f"))
            assert info.device_id == os.stat(inner / "f").st_dev != fs.volume.volume_id
            assert fs.stat_path(()).device_id == fs.volume.volume_id
    finally:
        _run("umount", str(inner))
