"""Endpoint mapper ``ept_map`` and the DCE management ``inq_princ_name`` ([MS-RPCE] 2.2.1.2, 2.2.1.3).

Windows finds the witness service's dynamic TCP port by asking the endpoint
mapper on TCP 135 (``ept_map``, opnum 3 of e1af8308-5d1f-11c9-91a4-08002b14a0fa
v3.0) for a tower naming the witness interface; Windows 8.1 / 2012 R2 and
Windows 10 up to 1511 also ask ``mgmt`` (afa8bd80-7d8a-11c9-bef4-08002b102989
v1.0) ``inq_princ_name`` (opnum 4) for the server principal ([MS-SWN] 7
note <11>).  Both answer without authentication, as Windows' and Samba's do.

Types first, then the calls in opnum order, then the registrations (shared/
STYLE.md rule 11).  Hand-written NDR types, commented where they appear:
the tower is a conformant struct whose payload is the floor encoding of
[C706] appendix L (not NDR, no alignment), ``ept_map``'s tower array is
conformant *and* varying with its size taken from another parameter, and
``inq_princ_name`` returns a conformant varying DOS string sized by the
caller.  ``ept_map`` matches the interface floor (UUID and major version)
and the protocol floors (connection-oriented over TCP) and is lenient about
the transfer syntax floor; it answers with the address the query arrived on.
"""

import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

from smbca.rpc.dcerpc import NDR20, CallContext, RpcFault, RpcInterface, SyntaxId
from smbca.rpc.ndr import (
    CONTEXT_HANDLE,
    NULL_HANDLE,
    U32,
    ContextHandle,
    CountOf,
    FixedBytes,
    NdrError,
    NdrReader,
    NdrType,
    NdrWriter,
    Params,
    Unique,
    decode,
    encode,
)

EPM_SYNTAX = SyntaxId.of("e1af8308-5d1f-11c9-91a4-08002b14a0fa", 3, 0)
MGMT_SYNTAX = SyntaxId.of("afa8bd80-7d8a-11c9-bef4-08002b102989", 1, 0)

EPT_S_NOT_REGISTERED = 0x16C9A0D6
RPC_S_UNKNOWN_AUTHN_SERVICE = 0x000006D3
ERROR_INSUFFICIENT_BUFFER = 0x0000007A
RPC_X_BAD_STUB_DATA = 0x000006F7
MAX_TOWER_LENGTH = 2000
"""[range(0,2000)] on twr_t.tower_length ([MS-RPCE] 2.2.1.2.5 IDL)."""

