"""OPLOCK_BREAK acknowledgments ([MS-SMB2] 3.3.5.22).

An oplock acknowledgment (StructureSize 24) names the open by FileId
(3.3.5.22.1); a lease acknowledgment (36, not on 2.0.2) names the lease by
the connection's ClientGuid and the LeaseKey (3.3.5.22.2).  The break state
itself lives in ``smbcad.server.leases``.
"""

from smbcad.proto.constants import Dialect
from smbcad.proto.oplock_break import (
    LeaseBreakAcknowledgment, LeaseBreakResponse, OplockBreakResponse,
    decode_oplock_break_acknowledgment)
from smbcad.server import leases
from smbcad.server.context import answer_after


def handle(ctx):
    connection = ctx.connection
    ack = decode_oplock_break_acknowledgment(
        ctx.message, lease_allowed=connection.dialect != Dialect.SMB_2_0_2)
    if isinstance(ack, LeaseBreakAcknowledgment):
        _end_replay_eligibility(ctx, ack.lease_key)
        level = leases.acknowledge_lease(ctx, ack.lease_key, ack.lease_state)
        holder = ctx.server.leasing.lease(connection.client_guid, ack.lease_key)
        return _when_stored(holder, LeaseBreakResponse(ack.lease_key, level).encode())
    open_ = ctx.lookup_open(ack.file_id)       # also ends its replay eligibility
    level = leases.acknowledge_oplock(ctx, open_, ack.oplock_level)
    holder = ctx.server.leasing.grants.get(open_)
    return _when_stored(holder, OplockBreakResponse(level, ack.file_id).encode())


def _when_stored(holder, body: bytes):
    """A persistent open's new caching state is in the handle store before
    the acknowledgment is answered (issue 4 item 7)."""
    commit = getattr(holder, "commit", None)
    if commit is None or commit.done():
        return body
    return answer_after(commit, body)


def _end_replay_eligibility(ctx, lease_key: bytes) -> None:
    """3.3.5.22.2: a lease break acknowledgment uses every open of the lease,
    so none of them answers a replayed CREATE any more (the oplock
    acknowledgment does the same for its one open through lookup_open)."""
    lease = ctx.server.leasing.lease(ctx.connection.client_guid, lease_key)
    for open_ in lease.opens if lease is not None else ():
        open_.is_replay_eligible = False
