"""server/notify.py: inotify events → FILE_NOTIFY_INFORMATION, per-Open
buffering and completion ([MS-FSA] 2.1.4.1, 2.1.5.11; [MS-SMB2] 3.3.5.19).

The port is a fake file tree: ``watch`` hands out one wd per directory path
as inotify does per inode, and events are fed by hand in the order the kernel
queues them.  Expected results follow smbtorture's smb2.notify suite
(source4/torture/smb2/notify.c), which records what Windows answers.
"""

import struct
from types import SimpleNamespace

import pytest

from smbcad.proto.change_notify import CompletionFilter as CF
from smbcad.proto.change_notify import FileAction as FA
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server.notify import EVENT_TABLE, NotifyRegistry
from smbcad.vfs.notify import (
    IN_ATTRIB, IN_CLOSE_NOWRITE, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_DELETE_SELF,
    IN_IGNORED, IN_ISDIR, IN_MODIFY, IN_MOVED_FROM, IN_MOVED_TO, IN_Q_OVERFLOW,
    InotifyEvent, WatchedDir)

OK = NtStatus.SUCCESS
ALL = CF.VALID
NAME = CF.FILE_NAME | CF.DIR_NAME


class FakeTree:
    """Directories by share path ("" = root) → [(name, is_dir)]; opens are
    fds mapping to a directory path."""

    def __init__(self, dirs=None):
        self.dirs = {"": []} if dirs is None else dirs
        self.bases: dict[int, str] = {}
        self.wds: dict[str, int] = {}
        self.unwatched: list[int] = []
        self.queue: list[InotifyEvent] = []
        self.fail: set[str] = set()

    def watch(self, base_fd, relpath, *, list_entries=False):
        path = "/".join(p for p in (self.bases[base_fd], relpath) if p)
        if path in self.fail:
            raise SmbError(NtStatus.INSUFFICIENT_RESOURCES, "max_user_watches")
        if path not in self.dirs:
            return None
        wd = self.wds.setdefault(path, len(self.wds) + 1)
        return WatchedDir(wd, tuple(self.dirs[path]) if list_entries else ())

    def unwatch(self, wd):
        self.unwatched.append(wd)
        for path, known in list(self.wds.items()):
            if known == wd:
                del self.wds[path]

    def read(self):
        events, self.queue = self.queue, []
        return events

    def wd(self, path):
        return self.wds[path]


class Results:
    """Collects what waiters resolve with."""

    def __init__(self):
        self.got = []

    def __call__(self, status, data):
        self.got.append((status, decode(data)))


def decode(data: bytes):
    """FILE_NOTIFY_INFORMATION chain → [(action, name)] ([MS-FSCC] 2.7.1)."""
    out, offset = [], 0
    while data:
        nxt, action, length = struct.unpack_from("<III", data, offset)
        out.append((action, data[offset + 12:offset + 12 + length].decode("utf-16-le")))
        if nxt == 0:
            break
        offset += nxt
    return out


class FakeOpen:
    """The parts of an Open ([MS-SMB2] 3.3.1.10) notify looks at; hashed by identity like adm.Open."""

    def __init__(self, fd, key):
        self.handle = SimpleNamespace(fd=fd)
        self.delete_on_close = False
        self.is_directory = True
        self.file_key = key


class World:
    def __init__(self, dirs=None):
        self.fs = FakeTree(dirs)
        self.reg = NotifyRegistry(self.fs)
        self._fd = 100

    def open(self, path="", key=None):
        self._fd += 1
        self.fs.bases[self._fd] = path
        return FakeOpen(self._fd, key or (1, self._fd))

    def ask(self, open_, filter_=ALL, tree=False, length=4096):
        results = Results()
        waiter = self.reg.request(open_, filter_, tree, length, results)
        return waiter, results

    def feed(self, *events):
        self.reg.feed([InotifyEvent(*e) for e in events])


def ev(wd, mask, name="", cookie=0):
    return (wd, mask, cookie, name)


