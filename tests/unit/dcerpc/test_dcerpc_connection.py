"""RpcConnection scenarios: bind, calls, fragments, faults, protocol errors.

Client bytes come from impacket's encoders or impacket's real DCERPC_v5
client (``client.py``); server bytes are checked with our decoder and
impacket's, and pinned where the layout matters.
"""

import struct
from uuid import UUID

import pytest
from impacket.dcerpc.v5 import rpcrt
from impacket.uuid import uuidtup_to_bin

from smbca.rpc.dcerpc import (
    NDR20,
    AlterContextResp,
    AssociationGroups,
    Auth3,
    AuthVerifier,
    Bind,
    BindAck,
    BindNak,
    CoCancel,
    ConnState,
    Fault,
    FaultStatus,
    Orphaned,
    PfcFlags,
    ProtocolError,
    Request,
    Response,
    decode_pdu,
)
from smbca.rpc.dcerpc.verification import SIGNATURE, Header2, VerificationTrailer

from .client import (
    BTFN_BIN,
    ECHO_BIN,
    ECHO_SYNTAX,
    ECHO_UUID,
    NDR20_BIN,
    NDR64_BIN,
    OTHER_BIN,
    UNKNOWN_BIN,
    bound_connection,
    ctx_item,
    impacket_bind,
    impacket_client,
    impacket_request,
    make_connection,
)


def answers(connection) -> list:
    return [decode_pdu(pdu) for pdu in connection.pdus_to_send()]


def one_answer(connection):
    (pdu,) = answers(connection)
    return pdu


def call(connection, stub: bytes, **kwargs):
    connection.receive_data(impacket_request(stub, **kwargs))
    return one_answer(connection)


# -- bind ---------------------------------------------------------------------


def test_bind_ack_bytes() -> None:
    connection = make_connection(secondary_address="\\PIPE\\srvsvc")
    connection.receive_data(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN)))
    (data,) = connection.pdus_to_send()
    assert data == bytes.fromhex(
        "05000c03" "10000000" "4400" "0000" "01000000"  # bind_ack, frag 68, call 1
        "b810" "b810" "f0530000"  # 4280/4280, first association group 0x53f0
        "0d00" "5c504950455c73727673766300" "00"  # "\PIPE\srvsvc\0", pad
        "01000000" "0000" "0000" "045d888aeb1cc9119fe808002b104860" "02000000")
    assert connection.state is ConnState.BOUND
    assert connection.assoc_group.assoc_group_id == 0x53F0
    ack = rpcrt.MSRPCBindAck(data)
    assert ack.getCtxItem(1)["Result"] == 0


def test_impacket_client_binds_and_calls() -> None:
    connection = make_connection(transport="session-1")
    client, _ = impacket_client(connection)
    client.bind(uuidtup_to_bin((ECHO_UUID, "1.0")))
    client.call(0, b"ping")
    assert client.recv() == b"ping"
    client.call(5, b"")
    assert client.recv() == b"2 0 5 None session-1"  # call_id, context, opnum, object, transport


def test_ndr64_only_bind_is_rejected_per_context() -> None:
    connection = make_connection()
    connection.receive_data(impacket_bind(ctx_item(0, ECHO_BIN, NDR64_BIN)))
    ack = one_answer(connection)
    assert isinstance(ack, BindAck)
    assert [(r.result, r.reason) for r in ack.p_result_list] == [(2, 2)]  # provider rejection
    assert not connection.contexts
    connection.receive_data(impacket_request(b"x"))  # no context 0: the call faults
    fault = one_answer(connection)
    assert fault.status == FaultStatus.NCA_S_UNK_IF
    assert fault.pfc_flags & PfcFlags.DID_NOT_EXECUTE


def test_impacket_client_sees_the_ndr64_rejection() -> None:
    client, _ = impacket_client(make_connection())
    with pytest.raises(rpcrt.DCERPCException, match="provider_rejection"):
        client.bind(uuidtup_to_bin((ECHO_UUID, "1.0")),
                    transfer_syntax=("71710533-beba-4937-8319-b5dbef9ccc36", "1.0"))


