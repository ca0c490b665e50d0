"""samr stubs ([MS-SAMR] 3.1.5): rpcclient's requests in, our answers out, compared
with Samba's answers to the same bytes."""

import pytest
from impacket.dcerpc.v5 import samr

from smbca.rpc.dcerpc import FaultStatus, RpcFault
from smbcad.proto.status import NtStatus
from smbcad.rpc import account_domain, open_pipe
from smbcad.rpc.handles import ContextHandles
from smbcad.rpc.lsarpc import STATUS_SOME_NOT_MAPPED
from smbcad.rpc.samr import OPNUMS, SAMR_SYNTAX, STATUS_NO_SUCH_DOMAIN, samr_interface
from smbcad.rpc.wellknown import SidType

from . import vectors_lsa as v
from .client import ANONYMOUS, BOB, Session, bound_client, call_context, directory, environment

ACCOUNT_SID = str(account_domain("SMBCA", "smbca").sid)


class Samr:
    """One pipe's samr interface driven at the stub level."""

    def __init__(self, identity=BOB) -> None:
        self.interface = samr_interface(directory().sam, ContextHandles(9))
        self.call = call_context(SAMR_SYNTAX, identity)

    def raw(self, opnum: int, stub: bytes) -> bytes:
        return self.interface(opnum, stub, self.call)

    def answer(self, opnum: int, stub: bytes):
        return OPNUMS[opnum][1](self.raw(opnum, stub))

    def connect(self) -> bytes:
        response = self.answer(64, v.SAMR_CONNECT5_REQUEST)
        assert response["ErrorCode"] == NtStatus.SUCCESS
        return response["ServerHandle"]

    def open_builtin(self) -> bytes:
        response = self.answer(7, self.connect() + v.SAMR_OPEN_DOMAIN_BUILTIN_REQUEST[20:])
        assert response["ErrorCode"] == NtStatus.SUCCESS
        return response["DomainHandle"]


def test_connect5_as_samba_answers() -> None:
    ours = Samr().answer(64, v.SAMR_CONNECT5_REQUEST)
    samba = samr.SamrConnect5Response(v.SAMR_CONNECT5_SAMBA)
    for response in (ours, samba):
        assert (response["OutVersion"], response["OutRevisionInfo"]["V1"]["Revision"],
                response["ErrorCode"]) == (1, 3, NtStatus.SUCCESS)


def test_anonymous_cannot_connect() -> None:
    response = Samr(ANONYMOUS).answer(64, v.SAMR_CONNECT5_REQUEST)
    assert (response["ErrorCode"], response["ServerHandle"]) == (NtStatus.ACCESS_DENIED,
                                                                 bytes(20))


def test_enumerate_domains_as_samba_answers() -> None:
    server = Samr()
    ours = server.answer(6, server.connect() + v.SAMR_ENUM_DOMAINS_REQUEST[20:])
    samba = samr.SamrEnumerateDomainsInSamServerResponse(v.SAMR_ENUM_DOMAINS_SAMBA)
    listed = [(e["RelativeId"], e["Name"]) for e in ours["Buffer"]["Buffer"]]
    assert listed == [(0, "SMBCA"), (1, "Builtin")]
    assert [(e["RelativeId"], e["Name"]) for e in samba["Buffer"]["Buffer"]] == \
        [(0, "SMBDPEER"), (1, "Builtin")]
    assert (ours["CountReturned"], ours["EnumerationContext"], ours["ErrorCode"]) == \
        (samba["CountReturned"], samba["EnumerationContext"], samba["ErrorCode"]) == (2, 0, 0)


def test_enumerate_domains_past_the_end() -> None:
    server = Samr()
    stub = bytearray(server.connect() + v.SAMR_ENUM_DOMAINS_REQUEST[20:])
    stub[20:24] = (2).to_bytes(4, "little")  # EnumerationContext 2
    response = server.answer(6, bytes(stub))
    assert (response["CountReturned"], response["ErrorCode"]) == (0, NtStatus.SUCCESS)


def test_lookup_domain() -> None:
    server = Samr()
    handle = server.connect()
    ours = server.answer(5, handle + v.SAMR_LOOKUP_DOMAIN_REQUEST[20:])  # "SMBDPEER"
    assert (ours["ErrorCode"], ours.fields["DomainId"].fields["ReferentID"]) == \
        (STATUS_NO_SUCH_DOMAIN, 0)
    request = samr.SamrLookupDomainInSamServer()
    request["ServerHandle"] = handle
    for name, sid in (("smbca", ACCOUNT_SID), ("BUILTIN", "S-1-5-32")):
        request["Name"] = name
        answer = server.answer(5, request.getData())
        assert answer["DomainId"].formatCanonical() == sid
    samba = samr.SamrLookupDomainInSamServerResponse(v.SAMR_LOOKUP_DOMAIN_SAMBA)
    assert samba["DomainId"].formatCanonical().startswith("S-1-5-21-")


def test_open_domain_needs_a_known_sid() -> None:
    server = Samr()
    request = samr.SamrOpenDomain()
    request["ServerHandle"] = server.connect()
    request["DesiredAccess"] = samr.MAXIMUM_ALLOWED
    request["DomainId"].fromCanonical("S-1-5-21-1-2-3")
    response = server.answer(7, request.getData())
    assert (response["ErrorCode"], response["DomainHandle"]) == (STATUS_NO_SUCH_DOMAIN, bytes(20))