# -- basics --------------------------------------------------------------------------------

def test_create_completes_pending_request_with_exact_bytes():
    w = World()
    d = w.open()
    waiter, res = w.ask(d)
    assert not waiter.done
    raw = []
    w.reg.entries[d].waiters[0].resolve = lambda status, data: raw.append((status, data))
    w.feed(ev(1, IN_CREATE, "a.txt"))
    # NextEntryOffset 0, FILE_ACTION_ADDED, FileNameLength 10, "a.txt" in UTF-16LE, no padding.
    assert raw == [(OK, bytes.fromhex("00000000 01000000 0a000000") + "a.txt".encode("utf-16-le"))]


def test_attribute_stamp_of_a_new_file_is_part_of_its_added():
    w = World()
    d = w.open()
    _, res = w.ask(d)
    w.feed(ev(1, IN_CREATE, "f"), ev(1, IN_ATTRIB, "f"))
    assert res.got == [(OK, [(FA.ADDED, "f")])]
    # Once closed, a later attribute change is news.
    _, res = w.ask(d)
    w.feed(ev(1, IN_CLOSE_WRITE, "f"), ev(1, IN_ATTRIB, "f"))
    assert res.got == [(OK, [(FA.MODIFIED, "f")])]


def test_changes_between_requests_are_buffered_and_returned_at_once():
    """smb2.notify.dir: 'buffered notify on create of N files'."""
    w = World()
    d = w.open()
    waiter, res = w.ask(d, NAME)
    w.reg.cancel(waiter)
    assert res.got == [(NtStatus.CANCELLED, [])]
    w.feed(*[ev(1, IN_CREATE, f"test{i}.txt") for i in range(3)])
    waiter, res = w.ask(d, NAME)
    assert waiter.done
    assert res.got == [(OK, [(FA.ADDED, f"test{i}.txt") for i in range(3)])]


def test_first_request_fixes_the_filter():
    """smb2.notify.mask-change: a later request's filter is ignored."""
    w = World()
    d = w.open()
    waiter, _ = w.ask(d, CF.ATTRIBUTES)
    w.reg.cancel(waiter)
    _, res = w.ask(d, NAME)
    w.feed(ev(1, IN_CREATE, "x"), ev(1, IN_CLOSE_WRITE, "x"), ev(1, IN_ATTRIB, "x"))
    assert res.got == [(OK, [(FA.MODIFIED, "x")])]


def test_no_valid_filter_bits_waits_forever():
    w = World()
    d = w.open()
    waiter, res = w.ask(d, 0xFFFFF000)
    w.feed(ev(1, IN_CREATE, "a"), ev(1, IN_MODIFY, "a"), ev(1, IN_DELETE, "a"))
    assert not waiter.done and res.got == []


@pytest.mark.parametrize("bit", sorted(EVENT_TABLE))
@pytest.mark.parametrize("is_dir", [False, True])
def test_event_table_filters(bit, is_dir):
    action, file_filter, dir_filter = EVENT_TABLE[bit]
    expected = dir_filter if is_dir else file_filter
    mask = bit | (IN_ISDIR if is_dir else 0)
    for filter_bit in (1 << i for i in range(12)):
        w = World()
        d = w.open()
        waiter, res = w.ask(d, filter_bit)
        w.feed(ev(1, mask, "n"))
        if filter_bit & expected:
            assert res.got == [(OK, [(action, "n")])]
        else:
            assert not waiter.done


def test_invalid_names_are_not_reported():
    w = World()
    d = w.open()
    waiter, _ = w.ask(d)
    w.feed(ev(1, IN_CREATE, "bad\udcff"), ev(1, IN_CREATE, "a:b"))
    assert not waiter.done


