"""Connection-oriented DCE/RPC PDU codec ([C706] ch. 12, [MS-RPCE] 2.2.2).

Each PDU is a frozen dataclass with explicit ``encode()`` and ``decode()``.
Header fields come first (``call_id``, ``pfc_flags``), then the body fields in
C706 order; lengths, counts and padding are computed in ``encode()``.  We
always encode version 5.0 with little-endian/ASCII/IEEE data representation;
``decode()`` accepts minor version 0 or 1 and leaves the other header checks
(version, drep) to the connection, which answers them with bind_nak or fault.

The authentication verifier (sec_trailer + auth_value, [MS-RPCE] 2.2.2.11) is
split off into ``AuthVerifier`` on decode and appended on encode using the
``auth_pad_length`` it carries; computing padding and tokens is the job of the
security layer (a later issue).
"""

import struct
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Self, TypeAlias
from uuid import UUID

from smbca.rpc.dcerpc.constants import (
    DREP_LE_ASCII_IEEE,
    RPC_VERS,
    SINGLE_FRAGMENT,
    PfcFlags,
    PType,
)
from smbca.rpc.dcerpc.elements import (
    SEC_TRAILER_SIZE,
    AuthVerifier,
    PresentationContext,
    PresentationResult,
    unpack_at,
)
from smbca.rpc.dcerpc.errors import PduDecodeError

_HEADER_LE = struct.Struct("<BBBB4sHHI")
_HEADER_BE = struct.Struct(">BBBB4sHHI")
_BIND_HEAD = struct.Struct("<HHIB3x")  # max_xmit_frag, max_recv_frag, assoc_group_id, n_context
_ACK_HEAD = struct.Struct("<HHIH")  # max_xmit_frag, max_recv_frag, assoc_group_id, sec_addr.length
_RESULT_LIST_HEAD = struct.Struct("<B3x")  # n_results
_NAK_HEAD = struct.Struct("<HB")  # provider_reject_reason, n_protocols
_VERSION = struct.Struct("<BB")
_REQUEST_HEAD = struct.Struct("<IHH")  # alloc_hint, p_cont_id, opnum
_RESPONSE_HEAD = struct.Struct("<IHBB")  # alloc_hint, p_cont_id, cancel_count, reserved
_FAULT_BODY = struct.Struct("<IHBBII")  # ... + status, reserved2
_UUID = struct.Struct("<16s")

HEADER_SIZE = _HEADER_LE.size
REQUEST_HEADER_SIZE = HEADER_SIZE + _REQUEST_HEAD.size
RESPONSE_HEADER_SIZE = HEADER_SIZE + _RESPONSE_HEAD.size
FAULT_ALLOC_HINT = 0x20
"""Fault alloc_hint with no extended error info ([MS-RPCE] 2.2.2.8: blob = alloc_hint - 0x20)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PduHeader:
    """Common header of every connection-oriented PDU ([C706] 12.6.3.1)."""

    rpc_vers: int = RPC_VERS
    rpc_vers_minor: int = 0
    ptype: int
    pfc_flags: int = SINGLE_FRAGMENT
    packed_drep: bytes = DREP_LE_ASCII_IEEE
    frag_length: int
    auth_length: int = 0
    call_id: int

    def encode(self) -> bytes:
        return _HEADER_LE.pack(
            self.rpc_vers, self.rpc_vers_minor, self.ptype, self.pfc_flags,
            self.packed_drep, self.frag_length, self.auth_length, self.call_id,
        )

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Read the header in the byte order its drep names, so any PDU can be framed."""
        if len(data) < HEADER_SIZE:
            raise PduDecodeError("PDU shorter than the common header")
        layout = _HEADER_LE if data[4] & 0x10 else _HEADER_BE
        (vers, minor, ptype, flags, drep, frag_length, auth_length,
         call_id) = layout.unpack_from(data)
        return cls(
            rpc_vers=vers, rpc_vers_minor=minor, ptype=ptype, pfc_flags=flags,
            packed_drep=drep, frag_length=frag_length, auth_length=auth_length,
            call_id=call_id,
        )

    @property
    def drep_supported(self) -> bool:
        """Little-endian integers, ASCII characters, IEEE floats ([C706] 14.1)."""
        return self.packed_drep[0] == 0x10 and self.packed_drep[1] == 0



