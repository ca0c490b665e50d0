"""What the connection core dispatches to: interfaces, calls and association groups.

An interface is registered as ``{(uuid, major_version): InterfaceHandler}``
where an InterfaceHandler is any ``Callable[[opnum, stub_data, CallContext],
bytes | PendingCall]`` returning the NDR-encoded [out] stub.  ``RpcInterface``
builds one from an interface module's ``{opnum: handler}`` table
(shared/STYLE.md rule 11), turns missing opnums into nca_s_op_rng_error and
refuses calls below the interface's minimum authentication level.

A manager routine that cannot answer yet (MS-SWN AsyncNotify) calls
``call.defer()`` and returns the ``PendingCall``; whoever later has the
answer calls ``complete(stub)`` or ``fail(status)`` on it, and the
connection sends the response then ([MS-RPCE] 3.3.3.4 asynchronous calls).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from uuid import UUID

from smbca.rpc.dcerpc.constants import AuthLevel, FaultStatus
from smbca.rpc.dcerpc.elements import AuthVerifier, SyntaxId
from smbca.rpc.dcerpc.errors import RpcFault
from smbca.rpc.dcerpc.verification import VerificationTrailer

InterfaceKey = tuple[UUID, int]
"""(interface UUID, major version): how bind looks an abstract syntax up ([C706] 12.6.3.1)."""


@dataclass(slots=True)
class AssociationGroup:
    """An association group shared by the connections that join it ([MS-RPCE] 3.3.1.1.1, 3.3.1.5.7).

    Records the negotiated Bind Features Bitmask ([MS-RPCE] 3.3.1.5.3) and
    how many connections use it.  Context handles are scoped to the
    association ([MS-RPCE] 3.3.1.4.1): their owners register a rundown
    callback with ``add_rundown``, run once when the last connection leaves
    (the context rundown of [C706] 5.1.6 / [MS-RPCE] 3.3.3.2.1).
    """

    assoc_group_id: int
    bind_time_features: int = 0
    connections: int = 0
    rundowns: dict[object, Callable[[], None]] = field(default_factory=dict)

    def add_rundown(self, key: object, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the group goes away, unless ``remove_rundown(key)`` first."""
        self.rundowns[key] = callback

    def remove_rundown(self, key: object) -> None:
        self.rundowns.pop(key, None)

    def run_down(self) -> None:
        callbacks, self.rundowns = list(self.rundowns.values()), {}
        for callback in callbacks:
            callback()


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
            group.run_down()

    def __len__(self) -> int:
        return len(self._groups)

    def __contains__(self, assoc_group_id: object) -> bool:
        return assoc_group_id in self._groups


class PendingCall:
    """A call whose response the manager routine sends later ([MS-RPCE] 3.3.3.4).

    Made by ``CallContext.defer()``.  Exactly one of ``complete`` / ``fail``
    takes effect; later ones, and any after the call was abandoned, are
    ignored.  The call is abandoned when the client cancels it (co_cancel,
    answered with nca_s_fault_cancel), orphans it, or the connection goes
    away; callbacks registered with ``on_abandon`` learn of it so the owner
    can forget the call.
    """

    __slots__ = ("call_id", "opnum", "_send", "_abandon_callbacks", "_done", "reason")

    def __init__(self, call_id: int, opnum: int,
                 send: Callable[["PendingCall", bytes | None, int], None]) -> None:
        self.call_id = call_id
        self.opnum = opnum
        self._send = send
        self._abandon_callbacks: list[Callable[["PendingCall"], None]] = []
        self._done = False
        self.reason = ""

    @property
    def done(self) -> bool:
        return self._done

    def complete(self, stub: bytes) -> None:
        """Send ``stub`` as the response."""
        if not self._done:
            self._done = True
            self._send(self, bytes(stub), 0)

    def fail(self, status: int) -> None:
        """Answer with a fault PDU carrying ``status``."""
        if not self._done:
            self._done = True
            self._send(self, None, status)

    def on_abandon(self, callback: Callable[["PendingCall"], None]) -> None:
        self._abandon_callbacks.append(callback)

    def abandon(self, reason: str) -> None:
        """The connection side gave up on the call (cancel, orphaned, closed)."""
        if self._done:
            return
        self._done = True
        self.reason = reason
        callbacks, self._abandon_callbacks = self._abandon_callbacks, []
        for callback in callbacks:
            callback(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """What a manager routine may know about its call ([MS-RPCE] 3.3.3.1.5 Server Call).

    ``auth_level``, ``auth_type`` and ``identity`` describe the connection's
    established security context ([MS-RPCE] 3.3.3.1.3); ``deferrer`` is set
    by the connection so that ``defer()`` works.
    """

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
    auth_level: int = AuthLevel.NONE
    auth_type: int = 0
    identity: Any = None
    deferrer: Callable[[], PendingCall] | None = None

    def defer(self) -> PendingCall:
        """Keep the call open; return it with ``PendingCall`` from the handler."""
        if self.deferrer is None:
            raise RuntimeError("this call cannot be deferred")
        return self.deferrer()


InterfaceHandler = Callable[[int, bytes, CallContext], "bytes | PendingCall"]
OpHandler = Callable[[bytes, CallContext], "bytes | PendingCall"]


@dataclass(frozen=True, slots=True)
class RpcInterface:
    """A registered interface: its syntax and manager table ([MS-RPCE] 3.3.3.3.1.2).

    Callable as an InterfaceHandler.  Handlers receive the request stub and
    return the response stub (or a ``PendingCall``); they raise ``RpcFault``
    to fail the call.  Calls below ``min_auth_level`` fail with fault
    access_denied before any handler runs, as Windows and Samba refuse them
    ([MS-RPCE] 3.3.3.1.3; Samba dcesrv_request "min_auth_level").
    """

    name: str
    syntax: SyntaxId
    operations: Mapping[int, OpHandler] = field(default_factory=dict)
    min_auth_level: int = AuthLevel.NONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "operations", MappingProxyType(dict(self.operations)))

    @property
    def key(self) -> InterfaceKey:
        return (self.syntax.if_uuid, self.syntax.major)

    def __call__(self, opnum: int, stub_data: bytes, call: CallContext) -> "bytes | PendingCall":
        if call.auth_level < self.min_auth_level:
            raise RpcFault(FaultStatus.RPC_S_ACCESS_DENIED,
                           f"{self.name}: auth level {call.auth_level} below "
                           f"{self.min_auth_level}", did_not_execute=True)
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