def test_consecutive_identical_modified_are_one():
    w = World()
    d = w.open()
    waiter, _ = w.ask(d)
    w.reg.cancel(waiter)
    w.feed(ev(1, IN_MODIFY, "f"), ev(1, IN_MODIFY, "f"), ev(1, IN_CLOSE_WRITE, "f"),
           ev(1, IN_MODIFY, "g"), ev(1, IN_MODIFY, "f"))
    _, res = w.ask(d)
    assert res.got == [(OK, [(FA.MODIFIED, "f"), (FA.MODIFIED, "g"), (FA.MODIFIED, "f")])]


def test_mkdir_rmdir_twice_keeps_all_four():
    w = World()
    d = w.open()
    waiter, _ = w.ask(d, NAME)
    w.reg.cancel(waiter)
    for _ in range(2):
        w.feed(ev(1, IN_CREATE | IN_ISDIR, "s"), ev(1, IN_DELETE | IN_ISDIR, "s"))
    _, res = w.ask(d, NAME)
    assert res.got == [(OK, [(FA.ADDED, "s"), (FA.REMOVED, "s")] * 2)]


# -- buffer sizes (valid-req, overflow) ------------------------------------------------------

def test_output_buffer_too_small_gives_enum_dir():
    w = World()
    d = w.open()
    waiter, _ = w.ask(d)
    w.reg.cancel(waiter)
    w.feed(ev(1, IN_MODIFY, "f"))
    _, res = w.ask(d, length=0)
    assert res.got == [(NtStatus.NOTIFY_ENUM_DIR, [])]
    # The changes went with the ENUM_DIR.
    waiter, res = w.ask(d)
    assert not waiter.done


def test_buffer_between_requests_is_the_first_requests_size():
    """valid-req: 'if the first notify returns NOTIFY_ENUM_DIR, all do'."""
    w = World()
    d = w.open()
    _, res = w.ask(d, length=1)
    w.feed(ev(1, IN_DELETE, "f"))
    assert res.got == [(NtStatus.NOTIFY_ENUM_DIR, [])]
    w.feed(ev(1, IN_CREATE, "f"), ev(1, IN_MODIFY, "f"))
    _, res = w.ask(d, length=65536)
    assert res.got == [(NtStatus.NOTIFY_ENUM_DIR, [])]


def test_exact_fit_is_not_overflow():
    w = World()
    d = w.open()
    # "ab" and "c": 12+4 = 16 (padded 16) then 12+2 = 14 → 30 bytes.
    waiter, _ = w.ask(d, length=30)
    w.reg.cancel(waiter)
    w.feed(ev(1, IN_CREATE, "ab"), ev(1, IN_CREATE, "c"))
    _, res = w.ask(d, length=30)
    assert res.got == [(OK, [(FA.ADDED, "ab"), (FA.ADDED, "c")])]
    waiter, _ = w.ask(d, length=29)
    w.feed(ev(1, IN_CREATE, "ab"), ev(1, IN_CREATE, "c"))
    assert waiter.done


def test_inotify_queue_overflow_gives_enum_dir():
    w = World()
    d = w.open()
    _, res = w.ask(d)
    w.feed(ev(-1, IN_Q_OVERFLOW))
    assert res.got == [(NtStatus.NOTIFY_ENUM_DIR, [])]


# -- several requests, cancel, close, delete -------------------------------------------------

def test_requests_complete_oldest_first():
    """smb2.notify.double."""
    w = World()
    d = w.open()
    _, first = w.ask(d, NAME)
    _, second = w.ask(d, NAME)
    w.feed(ev(1, IN_CREATE | IN_ISDIR, "subdir-name"))
    assert first.got == [(OK, [(FA.ADDED, "subdir-name")])] and second.got == []
    w.feed(ev(1, IN_CREATE | IN_ISDIR, "subdir-name2"))
    assert second.got == [(OK, [(FA.ADDED, "subdir-name2")])]


