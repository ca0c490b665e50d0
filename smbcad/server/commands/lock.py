"""LOCK ([MS-SMB2] 3.3.5.14): byte-range locks and unlocks.

Decode and validate the element array, then lock or unlock through the
file's ``locks.ByteRangeLockList`` ([MS-FSA] 2.1.5.8/2.1.5.9), then answer.
A blocking lock that conflicts goes Pending: the interim STATUS_PENDING goes
out at once (clients wait for it before they may CANCEL), and the final
response follows when the lock is granted (the holder unlocked or closed),
when CANCEL arrives (STATUS_CANCELLED), or when this open is closed by CLOSE,
TREE_DISCONNECT or LOGOFF (STATUS_RANGE_NOT_LOCKED).

Validation follows what Windows answers (smbtorture smb2.lock.valid-request,
multiple-unlock; Samba smb2_lock.c agrees):

- The first element decides: SMB2_LOCKFLAG_UNLOCK alone means an unlock batch,
  one of the four lock combinations of 2.2.26.1 a lock batch, anything else
  (including UNLOCK|FAIL_IMMEDIATELY) is STATUS_INVALID_PARAMETER.
- Lock batch: every element must be a lock combination, and with more than
  one element every one must carry FAIL_IMMEDIATELY (3.3.5.14.2), checked
  before anything is locked; ranges past 2**64 - 1 give
  STATUS_INVALID_LOCK_RANGE.  Then all or nothing: a conflict unlocks what
  earlier elements took and answers STATUS_LOCK_NOT_GRANTED.
- Unlock batch: elements are processed in order and processing stops at the
  first failure (an element that is not a plain UNLOCK:
  STATUS_INVALID_PARAMETER; a bad range: STATUS_INVALID_LOCK_RANGE; no
  matching lock: STATUS_RANGE_NOT_LOCKED); what was unlocked stays unlocked
  (3.3.5.14.1).

Lock sequences (3.3.5.14): on a resilient, durable or persistent open a
request carrying a LockSequenceIndex whose entry holds the same
SequenceNumber is a replay of one already applied and succeeds untouched;
a fully successful batch records its number.  For a persistent open the new
locks and sequence entries are committed to the handle store before the
response goes out (``durable.persist``).
"""

import asyncio

from smbcad.proto.constants import Dialect, GlobalCaps
from smbcad.proto.errors import SmbError
from smbcad.proto.lock import LOCK_RESPONSE_BODY, LockFlags, LockRequest
from smbcad.proto.status import NtStatus
from smbcad.server import durable, leases, locks
from smbcad.server.context import Pending

_LOCK_COMBINATIONS = LockFlags.VALID_COMBINATIONS - {LockFlags.UNLOCK}
# Interim response only if the handle store commit is slow (3.3.4.2).
_COMMIT_INTERIM_S = 0.5


def handle(ctx):
    request = LockRequest.decode(ctx.message)
    open_ = ctx.lookup_open(request.file_id)
    if open_.is_pipe:
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "LOCK on a named pipe")
    slot = _sequence_slot(ctx, open_, request)
    if slot is not None and _is_replay(open_, slot, request.lock_sequence_number):
        return LOCK_RESPONSE_BODY
    state = ctx.server.opens.file_state(open_.file_key)
    if state is None:
        raise SmbError(NtStatus.FILE_CLOSED)
    elements = request.locks
    if elements[0].flags == LockFlags.UNLOCK:
        _check_not_directory(open_)
        try:
            _unlock(state, open_, elements)
        except SmbError as exc:
            # What was unlocked before the failure stays unlocked (3.3.5.14.1).
            return _after_commit(ctx, open_, exc)
        _record_sequence(open_, slot, request)
        return _after_commit(ctx, open_)
    wanted, blocking = _validate_locks(elements)
    _check_not_directory(open_)
    leases.break_read_caching(ctx.server, open_)     # locks end shared read caching
    table = locks.lock_list(state, ctx.server.opens.shared_locks(open_.file_key))
    if table.lock(open_, wanted):
        _record_sequence(open_, slot, request)
        return _after_commit(ctx, open_)
    if not blocking:
        locks.discard_if_empty(state)
        if slot is not None:
            # the entry this request invalidated must not come back after a restart
            return _after_commit(ctx, open_, SmbError(NtStatus.LOCK_NOT_GRANTED))
        raise SmbError(NtStatus.LOCK_NOT_GRANTED)
    return _wait(ctx, state, table, open_, wanted[0], request, slot)


def _validate_locks(elements) -> tuple[list[locks.LockRange], bool]:
    """The lock batch's elements as ranges, and whether it may block (3.3.5.14.2)."""
    first = elements[0].flags
    if first not in _LOCK_COMBINATIONS:
        raise SmbError(NtStatus.INVALID_PARAMETER, f"bad lock flags 0x{first:x}")
    blocking = not first & LockFlags.FAIL_IMMEDIATELY
    if len(elements) > 1 and any(not element.flags & LockFlags.FAIL_IMMEDIATELY
                                 for element in elements):
        raise SmbError(NtStatus.INVALID_PARAMETER, "blocking lock in a multi-element LOCK")
    wanted = []
    for element in elements:
        if element.flags not in _LOCK_COMBINATIONS:
            raise SmbError(NtStatus.INVALID_PARAMETER, "unlock or bad flags in a lock batch")
        if not locks.valid_range(element.offset, element.length):
            raise SmbError(NtStatus.INVALID_LOCK_RANGE)
        wanted.append(locks.LockRange(element.offset, element.length,
                                      bool(element.flags & LockFlags.EXCLUSIVE_LOCK)))
    return wanted, blocking


