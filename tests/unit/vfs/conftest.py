"""Fixtures: a share on tmp_path, a secret outside it, and a watch on the outside."""

import ctypes
import os
import struct
from pathlib import Path

import pytest

from smbcad.proto.errors import SmbError
from smbcad.vfs import ShareFs

SECRET = b"top secret, never served\n"

# inotify(7): what "read, written, created or listed" looks like to the kernel.
IN_ACCESS, IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x1, 0x2, 0x4, 0x8
IN_OPEN, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x20, 0x40, 0x80, 0x100, 0x200
_WATCH_MASK = (IN_ACCESS | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_OPEN | IN_MOVED_FROM
               | IN_MOVED_TO | IN_CREATE | IN_DELETE)
_EVENT = struct.Struct("iIII")


class OutsideWatch:
    """inotify on every directory outside the share that a test could reach."""

    def __init__(self, dirs: list[Path]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self._names = {}
        for path in dirs:
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), _WATCH_MASK)
            assert wd >= 0, os.strerror(ctypes.get_errno())
            self._names[wd] = path

    def events(self) -> list[tuple[Path, int, str]]:
        found = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + 16: offset + 16 + length].rstrip(b"\0").decode()
                found.append((self._names.get(wd), mask, name))
                offset += 16 + length

    def close(self) -> None:
        os.close(self.fd)


def snapshot(root: Path) -> dict:
    """Names, contents and times of everything under ``root`` (symlinks not followed)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
            state[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, content)
    return state


class Layout:
    """tmp_path/share (served) next to tmp_path/outside (must stay untouched)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.share = base / "share"
        self.outside = base / "outside"
        self.secret = self.outside / "secret"
        self.outdir = self.outside / "outdir"
        self.share.mkdir()
        self.outdir.mkdir(parents=True)
        self.secret.write_bytes(SECRET)
        (self.outdir / "child").write_bytes(SECRET)
        self.outside_inodes = {p.stat().st_ino for p in (self.outside, self.secret, self.outdir,
                                                         self.outdir / "child", base)}


@pytest.fixture
def layout(tmp_path):
    return Layout(tmp_path)


@pytest.fixture
def fs(layout):
    share = ShareFs(str(layout.share))
    yield share
    share.close()


@pytest.fixture
def guard(layout):
    """Fails the test if anything outside the share was opened, read, written or created."""
    before = snapshot(layout.outside)
    base_entries = sorted(os.listdir(layout.base))
    watch = OutsideWatch([layout.outside, layout.outdir, layout.base])
    yield watch
    events = [e for e in watch.events()
              # The share directory itself lives in base: events naming it are in-share.
              if not (e[0] == layout.base and e[2] == "share")]
    watch.close()
    assert events == [], f"outside touched: {events}"
    assert snapshot(layout.outside) == before
    assert sorted(os.listdir(layout.base)) == base_entries
    assert layout.secret.read_bytes() == SECRET


def _status_of(call, *args, **kwargs) -> int:
    try:
        result = call(*args, **kwargs)
    except SmbError as err:
        return err.status
    if hasattr(result, "close"):
        result.close()
    pytest.fail(f"expected an SmbError, got {result!r}")
    return 0


@pytest.fixture
def status_of():
    """``status_of(call, *args)``: the NTSTATUS the call fails with (fails the test if it succeeds)."""
    return _status_of
