"""The per-directory name index (name_index.py): case-insensitive lookups
without a scan per request, kept right when names change behind our back."""

import os
import subprocess
import sys
import threading
import tracemalloc

import pytest

from smbcad.proto.errors import SmbError
from smbcad.vfs import LargeDirectory, ShareFs
from smbcad.vfs.name_index import DirNames, NameIndex, fold


@pytest.fixture
def share(layout):
    return layout.share


def _scans(fs) -> int:
    return fs.name_index.scans


# -- DirNames, the sans-IO core ------------------------------------------------

def test_dir_names_match_add_remove():
    names = DirNames(["Report.TXT", "other"])
    assert names.match("report.txt") == "Report.TXT"
    assert names.match("Report.TXT") is None        # the exact spelling was tried already
    names.remove("Report.TXT")
    assert names.match("report.txt") is None and names.count == 1
    names.add("REPORT.txt")
    names.add("REPORT.txt")                          # twice: counted once
    assert names.match("report.TXT") == "REPORT.txt" and names.count == 2
    names.remove("never-there")
    assert names.count == 2


def test_dir_names_several_spellings_lowest_wins_and_survives_removal():
    names = DirNames(["ab", "AB", "aB"])
    assert names.match("Ab") == "AB"
    assert names.match("AB") == "aB"                 # not itself
    names.remove("AB")
    assert names.match("Ab") == "aB"
    names.remove("aB")
    assert names.match("Ab") == "ab" and names.count == 1


def test_dir_names_unicode_folding_as_ntfs():
    names = DirNames(["straße", "ÉTÉ", "ǅ"])
    assert names.match("été") == "ÉTÉ"
    assert names.match("STRASSE") is None            # 1:1 upcase, no "ß"→"SS"
    assert names.match("STRAßE") == "straße"
    assert fold("ß") == "ß" and fold("é") == "É"
    assert names.match("ǆ") == "ǅ"                    # titlecase digraph folds with its cases


def test_dir_names_skips_names_windows_cannot_show():
    names = DirNames(["bad:name", "ok", "a\\b", os.fsdecode(b"\xff-raw")])
    assert names.count == 1 and names.match("OK") == "ok"
    assert names.match("BAD:NAME") is None


# -- the index behind ShareFs -----------------------------------------------

def test_a_directory_is_scanned_once_for_many_misses(fs, share):
    for i in range(50):
        (share / f"File-{i}.txt").write_bytes(b"")
    assert fs.lookup(("FILE-1.TXT",)).path == "File-1.txt"
    scans = _scans(fs)
    for i in range(50):
        assert fs.lookup((f"file-{i}.TXT",)).path == f"File-{i}.txt"
        assert not fs.lookup((f"new-{i}.txt",)).exists
    assert _scans(fs) == scans


def test_a_name_made_behind_our_back_is_seen(fs, share):
    (share / "a").write_bytes(b"")
    assert not fs.lookup(("NEW.TXT",)).exists        # indexed, "new.txt" absent
    scans = _scans(fs)
    # Another process: not through this ShareFs at all.
    subprocess.run([sys.executable, "-c", f"open({str(share / 'new.txt')!r}, 'w')"], check=True)
    assert fs.lookup(("NEW.TXT",)).path == "new.txt"
    os.rename(share / "new.txt", share / "Moved.txt")
    assert not fs.lookup(("NEW.TXT",)).exists
    assert fs.lookup(("moved.TXT",)).path == "Moved.txt"
    os.unlink(share / "Moved.txt")
    assert not fs.lookup(("moved.TXT",)).exists
    assert _scans(fs) == scans                       # inotify's events, applied: no rescan


def test_our_own_create_rename_delete_keep_it_right(fs, share):
    (share / "d").mkdir()
    assert not fs.lookup(("d", "X.txt")).exists
    scans = _scans(fs)
    created = fs.open(("d", "X.txt"), write=True, create=True)
    created.close()
    assert fs.lookup(("d", "x.TXT")).path == "d/X.txt"
    assert fs.lookup(("D", "x.TXT")).path == "d/X.txt"     # the root indexed too
    fs.rename(("d", "X.txt"), ("d", "Y.txt"))
    assert not fs.lookup(("d", "x.txt")).exists
    assert fs.lookup(("d", "y.TXT")).path == "d/Y.txt"
    fs.rename(("d", "Y.txt"), ("d", "y.TXT"))        # case-only rename
    assert fs.lookup(("d", "Y.txt")).path == "d/y.TXT"
    fs.delete(("d", "y.TXT"))
    assert not fs.lookup(("d", "Y.TXT")).exists
    assert _scans(fs) == scans + 1                   # the root's, once
    # A create must collide with a name in another case, not add a twin.
    fs.open(("d", "Z"), write=True, create=True).close()
    again = fs.open(("d", "z"), write=True, create=True)
    assert again.path == "d/Z" and not again.created
    again.close()
    assert os.listdir(share / "d") == ["Z"]


def test_rename_target_checks_use_the_index(fs, share):
    (share / "d").mkdir()
    for name in ("src", "Other", "third"):
        (share / "d" / name).write_bytes(name.encode())
    assert not fs.lookup(("d", "NONE")).exists           # the directory is indexed
    scans = _scans(fs)
    with pytest.raises(SmbError) as err:
        fs.rename(("d", "src"), ("d", "OTHER"))           # taken in another case
    assert err.value.status == 0xC0000035                 # STATUS_OBJECT_NAME_COLLISION
    fs.rename(("d", "src"), ("d", "OTHER"), replace=True)
    assert sorted(os.listdir(share / "d")) == ["OTHER", "third"]
    assert (share / "d" / "OTHER").read_bytes() == b"src"
    fs.rename(("d", "third"), ("d", "Fourth"))
    assert fs.lookup(("d", "FOURTH")).path == "d/Fourth"
    assert _scans(fs) == scans