def test_multi_context_bind_with_feature_negotiation() -> None:
    connection = make_connection()
    connection.receive_data(impacket_bind(
        ctx_item(0, ECHO_BIN, NDR64_BIN), ctx_item(1, ECHO_BIN, NDR20_BIN),
        ctx_item(2, ECHO_BIN, BTFN_BIN), ctx_item(3, OTHER_BIN, NDR20_BIN),
        ctx_item(4, UNKNOWN_BIN, NDR20_BIN)))
    ack = one_answer(connection)
    assert [(r.result, r.reason) for r in ack.p_result_list] == [
        (2, 2), (0, 0), (3, 0x02), (0, 0), (2, 1)]
    assert sorted(connection.contexts) == [1, 3]
    assert connection.assoc_group.bind_time_features == 0x02
    assert call(connection, b"a", ctx_id=3).stub_data == b"a"


def test_fragment_sizes_are_negotiated() -> None:
    connection = make_connection(max_recv_frag=5840)
    connection.receive_data(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN), max_xmit=5840,
                                          max_recv=4281))
    ack = one_answer(connection)
    assert (ack.max_xmit_frag, ack.max_recv_frag) == (4280, 4280)
    assert (connection.max_xmit_frag, connection.max_recv_frag) == (4280, 4280)


def test_conc_mpx_is_echoed() -> None:
    connection = make_connection()
    connection.receive_data(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN), flags=0x13))
    assert one_answer(connection).pfc_flags == 0x13
    connection = make_connection(concurrent_multiplex=False)
    connection.receive_data(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN), flags=0x13))
    assert one_answer(connection).pfc_flags == 0x03


def test_association_groups_are_shared_and_released() -> None:
    groups = AssociationGroups(first_id=0x100)
    first = make_connection(groups)
    first.receive_data(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN)))
    group_id = one_answer(first).assoc_group_id
    second = make_connection(groups)
    second.receive_data(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN), assoc_group=group_id))
    assert one_answer(second).assoc_group_id == group_id == 0x100
    assert second.assoc_group is first.assoc_group and first.assoc_group.connections == 2
    first.close()
    second.close()
    assert group_id not in groups and len(groups) == 0


def test_unknown_association_group_is_nakked() -> None:
    connection = make_connection()
    with pytest.raises(ProtocolError):
        connection.receive_data(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN), assoc_group=77))
    nak = one_answer(connection)
    assert isinstance(nak, BindNak) and nak.provider_reject_reason == 0
    assert connection.closed


def test_bind_with_auth_is_nakked_until_auth_exists() -> None:
    bind = Bind.decode(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN)))
    with_auth = Bind(call_id=1, max_xmit_frag=4280, max_recv_frag=4280,
                     p_context_elem=bind.p_context_elem,
                     auth=AuthVerifier(auth_type=10, auth_level=6, auth_value=b"NTLMSSP\x00\x01"))
    connection = make_connection()
    with pytest.raises(ProtocolError):
        connection.receive_data(with_auth.encode())
    assert one_answer(connection).provider_reject_reason == 8  # authentication_type_not_recognized


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b[:0] + b"\x04" + b[1:], 4),  # rpc_vers 4
    (lambda b: b[:1] + b"\x02" + b[2:], 4),  # rpc_vers_minor 2
    (lambda b: b[:4] + b"\x10\x01\x00\x00" + b[8:], 0),  # VAX floats
    (lambda b: b[:16] + b"\xb8\x10\xb8\x10\x00\x00\x00\x00\x00\x00\x00\x00", 4),  # no contexts
])
def test_unacceptable_binds_get_bind_nak(mutate, reason: int) -> None:
    connection = make_connection()
    data = bytearray(mutate(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN))))
    data[8:10] = struct.pack("<H", len(data))
    with pytest.raises(ProtocolError):
        connection.receive_data(bytes(data))
    nak = one_answer(connection)
    assert isinstance(nak, BindNak) and nak.provider_reject_reason == reason
    assert nak.versions == ((5, 0),)
    with pytest.raises(ProtocolError):
        connection.receive_data(b"more")  # closed for good


def test_second_bind_is_nakked() -> None:
    connection = bound_connection()
    with pytest.raises(ProtocolError):
        connection.receive_data(impacket_bind(ctx_item(1, ECHO_BIN, NDR20_BIN), call_id=5))
    nak = one_answer(connection)
    assert (nak.call_id, nak.provider_reject_reason) == (5, 0)


def test_big_endian_request_gets_a_fault() -> None:
    connection = bound_connection()
    header = bytes.fromhex("05000003" "00000000" "001c" "0000" "00000009")
    with pytest.raises(ProtocolError):
        connection.receive_data(header + bytes.fromhex("00000004" "0000" "0000" "61626364"))
    fault = one_answer(connection)
    assert (fault.call_id, fault.status) == (9, FaultStatus.NCA_S_PROTO_ERROR)


