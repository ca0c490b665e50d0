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
"""

import asyncio

from smbcad.proto.errors import SmbError
from smbcad.proto.lock import LOCK_RESPONSE_BODY, LockFlags, LockRequest
from smbcad.proto.status import NtStatus
from smbcad.server import leases, locks
from smbcad.server.context import Pending

_LOCK_COMBINATIONS = LockFlags.VALID_COMBINATIONS - {LockFlags.UNLOCK}


def handle(ctx):
    request = LockRequest.decode(ctx.message)
    open_ = ctx.lookup_open(request.file_id)
    if open_.is_pipe:
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "LOCK on a named pipe")
    if _is_replay(ctx, open_, request):
        return LOCK_RESPONSE_BODY
    state = ctx.server.opens_by_file.get(open_.file_key)
    if state is None:
        raise SmbError(NtStatus.FILE_CLOSED)
    elements = request.locks
    if elements[0].flags == LockFlags.UNLOCK:
        _check_not_directory(open_)
        _unlock(state, open_, elements)
        _record_sequence(ctx, open_, request)
        return LOCK_RESPONSE_BODY
    wanted, blocking = _validate_locks(elements)
    _check_not_directory(open_)
    leases.break_read_caching(ctx.server, open_)     # locks end shared read caching
    table = locks.lock_list(state)
    if table.lock(open_, wanted):
        _record_sequence(ctx, open_, request)
        return LOCK_RESPONSE_BODY
    if not blocking:
        locks.discard_if_empty(state)
        raise SmbError(NtStatus.LOCK_NOT_GRANTED)
    return _wait(ctx, state, table, open_, wanted[0], request)


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


def _wait(ctx, state, table, open_, want: locks.LockRange, request) -> Pending:
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
        _record_sequence(ctx, open_, request)
        return LOCK_RESPONSE_BODY

    return Pending(granted(), 0.0, lambda: wake(NtStatus.CANCELLED))


def _check_not_directory(open_) -> None:
    """[MS-FSA] 2.1.5.8/2.1.5.9: byte-range locks are not permitted on directories."""
    if open_.is_directory:
        raise SmbError(NtStatus.INVALID_PARAMETER, "LOCK on a directory")


# --- lock sequence replay (3.3.5.14), issue 4 ---------------------------------------------
#
# TODO(issue 4): lock sequence verification.  When Connection.Dialect is not
# 2.0.2 and Open.IsResilient/IsDurable/IsPersistent (or 3.x with
# SMB2_GLOBAL_CAP_MULTI_CHANNEL), and 1 <= request.lock_sequence_index <= 64
# with Open.LockSequenceArray[index].Valid, a request whose
# lock_sequence_number equals the stored one is a replay: answer SUCCESS
# without processing; a different number invalidates the entry.  After a
# successful lock or unlock batch, store the number and mark the entry valid
# (3.3.5.14.1/.2).  The array lives on the Open and must survive a durable
# reconnect (issue 4's handle store).  smbtorture: smb2.lock.replay_*.


def _is_replay(ctx, open_, request) -> bool:
    """Issue 4: True when the request replays one already applied."""
    return False


def _record_sequence(ctx, open_, request) -> None:
    """Issue 4: remember request.lock_sequence_number for its index."""
