"""Fuzzing the NDR decoders, the message-buffer parser and the authenticated PDU path.

Decoders may only raise ``NdrError``; the connection may only raise
``ProtocolError``, and whatever it answers must itself decode (shared/STYLE.md
rules 8 and 14).  Interesting inputs are kept as named regression blobs.
"""

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from smbca.rpc.dcerpc import ProtocolError, decode_pdu
from smbca.rpc.ndr import NdrError, decode, encode
from witnessd.epm import EptMapRequest, InqPrincNameRequest, Tower
from witnessd.swn import (
    AsyncNotifyRequest,
    AsyncNotifyResponse,
    GetInterfaceListResponse,
    IpAddrInfo,
    IpAddrInfoList,
    MessageType,
    RegisterExRequest,
    RegisterRequest,
    ResourceChange,
    RespAsyncNotify,
    UnRegisterExRequest,
    WitnessInterfaceInfo,
    WitnessInterfaceList,
    build_notify,
    parse_messages,
)

from . import captured, samba_vectors as sv
from .client import DceClient, two_node_service, witness_connection

DECODERS = (RegisterRequest, RegisterExRequest, AsyncNotifyRequest, UnRegisterExRequest,
            GetInterfaceListResponse, AsyncNotifyResponse, EptMapRequest, InqPrincNameRequest)
SEEDS = [request for _, _, request, _ in captured.CALLS] + [
    sv.GETINTERFACELIST_DATA, sv.REGISTER_DATA_IN, sv.ASYNCNOTIFY_DATA_OUT,
    sv.ASYNCNOTIFY_DATA_MOVE_OUT]

REGRESSIONS = {
    "string_max_count_huge": bytes.fromhex("01000100" "00000200" "ffffffff" "00000000"
                                           "ffffffff"),
    "interface_list_count_without_array": bytes.fromhex("00000200" "05000000" "00000000"
                                                        "00000000"),
    "notify_length_mismatch": bytes.fromhex("00000200" "01000000" "12000000" "01000000"
                                            "04000200" "11000000") + bytes(20),
    "tower_floor_count_huge": bytes.fromhex("00000000" "01000000" "04000000" "04000000"
                                            "ffff0000"),
    "utf16_lone_surrogate": bytes.fromhex("01000100" "00000200" "02000000" "00000000"
                                          "02000000" "00d80000"),
}


def _decode_all(data: bytes) -> None:
    for kind in DECODERS:
        try:
            value = decode(kind.NDR, data)
        except NdrError:
            continue
        if isinstance(value, AsyncNotifyResponse) and value.response is not None:
            try:
                parse_messages(value.response)
            except NdrError:
                pass


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regressions(name: str) -> None:
    _decode_all(REGRESSIONS[name])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_decoders_raise_only_ndr_errors(data: bytes) -> None:
    _decode_all(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_real_stubs(seed: bytes, data) -> None:
    mutated = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 6))):
        if not mutated:
            break
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    _decode_all(bytes(mutated[:cut]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_tower_and_message_parsers(data: bytes) -> None:
    try:
        Tower.decode(data)
    except NdrError:
        pass
    for kind in MessageType:
        try:
            parse_messages(RespAsyncNotify(kind, 3, data))
        except NdrError:
            pass


text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=40)
ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))


@settings(max_examples=200, deadline=None)
@given(st.builds(RegisterExRequest, st.integers(0, 2**32 - 1), st.none() | text,
                 st.none() | text, st.none() | text, st.none() | text,
                 st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)))
def test_register_ex_round_trip(request: RegisterExRequest) -> None:
    assert decode(RegisterExRequest.NDR, encode(RegisterExRequest.NDR, request)) == request


@settings(max_examples=100, deadline=None)
@given(st.lists(st.builds(WitnessInterfaceInfo, st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=100),
    st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), ipv4, ipv6, st.integers(0, 2**32 - 1)),
    max_size=5))
def test_interface_list_round_trip(infos) -> None:
    response = GetInterfaceListResponse(WitnessInterfaceList(tuple(infos)), 0)
    assert decode(GetInterfaceListResponse.NDR,
                  encode(GetInterfaceListResponse.NDR, response)) == response


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.tuples(st.just(MessageType.RESOURCE_CHANGE),
              st.lists(st.builds(ResourceChange, st.integers(0, 2**32 - 1), text), max_size=4)),
    st.tuples(st.sampled_from([MessageType.CLIENT_MOVE, MessageType.SHARE_MOVE,
                               MessageType.IP_CHANGE]),
              st.lists(st.builds(IpAddrInfoList, st.lists(st.builds(
                  IpAddrInfo, st.integers(0, 2**32 - 1), ipv4, ipv6), max_size=4).map(tuple)),
                  max_size=3))))
def test_notifications_round_trip(case) -> None:
    kind, messages = case
    notify = build_notify(kind, tuple(messages))
    response = AsyncNotifyResponse(notify, 0)
    again = decode(AsyncNotifyResponse.NDR, encode(AsyncNotifyResponse.NDR, response))
    assert again == response
    assert parse_messages(again.response) == tuple(messages)


def _authenticated_stream() -> tuple[DceClient, list[bytes]]:
    client = DceClient(witness_connection(two_node_service()))
    client.bind()
    return client, [client.request_pdu(op, stub) for _, op_name, stub, _ in captured.CALLS[:6]
                    for op in [{"GetInterfaceList": 0, "Register": 1, "RegisterEx": 4,
                                "AsyncNotify": 3, "UnRegister": 2}.get(op_name, 0)]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_pdus_on_an_authenticated_connection(data) -> None:
    client, pdus = _authenticated_stream()
    stream = bytearray(b"".join(pdus))
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(stream) - 1))
        stream[at] = data.draw(st.integers(0, 255))
    try:
        client.conn.receive_data(bytes(stream))
    except ProtocolError:
        assert client.conn.closed
    for pdu in client.conn.pdus_to_send():
        decode_pdu(pdu)
