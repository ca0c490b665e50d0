"""commands/change_notify.py ([MS-SMB2] 3.3.5.19) against fake opens and a fake
inotify port: validation order, immediate answers, going async, CANCEL,
close, and a request in the middle of a compound.

Statuses are those smbtorture's smb2.notify (valid-req, file,
handle-permissions, close) and smb2.compound (interim1, interim2) expect.
"""

import asyncio
import struct
from types import SimpleNamespace

import pytest

from smbcad.proto.constants import AccessMask, Command
from smbcad.proto.errors import SmbError
from smbcad.proto.header import Smb2Header
from smbcad.proto.status import NtStatus
from smbcad.server.commands import change_notify
from smbcad.server.context import Pending, Reply
from smbcad.server.notify import NotifyRegistry
from smbcad.vfs.notify import IN_CREATE, InotifyEvent, WatchedDir

FILE_ID = (5, 6)
FILE_NAME = 0x1


class OneDirPort:
    """The inotify port for one watched directory (wd 1)."""

    def watch(self, base_fd, relpath, *, list_entries=False):
        return WatchedDir(1, ())

    def unwatch(self, wd):
        pass

    def read(self):
        return []


class FakeOpen:
    def __init__(self, directory=True, access=AccessMask.FILE_LIST_DIRECTORY):
        self.handle = SimpleNamespace(fd=3)
        self.is_directory = directory
        self.is_pipe = False
        self.granted_access = access
        self.delete_on_close = False
        self.file_key = (1, 2)


def message(length=4096, next_command=0, flags=0, filter_=FILE_NAME) -> bytes:
    body = struct.pack("<HHIQQII", 32, flags, length, *FILE_ID, filter_, 0)
    return Smb2Header(command=Command.CHANGE_NOTIFY, message_id=4,
                      next_command=next_command).encode() + body


def context(open_, registry, **kwargs):
    raw = message(**kwargs)
    return SimpleNamespace(
        message=memoryview(raw), header=Smb2Header.decode(raw, 0),
        connection=SimpleNamespace(max_transact_size=65536),
        server=SimpleNamespace(notify_registry=registry,
                               opens=SimpleNamespace(file_state={}.get)),
        lookup_open=lambda file_id: open_)


def run(coro_fn):
    return asyncio.run(coro_fn())


def status_of(call):
    with pytest.raises(SmbError) as err:
        call()
    return err.value.status


@pytest.mark.parametrize("open_, kwargs, expected", [
    (FakeOpen(), {"length": 65537}, NtStatus.INVALID_PARAMETER),
    (FakeOpen(directory=False), {}, NtStatus.INVALID_PARAMETER),
    (FakeOpen(access=AccessMask.FILE_READ_ATTRIBUTES), {}, NtStatus.ACCESS_DENIED),
])
def test_refused_before_anything_is_watched(open_, kwargs, expected):
    registry = NotifyRegistry(OneDirPort())

    async def go():
        return status_of(lambda: change_notify.handle(context(open_, registry, **kwargs)))
    assert run(go) == expected
    assert not registry.entries


def test_buffered_changes_answer_at_once():
    registry = NotifyRegistry(OneDirPort())
    open_ = FakeOpen()

    async def go():
        pending = change_notify.handle(context(open_, registry))
        pending.on_cancel()
        with pytest.raises(SmbError) as err:
            await pending.work
        return err.value.status
    assert run(go) == NtStatus.CANCELLED
    registry.feed([InotifyEvent(1, IN_CREATE, 0, "ab")])

    async def again():
        return change_notify.handle(context(open_, registry))
    reply = run(again)
    assert isinstance(reply, Reply) and reply.status == NtStatus.SUCCESS
    # StructureSize 9, OutputBufferOffset 72, OutputBufferLength 16, one entry.
    assert reply.body == (struct.pack("<HHI", 9, 72, 16) + struct.pack("<III", 0, 1, 4)
                          + "ab".encode("utf-16-le"))


def test_pending_request_completes_with_a_change():
    registry = NotifyRegistry(OneDirPort())
    open_ = FakeOpen()

    async def go():
        pending = change_notify.handle(context(open_, registry))
        assert isinstance(pending, Pending) and pending.interim_after_s == 0
        task = asyncio.ensure_future(pending.work)
        await asyncio.sleep(0)
        registry.feed([InotifyEvent(1, IN_CREATE, 0, "x")])
        return await task
    reply = run(go)
    assert reply.status == NtStatus.SUCCESS
    assert not registry.entries[open_].waiters


def test_close_completes_with_notify_cleanup_and_empty_buffer():
    registry = NotifyRegistry(OneDirPort())
    open_ = FakeOpen()

    async def go():
        ctx = context(open_, registry)
        pending = change_notify.handle(ctx)
        registry.open_closed(open_, False)
        return await pending.work
    reply = run(go)
    assert reply.status == NtStatus.NOTIFY_CLEANUP
    assert reply.body == struct.pack("<HHI", 9, 72, 0) + b"\x00"


def test_lost_connection_forgets_the_waiter():
    registry = NotifyRegistry(OneDirPort())
    open_ = FakeOpen()

    async def go():
        pending = change_notify.handle(context(open_, registry))
        task = asyncio.ensure_future(pending.work)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    run(go)
    assert not registry.entries[open_].waiters


def test_mid_compound_request_that_would_wait_is_internal_error():
    """smb2.compound.interim2: Windows fails the async member of a compound."""
    registry = NotifyRegistry(OneDirPort())
    open_ = FakeOpen()

    async def go():
        return status_of(lambda: change_notify.handle(context(open_, registry, next_command=104)))
    assert run(go) == NtStatus.INTERNAL_ERROR
    assert not registry.entries[open_].waiters