# -- alter_context ----------------------------------------------------------


def test_alter_context_adds_a_context() -> None:
    connection = bound_connection()
    connection.receive_data(impacket_bind(ctx_item(1, OTHER_BIN, NDR20_BIN), call_id=3,
                                          ptype=rpcrt.MSRPC_ALTERCTX))
    resp = one_answer(connection)
    assert isinstance(resp, AlterContextResp)
    assert (resp.call_id, resp.sec_addr, resp.assoc_group_id) == (3, "", 0x53F0)
    assert [(r.result, r.transfer_syntax) for r in resp.p_result_list] == [(0, NDR20)]
    assert call(connection, b"z", ctx_id=1).stub_data == b"z"


def test_alter_context_rebinding_to_another_interface_is_fatal() -> None:
    connection = bound_connection()
    with pytest.raises(ProtocolError):
        connection.receive_data(impacket_bind(ctx_item(0, OTHER_BIN, NDR20_BIN), call_id=3,
                                              ptype=rpcrt.MSRPC_ALTERCTX))
    assert one_answer(connection).status == FaultStatus.NCA_S_PROTO_ERROR


# -- calls ------------------------------------------------------------------


def test_request_and_response() -> None:
    connection = bound_connection()
    connection.receive_data(impacket_request(b"hello", opnum=0, call_id=2))
    (data,) = connection.pdus_to_send()
    assert data == Response(call_id=2, alloc_hint=5, stub_data=b"hello").encode()
    parsed = rpcrt.MSRPCRespHeader(data)
    assert parsed["pduData"] == b"hello"


def test_object_uuid_reaches_the_call() -> None:
    obj = UUID("01234567-89ab-cdef-0123-456789abcdef")
    response = call(bound_connection(), b"", opnum=5, object_uuid=obj)
    assert response.stub_data == f"2 0 5 {obj} None".encode()


@pytest.mark.parametrize("opnum, status, did_not_execute", [
    (99, FaultStatus.NCA_S_OP_RNG_ERROR, True),  # unknown opnum
    (2, FaultStatus.RPC_S_ACCESS_DENIED, False),  # handler raises RpcFault
    (3, FaultStatus.NCA_S_FAULT_UNSPEC, False),  # handler crashes
    (4, FaultStatus.NCA_S_FAULT_UNSPEC, False),  # handler returns no bytes
])
def test_failed_calls_fault_and_the_connection_lives(opnum, status, did_not_execute) -> None:
    connection = bound_connection()
    fault = call(connection, b"", opnum=opnum, call_id=8)
    assert isinstance(fault, Fault)
    assert (fault.call_id, fault.status, fault.alloc_hint) == (8, status, 32)
    assert bool(fault.pfc_flags & PfcFlags.DID_NOT_EXECUTE) is did_not_execute
    assert call(connection, b"still here", call_id=9).stub_data == b"still here"


def test_impacket_client_reports_op_rng_error() -> None:
    client, _ = impacket_client(make_connection())
    client.bind(uuidtup_to_bin((ECHO_UUID, "1.0")))
    client.call(42, b"")
    with pytest.raises(rpcrt.DCERPCException, match="nca_s_op_rng_error"):
        client.recv()


def test_request_before_bind_is_a_protocol_error() -> None:
    connection = make_connection()
    with pytest.raises(ProtocolError):
        connection.receive_data(impacket_request(b"x", call_id=4))
    fault = one_answer(connection)
    assert (fault.call_id, fault.status) == (4, FaultStatus.NCA_S_PROTO_ERROR)
    assert connection.closed and connection.assoc_group is None


def test_request_with_a_verifier_but_no_security_context() -> None:
    connection = bound_connection()
    request = Request(call_id=2, opnum=0, stub_data=b"abcd",
                      auth=AuthVerifier(auth_type=10, auth_level=5, auth_value=bytes(16)))
    with pytest.raises(ProtocolError):
        connection.receive_data(request.encode())
    assert one_answer(connection).status == FaultStatus.NCA_S_PROTO_ERROR


def test_auth3_without_a_security_context_is_fatal() -> None:
    connection = bound_connection()
    with pytest.raises(ProtocolError):
        connection.receive_data(Auth3(call_id=1, auth=AuthVerifier(
            auth_type=10, auth_level=2, auth_value=b"t")).encode())
    assert one_answer(connection).status == FaultStatus.NCA_S_PROTO_ERROR


