"""srvsvc stubs, built and parsed with impacket's srvs types as a client would ([MS-SRVS] 3.1.4)."""

import pytest
from impacket.dcerpc.v5 import srvs
from impacket.dcerpc.v5.dtypes import NULL

from smbca.rpc.dcerpc import FaultStatus, RpcFault
from smbcad.rpc.srvsvc import (
    ERROR_INVALID_LEVEL,
    ERROR_INVALID_PARAMETER,
    ERROR_MORE_DATA,
    NERR_NET_NAME_NOT_FOUND,
    OPNUMS,
    SRVSVC_SYNTAX,
    ShareInfo,
    SrvsvcServer,
    srvsvc_interface,
)

from .client import CALL, SERVER, SHARES, enum_request

class StubClient:
    """impacket's DCERPC.request at the stub level: marshal, call our interface, unmarshal."""

    def __init__(self, shares=SHARES) -> None:
        self.interface = srvsvc_interface(lambda: shares, SERVER)
        self.last_stub = b""

    def request(self, request, uuid=None, checkError=True):
        self.last_stub = self.interface(request.opnum, request.getData(), CALL)
        response_type = getattr(srvs, type(request).__name__ + "Response")
        return response_type(self.last_stub)


def entries(response, level: int) -> list:
    return list(response["InfoStruct"]["ShareInfo"][f"Level{level}"]["Buffer"])


# -- NetrShareEnum, opnum 15 --------------------------------------------------------


def test_share_enum_level_1_exact_bytes() -> None:
    two = SHARES[:2]
    client = StubClient(two)
    client.request(enum_request(1))
    assert client.last_stub == bytes.fromhex(
        "01000000" "01000000" "00000200"  # Level 1, union tag 1, -> SHARE_INFO_1_CONTAINER
        "02000000" "04000200"  # EntriesRead 2, -> Buffer
        "02000000"  # conformant array, 2 entries
        "08000200" "03000080" "0c000200"  # IPC$: ->netname, STYPE_IPC|STYPE_SPECIAL, ->remark
        "10000200" "00000000" "14000200"  # data: cluster bit cleared
        "05000000" "00000000" "05000000" "4900500043002400" "0000" "abab"  # "IPC$" (+impacket pad)
        "14000000" "00000000" "14000000"  # "IPC Service (smbca)"
        "490050004300200053006500720076006900630065002000280073006d0062006300610029000000"
        "05000000" "00000000" "05000000" "6400610074006100" "0000" "abab"  # "data"
        "0a000000" "00000000" "0a000000" "5400650061006d0020006400610074006100" "0000"
        "02000000" "18000200" "00000000"  # TotalEntries 2, ->ResumeHandle = 0
        "00000000"  # NERR_Success
    )


def test_share_enum_level_1_as_smbclient_reads_it() -> None:
    response = srvs.hNetrShareEnum(StubClient(), 1)
    assert response["ErrorCode"] == 0 and response["TotalEntries"] == 3
    rows = entries(response, 1)
    assert [(e["shi1_netname"], e["shi1_type"], e["shi1_remark"]) for e in rows] == [
        ("IPC$\x00", 0x80000003, "IPC Service (smbca)\x00"),
        ("data\x00", 0, "Team data\x00"),
        ("scratch\x00", 0, "\x00"),
    ]


@pytest.mark.parametrize("level", [0, 1, 2, 501, 502, 503])
def test_share_enum_every_level_decodes(level: int) -> None:
    response = StubClient().request(enum_request(level))
    assert response["InfoStruct"]["Level"] == level
    assert response["InfoStruct"]["ShareInfo"]["Level%d" % level]["EntriesRead"] == 3
    prefix = "shi0" if level == 0 else f"shi{level}"
    rows = entries(response, level)
    assert [row[f"{prefix}_netname"] for row in rows] == ["IPC$\x00", "data\x00", "scratch\x00"]
    if level in (2, 502, 503):
        data = rows[1]
        assert data[f"{prefix}_path"] == "C:\\srv\\smbca\\data\x00"
        assert data[f"{prefix}_max_uses"] == 0xFFFFFFFF and data[f"{prefix}_type"] == 0
    if level == 501:
        assert [row["shi501_flags"] for row in rows] == [0, 0x4000, 0]  # ENABLE_CA on "data"


def test_share_enum_pages_with_preferred_maximum_length() -> None:
    client = StubClient()
    seen, resume = [], 0
    for _ in range(5):
        response = client.request(enum_request(1, resume=resume, max_length=1))
        names = [e["shi1_netname"] for e in entries(response, 1)]
        seen += names
        resume = response["ResumeHandle"]
        if response["ErrorCode"] == 0:
            break
        assert response["ErrorCode"] == ERROR_MORE_DATA and len(names) == 1
    assert seen == ["IPC$\x00", "data\x00", "scratch\x00"] and resume == 0


def test_share_enum_resume_handle_rules() -> None:
    client = StubClient()
    for beyond in (10, -1):  # -1 is 0xFFFFFFFF on the wire
        past_end = client.request(enum_request(1, resume=beyond))
        assert (past_end["ErrorCode"], past_end["TotalEntries"],
                past_end["ResumeHandle"]) == (0, 0, 0)
        assert past_end["InfoStruct"]["ShareInfo"]["Level1"]["EntriesRead"] == 0
    middle = client.request(enum_request(1, resume=1))
    assert [e["shi1_netname"] for e in entries(middle, 1)] == ["data\x00", "scratch\x00"]
    assert middle["TotalEntries"] == 2
    no_handle = client.request(enum_request(1, resume=NULL))
    assert no_handle["ResumeHandle"] == b""  # NULL in, NULL out


