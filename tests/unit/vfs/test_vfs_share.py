"""ShareFs names: open/create, mkdir, case-insensitive lookup, delete, rename, listing."""

import os
import stat
import subprocess

import pytest

from smbcad.proto.constants import FileAttributes as FA
from smbcad.proto.status import NtStatus as S
from smbcad.vfs import ShareFs


@pytest.fixture
def share(layout):
    return layout.share


def _names(fs, components=()):
    handle = fs.open(components, directory=True)
    try:
        return [e.name for e in fs.list_directory(handle)]
    finally:
        handle.close()


def test_root_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError):
        ShareFs(str(tmp_path / "missing"))


def test_context_manager_closes_root(layout):
    with ShareFs(str(layout.share)) as fs:
        assert fs.lookup(()).exists
    fs.close()   # idempotent


def test_create_then_open(fs, share, status_of):
    handle = fs.open(("new.txt",), write=True, create=True)
    assert handle.created and not handle.is_directory and handle.path == "new.txt"
    info = fs.stat(handle)
    assert info.attributes == FA.ARCHIVE and info.end_of_file == 0
    handle.close()
    handle.close()   # idempotent
    again = fs.open(("new.txt",), create=True)
    assert not again.created
    again.close()
    assert status_of(fs.open, ("new.txt",), create=True, exclusive=True) == S.OBJECT_NAME_COLLISION
    assert status_of(fs.open, ("NEW.TXT",), create=True, exclusive=True) == S.OBJECT_NAME_COLLISION
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((share / "new.txt").stat().st_mode) == 0o644 & ~umask


def test_open_errors(fs, share, status_of):
    (share / "file").write_bytes(b"x")
    (share / "dir").mkdir()
    assert status_of(fs.open, ("missing",)) == S.OBJECT_NAME_NOT_FOUND
    assert status_of(fs.open, ("missing", "x")) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.open, ("missing", "x"), create=True) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.open, ("file", "x")) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.open, ("file",), directory=True) == S.NOT_A_DIRECTORY
    assert status_of(fs.open, ("dir",), directory=False) == S.FILE_IS_A_DIRECTORY
    assert status_of(fs.open, ("dir",), truncate=True) == S.FILE_IS_A_DIRECTORY
    assert status_of(fs.open, ("file",), directory=True, create=True) == S.NOT_A_DIRECTORY
    handle = fs.open(("dir",), write=True)
    assert handle.is_directory
    handle.close()


def test_truncate_on_open(fs, share):
    (share / "file").write_bytes(b"old content")
    handle = fs.open(("file",), truncate=True)
    assert fs.stat(handle).end_of_file == 0
    handle.close()


def test_fifo_is_refused_without_hanging(fs, share, status_of):
    os.mkfifo(share / "pipe")
    assert status_of(fs.open, ("pipe",)) == S.ACCESS_DENIED
    assert status_of(fs.open, ("pipe",), write=True) == S.ACCESS_DENIED
    assert "pipe" in _names(fs)


def test_mkdir(fs, share, status_of):
    handle = fs.mkdir(("d",))
    assert handle.is_directory and handle.created
    assert fs.stat(handle).attributes == FA.DIRECTORY
    handle.close()
    assert status_of(fs.mkdir, ("d",)) == S.OBJECT_NAME_COLLISION
    assert status_of(fs.mkdir, ("D",)) == S.OBJECT_NAME_COLLISION
    assert status_of(fs.mkdir, ()) == S.OBJECT_NAME_COLLISION
    assert status_of(fs.mkdir, ("nope", "d")) == S.OBJECT_PATH_NOT_FOUND
    via_open = fs.open(("d", "e"), directory=True, create=True)
    assert via_open.created and (share / "d" / "e").is_dir()
    via_open.close()
    reopened = fs.open(("D", "E"), directory=True, create=True)
    assert not reopened.created and reopened.path == "d/e"
    reopened.close()


def test_case_insensitive_lookup(fs, share):
    (share / "Dir").mkdir()
    (share / "Dir" / "File.TXT").write_bytes(b"x")
    found = fs.lookup(("dIR", "file.txt"))
    assert found.exists and found.path == "Dir/File.TXT" and found.name == "File.TXT"
    missing = fs.lookup(("DIR", "New.txt"))
    assert not missing.exists and missing.path == "Dir/New.txt" and missing.parent == "Dir"
    handle = fs.open(("DIR", "New.txt"), write=True, create=True)
    assert handle.path == "Dir/New.txt"
    handle.close()
    assert sorted(os.listdir(share / "Dir")) == ["File.TXT", "New.txt"]


