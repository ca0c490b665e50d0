"""Named streams in the vfs: ``parse_smb_name`` and ``StreamHandle`` over xattrs
(smbcad/vfs/streams.py; [MS-FSCC] 2.1.5.3, [MS-FSA] 2.1.5.1, 2.1.5.15.12.1).

The share lives on tmp_path; every case needs user xattrs there (ext4, XFS,
Btrfs and tmpfs >= 6.6 have them) and is skipped otherwise.
"""

import os

import pytest

from smbcad.proto.status import NtStatus
from smbcad.vfs import OpenFile, StreamHandle, parse_smb_name, parse_smb_path
from smbcad.vfs import streams as vfs_streams

NAMES = [
    ("f", (("f",), None)),
    ("f::$DATA", (("f",), "")),
    ("f::$data", (("f",), "")),
    ("d\\f:s", (("d", "f"), "s")),
    ("f:s:$DaTa", (("f",), "s")),
    ("f:\x05Stream\n One", (("f",), "\x05Stream\n One")),     # controls are fine in streams
    ("f:?Stream*", (("f",), "?Stream*")),                     # so are wildcards
    (":s", ((), "s")),                                         # a stream of the share root
    ("f:s\\", (("f",), "s")),                                  # the caller judges the backslash
]

BAD_NAMES = [
    ("f:", NtStatus.OBJECT_NAME_INVALID),             # [MS-FSA] 2.1.5.1 phase 5
    ("f:s:", NtStatus.OBJECT_NAME_INVALID),
    ("f:s:$FOO", NtStatus.OBJECT_NAME_INVALID),       # phase 6: unknown type
    ("f:s:?D*a", NtStatus.OBJECT_NAME_INVALID),
    ("f:s:$DATA:x", NtStatus.OBJECT_NAME_INVALID),    # more than two ':'
    ("dir:$I30:$INDEX_ALLOCATION", NtStatus.OBJECT_NAME_INVALID),
    ("f:a/b", NtStatus.OBJECT_NAME_INVALID),          # [MS-FSCC] 2.1.5.3
    ("f:a\x00b", NtStatus.OBJECT_NAME_INVALID),
    ("f:" + "x" * 256, NtStatus.OBJECT_NAME_INVALID),
    ("f:bad\ud800", NtStatus.OBJECT_NAME_INVALID),
    ("d:s\\f", NtStatus.OBJECT_NAME_INVALID),         # streams only in the last component
    ("d*\\f:s", NtStatus.OBJECT_NAME_INVALID),
    ("d\\x*:s", NtStatus.OBJECT_NAME_INVALID),        # the file part is still a file name
    ("d\\:s", NtStatus.OBJECT_NAME_INVALID),
    (".:s", NtStatus.OBJECT_NAME_INVALID),
]


@pytest.mark.parametrize(("name", "expected"), NAMES)
def test_parse_smb_name(name, expected):
    assert parse_smb_name(name) == expected


@pytest.mark.parametrize(("name", "status"), BAD_NAMES)
def test_parse_smb_name_rejects(name, status, status_of):
    assert status_of(parse_smb_name, name) == status


@pytest.mark.parametrize("name", ["f:s", ":s", "::$DATA", "f:s:$DATA"])
def test_parse_smb_path_still_refuses_streams(name, status_of):
    assert status_of(parse_smb_path, name) == NtStatus.OBJECT_NAME_INVALID


@pytest.fixture
def xfs(fs, layout):
    if not fs.user_xattrs():
        pytest.skip("no user xattrs on tmp_path")
    (layout.share / "f").write_bytes(b"base data")
    (layout.share / "d").mkdir()
    return fs


def _read(fs, handle, length=100, offset=0) -> bytes:
    buf = bytearray(length)
    return bytes(buf[:fs.read_into(handle, offset, memoryview(buf))])


def _new_stream(fs, path, name) -> StreamHandle:
    handle = fs.open_stream(fs.lookup(tuple(path.split("/"))), name)
    fs.create_stream(handle)
    return handle


def test_stream_lives_in_an_xattr_beside_the_data(xfs, layout):
    handle = _new_stream(xfs, "f", "Zone.Identifier")
    assert handle.created and handle.exists and not handle.is_directory
    assert xfs.write(handle, 0, b"[ZoneTransfer]") == 14
    assert xfs.write(handle, 1, b"z") == 1
    assert _read(xfs, handle) == b"[zoneTransfer]"
    assert _read(xfs, handle, 4, 9) == b"sfer"
    assert _read(xfs, handle, 4, 99) == b""
    handle.close()
    assert (layout.share / "f").read_bytes() == b"base data"
    assert os.getxattr(layout.share / "f", "user.smbca.stream.Zone.Identifier") == b"[zoneTransfer]"


