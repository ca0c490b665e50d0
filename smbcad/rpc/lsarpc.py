"""[MS-LSAD] / [MS-LSAT] lsarpc: the policy handle and name <-> SID lookups (STYLE rule 11).

Types first, then calls in opnum order, then ``OPNUMS`` and the
``{opnum: handler}`` registration.  Stubs use impacket's ``lsad`` / ``lsat``
types, which follow the IDL ([MS-LSAD] 6, [MS-LSAT] 6).

What clients call: ``smbcacls`` opens a policy with LsarOpenPolicy and
translates with LsarLookupNames / LsarLookupSids (level 1); ``rpcclient``
also uses LsarOpenPolicy2, LsarQueryInformationPolicy (classes 3 and 5, on
start-up), the v2/v3 lookups and LsarGetUserName; smbtorture's lookup tests
list trusted domains (LsarEnumerateTrustedDomains: none); Windows' ACL editor and
``icacls`` use LsarOpenPolicy2, LsarLookupSids2 and LsarLookupNames2/3.
LsarLookupNames4 and LsarLookupSids3 take no policy handle; Windows and
Samba serve them only over an authenticated, integrity-protected binding
(Netlogon's secure channel there), and so do we.  Other opnums fault with
nca_s_op_rng_error.

Failures the spec gives a status for (bad handle, access, unknown names)
return that NTSTATUS with empty out parameters; undecodable stubs and IDL
range violations fault with RPC_X_BAD_STUB_DATA.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from impacket.dcerpc.v5 import lsad, lsat
from impacket.dcerpc.v5.dtypes import NULL

from smbcad.proto.status import NtStatus
from smbca.rpc.dcerpc import AuthLevel, CallContext, FaultStatus, RpcFault, RpcInterface, SyntaxId
from smbcad.proto.fscc.security import Sid
from smbcad.rpc import idl_fixes
from smbcad.rpc.handles import (ContextHandles, HandleError, fill_close, fill_open, grant,
                                 require)
from smbcad.rpc.names import ResolverChain
from smbcad.rpc.stubs import (bad_stub, decode, encode, handle_of, is_null, sid_from_ndr,
                              sid_to_ndr, unicode_text)
from smbcad.rpc.wellknown import Domain, SidType, Translation

# -- types ------------------------------------------------------------------

LSARPC_SYNTAX = SyntaxId.of("12345778-1234-abcd-ef00-0123456789ab", 0, 0)
"""lsarpc interface UUID and version 0.0 ([MS-LSAD] 1.9, [MS-LSAT] 1.9)."""

# [MS-LSAD] 2.2.1.1.2 ACCESS_MASK for policy objects
POLICY_VIEW_LOCAL_INFORMATION = 0x00000001
POLICY_VIEW_AUDIT_INFORMATION = 0x00000002
POLICY_GET_PRIVATE_INFORMATION = 0x00000004
POLICY_LOOKUP_NAMES = 0x00000800
READ_CONTROL = 0x00020000
POLICY_GENERIC = (0x00020006, 0x000207F8, 0x00020801, 0x000F0FFF)
"""GENERIC_READ, _WRITE, _EXECUTE and _ALL on a policy ([MS-LSAD] 2.2.1.1.2)."""
POLICY_USER_RIGHTS = (POLICY_VIEW_LOCAL_INFORMATION | POLICY_VIEW_AUDIT_INFORMATION
                      | POLICY_GET_PRIVATE_INFORMATION | POLICY_LOOKUP_NAMES | READ_CONTROL)
"""Read and execute: what Samba's policy descriptor gives Everyone.  Nothing here
writes policy, so every caller gets these and no more."""

# [MS-LSAD] 2.2.4.1 POLICY_INFORMATION_CLASS values answered
POLICY_AUDIT_EVENTS_INFORMATION = 2
POLICY_PRIMARY_DOMAIN_INFORMATION = 3
POLICY_ACCOUNT_DOMAIN_INFORMATION = 5
POLICY_LSA_SERVER_ROLE_INFORMATION = 6
POLICY_DNS_DOMAIN_INFORMATION = 12
POLICY_DNS_DOMAIN_INFORMATION_INT = 13
POLICY_LOCAL_ACCOUNT_DOMAIN_INFORMATION = 14

STATUS_SOME_NOT_MAPPED = 0x00000107
"""[MS-ERREF] 2.3.1 STATUS_SOME_NOT_MAPPED: a success code."""
STATUS_NO_MORE_ENTRIES = 0x8000001A
MAX_LOOKUP_NAMES = 1000
MAX_LOOKUP_SIDS = 20480
"""IDL ranges of LsarLookupNames* Count and LSAPR_SID_ENUM_BUFFER Entries."""
LOOKUP_LEVELS = range(1, 7)
"""LSAP_LOOKUP_LEVEL values a lookup accepts ([MS-LSAT] 2.2.16); others are
STATUS_INVALID_PARAMETER, as Samba answers."""
REFERENCED_DOMAINS_MAX = 32
"""LSAPR_REFERENCED_DOMAIN_LIST MaxEntries, as Samba sends (the spec says it is ignored)."""
_POLICY = b"lsap"


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """What LsarQueryInformationPolicy reports about this server ([MS-LSAD] 3.1.1.1).

    ``account_domain`` is the server's own SAM domain; ``primary_domain`` the
    workgroup it belongs to (no SID until it joins a domain, issue 12 item 1).
    """

    account_domain: Domain
    primary_domain: str


def caller_identity(call: CallContext) -> Any:
    """Who is calling: the DCE/RPC authentication if any, else the pipe's SMB session."""
    if call.identity is not None:
        return call.identity
    return getattr(call.transport, "identity", None)