def test_each_open_has_its_own_entry():
    w = World()
    d1, d2 = w.open(), w.open()
    waiter, _ = w.ask(d1, NAME)
    w.reg.cancel(waiter)
    w.feed(ev(1, IN_CREATE, "old"))
    _, r2 = w.ask(d2, NAME)           # d2's entry starts now: it never sees "old"
    _, r1 = w.ask(d1, NAME)
    assert r1.got == [(OK, [(FA.ADDED, "old")])] and r2.got == []
    w.feed(ev(1, IN_DELETE, "old"))
    assert r2.got == [(OK, [(FA.REMOVED, "old")])]


def test_close_completes_with_notify_cleanup_and_unwatches():
    w = World()
    d = w.open()
    _, r1 = w.ask(d)
    _, r2 = w.ask(d)
    w.reg.open_closed(d, False)
    assert r1.got == r2.got == [(NtStatus.NOTIFY_CLEANUP, [])]
    assert w.fs.unwatched == [1] and not w.reg.entries


def test_shared_watch_stays_until_its_last_entry_goes():
    w = World()
    d1, d2 = w.open(), w.open()
    w.ask(d1)
    _, res = w.ask(d2)
    w.reg.open_closed(d1, False)
    assert w.fs.unwatched == []
    w.feed(ev(1, IN_CREATE, "a"))
    assert res.got == [(OK, [(FA.ADDED, "a")])]
    w.reg.open_closed(d2, False)
    assert w.fs.unwatched == [1]


def test_delete_pending_completes_other_opens():
    """smb2.notify.rmdir1-4: STATUS_DELETE_PENDING."""
    w = World()
    watcher = w.open(key=(1, 5))
    deleter = w.open(key=(1, 5))
    _, res = w.ask(watcher, NAME)
    w.reg.open_closed(deleter, True)
    assert res.got == [(NtStatus.DELETE_PENDING, [])]


def test_request_on_delete_on_close_open_is_delete_pending():
    w = World()
    d = w.open()
    d.delete_on_close = True
    with pytest.raises(SmbError) as err:
        w.ask(d)
    assert err.value.status == NtStatus.DELETE_PENDING


def test_watched_directory_removed_underneath():
    w = World()
    d = w.open()
    _, res = w.ask(d)
    w.feed(ev(1, IN_DELETE_SELF), ev(1, IN_IGNORED))
    assert res.got == [(NtStatus.DELETE_PENDING, [])]
    with pytest.raises(SmbError) as err:
        w.ask(d)
    assert err.value.status == NtStatus.DELETE_PENDING


def test_gone_directory_cannot_be_watched():
    w = World()
    d = w.open("missing")
    with pytest.raises(SmbError) as err:
        w.ask(d)
    assert err.value.status == NtStatus.DELETE_PENDING


def test_discarded_waiter_is_forgotten():
    w = World()
    d = w.open()
    waiter, res = w.ask(d)
    w.reg.discard(waiter)
    w.feed(ev(1, IN_CREATE, "a"))
    assert res.got == []
    _, res = w.ask(d)
    assert res.got == [(OK, [(FA.ADDED, "a")])]


# -- renames ---------------------------------------------------------------------------------

def test_rename_in_one_directory_is_old_and_new_name():
    w = World()
    d = w.open()
    _, res = w.ask(d, NAME)
    w.feed(ev(1, IN_MOVED_FROM | IN_ISDIR, "subdir-name", 7),
           ev(1, IN_MOVED_TO | IN_ISDIR, "subdir-name-r", 7))
    assert res.got == [(OK, [(FA.RENAMED_OLD_NAME, "subdir-name"),
                             (FA.RENAMED_NEW_NAME, "subdir-name-r")])]


def test_rename_split_across_reads_is_still_paired():
    w = World()
    d = w.open()
    _, res = w.ask(d, NAME)
    w.fs.queue = [InotifyEvent(1, IN_MOVED_FROM, 9, "a")]
    original = w.fs.read
    w.fs.read = lambda: (original() or [InotifyEvent(1, IN_MOVED_TO, 9, "b")])
    w.reg.pump()
    assert res.got == [(OK, [(FA.RENAMED_OLD_NAME, "a"), (FA.RENAMED_NEW_NAME, "b")])]


