"""commands/lock.py: LOCK request handling ([MS-SMB2] 3.3.5.14) against fake opens.

The request sequences and expected statuses are those of smbtorture's
smb2.lock suite (source4/torture/smb2/lock.c: valid-request, multiple-unlock,
async, cancel), which record what Windows answers.  Blocking locks are driven
deterministically: the Pending's coroutine is stepped by hand, no timers.
"""

import asyncio
import struct
import time
from types import SimpleNamespace

import pytest

from smbcad.openstate.db import OpenStateDb
from smbcad.proto.constants import Command
from smbcad.proto.errors import SmbError
from smbcad.proto.header import Smb2Header
from smbcad.proto.lock import LOCK_RESPONSE_BODY
from smbcad.proto.status import NtStatus
from smbcad.server.commands import lock
from smbcad.server.context import Pending
from smbcad.server.opens import OpenTable

SHARED, EXCLUSIVE, UNLOCK, FAIL = 0x1, 0x2, 0x4, 0x10
U64_MAX = (1 << 64) - 1
OK = NtStatus.SUCCESS


def lock_message(file_id, *elements, sequence=0) -> bytes:
    """A LOCK request (2.2.26), laid out field by field."""
    body = struct.pack("<HHIQQ", 48, len(elements), sequence, *file_id)
    for offset, length, flags in elements:
        body += struct.pack("<QQII", offset, length, flags, 0)
    return Smb2Header(command=Command.LOCK, message_id=9).encode() + body


class Harness:
    """A server with one file and the opens on it, enough for LOCK and CLOSE."""

    def __init__(self):
        metrics = SimpleNamespace(opens=SimpleNamespace(inc=lambda: None, dec=lambda: None))
        leasing = SimpleNamespace(release=lambda open_: None, files={}, dir_leases=set(),
                                  break_read_caching=lambda open_: None,
                                  server=None)  # no leases
        self.server = SimpleNamespace(
            opens=OpenTable(metrics=metrics, clock=time.time, leasing=leasing,
                            open_state=OpenStateDb.private(), spawn=lambda commit: commit,
                            loop=asyncio.get_event_loop),
            metrics=metrics, leasing=leasing)
        self.session = SimpleNamespace(opens={})
        self.tree = SimpleNamespace(open_count=0)
        self._next = 1

    def open(self, key=(7, 7), directory=False, pipe=False):
        volatile = self._next
        self._next += 1
        open_ = SimpleNamespace(
            persistent_id=volatile + 100, volatile_id=volatile, session=self.session,
            tree=self.tree, file_key=key, is_directory=directory, is_pipe=pipe,
            delete_on_close=False, closed=False, scavenger=None, create_guid=b"",
            persistent=False, resilient=False, durable=False, store_version=0,
            granted_access=0x3, share_access=0x7, create_action=1, lock_sequences=bytearray(64), handle=SimpleNamespace(close=lambda: None, path="f"))
        open_.file_id = (open_.persistent_id, volatile)
        self.server.opens.register(open_)
        return open_

    def close(self, open_):
        self.server.opens.close(open_)

    def request(self, open_, *elements):
        ctx = SimpleNamespace(server=self.server,
                              message=memoryview(lock_message(open_.file_id, *elements)),
                              lookup_open=lambda file_id: open_)
        return lock.handle(ctx)

    def status(self, open_, *elements) -> int:
        try:
            result = self.request(open_, *elements)
        except SmbError as exc:
            return exc.status
        assert result == LOCK_RESPONSE_BODY
        return OK

    def state(self, open_):
        return self.server.opens.by_file[open_.file_key]


