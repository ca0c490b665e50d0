"""SET_SPARSE, SET_ZERO_DATA, QUERY_ALLOCATED_RANGES, FILE_LEVEL_TRIM and
DUPLICATE_EXTENTS_TO_FILE ([MS-FSA] 2.1.5.10), after smbtorture
smb2.ioctl.sparse_* / trim_simple / dup_extents_* (run against Windows)."""

import asyncio
import struct

import pytest

from smbcad.proto.constants import AccessMask as A
from smbcad.proto.constants import CreateOptions
from smbcad.proto.constants import FileAttributes as FA
from smbcad.proto.status import NtStatus as S
from smbcad.server import fsctl_sparse
from smbcad.server.context import Pending
from smbcad.server.fsctl_common import Fsctl
from smbcad.server.locks import LockRange, lock_list
from .test_fsctl_harness import harness, status_of  # noqa: F401  (fixture)

CHUNK = 64 * 1024


def sparse(harness, open_, value=True):
    data = b"" if value is None else bytes([0xFF if value else 0])
    return fsctl_sparse.set_sparse(harness.ctx(), harness.request(Fsctl.SET_SPARSE, data), open_)


def is_sparse(harness, open_) -> bool:
    return bool(harness.fs.stat(open_.handle).attributes & FA.SPARSE_FILE)


def zero(harness, open_, offset, beyond):
    result = fsctl_sparse.set_zero_data(
        harness.ctx(), harness.request(Fsctl.SET_ZERO_DATA, struct.pack("<QQ", offset, beyond)),
        open_)
    if isinstance(result, Pending):
        result = asyncio.run(result.work)
    return result


def qar(harness, open_, offset, length, max_output=1024):
    result = fsctl_sparse.query_allocated_ranges(
        harness.ctx(), harness.request(Fsctl.QUERY_ALLOCATED_RANGES,
                                       struct.pack("<QQ", offset, length), max_output), open_)
    body, status = result if isinstance(result, tuple) else (result, S.SUCCESS)
    ranges = [struct.unpack_from("<QQ", body, i) for i in range(0, len(body), 16)]
    return ranges if status == S.SUCCESS else (ranges, status)


def test_set_and_clear_sparse(harness):
    fh = harness.open("f")
    assert not is_sparse(harness, fh)
    sparse(harness, fh, None)                  # no buffer: set
    assert is_sparse(harness, fh)
    sparse(harness, fh, None)                  # a second one does not toggle
    assert is_sparse(harness, fh)
    sparse(harness, fh, False)
    assert not is_sparse(harness, fh)
    oversize = harness.request(Fsctl.SET_SPARSE, b"\xff" + bytes(99))
    fsctl_sparse.set_sparse(harness.ctx(), oversize, fh)
    assert is_sparse(harness, fh)              # sparse_set_oversize


def test_set_sparse_on_a_directory_is_invalid(harness):
    assert status_of(sparse, harness, harness.open("d", directory=True)) == S.INVALID_PARAMETER


@pytest.mark.parametrize("access, expected", [
    (A.FILE_WRITE_ATTRIBUTES, S.SUCCESS), (A.FILE_WRITE_DATA, S.SUCCESS),
    (A.FILE_APPEND_DATA, S.SUCCESS), (A.FILE_WRITE_EA, S.ACCESS_DENIED)])
def test_set_sparse_access(harness, access, expected):
    fh = harness.open("f", access=access)
    if expected == S.SUCCESS:
        sparse(harness, fh)
    else:
        assert status_of(sparse, harness, fh) == expected


def test_clearing_sparse_allocates_the_holes(harness):
    fh = harness.open("f")
    sparse(harness, fh)
    harness.fs.write(fh.handle, CHUNK, b"x" * 1024)
    assert harness.fs.allocated_ranges(fh.handle, 0, CHUNK + 1024) == [(CHUNK, 1024)]
    sparse(harness, fh, False)
    assert harness.fs.stat(fh.handle).allocation_size >= CHUNK + 1024


def test_qar_non_sparse_is_whole_range_up_to_eof(harness):
    """sparse_qar_ob1 (first half) and sparse_punch_invalid."""
    fh = harness.open("f", bytes(2 * CHUNK))
    assert qar(harness, fh, 0, 2 * CHUNK - 1) == [(0, 2 * CHUNK - 1)]
    assert qar(harness, fh, 0, 2 * CHUNK + 1) == [(0, 2 * CHUNK)]
    assert qar(harness, fh, 1, 2 * CHUNK) == [(1, 2 * CHUNK - 1)]
    assert qar(harness, fh, 0, 0) == []
    assert qar(harness, fh, 2 * CHUNK, 1024) == []


