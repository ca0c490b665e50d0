"""Extended attributes in the vfs (smbcad/vfs/eas.py; [MS-FSCC] 2.4.16,
[MS-FSA] 2.1.5.12.10, 2.1.5.15.6): one user xattr per EA, keyed by the
upper-cased name, the client's spelling and flags kept in the value."""

import os

import pytest

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import FsccStatus, FullEa, packed_ea_size
from smbcad.proto.status import NtStatus
from smbcad.vfs import eas


@pytest.fixture
def xfs(fs, layout):
    if not fs.user_xattrs():
        pytest.skip("no user xattrs on tmp_path")
    (layout.share / "f").write_bytes(b"data")
    (layout.share / "d").mkdir()
    return fs


def test_value_layout_pins_bytes():
    assert eas.encode(FullEa("NewEa", b"v", 0x80)) == b"\x80\x05NewEav"
    assert eas.decode("NEWEA", b"\x80\x05NewEav") == FullEa("NewEa", b"v", 0x80)


def test_foreign_value_reads_as_the_bare_value():
    assert eas.decode("X", b"raw") == FullEa("X", b"raw", 0)
    assert eas.decode("X", b"\x00\x05Other") == FullEa("X", b"\x00\x05Other", 0)


def test_set_query_delete(xfs, layout):
    handle = xfs.open(("f",), write=True)
    xfs.set_eas(handle, [FullEa("SecondEA", b"ValueTwo"), FullEa("EAONE", b"VALUE1")])
    assert xfs.get_eas(handle) == [FullEa("EAONE", b"VALUE1"), FullEa("SecondEA", b"ValueTwo")]
    assert os.getxattr(layout.share / "f", "user.smbca.ea.SECONDEA") == b"\x00\x08SecondEAValueTwo"
    assert xfs.ea_size(handle) == 41 == packed_ea_size(xfs.get_eas(handle))
    xfs.set_eas(handle, [FullEa("secondea", b"")])           # empty value deletes, any case
    assert xfs.get_eas(handle) == [FullEa("EAONE", b"VALUE1")]
    xfs.set_eas(handle, [FullEa("nothere", b"")])            # deleting nothing is fine
    xfs.set_eas(handle, [FullEa("eaone", b"new", 0x80)])     # replaced, new spelling kept
    assert xfs.get_eas(handle) == [FullEa("eaone", b"new", 0x80)]
    handle.close()
    assert (layout.share / "f").read_bytes() == b"data"


def test_no_eas_is_size_zero(xfs):
    handle = xfs.open(("f",))
    assert xfs.get_eas(handle) == [] and xfs.ea_size(handle) == 0
    handle.close()


def test_too_large_changes_nothing(xfs, status_of):
    handle = xfs.open(("f",), write=True)
    xfs.set_eas(handle, [FullEa("KEEP", b"1")])
    big = [FullEa(f"E{i}", b"x" * 60000) for i in range(2)]
    assert status_of(xfs.set_eas, handle, big) == NtStatus.EA_TOO_LARGE
    assert xfs.get_eas(handle) == [FullEa("KEEP", b"1")]
    handle.close()


def test_what_the_file_system_cannot_hold_is_undone(xfs, status_of):
    handle = xfs.open(("f",), write=True)
    xfs.set_eas(handle, [FullEa("A", b"1")])
    # 30 KiB + 30 KiB: within the EA limit; ext4 (one 4 KiB block) cannot hold it.
    changes = [FullEa("A", b""), FullEa("B", b"x" * 30000), FullEa("C", b"y" * 30000)]
    try:
        xfs.set_eas(handle, changes)
    except SmbError as exc:
        assert exc.status == NtStatus.DISK_FULL
        assert xfs.get_eas(handle) == [FullEa("A", b"1")]
    else:
        assert [ea.name for ea in xfs.get_eas(handle)] == ["B", "C"]
    handle.close()


def test_name_too_long_for_an_xattr(xfs, status_of):
    handle = xfs.open(("f",), write=True)
    name = "N" * (eas.MAX_NAME_BYTES + 1)
    assert status_of(xfs.set_eas, handle, [FullEa(name, b"v")]) == FsccStatus.INVALID_EA_NAME
    handle.close()


def test_stream_handle_sees_the_files_eas(xfs):
    handle = xfs.open(("f",), write=True)
    xfs.set_eas(handle, [FullEa("E", b"v")])
    stream = xfs.open_stream(xfs.lookup(("f",)), "s")
    assert xfs.get_eas(stream) == [FullEa("E", b"v")]
    assert xfs.ea_size(stream) == xfs.ea_size(handle)
    stream.close()
    handle.close()


def test_directory_entries_report_ea_size_on_request(xfs, layout):
    handle = xfs.open(("f",), write=True)
    xfs.set_eas(handle, [FullEa("EAONE", b"VALUE1")])
    handle.close()
    os.symlink("f", layout.share / "link")
    directory = xfs.open(())
    assert xfs.entry_info(directory, "f").ea_size == 0           # not asked: not computed
    assert xfs.entry_info(directory, "f", ea_size=True).ea_size == 20
    assert xfs.entry_info(directory, "link", ea_size=True).ea_size == 20   # the target's
    assert xfs.entry_info(directory, "d", ea_size=True).ea_size == 0
    assert xfs.entry_info(directory, ".", ea_size=True).ea_size == 0
    directory.close()


def test_without_xattrs(fs, layout, status_of, monkeypatch):
    (layout.share / "f").write_bytes(b"x")
    monkeypatch.setattr(fs, "_user_xattrs", False)
    handle = fs.open(("f",), write=True)
    assert fs.get_eas(handle) == [] and fs.ea_size(handle) == 0
    assert status_of(fs.set_eas, handle, [FullEa("A", b"1")]) == NtStatus.EAS_NOT_SUPPORTED
    handle.close()


def test_probe_is_false_where_user_xattrs_are_refused():
    assert eas.probe("/proc/self") is False     # procfs: EOPNOTSUPP
