"""ChannelSequence verification ([MS-SMB2] 3.3.5.2.10) and the outstanding
request counts behind it (3.3.1.10 Open.OutstandingRequestCount,
Open.OutstandingPreRequestCount; decremented when the response goes, 3.3.4.1).

A 3.x client bumps the ChannelSequence in its request headers each time it
moves an open to a new channel (a reconnect after failover, 3.2.4.1,
3.2.7.1).  The server remembers the newest one per open; a WRITE, SET_INFO or
IOCTL that still carries an older number comes from the abandoned channel and
is refused with STATUS_FILE_NOT_AVAILABLE, so a late duplicate cannot
overwrite what a replay on the new channel already did.

``verify`` is the rule itself, pure: (the open's counters, the request's
number, the replay flag) → the new counters, or None for "stale".  ``check``
applies it to an Open for one request (called by ``RequestContext.lookup_open``
for every command that names a FileId) and arranges the decrement for when the
response is sent.

What is implemented of the counts: every request that passes the check is
counted, and ``ctx.after_send`` uncounts it once its (final) response is
sent, against the number the open holds by then (as Samba's
smbd_smb2_request_reply_update_counts does).  Requests that never get a
response because their connection went away are not uncounted here; the
counts of an open that loses its connection are meaningless and should be
reset when it is disconnected or reattached (see ``reset``).

The replay flag with a newer number follows the Windows 8 / Server 2012
reading (<273>) that Samba also implements: adopt it only while no
pre-requests are outstanding, else refuse the modifying commands.
"""

from dataclasses import dataclass

from smbcad.proto.constants import Command, Dialect
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

_WINDOW = 0x7FFF
# "the server MUST fail SMB2 WRITE, SET_INFO, and IOCTL requests" (3.3.5.2.10);
# other commands proceed uncounted.
FAILS_WHEN_STALE = frozenset({Command.WRITE, Command.SET_INFO, Command.IOCTL})


@dataclass(frozen=True, slots=True)
class Counters:
    """Open.ChannelSequence, Open.OutstandingRequestCount and
    Open.OutstandingPreRequestCount (3.3.1.10)."""

    channel_sequence: int = 0
    outstanding: int = 0
    outstanding_pre: int = 0


def difference(request_sequence: int, open_sequence: int) -> int:
    """The 16-bit unsigned difference of 3.3.5.2.10."""
    return (request_sequence - open_sequence) & 0xFFFF


def verify(counters: Counters, request_sequence: int, replay: bool) -> Counters | None:
    """3.3.5.2.10 for one request; None when it must be refused (for WRITE,
    SET_INFO and IOCTL) or passes uncounted (the other commands)."""
    delta = difference(request_sequence, counters.channel_sequence)
    if delta == 0:
        if replay and counters.outstanding_pre:
            return None
        return Counters(counters.channel_sequence, counters.outstanding + 1,
                        counters.outstanding_pre)
    if delta <= _WINDOW:
        if replay and counters.outstanding_pre:
            return None
        return Counters(request_sequence & 0xFFFF, 1,
                        counters.outstanding_pre + counters.outstanding)
    return None


def completed(counters: Counters, request_sequence: int) -> Counters:
    """The response to a counted request went out (3.3.4.1): it was one of
    the current channel's if its number is still the open's, else one of
    the earlier channels'."""
    if request_sequence == counters.channel_sequence and counters.outstanding:
        return Counters(counters.channel_sequence, counters.outstanding - 1,
                        counters.outstanding_pre)
    if counters.outstanding_pre:
        return Counters(counters.channel_sequence, counters.outstanding,
                        counters.outstanding_pre - 1)
    return counters


# --- glue: an Open and a request ----------------------------------------------------------

def counters_of(open_) -> Counters:
    return Counters(open_.channel_sequence, open_.outstanding_requests,
                    open_.outstanding_pre_requests)


def _store(open_, counters: Counters) -> None:
    open_.channel_sequence = counters.channel_sequence
    open_.outstanding_requests = counters.outstanding
    open_.outstanding_pre_requests = counters.outstanding_pre


def check(ctx, open_) -> None:
    """Verify the request's ChannelSequence against ``open_`` (3.3.5.2.10):
    skipped before 3.0; STATUS_FILE_NOT_AVAILABLE for a stale WRITE,
    SET_INFO or IOCTL; otherwise count the request until its response."""
    if ctx.connection.dialect < Dialect.SMB_3_0:
        return
    header = ctx.header
    sequence = header.channel_sequence
    updated = verify(counters_of(open_), sequence, header.is_replay)
    if updated is None:
        if header.command in FAILS_WHEN_STALE:
            raise SmbError(NtStatus.FILE_NOT_AVAILABLE,
                           f"stale ChannelSequence 0x{sequence:04x}"
                           f" (open has 0x{open_.channel_sequence:04x})")
        return
    _store(open_, updated)
    ctx.after_send.append(lambda: _store(open_, completed(counters_of(open_), sequence)))


def reset(open_) -> None:
    """Forget the outstanding counts: the open's connection is gone, and with
    it every request still in flight on it (3.3.7.1)."""
    open_.outstanding_requests = 0
    open_.outstanding_pre_requests = 0
