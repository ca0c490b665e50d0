"""vfs/notify.py + server/notify.py against the real kernel on tmp_path.

Changes are made by this (local) process, which is the point of inotify:
what a shell user does on the share reaches SMB clients too.  Events are
pumped by hand; no event loop, no sleeps (inotify queues synchronously with
the syscall that caused the event).
"""

import os
import struct

import pytest

from smbcad.proto.change_notify import CompletionFilter as CF
from smbcad.proto.change_notify import FileAction as FA
from smbcad.proto.status import NtStatus
from smbcad.server.notify import NotifyRegistry
from smbcad.vfs.notify import IN_CREATE, IN_MOVED_FROM, IN_MOVED_TO, Inotify, parse_events

NAME = CF.FILE_NAME | CF.DIR_NAME


def decode(data: bytes):
    out, offset = [], 0
    while data:
        nxt, action, length = struct.unpack_from("<III", data, offset)
        out.append((action, data[offset + 12:offset + 12 + length].decode("utf-16-le")))
        if nxt == 0:
            break
        offset += nxt
    return out


class DirOpen:
    def __init__(self, path):
        self.handle = type("H", (), {})()
        self.handle.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        self.delete_on_close = False
        self.is_directory = True
        self.file_key = (0, self.handle.fd)

    def close(self):
        os.close(self.handle.fd)


@pytest.fixture
def kernel(tmp_path):
    inotify = Inotify()
    registry = NotifyRegistry(inotify)
    opens = []

    def open_dir(path=tmp_path):
        opened = DirOpen(path)
        opens.append(opened)
        return opened

    yield tmp_path, inotify, registry, open_dir
    for opened in opens:
        registry.open_closed(opened, False)
        opened.close()
    inotify.close()


def ask(registry, opened, filter_=NAME, tree=False, length=4096):
    got = []
    waiter = registry.request(opened, filter_, tree, length,
                              lambda status, data: got.append((status, decode(data))))
    return waiter, got


def test_parse_events_packs_like_the_kernel():
    raw = struct.pack("iIII", 3, IN_CREATE, 0, 16) + b"a.txt".ljust(16, b"\0")
    raw += struct.pack("iIII", 3, IN_MOVED_FROM, 42, 0)
    assert parse_events(raw) == [(3, IN_CREATE, 0, "a.txt"), (3, IN_MOVED_FROM, 42, "")]


def test_local_create_and_rename_reach_a_waiting_request(kernel):
    root, _, registry, open_dir = kernel
    d = open_dir()
    waiter, got = ask(registry, d)
    (root / "file.txt").write_bytes(b"x")
    registry.pump()
    assert got == [(NtStatus.SUCCESS, [(FA.ADDED, "file.txt")])]
    os.rename(root / "file.txt", root / "renamed.txt")
    waiter, got = ask(registry, d)
    registry.pump()
    assert got == [(NtStatus.SUCCESS, [(FA.RENAMED_OLD_NAME, "file.txt"),
                                       (FA.RENAMED_NEW_NAME, "renamed.txt")])]


def test_watch_tree_follows_directories_made_later(kernel):
    root, _, registry, open_dir = kernel
    (root / "a").mkdir()
    d = open_dir()
    waiter, _ = ask(registry, d, tree=True)
    registry.cancel(waiter)
    (root / "a" / "b").mkdir()
    registry.pump()                         # b is watched from here on
    (root / "a" / "b" / "c.txt").write_bytes(b"")
    os.rename(root / "a" / "b" / "c.txt", root / "c.txt")
    registry.pump()
    waiter, got = ask(registry, d, tree=True)
    assert got == [(NtStatus.SUCCESS, [
        (FA.ADDED, "a\\b"), (FA.ADDED, "a\\b\\c.txt"), (FA.REMOVED, "a\\b\\c.txt"),
        (FA.ADDED, "c.txt")])]


def test_directory_made_before_its_event_is_read_reports_its_contents(kernel):
    root, _, registry, open_dir = kernel
    d = open_dir()
    waiter, _ = ask(registry, d, tree=True)
    registry.cancel(waiter)
    (root / "x" / "y").mkdir(parents=True)     # both exist before anything is read
    (root / "x" / "y" / "z").write_bytes(b"")
    registry.pump()
    _, got = ask(registry, d, tree=True)
    assert got == [(NtStatus.SUCCESS, [(FA.ADDED, "x"), (FA.ADDED, "x\\y"),
                                       (FA.ADDED, "x\\y\\z")])]


def test_symlinked_directory_is_not_followed(kernel, tmp_path_factory):
    root, _, registry, open_dir = kernel
    outside = tmp_path_factory.mktemp("outside")
    d = open_dir()
    waiter, _ = ask(registry, d, tree=True)
    registry.cancel(waiter)
    (root / "link").symlink_to(outside, target_is_directory=True)
    registry.pump()
    (outside / "secret").write_bytes(b"")
    registry.pump()
    _, got = ask(registry, d, tree=True)
    assert got == [(NtStatus.SUCCESS, [(FA.ADDED, "link")])]


def test_write_and_attributes_are_modified(kernel):
    root, _, registry, open_dir = kernel
    (root / "f").write_bytes(b"")
    d = open_dir()
    waiter, got = ask(registry, d, CF.SIZE)
    with open(root / "f", "ab") as handle:
        handle.write(b"more")
    registry.pump()
    assert got == [(NtStatus.SUCCESS, [(FA.MODIFIED, "f")])]
    d2 = open_dir()
    waiter, got = ask(registry, d2, CF.ATTRIBUTES)
    os.chmod(root / "f", 0o600)
    registry.pump()
    assert got == [(NtStatus.SUCCESS, [(FA.MODIFIED, "f")])]


def test_removing_the_watched_directory_shows_at_close(kernel):
    """While an Open holds the directory, the kernel keeps the inode and sends
    no IN_DELETE_SELF; the client hears about it when its handle closes."""
    root, _, registry, open_dir = kernel
    (root / "gone").mkdir()
    d = open_dir(root / "gone")
    waiter, got = ask(registry, d)
    os.rmdir(root / "gone")
    registry.pump()
    assert got == []
    registry.open_closed(d, False)
    assert got == [(NtStatus.NOTIFY_CLEANUP, [])]


def test_closing_the_open_removes_the_kernel_watch(kernel):
    root, inotify, registry, open_dir = kernel
    d = open_dir()
    ask(registry, d)
    registry.open_closed(d, False)
    (root / "after").write_bytes(b"")
    # What is left is bookkeeping (IN_IGNORED, closes), never the create.
    assert not [e for e in inotify.read() if e.mask & (IN_CREATE | IN_MOVED_TO)]