def test_lookup_names_in_builtin_as_samba_answers() -> None:
    server = Samr()
    ours = server.answer(17, server.open_builtin() + v.SAMR_LOOKUP_NAMES_REQUEST[20:])
    samba = samr.SamrLookupNamesInDomainResponse(v.SAMR_LOOKUP_NAMES_SAMBA)
    for response in (ours, samba):
        assert [r["Data"] for r in response["RelativeIds"]["Element"]] == [544, 545]
        assert [u["Data"] for u in response["Use"]["Element"]] == [SidType.ALIAS] * 2
        assert response["ErrorCode"] == NtStatus.SUCCESS


def test_lookup_names_exact_bytes() -> None:
    server = Samr()
    stub = server.raw(17, server.open_builtin() + v.SAMR_LOOKUP_NAMES_REQUEST[20:])
    assert stub == bytes.fromhex(
        "02000000" "00000200" "02000000" "20020000" "21020000"  # RIDs: 2, ->, [544, 545]
        "02000000" "04000200" "02000000" "04000000" "04000000"  # Use: 2, ->, [alias, alias]
        "00000000")


def lookup_names(server: Samr, handle: bytes, names: list[str]):
    request = samr.SamrLookupNamesInDomain()
    request["DomainHandle"] = handle
    request["Count"] = len(names)
    for name in names:
        item = samr.RPC_UNICODE_STRING()
        item["Data"] = name
        request["Names"].append(item)
    return server.answer(17, request.getData())


def test_lookup_names_some_and_none_mapped() -> None:
    server = Samr()
    handle = server.open_builtin()
    some = lookup_names(server, handle, ["backup operators", "nosuch"])
    assert some["ErrorCode"] == STATUS_SOME_NOT_MAPPED
    assert [u["Data"] for u in some["Use"]["Element"]] == [SidType.ALIAS, SidType.UNKNOWN]
    assert [r["Data"] for r in some["RelativeIds"]["Element"]] == [551, 0]
    assert lookup_names(server, handle, ["nosuch"])["ErrorCode"] == NtStatus.NONE_MAPPED


def test_account_domain_holds_no_accounts_yet() -> None:
    server = Samr()
    request = samr.SamrOpenDomain()
    request["ServerHandle"] = server.connect()
    request["DesiredAccess"] = samr.MAXIMUM_ALLOWED
    request["DomainId"].fromCanonical(ACCOUNT_SID)
    handle = server.answer(7, request.getData())["DomainHandle"]
    assert lookup_names(server, handle, ["bob"])["ErrorCode"] == NtStatus.NONE_MAPPED


def test_lookup_ids_from_rpcclient() -> None:
    server = Samr()
    response = server.answer(18, server.open_builtin() + v.SAMR_LOOKUP_IDS_REQUEST[20:])
    assert [n["Data"] for n in response["Names"]["Element"]] == ["Administrators", ""]
    assert [u["Data"] for u in response["Use"]["Element"]] == [SidType.ALIAS, SidType.UNKNOWN]
    assert response["ErrorCode"] == STATUS_SOME_NOT_MAPPED


def test_lookups_need_a_domain_handle() -> None:
    server = Samr()
    response = server.answer(17, server.connect() + v.SAMR_LOOKUP_NAMES_REQUEST[20:])
    assert response["ErrorCode"] == NtStatus.INVALID_HANDLE


def test_more_than_1000_names_is_insufficient_resources() -> None:
    server = Samr()
    response = lookup_names(server, server.open_builtin(), ["Users"] * 1001)
    assert response["ErrorCode"] == NtStatus.INSUFFICIENT_RESOURCES


def test_close_handle_from_rpcclient() -> None:
    server = Samr()
    handle = server.connect()
    closed = server.answer(1, handle + v.SAMR_CLOSE_REQUEST[20:])
    assert (closed["ErrorCode"], closed["SamHandle"]) == (NtStatus.SUCCESS, bytes(20))
    with pytest.raises(RpcFault) as fault:
        server.raw(1, handle)
    assert fault.value.status == FaultStatus.NCA_S_FAULT_CONTEXT_MISMATCH


def test_bad_domain_sid_faults() -> None:
    server = Samr()
    stub = bytearray(server.connect() + v.SAMR_OPEN_DOMAIN_BUILTIN_REQUEST[20:])
    stub[28] = 2  # SID revision 2
    with pytest.raises(RpcFault) as bad:
        server.raw(7, bytes(stub))
    assert bad.value.status == FaultStatus.RPC_X_BAD_STUB_DATA


def test_impacket_client_over_the_samr_pipe() -> None:
    pipe = open_pipe("samr", environment(names=directory()), Session(BOB))
    client = bound_client(pipe, samr.MSRPC_UUID_SAMR)
    server = samr.hSamrConnect5(client)["ServerHandle"]
    domains = samr.hSamrEnumerateDomainsInSamServer(client, server)
    assert [d["Name"] for d in domains["Buffer"]["Buffer"]] == ["SMBCA", "Builtin"]
    sid = samr.hSamrLookupDomainInSamServer(client, server, "Builtin")["DomainId"]
    domain = samr.hSamrOpenDomain(client, server, domainId=sid)["DomainHandle"]
    rids = samr.hSamrLookupNamesInDomain(client, domain, ["Administrators"])
    assert rids["RelativeIds"]["Element"][0]["Data"] == 544
    names = samr.hSamrLookupIdsInDomain(client, domain, [545])
    assert names["Names"]["Element"][0]["Data"] == "Users"
    pipe.close()

