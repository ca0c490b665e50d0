"""Deferred calls in the connection core ([MS-RPCE] 3.3.3.4) and association rundown."""

import pytest

from smbca.rpc.dcerpc import (
    NDR20,
    AssociationGroups,
    Bind,
    CallContext,
    CoCancel,
    Fault,
    FaultStatus,
    Orphaned,
    PendingCall,
    PfcFlags,
    PresentationContext,
    Request,
    Response,
    RpcConnection,
    RpcInterface,
    SyntaxId,
    decode_pdu,
    interface_table,
)

SYNTAX = SyntaxId.of("11112222-3333-4444-5555-666677778888", 1, 0)


class Parked:
    """An interface whose opnum 0 parks the call and opnum 1 answers at once."""

    def __init__(self) -> None:
        self.calls: list[PendingCall] = []
        self.abandoned: list[str] = []

    def park(self, stub: bytes, call: CallContext) -> PendingCall:
        pending = call.defer()
        pending.on_abandon(lambda p: self.abandoned.append(p.reason))
        self.calls.append(pending)
        return pending

    def echo(self, stub: bytes, call: CallContext) -> bytes:
        return stub

    def instant(self, stub: bytes, call: CallContext) -> PendingCall:
        pending = call.defer()
        pending.complete(b"now!")
        return pending

    def interface(self) -> RpcInterface:
        return RpcInterface("parked", SYNTAX, {0: self.park, 1: self.echo, 2: self.instant})


def connect(parked: Parked, groups: AssociationGroups | None = None, mpx: bool = True,
            outputs: list | None = None, assoc: int = 0) -> RpcConnection:
    conn = RpcConnection(interface_table(parked.interface()),
                         groups if groups is not None else AssociationGroups(),
                         on_output=(lambda: outputs.append(1)) if outputs is not None else None)
    conn.receive_data(Bind(call_id=1, pfc_flags=0x03 | (PfcFlags.CONC_MPX if mpx else 0),
                           max_xmit_frag=4280, max_recv_frag=4280, assoc_group_id=assoc,
                           p_context_elem=(PresentationContext(
                               p_cont_id=0, abstract_syntax=SYNTAX,
                               transfer_syntaxes=(NDR20,)),)).encode())
    conn.pdus_to_send()
    return conn


def call(conn: RpcConnection, call_id: int, opnum: int, stub: bytes = b"") -> list[bytes]:
    conn.receive_data(Request(call_id=call_id, opnum=opnum, alloc_hint=len(stub),
                              stub_data=stub).encode())
    return conn.pdus_to_send()


def test_deferred_answer_is_sent_later_and_wakes_the_transport() -> None:
    parked, outputs = Parked(), []
    conn = connect(parked, outputs=outputs)
    assert call(conn, 2, 0) == [] and conn.pending_calls == 1
    assert call(conn, 3, 1, b"hi") != []  # other calls go on meanwhile
    parked.calls[0].complete(b"late")
    (raw,) = conn.pdus_to_send()
    response = decode_pdu(raw)
    assert isinstance(response, Response) and response.call_id == 2
    assert response.stub_data == b"late" and outputs and conn.pending_calls == 0


def test_fail_sends_a_fault_and_later_completions_are_ignored() -> None:
    parked = Parked()
    conn = connect(parked)
    call(conn, 2, 0)
    parked.calls[0].fail(FaultStatus.RPC_S_ACCESS_DENIED)
    parked.calls[0].complete(b"ignored")
    (raw,) = conn.pdus_to_send()
    assert isinstance(decode_pdu(raw), Fault) and decode_pdu(raw).status == 5


def test_completion_inside_the_handler_answers_at_once() -> None:
    conn = connect(Parked())
    (raw,) = call(conn, 2, 2)
    assert decode_pdu(raw).stub_data == b"now!" and conn.pending_calls == 0


def test_cancel_orphan_and_close_abandon_with_a_reason() -> None:
    parked = Parked()
    conn = connect(parked)
    for call_id in (2, 3, 4):
        call(conn, call_id, 0)
    conn.receive_data(CoCancel(call_id=2).encode())
    (fault,) = conn.pdus_to_send()
    assert decode_pdu(fault).status == FaultStatus.NCA_S_FAULT_CANCEL
    conn.receive_data(Orphaned(call_id=3).encode())
    assert conn.pdus_to_send() == []
    conn.receive_data(CoCancel(call_id=99).encode())  # nothing pending: nothing to say
    assert conn.pdus_to_send() == []
    conn.close()
    assert parked.abandoned == ["cancelled", "orphaned", "connection closed"]
    parked.calls[2].complete(b"too late")  # harmless after close
    assert conn.pdus_to_send() == []


def test_out_of_order_answers_keep_their_call_ids() -> None:
    parked = Parked()
    conn = connect(parked)
    call(conn, 2, 0)
    call(conn, 3, 0)
    parked.calls[1].complete(b"second")
    parked.calls[0].complete(b"first")
    assert [decode_pdu(raw).call_id for raw in conn.pdus_to_send()] == [3, 2]


def test_defer_outside_a_connection_is_an_error() -> None:
    context = CallContext(call_id=1, opnum=0, p_cont_id=0, abstract_syntax=SYNTAX,
                          transfer_syntax=NDR20, assoc_group=AssociationGroups().create())
    with pytest.raises(RuntimeError):
        context.defer()


def test_rundown_runs_when_the_last_connection_leaves() -> None:
    groups, parked, ran = AssociationGroups(), Parked(), []
    first = connect(parked, groups)
    group = first.assoc_group
    group.add_rundown("key", lambda: ran.append("key"))
    group.add_rundown("gone", lambda: ran.append("gone"))
    group.remove_rundown("gone")
    second = connect(parked, groups, assoc=group.assoc_group_id)
    first.close()
    assert ran == []
    second.close()
    assert ran == ["key"] and group.assoc_group_id not in groups
