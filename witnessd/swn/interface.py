"""The Witness RPC interface: calls in opnum order, ``OPNUMS``, server registration.

[MS-SWN] 3.1.4 and 6 (IDL); Samba ``librpc/idl/witness.idl`` names in comments.
Each call is a pair of frozen dataclasses, the [in] and the [out] parameters
(plus the DWORD result), each with its NDR parameter list in IDL order.
``witness_interface(service)`` registers ``{opnum: handler}``; a handler
decodes, lets the service operate and encodes (shared/STYLE.md rules 3, 11).
Undecodable stubs fail with fault nca_s_fault_ndr (0x6F7).

Access: calls without packet protection (no authentication, or CONNECT)
are refused with fault access_denied (0x5, reported by the client runtime
as ERROR_ACCESS_DENIED), as Windows Server 2012 and later refuse them
([MS-SWN] 3.1.4 and 7 note <4>).  The minimum is PKT (4), as in Samba's
dcesrv_interface_bind_require_integrity: on a connection-oriented transport
PKT signs every PDU exactly like PKT_INTEGRITY, so Windows' stricter reading
buys nothing on the wire; clients use INTEGRITY or PRIVACY anyway.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from smbca.rpc.dcerpc import (
    AuthLevel,
    CallContext,
    PendingCall,
    RpcFault,
    RpcInterface,
    SyntaxId,
)
from smbca.rpc.ndr import (
    CONTEXT_HANDLE,
    NULL_HANDLE,
    U32,
    WSTRING,
    ContextHandle,
    NdrError,
    Params,
    Unique,
    decode,
    encode,
)
from witnessd.swn.types import WITNESS_UUID, RespAsyncNotify, WitnessInterfaceList

WITNESS_SYNTAX = SyntaxId.of(WITNESS_UUID, 1, 1)
"""Registered as v1.1; binds for 1.0 and 1.1 are accepted (same major)."""


# -- opnum 0: WitnessrGetInterfaceList ([MS-SWN] 3.1.4.1; witness_GetInterfaceList) --

@dataclass(frozen=True, slots=True)
class GetInterfaceListRequest:
    """No [in] parameters besides the implicit binding handle."""

    NDR: ClassVar[Params]


GetInterfaceListRequest.NDR = Params(GetInterfaceListRequest, ())


@dataclass(frozen=True, slots=True)
class GetInterfaceListResponse:
    interface_list: WitnessInterfaceList | None
    return_value: int

    NDR: ClassVar[Params]


GetInterfaceListResponse.NDR = Params(GetInterfaceListResponse, (
    ("interface_list", Unique(WitnessInterfaceList.NDR)),
    ("return_value", U32),
))


# -- opnum 1: WitnessrRegister ([MS-SWN] 3.1.4.2; witness_Register) ------------------

@dataclass(frozen=True, slots=True)
class RegisterRequest:
    version: int
    net_name: str | None
    ip_address: str | None
    client_computer_name: str | None

    NDR: ClassVar[Params]


RegisterRequest.NDR = Params(RegisterRequest, (
    ("version", U32),
    ("net_name", Unique(WSTRING)),
    ("ip_address", Unique(WSTRING)),
    ("client_computer_name", Unique(WSTRING)),
))


@dataclass(frozen=True, slots=True)
class RegisterResponse:
    context_handle: ContextHandle
    return_value: int

    NDR: ClassVar[Params]


RegisterResponse.NDR = Params(RegisterResponse, (
    ("context_handle", CONTEXT_HANDLE),
    ("return_value", U32),
))


# -- opnum 2: WitnessrUnRegister ([MS-SWN] 3.1.4.3; witness_UnRegister) --------------

@dataclass(frozen=True, slots=True)
class UnRegisterRequest:
    context_handle: ContextHandle

    NDR: ClassVar[Params]


UnRegisterRequest.NDR = Params(UnRegisterRequest, (("context_handle", CONTEXT_HANDLE),))


@dataclass(frozen=True, slots=True)
class UnRegisterResponse:
    return_value: int

    NDR: ClassVar[Params]


UnRegisterResponse.NDR = Params(UnRegisterResponse, (("return_value", U32),))


# -- opnum 3: WitnessrAsyncNotify ([MS-SWN] 3.1.4.4; witness_AsyncNotify) ------------

@dataclass(frozen=True, slots=True)
class AsyncNotifyRequest:
    context_handle: ContextHandle

    NDR: ClassVar[Params]


AsyncNotifyRequest.NDR = Params(AsyncNotifyRequest, (("context_handle", CONTEXT_HANDLE),))


@dataclass(frozen=True, slots=True)
class AsyncNotifyResponse:
    response: RespAsyncNotify | None
    return_value: int

    NDR: ClassVar[Params]


AsyncNotifyResponse.NDR = Params(AsyncNotifyResponse, (
    ("response", Unique(RespAsyncNotify.NDR)),
    ("return_value", U32),
))


# -- opnum 4: WitnessrRegisterEx ([MS-SWN] 3.1.4.5; witness_RegisterEx) --------------

@dataclass(frozen=True, slots=True)
class RegisterExRequest:
    version: int
    net_name: str | None
    share_name: str | None
    ip_address: str | None
    client_computer_name: str | None
    flags: int
    keep_alive_timeout: int

    NDR: ClassVar[Params]


RegisterExRequest.NDR = Params(RegisterExRequest, (
    ("version", U32),
    ("net_name", Unique(WSTRING)),
    ("share_name", Unique(WSTRING)),
    ("ip_address", Unique(WSTRING)),
    ("client_computer_name", Unique(WSTRING)),
    ("flags", U32),
    ("keep_alive_timeout", U32),
))

RegisterExResponse = RegisterResponse
"""Same [out] parameters as WitnessrRegister: ppContext and the DWORD."""


# -- opnum 5: WitnessrUnRegisterEx ([MS-SWN] 3.1.4.6; not in Samba's IDL) -------------

@dataclass(frozen=True, slots=True)
class UnRegisterExRequest:
    context_handle: ContextHandle

    NDR: ClassVar[Params]


UnRegisterExRequest.NDR = Params(UnRegisterExRequest, (("context_handle", CONTEXT_HANDLE),))


@dataclass(frozen=True, slots=True)
class UnRegisterExResponse:
    context_handle: ContextHandle = NULL_HANDLE
    return_value: int = 0

    NDR: ClassVar[Params]


UnRegisterExResponse.NDR = Params(UnRegisterExResponse, (
    ("context_handle", CONTEXT_HANDLE),
    ("return_value", U32),
))


OPNUMS: dict[int, tuple[type, type]] = {
    0: (GetInterfaceListRequest, GetInterfaceListResponse),
    1: (RegisterRequest, RegisterResponse),
    2: (UnRegisterRequest, UnRegisterResponse),
    3: (AsyncNotifyRequest, AsyncNotifyResponse),
    4: (RegisterExRequest, RegisterExResponse),
    5: (UnRegisterExRequest, UnRegisterExResponse),
}
"""opnum -> ([in] type, [out] type), for the server table and for test clients."""


class WitnessOperations(Protocol):
    """What the interface needs from the service: one method per opnum."""

    def get_interface_list(self, request: GetInterfaceListRequest, call: CallContext
                           ) -> GetInterfaceListResponse | PendingCall: ...

    def register(self, request: RegisterRequest, call: CallContext) -> RegisterResponse: ...

    def unregister(self, request: UnRegisterRequest, call: CallContext) -> UnRegisterResponse: ...

    def async_notify(self, request: AsyncNotifyRequest, call: CallContext
                     ) -> AsyncNotifyResponse | PendingCall: ...

    def register_ex(self, request: RegisterExRequest, call: CallContext) -> RegisterResponse: ...

    def unregister_ex(self, request: UnRegisterExRequest, call: CallContext
                      ) -> UnRegisterExResponse: ...


def encode_response(response: object) -> bytes:
    """The [out] stub of any response dataclass above (also used for deferred answers)."""
    return encode(type(response).NDR, response)  # type: ignore[attr-defined]


def _handler(opnum: int, operation: Callable) -> Callable[[bytes, CallContext], bytes | PendingCall]:
    request_type = OPNUMS[opnum][0]

    def handle(stub: bytes, call: CallContext) -> bytes | PendingCall:
        try:
            request = decode(request_type.NDR, stub)
        except NdrError as exc:
            raise RpcFault(exc.status, f"opnum {opnum}: {exc}", did_not_execute=True) from exc
        result = operation(request, call)
        return result if isinstance(result, PendingCall) else encode_response(result)
    return handle


def witness_interface(service: WitnessOperations) -> RpcInterface:
    """The server registration: ``{opnum: handler}`` over ``service``."""
    operations = (service.get_interface_list, service.register, service.unregister,
                  service.async_notify, service.register_ex, service.unregister_ex)
    return RpcInterface("witness", WITNESS_SYNTAX,
                        {opnum: _handler(opnum, operation)
                         for opnum, operation in enumerate(operations)},
                        min_auth_level=AuthLevel.PKT)
