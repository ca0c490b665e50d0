"""Byte-range locks: one file's lock list and the lock requests waiting on it.

[MS-FSA] 2.1.1.7 (ByteRangeLock), 2.1.4.10 (does a range conflict with the
locks), 2.1.5.8 (lock), 2.1.5.9 (unlock), 2.1.5.2/2.1.5.3 (reads and writes
meet locks), 2.1.5.5 (a closed open loses its locks); [MS-SMB2] 3.3.5.14.

Sans-IO: a ``ByteRangeLockList`` is plain data.  A waiting (blocking) lock
request is a ``LockWaiter`` whose ``wake(status)`` callback the list calls,
synchronously, once the lock is granted (STATUS_SUCCESS, the lock already
inserted) or once its own open closes (STATUS_RANGE_NOT_LOCKED, what Windows
and Samba answer for a pending lock cancelled by CLOSE, TREE_DISCONNECT or
LOGOFF).  ``commands/lock.py`` turns that into a Pending response.

The list hangs off the file's ``FileState.locks`` only while it holds a lock
or a waiter, so READ and WRITE on a file nobody locked pay for one dict
lookup and an ``is None`` test (``check_io``).

Locks are owned by the Open: SMB2 has no per-process LockKey (it is always
0), so the key of 2.1.1.7 is left out.  Locks are in-process only: this
server is the only writer on its shares, so no POSIX fcntl locks are taken.

Status codes as Windows gives them over SMB2 (smbtorture smb2.lock.errorcode):
a lock that cannot be granted is always STATUS_LOCK_NOT_GRANTED and a READ or
WRITE that meets a lock is STATUS_FILE_LOCK_CONFLICT.  SMB1's "lock cache"
(FILE_LOCK_CONFLICT for a timed lock retried at the offset that failed last,
or at offsets from 0xEF000000; Samba source3/smbd/blocking.c) belongs to
SMB1 lock timeouts and has no SMB2 equivalent: SMB2 locks either fail
immediately or wait without a timeout.
"""

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from smbcad.openstate.table import OpenStateFull
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

_U64_MAX = (1 << 64) - 1


def valid_range(offset: int, length: int) -> bool:
    """False when the range holds a byte past offset 2**64 - 1 (2.1.5.8 and
    2.1.5.9: STATUS_INVALID_LOCK_RANGE).  A zero length is always valid, and
    so is {2**64 - 1, 1}, whose one byte is the last addressable one."""
    return length == 0 or offset + length - 1 <= _U64_MAX


@dataclass(frozen=True, slots=True)
class LockRange:
    """One requested lock: what an SMB2_LOCK_ELEMENT asks for (2.2.26.1)."""

    offset: int
    length: int
    exclusive: bool


@dataclass(eq=False, slots=True)
class ByteRangeLock:
    """[MS-FSA] 2.1.1.7 ByteRangeLock.  ``last`` is LockOffset + LockLength - 1,
    kept because every conflict test needs it: -1 for the {0, 0} lock, which
    therefore overlaps nothing, exactly as 2.1.4.10 special-cases it."""

    offset: int
    length: int
    exclusive: bool
    owner: Any                          # the Open (OwnerOpen)
    last: int


@dataclass(eq=False, slots=True)
class LockWaiter:
    """A blocking lock request in CancelableOperationList (2.1.5.8)."""

    owner: Any
    want: LockRange
    wake: Callable[[int], None]


