"""ShareFs fd operations: I/O, sizes, times, attributes, the DOS xattr, errno mapping."""

import errno
import os

import pytest

from smbcad.proto.constants import FileAttributes as FA
from smbcad.proto.fileinfo import filetime_to_unix_ns, unix_ns_to_filetime
from smbcad.proto.status import NtStatus as S
from smbcad.vfs import attrs, status_for_errno

FT_2001 = unix_ns_to_filetime(978307200 * 10**9)      # 2001-01-01T00:00:00Z
FT_2010 = unix_ns_to_filetime(1262304000 * 10**9)


@pytest.fixture
def handle(fs):
    opened = fs.open(("file.bin",), write=True, create=True)
    yield opened
    opened.close()


def test_write_and_read(fs, handle, layout):
    assert fs.write(handle, 0, b"hello world") == 11
    assert fs.write(handle, 6, memoryview(b"WORLD")) == 5
    buffer = bytearray(32)
    assert fs.read_into(handle, 0, memoryview(buffer)) == 11
    assert bytes(buffer[:11]) == b"hello WORLD"
    assert fs.read_into(handle, 6, memoryview(buffer)[:3]) == 3 and bytes(buffer[:3]) == b"WOR"
    assert fs.read_into(handle, 100, memoryview(buffer)) == 0
    fs.flush(handle)
    assert (layout.share / "file.bin").read_bytes() == b"hello WORLD"


def test_large_write_and_sparse_gap(fs, handle):
    data = os.urandom(3 * 1024 * 1024 + 17)
    assert fs.write(handle, 1 << 20, data) == len(data)
    buffer = bytearray(len(data) + (1 << 20))
    assert fs.read_into(handle, 0, memoryview(buffer)) == len(buffer)
    assert bytes(buffer[:1 << 20]) == bytes(1 << 20) and bytes(buffer[1 << 20:]) == data


def test_read_only_handle_cannot_write(fs, layout, status_of):
    (layout.share / "ro").write_bytes(b"x")
    reader = fs.open(("ro",))
    assert status_of(fs.write, reader, 0, b"y") == S.INVALID_HANDLE
    reader.close()


def test_truncate(fs, handle, status_of):
    fs.write(handle, 0, b"0123456789")
    fs.truncate(handle, 4)
    assert fs.stat(handle).end_of_file == 4
    fs.truncate(handle, 1 << 20)
    info = fs.stat(handle)
    assert info.end_of_file == 1 << 20 and info.allocation_size < 1 << 20
    directory = fs.mkdir(("d",))
    assert status_of(fs.truncate, directory, 0) == S.INVALID_PARAMETER
    assert status_of(fs.truncate, handle, -1) == S.INVALID_PARAMETER
    directory.close()


def test_allocate(fs, handle, status_of):
    fs.allocate(handle, 1 << 20)
    info = fs.stat(handle)
    assert info.end_of_file == 0 and info.allocation_size >= 1 << 20
    fs.write(handle, 0, b"x" * 100)
    fs.allocate(handle, 10)                 # below EOF: truncates, like Windows
    assert fs.stat(handle).end_of_file == 10
    fs.allocate(handle, 0)
    assert fs.stat(handle).end_of_file == 0
    directory = fs.mkdir(("d",))
    assert status_of(fs.allocate, directory, 10) == S.INVALID_PARAMETER
    directory.close()


def test_creation_time_is_stamped_and_stable(fs, handle):
    created = fs.stat(handle).creation_time
    os.utime(handle.fd, ns=(10**9, 10**9))    # mtime back in 1970
    fs.write(handle, 0, b"later")
    assert fs.stat(handle).creation_time == created
    record = attrs.decode(os.getxattr(handle.fd, attrs.XATTR_NAME))
    assert record == attrs.DosRecord(FA.ARCHIVE, created)