def test_case_insensitive_unicode(fs, share):
    (share / "ÉTÉ").mkdir()
    (share / "straße").write_bytes(b"")
    assert fs.lookup(("été",)).path == "ÉTÉ"
    assert fs.lookup(("STRASSE",)).exists is False      # no "ß"→"SS" folding (NTFS upcase is 1:1)
    assert fs.lookup(("STRAßE",)).path == "straße"


def test_exact_spelling_wins_then_lowest(fs, share):
    for name in ("ab", "AB", "aB"):
        (share / name).write_bytes(name.encode())
    assert fs.lookup(("aB",)).path == "aB"
    assert fs.lookup(("Ab",)).path == "AB"


def test_root_lookup(fs, share):
    root = fs.lookup(())
    assert root.exists and root.path == "" and root.info.is_directory
    assert root.info.file_id == share.stat().st_ino


def test_delete(fs, share, status_of):
    (share / "f").write_bytes(b"")
    (share / "d").mkdir()
    (share / "full").mkdir()
    (share / "full" / "x").write_bytes(b"")
    fs.delete(("F",))
    fs.delete(fs.lookup(("d",)))
    assert status_of(fs.delete, ("full",)) == S.DIRECTORY_NOT_EMPTY
    assert status_of(fs.delete, ()) == S.ACCESS_DENIED
    assert status_of(fs.delete, ("f",)) == S.OBJECT_NAME_NOT_FOUND
    assert status_of(fs.delete, fs.lookup(("f",))) == S.OBJECT_NAME_NOT_FOUND
    assert sorted(os.listdir(share)) == ["full"]


def test_delete_symlink_removes_only_the_link(fs, share):
    (share / "target").write_bytes(b"keep")
    os.symlink("target", share / "link")
    fs.delete(fs.open(("link",)))
    assert not os.path.lexists(share / "link") and (share / "target").read_bytes() == b"keep"


def test_delete_open_file_whose_path_was_reused(fs, share, status_of):
    (share / "a").write_bytes(b"1")
    handle = fs.open(("a",))
    os.rename(share / "a", share / "b")
    (share / "a").write_bytes(b"stranger")
    assert status_of(fs.delete, handle) == S.OBJECT_NAME_NOT_FOUND
    assert (share / "a").read_bytes() == b"stranger"
    handle.close()


def test_delete_open_file(fs, share):
    handle = fs.open(("x",), write=True, create=True)
    fs.delete(handle)
    handle.close()
    assert os.listdir(share) == []


def test_rename_basic(fs, share, status_of):
    (share / "a").write_bytes(b"a")
    (share / "sub").mkdir()
    new = fs.rename(("a",), ("SUB", "b"))
    assert new.exists and new.path == "sub/b"
    assert (share / "sub" / "b").read_bytes() == b"a"
    assert status_of(fs.rename, ("sub", "b"), ("nowhere", "c")) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.rename, ("missing",), ("c",)) == S.OBJECT_NAME_NOT_FOUND
    assert status_of(fs.rename, (), ("c",)) == S.ACCESS_DENIED
    assert status_of(fs.rename, ("sub",), ()) == S.ACCESS_DENIED
    assert status_of(fs.rename, ("sub",), ("sub", "inner")) == S.INVALID_PARAMETER


def test_rename_collision_and_replace(fs, share, status_of):
    (share / "a").write_bytes(b"a")
    (share / "B").write_bytes(b"b")
    assert status_of(fs.rename, ("a",), ("b",)) == S.OBJECT_NAME_COLLISION
    fs.rename(("a",), ("b",), replace=True)
    # The existing "B" was replaced and the client's spelling "b" is the new name.
    assert os.listdir(share) == ["b"] and (share / "b").read_bytes() == b"a"


def test_rename_replace_refusals(fs, share, status_of):
    (share / "a").write_bytes(b"a")
    (share / "dir").mkdir()
    (share / "ro").write_bytes(b"ro")
    os.chmod(share / "ro", 0o444)
    assert status_of(fs.rename, ("a",), ("dir",), True) == S.ACCESS_DENIED
    assert status_of(fs.rename, ("a",), ("ro",), True) == S.ACCESS_DENIED
    assert (share / "ro").read_bytes() == b"ro"


def test_rename_case_only(fs, share):
    (share / "Foo").write_bytes(b"x")
    handle = fs.open(("foo",))
    new = fs.rename(handle, ("FOO",))
    assert new.path == "FOO" and handle.path == "FOO"
    assert os.listdir(share) == ["FOO"]
    fs.rename(("FOO",), ("FOO",))          # same name: nothing to do
    assert os.listdir(share) == ["FOO"]
    handle.close()


