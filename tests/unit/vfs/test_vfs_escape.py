"""Path escapes against a real ShareFs: every trick fails and nothing outside is touched.

The ``guard`` fixture watches the outside directories with inotify (any open,
read, write, create, delete or rename fails the test) and compares contents,
sizes and times of everything there before and after.
"""

import os

import pytest

from smbcad.proto.status import NtStatus as S
from smbcad.vfs import parse_smb_path

pytestmark = pytest.mark.usefixtures("guard")


@pytest.fixture
def links(layout):
    """Symlinks planted in the share, as a hostile local user could."""
    share = layout.share
    (share / "sub").mkdir()
    (share / "sub" / "deep").mkdir()
    (share / "file.txt").write_bytes(b"inside")
    os.symlink("/etc", share / "abs_etc")
    os.symlink(layout.secret, share / "abs_secret")
    os.symlink("../outside/secret", share / "rel_secret")
    os.symlink("../../outside/secret", share / "sub" / "rel_secret")
    os.symlink("../../../outside/secret", share / "sub" / "deep" / "rel_secret")
    os.symlink(layout.outdir, share / "abs_outdir")
    os.symlink("../outside/outdir", share / "rel_outdir")
    os.symlink("..", share / "dotdot")
    os.symlink("/", share / "slash")
    os.symlink("/proc/self/root", share / "magic")
    os.symlink("loop_b", share / "loop_a")
    os.symlink("loop_a", share / "loop_b")
    os.symlink("self", share / "self")
    os.symlink("does_not_exist", share / "dangling")
    return share


ESCAPING_LEAVES = ["abs_etc", "abs_secret", "rel_secret", "sub\\rel_secret", "sub\\deep\\rel_secret",
                   "abs_outdir", "rel_outdir", "dotdot", "slash", "magic", "loop_a", "self",
                   "dangling", "ABS_SECRET", "Rel_Outdir"]

THROUGH_ESCAPING_DIRS = ["abs_etc\\passwd", "abs_outdir\\child", "rel_outdir\\child",
                         "dotdot\\outside\\secret", "slash\\etc\\passwd", "magic\\etc\\passwd",
                         "loop_a\\x", "self\\x", "dangling\\x", "abs_secret\\x",
                         "ABS_OUTDIR\\CHILD", "sub\\rel_secret\\x"]


@pytest.mark.parametrize("name", ["..", "..\\..\\secret", "..\\outside\\secret",
                                  "sub\\..\\..\\outside\\secret", "/etc/passwd", "\\etc\\passwd",
                                  "..\\share\\..\\outside\\secret", "sub\\..\\..\\..\\etc",
                                  "rel_secret:$DATA", "file.txt:secret:$DATA", "a\\..\\/etc/passwd"])
def test_dotdot_absolute_and_streams_rejected_by_parser(links, name):
    with pytest.raises(Exception) as caught:
        parse_smb_path(name)
    assert caught.value.status in (S.OBJECT_PATH_SYNTAX_BAD, S.INVALID_PARAMETER, S.OBJECT_NAME_INVALID)


@pytest.mark.parametrize("components", [("..",), ("..", "outside", "secret"), ("/etc",),
                                        ("sub/../../outside",), ("",), (".",), ("a\x00",)])
def test_raw_components_rejected_even_without_the_parser(fs, links, status_of, components):
    """The port re-checks components; the kernel would refuse anyway."""
    assert status_of(fs.lookup, components) == S.OBJECT_NAME_INVALID
    assert status_of(fs.open, components, create=True) == S.OBJECT_NAME_INVALID


@pytest.mark.parametrize("name", ESCAPING_LEAVES)
def test_escaping_leaf_is_not_found(fs, links, status_of, name):
    components = parse_smb_path(name)
    resolved = fs.lookup(components)
    assert not resolved.exists and resolved.info is None
    assert status_of(fs.stat_path, components) == S.OBJECT_NAME_NOT_FOUND
    assert status_of(fs.open, components) == S.OBJECT_NAME_NOT_FOUND
    assert status_of(fs.open, components, directory=True) == S.OBJECT_NAME_NOT_FOUND
    assert status_of(fs.open, components, write=True, truncate=True) == S.OBJECT_NAME_NOT_FOUND
    assert status_of(fs.delete, components) == S.OBJECT_NAME_NOT_FOUND
    assert status_of(fs.rename, components, ("renamed",)) == S.OBJECT_NAME_NOT_FOUND