def test_set_times(fs, handle, layout, status_of):
    fs.set_times(handle, FT_2001, FT_2010, FT_2001, 0)
    info = fs.stat(handle)
    assert info.creation_time == FT_2001
    assert info.last_access_time == FT_2010 and info.last_write_time == FT_2001
    st = os.stat(layout.share / "file.bin")
    assert st.st_mtime_ns == filetime_to_unix_ns(FT_2001)
    # 0, -1 and -2 (signed or as the unsigned wire value) leave times alone.
    fs.set_times(handle, 0, -1, 0xFFFFFFFFFFFFFFFF, -2)
    fs.set_times(handle, 0xFFFFFFFFFFFFFFFE, 0, 0, 0)
    assert fs.stat(handle) == info
    fs.set_times(handle, 0, 0, FT_2010, 0)
    after = fs.stat(handle)
    assert after.last_write_time == FT_2010 and after.last_access_time == FT_2010
    assert after.creation_time == FT_2001
    assert status_of(fs.set_times, handle, -3, 0, 0, 0) == S.INVALID_PARAMETER
    assert status_of(fs.set_times, handle, 0, 0, 0, 0xFFFFFFFFFFFFFFF0) == S.INVALID_PARAMETER


def test_set_times_on_directory_and_root(fs):
    directory = fs.open((), directory=True)
    fs.set_times(directory, FT_2001, 0, FT_2010, 0)
    info = fs.stat(directory)
    directory.close()
    assert info.creation_time == FT_2001 and info.last_write_time == FT_2010
    assert fs.fs_id().volume_creation_time == FT_2001


def test_set_attributes(fs, handle, status_of):
    fs.set_attributes(handle, FA.HIDDEN | FA.SYSTEM | FA.ARCHIVE)
    assert fs.stat(handle).attributes == FA.HIDDEN | FA.SYSTEM | FA.ARCHIVE
    fs.set_attributes(handle, 0)             # 0: unchanged
    assert fs.stat(handle).attributes == FA.HIDDEN | FA.SYSTEM | FA.ARCHIVE
    fs.set_attributes(handle, FA.NORMAL)     # NORMAL: clear everything
    assert fs.stat(handle).attributes == FA.NORMAL
    fs.set_attributes(handle, FA.READONLY)
    assert fs.stat(handle).attributes == FA.READONLY
    assert status_of(fs.set_attributes, handle, FA.DIRECTORY) == S.INVALID_PARAMETER
    directory = fs.mkdir(("d",))
    assert status_of(fs.set_attributes, directory, FA.TEMPORARY) == S.INVALID_PARAMETER
    fs.set_attributes(directory, FA.HIDDEN | FA.DIRECTORY)
    assert fs.stat(directory).attributes == FA.DIRECTORY | FA.HIDDEN
    directory.close()


def test_attributes_survive_lookup_and_listing(fs, handle):
    fs.set_attributes(handle, FA.SYSTEM)
    assert fs.lookup(("FILE.BIN",)).info.attributes == FA.SYSTEM
    root = fs.open((), directory=True)
    listed = {e.name: e.info for e in fs.list_directory(root)}
    root.close()
    assert listed["file.bin"] == fs.stat(handle)


def test_readonly_from_mode_and_cleared_by_client(fs, layout):
    path = layout.share / "ro"
    path.write_bytes(b"")
    os.chmod(path, 0o444)
    handle = fs.open(("ro",))
    assert fs.stat(handle).attributes == FA.ARCHIVE | FA.READONLY
    fs.set_attributes(handle, FA.ARCHIVE)
    assert fs.stat(handle).attributes == FA.ARCHIVE
    assert os.stat(path).st_mode & 0o200
    handle.close()


def test_sparse_flag(fs, handle, status_of):
    fs.set_sparse(handle, True)
    assert fs.stat(handle).attributes == FA.ARCHIVE | FA.SPARSE_FILE
    fs.set_attributes(handle, FA.HIDDEN)     # FileBasicInformation keeps SPARSE
    assert fs.stat(handle).attributes == FA.HIDDEN | FA.SPARSE_FILE
    fs.set_sparse(handle, False)
    assert fs.stat(handle).attributes == FA.HIDDEN
    directory = fs.mkdir(("d",))
    assert status_of(fs.set_sparse, directory, True) == S.INVALID_PARAMETER
    directory.close()


