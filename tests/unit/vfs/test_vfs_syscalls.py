"""The ctypes syscall layer: openat2 containment straight from the kernel."""

import errno
import os

import pytest

from smbcad.vfs._openat2 import RENAME_NOREPLACE, Syscalls


@pytest.fixture
def sys_and_root(tmp_path):
    (tmp_path / "share").mkdir()
    (tmp_path / "secret").write_bytes(b"s")
    root = os.open(tmp_path / "share", os.O_PATH | os.O_DIRECTORY)
    yield Syscalls(), root, tmp_path
    os.close(root)


@pytest.mark.parametrize("path", ["..", "../secret", "/etc/passwd", "/", "x/../../secret"])
def test_openat2_refuses_escapes(sys_and_root, path):
    calls, root, base = sys_and_root
    (base / "share" / "x").mkdir(exist_ok=True)
    with pytest.raises(OSError) as caught:
        calls.openat2(root, path, os.O_RDONLY)
    assert caught.value.errno == errno.EXDEV


def test_openat2_escaping_symlink_and_magic_link(sys_and_root):
    calls, root, base = sys_and_root
    os.symlink("../secret", base / "share" / "up")
    os.symlink("/proc/self/cwd", base / "share" / "magic")
    for name in ("up", "magic"):
        with pytest.raises(OSError) as caught:
            calls.openat2(root, name, os.O_RDONLY)
        assert caught.value.errno == errno.EXDEV


def test_openat2_sets_cloexec_and_creates(sys_and_root):
    calls, root, base = sys_and_root
    fd = calls.openat2(root, "new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)
    assert (base / "share" / "new").exists()


def test_embedded_nul_refused(sys_and_root):
    calls, root, _ = sys_and_root
    with pytest.raises(OSError) as caught:
        calls.openat2(root, "a\0/../..", os.O_RDONLY)
    assert caught.value.errno == errno.EINVAL


def test_renameat2_noreplace(sys_and_root):
    calls, root, base = sys_and_root
    share = base / "share"
    (share / "a").write_bytes(b"a")
    (share / "b").write_bytes(b"b")
    dirfd = os.open(share, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError):
            calls.renameat2(dirfd, "a", dirfd, "b", RENAME_NOREPLACE)
        calls.renameat2(dirfd, "a", dirfd, "c", RENAME_NOREPLACE)
    finally:
        os.close(dirfd)
    assert sorted(os.listdir(share)) == ["b", "c"]
