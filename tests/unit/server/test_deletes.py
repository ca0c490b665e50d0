"""A directory whose entries are all delete-pending counts as empty
(smbcad/server/deletes.py; smbtorture smb2.notify.rec, mask-change)."""

import os
from types import SimpleNamespace

from smbcad.server.deletes import directory_is_empty
from smbcad.server.opens import FileState
from smbcad.vfs import ShareFs


def _key(fs, path):
    return fs.volume.key_of(os.stat(path))


def _server(*states):
    return SimpleNamespace(opens=SimpleNamespace(
        file_state={state.key: state for state in states}.get))


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
        pending = FileState(_key(fs, tmp_path / "d" / "sub"), opens=[object()],
                            delete_pending=True)
        open_only = FileState(_key(fs, tmp_path / "d" / "f"), opens=[object()])
        handle = fs.open(fs.lookup(("d",)), write=False, directory=True)
        try:
            assert not directory_is_empty(_server(pending, open_only), fs, handle)
            open_only.delete_pending = True
            assert directory_is_empty(_server(pending, open_only), fs, handle)
            pending.delete_pending = False          # the disposition was taken back
            assert not directory_is_empty(_server(pending, open_only), fs, handle)
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