def test_valid_request_sequence():
    """smb2.lock.valid-request, step by step."""
    h = Harness()
    a = h.open()
    ranges = [
        ((0, 0, 0), NtStatus.INVALID_PARAMETER),                      # flags NONE
        ((U64_MAX, U64_MAX, EXCLUSIVE | FAIL), NtStatus.INVALID_LOCK_RANGE),
        ((U64_MAX, U64_MAX, EXCLUSIVE | FAIL), NtStatus.INVALID_LOCK_RANGE),
        ((0xFFFFFFFF, 0xFFFFFFFF, EXCLUSIVE | FAIL), OK),            # basic stacking
        ((0xFFFFFFFF, 0xFFFFFFFF, SHARED), OK),
        ((0xFFFFFFFF, 0xFFFFFFFF, SHARED), OK),
        ((0xFFFFFFFF, 0xFFFFFFFF, UNLOCK), OK),
        ((0xFFFFFFFF, 0xFFFFFFFF, UNLOCK), OK),
        ((0xFFFFFFFF, 0xFFFFFFFF, UNLOCK), OK),
        ((0xFFFFFFFF, 0xFFFFFFFF, UNLOCK), NtStatus.RANGE_NOT_LOCKED),
        ((1, 1, ~0x17 & 0xFFFFFFFF), NtStatus.INVALID_PARAMETER),    # flags permutations
        ((1, 1, UNLOCK), NtStatus.RANGE_NOT_LOCKED),
        ((1, 1, UNLOCK | EXCLUSIVE), NtStatus.INVALID_PARAMETER),
        ((1, 1, UNLOCK | SHARED), NtStatus.INVALID_PARAMETER),
        ((1, 1, UNLOCK | FAIL), NtStatus.INVALID_PARAMETER),
    ]
    for element, expected in ranges:
        assert h.status(a, element) == expected, element
    pair = [
        ((0, UNLOCK), NtStatus.INVALID_PARAMETER),
        ((SHARED | FAIL, SHARED), NtStatus.INVALID_PARAMETER),        # blocking in a batch
        ((0, 0), NtStatus.INVALID_PARAMETER),
        ((UNLOCK, 0), NtStatus.RANGE_NOT_LOCKED),
    ]
    for (first, second), expected in pair:
        assert h.status(a, (9999, 1, first), (9999, 1, second)) == expected
    assert h.status(a, (9999, 1, SHARED)) == OK
    assert h.status(a, (9999, 1, SHARED)) == OK
    assert h.status(a, (9999, 1, UNLOCK), (9999, 1, UNLOCK)) == OK
    assert h.status(a, (9999, 1, UNLOCK)) == NtStatus.RANGE_NOT_LOCKED
    assert h.state(a).locks is None                    # nothing held: detached again


def test_multiple_unlock():
    """smb2.lock.multiple-unlock: unlocks run in order, locks are all or nothing."""
    h = Harness()
    a = h.open()
    one, two = (0, 10), (10, 10)
    xf = EXCLUSIVE | FAIL
    assert h.status(a, (*two, xf)) == OK
    assert h.status(a, (*one, UNLOCK), (*two, UNLOCK)) == NtStatus.RANGE_NOT_LOCKED
    assert h.status(a, (*two, xf)) == NtStatus.LOCK_NOT_GRANTED    # still locked
    assert h.status(a, (*two, UNLOCK)) == OK
    assert h.status(a, (*one, xf)) == OK
    assert h.status(a, (*one, UNLOCK), (*two, UNLOCK)) == NtStatus.RANGE_NOT_LOCKED
    assert h.status(a, (*one, xf)) == OK                            # first was unlocked
    assert h.status(a, (*one, UNLOCK)) == OK
    assert h.status(a, (*two, xf)) == OK
    assert h.status(a, (*one, xf), (*two, xf)) == NtStatus.LOCK_NOT_GRANTED
    assert h.status(a, (*one, xf)) == OK                            # rolled back
    assert h.status(a, (*one, UNLOCK), (*two, UNLOCK)) == OK
    # Unlock then lock: the unlock stands, the lock element is refused.
    assert h.status(a, (*one, xf), (*two, xf)) == OK
    assert h.status(a, (*one, UNLOCK), (*two, xf)) == NtStatus.INVALID_PARAMETER
    assert h.status(a, (*one, xf)) == OK
    assert h.status(a, (*one, UNLOCK), (*two, UNLOCK)) == OK
    # Lock then unlock: refused before anything is locked.
    assert h.status(a, (*two, xf)) == OK
    assert h.status(a, (*one, xf), (*two, UNLOCK)) == NtStatus.INVALID_PARAMETER
    assert h.status(a, (*one, xf)) == OK
    assert h.status(a, (*two, xf)) == NtStatus.LOCK_NOT_GRANTED


def test_errorcode_is_always_lock_not_granted():
    """smb2.lock.errorcode: no SMB1-style FILE_LOCK_CONFLICT on repeats."""
    h = Harness()
    a, b = h.open(), h.open()
    assert h.status(a, (100, 10, EXCLUSIVE | FAIL)) == OK
    for open_ in (a, b, a, b, a, b):
        assert h.status(open_, (100, 10, EXCLUSIVE | FAIL)) == NtStatus.LOCK_NOT_GRANTED
    for element in ((102, 0, EXCLUSIVE | FAIL), (102, 5, EXCLUSIVE | FAIL)):
        assert h.status(a, element) == NtStatus.LOCK_NOT_GRANTED
        assert h.status(b, element) == NtStatus.LOCK_NOT_GRANTED


