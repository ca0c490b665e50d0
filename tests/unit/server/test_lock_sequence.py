"""LOCK replay detection by lock sequence ([MS-SMB2] 3.3.5.14) in
commands/lock.py, on the fake opens of test_locks_command.

The main sequence is smbtorture's smb2.lock.replay_smb3_specification_durable
(source4/torture/smb2/lock.c), which a spec-following server passes on a
durable open.
"""

import asyncio
from types import SimpleNamespace

import pytest

from smbcad.proto.constants import Dialect, GlobalCaps
from smbcad.proto.errors import SmbError
from smbcad.proto.lock import LOCK_RESPONSE_BODY
from smbcad.proto.status import NtStatus
from smbcad.server import durable
from smbcad.server.commands import lock
from smbcad.server.context import Pending

from .test_locks_command import EXCLUSIVE, FAIL, OK, UNLOCK, Harness, lock_message

XF = EXCLUSIVE | FAIL
NOT_GRANTED, NOT_LOCKED = NtStatus.LOCK_NOT_GRANTED, NtStatus.RANGE_NOT_LOCKED
RANGE = (100, 100)


class SequenceHarness(Harness):
    """Harness requests with a LockSequence field and a connection dialect."""

    dialect = Dialect.SMB_3_1_1
    capabilities = 0

    def request(self, open_, *elements, sequence=0):
        ctx = SimpleNamespace(
            server=self.server, connection=SimpleNamespace(
                dialect=self.dialect, server_capabilities=self.capabilities),
            message=memoryview(lock_message(open_.file_id, *elements, sequence=sequence)),
            lookup_open=lambda file_id: open_)
        return lock.handle(ctx)

    def status(self, open_, *elements, sequence=0) -> int:
        try:
            result = self.request(open_, *elements, sequence=sequence)
        except SmbError as exc:
            return exc.status
        if isinstance(result, Pending):
            try:
                result = asyncio.run(result.work)
            except SmbError as exc:
                return exc.status
        assert result == LOCK_RESPONSE_BODY
        return OK


def seq(index: int, number: int) -> int:
    """The LockSequence u32 (2.2.26): index in the high 28 bits, number low 4."""
    return index << 4 | number


def run_steps(h, open_, steps):
    for number, (sequence, flags, expected) in enumerate(steps):
        status = h.status(open_, (*RANGE, flags), sequence=sequence)
        assert status == expected, (number, hex(sequence))


SPEC_STEPS = [
    # bucket 0 is invalid: no replay detection
    (seq(0, 1), XF, OK), (seq(0, 1), XF, NOT_GRANTED),
    (seq(0, 1), UNLOCK, OK), (seq(0, 1), UNLOCK, NOT_LOCKED),
    # bucket 1: the repeats are replays, answered without doing anything
    (seq(1, 1), XF, OK), (seq(1, 1), XF, OK), (seq(1, 1), UNLOCK, OK),
    (seq(1, 1), XF, OK), (seq(1, 1), UNLOCK, OK), (seq(1, 1), UNLOCK, OK),
    # still locked: another number in the bucket, or another bucket, is processed
    (seq(1, 2), XF, NOT_GRANTED), (seq(1, 2), XF, NOT_GRANTED),
    (seq(2, 1), XF, NOT_GRANTED), (seq(2, 1), XF, NOT_GRANTED),
    # bucket 65 is invalid
    (seq(65, 1), XF, NOT_GRANTED), (seq(65, 1), XF, NOT_GRANTED),
    (seq(65, 1), UNLOCK, OK), (seq(65, 1), UNLOCK, NOT_LOCKED),
    (seq(65, 1), XF, OK),
    # bucket 64 is valid: a failed lock records nothing, an unlock does
    (seq(64, 1), XF, NOT_GRANTED), (seq(64, 1), XF, NOT_GRANTED),
    (seq(64, 2), UNLOCK, OK), (seq(64, 2), UNLOCK, OK), (seq(64, 2), XF, OK),
    (seq(64, 3), UNLOCK, NOT_LOCKED),
]


@pytest.mark.parametrize("kind", ["durable", "resilient", "persistent"])
def test_replay_smb3_specification(kind, monkeypatch):
    monkeypatch.setattr(durable, "persist", lambda server, open_: None)
    h = SequenceHarness()
    a = h.open()
    setattr(a, kind, True)
    run_steps(h, a, SPEC_STEPS)
    assert a.lock_sequences[0] == 0             # bucket 1: invalidated by number 2
    assert a.lock_sequences[63] == 0            # bucket 64: invalidated by number 3