def test_byte_at_a_time_delivery() -> None:
    connection = make_connection()
    stream = impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN)) + impacket_request(b"slow")
    for index in range(len(stream)):
        connection.receive_data(stream[index:index + 1])
    ack, response = answers(connection)
    assert isinstance(ack, BindAck) and response.stub_data == b"slow"


# -- fragmentation ------------------------------------------------------------


def test_fragmented_request_is_reassembled() -> None:
    connection = bound_connection()
    stub = bytes(range(200)) * 10
    pieces = [stub[i:i + 512] for i in range(0, len(stub), 512)]
    for index, piece in enumerate(pieces):
        flags = (0x01 if index == 0 else 0) | (0x02 if index == len(pieces) - 1 else 0)
        connection.receive_data(impacket_request(piece, call_id=6, flags=flags,
                                                 alloc_hint=len(stub) - 512 * index))
        if index < len(pieces) - 1:
            assert connection.pdus_to_send() == []
    response = one_answer(connection)
    assert response.stub_data == stub and response.call_id == 6


def test_impacket_client_fragments_and_reassembles() -> None:
    connection = make_connection()
    client, pipe = impacket_client(connection)
    client.bind(uuidtup_to_bin((ECHO_UUID, "1.0")))
    client.set_max_fragment_size(100)
    stub = b"0123456789" * 100
    client.call(0, stub)
    assert len([pdu for pdu in pipe.sent if pdu[2] == 0]) > 1  # it really fragmented
    assert client.recv() == stub


def test_response_fragmentation_at_small_max_xmit_frag() -> None:
    connection = make_connection()
    connection.receive_data(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN), max_xmit=1024,
                                          max_recv=1024))
    assert one_answer(connection).max_xmit_frag == 2048  # Windows' floor
    connection.receive_data(impacket_request(struct.pack("<I", 5000), opnum=1))
    fragments = answers(connection)
    assert [len(f.stub_data) for f in fragments] == [2016, 2016, 968]  # 2048 - 24, 16-aligned
    assert [f.pfc_flags for f in fragments] == [0x01, 0x00, 0x02]
    assert [f.alloc_hint for f in fragments] == [5000, 2984, 968]
    assert all(len(f.encode()) <= 2048 for f in fragments)
    assert b"".join(f.stub_data for f in fragments) == bytes(i & 0xFF for i in range(5000))


def test_impacket_client_reassembles_fragmented_responses() -> None:
    client, pipe = impacket_client(make_connection())
    client.bind(uuidtup_to_bin((ECHO_UUID, "1.0")))
    client.call(1, struct.pack("<I", 20000))
    assert client.recv() == bytes(i & 0xFF for i in range(20000))
    assert len(pipe.received) == 1 + 5  # bind_ack + ceil(20000 / 4256)


def test_empty_response_is_one_pdu() -> None:
    response = call(bound_connection(), struct.pack("<I", 0), opnum=1)
    assert (response.pfc_flags, response.alloc_hint, response.stub_data) == (0x03, 0, b"")


def test_first_fragment_inside_a_fragmented_call_is_fatal() -> None:
    connection = bound_connection()
    connection.receive_data(impacket_request(b"a" * 8, call_id=6, flags=0x01))
    with pytest.raises(ProtocolError):
        connection.receive_data(impacket_request(b"b", call_id=7, flags=0x03))
    fault = one_answer(connection)
    assert (fault.call_id, fault.status) == (6, FaultStatus.NCA_S_PROTO_ERROR)


def test_continuation_of_another_call_is_fatal() -> None:
    connection = bound_connection()
    connection.receive_data(impacket_request(b"a" * 8, call_id=6, flags=0x01))
    with pytest.raises(ProtocolError):
        connection.receive_data(impacket_request(b"b", call_id=7, flags=0x02))
    assert one_answer(connection).call_id == 6


def test_stray_continuation_is_fatal() -> None:
    connection = bound_connection()
    with pytest.raises(ProtocolError):
        connection.receive_data(impacket_request(b"b", call_id=7, flags=0x02))
    assert one_answer(connection).status == FaultStatus.NCA_S_PROTO_ERROR


