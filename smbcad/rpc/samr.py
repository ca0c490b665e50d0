"""[MS-SAMR] samr: the domain and name lookups ACL editors use (STYLE rule 11).

Types first, then calls in opnum order, then ``OPNUMS`` and the
``{opnum: handler}`` registration.  Stubs use impacket's ``samr`` types
([MS-SAMR] 6), except SamrCloseHandle (``idl_fixes``).

The SAM of this server holds two domains ([MS-SAMR] 3.1.1.1): the account
domain (``names.account_domain``: the server's name, a SID both nodes of a
pair derive alike) and Builtin with its aliases.  Local users are not SAM
accounts: their SIDs are the Unix ones of ``names`` and LSA translates
them; the account domain has no accounts until domain membership (issue 12
items 1-4) brings a real one.  ``rpcclient``'s ``enumdomains``,
``samlookupnames`` and ``samlookuprids`` and the Windows object picker use
the calls below; every other opnum faults with nca_s_op_rng_error.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from impacket.dcerpc.v5 import samr
from impacket.dcerpc.v5.dtypes import NULL, ULONG

from smbcad.proto.status import NtStatus
from smbca.rpc.dcerpc import CallContext, RpcInterface, SyntaxId
from smbcad.rpc import idl_fixes
from smbcad.rpc.handles import (ContextHandles, HandleError, fill_close, fill_open, grant,
                                 require)
from smbcad.rpc.lsarpc import STATUS_SOME_NOT_MAPPED, refuse_anonymous
from smbcad.rpc.stubs import decode, encode, handle_of, sid_from_ndr, sid_to_ndr, unicode_text
from smbcad.rpc.wellknown import BUILTIN, BUILTIN_ALIASES, SAMR_BUILTIN_NAME, Domain, SidType

# -- types ------------------------------------------------------------------

SAMR_SYNTAX = SyntaxId.of("12345778-1234-abcd-ef00-0123456789ac", 1, 0)
"""samr interface UUID and version 1.0 ([MS-SAMR] 1.9)."""

# [MS-SAMR] 2.2.1.3 server and 2.2.1.4 domain object rights
SAM_SERVER_CONNECT = 0x00000001
SAM_SERVER_ENUMERATE_DOMAINS = 0x00000010
SAM_SERVER_LOOKUP_DOMAIN = 0x00000020
DOMAIN_READ_PASSWORD_PARAMETERS = 0x00000001
DOMAIN_READ_OTHER_PARAMETERS = 0x00000004
DOMAIN_GET_ALIAS_MEMBERSHIP = 0x00000080
DOMAIN_LIST_ACCOUNTS = 0x00000100
DOMAIN_LOOKUP = 0x00000200
READ_CONTROL = 0x00020000
SERVER_GENERIC = (0x00020010, 0x0002000E, 0x00020021, 0x000F003F)
DOMAIN_GENERIC = (0x00020084, 0x0002047A, 0x00020301, 0x000F07FF)
"""GENERIC_READ, _WRITE, _EXECUTE, _ALL for server and domain objects (2.2.1.3, 2.2.1.4)."""
SERVER_USER_RIGHTS = (SAM_SERVER_CONNECT | SAM_SERVER_ENUMERATE_DOMAINS
                      | SAM_SERVER_LOOKUP_DOMAIN | READ_CONTROL)
DOMAIN_USER_RIGHTS = (DOMAIN_READ_PASSWORD_PARAMETERS | DOMAIN_READ_OTHER_PARAMETERS
                      | DOMAIN_GET_ALIAS_MEMBERSHIP | DOMAIN_LIST_ACCOUNTS | DOMAIN_LOOKUP
                      | READ_CONTROL)
"""Read and execute rights: the SAM here is read-only, so no caller gets more."""

STATUS_NO_SUCH_DOMAIN = 0xC00000DF
MAX_LOOKUP = 1000
"""SamrLookupNamesInDomain / SamrLookupIdsInDomain refuse more (3.1.5.11.2, 3.1.5.11.3)."""
SAM_REVISION = 3
"""SAMPR_REVISION_INFO_V1.Revision the server reports ([MS-SAMR] 2.2.3.15)."""
_SERVER = b"samS"
_DOMAIN = b"samD"


@dataclass(frozen=True, slots=True)
class SamDomain:
    """One domain of the SAM: its SAMR name, SID and accounts (RID -> (name, SID_NAME_USE))."""

    name: str
    domain: Domain
    accounts: Mapping[int, tuple[str, int]] = field(default_factory=dict)

    def rid_of(self, name: str) -> tuple[int, int] | None:
        wanted = name.casefold()
        for rid, (account, use) in self.accounts.items():
            if account.casefold() == wanted:
                return rid, use
        return None


def sam_domains(account: Domain) -> tuple[SamDomain, ...]:
    """The SAM's domains in the order SamrEnumerateDomainsInSamServer lists them."""
    builtin = SamDomain(SAMR_BUILTIN_NAME, BUILTIN, MappingProxyType(
        {rid: (name, SidType.ALIAS) for rid, name in BUILTIN_ALIASES.items()}))
    return (SamDomain(account.name, account), builtin)