def _frame(ptype: PType, pfc_flags: int, call_id: int, body: bytes,
           auth: AuthVerifier | None) -> bytes:
    """Header + body [+ auth padding + sec_trailer + auth_value], lengths computed here."""
    tail = b""
    auth_length = 0
    if auth is not None:
        tail = bytes(auth.auth_pad_length) + auth.encode()
        auth_length = len(auth.auth_value)
    frag_length = HEADER_SIZE + len(body) + len(tail)
    if frag_length > 0xFFFF:
        raise ValueError(f"PDU of {frag_length} bytes exceeds frag_length")
    header = PduHeader(ptype=ptype, pfc_flags=pfc_flags, frag_length=frag_length,
                       auth_length=auth_length, call_id=call_id)
    return header.encode() + body + tail


def _open(data: bytes, ptype: PType) -> tuple[PduHeader, bytes, AuthVerifier | None]:
    """Header, body (auth padding stripped) and verifier of a whole PDU ([MS-RPCE] 2.2.2.11)."""
    header = PduHeader.decode(data)
    if header.ptype != ptype:
        raise PduDecodeError(f"expected PTYPE {ptype.name}, got {header.ptype}")
    if header.frag_length != len(data):
        raise PduDecodeError("frag_length does not match the PDU size")
    if header.auth_length == 0:
        return header, data[HEADER_SIZE:], None
    # The sec_trailer starts at frag_length - auth_length - 8 (2.2.2.11).
    at = len(data) - header.auth_length - SEC_TRAILER_SIZE
    if at < HEADER_SIZE:
        raise PduDecodeError("auth_length runs past the PDU header")
    verifier, _ = AuthVerifier.decode_from(data, at)
    if verifier.auth_pad_length > at - HEADER_SIZE:
        raise PduDecodeError("auth_pad_length runs past the PDU body")
    return header, data[HEADER_SIZE:at - verifier.auth_pad_length], verifier


@dataclass(frozen=True, slots=True, kw_only=True)
class Bind:
    """bind PDU ([C706] 12.6.4.3); alter_context shares its layout."""

    PTYPE: ClassVar[PType] = PType.BIND
    call_id: int
    pfc_flags: int = SINGLE_FRAGMENT
    max_xmit_frag: int
    max_recv_frag: int
    assoc_group_id: int = 0
    p_context_elem: tuple[PresentationContext, ...]
    auth: AuthVerifier | None = None

    def encode(self) -> bytes:
        head = _BIND_HEAD.pack(self.max_xmit_frag, self.max_recv_frag,
                               self.assoc_group_id, len(self.p_context_elem))
        body = head + b"".join(ctx.encode() for ctx in self.p_context_elem)
        return _frame(self.PTYPE, self.pfc_flags, self.call_id, body, self.auth)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        header, body, auth = _open(data, cls.PTYPE)
        max_xmit, max_recv, assoc_group, count = unpack_at(_BIND_HEAD, body)
        offset = _BIND_HEAD.size
        contexts = []
        for _ in range(count):
            context, offset = PresentationContext.decode_from(body, offset)
            contexts.append(context)
        return cls(call_id=header.call_id, pfc_flags=header.pfc_flags,
                   max_xmit_frag=max_xmit, max_recv_frag=max_recv,
                   assoc_group_id=assoc_group, p_context_elem=tuple(contexts), auth=auth)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlterContext(Bind):
    """alter_context PDU ([C706] 12.6.4.1): same body as bind."""

    PTYPE: ClassVar[PType] = PType.ALTER_CONTEXT


