"""The connection state table, checked for every (state x PTYPE) pair (shared/STYLE.md rule 2)."""

import pytest
from hypothesis import given, settings, strategies as st

from smbca.rpc.dcerpc import (
    TRANSITIONS,
    AlterContext,
    AlterContextResp,
    Auth3,
    AuthVerifier,
    Bind,
    BindAck,
    BindNak,
    CoCancel,
    ConnState,
    Fault,
    Orphaned,
    ProtocolError,
    PType,
    Request,
    Response,
    Shutdown,
    decode_pdu,
    state_diagram,
)

from .client import ECHO_BIN, NDR20_BIN, OTHER_BIN, ctx_item, impacket_bind, make_connection

BIND = impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN))
CONTEXTS = Bind.decode(BIND).p_context_elem
ALTER_CONTEXTS = Bind.decode(impacket_bind(ctx_item(1, OTHER_BIN, NDR20_BIN))).p_context_elem

SAMPLES: dict[PType, bytes] = {
    PType.REQUEST: Request(call_id=2, alloc_hint=2, opnum=0, stub_data=b"hi").encode(),
    PType.RESPONSE: Response(call_id=2, stub_data=b"hi").encode(),
    PType.FAULT: Fault(call_id=2, status=5).encode(),
    PType.BIND: BIND,
    PType.BIND_ACK: BindAck(call_id=1, max_xmit_frag=4280, max_recv_frag=4280,
                            assoc_group_id=1, p_result_list=()).encode(),
    PType.BIND_NAK: BindNak(call_id=1, provider_reject_reason=0).encode(),
    PType.ALTER_CONTEXT: AlterContext(call_id=3, max_xmit_frag=4280, max_recv_frag=4280,
                                      p_context_elem=ALTER_CONTEXTS).encode(),
    PType.ALTER_CONTEXT_RESP: AlterContextResp(call_id=3, max_xmit_frag=4280, max_recv_frag=4280,
                                               assoc_group_id=1, p_result_list=()).encode(),
    PType.AUTH3: Auth3(call_id=1, auth=AuthVerifier(auth_type=10, auth_level=2,
                                                    auth_value=b"x")).encode(),
    PType.SHUTDOWN: Shutdown(call_id=0).encode(),
    PType.CO_CANCEL: CoCancel(call_id=2).encode(),
    PType.ORPHANED: Orphaned(call_id=2).encode(),
}
"""One well-formed PDU of every connection-oriented PTYPE."""

FATAL_EVEN_IF_ALLOWED = {PType.AUTH3}
"""Allowed by the table, but refused until a security provider exists."""


def connection_in(state: ConnState):
    connection = make_connection()
    if state is ConnState.BOUND:
        connection.receive_data(BIND)
    elif state is ConnState.CLOSED:
        with pytest.raises(ProtocolError):
            connection.receive_data(SAMPLES[PType.RESPONSE])
    connection.pdus_to_send()
    assert connection.state is state
    return connection


def test_every_ptype_has_a_sample() -> None:
    assert set(SAMPLES) == set(PType)


@pytest.mark.parametrize("state", list(ConnState))
@pytest.mark.parametrize("ptype", list(PType))
def test_state_table(state: ConnState, ptype: PType) -> None:
    connection = connection_in(state)
    target = TRANSITIONS.get((state, ptype))
    if target is None or ptype in FATAL_EVEN_IF_ALLOWED:
        with pytest.raises(ProtocolError):
            connection.receive_data(SAMPLES[ptype])
        assert connection.state is ConnState.CLOSED
        answers = [decode_pdu(pdu) for pdu in connection.pdus_to_send()]
        if state is ConnState.CLOSED:
            assert answers == []  # nothing more is said on a closed connection
        else:
            (answer,) = answers
            assert isinstance(answer, BindNak if ptype is PType.BIND else Fault)
    else:
        connection.receive_data(SAMPLES[ptype])
        assert connection.state is target


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(SAMPLES)), max_size=12))
def test_random_walks_follow_the_table(ptypes: list[PType]) -> None:
    connection = make_connection()
    for ptype in ptypes:
        before = connection.state
        try:
            connection.receive_data(SAMPLES[ptype])
        except ProtocolError:
            assert connection.state is ConnState.CLOSED
        else:
            assert connection.state is TRANSITIONS[(before, ptype)]
        for pdu in connection.pdus_to_send():
            decode_pdu(pdu)


def test_state_diagram_is_generated_from_the_table() -> None:
    diagram = state_diagram()
    for (state, ptype), target in TRANSITIONS.items():
        assert f"{state.name} --> {target.name}: {ptype.name.lower()}" in diagram
