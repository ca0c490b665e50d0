"""NDR of the witness interface: exact bytes, decode, round trip (shared/STYLE.md rule 14).

Vector sources: ``samba_vectors`` (Samba's published stubs, partly Windows
captures), ``captured`` (our loopback captures of rpcclient 4.17 and Samba
4.17's python bindings, see capture_vectors.py) and the [MS-SWN] 4.1 example.
"""

import ipaddress
from uuid import UUID

import pytest

from smbca.rpc.ndr import (
    NULL_HANDLE,
    U16,
    U32,
    WSTRING,
    ConformantArray,
    ContextHandle,
    FixedWideString,
    NdrError,
    NdrWriter,
    Params,
    Unique,
    decode,
    encode,
)
from witnessd.epm import (
    EptMapRequest,
    EptMapResponse,
    InqPrincNameRequest,
    InqPrincNameResponse,
)
from witnessd.swn import (
    WITNESS_UNSPECIFIED_VERSION,
    WITNESS_V1,
    WITNESS_V2,
    AsyncNotifyRequest,
    AsyncNotifyResponse,
    GetInterfaceListRequest,
    GetInterfaceListResponse,
    InterfaceState,
    IpAddrFlags,
    IpAddrInfo,
    IpAddrInfoList,
    MessageType,
    RegisterExRequest,
    RegisterRequest,
    RegisterResponse,
    ResourceChange,
    ResourceState,
    RespAsyncNotify,
    UnRegisterExRequest,
    UnRegisterExResponse,
    UnRegisterRequest,
    UnRegisterResponse,
    Win32Error,
    WitnessInterfaceInfo,
    WitnessInterfaceList,
    build_notify,
    parse_messages,
)

from . import captured, samba_vectors as sv

TYPES = {
    "GetInterfaceList": (GetInterfaceListRequest, GetInterfaceListResponse),
    "Register": (RegisterRequest, RegisterResponse),
    "UnRegister": (UnRegisterRequest, UnRegisterResponse),
    "AsyncNotify": (AsyncNotifyRequest, AsyncNotifyResponse),
    "RegisterEx": (RegisterExRequest, RegisterResponse),
    "UnRegisterEx": (UnRegisterExRequest, UnRegisterExResponse),
    "ept_map": (EptMapRequest, EptMapResponse),
    "inq_princ_name": (InqPrincNameRequest, InqPrincNameResponse),
}


def roundtrip(kind, data: bytes, same_referents: bool = True):
    """Decode, re-encode: the same bytes, or (referent ids being arbitrary,
    reference 1.4 item 9) the same value when the client numbered differently."""
    value = decode(kind.NDR, data)
    again = encode(kind.NDR, value)
    if same_referents:
        assert again == data
    else:
        assert len(again) == len(data) and decode(kind.NDR, again) == value
    return value


# -- primitives ------------------------------------------------------------------------

def test_referent_ids_count_up_by_four() -> None:
    writer = NdrWriter()
    assert [writer.referent() for _ in range(3)] == [0x20000, 0x20004, 0x20008]


def test_unique_string_layout_and_padding() -> None:
    params = Params(RegisterRequest, (("version", U32), ("net_name", Unique(WSTRING)),
                                      ("ip_address", Unique(WSTRING)),
                                      ("client_computer_name", Unique(WSTRING))))
    data = encode(params, RegisterRequest(1, "ab", None, ""))
    assert data.hex() == ("01000000" "00000200" "03000000" "00000000" "03000000"
                          "610062000000" "0000"  # 3 code units, pad to 4
                          "00000000"  # NULL pointer: 4 zero bytes and nothing else
                          "04000200" "01000000" "00000000" "01000000" "0000")


def test_string_with_nonzero_offset_is_rejected() -> None:
    with pytest.raises(NdrError):
        decode(Params(RegisterRequest, (("version", U32), ("net_name", Unique(WSTRING)),
                                        ("ip_address", Unique(WSTRING)),
                                        ("client_computer_name", Unique(WSTRING)))),
               bytes.fromhex("01000000" "00000200" "02000000" "01000000" "01000000" "6100"))


def test_fixed_wide_string_is_zero_filled_and_bounded() -> None:
    kind = FixedWideString(4)
    w = NdrWriter()
    kind.push(w, "abc")
    assert w.getvalue() == "abc".encode("utf-16-le") + b"\x00\x00"
    with pytest.raises(ValueError):
        kind.push(NdrWriter(), "abcd")


def test_conformant_array_count_must_match_its_count_field() -> None:
    good = encode(WitnessInterfaceList.NDR, WitnessInterfaceList(()))
    assert good.hex() == "00000000" "00000200" "00000000"
    with pytest.raises(NdrError, match="number_of_interfaces"):
        decode(WitnessInterfaceList.NDR, bytes.fromhex("01000000" "00000200" "00000000"))


def test_truncated_stub_is_an_ndr_error_with_the_fault_status() -> None:
    with pytest.raises(NdrError) as info:
        decode(RegisterRequest.NDR, sv.REGISTER_DATA_IN[:-3])
    assert info.value.status == 0x6F7