def test_entries_use_the_store_byte_format(monkeypatch):
    h = SequenceHarness()
    a = h.open()
    a.durable = True
    assert h.status(a, (*RANGE, XF), sequence=seq(5, 9)) == OK
    assert a.lock_sequences[4] == 0x19 and not any(a.lock_sequences[:4])


def test_plain_opens_and_2_0_2_are_not_checked():
    """3.3.5.14: only resilient, durable or persistent opens, and never on
    2.0.2 (where the field is reserved).  A repeat is then a real lock."""
    h = SequenceHarness()
    plain = h.open(key=(1, 1))
    assert h.status(plain, (*RANGE, XF), sequence=seq(1, 1)) == OK
    assert h.status(plain, (*RANGE, XF), sequence=seq(1, 1)) == NOT_GRANTED
    assert not any(plain.lock_sequences)
    h.dialect = Dialect.SMB_2_0_2
    old = h.open(key=(2, 2))
    old.resilient = True
    assert h.status(old, (*RANGE, XF), sequence=seq(1, 1)) == OK
    assert h.status(old, (*RANGE, XF), sequence=seq(1, 1)) == NOT_GRANTED


class FakeCommit:
    """A handle store commit: records what the open looked like when it ran."""

    def __init__(self, open_, log):
        self.open_, self.log = open_, log

    def __await__(self):
        self.log.append(bytes(self.open_.lock_sequences))
        return iter(())


def test_persistent_open_commits_before_the_response(monkeypatch):
    log = []
    monkeypatch.setattr(durable, "persist",
                        lambda server, open_: FakeCommit(open_, log) if open_.persistent else None)
    h = SequenceHarness()
    a = h.open()
    a.persistent = True
    result = h.request(a, (*RANGE, XF), sequence=seq(3, 4))
    assert isinstance(result, Pending) and log == []           # nothing answered yet
    assert asyncio.run(result.work) == LOCK_RESPONSE_BODY
    assert log[0][2] == 0x14                                   # the entry went to the store
    # a replay changes nothing and needs no commit
    assert h.request(a, (*RANGE, XF), sequence=seq(3, 4)) == LOCK_RESPONSE_BODY
    assert len(log) == 1
    # a failed unlock batch still commits what it unlocked, then fails
    assert h.status(a, (*RANGE, UNLOCK), (500, 1, UNLOCK), sequence=seq(3, 5)) == NOT_LOCKED
    assert len(log) == 2 and log[1][2] == 0                    # entry invalidated


def test_blocking_lock_records_and_commits_once_granted(monkeypatch):
    log = []
    monkeypatch.setattr(durable, "persist",
                        lambda server, open_: FakeCommit(open_, log) if open_.persistent else None)
    h = SequenceHarness()
    holder, waiter = h.open(), h.open()
    waiter.persistent = True

    async def scenario():
        assert h.status(holder, (*RANGE, EXCLUSIVE)) == OK
        pending = h.request(waiter, (*RANGE, EXCLUSIVE), sequence=seq(7, 1))
        assert isinstance(pending, Pending)
        task = asyncio.ensure_future(pending.work)
        await asyncio.sleep(0)
        assert not task.done() and waiter.lock_sequences[6] == 0
        assert h.status(holder, (*RANGE, UNLOCK)) == OK
        assert await task == LOCK_RESPONSE_BODY
    asyncio.run(scenario())
    assert waiter.lock_sequences[6] == 0x11 and log == [bytes(waiter.lock_sequences)]


def test_multichannel_connections_check_every_open():
    """3.3.5.14: with MULTI_CHANNEL negotiated a LOCK may be retried on
    another channel, so a plain open's repeat is a replay too."""
    h = SequenceHarness()
    h.capabilities = GlobalCaps.MULTI_CHANNEL
    plain = h.open(key=(1, 1))
    assert h.status(plain, (*RANGE, XF), sequence=seq(1, 1)) == OK
    assert h.status(plain, (*RANGE, XF), sequence=seq(1, 1)) == OK
    assert plain.lock_sequences[0] == 0x11
