"""What the connection core dispatches to: interfaces, calls and association groups.

An interface is registered as ``{(uuid, major_version): InterfaceHandler}``
where an InterfaceHandler is any ``Callable[[opnum, stub_data, CallContext],
bytes]`` returning the NDR-encoded [out] stub.  ``RpcInterface`` builds one
from an interface module's ``{opnum: handler}`` table (shared/STYLE.md rule
11) and turns missing opnums into nca_s_op_rng_error.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from uuid import UUID

from witnessd.dcerpc.constants import FaultStatus
from witnessd.dcerpc.errors import RpcFault
from witnessd.dcerpc.elements import AuthVerifier, SyntaxId
from witnessd.dcerpc.verification import VerificationTrailer

InterfaceKey = tuple[UUID, int]
"""(interface UUID, major version): how bind looks an abstract syntax up ([C706] 12.6.3.1)."""


@dataclass(slots=True)
class AssociationGroup:
    """An association group shared by the connections that join it ([MS-RPCE] 3.3.1.1.1, 3.3.1.5.7).

    Context handles will hang off this object (they are scoped to the
    association, [MS-RPCE] 3.3.1.4.1); for now it records the negotiated
    Bind Features Bitmask ([MS-RPCE] 3.3.1.5.3) and how many connections use it.
    """

    assoc_group_id: int
    bind_time_features: int = 0
    connections: int = 0


class AssociationGroups:
    """The server's Table of Associations ([MS-RPCE] 3.3.1.1.5) and its id allocator.

    One instance per endpoint, injected into every ``RpcConnection``.  Ids are
    handed out sequentially from ``first_id`` (never 0, which means "new
    group" in a bind); the daemon may seed ``first_id`` from its config.
    """

    def __init__(self, first_id: int = 0x000053F0) -> None:
        self._next_id = first_id & 0xFFFFFFFF or 1
        self._groups: dict[int, AssociationGroup] = {}

    def create(self) -> AssociationGroup:
        """A new group for a bind with assoc_group_id 0; the caller is its first member."""
        while self._next_id == 0 or self._next_id in self._groups:
            self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        group = AssociationGroup(assoc_group_id=self._next_id, connections=1)
        self._groups[group.assoc_group_id] = group
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        return group

    def join(self, assoc_group_id: int) -> AssociationGroup | None:
        """The existing group a bind names, or None (answered with bind_nak, as Samba does)."""
        group = self._groups.get(assoc_group_id)
        if group is not None:
            group.connections += 1
        return group

    def leave(self, group: AssociationGroup) -> None:
        """A member connection closed; the group goes away with its last member."""
        group.connections -= 1
        if group.connections <= 0:
            self._groups.pop(group.assoc_group_id, None)

    def __len__(self) -> int:
        return len(self._groups)

    def __contains__(self, assoc_group_id: object) -> bool:
        return assoc_group_id in self._groups


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """What a manager routine may know about its call ([MS-RPCE] 3.3.3.1.5 Server Call)."""

    call_id: int
    opnum: int
    p_cont_id: int
    abstract_syntax: SyntaxId
    transfer_syntax: SyntaxId
    assoc_group: AssociationGroup
    object: UUID | None = None
    auth: AuthVerifier | None = None
    verification_trailer: VerificationTrailer | None = None
    transport: Any = None
    """Opaque transport identity, e.g. the SMB session of a pipe ([MS-RPCE] 3.3.1.5.2.1)."""


InterfaceHandler = Callable[[int, bytes, CallContext], bytes]
OpHandler = Callable[[bytes, CallContext], bytes]


@dataclass(frozen=True, slots=True)
class RpcInterface:
    """A registered interface: its syntax and manager table ([MS-RPCE] 3.3.3.3.1.2).

    Callable as an InterfaceHandler.  Handlers receive the request stub and
    return the response stub; they raise ``RpcFault`` to fail the call.
    """

    name: str
    syntax: SyntaxId
    operations: Mapping[int, OpHandler] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "operations", MappingProxyType(dict(self.operations)))

    @property
    def key(self) -> InterfaceKey:
        return (self.syntax.if_uuid, self.syntax.major)

    def __call__(self, opnum: int, stub_data: bytes, call: CallContext) -> bytes:
        handler = self.operations.get(opnum)
        if handler is None:
            raise RpcFault(FaultStatus.NCA_S_OP_RNG_ERROR,
                           f"{self.name}: opnum {opnum} not implemented", did_not_execute=True)
        return handler(stub_data, call)


def interface_table(*interfaces: RpcInterface) -> Mapping[InterfaceKey, InterfaceHandler]:
    """``{(uuid, major): interface}`` for ``RpcConnection``; duplicate keys are a bug."""
    table: dict[InterfaceKey, InterfaceHandler] = {}
    for interface in interfaces:
        if interface.key in table:
            raise ValueError(f"interface {interface.key} registered twice")
        table[interface.key] = interface
    return MappingProxyType(table)