def test_directories_and_pipes_cannot_be_locked():
    h = Harness()
    assert h.status(h.open(key=(1, 1), directory=True), (0, 1, EXCLUSIVE | FAIL)) == \
        NtStatus.INVALID_PARAMETER
    assert h.status(h.open(key=(1, 2), pipe=True), (0, 1, EXCLUSIVE | FAIL)) == \
        NtStatus.INVALID_DEVICE_REQUEST


# --- blocking locks -------------------------------------------------------------------------

def run(scenario):
    """Run a scenario inside an event loop (the handler creates a future)."""
    asyncio.run(scenario())


def step(coro):
    """Start a Pending's coroutine; it must suspend waiting for its lock."""
    assert coro.send(None) is not None


def finish(coro):
    """Resume the coroutine after a wake-up; its return value or SmbError status."""
    try:
        coro.send(None)
    except StopIteration as stop:
        assert stop.value == LOCK_RESPONSE_BODY
        return OK
    except SmbError as exc:
        return exc.status
    raise AssertionError("still waiting")


def blocked(h, holder, waiter):
    assert h.status(holder, (100, 50, EXCLUSIVE)) == OK
    pending = h.request(waiter, (100, 50, EXCLUSIVE))
    assert isinstance(pending, Pending)
    assert pending.interim_after_s == 0            # interim STATUS_PENDING at once
    step(pending.work)
    return pending


def test_blocking_lock_granted_when_the_holder_unlocks():
    async def scenario():
        h = Harness()
        a, b = h.open(), h.open()
        pending = blocked(h, a, b)
        assert h.status(b, (100, 50, UNLOCK)) == NtStatus.RANGE_NOT_LOCKED   # not held yet
        assert h.status(a, (100, 50, UNLOCK)) == OK
        assert finish(pending.work) == OK
        assert h.status(a, (100, 50, EXCLUSIVE | FAIL)) == NtStatus.LOCK_NOT_GRANTED
        assert h.status(b, (100, 50, UNLOCK)) == OK
        assert h.state(a).locks is None
    run(scenario)


def test_blocking_lock_granted_when_the_holder_closes():
    async def scenario():
        h = Harness()
        a, b = h.open(), h.open()
        pending = blocked(h, a, b)
        h.close(a)
        assert finish(pending.work) == OK
        assert h.status(b, (100, 50, UNLOCK)) == OK
    run(scenario)


def test_cancel_ends_the_wait_with_cancelled():
    async def scenario():
        h = Harness()
        a, b = h.open(), h.open()
        pending = blocked(h, a, b)
        pending.on_cancel()
        assert finish(pending.work) == NtStatus.CANCELLED
        assert h.state(a).locks.waiters == []
        assert h.status(a, (100, 50, UNLOCK)) == OK
        assert h.state(a).locks is None
    run(scenario)


def test_cancel_after_the_grant_changes_nothing():
    async def scenario():
        h = Harness()
        a, b = h.open(), h.open()
        pending = blocked(h, a, b)
        assert h.status(a, (100, 50, UNLOCK)) == OK
        pending.on_cancel()
        assert finish(pending.work) == OK
        assert h.status(b, (100, 50, UNLOCK)) == OK
    run(scenario)


def test_closing_the_waiting_open_answers_range_not_locked():
    """smb2.lock.cancel "cancel by close" (and so tdis and logoff)."""
    async def scenario():
        h = Harness()
        a, b = h.open(), h.open()
        pending = blocked(h, a, b)
        h.close(b)
        assert finish(pending.work) == NtStatus.RANGE_NOT_LOCKED
        assert len(h.state(a).locks.locks) == 1 and h.state(a).locks.waiters == []
    run(scenario)


def test_task_cancelled_with_its_connection_forgets_the_waiter():
    async def scenario():
        h = Harness()
        a, b = h.open(), h.open()
        pending = blocked(h, a, b)
        with pytest.raises(asyncio.CancelledError):
            pending.work.throw(asyncio.CancelledError())
        assert h.state(a).locks.waiters == []
        assert h.status(a, (100, 50, UNLOCK)) == OK
        assert h.state(a).locks is None
    run(scenario)


def test_a_grantable_blocking_lock_answers_at_once():
    h = Harness()
    a = h.open()
    assert h.request(a, (0, 1, EXCLUSIVE)) == LOCK_RESPONSE_BODY
