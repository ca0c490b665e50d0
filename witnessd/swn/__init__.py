"""MS-SWN, the Service Witness Protocol, server side ([MS-SWN] 3.1).

``types``: constants, NDR structures, notification messages; ``interface``:
the calls by opnum and the RPC registration; ``model``: the abstract data
model; ``service``: operations, local events and timers.  Decisions where
the spec, Windows and Samba disagree are listed in ``service``'s docstring.
"""

from witnessd.swn.interface import (
    OPNUMS,
    WITNESS_SYNTAX,
    AsyncNotifyRequest,
    AsyncNotifyResponse,
    GetInterfaceListRequest,
    GetInterfaceListResponse,
    RegisterExRequest,
    RegisterExResponse,
    RegisterRequest,
    RegisterResponse,
    UnRegisterExRequest,
    UnRegisterExResponse,
    UnRegisterRequest,
    UnRegisterResponse,
    encode_response,
    witness_interface,
)
from witnessd.swn.model import (
    Interface,
    PendingChange,
    ResourceNameStyle,
    WitnessRegistration,
    WitnessSettings,
)
from witnessd.swn.service import EventError, EventResult, ServiceObserver, WitnessService
from witnessd.swn.types import (
    WITNESS_UNSPECIFIED_VERSION,
    WITNESS_UUID,
    WITNESS_V1,
    WITNESS_V2,
    InterfaceFlags,
    InterfaceState,
    IpAddrFlags,
    IpAddrInfo,
    IpAddrInfoList,
    MessageType,
    RegisterFlags,
    ResourceChange,
    ResourceState,
    RespAsyncNotify,
    Win32Error,
    WitnessInterfaceInfo,
    WitnessInterfaceList,
    build_notify,
    parse_messages,
)

__all__ = [
    "OPNUMS", "WITNESS_SYNTAX", "WITNESS_UNSPECIFIED_VERSION", "WITNESS_UUID", "WITNESS_V1",
    "WITNESS_V2", "AsyncNotifyRequest", "AsyncNotifyResponse", "EventError", "EventResult",
    "GetInterfaceListRequest", "GetInterfaceListResponse", "Interface", "InterfaceFlags",
    "InterfaceState", "IpAddrFlags", "IpAddrInfo", "IpAddrInfoList", "MessageType",
    "PendingChange", "RegisterExRequest", "RegisterExResponse", "RegisterFlags",
    "RegisterRequest", "RegisterResponse", "ResourceChange", "ResourceNameStyle",
    "ResourceState", "RespAsyncNotify", "ServiceObserver", "UnRegisterExRequest",
    "UnRegisterExResponse", "UnRegisterRequest", "UnRegisterResponse", "Win32Error",
    "WitnessInterfaceInfo", "WitnessInterfaceList", "WitnessRegistration", "WitnessService",
    "WitnessSettings", "build_notify", "encode_response", "parse_messages", "witness_interface",
]
