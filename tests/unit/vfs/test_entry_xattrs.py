"""A listing's xattr reads kept by (device, inode, ctime)
(smbcad/vfs/entry_xattrs.py): an unchanged entry is listed again without
them, a changed one is read again, and an entry changed within the racy
window is never kept."""

import os
import time

from smbcad.proto.constants import FileAttributes as FA
from smbcad.vfs import ShareFs, _meta
from smbcad.vfs.entry_xattrs import RACY_NS, EntryXattrs

FAR_FUTURE_NS = time.time_ns() + 10**15


class FakeStat:
    def __init__(self, ctime_ns: int, ino: int = 7) -> None:
        self.st_dev, self.st_ino, self.st_ctime_ns = 1, ino, ctime_ns


def test_only_entries_older_than_the_racy_window_are_kept():
    now = 10**18
    kept = EntryXattrs(clock_ns=lambda: now)
    kept.keep(FakeStat(now - RACY_NS + 1), "dos", 0)         # too recent: not kept
    assert kept.get(FakeStat(now - RACY_NS + 1)) is None
    kept.keep(FakeStat(now - RACY_NS - 1), "dos", 0)
    assert kept.get(FakeStat(now - RACY_NS - 1)) == ("dos", 0)
    assert kept.get(FakeStat(now - RACY_NS - 2)) is None      # another ctime: changed since


def test_the_oldest_entries_go_first_past_the_bound():
    kept = EntryXattrs(clock_ns=lambda: FAR_FUTURE_NS, max_entries=2)
    for ino in (1, 2, 3):
        kept.keep(FakeStat(5, ino), ino, None)
    assert len(kept) == 2
    assert kept.get(FakeStat(5, 1)) is None and kept.get(FakeStat(5, 3)) == (3, None)


def _listed_attributes(fs, directory, name, ea_size=False):
    return fs.entry_info(directory, name, ea_size=ea_size).attributes


def test_a_listing_reads_an_entrys_xattrs_again_only_after_it_changed(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_bytes(b"x")
    reads = []
    read_dos_record = _meta.read_dos_record
    monkeypatch.setattr(_meta, "read_dos_record",
                        lambda fd, name: reads.append(name) or read_dos_record(fd, name))
    with ShareFs(str(tmp_path)) as fs:
        fs.entry_xattrs = EntryXattrs(clock_ns=lambda: FAR_FUTURE_NS)   # no racy window
        directory = fs.open(fs.lookup(("d",)), write=False, directory=True)
        try:
            first = _listed_attributes(fs, directory, "f.txt")
            assert _listed_attributes(fs, directory, "f.txt") == first
            assert reads == ["f.txt"]
            time.sleep(0.05)                     # past a coarse clock tick: a new ctime
            handle = fs.open(fs.lookup(("d", "f.txt")), write=True)
            try:
                fs.set_attributes(handle, FA.HIDDEN | FA.ARCHIVE)
            finally:
                handle.close()
            assert _listed_attributes(fs, directory, "f.txt") & FA.HIDDEN
            assert reads == ["f.txt", "f.txt"]
            # a class with EaSize needs the listxattr it has not kept yet
            assert fs.entry_info(directory, "f.txt", ea_size=True).ea_size == 0
            assert fs.entry_info(directory, "f.txt", ea_size=True).ea_size == 0
            assert reads == ["f.txt", "f.txt", "f.txt"]
        finally:
            directory.close()


def test_a_freshly_changed_entry_is_not_kept(tmp_path):
    (tmp_path / "new.txt").write_bytes(b"x")
    with ShareFs(str(tmp_path)) as fs:
        root = fs.open(fs.lookup(()), write=False, directory=True)
        try:
            fs.entry_info(root, "new.txt")
            assert len(fs.entry_xattrs) == 0
            os.utime(tmp_path / "new.txt", ns=(0, 0))    # times, not ctime: still recent
            fs.entry_info(root, "new.txt")
            assert len(fs.entry_xattrs) == 0
        finally:
            root.close()