def test_write_past_the_end_zero_fills(xfs):
    handle = _new_stream(xfs, "f", "s")
    xfs.write(handle, 4, b"x")
    assert _read(xfs, handle) == b"\x00\x00\x00\x00x"
    handle.close()


def test_stat_is_the_files_but_with_the_streams_size(xfs):
    base = xfs.open(("f",))
    handle = _new_stream(xfs, "f", "s")
    xfs.write(handle, 0, b"12345")
    file_info, stream_info = xfs.stat(base), xfs.stat(handle)
    assert stream_info.end_of_file == 5 and stream_info.allocation_size == 4096
    assert (stream_info.file_id, stream_info.creation_time, stream_info.attributes) == \
        (file_info.file_id, file_info.creation_time, file_info.attributes)
    assert file_info.end_of_file == 9
    base.close()
    handle.close()


def test_truncate_and_allocate(xfs):
    handle = _new_stream(xfs, "f", "s")
    xfs.write(handle, 0, b"abcdef")
    xfs.truncate(handle, 3)
    assert _read(xfs, handle) == b"abc"
    xfs.truncate(handle, 5)
    assert _read(xfs, handle) == b"abc\x00\x00"
    xfs.allocate(handle, 2)
    assert _read(xfs, handle) == b"ab"
    xfs.allocate(handle, 4096)          # above the end: a hint only
    assert _read(xfs, handle) == b"ab"
    handle.close()


def test_growth_past_an_xattr_is_disk_full(xfs, status_of):
    handle = _new_stream(xfs, "f", "s")
    xfs.write(handle, 0, b"keep")
    assert status_of(xfs.write, handle, vfs_streams.MAX_STREAM_BYTES, b"x") == NtStatus.DISK_FULL
    assert status_of(xfs.truncate, handle, vfs_streams.MAX_STREAM_BYTES + 1) == NtStatus.DISK_FULL
    assert _read(xfs, handle) == b"keep"
    handle.close()


def test_names_are_case_insensitive_and_keep_their_spelling(xfs):
    _new_stream(xfs, "f", "StreamName").close()
    again = xfs.open_stream(xfs.lookup(("f",)), "STREAMNAME")
    assert again.exists and again.stream == "StreamName"
    again.close()
    base = xfs.open(("f",))
    assert [(s.name, s.size) for s in xfs.stream_list(base)] == [("", 9), ("StreamName", 0)]
    base.close()


def test_directories_carry_named_streams_only(xfs):
    _new_stream(xfs, "d", "s").close()
    directory = xfs.open(("d",))
    assert [s.wire_name for s in xfs.stream_list(directory)] == [":s:$DATA"]
    directory.close()


def test_missing_stream_is_not_created_by_open(xfs, layout):
    handle = xfs.open_stream(xfs.lookup(("f",)), "nope")
    assert not handle.exists
    handle.close()
    assert "user.smbca.stream.nope" not in os.listxattr(layout.share / "f")


def test_stream_name_too_long_for_an_xattr(xfs, status_of):
    name = "é" * 119            # 238 UTF-8 bytes: one more than fits after the prefix
    assert status_of(xfs.open_stream, xfs.lookup(("f",)), name) == NtStatus.OBJECT_NAME_INVALID


def test_delete_of_a_stream_handle_removes_only_the_stream(xfs, layout):
    handle = _new_stream(xfs, "f", "s")
    xfs.delete(handle)
    handle.close()
    assert (layout.share / "f").read_bytes() == b"base data"
    assert not [n for n in os.listxattr(layout.share / "f") if n.startswith("user.smbca.stream.")]


def test_rename_stream(xfs, status_of):
    one = _new_stream(xfs, "f", "one")
    xfs.write(one, 0, b"data")
    two = _new_stream(xfs, "f", "two")
    xfs.write(two, 0, b"full")
    assert status_of(xfs.rename_stream, one, "TWO", False) == NtStatus.OBJECT_NAME_COLLISION
    assert status_of(xfs.rename_stream, one, "two", True) == NtStatus.INVALID_PARAMETER
    xfs.truncate(two, 0)
    xfs.rename_stream(one, "two", True)         # an empty target is replaced
    assert one.stream == "two" and _read(xfs, one) == b"data"
    xfs.rename_stream(one, "TWO", False)        # a case-only change is a no-op
    assert one.stream == "two"
    base = xfs.open(("f",))
    assert [s.name for s in xfs.stream_list(base)] == ["", "two"]
    for handle in (one, two, base):
        handle.close()