def _unlock(state, open_, elements) -> None:
    """3.3.5.14.1: in order, stopping at the first failure; whatever was
    unlocked before it stays unlocked, and waiters it held back are granted."""
    table = state.locks
    try:
        for element in elements:
            if element.flags != LockFlags.UNLOCK:
                raise SmbError(NtStatus.INVALID_PARAMETER, "lock element in an unlock batch")
            if not locks.valid_range(element.offset, element.length):
                raise SmbError(NtStatus.INVALID_LOCK_RANGE)
            if table is None or not table.unlock(open_, element.offset, element.length):
                raise SmbError(NtStatus.RANGE_NOT_LOCKED)
    finally:
        if table is not None:
            table.grant_waiters()
            locks.discard_if_empty(state)


def _wait(ctx, state, table, open_, want: locks.LockRange, request, slot) -> Pending:
    """Queue the blocking lock and go async (3.3.4.2).  Whichever of grant,
    CANCEL or the open's close comes first decides the answer; a CANCEL that
    arrives after the grant changes nothing, the lock is held."""
    outcome = asyncio.get_running_loop().create_future()

    def wake(status: int) -> None:
        if not outcome.done():
            outcome.set_result(status)

    waiter = table.wait(open_, want, wake)

    async def granted():
        try:
            status = await outcome
        finally:
            # Cancelled (CANCEL, or the connection went away): stop waiting.
            table.forget(waiter)
            locks.discard_if_empty(state)
        if status != NtStatus.SUCCESS:
            raise SmbError(status)
        _record_sequence(open_, slot, request)
        commit = durable.persist(ctx.server.opens, open_)
        if commit is not None:
            await commit
        return LOCK_RESPONSE_BODY

    return Pending(granted(), 0.0, lambda: wake(NtStatus.CANCELLED))


def _check_not_directory(open_) -> None:
    """[MS-FSA] 2.1.5.8/2.1.5.9: byte-range locks are not permitted on directories."""
    if open_.is_directory:
        raise SmbError(NtStatus.INVALID_PARAMETER, "LOCK on a directory")


# --- lock sequence replay (3.3.5.14) -----------------------------------------------------
#
# Open.LockSequenceArray is ``open_.lock_sequences``: 64 bytes, slot
# LockSequenceIndex - 1, each 0x10 (Valid) | SequenceNumber, the byte format
# of the handle store's records (smbcad/store/records.py).  Verification
# follows the specification, not note <370> (Windows checks only resilient,
# and from Windows 8 persistent, opens): every resilient, durable or
# persistent open on a dialect after 2.0.2 is checked, as Samba does by
# default, and every open on a connection that negotiated MULTI_CHANNEL (a
# LOCK retried on another channel: the spec's other reason to check).

_SEQUENCE_VALID = 0x10
_SEQUENCE_ENTRIES = 64


def _sequence_slot(ctx, open_, request) -> int | None:
    """The LockSequenceArray slot this request is verified against and
    recorded in, or None when lock sequences do not apply (3.3.5.14)."""
    index = request.lock_sequence_index
    if not 1 <= index <= _SEQUENCE_ENTRIES:
        return None
    multichannel = ctx.connection.server_capabilities & GlobalCaps.MULTI_CHANNEL
    if not (open_.resilient or open_.durable or open_.persistent or multichannel):
        return None
    if ctx.connection.dialect == Dialect.SMB_2_0_2:    # the field is reserved there
        return None
    return index - 1


def _is_replay(open_, slot: int, number: int) -> bool:
    """3.3.5.14: a Valid entry with the same SequenceNumber means this LOCK
    was applied already: answer success and do nothing.  A different number
    invalidates the entry and the request is processed."""
    entry = open_.lock_sequences[slot]
    if not entry & _SEQUENCE_VALID:
        return False
    if entry & 0x0F == number:
        return True
    open_.lock_sequences[slot] = 0
    return False


def _record_sequence(open_, slot: int | None, request) -> None:
    """After a fully successful unlock or lock batch (3.3.5.14.1, .2)."""
    if slot is not None:
        open_.lock_sequences[slot] = _SEQUENCE_VALID | request.lock_sequence_number


def _after_commit(ctx, open_, error: SmbError | None = None):
    """The answer once a persistent open's record carries its new locks and
    lock sequences (issue 4: committed before the response goes out)."""
    commit = durable.persist(ctx.server.opens, open_)
    if commit is None:
        if error is not None:
            raise error
        return LOCK_RESPONSE_BODY

    async def answer():
        await commit
        if error is not None:
            raise error
        return LOCK_RESPONSE_BODY
    return Pending(answer(), _COMMIT_INTERIM_S)