def is_anonymous(identity: Any) -> bool:
    return identity is None or bool(getattr(identity, "is_anonymous", False))


def refuse_anonymous(call: CallContext) -> None:
    """Windows' default since XP: no SID/name translation for anonymous callers."""
    if is_anonymous(caller_identity(call)):
        raise HandleError(NtStatus.ACCESS_DENIED, "anonymous caller")


class _ReferencedDomains:
    """LSAPR_REFERENCED_DOMAIN_LIST being built: each domain once, in first-use order."""

    def __init__(self) -> None:
        self.domains: list[Domain] = []

    def index(self, domain: Domain) -> int:
        for position, known in enumerate(self.domains):
            if known.sid == domain.sid:
                return position
        self.domains.append(domain)
        return len(self.domains) - 1

    def fill(self, pointer: Any) -> None:
        """The [out] PLSAPR_REFERENCED_DOMAIN_LIST: always a list, maybe empty (as Samba)."""
        listing = pointer["Data"] if "Data" in pointer.fields else pointer
        listing["Entries"] = len(self.domains)
        listing["MaxEntries"] = REFERENCED_DOMAINS_MAX
        if not self.domains:
            listing["Domains"] = NULL
            return
        for domain in self.domains:
            entry = lsad.LSAPR_TRUST_INFORMATION()
            entry["Name"] = domain.name
            entry["Sid"] = sid_to_ndr(domain.sid)
            listing["Domains"].append(entry)


def _lookup_status(mapped: int, total: int) -> int:
    """SUCCESS, STATUS_SOME_NOT_MAPPED or STATUS_NONE_MAPPED ([MS-LSAT] 3.1.4.5, 3.1.4.9)."""
    if total == 0 or mapped == total:
        return NtStatus.SUCCESS
    return STATUS_SOME_NOT_MAPPED if mapped else NtStatus.NONE_MAPPED


def _names_in(request: Any) -> list[str | None]:
    count = request["Count"]
    if count > MAX_LOOKUP_NAMES or len(request["Names"]) != count:
        raise bad_stub("Count outside 0..1000 or unlike the Names array")
    return [unicode_text(name) for name in request["Names"]]


