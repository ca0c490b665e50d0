"""lsarpc stubs ([MS-LSAD] 3.1.4, [MS-LSAT] 3.1.4): rpcclient's and smbcacls' requests
in, our answers out, compared with what Samba's smbd answered to the same bytes."""

import pytest
from impacket.dcerpc.v5 import lsad, lsat
from impacket.dcerpc.v5.dtypes import NULL

from smbca.rpc.dcerpc import AuthLevel, FaultStatus, RpcFault
from smbcad.proto.status import NtStatus
from smbcad.rpc import account_domain, open_pipe
from smbcad.rpc.handles import MAX_HANDLES, ContextHandles
from smbcad.rpc.idl_fixes import LsarGetUserNameResponse
from smbcad.rpc.lsarpc import LSARPC_SYNTAX, OPNUMS, STATUS_SOME_NOT_MAPPED, lsarpc_interface
from smbcad.rpc.wellknown import SidType

from . import vectors_lsa as v
from .client import ANONYMOUS, BOB, Session, bound_client, call_context, directory, environment

USER_CALL = call_context(LSARPC_SYNTAX)
ANONYMOUS_CALL = call_context(LSARPC_SYNTAX, ANONYMOUS)


class Lsa:
    """One pipe's lsarpc interface driven at the stub level."""

    def __init__(self, call=USER_CALL) -> None:
        names = directory()
        self.interface = lsarpc_interface(names.names, names.policy, ContextHandles(7))
        self.call = call

    def raw(self, opnum: int, stub: bytes) -> bytes:
        return self.interface(opnum, stub, self.call)

    def answer(self, opnum: int, stub: bytes):
        return OPNUMS[opnum][1](self.raw(opnum, stub))

    def open(self, request: bytes = v.OPEN_POLICY_REQUEST) -> bytes:
        response = self.answer(6 if request is v.OPEN_POLICY_REQUEST else 44, request)
        assert response["ErrorCode"] == NtStatus.SUCCESS
        return response["PolicyHandle"]

    def with_handle(self, opnum: int, captured: bytes, handle: bytes | None = None):
        """``captured`` with our policy handle where the client had Samba's."""
        return self.answer(opnum, (handle or self.open()) + captured[20:])


def translated_sids(response) -> list[tuple[int, int, int]]:
    return [(entry["Use"], entry["RelativeId"], entry["DomainIndex"])
            for entry in response["TranslatedSids"]["Sids"]]


def domains(response) -> list[tuple[str, str]]:
    listing = response["ReferencedDomains"]
    if listing["Entries"] == 0:
        return []
    return [(d["Name"], d["Sid"].formatCanonical()) for d in listing["Domains"]]


def names_of(response) -> list[tuple[int, str, int]]:
    return [(e["Use"], e["Name"], e["DomainIndex"]) for e in response["TranslatedNames"]["Names"]]


# -- LsarOpenPolicy / LsarOpenPolicy2 / LsarClose -----------------------------------------


def test_open_policy_from_smbcacls_exact_bytes() -> None:
    assert Lsa().raw(6, v.OPEN_POLICY_REQUEST) == bytes.fromhex(
        "00000000" "6c736170" "0700000000000000" "01000000"  # attributes, "lsap", pipe 7, #1
        "00000000")  # STATUS_SUCCESS


def test_open_policy2_from_rpcclient() -> None:
    response = Lsa().answer(44, v.OPEN_POLICY2_REQUEST)
    assert response["ErrorCode"] == NtStatus.SUCCESS
    assert response["PolicyHandle"] != bytes(20)


def test_anonymous_caller_gets_no_policy() -> None:
    response = Lsa(ANONYMOUS_CALL).answer(6, v.OPEN_POLICY_REQUEST)
    assert response["ErrorCode"] == NtStatus.ACCESS_DENIED
    assert response["PolicyHandle"] == bytes(20)