def test_unknown_context_faults_once_and_drops_the_remaining_fragments() -> None:
    connection = bound_connection()
    connection.receive_data(impacket_request(b"a", call_id=6, ctx_id=9, flags=0x01))
    fault = one_answer(connection)
    assert (fault.status, fault.p_cont_id) == (FaultStatus.NCA_S_UNK_IF, 9)
    connection.receive_data(impacket_request(b"b", call_id=6, ctx_id=9, flags=0x00))
    connection.receive_data(impacket_request(b"c", call_id=6, ctx_id=9, flags=0x02))
    assert connection.pdus_to_send() == []
    assert call(connection, b"ok", call_id=7).stub_data == b"ok"


def test_call_size_limit() -> None:
    connection = bound_connection(max_call_size=1000)
    connection.receive_data(impacket_request(b"a" * 600, call_id=6, flags=0x01, alloc_hint=600))
    with pytest.raises(ProtocolError):
        connection.receive_data(impacket_request(b"a" * 600, call_id=6, flags=0x02))
    fault = one_answer(connection)
    assert (fault.call_id, fault.status) == (6, FaultStatus.RPC_S_ACCESS_DENIED)


def test_alloc_hint_over_the_limit_is_refused_up_front() -> None:
    connection = bound_connection(max_call_size=1000)
    with pytest.raises(ProtocolError):
        connection.receive_data(impacket_request(b"a", call_id=6, flags=0x01, alloc_hint=5000))
    assert one_answer(connection).status == FaultStatus.RPC_S_ACCESS_DENIED


def test_oversized_request_fragment_is_fatal() -> None:
    connection = bound_connection()
    with pytest.raises(ProtocolError):
        connection.receive_data(impacket_request(b"a" * 6000))
    assert one_answer(connection).status == FaultStatus.NCA_S_PROTO_ERROR


def test_orphaned_drops_the_partial_call() -> None:
    connection = bound_connection()
    connection.receive_data(impacket_request(b"a", call_id=6, flags=0x01))
    connection.receive_data(Orphaned(call_id=6).encode())
    assert connection.pdus_to_send() == []
    assert call(connection, b"next", call_id=7).stub_data == b"next"


def test_co_cancel_is_ignored() -> None:
    connection = bound_connection()
    connection.receive_data(CoCancel(call_id=3).encode())
    assert connection.pdus_to_send() == [] and connection.state is ConnState.BOUND


@pytest.mark.parametrize("pdu", [
    Response(call_id=2, stub_data=b"x"),
    Fault(call_id=2, status=5),
    BindAck(call_id=1, max_xmit_frag=1, max_recv_frag=1, assoc_group_id=1, p_result_list=()),
])
def test_server_pdus_from_the_client_are_fatal(pdu) -> None:
    connection = bound_connection()
    with pytest.raises(ProtocolError):
        connection.receive_data(pdu.encode())
    assert one_answer(connection).status == FaultStatus.NCA_S_PROTO_ERROR


# -- verification trailer ([MS-RPCE] 2.2.2.13) -----------------------------------


def _with_trailer(stub: bytes, trailer: VerificationTrailer) -> bytes:
    return stub + bytes(-len(stub) % 4) + trailer.encode()


def test_verification_trailer_is_stripped() -> None:
    trailer = VerificationTrailer(
        bitmask_1=0, pcontext=(ECHO_SYNTAX, NDR20),
        header2=Header2(ptype=0, drep=b"\x10\x00\x00\x00", call_id=2, p_cont_id=0, opnum=0))
    response = call(bound_connection(), _with_trailer(b"abcdef", trailer))
    assert response.stub_data == b"abcdef\x00\x00"  # alignment pad stays with the stub


@pytest.mark.parametrize("trailer", [
    VerificationTrailer(pcontext=(ECHO_SYNTAX, NDR20), header2=Header2(
        ptype=0, drep=b"\x10\x00\x00\x00", call_id=99, p_cont_id=0, opnum=0)),
    VerificationTrailer(pcontext=(NDR20, NDR20)),
])
def test_verification_trailer_mismatch_is_access_denied(trailer) -> None:
    fault = call(bound_connection(), _with_trailer(b"abcd", trailer))
    assert fault.status == FaultStatus.RPC_S_ACCESS_DENIED


def test_unknown_must_process_command_is_access_denied() -> None:
    stub = b"abcd" + SIGNATURE + struct.pack("<HHI", 0x8000 | 0x4000 | 0x0007, 4, 0)
    assert call(bound_connection(), stub).status == FaultStatus.RPC_S_ACCESS_DENIED
