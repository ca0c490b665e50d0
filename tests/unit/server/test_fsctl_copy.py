"""Server-side copy: resume keys and SRV_COPYCHUNK(_WRITE) ([MS-SMB2] 3.3.5.15.5-6).

The cases follow smbtorture smb2.ioctl.copy_chunk_* (run against Windows
Server), so a regression shows here before the interop run.
"""

import asyncio
import os
import struct
import threading

import pytest

from smbcad.proto.constants import AccessMask as A
from smbcad.proto.status import NtStatus as S
from smbcad.server import fsctl_copy
from smbcad.server.context import Pending
from smbcad.server.fsctl_common import STATUS_INVALID_VIEW_SIZE, Fsctl
from smbcad.server.locks import LockRange, lock_list
from .test_fsctl_harness import harness, status_of  # noqa: F401  (fixture)

KEY_REQUEST = Fsctl.SRV_REQUEST_RESUME_KEY


def pattern(size: int, start: int = 0) -> bytes:
    """smbtorture's pattern: each 8-byte word holds its own offset."""
    return b"".join(struct.pack(">Q", offset) for offset in range(start, start + size, 8))


def key_of(harness, open_) -> bytes:
    out = fsctl_copy.request_resume_key(harness.ctx(), harness.request(KEY_REQUEST, max_output=32),
                                        open_)
    assert len(out) == 32 and out[24:] == bytes(8)       # ContextLength 0 + 4 bytes of Context
    return out[:24]


def copy_input(key: bytes, chunks) -> bytes:
    return (struct.pack("<24sII", key, len(chunks), 0)
            + b"".join(struct.pack("<QQII", s, t, n, 0) for s, t, n in chunks))


def run_copy(harness, target, key, chunks, ctl=Fsctl.SRV_COPYCHUNK, max_output=12, tree=None):
    """(response fields, status) of one copy, running its Pending to the end."""
    request = harness.request(ctl, copy_input(key, chunks), max_output)
    result = fsctl_copy.copychunk(harness.ctx(tree=tree), request, target)
    if isinstance(result, Pending):
        result = asyncio.run(result.work)
    body, status = result if isinstance(result, tuple) else (result, S.SUCCESS)
    return struct.unpack("<III", body), status


def test_resume_key_is_derived_and_found(harness):
    src = harness.open("src", b"x")
    key = key_of(harness, src)
    assert key == struct.pack("<QQ", src.persistent_id, src.volatile_id) + bytes(range(8))
    assert fsctl_copy.find_source(harness.server, key) is src
    assert key_of(harness, src) == key                   # req_two_resume_keys
    harness.close(src)
    assert fsctl_copy.find_source(harness.server, key) is None


def test_resume_key_needs_32_bytes_of_output(harness):
    src = harness.open("src")
    assert status_of(fsctl_copy.request_resume_key, harness.ctx(),
                     harness.request(KEY_REQUEST, max_output=31), src) == S.INVALID_PARAMETER


def test_forged_key_is_not_found(harness):
    src = harness.open("src", b"x")
    key = bytearray(key_of(harness, src))
    key[20] ^= 1                                            # another server's GUID tag
    dst = harness.open("dst")
    assert status_of(run_copy, harness, dst, bytes(key), [(0, 0, 1)]) == S.OBJECT_NAME_NOT_FOUND
    assert status_of(run_copy, harness, dst, b"deadbeefdeadbeefdeadbeef",
                     [(0, 0, 1)]) == S.OBJECT_NAME_NOT_FOUND


def test_simple_multi_and_counters(harness):
    data = pattern(8192)
    src, dst = harness.open("src", data), harness.open("dst")
    key = key_of(harness, src)
    assert run_copy(harness, dst, key, [(0, 0, 4096), (4096, 4096, 4096)]) == \
        ((2, 0, 8192), S.SUCCESS)
    assert (harness.root / "dst").read_bytes() == data
    assert harness.metrics.server_copy_bytes._value.get() == 8192
    assert harness.metrics.bytes_written._value.get() == 0


def test_overlapping_copy_within_one_file_reads_first(harness):
    """copy_chunk_src_is_dest_overlap: 8 bytes overlap at 2040."""
    src = harness.open("src", pattern(4096))
    key = key_of(harness, src)
    assert run_copy(harness, src, key, [(0, 2040, 2048)]) == ((1, 0, 2048), S.SUCCESS)
    content = (harness.root / "src").read_bytes()
    assert content[:2040] == pattern(2040) and content[2040:4088] == pattern(2048)