def test_write_access_to_the_policy_is_denied() -> None:
    request = lsad.LsarOpenPolicy2()
    request["SystemName"] = NULL
    request["ObjectAttributes"]["RootDirectory"] = NULL
    request["ObjectAttributes"]["ObjectName"] = NULL
    request["ObjectAttributes"]["SecurityDescriptor"] = NULL
    request["ObjectAttributes"]["SecurityQualityOfService"] = NULL
    request["DesiredAccess"] = 0x00000010  # POLICY_CREATE_ACCOUNT
    assert Lsa().answer(44, request.getData())["ErrorCode"] == NtStatus.ACCESS_DENIED
    request["DesiredAccess"] = 0x80000000  # GENERIC_READ maps to rights everyone has
    assert Lsa().answer(44, request.getData())["ErrorCode"] == NtStatus.SUCCESS


def assert_context_mismatch(lsa: Lsa, opnum: int, stub: bytes) -> None:
    """An unknown handle faults before the manager runs ([MS-RPCE] 3.3.1.4.1)."""
    with pytest.raises(RpcFault) as fault:
        lsa.raw(opnum, stub)
    assert fault.value.status == FaultStatus.NCA_S_FAULT_CONTEXT_MISMATCH
    assert fault.value.did_not_execute


def test_close_then_the_handle_is_gone() -> None:
    lsa = Lsa()
    handle = lsa.open()
    closed = lsa.answer(0, handle)
    assert (closed["ErrorCode"], closed["ObjectHandle"]) == (NtStatus.SUCCESS, bytes(20))
    assert_context_mismatch(lsa, 0, handle)  # what smbtorture's rpc.lsa.lookupnames checks
    assert_context_mismatch(lsa, 14, handle + v.LOOKUP_NAMES_EVERYONE_REQUEST[20:])


def test_handles_belong_to_their_pipe() -> None:
    handle = Lsa().open()
    assert_context_mismatch(Lsa(), 14, handle + v.LOOKUP_NAMES_EVERYONE_REQUEST[20:])


def test_a_samr_handle_is_not_a_policy_handle() -> None:
    handles = ContextHandles(7)
    names = directory()
    lsa = Lsa()
    lsa.interface = lsarpc_interface(names.names, names.policy, handles)
    samr_handle = handles.create(b"samS", 0x20031)
    lookup = lsa.with_handle(14, v.LOOKUP_NAMES_EVERYONE_REQUEST, samr_handle)
    assert lookup["ErrorCode"] == NtStatus.INVALID_HANDLE


def test_a_pipe_holds_a_bounded_number_of_handles() -> None:
    lsa = Lsa()
    for _ in range(MAX_HANDLES):
        lsa.open()
    response = lsa.answer(6, v.OPEN_POLICY_REQUEST)
    assert response["ErrorCode"] == NtStatus.INSUFFICIENT_RESOURCES


# -- LsarLookupNames (1, 2, 3, 4) --------------------------------------------------------


def test_lookup_names_everyone_as_samba_answers() -> None:
    ours = Lsa().with_handle(14, v.LOOKUP_NAMES_EVERYONE_REQUEST)
    samba = lsat.LsarLookupNamesResponse(v.LOOKUP_NAMES_EVERYONE_SAMBA)
    assert translated_sids(ours) == translated_sids(samba) == [(SidType.WELL_KNOWN_GROUP, 0, 0)]
    assert domains(ours) == domains(samba) == [("", "S-1-1")]
    assert ours["MappedCount"] == samba["MappedCount"] == 1
    assert ours["ErrorCode"] == samba["ErrorCode"] == NtStatus.SUCCESS


def test_lookup_names_everyone_exact_bytes() -> None:
    lsa = Lsa()
    assert lsa.raw(14, lsa.open() + v.LOOKUP_NAMES_EVERYONE_REQUEST[20:]) == bytes.fromhex(
        "00000200" "01000000" "04000200" "20000000"  # ->domains: 1 entry, ->array, max 32
        "01000000" "0000" "0000" "08000200" "0c000200"  # 1 entry: Name "" (->buffer), ->Sid
        "00000000" "00000000" "00000000"  # empty name buffer: max 0, offset 0, actual 0
        "00000000" "01" "00" "000000000001"  # Sid S-1-1: no sub-authorities, authority 1
        "01000000" "10000200" "01000000"  # TranslatedSids: 1, ->array, conformance 1
        "0500" "bfbf" "00000000" "00000000"  # WellKnownGroup (+ impacket's filler), RID 0, domain 0
        "01000000" "00000000")  # MappedCount 1, STATUS_SUCCESS


