"""smbcad.server.locks: the byte-range lock list ([MS-FSA] 2.1.4.10, 2.1.5.8, 2.1.5.9).

Expected values come from the spec's pseudocode and from smbtorture's
smb2.lock suite (source4/torture/smb2/lock.c), which records what Windows
answers.
"""

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smbcad.openstate.table import MemoryOpenState
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import locks
from smbcad.server.opens import FileState
from smbcad.server.locks import ByteRangeLockList, LockRange

U64_MAX = (1 << 64) - 1
A, B = object(), object()          # two opens of one file


def X(offset, length):
    return LockRange(offset, length, True)


def S(offset, length):
    return LockRange(offset, length, False)


# --- valid_range (2.1.5.8 validation) ---------------------------------------------------

@pytest.mark.parametrize("offset, length, valid", [
    (0, 0, True),
    (U64_MAX, 0, True),                      # smb2.lock.lock "max/0"
    (U64_MAX, 1, True),                      # "max/1": the last addressable byte
    (U64_MAX, 2, False),                     # "max/2": INVALID_LOCK_RANGE
    (U64_MAX, U64_MAX, False),               # smb2.lock.valid-request
    (0xFFFFFFFF, 0xFFFFFFFF, True),
    (1 << 63, 1, True),                      # "2^63/1"
    (1, U64_MAX, True),                      # ends exactly at 2**64 - 1
    (2, U64_MAX, False),
    (0, U64_MAX, True),
])
def test_valid_range(offset, length, valid):
    assert locks.valid_range(offset, length) is valid


# --- conflicts (2.1.4.10), as a table ----------------------------------------------------

# (held lock exclusive?, held by the same open?, request exclusive?, lock intent?) → conflict
CONFLICT_TABLE = {
    # An exclusive lock blocks every access by other opens ...
    (True, False, True, True): True,
    (True, False, False, True): True,
    (True, False, True, False): True,        # other open's write
    (True, False, False, False): True,       # other open's read
    # ... and only a second exclusive lock by its owner.
    (True, True, True, True): True,
    (True, True, False, True): False,        # shared stacks on own exclusive
    (True, True, True, False): False,        # owner writes through it
    (True, True, False, False): False,       # owner reads through it
    # A shared lock blocks exclusive intent, the owner's writes too.
    (False, False, True, True): True,
    (False, False, False, True): False,
    (False, False, True, False): True,
    (False, False, False, False): False,
    (False, True, True, True): True,         # exclusive on own shared: refused
    (False, True, False, True): False,
    (False, True, True, False): True,        # smb2.lock.rw-shared: owner's write conflicts
    (False, True, False, False): False,
}


@pytest.mark.parametrize("held_exclusive, same_open, exclusive, lock_intent",
                         sorted(CONFLICT_TABLE))
def test_conflict_table(held_exclusive, same_open, exclusive, lock_intent):
    table = ByteRangeLockList()
    assert table.lock(A, [LockRange(100, 10, held_exclusive)])
    requester = A if same_open else B
    expected = CONFLICT_TABLE[(held_exclusive, same_open, exclusive, lock_intent)]
    assert table.conflicts(105, 1, exclusive, lock_intent, requester) is expected
    # Adjacent ranges never conflict.
    assert not table.conflicts(90, 10, exclusive, lock_intent, requester)
    assert not table.conflicts(110, 10, exclusive, lock_intent, requester)


# smbtorture smb2.lock.zerobytelength: (lock1, lock2, lock2 granted?), both exclusive.
ZERO_BYTE_CASES = [
    ((10, 0), (10, 0), True),
    ((10, 0), (9, 1), True),
    ((10, 0), (10, 1), True),
    ((10, 0), (11, 1), True),
    ((10, 0), (9, 2), False),
    ((10, 0), (10, 2), True),
    ((10, 0), (9, 3), False),
    ((9, 1), (10, 0), True),
    ((10, 1), (10, 0), True),
    ((11, 1), (10, 0), True),
    ((9, 2), (10, 0), False),
    ((10, 2), (10, 0), True),
    ((9, 3), (10, 0), False),
    ((0, 0), (0, 0), True),
]


@pytest.mark.parametrize("first, second, granted", ZERO_BYTE_CASES)
@pytest.mark.parametrize("same_open", [True, False])
def test_zero_byte_locks(first, second, granted, same_open):
    table = ByteRangeLockList()
    assert table.lock(A, [X(*first)])
    assert table.lock(A if same_open else B, [X(*second)]) is granted


