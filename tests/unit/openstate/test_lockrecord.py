"""Byte-range locks as the node's processes see each other's
(smbcad/openstate/lockrecord.py; [MS-FSA] 2.1.4.10)."""

import pytest

from smbcad.openstate import lockrecord


def test_bytes_are_pinned():
    """u32 owner, u64 open id, u64 offset, u64 length, u8 flags (bit 0 exclusive)."""
    assert lockrecord.pack(0x11223344, [(0x0102030405060708, 16, 32, True)]) == bytes.fromhex(
        "44332211" "0807060504030201" "1000000000000000" "2000000000000000" "01")


@pytest.mark.parametrize("held_exclusive, offset, length, exclusive, expected", [
    (True, 0, 10, False, True),        # an exclusive lock stops reads
    (True, 9, 1, False, True),
    (True, 10, 5, True, False),        # past its end
    (False, 0, 10, False, False),      # a shared lock lets reads and shared locks through
    (False, 5, 10, True, True),        # and stops writes and exclusive locks
    (True, 5, 0, True, True),          # a zero-length lock inside it, as locks.py decides
    (True, 0, 0, True, False),         # at its start: ends at -1, before it
])
def test_another_owners_lock(held_exclusive, offset, length, exclusive, expected):
    value = lockrecord.pack(1, [(7, 0, 10, held_exclusive)])
    assert lockrecord.foreign_conflict(value, 2, offset, length, exclusive) is expected
    assert lockrecord.foreign_conflict(value, 1, offset, length, exclusive) is False


def test_an_owners_locks_are_replaced_and_swept():
    value = lockrecord.with_owner_locks(None, 1, lockrecord.pack(1, [(7, 0, 10, True)]))
    value = lockrecord.with_owner_locks(value, 2, lockrecord.pack(2, [(8, 20, 5, False)]))
    value = lockrecord.with_owner_locks(value, 1, lockrecord.pack(1, [(7, 0, 10, True),
                                                                      (9, 40, 1, False)]))
    assert lockrecord.decode(value) == [(2, 8, 20, 5, False), (1, 7, 0, 10, True),
                                        (1, 9, 40, 1, False)]
    assert lockrecord.decode(lockrecord.without_owner(value, 1, keep=frozenset({9}))) == [
        (2, 8, 20, 5, False), (1, 9, 40, 1, False)]
    assert lockrecord.with_owner_locks(lockrecord.pack(1, [(7, 0, 10, True)]), 1, b"") is None


@pytest.mark.parametrize("offset, length", [(5, 0), (0, 0), (0, 10), (9, 3), (10, 1), (3, 4)])
def test_the_same_decision_as_the_processs_own_list(offset, length):
    from types import SimpleNamespace
    from smbcad.server.locks import ByteRangeLockList, LockRange
    held, asking = SimpleNamespace(persistent_id=1), SimpleNamespace(persistent_id=2)
    for held_exclusive in (False, True):
        table = ByteRangeLockList()
        table.lock(held, [LockRange(0, 10, held_exclusive)])
        value = lockrecord.pack(1, [(1, 0, 10, held_exclusive)])
        for exclusive in (False, True):
            assert lockrecord.foreign_conflict(value, 2, offset, length, exclusive) == \
                table.conflicts(offset, length, exclusive, True, asking)


def test_an_adopted_opens_locks_change_owner_in_place():
    value = lockrecord.pack(1, [(7, 0, 10, True), (8, 20, 5, False)])
    value += lockrecord.pack(2, [(9, 40, 1, False)])
    moved = lockrecord.with_open_owned_by(value, 7, 2)
    assert lockrecord.decode(moved) == [(2, 7, 0, 10, True), (1, 8, 20, 5, False),
                                        (2, 9, 40, 1, False)]
    assert lockrecord.decode(lockrecord.with_open_owned_by(value, 7, None)) == [
        (1, 8, 20, 5, False), (2, 9, 40, 1, False)]
    assert lockrecord.with_open_owned_by(lockrecord.pack(1, [(7, 0, 10, True)]), 7, None) is None