def test_lookup_names_unknown_is_none_mapped_as_samba() -> None:
    ours = Lsa().with_handle(14, v.LOOKUP_NAMES_UNKNOWN_REQUEST)
    samba = lsat.LsarLookupNamesResponse(v.LOOKUP_NAMES_UNKNOWN_SAMBA)
    assert translated_sids(ours) == translated_sids(samba) == [(SidType.UNKNOWN, 0, -1)]
    assert domains(ours) == domains(samba) == []
    assert ours["ErrorCode"] == samba["ErrorCode"] == NtStatus.NONE_MAPPED


def lookup_names(lsa: Lsa, names: list[str], version: int = 1):
    """LsarLookupNames{,2,3} built as impacket's helpers build them."""
    request = {1: lsat.LsarLookupNames, 2: lsat.LsarLookupNames2,
               3: lsat.LsarLookupNames3}[version]()
    request["PolicyHandle"] = lsa.open()
    request["Count"] = len(names)
    for name in names:
        item = lsat.RPC_UNICODE_STRING()
        item["Data"] = name
        request["Names"].append(item)
    request["TranslatedSids"]["Sids"] = NULL
    request["LookupLevel"] = lsat.LSAP_LOOKUP_LEVEL.LsapLookupWksta
    return lsa.answer(request.opnum, request.getData())


@pytest.mark.parametrize(("name", "sid_type", "rid", "domain"), [
    ("Everyone", SidType.WELL_KNOWN_GROUP, 0, ("", "S-1-1")),
    ("CREATOR OWNER", SidType.WELL_KNOWN_GROUP, 0, ("", "S-1-3")),
    ("creator group", SidType.WELL_KNOWN_GROUP, 1, ("", "S-1-3")),
    ("NT AUTHORITY\\SYSTEM", SidType.WELL_KNOWN_GROUP, 18, ("NT AUTHORITY", "S-1-5")),
    ("nt authority\\authenticated users", SidType.WELL_KNOWN_GROUP, 11,
     ("NT AUTHORITY", "S-1-5")),
    ("BUILTIN\\Administrators", SidType.ALIAS, 544, ("BUILTIN", "S-1-5-32")),
    ("Users", SidType.ALIAS, 545, ("BUILTIN", "S-1-5-32")),
    ("BUILTIN\\Backup Operators", SidType.ALIAS, 551, ("BUILTIN", "S-1-5-32")),
    ("BUILTIN", SidType.DOMAIN, 0xFFFFFFFF, ("BUILTIN", "S-1-5-32")),
    ("bob", SidType.USER, 4242, ("Unix User", "S-1-22-1")),
    ("SMBCA\\bob", SidType.USER, 4242, ("Unix User", "S-1-22-1")),
    ("Unix User\\BOB", SidType.USER, 4242, ("Unix User", "S-1-22-1")),
])
def test_lookup_names_v1(name, sid_type, rid, domain) -> None:
    response = lookup_names(Lsa(), [name])
    assert response["ErrorCode"] == NtStatus.SUCCESS
    assert translated_sids(response) == [(sid_type, rid, 0)]
    assert domains(response) == [domain]


def test_lookup_names_the_account_domain() -> None:
    response = lookup_names(Lsa(), ["smbca"])
    sid = str(account_domain("SMBCA", "smbca").sid)
    assert translated_sids(response) == [(SidType.DOMAIN, 0xFFFFFFFF, 0)]
    assert domains(response) == [("SMBCA", sid)]


def test_lookup_names_some_not_mapped_shares_domains() -> None:
    response = lookup_names(Lsa(), ["Users", "nosuch", "BUILTIN\\Guests", "carol"], version=2)
    assert response["ErrorCode"] == STATUS_SOME_NOT_MAPPED
    assert response["MappedCount"] == 2
    assert [(e["Use"], e["RelativeId"], e["DomainIndex"], e["Flags"])
            for e in response["TranslatedSids"]["Sids"]] == [
        (SidType.ALIAS, 545, 0, 0), (SidType.UNKNOWN, 0, -1, 0), (SidType.ALIAS, 546, 0, 0),
        (SidType.UNKNOWN, 0, -1, 0)]  # carol has no uid: no SID of her own
    assert domains(response) == [("BUILTIN", "S-1-5-32")]