def test_trailing_bytes_are_tolerated() -> None:
    assert decode(UnRegisterRequest.NDR, sv.UNREGISTER_DATA_IN + bytes(8)).context_handle.uuid \
        == UUID("3ab88633-1e57-4c1a-856c-d1bc4b15bbb1")


def test_u16_alignment() -> None:
    w = NdrWriter()
    w.u8(1)
    U16.push(w, 0x0203)
    assert w.getvalue() == bytes.fromhex("01000302")


# -- Samba's published vectors (source4/torture/ndr/witness.c) ----------------------------

def test_samba_get_interface_list() -> None:
    response = roundtrip(GetInterfaceListResponse, sv.GETINTERFACELIST_DATA)
    assert len(sv.GETINTERFACELIST_DATA) == 16 + 2 * 552 + 4
    first, second = response.interface_list.interface_info
    assert (first.interface_group_name, first.version, first.state, str(first.ipv4),
            first.flags) == ("NODE2", WITNESS_UNSPECIFIED_VERSION, 1, "192.168.3.44", 5)
    assert (second.interface_group_name, str(second.ipv4), second.flags) == (
        "NODE1", "192.168.3.45", 1)
    assert response.return_value == Win32Error.SUCCESS


def test_samba_register_in_and_out() -> None:
    assert roundtrip(RegisterRequest, sv.REGISTER_DATA_IN) == RegisterRequest(
        WITNESS_V1, "sofs", "192.168.3.45", "MTHELENA")
    assert roundtrip(RegisterResponse, sv.REGISTER_DATA_OUT) == RegisterResponse(
        ContextHandle(0, UUID("3ab88633-1e57-4c1a-856c-d1bc4b15bbb1")), 0)


def test_samba_unregister_and_async_notify_in() -> None:
    assert roundtrip(UnRegisterResponse, sv.UNREGISTER_DATA_OUT).return_value == 0
    assert roundtrip(UnRegisterRequest, sv.UNREGISTER_DATA_IN).context_handle.attributes == 0
    assert roundtrip(AsyncNotifyRequest, sv.ASYNCNOTIFY_DATA_IN).context_handle.uuid == UUID(
        "1fb9f2ee-2a4d-4bf8-af8b-cb9d4529a9ab")


def test_samba_async_notify_resource_change() -> None:
    response = roundtrip(AsyncNotifyResponse, sv.ASYNCNOTIFY_DATA_OUT)
    assert response.response.message_type == MessageType.RESOURCE_CHANGE
    assert parse_messages(response.response) == (ResourceChange(ResourceState.UNAVAILABLE,
                                                                "SOFS"),)
    # Length 18 = 8 + 2 * (4 + 1); two pad octets before the DWORD.
    assert build_notify(MessageType.RESOURCE_CHANGE, (ResourceChange(0xFF, "SOFS"),)) == \
        response.response


def test_samba_client_move_ignores_uninitialised_ipv6() -> None:
    response = roundtrip(AsyncNotifyResponse, sv.ASYNCNOTIFY_DATA_MOVE_OUT)
    (listing,) = parse_messages(response.response)
    (entry,) = listing.addresses
    assert entry.flags == IpAddrFlags.V4 and str(entry.ipv4) == "192.168.3.45"


def test_samba_fuzz1_empty_address_list() -> None:
    response = roundtrip(AsyncNotifyResponse, sv.ASYNCNOTIFY_DATA_FUZZ1_OUT)
    assert parse_messages(response.response) == (IpAddrInfoList(()),)


def test_samba_fuzz2_unknown_message_type_is_refused() -> None:
    response = decode(RespAsyncNotify.NDR, sv.NOTIFYRESPONSE_DATA_FUZZ2_STRUCT)
    assert response.message_type == 0x00712C20
    with pytest.raises(NdrError, match="unknown MessageType"):
        parse_messages(response)


# -- [MS-SWN] 4.1 example, re-encoded ------------------------------------------------------

def test_spec_example_resource_change_generalfs() -> None:
    message = ResourceChange(ResourceState.UNAVAILABLE, "GENERALFS")
    assert message.encode() == bytes.fromhex("1c000000" "ff000000") + \
        "GENERALFS\0".encode("utf-16-le")


def test_spec_example_interface_entry_offsets() -> None:
    info = WitnessInterfaceInfo("NODE02", WITNESS_V2, InterfaceState.AVAILABLE,
                                ipaddress.IPv4Address("192.168.1.22"), flags=5)
    data = encode(WitnessInterfaceInfo.NDR, info)
    assert len(data) == 552
    assert data[520:524] == bytes.fromhex("00000200")
    assert data[524:528] == bytes.fromhex("0100" "0000")  # State, then 2 padding octets
    assert data[528:532] == bytes((192, 168, 1, 22))  # network order
    assert data[548:552] == bytes.fromhex("05000000")