@pytest.mark.parametrize("name", ESCAPING_LEAVES)
def test_create_over_escaping_leaf_never_follows(fs, links, status_of, name):
    components = parse_smb_path(name)
    # The name is taken (by the symlink): exclusive create collides, open-if is refused.
    assert status_of(fs.open, components, write=True, create=True, exclusive=True) \
        == S.OBJECT_NAME_COLLISION
    assert status_of(fs.open, components, write=True, create=True, truncate=True) \
        == S.ACCESS_DENIED
    assert status_of(fs.open, components, directory=True, create=True) == S.ACCESS_DENIED
    assert status_of(fs.mkdir, components) == S.OBJECT_NAME_COLLISION


@pytest.mark.parametrize("name", THROUGH_ESCAPING_DIRS)
def test_path_through_escaping_symlink_is_path_not_found(fs, links, status_of, name):
    components = parse_smb_path(name)
    assert status_of(fs.lookup, components) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.stat_path, components) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.open, components) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.open, components, write=True, create=True) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.mkdir, components) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.delete, components) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.rename, ("file.txt",), components) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.rename, components, ("file2.txt",)) == S.OBJECT_PATH_NOT_FOUND


@pytest.mark.parametrize("target", ["abs_outdir\\new", "rel_outdir\\new", "dotdot\\new",
                                    "abs_outdir\\child", "slash\\tmp\\new"])
def test_rename_into_escaping_dir_refused(fs, links, status_of, target):
    status = status_of(fs.rename, ("file.txt",), parse_smb_path(target), replace=True)
    assert status == S.OBJECT_PATH_NOT_FOUND
    assert (links / "file.txt").read_bytes() == b"inside"


def test_rename_of_open_file_into_escaping_dir_refused(fs, links, status_of):
    handle = fs.open(("file.txt",), write=True)
    try:
        assert status_of(fs.rename, handle, ("rel_outdir", "moved"), True) == S.OBJECT_PATH_NOT_FOUND
        assert handle.path == "file.txt"
    finally:
        handle.close()


def test_rename_onto_escaping_symlink_does_not_replace_target(fs, links, status_of):
    assert status_of(fs.rename, ("file.txt",), ("abs_secret",), replace=True) \
        == S.OBJECT_NAME_COLLISION
    assert os.readlink(links / "abs_secret")


def test_delete_does_not_follow(fs, links, status_of):
    # Through the escaping link: refused.  The link itself is only reachable as "not found".
    assert status_of(fs.delete, ("abs_outdir", "child")) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.delete, ("abs_outdir",)) == S.OBJECT_NAME_NOT_FOUND


def test_listing_skips_escaping_symlinks_and_leaks_no_outside_inode(fs, layout, links):
    root = fs.open((), directory=True)
    try:
        entries = fs.list_directory(root)
    finally:
        root.close()
    names = [e.name for e in entries]
    assert names[:2] == [".", ".."]
    assert set(names[2:]) == {"file.txt", "sub"}
    assert not {e.info.file_id for e in entries} & layout.outside_inodes


def test_listing_through_escaping_dir_refused(fs, links, status_of):
    for name in ("abs_outdir", "rel_outdir", "dotdot", "slash", "magic"):
        assert status_of(fs.open, (name,), directory=True) == S.OBJECT_NAME_NOT_FOUND


def test_listing_sub_shows_share_root_as_dotdot(fs, layout, links):
    handle = fs.open(("sub",), directory=True)
    try:
        entries = fs.list_directory(handle)
    finally:
        handle.close()
    names = [e.name for e in entries]
    assert names == [".", "..", "deep"]
    assert entries[1].info.file_id == layout.share.stat().st_ino