def test_qar_sparse_follows_the_holes(harness):
    """sparse_qar_ob1 (second half): the second 64 KiB punched out."""
    fh = harness.open("f", b"\x01" * (2 * CHUNK))
    sparse(harness, fh)
    zero(harness, fh, CHUNK, 2 * CHUNK)
    assert qar(harness, fh, 0, CHUNK - 1) == [(0, CHUNK - 1)]
    assert qar(harness, fh, 0, CHUNK + 1) == [(0, CHUNK)]
    assert qar(harness, fh, 1, CHUNK) == [(1, CHUNK - 1)]
    assert qar(harness, fh, CHUNK - 1, CHUNK) == [(CHUNK - 1, 1)]
    assert qar(harness, fh, CHUNK + 1, CHUNK) == []
    assert (harness.root / "f").read_bytes() == b"\x01" * CHUNK + bytes(CHUNK)


def test_qar_output_room(harness):
    """sparse_qar_malformed, then MS-FSA's BUFFER_OVERFLOW with what fits."""
    fh = harness.open("f")
    assert qar(harness, fh, 0, 1024, max_output=0) == []          # nothing to return
    harness.fs.write(fh.handle, 0, b"x" * 1024)
    assert status_of(qar, harness, fh, 0, 1024, max_output=15) == S.BUFFER_TOO_SMALL
    sparse(harness, fh)
    for index in range(3):
        harness.fs.write(fh.handle, (2 * index + 1) * CHUNK, b"y")
    zero(harness, fh, 0, 4096)
    assert qar(harness, fh, 0, 6 * CHUNK, max_output=40) == \
        ([(CHUNK, 4096), (3 * CHUNK, 4096)], S.BUFFER_OVERFLOW)


@pytest.mark.parametrize("data", [b"", struct.pack("<QQ", 512, 0xFFFFFFFFFFFFFFFF),
                                  struct.pack("<QQ", 1 << 63, 0)])
def test_qar_invalid_input(harness, data):
    """sparse_qar_malformed (no buffer) and sparse_qar_overflow."""
    fh = harness.open("f", b"x" * 1024)
    assert status_of(fsctl_sparse.query_allocated_ranges, harness.ctx(),
                     harness.request(Fsctl.QUERY_ALLOCATED_RANGES, data), fh) == S.INVALID_PARAMETER


def test_qar_needs_read_data(harness):
    fh = harness.open("f", b"x", access=A.FILE_READ_ATTRIBUTES)
    assert status_of(qar, harness, fh, 0, 1) == S.ACCESS_DENIED


def test_zero_data_rules(harness):
    """sparse_punch_invalid: beyond EOF does nothing, never changes the size."""
    fh = harness.open("f", b"\xff" * 4096)
    assert zero(harness, fh, 4096, 4104) == b""
    assert zero(harness, fh, 8192, 8200) == b""
    assert zero(harness, fh, 4095, 4095) == b""
    assert status_of(zero, harness, fh, 4096, 4095) == S.INVALID_PARAMETER
    zero(harness, fh, 100, 1 << 40)
    assert (harness.root / "f").read_bytes() == b"\xff" * 100 + bytes(3996)


def test_zero_data_keeps_non_sparse_files_allocated(harness):
    """sparse_punch: zeroed but still allocated until marked sparse."""
    fh = harness.open("f", b"\xff" * 4096)
    zero(harness, fh, 0, 4096)
    assert qar(harness, fh, 0, 4096) == [(0, 4096)]
    sparse(harness, fh)
    zero(harness, fh, 0, 4096)
    assert qar(harness, fh, 0, 4096) == []
    sparse(harness, fh, False)
    assert qar(harness, fh, 0, 4096) == [(0, 4096)]
    assert (harness.root / "f").read_bytes() == bytes(4096)


@pytest.mark.parametrize("access, expected", [
    (A.FILE_WRITE_DATA, S.SUCCESS), (A.FILE_WRITE_ATTRIBUTES, S.ACCESS_DENIED),
    (A.FILE_APPEND_DATA, S.ACCESS_DENIED), (A.FILE_WRITE_EA, S.ACCESS_DENIED)])
def test_zero_data_access(harness, access, expected):
    fh = harness.open("f", b"x" * 8192, access=access)
    if expected == S.SUCCESS:
        zero(harness, fh, 0, 4096)
    else:
        assert status_of(zero, harness, fh, 0, 4096) == expected


