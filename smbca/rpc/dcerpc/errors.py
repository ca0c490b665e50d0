"""DCE/RPC errors that carry their wire status (shared/STYLE.md rule 8).

``RpcFault`` is raised by interface code: the call fails with a fault PDU and
the connection lives on.  ``ProtocolError`` means the peer broke the protocol:
``RpcConnection.receive_data`` queues whatever answer the spec asks for
(fault or bind_nak), moves to CLOSED and raises it, and the transport closes
the pipe or socket once the queued bytes are sent.
"""

from smbca.rpc.dcerpc.constants import FaultStatus


class RpcError(Exception):
    """Base class; ``status`` is the fault status that goes (or would go) on the wire."""

    status: int = FaultStatus.NCA_S_PROTO_ERROR

    def __init__(self, message: str = "", status: int | None = None) -> None:
        if status is not None:
            self.status = status
        super().__init__(message or f"DCE/RPC status 0x{self.status:08X}")


class RpcFault(RpcError):
    """A call failed; answered with a fault PDU ([MS-RPCE] 3.3.3.4.1, 3.3.3.5.1).

    ``did_not_execute`` sets PFC_DID_NOT_EXECUTE, telling the client the manager
    routine never ran (unknown opnum, unknown context, undecodable stub).
    """

    status = FaultStatus.NCA_S_FAULT_UNSPEC

    def __init__(
        self, status: int, message: str = "", *, did_not_execute: bool = False
    ) -> None:
        super().__init__(message, status)
        self.did_not_execute = did_not_execute


class ProtocolError(RpcError):
    """The peer violated the protocol; the connection must be closed ([MS-RPCE] 3.3.3.5.7)."""


class PduDecodeError(ProtocolError):
    """Bytes that do not parse as the PDU their header claims ([C706] 12.6)."""