def test_zero_zero_range_overlaps_nothing():
    table = ByteRangeLockList()
    assert table.lock(A, [X(0, 0)])
    assert table.lock(B, [X(0, 0)])
    assert table.lock(B, [X(0, 100)])
    assert not table.conflicts(0, 0, True, True, A)


def test_lock_at_the_top_of_the_offset_space():
    table = ByteRangeLockList()
    assert table.lock(A, [X(U64_MAX, 1)])
    assert not table.lock(B, [X(U64_MAX, 1)])
    assert table.lock(B, [X(U64_MAX, 0)])   # zero length at max ends before it
    assert table.lock(B, [X(U64_MAX - 1, 1)])


@given(held=st.tuples(st.integers(0, 40), st.integers(1, 20), st.booleans(), st.booleans()),
       want=st.tuples(st.integers(0, 40), st.integers(1, 20), st.booleans(), st.booleans()))
def test_conflicts_match_a_byte_set_model(held, want):
    """For non-empty ranges 2.1.4.10 is "the byte sets intersect and the
    rules of the table above say so"."""
    offset, length, held_exclusive, same_open = held
    w_offset, w_length, exclusive, lock_intent = want
    table = ByteRangeLockList()
    table.lock(A, [LockRange(offset, length, held_exclusive)])
    intersect = bool(set(range(offset, offset + length)) & set(range(w_offset, w_offset + w_length)))
    rule = CONFLICT_TABLE[(held_exclusive, same_open, exclusive, lock_intent)]
    requester = A if same_open else B
    assert table.conflicts(w_offset, w_length, exclusive, lock_intent, requester) is (intersect and rule)


# --- lock: all or nothing ----------------------------------------------------------------

def test_multi_element_lock_is_all_or_nothing():
    table = ByteRangeLockList()
    assert table.lock(B, [X(10, 10)])
    assert not table.lock(A, [X(0, 10), X(10, 10)])     # second conflicts
    assert [lock.owner for lock in table.locks] == [B]  # first rolled back
    assert table.lock(A, [X(0, 10)])


def test_elements_of_one_request_can_conflict_with_each_other():
    table = ByteRangeLockList()
    assert not table.lock(A, [X(0, 10), X(5, 10)])
    assert table.locks == []
    assert table.lock(A, [S(0, 10), S(5, 10)])


def test_stacking():
    """smb2.lock.stacking and overlap."""
    table = ByteRangeLockList()
    assert table.lock(A, [S(0, 10)]) and table.lock(A, [S(0, 10)])
    assert not table.lock(A, [X(0, 10)])                 # exclusive on own shared
    table = ByteRangeLockList()
    assert table.lock(A, [X(0, 10)])
    assert table.lock(A, [S(0, 10)]) and table.lock(A, [S(0, 10)])
    assert not table.lock(B, [S(0, 10)])
    assert not table.lock(A, [X(0, 10)])                 # two exclusives never stack


# --- unlock (2.1.5.9) ---------------------------------------------------------------------

def test_unlock_needs_an_exact_match_by_the_owner():
    table = ByteRangeLockList()
    table.lock(A, [S(110, 4)])
    table.lock(A, [S(112, 4)])
    assert not table.unlock(A, 110, 6)                   # no coalescing
    assert not table.unlock(B, 110, 4)                   # wrong handle
    assert not table.unlock(A, 110, 5)
    assert table.unlock(A, 110, 4)
    assert not table.unlock(A, 110, 4)


def test_unlock_removes_the_exclusive_lock_first():
    table = ByteRangeLockList()
    table.lock(A, [X(10, 10)])
    table.lock(A, [S(10, 10)])
    assert table.unlock(A, 10, 10)
    assert [lock.exclusive for lock in table.locks] == [False]
    assert table.lock(B, [S(5, 10)])
    assert not table.lock(B, [X(5, 10)])


def test_stacked_locks_need_as_many_unlocks():
    table = ByteRangeLockList()
    table.lock(A, [X(0xFFFFFFFF, 0xFFFFFFFF)])
    table.lock(A, [S(0xFFFFFFFF, 0xFFFFFFFF)])
    table.lock(A, [S(0xFFFFFFFF, 0xFFFFFFFF)])
    assert [table.unlock(A, 0xFFFFFFFF, 0xFFFFFFFF) for _ in range(4)] == [True, True, True, False]
    assert table.is_empty


# --- waiters -------------------------------------------------------------------------------

class Wakes:
    def __init__(self):
        self.calls = []

    def __call__(self, name):
        return lambda status: self.calls.append((name, status))