def test_ip_change_list_exact_bytes() -> None:
    listing = IpAddrInfoList((
        IpAddrInfo(IpAddrFlags.V4 | IpAddrFlags.ONLINE, ipv4=ipaddress.IPv4Address("10.0.0.2")),
        IpAddrInfo(IpAddrFlags.V6 | IpAddrFlags.OFFLINE,
                   ipv6=ipaddress.IPv6Address("fd00::10:0:10:2")),
    ))
    data = listing.encode()
    assert data[:12] == bytes.fromhex("3c000000" "00000000" "02000000")  # Length 12 + 2*24
    assert data[12:16] == bytes.fromhex("09000000") and data[16:20] == bytes((10, 0, 0, 2))
    assert data[36:40] == bytes.fromhex("12000000")
    assert data[44:60] == ipaddress.IPv6Address("fd00::10:0:10:2").packed
    assert IpAddrInfoList.decode_from(data, 0) == (listing, len(data))


def test_error_responses_carry_null_out_parameters() -> None:
    assert encode(GetInterfaceListResponse.NDR, GetInterfaceListResponse(
        None, Win32Error.NO_MORE_ITEMS)).hex() == "00000000" "03010000"
    assert encode(AsyncNotifyResponse.NDR, AsyncNotifyResponse(
        None, Win32Error.NOT_FOUND)).hex() == "00000000" "90040000"
    assert encode(RegisterResponse.NDR, RegisterResponse(
        NULL_HANDLE, Win32Error.REVISION_MISMATCH)) == bytes(20) + bytes.fromhex("1a050000")


def test_build_notify_refuses_mixed_messages() -> None:
    with pytest.raises(ValueError):
        build_notify(MessageType.CLIENT_MOVE, (ResourceChange(1, "x"),))


def test_resource_change_bad_length_is_refused() -> None:
    data = bytes.fromhex("07000000" "01000000")
    with pytest.raises(NdrError):
        ResourceChange.decode_from(data, 0)


def test_register_ex_exact_bytes() -> None:
    request = RegisterExRequest(WITNESS_V2, "CLUSTER", None, "10.0.0.1", "HV1.example.com", 0,
                                120)
    data = encode(RegisterExRequest.NDR, request)
    assert len(data) == 132
    assert data.endswith(bytes.fromhex("00000000" "78000000"))
    assert decode(RegisterExRequest.NDR, data) == request


# -- our captures of real clients (captured.py) -------------------------------------------

@pytest.mark.parametrize("index", range(len(captured.CALLS)),
                         ids=[f"{c[0].split()[0]}-{c[1]}-{i}"
                              for i, c in enumerate(captured.CALLS)])
def test_captured_call_round_trips(index: int) -> None:
    client, operation, request, response = captured.CALLS[index]
    request_type, response_type = TYPES[operation]
    # rpcclient numbers its [ptr] referents 1, 2, ... in ept_map; we use 0x20000 + 4n.
    roundtrip(request_type, request, same_referents=operation != "ept_map")
    if response is not None:
        roundtrip(response_type, response)


def test_captured_register_from_rpcclient() -> None:
    (_, _, request, response), = [c for c in captured.CALLS
                                  if c[0].startswith("rpcclient") and c[1] == "Register"]
    assert decode(RegisterRequest.NDR, request) == RegisterRequest(
        WITNESS_V1, "CLUSTER", "127.0.0.2", "hv1")
    assert decode(RegisterResponse.NDR, response).return_value == 0


def test_captured_register_ex_from_samba_python() -> None:
    (_, _, request, _), = [c for c in captured.CALLS
                           if c[0].startswith("samba") and c[1] == "RegisterEx"]
    assert decode(RegisterExRequest.NDR, request) == RegisterExRequest(
        WITNESS_V2, "CLUSTER", "vm", "127.0.0.2", "hv1.example.com", 1, 120)


def test_captured_notifications_decode_to_what_was_sent() -> None:
    answers = [decode(AsyncNotifyResponse.NDR, c[3]).response for c in captured.CALLS
               if c[1] == "AsyncNotify"]
    kinds = [answer.message_type for answer in answers]
    assert kinds == [MessageType.CLIENT_MOVE, MessageType.RESOURCE_CHANGE, MessageType.IP_CHANGE]
    (move,) = parse_messages(answers[0])
    assert [(e.flags, str(e.ipv4)) for e in move.addresses] == [(0x09, "127.0.0.1")]
    assert parse_messages(answers[1]) == (ResourceChange(ResourceState.UNAVAILABLE,
                                                         "127.0.0.2"),)
    (change,) = parse_messages(answers[2])
    assert [e.flags for e in change.addresses] == [0x11, 0x12]


def test_captured_ept_map_asks_for_the_witness_tower() -> None:
    (_, _, request, _), = [c for c in captured.CALLS if c[1] == "ept_map"]
    value = decode(EptMapRequest.NDR, request)
    assert value.obj is None and value.max_towers == 1 and len(value.map_tower.floors) == 5


def test_conformant_array_of_structs_roundtrip() -> None:
    kind = ConformantArray(WitnessInterfaceInfo.NDR)
    infos = (WitnessInterfaceInfo("A", 1, 1), WitnessInterfaceInfo("B", 1, 255, flags=4))
    w = NdrWriter()
    kind.push(w, infos)
    assert decode(kind, w.getvalue()) == infos