def test_renames_out_of_and_into_the_directory():
    w = World()
    d = w.open()
    waiter, _ = w.ask(d, NAME)
    w.reg.cancel(waiter)
    w.feed(ev(1, IN_MOVED_FROM, "gone", 3), ev(1, IN_MOVED_TO, "came", 4))
    _, res = w.ask(d, NAME)
    assert res.got == [(OK, [(FA.REMOVED, "gone"), (FA.ADDED, "came")])]


def test_renamed_file_reports_modified_on_first_close_only():
    """mask-change (MODIFIED after rename + close) vs rec (none while open)."""
    w = World()
    d = w.open()
    waiter, _ = w.ask(d, CF.ATTRIBUTES)
    w.reg.cancel(waiter)
    w.feed(ev(1, IN_MOVED_FROM, "a", 5), ev(1, IN_MOVED_TO, "b", 5))
    waiter, res = w.ask(d, CF.ATTRIBUTES)
    assert not waiter.done
    w.feed(ev(1, IN_CLOSE_NOWRITE, "b"))
    assert res.got == [(OK, [(FA.MODIFIED, "b")])]
    waiter, _ = w.ask(d, CF.ATTRIBUTES)
    w.feed(ev(1, IN_CLOSE_WRITE, "b"))
    assert not waiter.done


# -- watch tree ------------------------------------------------------------------------------

def rec_tree():
    return {"": [("sub", True), ("f", False)], "sub": [("deeper", True)], "sub/deeper": []}


def test_watch_tree_watches_every_directory():
    w = World(rec_tree())
    d = w.open()
    _, res = w.ask(d, NAME, tree=True)
    assert set(w.fs.wds) == {"", "sub", "sub/deeper"}
    w.feed(ev(w.fs.wd("sub/deeper"), IN_CREATE, "x"))
    assert res.got == [(OK, [(FA.ADDED, "sub\\deeper\\x")])]


def test_without_watch_tree_only_the_directory():
    w = World(rec_tree())
    d = w.open()
    waiter, _ = w.ask(d, NAME)
    assert set(w.fs.wds) == {""}
    w.feed(ev(99, IN_CREATE, "x"))
    assert not waiter.done


def test_watch_on_a_subdirectory_names_relative_to_it():
    w = World(rec_tree())
    top, sub = w.open(""), w.open("sub")
    _, r_top = w.ask(top, NAME, tree=True)
    _, r_sub = w.ask(sub, NAME, tree=True)
    w.feed(ev(w.fs.wd("sub/deeper"), IN_DELETE, "x"))
    assert r_top.got == [(OK, [(FA.REMOVED, "sub\\deeper\\x")])]
    assert r_sub.got == [(OK, [(FA.REMOVED, "deeper\\x")])]


def test_new_directory_is_watched_and_its_contents_reported_once():
    """smb2.notify.rec: subdir created, then a child in it."""
    w = World({"": []})
    d = w.open()
    waiter, _ = w.ask(d, NAME, tree=True)
    w.reg.cancel(waiter)
    # By the time the IN_CREATE is read, the child exists already.
    w.fs.dirs.update({"subdir-name": [("subname1", True)], "subdir-name/subname1": []})
    w.feed(ev(1, IN_CREATE | IN_ISDIR, "subdir-name"))
    sub = w.fs.wd("subdir-name")
    # Had the child appeared after the watch, its IN_CREATE follows; the scan
    # reported it already, so it is not repeated.
    w.feed(ev(sub, IN_CREATE | IN_ISDIR, "subname1"),
           ev(sub, IN_MOVED_FROM | IN_ISDIR, "subname1", 8),
           ev(sub, IN_MOVED_TO | IN_ISDIR, "subname1-r", 8))
    _, res = w.ask(d, NAME, tree=True)
    assert res.got == [(OK, [
        (FA.ADDED, "subdir-name"), (FA.ADDED, "subdir-name\\subname1"),
        (FA.RENAMED_OLD_NAME, "subdir-name\\subname1"),
        (FA.RENAMED_NEW_NAME, "subdir-name\\subname1-r")])]
    assert "subdir-name/subname1" in w.fs.wds