def _sids_in(buffer: Any) -> list[Sid | None]:
    entries = buffer["Entries"]
    infos = [] if is_null(buffer.fields["SidInfo"]) else list(buffer["SidInfo"])
    if entries > MAX_LOOKUP_SIDS or len(infos) != entries:
        raise bad_stub("Entries outside 0..20480 or unlike the SidInfo array")
    return [None if is_null(info.fields["Sid"]) else sid_from_ndr(info["Sid"]) for info in infos]


# -- calls, in opnum order ------------------------------------------------


class LsaServer:
    """The lsarpc manager routines of one pipe: its handles, the resolver and the policy."""

    def __init__(self, names: ResolverChain, policy: PolicyInfo,
                 handles: ContextHandles) -> None:
        self._names = names
        self._policy = policy
        self._handles = handles

    # 0
    def lsar_close(self, stub: bytes, call: CallContext) -> bytes:
        """LsarClose, opnum 0 ([MS-LSAD] 3.1.4.9.4)."""
        request = decode(lsad.LsarClose, stub)
        response = lsad.LsarCloseResponse()
        fill_close(response, "ObjectHandle", self._handles, handle_of(request["ObjectHandle"]),
                   _POLICY)
        return encode(response)

    # 6 and 44
    def lsar_open_policy(self, stub: bytes, call: CallContext) -> bytes:
        """LsarOpenPolicy, opnum 6 ([MS-LSAD] 3.1.4.4.2): LsarOpenPolicy2 without a name."""
        return self._open_policy(decode(idl_fixes.LsarOpenPolicy, stub),
                                 lsad.LsarOpenPolicyResponse(), call)

    def lsar_open_policy2(self, stub: bytes, call: CallContext) -> bytes:
        """LsarOpenPolicy2, opnum 44 ([MS-LSAD] 3.1.4.4.1); SystemName is ignored."""
        return self._open_policy(decode(lsad.LsarOpenPolicy2, stub),
                                 lsad.LsarOpenPolicy2Response(), call)

    def _open_policy(self, request: Any, response: Any, call: CallContext) -> bytes:
        def make() -> bytes:
            refuse_anonymous(call)
            granted = grant(request["DesiredAccess"], POLICY_GENERIC, POLICY_USER_RIGHTS)
            return self._handles.create(_POLICY, granted)
        fill_open(response, "PolicyHandle", make)
        return encode(response)

    # 7 and 46
    def lsar_query_information_policy(self, stub: bytes, call: CallContext) -> bytes:
        """LsarQueryInformationPolicy, opnum 7 ([MS-LSAD] 3.1.4.4.4)."""
        request = decode(lsad.LsarQueryInformationPolicy, stub)
        return self._query_policy(request, lsad.LsarQueryInformationPolicyResponse())

    def lsar_query_information_policy2(self, stub: bytes, call: CallContext) -> bytes:
        """LsarQueryInformationPolicy2, opnum 46 ([MS-LSAD] 3.1.4.4.3): the same answers."""
        request = decode(lsad.LsarQueryInformationPolicy2, stub)
        return self._query_policy(request, lsad.LsarQueryInformationPolicy2Response())

    def _query_policy(self, request: Any, response: Any) -> bytes:
        level = request["InformationClass"]
        try:
            entry = self._handles.get(handle_of(request["PolicyHandle"]), _POLICY)
            if level not in _POLICY_CLASSES:
                raise HandleError(NtStatus.INVALID_PARAMETER, f"information class {level}")
            right, build = _POLICY_CLASSES[level]
            require(entry, right)
        except HandleError as error:
            response["PolicyInformation"] = NULL
            response["ErrorCode"] = error.status
            return encode(response)
        union = response["PolicyInformation"]
        union["tag"] = level
        build(union, self._policy)
        response["ErrorCode"] = NtStatus.SUCCESS
        return encode(response)

    # 13
    def lsar_enumerate_trusted_domains(self, stub: bytes, call: CallContext) -> bytes:
        """LsarEnumerateTrustedDomains, opnum 13 ([MS-LSAD] 3.1.4.7.8).

        A server outside any domain trusts none: STATUS_NO_MORE_ENTRIES, and an
        EnumerationContext past the input one (0xFFFFFFFF, as Samba) so that
        clients looping on it stop.
        """
        request = decode(lsad.LsarEnumerateTrustedDomains, stub)
        response = lsad.LsarEnumerateTrustedDomainsResponse()
        response["EnumerationBuffer"]["Entries"] = 0
        response["EnumerationBuffer"]["Information"] = NULL
        try:
            entry = self._handles.get(handle_of(request["PolicyHandle"]), _POLICY)
            require(entry, POLICY_VIEW_LOCAL_INFORMATION)
        except HandleError as error:
            response["EnumerationContext"] = request["EnumerationContext"]
            response["ErrorCode"] = error.status
            return encode(response)
        response["EnumerationContext"] = 0xFFFFFFFF
        response["ErrorCode"] = STATUS_NO_MORE_ENTRIES
        return encode(response)

    # 14, 58, 68, 77
    def lsar_lookup_names(self, stub: bytes, call: CallContext) -> bytes:
        """LsarLookupNames, opnum 14 ([MS-LSAT] 3.1.4.8)."""
        return self._lookup_names(decode(lsat.LsarLookupNames, stub),
                                  lsat.LsarLookupNamesResponse(), _fill_sid, call)

    def lsar_lookup_names2(self, stub: bytes, call: CallContext) -> bytes:
        """LsarLookupNames2, opnum 58 ([MS-LSAT] 3.1.4.7)."""
        return self._lookup_names(decode(lsat.LsarLookupNames2, stub),
                                  lsat.LsarLookupNames2Response(), _fill_sid_ex, call)

    def lsar_lookup_names3(self, stub: bytes, call: CallContext) -> bytes:
        """LsarLookupNames3, opnum 68 ([MS-LSAT] 3.1.4.6)."""
        return self._lookup_names(decode(lsat.LsarLookupNames3, stub),
                                  lsat.LsarLookupNames3Response(), _fill_sid_ex2, call)

    def lsar_lookup_names4(self, stub: bytes, call: CallContext) -> bytes:
        """LsarLookupNames4, opnum 77 ([MS-LSAT] 3.1.4.5): no handle, secure binding only."""
        request = decode(lsat.LsarLookupNames4, stub)
        _require_protected_binding(call)
        return self._lookup_names(request, lsat.LsarLookupNames4Response(), _fill_sid_ex2, call)

    def _lookup_names(self, request: Any, response: Any, fill: "_Filler", call) -> bytes:
        names = _names_in(request)
        try:
            self._lookup_allowed(request)
        except HandleError as error:
            return _empty_lookup(response, "TranslatedSids", "Sids", error.status)
        referenced = _ReferencedDomains()
        found = [self._names.translate_name("BUILTIN" if name is None else name)
                 for name in names]
        out = response["TranslatedSids"]
        out["Entries"] = len(found)
        if not found:
            out["Sids"] = NULL
        for translation in found:
            out["Sids"].append(fill(translation, referenced))
        referenced.fill(response["ReferencedDomains"])
        mapped = sum(1 for translation in found if translation is not None)
        response["MappedCount"] = mapped
        response["ErrorCode"] = _lookup_status(mapped, len(found))
        return encode(response)

    # 15, 57, 76
    def lsar_lookup_sids(self, stub: bytes, call: CallContext) -> bytes:
        """LsarLookupSids, opnum 15 ([MS-LSAT] 3.1.4.11)."""
        return self._lookup_sids(decode(lsat.LsarLookupSids, stub),
                                 lsat.LsarLookupSidsResponse(), lsat.LSAPR_TRANSLATED_NAME)

    def lsar_lookup_sids2(self, stub: bytes, call: CallContext) -> bytes:
        """LsarLookupSids2, opnum 57 ([MS-LSAT] 3.1.4.10)."""
        return self._lookup_sids(decode(lsat.LsarLookupSids2, stub),
                                 lsat.LsarLookupSids2Response(), lsat.LSAPR_TRANSLATED_NAME_EX)

    def lsar_lookup_sids3(self, stub: bytes, call: CallContext) -> bytes:
        """LsarLookupSids3, opnum 76 ([MS-LSAT] 3.1.4.9): no handle, secure binding only."""
        request = decode(lsat.LsarLookupSids3, stub)
        _require_protected_binding(call)
        return self._lookup_sids(request, lsat.LsarLookupSids3Response(),
                                 lsat.LSAPR_TRANSLATED_NAME_EX)

    def _lookup_sids(self, request: Any, response: Any, entry_type: type) -> bytes:
        sids = _sids_in(request["SidEnumBuffer"])
        try:
            self._lookup_allowed(request)
            if any(sid is None for sid in sids):
                raise HandleError(NtStatus.INVALID_PARAMETER, "NULL SID in the lookup")
        except HandleError as error:
            return _empty_lookup(response, "TranslatedNames", "Names", error.status)
        referenced = _ReferencedDomains()
        out = response["TranslatedNames"]
        out["Entries"] = len(sids)
        if not sids:
            out["Names"] = NULL
        mapped = 0
        for sid in sids:
            translation = self._names.lookup_sid(sid)
            entry = entry_type()
            if translation is None:
                # Samba's answer (Windows varies): the SID's string form, no domain.
                entry["Use"] = SidType.UNKNOWN
                entry["Name"] = str(sid)
                entry["DomainIndex"] = -1
            else:
                mapped += 1
                entry["Use"] = translation.sid_type
                entry["Name"] = translation.name
                entry["DomainIndex"] = referenced.index(translation.domain)
            if "Flags" in entry.fields:
                entry["Flags"] = 0
            out["Names"].append(entry)
        referenced.fill(response["ReferencedDomains"])
        response["MappedCount"] = mapped
        response["ErrorCode"] = _lookup_status(mapped, len(sids))
        return encode(response)

    def _lookup_allowed(self, request: Any) -> None:
        """The policy handle (when the call has one) with POLICY_LOOKUP_NAMES, a valid level."""
        if "PolicyHandle" in request.fields:
            entry = self._handles.get(handle_of(request["PolicyHandle"]), _POLICY)
            require(entry, POLICY_LOOKUP_NAMES)
        if request["LookupLevel"] not in LOOKUP_LEVELS:
            raise HandleError(NtStatus.INVALID_PARAMETER, "LookupLevel")

    # 45
    def lsar_get_user_name(self, stub: bytes, call: CallContext) -> bytes:
        """LsarGetUserName, opnum 45 ([MS-LSAT] 3.1.4.4): the caller's account and domain."""
        request = decode(idl_fixes.LsarGetUserName, stub)
        identity = caller_identity(call)
        response = idl_fixes.LsarGetUserNameResponse()
        if is_anonymous(identity):
            user, domain = "ANONYMOUS LOGON", "NT AUTHORITY"
        else:
            found = self._names.translate_name(identity.user)
            user = found.name if found is not None else identity.user
            domain = self._policy.account_domain.name
        response["UserName"] = user
        if is_null(request.fields["DomainName"]):
            response["DomainName"] = NULL  # the caller did not ask for it
        else:
            response.fields["DomainName"].fields["Data"]["Data"] = domain
        response["ErrorCode"] = NtStatus.SUCCESS
        return encode(response)


