"""Endpoint mapper ept_map and mgmt inq_princ_name ([MS-RPCE] 2.2.1.2.5, 2.2.1.3.4)."""

import struct
from uuid import UUID

import pytest

from smbca.rpc.dcerpc import (
    NDR20,
    AssociationGroups,
    Bind,
    FaultStatus,
    PresentationContext,
    Request,
    RpcConnection,
    SyntaxId,
    decode_pdu,
    interface_table,
)
from smbca.rpc.ndr import NULL_HANDLE, decode, encode
from witnessd.epm import (
    EPM_SYNTAX,
    EPT_S_NOT_REGISTERED,
    ERROR_INSUFFICIENT_BUFFER,
    MGMT_SYNTAX,
    RPC_S_UNKNOWN_AUTHN_SERVICE,
    ConnectionInfo,
    EptMapRequest,
    EptMapResponse,
    Floor,
    InqPrincNameRequest,
    InqPrincNameResponse,
    Tower,
    epm_interface,
    mgmt_interface,
    tcp_tower,
    tower_interface,
)
from witnessd.swn import WITNESS_SYNTAX

from . import captured

WITNESS_KEY = (WITNESS_SYNTAX.if_uuid, WITNESS_SYNTAX.major)


def test_tcp_tower_exact_bytes() -> None:
    tower = tcp_tower(WITNESS_SYNTAX, "192.0.2.7", 49152)
    data = tower.encode()
    assert len(data) == 75
    assert data == bytes.fromhex(
        "0500"
        "1300" "0d" + WITNESS_SYNTAX.if_uuid.bytes_le.hex() + "0100" "0200" "0100"
        "1300" "0d" + NDR20.if_uuid.bytes_le.hex() + "0200" "0200" "0000"
        "0100" "0b" "0200" "0000"
        "0100" "07" "0200" "c000"
        "0100" "09" "0400" "c0000207")
    assert Tower.decode(data) == tower
    assert tower_interface(tower) == WITNESS_KEY


def test_tower_over_ipv6_says_any_address() -> None:
    assert tcp_tower(WITNESS_SYNTAX, "::1", 1).floors[4] == Floor(b"\x09", bytes(4))


def test_non_tcp_towers_name_no_interface() -> None:
    tower = tcp_tower(WITNESS_SYNTAX, "10.0.0.1", 1)
    named_pipe = Tower(tower.floors[:3] + (Floor(b"\x0f", b"\\pipe\\x\x00"),))
    assert tower_interface(named_pipe) is None
    assert tower_interface(Tower(tower.floors[:2])) is None


def _connection(interface) -> RpcConnection:
    conn = RpcConnection(interface_table(interface), AssociationGroups(),
                         transport=ConnectionInfo("127.0.0.1", 135, "127.0.0.1", 40000))
    conn.receive_data(Bind(call_id=1, max_xmit_frag=4280, max_recv_frag=4280, p_context_elem=(
        PresentationContext(p_cont_id=0, abstract_syntax=interface.syntax,
                            transfer_syntaxes=(NDR20,)),)).encode())
    conn.pdus_to_send()
    return conn


def _call(conn: RpcConnection, opnum: int, stub: bytes) -> bytes:
    conn.receive_data(Request(call_id=2, opnum=opnum, alloc_hint=len(stub),
                              stub_data=stub).encode())
    (raw,) = conn.pdus_to_send()
    return raw


def test_ept_map_answers_rpcclients_query_without_authentication() -> None:
    (_, _, request, _), = [c for c in captured.CALLS if c[1] == "ept_map"]
    conn = _connection(epm_interface({WITNESS_KEY: (WITNESS_SYNTAX, 49999)}))
    response = decode(EptMapResponse.NDR, decode_pdu(_call(conn, 3, request)).stub_data)
    assert response.status == 0 and response.entry_handle == NULL_HANDLE
    assert response.towers.max_count == 1
    (tower,) = response.towers.towers
    assert tower == tcp_tower(WITNESS_SYNTAX, "127.0.0.1", 49999)


def test_ept_map_for_an_unknown_interface() -> None:
    other = SyntaxId.of("12345678-1234-abcd-ef00-0123456789ab", 1)
    stub = encode(EptMapRequest.NDR, EptMapRequest(None, tcp_tower(other, "0.0.0.0", 0),
                                                   NULL_HANDLE, 4))
    conn = _connection(epm_interface({WITNESS_KEY: (WITNESS_SYNTAX, 49999)}))
    raw_stub = decode_pdu(_call(conn, 3, stub)).stub_data
    response = decode(EptMapResponse.NDR, raw_stub)
    assert response.status == EPT_S_NOT_REGISTERED and response.towers.towers == ()
    # entry handle, num_towers 0, max 4 / offset 0 / actual 0, status
    assert raw_stub == bytes(20) + struct.pack("<IIIII", 0, 4, 0, 0, EPT_S_NOT_REGISTERED)


def test_ept_map_captured_answer_carries_the_port() -> None:
    (_, _, _, response), = [c for c in captured.CALLS if c[1] == "ept_map"]
    (tower,) = decode(EptMapResponse.NDR, response).towers.towers
    assert tower.floors[4].rhs == bytes((127, 0, 0, 1))
    assert tower_interface(tower) == WITNESS_KEY


def test_other_epm_opnums_are_out_of_range() -> None:
    conn = _connection(epm_interface({}))
    assert decode_pdu(_call(conn, 2, b"")).status == FaultStatus.NCA_S_OP_RNG_ERROR


@pytest.mark.parametrize("proto,size,name,status", [
    (9, 256, "cifs/CLUSTER", 0),
    (10, 13, "cifs/CLUSTER", 0),
    (10, 12, "", ERROR_INSUFFICIENT_BUFFER),
    (16, 256, "", RPC_S_UNKNOWN_AUTHN_SERVICE),
])
def test_inq_princ_name(proto, size, name, status) -> None:
    conn = _connection(mgmt_interface({9: "cifs/CLUSTER", 10: "cifs/CLUSTER"}))
    stub = encode(InqPrincNameRequest.NDR, InqPrincNameRequest(proto, size))
    response = decode(InqPrincNameResponse.NDR, decode_pdu(_call(conn, 4, stub)).stub_data)
    assert (response.princ_name.max_count, response.princ_name.text, response.status) == (
        size, name, status)


def test_inq_princ_name_size_zero_is_bad_stub_data() -> None:
    conn = _connection(mgmt_interface({}))
    stub = encode(InqPrincNameRequest.NDR, InqPrincNameRequest(9, 0))
    assert decode_pdu(_call(conn, 4, stub)).status == 0x6F7


def test_captured_inq_princ_name_answer() -> None:
    (_, _, request, response), = [c for c in captured.CALLS if c[1] == "inq_princ_name"]
    assert decode(InqPrincNameRequest.NDR, request) == InqPrincNameRequest(9, 256)
    assert decode(InqPrincNameResponse.NDR, response).princ_name.text == "cifs/CLUSTER"


def test_syntaxes() -> None:
    assert EPM_SYNTAX.if_uuid == UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa")
    assert (EPM_SYNTAX.major, MGMT_SYNTAX.major) == (3, 1)