def test_rename_case_only_directory(fs, share):
    (share / "dir").mkdir()
    (share / "dir" / "x").write_bytes(b"")
    fs.rename(("dir",), ("Dir",))
    assert os.listdir(share) == ["Dir"]


def test_rename_to_other_hard_link(fs, share):
    (share / "one").write_bytes(b"x")
    os.link(share / "one", share / "two")
    fs.rename(("one",), ("two",))
    assert os.listdir(share) == ["two"]


def test_rename_open_file_updates_path(fs, share):
    handle = fs.open(("f",), write=True, create=True)
    (share / "d").mkdir()
    fs.rename(handle, ("d", "g"))
    assert handle.path == "d/g" and handle.name == "g"
    fs.write(handle, 0, b"still works")
    assert (share / "d" / "g").read_bytes() == b"still works"
    handle.close()


def test_listing(fs, share, status_of):
    (share / "b.txt").write_bytes(b"12345")
    (share / "A").mkdir()
    (share / ".hidden").write_bytes(b"")
    entries = {}
    handle = fs.open((), directory=True)
    for entry in fs.list_directory(handle):
        entries[entry.name] = entry.info
    names = [e.name for e in fs.list_directory(handle)]
    assert status_of(fs.list_directory, fs.open(("b.txt",))) == S.INVALID_PARAMETER
    handle.close()
    assert names == [".", "..", ".hidden", "A", "b.txt"]
    assert entries["A"].attributes == FA.DIRECTORY and entries["A"].is_directory
    assert entries["b.txt"].end_of_file == 5 and entries["b.txt"].attributes == FA.ARCHIVE
    assert entries[".hidden"].attributes == FA.ARCHIVE | FA.HIDDEN
    assert entries["."].attributes == FA.DIRECTORY          # no HIDDEN for "." and ".."
    assert entries[".."].file_id == entries["."].file_id    # root's ".." is the root


def test_listing_skips_names_windows_cannot_see(fs, share):
    root = os.open(share, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for raw in (b"bad\xff", b"colon:name", b"star*", b"back\\slash", b"ctl\x01", b"ok"):
            os.close(os.open(raw, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=root))
    finally:
        os.close(root)
    assert _names(fs) == [".", "..", "ok"]


def test_listing_symlink_shows_target(fs, share):
    (share / "t").mkdir()
    os.symlink("t", share / "link")
    handle = fs.open((), directory=True)
    entries = {e.name: e.info for e in fs.list_directory(handle)}
    handle.close()
    assert entries["link"].is_directory and entries["link"].file_id == entries["t"].file_id


def test_statvfs_and_identity(fs, share):
    size = fs.statvfs()
    expect = os.statvfs(share)
    assert size.total_units == expect.f_blocks
    assert size.sectors_per_unit * size.bytes_per_sector == expect.f_frsize
    assert 0 <= size.free_units <= size.actual_free_units <= size.total_units
    ident = fs.fs_id()
    assert ident.fs_name == "NTFS" and ident.max_component_length == 255
    assert 0 <= ident.volume_serial <= 0xFFFFFFFF
    assert ident.fs_attributes & 0x2 and not ident.fs_attributes & 0x1


@pytest.fixture
def immutable(share):
    """A file root cannot change: chattr +i (root bypasses mode bits, not this)."""
    path = share / "frozen"
    path.write_bytes(b"ice")
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i not supported here")
    yield path
    subprocess.run(["chattr", "-i", str(path)], check=True)


def test_permission_denied_maps_to_access_denied(fs, immutable, status_of):
    assert status_of(fs.open, ("frozen",), write=True) == S.ACCESS_DENIED
    assert status_of(fs.delete, ("frozen",)) == S.ACCESS_DENIED
    assert status_of(fs.rename, ("frozen",), ("thawed",)) == S.ACCESS_DENIED
    handle = fs.open(("frozen",))
    assert status_of(fs.set_attributes, handle, FA.HIDDEN) == S.ACCESS_DENIED
    handle.close()


def test_entry_replaced_by_other_type_after_lookup(fs, share, status_of):
    (share / "x").write_bytes(b"")
    resolved = fs.lookup(("x",))
    os.unlink(share / "x")
    os.mkdir(share / "x")
    assert status_of(fs.open, resolved, directory=False) == S.FILE_IS_A_DIRECTORY
    handle = fs.open(resolved)
    assert handle.is_directory
    handle.close()


def test_listing_after_parent_renamed_under_handle(fs, share):
    (share / "a").mkdir()
    (share / "a" / "b").mkdir()
    handle = fs.open(("a", "b"), directory=True)
    os.rename(share / "a", share / "z")
    entries = fs.list_directory(handle)
    handle.close()
    assert [e.name for e in entries] == [".", ".."]