_Filler = Callable[[Translation | None, _ReferencedDomains], Any]


def _fill_sid(found: Translation | None, referenced: _ReferencedDomains) -> Any:
    """LSA_TRANSLATED_SID ([MS-LSAT] 2.2.14): unmapped is Use 8, RID 0, index -1."""
    entry = lsat.LSA_TRANSLATED_SID()
    _fill_rid(entry, found, referenced)
    return entry


def _fill_sid_ex(found: Translation | None, referenced: _ReferencedDomains) -> Any:
    """LSAPR_TRANSLATED_SID_EX ([MS-LSAT] 2.2.23)."""
    entry = lsat.LSAPR_TRANSLATED_SID_EX()
    _fill_rid(entry, found, referenced)
    entry["Flags"] = 0
    return entry


def _fill_rid(entry: Any, found: Translation | None, referenced: _ReferencedDomains) -> None:
    if found is None:
        entry["Use"], entry["RelativeId"], entry["DomainIndex"] = SidType.UNKNOWN, 0, -1
    else:
        entry["Use"] = found.sid_type
        entry["RelativeId"] = found.rid
        entry["DomainIndex"] = referenced.index(found.domain)


def _fill_sid_ex2(found: Translation | None, referenced: _ReferencedDomains) -> Any:
    """LSAPR_TRANSLATED_SID_EX2 ([MS-LSAT] 2.2.25): the whole SID, NULL when unmapped."""
    entry = lsat.LSAPR_TRANSLATED_SID_EX2()
    if found is None:
        entry["Use"], entry["Sid"], entry["DomainIndex"] = SidType.UNKNOWN, NULL, -1
    else:
        entry["Use"] = found.sid_type
        entry["Sid"] = sid_to_ndr(found.sid)
        entry["DomainIndex"] = referenced.index(found.domain)
    entry["Flags"] = 0
    return entry