def test_without_xattr_support(fs, layout, monkeypatch):
    """ENOTSUP from the file system: derived values, and requests still succeed."""
    (layout.share / "plain").write_bytes(b"abc")

    def no_xattrs(*_args, **_kwargs):
        raise OSError(errno.ENOTSUP, "no xattrs")

    monkeypatch.setattr(os, "getxattr", no_xattrs)
    monkeypatch.setattr(os, "setxattr", no_xattrs)
    handle = fs.open(("new",), write=True, create=True)
    st = os.fstat(handle.fd)
    info = fs.stat(handle)
    assert info.attributes == FA.ARCHIVE
    assert info.creation_time == unix_ns_to_filetime(min(st.st_mtime_ns, st.st_ctime_ns))
    fs.set_attributes(handle, FA.HIDDEN)
    fs.set_times(handle, FT_2001, 0, FT_2010, 0)
    assert fs.stat(handle).last_write_time == FT_2010
    handle.close()
    assert fs.lookup(("plain",)).info.attributes == FA.ARCHIVE
    root = fs.open((), directory=True)
    assert [e.name for e in fs.list_directory(root)] == [".", "..", "new", "plain"]
    root.close()


def test_foreign_xattr_is_ignored(fs, handle):
    os.setxattr(handle.fd, attrs.XATTR_NAME, b"\x09\x00garbage-garbage")
    assert fs.stat(handle).attributes == FA.ARCHIVE
    os.setxattr(handle.fd, attrs.XATTR_NAME, b"\x01")
    assert fs.stat(handle).attributes == FA.ARCHIVE


def test_record_codec():
    record = attrs.DosRecord(FA.HIDDEN | FA.READONLY, FT_2001)
    raw = attrs.encode(record)
    assert raw == b"\x01\x00" + (FA.HIDDEN | FA.READONLY).to_bytes(4, "little") + FT_2001.to_bytes(8, "little")
    assert attrs.decode(raw) == record
    # DIRECTORY / NORMAL are never stored.
    assert attrs.decode(attrs.encode(attrs.DosRecord(FA.DIRECTORY | FA.NORMAL, 0))).attributes == 0


@pytest.mark.parametrize(("code", "status"), [
    (errno.ENOENT, S.OBJECT_NAME_NOT_FOUND), (errno.ENOTDIR, S.OBJECT_PATH_NOT_FOUND),
    (errno.EEXIST, S.OBJECT_NAME_COLLISION), (errno.EACCES, S.ACCESS_DENIED),
    (errno.EPERM, S.ACCESS_DENIED), (errno.EISDIR, S.FILE_IS_A_DIRECTORY),
    (errno.ENOTEMPTY, S.DIRECTORY_NOT_EMPTY), (errno.ENOSPC, S.DISK_FULL),
    (errno.EDQUOT, S.DISK_FULL), (errno.EFBIG, S.DISK_FULL),
    (errno.EROFS, S.MEDIA_WRITE_PROTECTED), (errno.ENAMETOOLONG, S.OBJECT_NAME_INVALID),
    (errno.ELOOP, S.OBJECT_PATH_NOT_FOUND), (errno.EXDEV, S.NOT_SAME_DEVICE),
    (errno.EINVAL, S.INVALID_PARAMETER), (errno.EBADF, S.INVALID_HANDLE),
    (errno.EIO, S.UNEXPECTED_IO_ERROR), (errno.EMFILE, S.TOO_MANY_OPENED_FILES),
    (errno.EHOSTDOWN, S.UNEXPECTED_IO_ERROR), (None, S.UNEXPECTED_IO_ERROR),
])
def test_errno_table(code, status):
    assert status_for_errno(code) == status