class ByteRangeLockList:
    """Stream.ByteRangeLockList ([MS-FSA] 2.1.1.5) plus its waiting lock requests.

    ``wake`` callbacks must not call back into the list: they only record the
    outcome (commands/lock.py resolves a future).
    """

    __slots__ = ("locks", "waiters", "shared")

    def __init__(self, shared: "SharedLocks | None" = None) -> None:
        self.locks: list[ByteRangeLock] = []
        self.waiters: list[LockWaiter] = []
        # With worker processes: the file's locks as the others see them.
        self.shared = shared

    @property
    def is_empty(self) -> bool:
        return not self.locks and not self.waiters

    def conflicts(self, offset: int, length: int, exclusive: bool, lock_intent: bool,
                  open_) -> bool:
        """[MS-FSA] 2.1.4.10, with LockKey always 0.

        Reads ask with exclusive False, writes with exclusive True, both with
        lock_intent False; lock requests with lock_intent True.  Unbounded
        integers make the spec's ``Offset + Length - 1`` exact, so the {0, 0}
        special cases fall out: a zero-length range at 0 ends at -1.
        """
        last = offset + length - 1
        for lock in self.locks:
            if offset > lock.last or last < lock.offset:
                continue
            if lock.exclusive:
                # Exclusive locks block all access by other opens, and even
                # the owner cannot stack a second exclusive lock on them.
                if lock.owner is not open_ or (exclusive and lock_intent):
                    return True
            elif exclusive:
                # Shared locks block writes and exclusive locks, the owner's too.
                return True
        return False

    def lock(self, open_, ranges: Iterable[LockRange]) -> bool:
        """Take every range or none (2.1.5.8 per element; [MS-SMB2] 3.3.5.14.2
        unlocks what earlier elements took when a later one is refused).
        Elements of one request can conflict with each other."""
        ranges = list(ranges)
        taken: list[ByteRangeLock] = []
        for want in ranges:
            if self.conflicts(want.offset, want.length, want.exclusive, True, open_):
                break
            lock = _new_lock(open_, want)
            self.locks.append(lock)
            taken.append(lock)
        else:
            if self.shared is None or self.shared.claim(
                    [(want.offset, want.length, want.exclusive) for want in ranges], self._mine()):
                return True
        for lock in taken:
            self.locks.remove(lock)
        return False

    def _mine(self) -> list[tuple[int, int, int, bool]]:
        """This process's locks on the file, as ``SharedLocks`` publishes them."""
        return [(lock.owner.persistent_id, lock.offset, lock.length, lock.exclusive)
                for lock in self.locks]

    def unlock(self, open_, offset: int, length: int) -> bool:
        """[MS-FSA] 2.1.5.9: remove one lock of this open with exactly this
        range, an exclusive one in preference to a shared one.  False means
        STATUS_RANGE_NOT_LOCKED.  Call ``grant_waiters`` after a batch."""
        found = None
        for index, lock in enumerate(self.locks):
            if lock.offset == offset and lock.length == length and lock.owner is open_:
                found = index
                if lock.exclusive:
                    break
        if found is None:
            return False
        del self.locks[found]
        if self.shared is not None:
            self.shared.publish(self._mine())
        return True

    def wait(self, open_, want: LockRange, wake: Callable[[int], None]) -> LockWaiter:
        """Queue a blocking request that conflicted (2.1.5.8 "wait until there
        are no overlapping ByteRangeLocks")."""
        waiter = LockWaiter(open_, want, wake)
        self.waiters.append(waiter)
        return waiter

    def forget(self, waiter: LockWaiter) -> None:
        """Drop a waiter (cancelled, or already woken: then a no-op)."""
        if waiter in self.waiters:
            self.waiters.remove(waiter)

    def grant_waiters(self) -> None:
        """Grant, oldest first, every waiting request that no longer conflicts;
        each grant is in place before the next request is tested."""
        for waiter in list(self.waiters):
            want = waiter.want
            if self.conflicts(want.offset, want.length, want.exclusive, True, waiter.owner):
                continue
            lock = _new_lock(waiter.owner, want)
            self.locks.append(lock)
            if self.shared is not None and not self.shared.claim(
                    [(want.offset, want.length, want.exclusive)], self._mine()):
                self.locks.remove(lock)          # another process holds it: wait on
                continue
            self.waiters.remove(waiter)
            waiter.wake(NtStatus.SUCCESS)

    def hand_over(self, open_) -> None:
        """Another process adopts the open (``durable_handover``): its locks
        leave this list but not the shared record, whose entries the adopter
        takes over (``OpenStateTable.adopt_locks``), so nobody can take their
        ranges meanwhile.  A disconnected open has no waiting requests."""
        self.locks = [lock for lock in self.locks if lock.owner is not open_]

    def release(self, open_) -> None:
        """The open is closing ([MS-FSA] 2.1.5.5): its locks go, its own
        waiting requests end with STATUS_RANGE_NOT_LOCKED, and whatever its
        locks held back is granted."""
        kept = [lock for lock in self.locks if lock.owner is not open_]
        if len(kept) != len(self.locks):
            self.locks = kept
            if self.shared is not None:
                self.shared.publish(self._mine())
        mine = [waiter for waiter in self.waiters if waiter.owner is open_]
        if mine:
            self.waiters = [waiter for waiter in self.waiters if waiter.owner is not open_]
            for waiter in mine:
                waiter.wake(NtStatus.RANGE_NOT_LOCKED)
        self.grant_waiters()