def test_zero_data_meets_locks_only_below_eof(harness):
    """sparse_lock."""
    fh = harness.open("f", b"x" * CHUNK)
    other = harness.open("f")
    assert lock_list(harness.server.opens.by_file[fh.file_key]).lock(
        other, [LockRange(0, CHUNK, True)])
    assert status_of(zero, harness, fh, 0, 4096) == S.FILE_LOCK_CONFLICT
    assert zero(harness, fh, CHUNK, CHUNK + 4096) == b""
    assert qar(harness, fh, 0, 4096) == [(0, 4096)]


def test_zero_data_write_through_flushes_in_a_thread(harness):
    fh = harness.open("f", b"x" * 4096, create_options=CreateOptions.WRITE_THROUGH)
    result = fsctl_sparse.set_zero_data(
        harness.ctx(), harness.request(Fsctl.SET_ZERO_DATA, struct.pack("<QQ", 0, 10)), fh)
    assert isinstance(result, Pending) and asyncio.run(result.work) == b""


def trim(harness, open_, ranges, key=0, max_output=4):
    data = struct.pack("<II", key, len(ranges)) + b"".join(struct.pack("<QQ", *r) for r in ranges)
    return fsctl_sparse.file_level_trim(
        harness.ctx(), harness.request(Fsctl.FILE_LEVEL_TRIM, data, max_output), open_)


def test_trim_punches_whole_pages(harness):
    """trim_simple, plus the page alignment of 2.1.5.10.6."""
    fh = harness.open("f", b"\x01" * (2 * CHUNK))
    assert trim(harness, fh, [(0, CHUNK)]) == struct.pack("<I", 1)
    assert harness.fs.allocated_ranges(fh.handle, 0, 2 * CHUNK) == [(CHUNK, CHUNK)]
    assert trim(harness, fh, [(CHUNK + 1, 4096), (CHUNK + 100, 8192)], max_output=0) == b""
    content = (harness.root / "f").read_bytes()
    # (CHUNK+1, 4096) keeps nothing after alignment; (CHUNK+100, 8192) one page.
    assert content == bytes(CHUNK) + b"\x01" * 4096 + bytes(4096) + b"\x01" * (CHUNK - 8192)


@pytest.mark.parametrize("kwargs", [{"key": 1}, {"max_output": 2}])
def test_trim_invalid(harness, kwargs):
    fh = harness.open("f", b"x" * 8192)
    assert status_of(trim, harness, fh, [(0, 4096)], **kwargs) == S.INVALID_PARAMETER
    assert status_of(trim, harness, fh, []) == S.INVALID_PARAMETER


def test_trim_extent_alignment():
    assert fsctl_sparse.trim_extent(1, 4096, 1 << 20) == (4096, 0)
    assert fsctl_sparse.trim_extent(4095, 8194, 1 << 20) == (4096, 8192)
    assert fsctl_sparse.trim_extent(0, 10000, 8192) == (0, 8192)


def dup(harness, target, source, source_offset, target_offset, count):
    data = struct.pack("<QQqqq", source.persistent_id, source.volatile_id, source_offset,
                       target_offset, count)
    return fsctl_sparse.duplicate_extents(
        harness.ctx(), harness.request(Fsctl.DUPLICATE_EXTENTS_TO_FILE, data, 0), target)


def test_duplicate_extents_checks_before_cloning(harness):
    """dup_extents_*: the answers that do not depend on reflink support."""
    src, dst = harness.open("src", b"s" * 32768), harness.open("dst", bytes(32768))
    closed = harness.open("gone")
    harness.close(closed)
    assert status_of(dup, harness, dst, closed, 0, 0, 4096) == S.INVALID_HANDLE
    assert dup(harness, dst, src, 0, 0, 0) == b""
    assert status_of(dup, harness, dst, src, 1, 0, 4096) == S.INVALID_PARAMETER
    assert status_of(dup, harness, dst, src, 0, 0, 65536) == S.NOT_SUPPORTED
    assert status_of(dup, harness, src, src, 0, 4096, 16384) == S.NOT_SUPPORTED
    sparse(harness, src)
    assert status_of(dup, harness, dst, src, 0, 0, 4096) == S.NOT_SUPPORTED
    sparse(harness, src, False)
    outcome = status_of(dup, harness, dst, src, 0, 0, 4096)
    # tmp_path is ext4 or tmpfs here: no shared extents, NTFS's answer.
    assert outcome in (S.INVALID_DEVICE_REQUEST, S.SUCCESS) or pytest.fail(hex(outcome))


def test_pipes_are_not_files(harness):
    fh = harness.open("f")
    fh.is_pipe = True
    assert status_of(sparse, harness, fh) == S.INVALID_DEVICE_REQUEST