def test_lookup_names3_returns_whole_sids() -> None:
    response = lookup_names(Lsa(), ["Everyone", "bob", "nosuch"], version=3)
    assert response["ErrorCode"] == STATUS_SOME_NOT_MAPPED
    sids = response["TranslatedSids"]["Sids"]
    assert [e["Sid"].formatCanonical() for e in sids[:2]] == ["S-1-1-0", "S-1-22-1-4242"]
    assert (sids[2]["Use"], sids[2]["DomainIndex"]) == (SidType.UNKNOWN, -1)
    assert sids[2].fields["Sid"].fields["ReferentID"] == 0  # NULL


def test_lookup_names_zero_names_succeeds() -> None:
    response = lookup_names(Lsa(), [])
    assert (response["ErrorCode"], response["MappedCount"]) == (NtStatus.SUCCESS, 0)


def test_lookup_names_bad_level() -> None:
    lsa = Lsa()
    stub = bytearray(lsa.open() + v.LOOKUP_NAMES_EVERYONE_REQUEST[20:])
    stub[-8:-6] = (0).to_bytes(2, "little")  # LookupLevel 0
    assert lsa.answer(14, bytes(stub))["ErrorCode"] == NtStatus.INVALID_PARAMETER


def test_lookup_names4_needs_a_protected_binding() -> None:
    with pytest.raises(RpcFault) as refused:
        Lsa().raw(77, v.LOOKUP_NAMES4_REQUEST)
    assert refused.value.status == FaultStatus.RPC_S_ACCESS_DENIED
    signed = call_context(LSARPC_SYNTAX, auth_level=AuthLevel.PKT_INTEGRITY, rpc_identity=BOB)
    response = Lsa(signed).answer(77, v.LOOKUP_NAMES4_REQUEST)
    assert response["ErrorCode"] == NtStatus.SUCCESS
    assert response["TranslatedSids"]["Sids"][0]["Sid"].formatCanonical() == "S-1-1-0"


def test_truncated_request_faults_without_executing() -> None:
    with pytest.raises(RpcFault) as bad:
        Lsa().raw(14, v.LOOKUP_NAMES_EVERYONE_REQUEST[:40])
    assert bad.value.status == FaultStatus.RPC_X_BAD_STUB_DATA and bad.value.did_not_execute


def test_count_unlike_the_names_array_faults() -> None:
    lsa = Lsa()
    stub = bytearray(lsa.open() + v.LOOKUP_NAMES_EVERYONE_REQUEST[20:])
    stub[20:24] = (2).to_bytes(4, "little")  # Count 2, one name
    with pytest.raises(RpcFault) as bad:
        lsa.raw(14, bytes(stub))
    assert bad.value.status == FaultStatus.RPC_X_BAD_STUB_DATA


# -- LsarLookupSids (1, 2, 3) ------------------------------------------------------------


def test_lookup_sids_as_samba_answers() -> None:
    ours = Lsa().with_handle(15, v.LOOKUP_SIDS_THREE_REQUEST)
    samba = lsat.LsarLookupSidsResponse(v.LOOKUP_SIDS_THREE_SAMBA)
    assert names_of(ours) == names_of(samba) == [
        (SidType.WELL_KNOWN_GROUP, "Everyone", 0), (SidType.ALIAS, "Administrators", 1),
        (SidType.UNKNOWN, "S-1-5-21-1-2-3-4", -1)]
    assert domains(ours) == [("", "S-1-1"), ("BUILTIN", "S-1-5-32")]
    # Samba also lists the unknown SID's would-be domain, which no name refers to.
    assert domains(samba) == [*domains(ours), ("", "S-1-5-21-1-2-3")]
    assert ours["ErrorCode"] == samba["ErrorCode"] == STATUS_SOME_NOT_MAPPED


def test_lookup_sids_system() -> None:
    ours = Lsa().with_handle(15, v.LOOKUP_SIDS_SYSTEM_REQUEST)
    samba = lsat.LsarLookupSidsResponse(v.LOOKUP_SIDS_SYSTEM_SAMBA)
    assert names_of(ours) == names_of(samba) == [(SidType.WELL_KNOWN_GROUP, "SYSTEM", 0)]
    # Samba spells the authority "NT Authority"; Windows (and we) "NT AUTHORITY".
    assert [(n.upper(), s) for n, s in domains(samba)] == domains(ours) == \
        [("NT AUTHORITY", "S-1-5")]