def test_append_offset_writes_at_end_of_file(harness):
    src, dst = harness.open("src", b"abcd"), harness.open("dst", b"12")
    key = key_of(harness, src)
    assert run_copy(harness, dst, key, [(0, 0xFFFFFFFFFFFFFFFF, 4)]) == ((1, 0, 4), S.SUCCESS)
    assert (harness.root / "dst").read_bytes() == b"12abcd"


@pytest.mark.parametrize("chunks", [
    [(0, 0, 0)],                                  # copy_chunk_zero_length
    [(0, 0, 0xFFFFFFFF)],                         # copy_chunk_limits
    [(0, 0, 1)] * 257,
    [(0, 0, 1 << 20)] * 17,                       # 17 MiB in all
    [(0, 1 << 63, 1)],                            # a negative TargetOffset
])
def test_limits_answer_with_the_server_limits(harness, chunks):
    src, dst = harness.open("src", b"x"), harness.open("dst")
    key = key_of(harness, src)
    assert run_copy(harness, dst, key, chunks) == ((256, 1 << 20, 16 << 20), S.INVALID_PARAMETER)
    assert (harness.root / "dst").read_bytes() == b""


def test_truncated_chunk_array_is_invalid(harness):
    src, dst = harness.open("src", b"x"), harness.open("dst")
    data = copy_input(key_of(harness, src), [(0, 0, 1)])[:-4]
    request = harness.request(Fsctl.SRV_COPYCHUNK, data, 12)
    result = fsctl_copy.copychunk(harness.ctx(), request, dst)
    assert result == (struct.pack("<III", 256, 1 << 20, 16 << 20), S.INVALID_PARAMETER)


def test_small_output_is_a_plain_invalid_parameter(harness):
    """copy_chunk_max_output_sz."""
    src, dst = harness.open("src", b"x" * 16), harness.open("dst")
    assert status_of(run_copy, harness, dst, key_of(harness, src), [(0, 0, 16)],
                     max_output=11) == S.INVALID_PARAMETER


@pytest.mark.parametrize("ctl, src_access, dst_access, expected", [
    (Fsctl.SRV_COPYCHUNK, A.FILE_READ_DATA, A.FILE_ALL_ACCESS, S.SUCCESS),
    (Fsctl.SRV_COPYCHUNK, A.FILE_EXECUTE, A.FILE_ALL_ACCESS, S.SUCCESS),
    (Fsctl.SRV_COPYCHUNK, A.FILE_READ_ATTRIBUTES, A.FILE_ALL_ACCESS, S.ACCESS_DENIED),
    (Fsctl.SRV_COPYCHUNK, A.FILE_READ_DATA,
     A.FILE_ALL_ACCESS & ~(A.FILE_WRITE_DATA | A.FILE_APPEND_DATA), S.ACCESS_DENIED),
    (Fsctl.SRV_COPYCHUNK, A.FILE_READ_DATA, A.FILE_ALL_ACCESS & ~A.FILE_READ_DATA,
     S.ACCESS_DENIED),
    (Fsctl.SRV_COPYCHUNK_WRITE, A.FILE_ALL_ACCESS, A.FILE_GENERIC_WRITE | A.FILE_GENERIC_EXECUTE,
     S.SUCCESS),
])
def test_access_rules(harness, ctl, src_access, dst_access, expected):
    """copy_chunk_bad_access and copy_chunk_write_access."""
    src = harness.open("src", pattern(4096), access=src_access)
    dst = harness.open("dst", access=dst_access)
    key = key_of(harness, src)
    if expected == S.SUCCESS:
        assert run_copy(harness, dst, key, [(0, 0, 4096)], ctl=ctl)[1] == S.SUCCESS
    else:
        assert status_of(run_copy, harness, dst, key, [(0, 0, 4096)], ctl=ctl) == expected


def test_source_past_end_of_file(harness):
    """copy_chunk_src_exceed and _multi: the failing chunk copies nothing,
    earlier chunks stay and are reported."""
    src, dst = harness.open("src", pattern(8192)), harness.open("dst")
    key = key_of(harness, src)
    assert run_copy(harness, dst, key, [(1024, 0, 8192)]) == ((0, 0, 0), STATUS_INVALID_VIEW_SIZE)
    assert run_copy(harness, dst, key, [(0, 0, 4096), (4096, 4096, 8192)]) == \
        ((1, 0, 4096), STATUS_INVALID_VIEW_SIZE)
    assert (harness.root / "dst").read_bytes() == pattern(4096)