PROTOCOL_UUID = 0x0D
PROTOCOL_CO = 0x0B
PROTOCOL_TCP = 0x07
PROTOCOL_IP = 0x09
_FLOOR_PART = struct.Struct("<H")


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Which address and port a client reached (``RpcConnection(transport=...)``)."""

    local_host: str
    local_port: int
    peer_host: str = ""
    peer_port: int = 0


# -- towers ([C706] appendix L, [MS-RPCE] 2.2.1.2.5) -----------------------------------

@dataclass(frozen=True, slots=True)
class Floor:
    """One protocol floor: left-hand side (protocol id + data), right-hand side."""

    lhs: bytes
    rhs: bytes

    @property
    def protocol(self) -> int:
        return self.lhs[0] if self.lhs else -1


@dataclass(frozen=True, slots=True)
class Tower:
    """A protocol tower: floor count (u16), then per floor lhs and rhs with u16 lengths.

    Hand-written: packed little-endian with no alignment (Samba NDR_NOALIGN);
    ports and IPv4 addresses in the right-hand sides are big-endian.
    """

    floors: tuple[Floor, ...]

    def encode(self) -> bytes:
        parts = [_FLOOR_PART.pack(len(self.floors))]
        for floor in self.floors:
            parts += [_FLOOR_PART.pack(len(floor.lhs)), floor.lhs,
                      _FLOOR_PART.pack(len(floor.rhs)), floor.rhs]
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> "Tower":
        try:
            (count,) = _FLOOR_PART.unpack_from(data, 0)
            offset = 2
            floors = []
            for _ in range(count):
                sides = []
                for _side in range(2):
                    (length,) = _FLOOR_PART.unpack_from(data, offset)
                    offset += 2
                    if offset + length > len(data):
                        raise NdrError("tower floor truncated")
                    sides.append(data[offset:offset + length])
                    offset += length
                floors.append(Floor(sides[0], sides[1]))
        except struct.error as exc:
            raise NdrError(f"tower truncated: {exc}") from None
        return cls(tuple(floors))


def syntax_floor(syntax: SyntaxId) -> Floor:
    return Floor(bytes([PROTOCOL_UUID]) + syntax.if_uuid.bytes_le
                 + struct.pack("<H", syntax.major), struct.pack("<H", syntax.minor))


def tcp_tower(syntax: SyntaxId, host: str, port: int) -> Tower:
    """The five-floor ncacn_ip_tcp tower of ``syntax`` at host:port.

    Floor 5 holds an IPv4 address only; a client that asked over IPv6 gets
    0.0.0.0, meaning "the address you reached me on".
    """
    try:
        address = ipaddress.IPv4Address(host).packed
    except ValueError:
        address = bytes(4)
    return Tower((syntax_floor(syntax), syntax_floor(NDR20),
                  Floor(bytes([PROTOCOL_CO]), bytes(2)),
                  Floor(bytes([PROTOCOL_TCP]), struct.pack(">H", port)),
                  Floor(bytes([PROTOCOL_IP]), address)))


def tower_interface(tower: Tower) -> tuple[UUID, int] | None:
    """(interface UUID, major) of a ncacn_ip_tcp query tower, or None."""
    floors = tower.floors
    if len(floors) < 4 or floors[0].protocol != PROTOCOL_UUID or len(floors[0].lhs) != 19:
        return None
    if floors[2].protocol != PROTOCOL_CO or floors[3].protocol != PROTOCOL_TCP:
        return None
    lhs = floors[0].lhs
    return UUID(bytes_le=lhs[1:17]), struct.unpack_from("<H", lhs, 17)[0]


class TowerType(NdrType):
    """twr_t, a conformant struct: max_count hoisted first, tower_length, octets.

    Hand-written because the octets are a ``Tower``; max_count must equal
    tower_length.
    """

    alignment = 4

    def push(self, w: NdrWriter, value: Tower) -> None:
        data = value.encode()
        w.u32(len(data))
        w.u32(len(data))
        w.raw(data)
        return None

    def pull(self, r: NdrReader):
        max_count, length = r.u32(), r.u32()
        if max_count != length or length > MAX_TOWER_LENGTH:
            raise NdrError(f"tower max_count {max_count} / length {length}")
        tower = Tower.decode(r.raw(length))
        return lambda: tower


TOWER = TowerType()


@dataclass(frozen=True, slots=True)
class TowerArray:
    """``[size_is(max_towers), length_is(*num_towers)] twr_p_t ITowers[]``."""

    max_count: int
    towers: tuple[Tower | None, ...] = ()

    def __len__(self) -> int:
        return len(self.towers)


class TowerArrayType(NdrType):
    """Conformant varying array of unique tower pointers (hand-written: its max_count
    comes from the [in] max_towers, not from the data)."""

    alignment = 4
    _pointer = Unique(TOWER)

    def push(self, w: NdrWriter, value: TowerArray) -> Any:
        w.u32(value.max_count)
        w.u32(0)
        w.u32(len(value.towers))
        deferred = [self._pointer.push(w, tower) for tower in value.towers]
        for pointee in deferred:
            if pointee is not None:
                pointee()
        return None

    def pull(self, r: NdrReader):
        max_count, offset, actual = r.u32(), r.u32(), r.u32()
        if offset != 0 or actual > max_count or 4 * actual > r.remaining:
            raise NdrError(f"tower array counts {max_count}/{offset}/{actual}")
        thunks = [self._pointer.pull(r) for _ in range(actual)]
        towers = tuple(thunk() for thunk in thunks)
        return lambda: TowerArray(max_count, towers)


# -- epm opnum 3: ept_map ([MS-RPCE] 2.2.1.2.5) -----------------------------------------

@dataclass(frozen=True, slots=True)
class EptMapRequest:
    obj: bytes | None
    map_tower: Tower | None
    entry_handle: ContextHandle
    max_towers: int

    NDR: ClassVar[Params]


EptMapRequest.NDR = Params(EptMapRequest, (
    ("obj", Unique(FixedBytes(16, alignment=4))),
    ("map_tower", Unique(TOWER)),
    ("entry_handle", CONTEXT_HANDLE),
    ("max_towers", U32),
))


@dataclass(frozen=True, slots=True)
class EptMapResponse:
    entry_handle: ContextHandle
    towers: TowerArray
    status: int

    NDR: ClassVar[Params]


EptMapResponse.NDR = Params(EptMapResponse, (
    ("entry_handle", CONTEXT_HANDLE),
    ("num_towers", CountOf("towers")),
    ("towers", TowerArrayType()),
    ("status", U32),
))


# -- mgmt opnum 4: inq_princ_name ([MS-RPCE] 2.2.1.3.4; Samba mgmt.idl) ------------------

@dataclass(frozen=True, slots=True)
class PrincName:
    """``[string, size_is(princ_name_size), charset(DOS)] uint8 princ_name[]``."""

    max_count: int
    text: str


class PrincNameType(NdrType):
    """Conformant varying 8-bit string (hand-written: sized by the [in] princ_name_size)."""

    alignment = 4

    def push(self, w: NdrWriter, value: PrincName) -> None:
        data = value.text.encode("ascii") + b"\x00"
        w.u32(value.max_count)
        w.u32(0)
        w.u32(len(data))
        w.raw(data)
        return None

    def pull(self, r: NdrReader):
        max_count, offset, actual = r.u32(), r.u32(), r.u32()
        if offset != 0 or actual > max_count:
            raise NdrError("bad string counts")
        text = r.raw(actual).split(b"\x00", 1)[0].decode("ascii", "replace")
        return lambda: PrincName(max_count, text)


@dataclass(frozen=True, slots=True)
class InqPrincNameRequest:
    authn_proto: int
    princ_name_size: int

    NDR: ClassVar[Params]


InqPrincNameRequest.NDR = Params(InqPrincNameRequest, (
    ("authn_proto", U32), ("princ_name_size", U32)))


@dataclass(frozen=True, slots=True)
class InqPrincNameResponse:
    princ_name: PrincName
    status: int

    NDR: ClassVar[Params]


InqPrincNameResponse.NDR = Params(InqPrincNameResponse, (
    ("princ_name", PrincNameType()), ("status", U32)))


# -- server registrations ---------------------------------------------------------------

def _decode(kind: Any, stub: bytes) -> Any:
    try:
        return decode(kind.NDR, stub)
    except NdrError as exc:
        raise RpcFault(exc.status, str(exc), did_not_execute=True) from exc


def epm_interface(endpoints: Mapping[tuple[UUID, int], tuple[SyntaxId, int]]) -> RpcInterface:
    """ept_map over ``{(uuid, major): (syntax, tcp port)}``; other opnums: op_rng_error."""

    def ept_map(stub: bytes, call: CallContext) -> bytes:
        request: EptMapRequest = _decode(EptMapRequest, stub)
        key = tower_interface(request.map_tower) if request.map_tower is not None else None
        entry = endpoints.get(key) if key is not None else None
        if entry is None or request.max_towers == 0:
            response = EptMapResponse(NULL_HANDLE, TowerArray(request.max_towers),
                                      EPT_S_NOT_REGISTERED)
        else:
            syntax, port = entry
            info = call.transport
            host = info.local_host if isinstance(info, ConnectionInfo) else "0.0.0.0"
            response = EptMapResponse(NULL_HANDLE, TowerArray(
                request.max_towers, (tcp_tower(syntax, host, port),)), 0)
        return encode(EptMapResponse.NDR, response)

    return RpcInterface("epmapper", EPM_SYNTAX, {3: ept_map})


def mgmt_interface(principals: Mapping[int, str]) -> RpcInterface:
    """inq_princ_name answering ``{auth_type: principal}`` (Samba dcesrv_mgmt.c semantics)."""

    def inq_princ_name(stub: bytes, call: CallContext) -> bytes:
        request: InqPrincNameRequest = _decode(InqPrincNameRequest, stub)
        size = request.princ_name_size
        if size < 1:
            raise RpcFault(RPC_X_BAD_STUB_DATA, "princ_name_size 0", did_not_execute=True)
        principal = principals.get(request.authn_proto)
        if principal is None:
            response = InqPrincNameResponse(PrincName(size, ""), RPC_S_UNKNOWN_AUTHN_SERVICE)
        elif len(principal) + 1 > size:
            response = InqPrincNameResponse(PrincName(size, ""), ERROR_INSUFFICIENT_BUFFER)
        else:
            response = InqPrincNameResponse(PrincName(size, principal), 0)
        return encode(InqPrincNameResponse.NDR, response)

    return RpcInterface("mgmt", MGMT_SYNTAX, {4: inq_princ_name})