def _empty_lookup(response: Any, field: str, array: str, status: int) -> bytes:
    response["ReferencedDomains"] = NULL
    response[field]["Entries"] = 0
    response[field][array] = NULL
    response["MappedCount"] = 0
    response["ErrorCode"] = status
    return encode(response)


def _require_protected_binding(call: CallContext) -> None:
    """LsarLookupNames4 / LsarLookupSids3 need an authenticated binding with integrity.

    Windows and Samba require Netlogon's secure channel and fault
    access_denied otherwise; we have no secure channel, so a signed or sealed
    binding of a non-anonymous user is the nearest equivalent.
    """
    if call.auth_level < AuthLevel.PKT_INTEGRITY or is_anonymous(call.identity):
        raise RpcFault(FaultStatus.RPC_S_ACCESS_DENIED, "lookup without a protected binding")


def _audit_events(union: Any, policy: PolicyInfo) -> None:
    info = union["PolicyAuditEventsInfo"]
    info["AuditingMode"] = 0  # no auditing
    info["EventAuditingOptions"] = NULL
    info["MaximumAuditEventCount"] = 0


def _server_role(union: Any, policy: PolicyInfo) -> None:
    union["PolicyServerRoleInfo"]["LsaServerRole"] = 3  # PolicyServerRolePrimary: not a BDC