def test_attribute_stamp_of_an_entry_found_by_the_scan_is_part_of_its_added():
    """smb2.notify.mask-change with workers: another process made the child
    before this one watched its directory, and stamped its attributes after
    the scan; no IN_CREATE of it comes, and the stamp is no change of its own
    until the child is closed."""
    w = World({"": []})
    d = w.open()
    _, res = w.ask(d, CF.ATTRIBUTES, tree=True)
    w.fs.dirs.update({"subdir-name": [("subname1", True)], "subdir-name/subname1": []})
    w.feed(ev(1, IN_CREATE | IN_ISDIR, "subdir-name"))
    sub = w.fs.wd("subdir-name")
    w.feed(ev(sub, IN_CLOSE_NOWRITE | IN_ISDIR, "subname1"),     # the scan's own open
           ev(sub, IN_ATTRIB | IN_ISDIR, "subname1"))
    assert res.got == []
    w.feed(ev(sub, IN_CLOSE_NOWRITE | IN_ISDIR, "subname1"),     # the client's handle
           ev(sub, IN_ATTRIB | IN_ISDIR, "subname1"))
    assert res.got == [(OK, [(FA.MODIFIED, "subdir-name\\subname1")])]


def test_the_registrys_own_open_of_a_new_directory_is_no_close():
    """smb2.notify.mask-change with workers: watching the new directory opens
    and closes it (IN_CLOSE_NOWRITE on its parent's watch) before the other
    process's CREATE stamped its attributes; the stamp is part of its ADDED."""
    w = World({"": []})
    d = w.open()
    _, res = w.ask(d, CF.ATTRIBUTES, tree=True)
    w.fs.dirs.update({"subdir-name": []})
    w.feed(ev(1, IN_CREATE | IN_ISDIR, "subdir-name"))
    w.feed(ev(1, IN_CLOSE_NOWRITE | IN_ISDIR, "subdir-name"),       # this registry's
           ev(1, IN_ATTRIB | IN_ISDIR, "subdir-name"))
    assert res.got == []
    w.feed(ev(1, IN_CLOSE_NOWRITE | IN_ISDIR, "subdir-name"),       # the client's
           ev(1, IN_ATTRIB | IN_ISDIR, "subdir-name"))
    assert res.got == [(OK, [(FA.MODIFIED, "subdir-name")])]
    assert w.reg.tracked()["notify_renames"] <= 1


def test_rename_across_directories_in_the_tree_is_removed_and_added():
    """smb2.notify.rec: subdir-name\\subname2 → subname2-r."""
    w = World({"": [("subdir-name", True)], "subdir-name": []})
    d = w.open()
    _, res = w.ask(d, NAME | CF.ATTRIBUTES, tree=True)
    w.feed(ev(w.fs.wd("subdir-name"), IN_MOVED_FROM, "subname2", 4),
           ev(1, IN_MOVED_TO, "subname2-r", 4))
    assert res.got == [(OK, [(FA.REMOVED, "subdir-name\\subname2"),
                             (FA.ADDED, "subname2-r")])]


def test_directory_renamed_inside_the_tree_keeps_its_watches_under_the_new_name():
    w = World(rec_tree())
    d = w.open()
    waiter, _ = w.ask(d, NAME, tree=True)
    w.reg.cancel(waiter)
    w.feed(ev(1, IN_MOVED_FROM | IN_ISDIR, "sub", 2), ev(1, IN_MOVED_TO | IN_ISDIR, "new", 2),
           ev(w.fs.wd("sub/deeper"), IN_CREATE, "x"))
    _, res = w.ask(d, NAME, tree=True)
    assert res.got == [(OK, [(FA.RENAMED_OLD_NAME, "sub"), (FA.RENAMED_NEW_NAME, "new"),
                             (FA.ADDED, "new\\deeper\\x")])]


