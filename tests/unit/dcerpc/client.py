"""An independent client side for the DCE/RPC tests: impacket's rpcrt.

PDUs are built with impacket's MSRPC* structures (not our codec), and
``ConnectionTransport`` lets impacket's real DCERPC_v5 client talk to an
in-process ``RpcConnection`` - two real state machines wired together
(shared/STYLE.md rule 14) instead of mocks.
"""

from collections import deque
from uuid import UUID

from impacket.dcerpc.v5 import rpcrt, transport
from impacket.uuid import uuidtup_to_bin

from smbca.rpc.dcerpc import (
    AssociationGroups,
    CallContext,
    FaultStatus,
    RpcConnection,
    RpcFault,
    RpcInterface,
    SyntaxId,
    interface_table,
)

NDR20_BIN = uuidtup_to_bin(("8a885d04-1ceb-11c9-9fe8-08002b104860", "2.0"))
NDR64_BIN = uuidtup_to_bin(("71710533-beba-4937-8319-b5dbef9ccc36", "1.0"))
BTFN_BIN = uuidtup_to_bin(("6cb71c2c-9812-4540-0300-000000000000", "1.0"))
ECHO_UUID = "12345678-1234-abcd-ef00-0123456789ab"
ECHO_BIN = uuidtup_to_bin((ECHO_UUID, "1.0"))
ECHO_SYNTAX = SyntaxId.of(ECHO_UUID, 1, 0)
OTHER_UUID = "99999999-8888-7777-6666-555555555555"
OTHER_BIN = uuidtup_to_bin((OTHER_UUID, "2.0"))
UNKNOWN_BIN = uuidtup_to_bin(("00000000-1111-2222-3333-444444444444", "1.0"))


def _echo(stub: bytes, call: CallContext) -> bytes:
    return stub


def _blob(stub: bytes, call: CallContext) -> bytes:
    """Returns int.from_bytes(stub) bytes counting 0, 1, ... (response fragmentation tests)."""
    return bytes(i & 0xFF for i in range(int.from_bytes(stub[:4], "little")))


def _denied(stub: bytes, call: CallContext) -> bytes:
    raise RpcFault(FaultStatus.RPC_S_ACCESS_DENIED)


def _crash(stub: bytes, call: CallContext) -> bytes:
    raise ValueError("manager bug")


def _not_bytes(stub: bytes, call: CallContext) -> bytes:
    return None  # type: ignore[return-value]


def _describe(stub: bytes, call: CallContext) -> bytes:
    """The call's context, for assertions: call_id, p_cont_id, opnum, object."""
    text = f"{call.call_id} {call.p_cont_id} {call.opnum} {call.object} {call.transport}"
    return text.encode()


ECHO = RpcInterface("echo", ECHO_SYNTAX, {
    0: _echo, 1: _blob, 2: _denied, 3: _crash, 4: _not_bytes, 5: _describe,
})
OTHER = RpcInterface("other", SyntaxId.of(OTHER_UUID, 2, 0), {0: _echo})


def make_connection(groups: AssociationGroups | None = None, **kwargs) -> RpcConnection:
    if groups is None:
        groups = AssociationGroups()
    return RpcConnection(interface_table(ECHO, OTHER), groups, **kwargs)


def ctx_item(context_id: int, abstract: bytes, *transfers: bytes) -> rpcrt.CtxItem:
    """One p_cont_elem_t built by impacket (several transfer syntaxes are concatenated)."""
    item = rpcrt.CtxItem()
    item["ContextID"] = context_id
    item["TransItems"] = len(transfers)
    item["AbstractSyntax"] = abstract
    item["TransferSyntax"] = b"".join(transfers)
    return item


def impacket_bind(*items: rpcrt.CtxItem, call_id: int = 1, max_xmit: int = 4280,
                  max_recv: int = 4280, assoc_group: int = 0, flags: int = 0x03,
                  ptype: int = rpcrt.MSRPC_BIND) -> bytes:
    """bind (or alter_context) PDU bytes from impacket."""
    bind = rpcrt.MSRPCBind()
    bind["max_tfrag"] = max_xmit
    bind["max_rfrag"] = max_recv
    bind["assoc_group"] = assoc_group
    for item in items:
        bind.addCtxItem(item)
    header = rpcrt.MSRPCHeader()
    header["type"] = ptype
    header["flags"] = flags
    header["call_id"] = call_id
    header["pduData"] = bind.getData()
    return header.get_packet()


def impacket_request(stub: bytes, *, opnum: int = 0, call_id: int = 2, ctx_id: int = 0,
                     flags: int = 0x03, alloc_hint: int | None = None,
                     object_uuid: UUID | None = None) -> bytes:
    """request PDU bytes from impacket."""
    request = rpcrt.MSRPCRequestHeader()
    request["flags"] = flags
    request["call_id"] = call_id
    request["ctx_id"] = ctx_id
    request["op_num"] = opnum
    request["alloc_hint"] = len(stub) if alloc_hint is None else alloc_hint
    if object_uuid is not None:
        request["flags"] |= rpcrt.PFC_OBJECT_UUID
        request["uuid"] = object_uuid.bytes_le
    request["pduData"] = stub
    return request.get_packet()


def bound_connection(**kwargs) -> RpcConnection:
    """A connection with context 0 = echo v1.0 / NDR 2.0, bind_ack already drained."""
    connection = make_connection(**kwargs)
    connection.receive_data(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN)))
    connection.pdus_to_send()
    return connection


class ConnectionTransport(transport.DCERPCTransport):
    """impacket transport whose far end is an in-process RpcConnection."""

    def __init__(self, connection: RpcConnection) -> None:
        super().__init__("in-process", 0)
        self.connection = connection
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self._pending: deque[bytes] = deque()

    def connect(self) -> int:
        return 1

    def disconnect(self) -> int:
        return 1

    def send(self, data, forceWriteAndx=0, forceRecv=0) -> None:
        self.sent.append(data)
        self.connection.receive_data(data)
        self._pending.extend(self.connection.pdus_to_send())

    def recv(self, forceRecv=0, count=0) -> bytes:
        pdu = self._pending.popleft()
        self.received.append(pdu)
        return pdu


def impacket_client(connection: RpcConnection) -> tuple[rpcrt.DCERPC_v5, ConnectionTransport]:
    pipe = ConnectionTransport(connection)
    client = rpcrt.DCERPC_v5(pipe)
    client.connect()
    return client, pipe