# -- calls, in opnum order ------------------------------------------------


class SamrServer:
    """The samr manager routines of one pipe over its handles and the SAM's domains."""

    def __init__(self, domains: tuple[SamDomain, ...], handles: ContextHandles) -> None:
        self._domains = domains
        self._handles = handles

    # 0, 57, 62, 64
    def samr_connect(self, stub: bytes, call: CallContext) -> bytes:
        """SamrConnect, opnum 0 ([MS-SAMR] 3.1.5.1.4)."""
        return self._connect(decode(samr.SamrConnect, stub), samr.SamrConnectResponse(), call)

    def samr_connect2(self, stub: bytes, call: CallContext) -> bytes:
        """SamrConnect2, opnum 57 ([MS-SAMR] 3.1.5.1.3)."""
        return self._connect(decode(samr.SamrConnect2, stub), samr.SamrConnect2Response(), call)

    def samr_connect4(self, stub: bytes, call: CallContext) -> bytes:
        """SamrConnect4, opnum 62 ([MS-SAMR] 3.1.5.1.2)."""
        return self._connect(decode(samr.SamrConnect4, stub), samr.SamrConnect4Response(), call)

    def samr_connect5(self, stub: bytes, call: CallContext) -> bytes:
        """SamrConnect5, opnum 64 ([MS-SAMR] 3.1.5.1.1): also reports revision 3, no features."""
        request = decode(samr.SamrConnect5, stub)
        response = samr.SamrConnect5Response()
        response["OutVersion"] = 1
        response["OutRevisionInfo"]["tag"] = 1
        response["OutRevisionInfo"]["V1"]["Revision"] = SAM_REVISION
        response["OutRevisionInfo"]["V1"]["SupportedFeatures"] = 0
        return self._connect(request, response, call)

    def _connect(self, request: Any, response: Any, call: CallContext) -> bytes:
        def make() -> bytes:
            refuse_anonymous(call)
            granted = grant(request["DesiredAccess"], SERVER_GENERIC, SERVER_USER_RIGHTS)
            return self._handles.create(_SERVER, granted)
        fill_open(response, "ServerHandle", make)
        return encode(response)

    # 1
    def samr_close_handle(self, stub: bytes, call: CallContext) -> bytes:
        """SamrCloseHandle, opnum 1 ([MS-SAMR] 3.1.5.13.1)."""
        request = decode(idl_fixes.SamrCloseHandle, stub)
        response = samr.SamrCloseHandleResponse()
        fill_close(response, "SamHandle", self._handles, handle_of(request["SamHandle"]),
                   _SERVER, _DOMAIN)
        return encode(response)

    # 5
    def samr_lookup_domain_in_sam_server(self, stub: bytes, call: CallContext) -> bytes:
        """SamrLookupDomainInSamServer, opnum 5 ([MS-SAMR] 3.1.5.11.1)."""
        request = decode(samr.SamrLookupDomainInSamServer, stub)
        response = samr.SamrLookupDomainInSamServerResponse()
        name = unicode_text(request.fields["Name"]) or ""
        try:
            require(self._handles.get(handle_of(request["ServerHandle"]), _SERVER),
                    SAM_SERVER_LOOKUP_DOMAIN)
            found = next((d for d in self._domains if d.name.casefold() == name.casefold()), None)
            if found is None:
                raise HandleError(STATUS_NO_SUCH_DOMAIN, f"no domain {name!r}")
        except HandleError as error:
            response["DomainId"] = NULL
            response["ErrorCode"] = error.status
            return encode(response)
        response["DomainId"] = sid_to_ndr(found.domain.sid)
        response["ErrorCode"] = NtStatus.SUCCESS
        return encode(response)

    # 6
    def samr_enumerate_domains_in_sam_server(self, stub: bytes, call: CallContext) -> bytes:
        """SamrEnumerateDomainsInSamServer, opnum 6 ([MS-SAMR] 3.1.5.2.1).

        Two domains always fit, so the answer is complete in one call
        (STATUS_SUCCESS) and the returned EnumerationContext is 0, as Samba's.
        """
        request = decode(samr.SamrEnumerateDomainsInSamServer, stub)
        response = samr.SamrEnumerateDomainsInSamServerResponse()
        start = request["EnumerationContext"]
        try:
            require(self._handles.get(handle_of(request["ServerHandle"]), _SERVER),
                    SAM_SERVER_ENUMERATE_DOMAINS)
        except HandleError as error:
            response["EnumerationContext"] = start
            response["Buffer"] = NULL
            response["CountReturned"] = 0
            response["ErrorCode"] = error.status
            return encode(response)
        listed = self._domains[start:] if start < len(self._domains) else ()
        buffer = response["Buffer"]
        buffer["EntriesRead"] = len(listed)
        if not listed:
            buffer["Buffer"] = NULL
        for index, domain in enumerate(listed, start):
            entry = samr.SAMPR_RID_ENUMERATION()
            entry["RelativeId"] = index  # unused by clients; Samba numbers the domains
            entry["Name"] = domain.name
            buffer["Buffer"].append(entry)
        response["EnumerationContext"] = 0
        response["CountReturned"] = len(listed)
        response["ErrorCode"] = NtStatus.SUCCESS
        return encode(response)

    # 7
    def samr_open_domain(self, stub: bytes, call: CallContext) -> bytes:
        """SamrOpenDomain, opnum 7 ([MS-SAMR] 3.1.5.1.5)."""
        request = decode(samr.SamrOpenDomain, stub)
        response = samr.SamrOpenDomainResponse()
        sid = sid_from_ndr(request["DomainId"])

        def make() -> bytes:
            require(self._handles.get(handle_of(request["ServerHandle"]), _SERVER),
                    SAM_SERVER_LOOKUP_DOMAIN)
            found = next((d for d in self._domains if d.domain.sid == sid), None)
            if found is None:
                raise HandleError(STATUS_NO_SUCH_DOMAIN, f"no domain {sid}")
            granted = grant(request["DesiredAccess"], DOMAIN_GENERIC, DOMAIN_USER_RIGHTS)
            return self._handles.create(_DOMAIN, granted, found)
        fill_open(response, "DomainHandle", make)
        return encode(response)

    # 17
    def samr_lookup_names_in_domain(self, stub: bytes, call: CallContext) -> bytes:
        """SamrLookupNamesInDomain, opnum 17 ([MS-SAMR] 3.1.5.11.2)."""
        request = decode(samr.SamrLookupNamesInDomain, stub)
        response = samr.SamrLookupNamesInDomainResponse()
        names = [unicode_text(name) or "" for name in request["Names"]]
        try:
            domain = self._lookup_domain(request, len(names))
        except HandleError as error:
            _ulongs(response["RelativeIds"], [])
            _ulongs(response["Use"], [])
            response["ErrorCode"] = error.status
            return encode(response)
        found = [domain.rid_of(name) for name in names]
        _ulongs(response["RelativeIds"], [f[0] if f else 0 for f in found])
        _ulongs(response["Use"], [f[1] if f else SidType.UNKNOWN for f in found])
        response["ErrorCode"] = _status(sum(1 for f in found if f), len(found))
        return encode(response)

    # 18
    def samr_lookup_ids_in_domain(self, stub: bytes, call: CallContext) -> bytes:
        """SamrLookupIdsInDomain, opnum 18 ([MS-SAMR] 3.1.5.11.3)."""
        request = decode(samr.SamrLookupIdsInDomain, stub)
        response = samr.SamrLookupIdsInDomainResponse()
        rids = [rid["Data"] for rid in request["RelativeIds"]]
        try:
            domain = self._lookup_domain(request, len(rids))
        except HandleError as error:
            _strings(response["Names"], [])
            _ulongs(response["Use"], [])
            response["ErrorCode"] = error.status
            return encode(response)
        found = [domain.accounts.get(rid) for rid in rids]
        _strings(response["Names"], [f[0] if f else "" for f in found])
        _ulongs(response["Use"], [f[1] if f else SidType.UNKNOWN for f in found])
        response["ErrorCode"] = _status(sum(1 for f in found if f), len(found))
        return encode(response)

    def _lookup_domain(self, request: Any, received: int) -> SamDomain:
        """The domain of a lookup's handle, after the checks both lookups share."""
        entry = self._handles.get(handle_of(request["DomainHandle"]), _DOMAIN)
        if request["Count"] != received:
            raise HandleError(NtStatus.INVALID_PARAMETER, "Count unlike the array")
        if request["Count"] > MAX_LOOKUP:
            raise HandleError(NtStatus.INSUFFICIENT_RESOURCES, "more than 1000 entries")
        require(entry, DOMAIN_LOOKUP)
        return entry.target