def test_waiter_granted_when_the_holder_unlocks():
    table, wakes = ByteRangeLockList(), Wakes()
    table.lock(A, [X(100, 50)])
    waiter = table.wait(B, X(100, 50), wakes("b"))
    table.grant_waiters()
    assert wakes.calls == []
    assert table.unlock(A, 100, 50)
    table.grant_waiters()
    assert wakes.calls == [("b", NtStatus.SUCCESS)]
    assert [(lock.owner, lock.offset) for lock in table.locks] == [(B, 100)]
    assert table.waiters == []
    table.forget(waiter)                                  # already woken: no-op


def test_waiters_are_granted_oldest_first_and_block_each_other():
    C = object()
    table, wakes = ByteRangeLockList(), Wakes()
    table.lock(A, [X(0, 10)])
    table.wait(B, X(0, 10), wakes("b"))
    table.wait(C, X(5, 10), wakes("c"))
    table.release(A)
    assert wakes.calls == [("b", NtStatus.SUCCESS)]
    table.release(B)
    assert wakes.calls[-1] == ("c", NtStatus.SUCCESS)


def test_shared_waiters_are_granted_together():
    C = object()
    table, wakes = ByteRangeLockList(), Wakes()
    table.lock(A, [X(0, 10)])
    table.wait(B, S(0, 10), wakes("b"))
    table.wait(C, S(2, 2), wakes("c"))
    table.release(A)
    assert wakes.calls == [("b", NtStatus.SUCCESS), ("c", NtStatus.SUCCESS)]


def test_closing_the_waiting_open_ends_its_wait_with_range_not_locked():
    table, wakes = ByteRangeLockList(), Wakes()
    table.lock(A, [X(0, 10)])
    table.wait(B, X(0, 10), wakes("b"))
    table.release(B)
    assert wakes.calls == [("b", NtStatus.RANGE_NOT_LOCKED)]
    assert table.waiters == [] and len(table.locks) == 1


def test_forget_removes_a_cancelled_waiter():
    table, wakes = ByteRangeLockList(), Wakes()
    table.lock(A, [X(0, 10)])
    waiter = table.wait(B, X(0, 10), wakes("b"))
    table.forget(waiter)
    table.release(A)
    assert wakes.calls == [] and table.is_empty


# --- FileState helpers and the READ/WRITE hook ------------------------------------------------

def _server_with(state):
    return SimpleNamespace(opens=SimpleNamespace(file_state={state.key: state}.get,
                                                 open_state=MemoryOpenState()))


def _open(key=(1, 2)):
    return SimpleNamespace(file_key=key)


def test_check_io_without_locks_is_a_no_op():
    state = FileState((1, 2))
    server, open_ = _server_with(state), _open()
    locks.check_io(server, open_, 0, 100, write=True)
    locks.check_io(SimpleNamespace(opens=SimpleNamespace(file_state={}.get,
                                                         open_state=MemoryOpenState())),
                   open_, 0, 100, write=False)


@pytest.mark.parametrize("kind, owner_write, owner_read, other_write, other_read", [
    # smb2.lock.rw-shared and rw-exclusive
    ("shared", NtStatus.FILE_LOCK_CONFLICT, None, NtStatus.FILE_LOCK_CONFLICT, None),
    ("exclusive", None, None, NtStatus.FILE_LOCK_CONFLICT, NtStatus.FILE_LOCK_CONFLICT),
])
def test_check_io(kind, owner_write, owner_read, other_write, other_read):
    state = FileState((1, 2))
    owner, other = _open(), _open()
    server = _server_with(state)
    locks.lock_list(state).lock(owner, [LockRange(100, 100, kind == "exclusive")])

    def status(open_, write):
        try:
            locks.check_io(server, open_, 100, 100, write=write)
        except SmbError as exc:
            return exc.status
        return None

    assert status(owner, True) == owner_write
    assert status(owner, False) == owner_read
    assert status(other, True) == other_write
    assert status(other, False) == other_read
    # Zero-length I/O never conflicts (smb2.lock.zerobyteread); nor does I/O beside the lock.
    locks.check_io(server, other, 150, 0, write=True)
    locks.check_io(server, other, 0, 100, write=True)


def test_release_open_detaches_an_empty_list():
    state = FileState((1, 2))
    owner = _open()
    locks.lock_list(state).lock(owner, [X(0, 1)])
    locks.release_open(state, owner)
    assert state.locks is None
    locks.release_open(state, owner)                       # nothing left: no-op


def test_discard_if_empty_keeps_a_list_with_waiters():
    state = FileState((1, 2))
    table = locks.lock_list(state)
    table.wait(A, X(0, 1), lambda status: None)
    locks.discard_if_empty(state)
    assert state.locks is table