def test_stream_onto_the_default_stream(xfs, layout, status_of):
    (layout.share / "empty").write_bytes(b"")
    handle = _new_stream(xfs, "empty", "s")
    xfs.write(handle, 0, b"moved")
    assert status_of(xfs.stream_to_default, handle, False) == NtStatus.OBJECT_NAME_COLLISION
    base = xfs.stream_to_default(handle, True)
    assert isinstance(base, OpenFile) and not isinstance(base, StreamHandle)
    assert (layout.share / "empty").read_bytes() == b"moved"
    assert [s.name for s in xfs.stream_list(base)] == [""]
    handle.close()
    base.close()


def test_overwrite_drops_closed_streams(xfs):
    _new_stream(xfs, "f", "closed").close()
    busy = _new_stream(xfs, "f", "busy")
    base = xfs.open(("f",), write=True)
    xfs.remove_streams(base)
    assert [s.name for s in xfs.stream_list(base)] == ["", "busy"]
    busy.close()
    base.close()


def test_file_deleted_with_open_streams_goes_with_the_last_one(xfs, layout):
    first, second = _new_stream(xfs, "f", "a"), _new_stream(xfs, "f", "b")
    base = xfs.open(("f",))
    key = first.file_key
    xfs.delete(base)
    base.close()
    assert (layout.share / "f").exists() and xfs.open_streams.unlink_pending(key)
    assert _read(xfs, first) == b""             # the open streams still work
    first.close()
    assert (layout.share / "f").exists()
    second.close()
    assert not (layout.share / "f").exists() and not xfs.open_streams.unlink_pending(key)


def test_deferred_delete_spares_a_new_file_under_the_name(xfs, layout):
    handle = _new_stream(xfs, "f", "a")
    base = xfs.open(("f",))
    xfs.delete(base)
    base.close()
    os.rename(layout.share / "f", layout.share / "g")
    (layout.share / "f").write_bytes(b"new")
    handle.close()
    assert (layout.share / "f").read_bytes() == b"new" and (layout.share / "g").exists()


def test_streams_never_reach_the_files_data_through_fsctls(xfs, layout, status_of):
    handle = _new_stream(xfs, "f", "s")
    xfs.write(handle, 0, b"abcdef")
    xfs.punch_hole(handle, 1, 2)
    assert _read(xfs, handle) == b"a\x00\x00def"
    assert xfs.allocated_ranges(handle, 0, 6) == [(0, 6)]
    copy = xfs.duplicate(handle)
    assert isinstance(copy, StreamHandle) and copy.stream == "s"
    base = xfs.open(("f",), write=True)
    assert xfs.copy_range(copy, 0, base, 0, 3) == 3          # stream → file
    assert xfs.copy_range(base, 3, handle, 6, 3) == 3         # file → stream
    assert (layout.share / "f").read_bytes() == b"a\x00\x00e data"
    assert _read(xfs, handle) == b"a\x00\x00defe d"
    assert status_of(xfs.clone_range, handle, 0, base, 0, 1) == NtStatus.INVALID_DEVICE_REQUEST
    for item in (copy, handle, base):
        item.close()


def test_rename_refuses_a_stream_source(xfs, status_of):
    handle = _new_stream(xfs, "f", "s")
    assert status_of(xfs.rename, handle, ("g",)) == NtStatus.INVALID_PARAMETER
    handle.close()


def test_without_xattrs_there_are_no_streams(fs, layout, status_of, monkeypatch):
    (layout.share / "f").write_bytes(b"x")
    monkeypatch.setattr(fs, "_user_xattrs", False)
    assert status_of(fs.open_stream, fs.lookup(("f",)), "s") == NtStatus.OBJECT_NAME_INVALID
    base = fs.open(("f",))
    assert [s.name for s in fs.stream_list(base)] == [""]
    base.close()
    assert not fs.fs_id().fs_attributes & 0x00040000


def test_fs_attributes_advertise_streams_and_eas(xfs):
    assert xfs.fs_id().fs_attributes & (0x00040000 | 0x00800000) == 0x00840000


def test_stream_handle_is_an_openfile_with_the_bases_fd():
    handle = StreamHandle(-1, "f", False, stream="s")
    assert isinstance(handle, OpenFile) and handle.closed
    handle.close()