def _status(mapped: int, total: int) -> int:
    """[MS-SAMR] 3.1.5.11.2-3: all, some or none of the entries were found."""
    if mapped == total:
        return NtStatus.SUCCESS
    return STATUS_SOME_NOT_MAPPED if mapped else NtStatus.NONE_MAPPED


def _ulongs(target: Any, values: list[int]) -> None:
    """A SAMPR_ULONG_ARRAY: Count and a pointer to the values (NULL when empty)."""
    target["Count"] = len(values)
    if not values:
        target["Element"] = NULL
    for value in values:
        item = ULONG()
        item["Data"] = value
        target["Element"].append(item)


def _strings(target: Any, values: list[str]) -> None:
    """A SAMPR_RETURNED_USTRING_ARRAY."""
    target["Count"] = len(values)
    if not values:
        target["Element"] = NULL
    for value in values:
        item = samr.RPC_UNICODE_STRING()
        item["Data"] = value
        target["Element"].append(item)


# -- opnum table and registration --------------------------------------------

OPNUMS: Mapping[int, tuple[type, type]] = MappingProxyType({
    0: (samr.SamrConnect, samr.SamrConnectResponse),
    1: (idl_fixes.SamrCloseHandle, samr.SamrCloseHandleResponse),
    5: (samr.SamrLookupDomainInSamServer, samr.SamrLookupDomainInSamServerResponse),
    6: (samr.SamrEnumerateDomainsInSamServer, samr.SamrEnumerateDomainsInSamServerResponse),
    7: (samr.SamrOpenDomain, samr.SamrOpenDomainResponse),
    17: (samr.SamrLookupNamesInDomain, samr.SamrLookupNamesInDomainResponse),
    18: (samr.SamrLookupIdsInDomain, samr.SamrLookupIdsInDomainResponse),
    57: (samr.SamrConnect2, samr.SamrConnect2Response),
    62: (samr.SamrConnect4, samr.SamrConnect4Response),
    64: (samr.SamrConnect5, samr.SamrConnect5Response),
})
"""The calls implemented here and their impacket [in]/[out] types."""


def samr_interface(domains: tuple[SamDomain, ...], handles: ContextHandles) -> RpcInterface:
    """The samr interface of one pipe for ``RpcConnection``: ``{opnum: handler}``."""
    server = SamrServer(domains, handles)
    return RpcInterface("samr", SAMR_SYNTAX, {
        0: server.samr_connect,
        1: server.samr_close_handle,
        5: server.samr_lookup_domain_in_sam_server,
        6: server.samr_enumerate_domains_in_sam_server,
        7: server.samr_open_domain,
        17: server.samr_lookup_names_in_domain,
        18: server.samr_lookup_ids_in_domain,
        57: server.samr_connect2,
        62: server.samr_connect4,
        64: server.samr_connect5,
    })