def test_directory_moved_out_of_the_tree_is_unwatched():
    w = World(rec_tree())
    d = w.open()
    waiter, _ = w.ask(d, NAME, tree=True)
    w.reg.cancel(waiter)
    sub, deeper = w.fs.wd("sub"), w.fs.wd("sub/deeper")
    w.feed(ev(1, IN_MOVED_FROM | IN_ISDIR, "sub", 2))
    assert sorted(w.fs.unwatched) == sorted([sub, deeper])
    _, res = w.ask(d, NAME, tree=True)
    assert res.got == [(OK, [(FA.REMOVED, "sub")])]


def test_directory_moved_into_the_tree_is_watched_without_its_contents():
    w = World({"": [], "in": [("old", False)]})
    d = w.open()
    waiter, _ = w.ask(d, NAME, tree=True)
    w.reg.cancel(waiter)
    w.feed(ev(1, IN_MOVED_TO | IN_ISDIR, "in", 6))
    _, res = w.ask(d, NAME, tree=True)
    assert res.got == [(OK, [(FA.ADDED, "in")])]
    assert "in" in w.fs.wds


def test_subdirectory_that_cannot_be_watched_gives_enum_dir():
    w = World({"": []})
    d = w.open()
    _, res = w.ask(d, NAME, tree=True)
    w.fs.dirs["s"] = []
    w.fs.fail.add("s")
    w.feed(ev(1, IN_CREATE | IN_ISDIR, "s"))
    assert res.got == [(NtStatus.NOTIFY_ENUM_DIR, [])]


def test_ignored_subdirectory_watch_is_forgotten():
    w = World(rec_tree())
    d = w.open()
    w.ask(d, NAME, tree=True)
    deeper = w.fs.wd("sub/deeper")
    w.feed(ev(deeper, IN_DELETE_SELF), ev(deeper, IN_IGNORED))
    assert deeper not in w.reg.entries[d].dirs


def test_tree_counts_like_smb2_notify_tree():
    """Each watcher counts the mkdir/rmdir pairs at or below its directory."""
    w = World({"": [("abc", True)], "abc": [("foo", True)], "abc/foo": []})
    root, abc, flat = w.open(""), w.open("abc"), w.open("")
    for open_, tree in ((root, True), (abc, True), (flat, False)):
        waiter, _ = w.ask(open_, NAME, tree=tree)
        w.reg.cancel(waiter)
    for path in ("", "abc", "abc/foo"):
        w.feed(ev(w.fs.wd(path), IN_CREATE | IN_ISDIR, "test.dir"),
               ev(w.fs.wd(path), IN_DELETE | IN_ISDIR, "test.dir"))
    counts = {}
    for name, open_, tree in (("root", root, True), ("abc", abc, True), ("flat", flat, False)):
        _, res = w.ask(open_, NAME, tree=tree)
        counts[name] = len(res.got[0][1])
    assert counts == {"root": 6, "abc": 4, "flat": 2}


def test_deep_tree_is_walked_without_recursion():
    depth = 3000
    dirs, path = {}, ""
    for _ in range(depth):
        dirs[path] = [("d", True)]
        path = f"{path}/d" if path else "d"
    dirs[path] = []
    w = World(dirs)
    d = w.open()
    w.ask(d, NAME, tree=True)
    assert len(w.reg.entries[d].dirs) == depth + 1


def test_too_many_directories_give_enum_dir(monkeypatch):
    monkeypatch.setattr("smbcad.server.notify.MAX_TREE_WATCHES", 2)
    w = World({"": [("a", True), ("b", True), ("c", True)], "a": [], "b": [], "c": []})
    d = w.open()
    waiter, res = w.ask(d, NAME, tree=True)
    assert res.got == [(NtStatus.NOTIFY_ENUM_DIR, [])]