def _primary_domain(union: Any, policy: PolicyInfo) -> None:
    info = union["PolicyPrimaryDomainInfo"]
    info["Name"] = policy.primary_domain
    info["Sid"] = NULL  # a workgroup member: no domain SID


def _account_domain(union: Any, policy: PolicyInfo) -> None:
    arm = "PolicyAccountDomainInfo" if union["tag"] == POLICY_ACCOUNT_DOMAIN_INFORMATION \
        else "PolicyLocalAccountDomainInfo"
    info = union[arm]
    info["DomainName"] = policy.account_domain.name
    info["DomainSid"] = sid_to_ndr(policy.account_domain.sid)


def _dns_domain(union: Any, policy: PolicyInfo) -> None:
    arm = "PolicyDnsDomainInfo" if union["tag"] == POLICY_DNS_DOMAIN_INFORMATION \
        else "PolicyDnsDomainInfoInt"
    info = union[arm]
    info["Name"] = policy.primary_domain
    info["DnsDomainName"] = ""
    info["DnsForestName"] = ""
    info["DomainGuid"] = bytes(16)
    info["Sid"] = NULL


_POLICY_CLASSES: Mapping[int, tuple[int, Callable[[Any, PolicyInfo], None]]] = MappingProxyType({
    POLICY_AUDIT_EVENTS_INFORMATION: (POLICY_VIEW_AUDIT_INFORMATION, _audit_events),
    POLICY_PRIMARY_DOMAIN_INFORMATION: (POLICY_VIEW_LOCAL_INFORMATION, _primary_domain),
    POLICY_ACCOUNT_DOMAIN_INFORMATION: (POLICY_VIEW_LOCAL_INFORMATION, _account_domain),
    POLICY_LSA_SERVER_ROLE_INFORMATION: (POLICY_VIEW_LOCAL_INFORMATION, _server_role),
    POLICY_DNS_DOMAIN_INFORMATION: (POLICY_VIEW_LOCAL_INFORMATION, _dns_domain),
    POLICY_DNS_DOMAIN_INFORMATION_INT: (POLICY_VIEW_LOCAL_INFORMATION, _dns_domain),
    POLICY_LOCAL_ACCOUNT_DOMAIN_INFORMATION: (POLICY_VIEW_LOCAL_INFORMATION, _account_domain),
})
"""Information classes answered ([MS-LSAD] 2.2.4.2): the right each needs
(3.1.4.4.4) and how to fill its arm."""


