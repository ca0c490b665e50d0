"""FILE_SUPPORTS_BLOCK_REFCOUNTING follows a real clone probe (smbcad/vfs/_reflink.py).

The probe is checked twice: with the ioctl faked (any file system with
O_TMPFILE), and for real on small XFS (reflink=1) and tmpfs mounts, which
needs root and loop devices; without them those tests skip.
"""

import errno
import os
import shutil
import subprocess
import struct

import pytest

from smbcad.vfs import ShareFs, _reflink
from smbcad.vfs._fileops import FileOps

BLOCK_REFCOUNTING = 0x08000000


def _dir_fd(path):
    return os.open(path, os.O_PATH | os.O_DIRECTORY)


def test_probe_clones_one_anonymous_file_into_another(tmp_path):
    calls = []

    def ioctl(fd, request, argument):
        source, source_offset, length, target_offset = struct.unpack("<qQQQ", argument)
        calls.append((request, os.fstat(fd).st_size, os.fstat(source).st_size,
                      source_offset, length, target_offset))
        return 0

    fd = _dir_fd(tmp_path)
    try:
        assert _reflink.probe(fd, ioctl=ioctl) is True
    finally:
        os.close(fd)
    assert calls == [(FileOps._FICLONERANGE, 4096, 4096, 0, 4096, 0)]
    assert list(tmp_path.iterdir()) == []          # nothing visible in the share


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOSPC])
def test_a_failed_clone_means_no_block_refcounting(tmp_path, code):
    def ioctl(fd, request, argument):
        raise OSError(code, os.strerror(code))

    fd = _dir_fd(tmp_path)
    try:
        assert _reflink.probe(fd, ioctl=ioctl) is False
    finally:
        os.close(fd)


def test_a_directory_without_anonymous_files_means_no(tmp_path):
    fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY)      # procfs: no O_TMPFILE
    try:
        assert _reflink.probe(fd) is False
    finally:
        os.close(fd)


def test_the_share_probes_once(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(_reflink, "probe", lambda fd: seen.append(fd) or True)
    share = ShareFs(str(tmp_path))
    try:
        assert share.fs_id().fs_attributes & BLOCK_REFCOUNTING
        assert share.fs_id().fs_attributes & BLOCK_REFCOUNTING
    finally:
        share.close()
    assert len(seen) == 1


# --- real file systems -----------------------------------------------------------------

def _mount(args, where):
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    result = subprocess.run(["mount", *args, str(where)], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")


@pytest.fixture
def xfs_reflink(tmp_path):
    if shutil.which("mkfs.xfs") is None:
        pytest.skip("mkfs.xfs (xfsprogs) is not installed")
    image, where = tmp_path / "xfs.img", tmp_path / "mnt"
    where.mkdir()
    with open(image, "wb") as f:
        f.truncate(320 << 20)          # XFS's smallest comfortable size
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    _mount(["-o", "loop", str(image)], where)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.fixture
def tmpfs(tmp_path):
    where = tmp_path / "tmpfs"
    where.mkdir()
    _mount(["-t", "tmpfs", "-o", "size=1m", "tmpfs"], where)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_xfs_with_reflink_advertises_block_refcounting(xfs_reflink):
    share = ShareFs(str(xfs_reflink))
    try:
        assert share.fs_id().fs_attributes & BLOCK_REFCOUNTING
    finally:
        share.close()


def test_tmpfs_does_not(tmpfs):
    share = ShareFs(str(tmpfs))
    try:
        assert not share.fs_id().fs_attributes & BLOCK_REFCOUNTING
    finally:
        share.close()