def test_lookup_sids_of_file_owners_from_smbcacls() -> None:
    """smbcacls lists a file owned by uid 0 / gid 0: names from the system's databases."""
    names = directory(system=True)
    lsa = Lsa()
    lsa.interface = lsarpc_interface(names.names, names.policy, ContextHandles(7))
    response = lsa.with_handle(15, v.LOOKUP_SIDS_UNIX_USER_REQUEST)
    samba = lsat.LsarLookupSidsResponse(v.LOOKUP_SIDS_UNIX_USER_SAMBA)
    assert names_of(response) == names_of(samba)[:1] == [(SidType.USER, "root", 0)]
    assert domains(response) == domains(samba) == [("Unix User", "S-1-22-1")]


def lookup_sids(lsa: Lsa, sids: list[str], version: int = 2):
    return lsa.answer(*_sids_request(lsa, sids, version))


def _sids_request(lsa: Lsa, sids: list[str], version: int):
    request = {1: lsat.LsarLookupSids, 2: lsat.LsarLookupSids2, 3: lsat.LsarLookupSids3}[version]()
    if version != 3:
        request["PolicyHandle"] = lsa.open()
    request["SidEnumBuffer"]["Entries"] = len(sids)
    for text in sids:
        info = lsat.LSAPR_SID_INFORMATION()
        info["Sid"].fromCanonical(text)
        request["SidEnumBuffer"]["SidInfo"].append(info)
    request["TranslatedNames"]["Names"] = NULL
    request["LookupLevel"] = lsat.LSAP_LOOKUP_LEVEL.LsapLookupWksta
    return request.opnum, request.getData()


def test_lookup_sids2_local_users_and_domains() -> None:
    response = lookup_sids(Lsa(), ["S-1-22-1-4242", "S-1-5-32", "S-1-22-1-4243"])
    assert response["ErrorCode"] == STATUS_SOME_NOT_MAPPED
    assert names_of(response) == [(SidType.USER, "bob", 0), (SidType.DOMAIN, "BUILTIN", 1),
                                  (SidType.UNKNOWN, "S-1-22-1-4243", -1)]
    assert domains(response) == [("Unix User", "S-1-22-1"), ("BUILTIN", "S-1-5-32")]


def test_lookup_sids_none_mapped() -> None:
    response = lookup_sids(Lsa(), ["S-1-5-21-1-2-3-4"])
    assert response["ErrorCode"] == NtStatus.NONE_MAPPED
    assert names_of(response) == [(SidType.UNKNOWN, "S-1-5-21-1-2-3-4", -1)]


def test_lookup_sids_null_sid_pointer_is_invalid_parameter() -> None:
    lsa = Lsa()
    opnum, stub = _sids_request(lsa, ["S-1-1-0"], 1)
    request = lsat.LsarLookupSids(stub)
    request["SidEnumBuffer"]["SidInfo"][0]["Sid"] = NULL
    assert lsa.answer(15, request.getData())["ErrorCode"] == NtStatus.INVALID_PARAMETER


def test_lookup_sids3_needs_a_protected_binding() -> None:
    opnum, stub = _sids_request(Lsa(), ["S-1-1-0"], 3)
    with pytest.raises(RpcFault):
        Lsa().raw(opnum, stub)
    sealed = call_context(LSARPC_SYNTAX, auth_level=AuthLevel.PKT_PRIVACY, rpc_identity=BOB)
    assert names_of(Lsa(sealed).answer(opnum, stub)) == [(SidType.WELL_KNOWN_GROUP, "Everyone", 0)]


# -- LsarQueryInformationPolicy (1, 2), LsarGetUserName ---------------------------------


def test_query_needs_view_local_information() -> None:
    """smbcacls' policy (POLICY_LOOKUP_NAMES only) may translate but not query."""
    lsa = Lsa()
    assert lsa.with_handle(7, v.QUERY_POLICY_PRIMARY_REQUEST)["ErrorCode"] == \
        NtStatus.ACCESS_DENIED


def query(request: bytes, opnum: int = 7):
    lsa = Lsa()
    return lsa.with_handle(opnum, request, lsa.open(v.OPEN_POLICY2_REQUEST))