@dataclass(frozen=True, slots=True, kw_only=True)
class BindAck:
    """bind_ack PDU ([C706] 12.6.4.4); alter_context_resp shares its layout.

    ``sec_addr`` is port_any_t: a u16 length that counts the NUL, then the
    ASCII string; an empty address is sent as length 0 ([MS-RPCE] 3.3.1.5.5).
    """

    PTYPE: ClassVar[PType] = PType.BIND_ACK
    call_id: int
    pfc_flags: int = SINGLE_FRAGMENT
    max_xmit_frag: int
    max_recv_frag: int
    assoc_group_id: int
    sec_addr: str = ""
    p_result_list: tuple[PresentationResult, ...]
    auth: AuthVerifier | None = None

    def encode(self) -> bytes:
        address = self.sec_addr.encode("ascii") + b"\x00" if self.sec_addr else b""
        head = _ACK_HEAD.pack(self.max_xmit_frag, self.max_recv_frag,
                              self.assoc_group_id, len(address)) + address
        pad = bytes(-(HEADER_SIZE + len(head)) % 4)  # pad2: align(4) before p_result_list
        results = b"".join(result.encode() for result in self.p_result_list)
        body = head + pad + _RESULT_LIST_HEAD.pack(len(self.p_result_list)) + results
        return _frame(self.PTYPE, self.pfc_flags, self.call_id, body, self.auth)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        header, body, auth = _open(data, cls.PTYPE)
        max_xmit, max_recv, assoc_group, address_length = unpack_at(_ACK_HEAD, body)
        offset = _ACK_HEAD.size + address_length
        if offset > len(body):
            raise PduDecodeError("secondary address truncated")
        address = body[_ACK_HEAD.size:offset].rstrip(b"\x00").decode("ascii", "replace")
        offset += -(HEADER_SIZE + offset) % 4
        (count,) = unpack_at(_RESULT_LIST_HEAD, body, offset)
        offset += _RESULT_LIST_HEAD.size
        results = []
        for _ in range(count):
            result, offset = PresentationResult.decode_from(body, offset)
            results.append(result)
        return cls(call_id=header.call_id, pfc_flags=header.pfc_flags,
                   max_xmit_frag=max_xmit, max_recv_frag=max_recv, assoc_group_id=assoc_group,
                   sec_addr=address, p_result_list=tuple(results), auth=auth)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlterContextResp(BindAck):
    """alter_context_response PDU ([C706] 12.6.4.2): same body as bind_ack."""

    PTYPE: ClassVar[PType] = PType.ALTER_CONTEXT_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindNak:
    """bind_nak PDU ([C706] 12.6.4.5, [MS-RPCE] 2.2.2.9).

    Like Samba we list the supported protocol versions and pad the body to a
    multiple of 4; we never send the optional extended-error Signature.
    """

    PTYPE: ClassVar[PType] = PType.BIND_NAK
    call_id: int
    pfc_flags: int = SINGLE_FRAGMENT
    provider_reject_reason: int
    versions: tuple[tuple[int, int], ...] = ((RPC_VERS, 0),)

    def encode(self) -> bytes:
        body = _NAK_HEAD.pack(self.provider_reject_reason, len(self.versions))
        body += b"".join(_VERSION.pack(major, minor) for major, minor in self.versions)
        body += bytes(-len(body) % 4)
        return _frame(self.PTYPE, self.pfc_flags, self.call_id, body, None)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        header, body, _ = _open(data, cls.PTYPE)
        reason, count = unpack_at(_NAK_HEAD, body)
        versions = tuple(unpack_at(_VERSION, body, _NAK_HEAD.size + 2 * i) for i in range(count))
        return cls(call_id=header.call_id, pfc_flags=header.pfc_flags,
                   provider_reject_reason=reason, versions=versions)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """request PDU ([C706] 12.6.4.9); ``object`` is present iff PFC_OBJECT_UUID."""

    PTYPE: ClassVar[PType] = PType.REQUEST
    call_id: int
    pfc_flags: int = SINGLE_FRAGMENT
    alloc_hint: int = 0
    p_cont_id: int = 0
    opnum: int
    object: UUID | None = None
    stub_data: bytes = b""
    auth: AuthVerifier | None = None

    def encode(self) -> bytes:
        flags = self.pfc_flags & ~PfcFlags.OBJECT_UUID
        body = _REQUEST_HEAD.pack(self.alloc_hint, self.p_cont_id, self.opnum)
        if self.object is not None:
            flags |= PfcFlags.OBJECT_UUID
            body += self.object.bytes_le
        return _frame(self.PTYPE, flags, self.call_id, body + self.stub_data, self.auth)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        header, body, auth = _open(data, cls.PTYPE)
        alloc_hint, context_id, opnum = unpack_at(_REQUEST_HEAD, body)
        offset = _REQUEST_HEAD.size
        obj = None
        if header.pfc_flags & PfcFlags.OBJECT_UUID:
            (raw,) = unpack_at(_UUID, body, offset)
            obj = UUID(bytes_le=raw)
            offset += _UUID.size
        return cls(call_id=header.call_id, pfc_flags=header.pfc_flags, alloc_hint=alloc_hint,
                   p_cont_id=context_id, opnum=opnum, object=obj,
                   stub_data=body[offset:], auth=auth)


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """response PDU ([C706] 12.6.4.10)."""

    PTYPE: ClassVar[PType] = PType.RESPONSE
    call_id: int
    pfc_flags: int = SINGLE_FRAGMENT
    alloc_hint: int = 0
    p_cont_id: int = 0
    cancel_count: int = 0
    reserved: int = 0
    stub_data: bytes = b""
    auth: AuthVerifier | None = None

    def encode(self) -> bytes:
        body = _RESPONSE_HEAD.pack(self.alloc_hint, self.p_cont_id,
                                   self.cancel_count, self.reserved)
        return _frame(self.PTYPE, self.pfc_flags, self.call_id, body + self.stub_data, self.auth)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        header, body, auth = _open(data, cls.PTYPE)
        alloc_hint, context_id, cancel_count, reserved = unpack_at(_RESPONSE_HEAD, body)
        return cls(call_id=header.call_id, pfc_flags=header.pfc_flags, alloc_hint=alloc_hint,
                   p_cont_id=context_id, cancel_count=cancel_count, reserved=reserved,
                   stub_data=body[_RESPONSE_HEAD.size:], auth=auth)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """fault PDU ([C706] 12.6.4.7, [MS-RPCE] 2.2.2.8): 32 bytes, never any stub data."""

    PTYPE: ClassVar[PType] = PType.FAULT
    call_id: int
    pfc_flags: int = SINGLE_FRAGMENT
    alloc_hint: int = FAULT_ALLOC_HINT
    p_cont_id: int = 0
    cancel_count: int = 0
    reserved: int = 0  # bit 0: extended error information follows ([MS-RPCE] 2.2.2.8)
    status: int
    reserved2: int = 0

    def encode(self) -> bytes:
        body = _FAULT_BODY.pack(self.alloc_hint, self.p_cont_id, self.cancel_count,
                                self.reserved, self.status, self.reserved2)
        return _frame(self.PTYPE, self.pfc_flags, self.call_id, body, None)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        header, body, _ = _open(data, cls.PTYPE)
        (alloc_hint, context_id, cancel_count, reserved, status,
         reserved2) = unpack_at(_FAULT_BODY, body)
        return cls(call_id=header.call_id, pfc_flags=header.pfc_flags, alloc_hint=alloc_hint,
                   p_cont_id=context_id, cancel_count=cancel_count, reserved=reserved,
                   status=status, reserved2=reserved2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth3:
    """rpc_auth_3 PDU ([MS-RPCE] 2.2.2.10): 4 ignored pad octets, then the verifier."""

    PTYPE: ClassVar[PType] = PType.AUTH3
    call_id: int
    pfc_flags: int = SINGLE_FRAGMENT
    auth: AuthVerifier | None = None

    def encode(self) -> bytes:
        return _frame(self.PTYPE, self.pfc_flags, self.call_id, bytes(4), self.auth)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        header, _, auth = _open(data, cls.PTYPE)
        return cls(call_id=header.call_id, pfc_flags=header.pfc_flags, auth=auth)


@dataclass(frozen=True, slots=True, kw_only=True)
class CoCancel:
    """cancel PDU ([C706] 12.6.4.6): header and optional verifier only."""

    PTYPE: ClassVar[PType] = PType.CO_CANCEL
    call_id: int
    pfc_flags: int = SINGLE_FRAGMENT
    auth: AuthVerifier | None = None

    def encode(self) -> bytes:
        return _frame(self.PTYPE, self.pfc_flags, self.call_id, b"", self.auth)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        header, _, auth = _open(data, cls.PTYPE)
        return cls(call_id=header.call_id, pfc_flags=header.pfc_flags, auth=auth)


@dataclass(frozen=True, slots=True, kw_only=True)
class Orphaned(CoCancel):
    """orphaned PDU ([C706] 12.6.4.8): same layout as cancel."""

    PTYPE: ClassVar[PType] = PType.ORPHANED


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown:
    """shutdown PDU ([C706] 12.6.4.11, [MS-RPCE] 3.3.3.4.2): header only, server to client."""

    PTYPE: ClassVar[PType] = PType.SHUTDOWN
    call_id: int
    pfc_flags: int = SINGLE_FRAGMENT

    def encode(self) -> bytes:
        return _frame(self.PTYPE, self.pfc_flags, self.call_id, b"", None)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        header, _, _ = _open(data, cls.PTYPE)
        return cls(call_id=header.call_id, pfc_flags=header.pfc_flags)


Pdu: TypeAlias = (Bind | AlterContext | BindAck | AlterContextResp | BindNak | Request
                  | Response | Fault | Auth3 | CoCancel | Orphaned | Shutdown)

PDU_TYPES: MappingProxyType[int, type[Pdu]] = MappingProxyType({
    cls.PTYPE: cls
    for cls in (Bind, AlterContext, BindAck, AlterContextResp, BindNak, Request,
                Response, Fault, Auth3, CoCancel, Orphaned, Shutdown)
})


def decode_pdu(data: bytes) -> Pdu:
    """Decode one whole PDU, dispatching on its PTYPE."""
    header = PduHeader.decode(data)
    pdu_type = PDU_TYPES.get(header.ptype)
    if pdu_type is None:
        raise PduDecodeError(f"unknown PTYPE {header.ptype}")
    return pdu_type.decode(data)
