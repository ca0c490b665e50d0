"""A directory whose entries are all delete-pending counts as empty
(smbcad/server/deletes.py; smbtorture smb2.notify.rec, mask-change)."""

import os
from types import SimpleNamespace

from smbcad.openstate.db import OpenStateDb
from smbcad.server.deletes import directory_is_empty
from smbcad.vfs import ShareFs


def _key(fs, path):
    return fs.volume.key_of(os.stat(path))


def _server(db=None):
    """What directory_is_empty asks of the server: the open-state database."""
    db = db or OpenStateDb.private()
    return SimpleNamespace(opens=SimpleNamespace(delete_pending=db.delete_pending))


def test_empty_and_non_empty_directories(tmp_path):
    (tmp_path / "d").mkdir()
    with ShareFs(str(tmp_path)) as fs:
        handle = fs.open(fs.lookup(("d",)), write=False, directory=True)
        try:
            assert directory_is_empty(_server(), fs, handle)
            (tmp_path / "d" / "f").write_bytes(b"x")
            assert not directory_is_empty(_server(), fs, handle)
        finally:
            handle.close()


def test_delete_pending_entries_held_open_do_not_count(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "f").write_bytes(b"x")
    with ShareFs(str(tmp_path)) as fs:
        db = OpenStateDb.private()
        pending, open_only = _key(fs, tmp_path / "d" / "sub"), _key(fs, tmp_path / "d" / "f")
        db.add_open(pending, 1, 0x10000, 7)
        db.set_delete_pending(pending, True)
        db.add_open(open_only, 2, 0x1, 7)
        handle = fs.open(fs.lookup(("d",)), write=False, directory=True)
        try:
            assert not directory_is_empty(_server(db), fs, handle)
            db.set_delete_pending(open_only, True)
            assert directory_is_empty(_server(db), fs, handle)
            db.set_delete_pending(pending, False)      # the disposition was taken back
            assert not directory_is_empty(_server(db), fs, handle)
        finally:
            handle.close()


def test_a_large_directory_is_not_read_whole(tmp_path):
    """The first live entry decides: a 2,000-entry directory is not listed."""
    big = tmp_path / "d"
    big.mkdir()
    for index in range(2000):
        (big / f"f{index:04d}").touch()
    with ShareFs(str(tmp_path)) as fs:
        read = []
        names = fs.iter_names

        def counted(handle):
            for name in names(handle):
                read.append(name)
                yield name
        fs.iter_names = counted
        handle = fs.open(fs.lookup(("d",)), write=False, directory=True)
        try:
            assert not directory_is_empty(_server(), fs, handle)
        finally:
            handle.close()
    assert len(read) == 1


def test_each_check_reads_the_directory_from_its_start(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "only").touch()
    with ShareFs(str(tmp_path)) as fs:
        handle = fs.open(fs.lookup(("d",)), write=False, directory=True)
        try:
            assert not directory_is_empty(_server(), fs, handle)
            assert not directory_is_empty(_server(), fs, handle)   # not past its one entry
        finally:
            handle.close()