def policy_info(response, arm: str):
    return response.fields["PolicyInformation"].fields["Data"][arm]


def test_query_primary_domain_as_samba_answers() -> None:
    ours = query(v.QUERY_POLICY_PRIMARY_REQUEST)
    samba = lsad.LsarQueryInformationPolicyResponse(v.QUERY_POLICY_PRIMARY_SAMBA)
    for response in (ours, samba):
        info = policy_info(response, "PolicyPrimaryDomainInfo")
        assert (info["Name"], info.fields["Sid"].fields["ReferentID"]) == ("WORKGROUP", 0)
        assert response["ErrorCode"] == NtStatus.SUCCESS


def test_query_account_domain() -> None:
    info = policy_info(query(v.QUERY_POLICY_ACCOUNT_REQUEST), "PolicyAccountDomainInfo")
    assert info["DomainName"] == "SMBCA"
    assert info["DomainSid"].formatCanonical() == str(account_domain("SMBCA", "smbca").sid)


def test_query_dns_domain_with_policy2() -> None:
    response = query(v.QUERY_POLICY2_DNS_REQUEST, 46)
    info = policy_info(response, "PolicyDnsDomainInfo")
    assert (info["Name"], info["DnsDomainName"], response["ErrorCode"]) == \
        ("WORKGROUP", "", NtStatus.SUCCESS)


def test_query_unknown_class() -> None:
    stub = bytes(20) + (1).to_bytes(2, "little")  # PolicyAuditLogInformation
    response = query(stub)
    assert response["ErrorCode"] == NtStatus.INVALID_PARAMETER
    assert response.fields["PolicyInformation"].fields["ReferentID"] == 0


def test_get_user_name_as_samba_answers() -> None:
    stub = Lsa().raw(45, v.GET_USER_NAME_REQUEST)
    ours = LsarGetUserNameResponse(stub)
    samba = LsarGetUserNameResponse(v.GET_USER_NAME_SAMBA)
    assert (ours["UserName"], ours["DomainName"]) == ("bob", "SMBCA")
    assert (samba["UserName"], samba["DomainName"]) == ("smbcatest", "SMBDPEER")


# -- through a pipe, with impacket's client helpers ------------------------------------------


def test_impacket_client_over_the_lsarpc_pipe() -> None:
    pipe = open_pipe("lsarpc", environment(names=directory()), Session(BOB))
    client = bound_client(pipe, lsat.MSRPC_UUID_LSAT)
    handle = lsad.hLsarOpenPolicy2(client)["PolicyHandle"]
    found = lsat.hLsarLookupNames3(client, handle, ["BUILTIN\\Administrators"])
    assert found["TranslatedSids"]["Sids"][0]["Sid"].formatCanonical() == "S-1-5-32-544"
    names = lsat.hLsarLookupSids2(client, handle, ["S-1-3-0"])
    assert names["TranslatedNames"]["Names"][0]["Name"] == "CREATOR OWNER"
    lsad.hLsarClose(client, handle)
    pipe.close()


# -- what smbtorture's rpc.samba3.lsa and rpc.lsalookup ask besides lookups ---------------


@pytest.mark.parametrize(("level", "arm", "field", "value"), [
    (2, "PolicyAuditEventsInfo", "AuditingMode", 0),
    (6, "PolicyServerRoleInfo", "LsaServerRole", 3),  # PolicyServerRolePrimary
])
def test_query_audit_events_and_server_role(level, arm, field, value) -> None:
    response = query(bytes(20) + level.to_bytes(2, "little"))
    assert response["ErrorCode"] == NtStatus.SUCCESS
    assert policy_info(response, arm)[field] == value


def test_no_trusted_domains() -> None:
    lsa = Lsa()
    request = lsad.LsarEnumerateTrustedDomains()
    request["PolicyHandle"] = lsa.open(v.OPEN_POLICY2_REQUEST)
    request["EnumerationContext"] = 0
    request["PreferedMaximumLength"] = 0xFFFFFFFF
    response = lsa.answer(13, request.getData())
    assert response["ErrorCode"] == 0x8000001A  # STATUS_NO_MORE_ENTRIES
    assert response["EnumerationBuffer"]["Entries"] == 0
    assert response["EnumerationContext"] == 0xFFFFFFFF  # past the input, so loops end
