"""Sans-IO connection-oriented DCE/RPC ([C706] ch. 11-12, [MS-RPCE] 2.2.2, 3.3).

Shared by witnessd (ncacn_ip_tcp) and smbcad's named pipes (ncacn_np).
Imports the standard library only (shared/STYLE.md layering rules).  This
module is the public surface; the submodules are private.

Typical use::

    groups = AssociationGroups()
    conn = RpcConnection(interface_table(my_interface), groups,
                         secondary_address="\\\\PIPE\\\\srvsvc",
                         security=provider, on_output=wake_transport)
    try:
        conn.receive_data(data)
    except ProtocolError:
        ...send conn.pdus_to_send(), then close the transport...
    for pdu in conn.pdus_to_send():
        ...
"""

from smbca.rpc.dcerpc.association import (
    TRANSITIONS,
    BoundContext,
    ConnState,
    RpcConnection,
    state_diagram,
)
from smbca.rpc.dcerpc.constants import (
    AuthLevel,
    AuthType,
    BindNakReason,
    BindTimeFeatures,
    ContextResult,
    FaultStatus,
    PfcFlags,
    ProviderReason,
    PType,
)
from smbca.rpc.dcerpc.elements import (
    NDR20,
    NDR64,
    AuthVerifier,
    PresentationContext,
    PresentationResult,
    SyntaxId,
)
from smbca.rpc.dcerpc.errors import PduDecodeError, ProtocolError, RpcError, RpcFault
from smbca.rpc.dcerpc.interface import (
    AssociationGroup,
    AssociationGroups,
    CallContext,
    InterfaceHandler,
    OpHandler,
    PendingCall,
    RpcInterface,
    interface_table,
)
from smbca.rpc.dcerpc.negotiation import negotiate_frag_size
from smbca.rpc.dcerpc.pdu import (
    AlterContext,
    AlterContextResp,
    Auth3,
    Bind,
    BindAck,
    BindNak,
    CoCancel,
    Fault,
    Orphaned,
    Pdu,
    PduHeader,
    Request,
    Response,
    Shutdown,
    decode_pdu,
)
from smbca.rpc.dcerpc.security import (
    AUTH_TRANSITIONS,
    AuthPhase,
    AuthRefused,
    AuthState,
    SecurityContext,
    SecurityError,
    SecurityProvider,
)
from smbca.rpc.dcerpc.verification import VerificationTrailer

__all__ = [
    "AUTH_TRANSITIONS", "AuthPhase", "AuthRefused", "AuthState", "PendingCall",
    "SecurityContext", "SecurityError", "SecurityProvider",
    "TRANSITIONS", "AlterContext", "AlterContextResp", "AssociationGroup",
    "AssociationGroups", "Auth3", "AuthLevel", "AuthType", "AuthVerifier", "Bind",
    "BindAck", "BindNak", "BindNakReason", "BindTimeFeatures", "BoundContext",
    "CallContext", "CoCancel", "ConnState", "ContextResult", "Fault", "FaultStatus",
    "InterfaceHandler", "NDR20", "NDR64", "OpHandler", "Orphaned", "Pdu",
    "PduDecodeError", "PduHeader", "PfcFlags", "PresentationContext",
    "PresentationResult", "ProtocolError", "ProviderReason", "PType", "Request",
    "Response", "RpcConnection", "RpcError", "RpcFault", "RpcInterface", "Shutdown",
    "SyntaxId", "VerificationTrailer", "decode_pdu", "interface_table",
    "negotiate_frag_size", "state_diagram",
]