def _new_lock(open_, want: LockRange) -> ByteRangeLock:
    return ByteRangeLock(want.offset, want.length, want.exclusive, open_,
                         want.offset + want.length - 1)


# --- the per-file list on FileState (opens.FileState.locks) ----------------------------


class SharedLocks:
    """One file's locks in the node's shared records (``OpenTable.shared_locks``,
    worker processes): a lock is granted only if no other process's lock
    stops it, in the same transaction that publishes it, and a release is
    published and announced (``released``: other processes' waiting LOCKs
    try again)."""

    __slots__ = ("table", "key", "released")

    def __init__(self, table, key: tuple, released: Callable[[tuple], None]) -> None:
        self.table, self.key, self.released = table, key, released

    def claim(self, wanted, mine) -> bool:
        try:
            return self.table.claim_locks(self.key, wanted, mine)
        except OpenStateFull as exc:
            raise SmbError(NtStatus.INSUFFICIENT_RESOURCES, str(exc)) from None

    def publish(self, mine) -> None:
        self.table.publish_locks(self.key, mine)
        self.released(self.key)


def lock_list(state, shared: SharedLocks | None = None) -> ByteRangeLockList:
    """The file's list, created on first use."""
    if state.locks is None:
        state.locks = ByteRangeLockList(shared)
    return state.locks


def discard_if_empty(state) -> None:
    """Detach an empty list so I/O on the file skips lock checks again."""
    if state.locks is not None and state.locks.is_empty:
        state.locks = None


def check_io(server, open_, offset: int, length: int, write: bool) -> None:
    """STATUS_FILE_LOCK_CONFLICT when a READ or WRITE meets a lock ([MS-FSA]
    2.1.5.2, 2.1.5.3 via 2.1.4.10).  The READ/WRITE hot-path hook: with no
    locks on the file it costs a dict lookup.  Zero-length I/O never
    conflicts (smbtorture smb2.lock.zerobyteread)."""
    if not length:
        return
    opens = server.opens
    state = opens.file_state(open_.file_key)
    if ((state is not None and state.locks is not None
         and state.locks.conflicts(offset, length, write, False, open_))
            or (opens.open_state.shared and opens.open_state.foreign_lock_conflict(
                open_.file_key, offset, length, write))):
        raise SmbError(NtStatus.FILE_LOCK_CONFLICT,
                       "write meets a lock" if write else "read meets an exclusive lock")


def restore(state, open_, saved_locks, shared: SharedLocks | None = None) -> None:
    """The byte-range locks of an open rebuilt from its store record
    (``OpenTable.adopt``); nobody else holds locks on the file yet."""
    if not saved_locks:
        return
    table = lock_list(state, shared)
    for saved in saved_locks:
        table.locks.append(ByteRangeLock(saved.offset, saved.length, saved.exclusive, open_,
                                         saved.offset + saved.length - 1))
    if table.shared is not None:
        table.shared.publish(table._mine())


def hand_over(state, open_) -> None:
    """``ByteRangeLockList.hand_over`` on the file's list, if it has one."""
    if state.locks is not None:
        state.locks.hand_over(open_)
        discard_if_empty(state)


def release_open(state, open_) -> None:
    """CLOSE, TREE_DISCONNECT, LOGOFF and disconnect (all via
    OpenTable.close): drop the open's locks, end its waiting requests and
    wake those its locks held back."""
    table = state.locks
    if table is None:
        return
    table.release(open_)
    discard_if_empty(state)