def test_a_directory_replaced_by_another_is_not_confused(fs, share):
    (share / "d").mkdir()
    (share / "d" / "Old").write_bytes(b"")
    assert fs.lookup(("d", "OLD")).path == "d/Old"
    (share / "d" / "Old").unlink()
    (share / "d").rmdir()
    (share / "d").mkdir()
    (share / "d" / "Fresh").write_bytes(b"")
    assert not fs.lookup(("d", "OLD")).exists
    assert fs.lookup(("d", "FRESH")).path == "d/Fresh"


def test_a_change_inotify_cannot_see_is_caught_by_the_stamp(fs, share):
    """As a writer on another node would look: names change, no event comes.
    Modelled by changing the directory while the index's watch is removed."""
    (share / "a").write_bytes(b"")
    assert not fs.lookup(("B",)).exists
    index = fs.name_index
    kept = next(iter(index._dirs.values()))
    del index._by_wd[kept.wd]                        # its events (IN_IGNORED too) go unseen
    index._inotify.unwatch(kept.wd)
    (share / "b").write_bytes(b"")                   # mtime moves, no event for us
    assert fs.lookup(("B",)).path == "b"


def test_eviction_by_directory_count_and_name_cap(share):
    fs = ShareFs(str(share))
    try:
        fs.name_index.max_dirs = 3
        for i in range(5):
            (share / f"d{i}").mkdir()
            (share / f"d{i}" / "n").write_bytes(b"")
            assert fs.lookup((f"d{i}", "N")).path == f"d{i}/n"
        assert len(fs.name_index) == 3
        fs.name_index.max_names = 2
        (share / "d4" / "m").write_bytes(b"")
        (share / "d4" / "o").write_bytes(b"")
        assert fs.lookup(("d4", "M")).path == "d4/m"   # still right after evicting
        assert fs.name_index.names <= 2
        # A directory larger than the whole cap is answered but not kept.
        big = share / "big"
        big.mkdir()
        for name in ("p", "q", "r"):
            (big / name).write_bytes(b"")
        assert fs.lookup(("big", "Q")).path == "big/q"
        assert fs.lookup(("big", "R")).path == "big/r"
        assert fs.name_index.names <= 2
    finally:
        fs.close()


def test_without_inotify_every_lookup_scans(share):
    def no_inotify():
        raise SmbError(0xC00000BB, "inotify_init1: too many instances")
    fs = ShareFs(str(share))
    fs.name_index.close()
    fs.name_index = NameIndex(inotify=no_inotify)
    fs._resolver.names = fs.name_index
    try:
        (share / "A").write_bytes(b"")
        assert fs.lookup(("a",)).path == "A"
        (share / "B").write_bytes(b"")
        assert fs.lookup(("b",)).path == "B"
        assert fs.name_index.scans == 2 and len(fs.name_index) == 0
    finally:
        fs.close()


def test_a_large_cold_directory_raises_but_a_warm_one_answers(fs, share):
    big = share / "big"
    big.mkdir()
    for i in range(400):
        (big / f"entry-{i:04d}.dat").write_bytes(b"")
    with pytest.raises(LargeDirectory):
        fs.lookup(("big", "ENTRY-0001.DAT"), max_scan_bytes=1024)
    assert fs.lookup(("big", "ENTRY-0001.DAT")).path == "big/entry-0001.dat"
    assert fs.lookup(("big", "ENTRY-0002.DAT"), max_scan_bytes=1024).path == "big/entry-0002.dat"


def test_case_sensitive_share_never_folds(share):
    (share / "Name").write_bytes(b"")
    with ShareFs(str(share), case_sensitive=True) as fs:
        assert fs.name_index is None
        assert fs.lookup(("Name",)).exists
        assert not fs.lookup(("NAME",)).exists
        handle = fs.open((), directory=True)
        try:
            assert fs.find_name(handle, "NAME") is None
            assert fs.find_name(handle, "Name") == "Name"
        finally:
            handle.close()


def test_find_name_uses_the_index(fs, share):
    (share / "Some Long Name.txt").write_bytes(b"")
    handle = fs.open((), directory=True)
    try:
        assert fs.find_name(handle, "SOME LONG NAME.TXT") == "Some Long Name.txt"
        assert fs.find_name(handle, "missing") is None
        assert fs.find_name(handle, "..") == ".."
        assert fs.find_name(handle, "bad:name") is None
    finally:
        handle.close()


def test_concurrent_lookups_and_changes_stay_right(fs, share):
    """Threads look names up while others create and delete them."""
    (share / "d").mkdir()
    errors = []

    def churn(tag):
        try:
            for i in range(200):
                path = share / "d" / f"{tag}-{i}"
                path.write_bytes(b"")
                assert fs.lookup(("d", f"{tag}-{i}".upper())).path == f"d/{tag}-{i}"
                path.unlink()
                assert not fs.lookup(("d", f"{tag}-{i}".upper())).exists
        except AssertionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_memory_per_name_is_within_the_documented_figure():
    names = [f"bench-file-{i:07d}-data.txt" for i in range(20_000)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = DirNames(names)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert index.count == 20_000
    # name_index.py's docstring: ~190 bytes a name, the name itself (made by
    # the scan, kept by the index) included.
    assert used / len(names) + sys.getsizeof(names[0]) < 200


def test_a_closed_index_keeps_nothing(share):
    (share / "A").write_bytes(b"")
    fs = ShareFs(str(share))
    index = fs.name_index
    fs.close()
    directory = os.open(share, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert index.match(directory, "a") == "A"       # a lookup that was under way
    finally:
        os.close(directory)
    assert len(index) == 0 and index._inotify is None