# -- opnum table and registration --------------------------------------------

OPNUMS: Mapping[int, tuple[type, type]] = MappingProxyType({
    0: (lsad.LsarClose, lsad.LsarCloseResponse),
    6: (idl_fixes.LsarOpenPolicy, lsad.LsarOpenPolicyResponse),
    7: (lsad.LsarQueryInformationPolicy, lsad.LsarQueryInformationPolicyResponse),
    13: (lsad.LsarEnumerateTrustedDomains, lsad.LsarEnumerateTrustedDomainsResponse),
    14: (lsat.LsarLookupNames, lsat.LsarLookupNamesResponse),
    15: (lsat.LsarLookupSids, lsat.LsarLookupSidsResponse),
    44: (lsad.LsarOpenPolicy2, lsad.LsarOpenPolicy2Response),
    45: (idl_fixes.LsarGetUserName, idl_fixes.LsarGetUserNameResponse),
    46: (lsad.LsarQueryInformationPolicy2, lsad.LsarQueryInformationPolicy2Response),
    57: (lsat.LsarLookupSids2, lsat.LsarLookupSids2Response),
    58: (lsat.LsarLookupNames2, lsat.LsarLookupNames2Response),
    68: (lsat.LsarLookupNames3, lsat.LsarLookupNames3Response),
    76: (lsat.LsarLookupSids3, lsat.LsarLookupSids3Response),
    77: (lsat.LsarLookupNames4, lsat.LsarLookupNames4Response),
})
"""The calls implemented here and their impacket [in]/[out] types."""


def lsarpc_interface(names: ResolverChain, policy: PolicyInfo,
                     handles: ContextHandles) -> RpcInterface:
    """The lsarpc interface of one pipe for ``RpcConnection``: ``{opnum: handler}``."""
    server = LsaServer(names, policy, handles)
    return RpcInterface("lsarpc", LSARPC_SYNTAX, {
        0: server.lsar_close,
        6: server.lsar_open_policy,
        7: server.lsar_query_information_policy,
        13: server.lsar_enumerate_trusted_domains,
        14: server.lsar_lookup_names,
        15: server.lsar_lookup_sids,
        44: server.lsar_open_policy2,
        45: server.lsar_get_user_name,
        46: server.lsar_query_information_policy2,
        57: server.lsar_lookup_sids2,
        58: server.lsar_lookup_names2,
        68: server.lsar_lookup_names3,
        76: server.lsar_lookup_sids3,
        77: server.lsar_lookup_names4,
    })
