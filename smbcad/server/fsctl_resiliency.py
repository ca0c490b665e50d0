"""FSCTL_LMR_REQUEST_RESILIENCY ([MS-SMB2] 2.2.31.3, 3.3.5.15.9): the
client asks that an open survive a lost connection for a while, whatever
its oplock or lease, so it can reclaim it with DHnC (resilient handles,
SMB 2.1+; Hyper-V asks for them on the VM files it opens, [MS-HVRS]).

The request carries NETWORK_RESILIENCY_REQUEST (Timeout in milliseconds,
Reserved); the response carries no output.  What being resilient means on
disconnect, reconnect and expiry is ``smbcad.server.durable``'s business.
"""

import struct
from dataclasses import dataclass

from smbcad.proto.constants import Dialect
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import durable
from smbcad.server.context import Pending

# Interim response only if the handle store commit is slow (3.3.4.2).
_COMMIT_INTERIM_S = 0.5


@dataclass(frozen=True, slots=True)
class NetworkResiliencyRequest:
    """NETWORK_RESILIENCY_REQUEST (2.2.31.3): Timeout (ms), Reserved."""

    timeout_ms: int
    reserved: int = 0

    _LAYOUT = struct.Struct("<II")

    @classmethod
    def decode(cls, data) -> "NetworkResiliencyRequest":
        """STATUS_INVALID_PARAMETER when InputCount is below the 8 bytes of
        the structure (3.3.5.15.9)."""
        if len(data) < cls._LAYOUT.size:
            raise SmbError(NtStatus.INVALID_PARAMETER,
                           f"NETWORK_RESILIENCY_REQUEST of {len(data)} bytes")
        return cls(*cls._LAYOUT.unpack_from(data))

    def encode(self) -> bytes:
        return self._LAYOUT.pack(self.timeout_ms, self.reserved)


def request_resiliency(ctx, request, open_):
    """3.3.5.15.9.  Refused on 2.0.2, where resilient handles do not exist
    (the spec's MAY; <400>: Windows up to 2012 R2 accepts it on any
    dialect), and for a Timeout above MaxResiliencyTimeout.  Otherwise the
    open becomes resilient (IsDurable FALSE, IsResilient TRUE,
    ResiliencyTimeout, DurableOwner the caller); a persistent open's record
    is committed before the response."""
    if ctx.connection.dialect == Dialect.SMB_2_0_2:
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "resilient handles need SMB 2.1")
    if open_.is_pipe:
        raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "resiliency on a named pipe")
    wanted = NetworkResiliencyRequest.decode(request.input)
    if wanted.timeout_ms > durable.MAX_RESILIENCY_TIMEOUT_MS:
        raise SmbError(NtStatus.INVALID_PARAMETER,
                       f"resiliency timeout {wanted.timeout_ms} ms above"
                       f" {durable.MAX_RESILIENCY_TIMEOUT_MS} ms")
    durable.make_resilient(open_, ctx.session, wanted.timeout_ms)
    commit = durable.persist(ctx.server.opens, open_)
    if commit is None:
        return b""

    async def committed():
        await commit
        return b""
    return Pending(committed(), _COMMIT_INTERIM_S)