def test_across_trees_same_session_other_session_refused(harness):
    src = harness.open("src", b"hello")
    key = key_of(harness, src)
    other_tree = harness.new_tree()
    dst = harness.open("dst", tree=other_tree)
    assert run_copy(harness, dst, key, [(0, 0, 5)], tree=other_tree) == ((1, 0, 5), S.SUCCESS)
    stranger = harness.new_tree(harness.new_session())
    theirs = harness.open("theirs", tree=stranger)
    assert status_of(run_copy, harness, theirs, key, [(0, 0, 5)], tree=stranger) == \
        S.OBJECT_NAME_NOT_FOUND


def test_lock_conflict_copies_nothing(harness):
    """copy_chunk_src_lock / dest_lock: the response still carries the counts."""
    src, dst = harness.open("src", pattern(4096)), harness.open("dst", bytes(4096))
    other = harness.open("src")
    state = harness.server.opens.by_file[src.file_key]
    assert lock_list(state).lock(other, [LockRange(0, 4096, True)])
    key = key_of(harness, src)
    assert run_copy(harness, dst, key, [(0, 0, 4096)]) == ((0, 0, 0), S.FILE_LOCK_CONFLICT)
    assert (harness.root / "dst").read_bytes() == bytes(4096)


def test_closed_handle_before_the_copy_runs(harness):
    src, dst = harness.open("src", b"abc"), harness.open("dst")
    data = copy_input(key_of(harness, src), [(0, 0, 3)])
    request = harness.request(Fsctl.SRV_COPYCHUNK, data, 12)
    pending = fsctl_copy.copychunk(harness.ctx(), request, dst)
    harness.close(src)
    assert status_of(asyncio.run, pending.work) == S.FILE_CLOSED


def test_copy_keeps_its_own_descriptors(harness):
    """The worker copies through duplicated fds: closing the client's handle
    (and reusing its number) cannot redirect the copy."""
    src, dst = harness.open("src", os.urandom(1 << 20)), harness.open("dst")
    request = harness.request(Fsctl.SRV_COPYCHUNK,
                              copy_input(key_of(harness, src), [(0, 0, 1 << 20)]), 12)
    pending = fsctl_copy.copychunk(harness.ctx(), request, dst)

    async def run_and_close():
        task = asyncio.ensure_future(pending.work)
        await asyncio.sleep(0)                 # the copy has pinned its descriptors
        harness.close(dst)
        return await task
    body = asyncio.run(run_and_close())
    assert struct.unpack("<III", body) == (1, 0, 1 << 20)
    assert (harness.root / "dst").read_bytes() == (harness.root / "src").read_bytes()


def test_copy_outcome_partial_counts():
    assert fsctl_copy.CopyOutcome(2, 10, 2058, S.DISK_FULL).response().encode() == \
        struct.pack("<III", 2, 10, 2058)


def test_cancel_leaves_the_worker_its_descriptors(harness, monkeypatch):
    """CANCEL (or a lost connection) cancels the request, not the thread: the
    duplicated descriptors stay open until the worker ends, then close."""
    started, release = threading.Event(), threading.Event()
    seen = []
    real = fsctl_copy.copy_chunks

    def blocking(source_fs, source_file, target_fs, target_file, chunks, flush):
        seen.extend([source_file, target_file])
        started.set()
        release.wait()
        return real(source_fs, source_file, target_fs, target_file, chunks, flush)
    monkeypatch.setattr(fsctl_copy, "copy_chunks", blocking)
    src, dst = harness.open("src", b"abc"), harness.open("dst")
    data = copy_input(key_of(harness, src), [(0, 0, 3)])
    request = harness.request(Fsctl.SRV_COPYCHUNK, data, 12)
    pending = fsctl_copy.copychunk(harness.ctx(), request, dst)

    async def cancel_midway():
        task = asyncio.ensure_future(pending.work)
        await asyncio.to_thread(started.wait)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not any(f.closed for f in seen)
        release.set()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*others)
        assert all(f.closed for f in seen)
    asyncio.run(cancel_midway())
    assert (harness.root / "dst").read_bytes() == b"abc"
    assert harness.metrics.server_copy_bytes._value.get() == 3