def test_in_share_symlinks_still_work(fs, links):
    os.symlink("sub/deep", links / "deep_link")
    os.symlink("../file.txt", links / "sub" / "up_link")
    os.symlink("../../sub", links / "sub" / "deep" / "climb")
    assert fs.lookup(("deep_link",)).info.is_directory
    handle = fs.open(("sub", "up_link"))
    try:
        buffer = bytearray(16)
        assert fs.read_into(handle, 0, memoryview(buffer)) == 6
        assert bytes(buffer[:6]) == b"inside"
    finally:
        handle.close()
    # A relative link climbing inside the share resolves from the root, so it works.
    assert fs.lookup(("sub", "deep", "climb", "deep")).info.is_directory


def test_swap_parent_for_escaping_link_after_lookup(fs, layout, links, status_of):
    """TOCTOU: the directory is replaced by an escaping symlink between lookup and open."""
    (links / "victim").mkdir()
    (links / "victim" / "child").write_bytes(b"ok")
    resolved = fs.lookup(("victim", "child"))
    assert resolved.exists
    os.rename(links / "victim", links / "old_victim")
    os.symlink(layout.outdir, links / "victim")
    assert status_of(fs.open, resolved, write=True, truncate=True) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.delete, resolved) == S.OBJECT_PATH_NOT_FOUND
    assert status_of(fs.rename, resolved, ("stolen",)) == S.OBJECT_PATH_NOT_FOUND


def test_swap_leaf_for_escaping_link_after_lookup(fs, layout, links, status_of):
    resolved = fs.lookup(("file.txt",))
    os.rename(links / "file.txt", links / "file.old")
    os.symlink(layout.secret, links / "file.txt")
    assert status_of(fs.open, resolved, write=True, truncate=True) == S.OBJECT_NAME_NOT_FOUND


def test_hard_link_is_not_an_escape_vector_here(fs, layout, links):
    """A hard link is the same inode, not a path: only someone with write access
    to both trees can make one, so it is out of scope (documented)."""
    assert fs.lookup(("file.txt",)).info.number_of_links == 1


def test_rename_onto_case_variant_of_escaping_symlink(fs, links, status_of):
    assert status_of(fs.rename, ("file.txt",), ("ABS_SECRET",)) == S.OBJECT_NAME_COLLISION
    assert status_of(fs.rename, ("file.txt",), ("Abs_Outdir",), True) == S.OBJECT_NAME_COLLISION
    assert (links / "file.txt").read_bytes() == b"inside"


def test_escaping_symlink_to_directory_cannot_be_listed_via_child_names(fs, links, status_of):
    """Listing a child through the link, by exact or case-folded name."""
    for name in (("abs_outdir", "child"), ("ABS_OUTDIR",), ("rel_outdir",)):
        assert status_of(fs.open, name, directory=True) in (S.OBJECT_NAME_NOT_FOUND,
                                                             S.OBJECT_PATH_NOT_FOUND)


@pytest.mark.parametrize("path", ["..", "../outside/secret", "/etc/passwd", "sub/../../outside",
                                  "abs_outdir/child", "dotdot/outside/secret", "sub/..", "."])
def test_hand_made_resolved_cannot_escape(fs, links, status_of, path):
    """Even a Resolved forged by buggy upper layers stays in the share (kernel + leaf checks)."""
    from smbcad.vfs import Resolved

    bad_statuses = {S.OBJECT_NAME_INVALID, S.OBJECT_NAME_NOT_FOUND, S.OBJECT_PATH_NOT_FOUND,
                    S.OBJECT_NAME_COLLISION, S.ACCESS_DENIED, S.FILE_IS_A_DIRECTORY}
    existing = Resolved(path, True, fs.lookup(("file.txt",)).info)
    missing = Resolved(path, False)
    assert status_of(fs.open, existing, write=True, truncate=True) in bad_statuses
    assert status_of(fs.open, missing, write=True, create=True) in bad_statuses
    assert status_of(fs.open, missing, directory=True, create=True) in bad_statuses
    assert status_of(fs.delete, existing) in bad_statuses
    assert status_of(fs.rename, existing, ("moved",)) in bad_statuses