def test_share_enum_with_no_shares() -> None:
    response = StubClient(()).request(enum_request(1))
    assert (response["ErrorCode"], response["TotalEntries"]) == (0, 0)


# -- NetrShareGetInfo, opnum 16 -------------------------------------------------------


@pytest.mark.parametrize("level", [0, 1, 2, 501, 502, 503, 1005])
def test_share_get_info_levels(level: int) -> None:
    response = srvs.hNetrShareGetInfo(StubClient(), "DATA\x00", level)  # names are case-blind
    info = response["InfoStruct"][f"ShareInfo{level}"]
    if level == 1005:
        assert info["shi1005_flags"] == 0x4000
    else:
        assert info["shi0_netname" if level == 0 else f"shi{level}_netname"] == "data\x00"


def test_share_get_info_1005_without_ca() -> None:
    response = srvs.hNetrShareGetInfo(StubClient(), "scratch\x00", 1005)
    assert response["InfoStruct"]["ShareInfo1005"]["shi1005_flags"] == 0


def test_share_get_info_unknown_share() -> None:
    client = StubClient()
    with pytest.raises(srvs.DCERPCSessionError) as failure:
        srvs.hNetrShareGetInfo(_CheckingClient(client), "nope\x00", 1)
    assert failure.value.get_error_code() == NERR_NET_NAME_NOT_FOUND == 2310
    assert client.last_stub == bytes.fromhex("01000000" "00000000" "06090000")  # tag, NULL, 0x906


def test_share_get_info_empty_name_and_invalid_level() -> None:
    client = StubClient()
    response = srvs.hNetrShareGetInfo(client, "\x00", 1)
    assert response["ErrorCode"] == ERROR_INVALID_PARAMETER
    request = srvs.NetrShareGetInfo()
    request["ServerName"] = NULL
    request["NetName"] = "data\x00"
    request["Level"] = 7
    stub = client.interface(16, request.getData(), CALL)
    # union tag 7, NULL arm, ERROR_INVALID_LEVEL
    assert stub == bytes.fromhex("07000000" "00000000" "7c000000")
    assert int.from_bytes(stub[-4:], "little") == ERROR_INVALID_LEVEL


class _CheckingClient:
    """Raises like impacket's DCERPC.request when ErrorCode is not 0."""

    def __init__(self, client: StubClient) -> None:
        self.client = client

    def request(self, request, uuid=None, checkError=True):
        response = self.client.request(request)
        if response["ErrorCode"]:
            raise srvs.DCERPCSessionError(packet=response)
        return response


# -- NetrServerGetInfo, opnum 21 ------------------------------------------------------


@pytest.mark.parametrize("level", [100, 101, 102])
def test_server_get_info(level: int) -> None:
    response = srvs.hNetrServerGetInfo(StubClient(), level)
    info = response["InfoStruct"][f"ServerInfo{level}"]
    assert info[f"sv{level}_platform_id"] == 500
    assert info[f"sv{level}_name"] == "SMBCA\x00"
    if level >= 101:
        assert (info[f"sv{level}_version_major"], info[f"sv{level}_version_minor"]) == (10, 0)
        assert info[f"sv{level}_type"] == 0x00009003  # WORKSTATION|SERVER|NT|SERVER_NT
        assert info[f"sv{level}_comment"] == "smbca cluster\x00"
    if level == 102:
        assert (info["sv102_disc"], info["sv102_announce"], info["sv102_licenses"]) == (15, 240, 0)


def test_server_get_info_invalid_level() -> None:
    request = srvs.NetrServerGetInfo()
    request["ServerName"] = NULL
    request["Level"] = 503
    assert StubClient().interface(21, request.getData(), CALL) == bytes.fromhex(
        "f7010000" "00000000" "7c000000")


# -- dispatch -------------------------------------------------------------------------


def test_unknown_opnum_is_op_rng_error() -> None:
    with pytest.raises(RpcFault) as fault:
        StubClient().interface(36, b"", CALL)  # NetrShareEnumSticky: not served
    assert fault.value.status == FaultStatus.NCA_S_OP_RNG_ERROR
    assert fault.value.did_not_execute


@pytest.mark.parametrize("opnum", sorted(OPNUMS))
def test_undecodable_stub_is_bad_stub_data(opnum: int) -> None:
    with pytest.raises(RpcFault) as fault:
        StubClient().interface(opnum, b"\x01\x02", CALL)
    assert fault.value.status == FaultStatus.RPC_X_BAD_STUB_DATA == 0x6F7


def test_opnum_table_matches_the_registration() -> None:
    interface = srvsvc_interface(lambda: SHARES, SERVER)
    assert set(interface.operations) == set(OPNUMS)
    assert all(request.opnum == opnum for opnum, (request, _) in OPNUMS.items())
    assert interface.key == (SRVSVC_SYNTAX.if_uuid, 3)


def test_share_info_helpers() -> None:
    share = ShareInfo(name="x", share_type=0x02000000, path="/a/b", is_ca=True)
    assert (share.wire_type, share.flags, share.windows_path) == (0, 0x4000, "C:\\a\\b")
    assert ShareInfo(name="IPC$", share_type=0x80000003).windows_path == ""
    assert SrvsvcServer(lambda: (), SERVER) is not None
