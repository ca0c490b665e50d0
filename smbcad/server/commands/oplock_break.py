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


def handle(ctx):
    connection = ctx.connection
    ack = decode_oplock_break_acknowledgment(
        ctx.message, lease_allowed=connection.dialect != Dialect.SMB_2_0_2)
    if isinstance(ack, LeaseBreakAcknowledgment):
        level = leases.acknowledge_lease(ctx, ack.lease_key, ack.lease_state)
        return LeaseBreakResponse(ack.lease_key, level).encode()
    open_ = ctx.lookup_open(ack.file_id)
    level = leases.acknowledge_oplock(ctx, open_, ack.oplock_level)
    return OplockBreakResponse(level, ack.file_id).encode()
