"""Names and SIDs of the joined domain, asked of a domain controller over
LSARPC ([MS-LSAT] 3.1.4.4 LsarLookupNames4, 3.1.4.8 LsarLookupSids3) on the
machine account's secure channel: the I/O half of
``smbcad.rpc.names.DomainNames``.

Why this way: it is what winbindd does for a member's lookups, and the one
way a DC answers them over TCP: Samba's and Windows' DCs refuse
LsarOpenPolicy* on ncacn_ip_tcp (rpc_s_access_denied, tried), and serve
the handle-less LookupNames4 / LookupSids3 there only to a caller bound
with the Netlogon security provider ([MS-LSAT] 3.1.4.4: "secure channel
only").  A DC need not let us use SMB (the test DC serves none), and LDAP
would need an LDAP client with a SASL security layer that impacket lacks.
The secure channel is ``NetlogonClient.open_sealed``'s: its own
ServerAuthenticate3 right before the bind, with the password in the join's
record (re-read for each new connection: ``smbca domain update`` rotates
it).  A bind that loses the race with another set-up of the account's
channel (the partner node's) fails and is tried once more.

One connection is kept and used under a lock (impacket's client is not
concurrent); a failure drops it and tries once more on a new one.  Calls
block on the network for up to ``timeout_s`` per DC: callers that serve
clients keep answers (``DomainNames`` caches them), and when no DC answered
none is asked again for ``RETRY_AFTER_S``.
"""

import logging
import threading
import time
from dataclasses import dataclass

from impacket.dcerpc.v5 import lsat
from impacket.dcerpc.v5.dtypes import NULL
from impacket.dcerpc.v5.rpcrt import DCERPCException

from smbca.auth.netlogon import ChannelError, NetlogonClient
from smbca.domain import MachineAccount

log = logging.getLogger("smbca.auth.dc_names")

RETRY_AFTER_S = 30.0
STATUS_SOME_NOT_MAPPED = 0x00000107
STATUS_NONE_MAPPED = 0xC0000073
_LOOKUP_WKSTA = lsat.LSAP_LOOKUP_LEVEL.LsapLookupWksta


@dataclass(frozen=True, slots=True)
class DcTranslation:
    """One answer of the DC: the SID, its SID_NAME_USE, the account's name
    and its domain's name and SID."""

    sid: str
    sid_type: int
    name: str
    domain_name: str
    domain_sid: str


class DcUnreachable(ConnectionError):
    """No DC of the domain answered."""


class DcNames:
    """Lookups in the domain of the join beside ``keytab`` (module docstring)."""

    def __init__(self, channel: NetlogonClient, clock=time.monotonic) -> None:
        self._channel = channel
        self._clock = clock
        self._lock = threading.Lock()
        self._dce = None
        self._down_until = 0.0

    @classmethod
    def from_keytab(cls, keytab: str) -> "DcNames | None":
        channel = NetlogonClient.from_keytab(keytab)
        return cls(channel) if channel is not None else None

    @property
    def account(self) -> MachineAccount:
        return self._channel.account

    def lookup_names(self, names: list[str]) -> list[DcTranslation | None]:
        """Each of ``names`` (``DOMAIN\\name``) translated, or None where unmapped."""
        return self._call(lambda dce: _translations(
            _lookup(lambda: lsat.hLsarLookupNames4(dce, names, _LOOKUP_WKSTA)),
            "TranslatedSids", None, len(names)))

    def lookup_sids(self, sids: list[str]) -> list[DcTranslation | None]:
        return self._call(lambda dce: _translations(
            _lookup(lambda: dce.request(_lookup_sids3(sids))), "TranslatedNames", sids,
            len(sids)))

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _call(self, request):
        with self._lock:
            if self._clock() < self._down_until:
                raise DcUnreachable("no domain controller answered a moment ago")
            for attempt in (1, 2):
                try:
                    if self._dce is None:
                        self._dce = self._connect()
                    return request(self._dce)
                except (OSError, DCERPCException, DcUnreachable) as exc:
                    self._drop()
                    if attempt == 2:
                        self._down_until = self._clock() + RETRY_AFTER_S
                        raise DcUnreachable(str(exc)) from None
                    log.info("LSA lookups: %s (trying a new connection)", exc)
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._dce is not None:
            try:
                self._dce.get_rpc_transport().disconnect()
            except (OSError, DCERPCException, AttributeError):
                pass
        self._dce = None

    def _connect(self):
        self._channel.reload_account()
        problems = []
        for dc in self._channel.candidates():
            try:
                dce = self._channel.open_sealed(dc, lsat.MSRPC_UUID_LSAT)
            except (ChannelError, OSError, DCERPCException) as exc:
                problems.append(f"{dc}: {exc}")
                continue
            log.info("LSA lookups: secure channel to %s as %s$", dc,
                     self.account.computer_name)
            return dce
        raise DcUnreachable("; ".join(problems) or f"no DC known for {self.account.dns_domain}")


def _lookup_sids3(sids: list[str]) -> lsat.LsarLookupSids3:
    request = lsat.LsarLookupSids3()
    request["SidEnumBuffer"]["Entries"] = len(sids)
    for sid in sids:
        item = lsat.LSAPR_SID_INFORMATION()
        item["Sid"].fromCanonical(sid)
        request["SidEnumBuffer"]["SidInfo"].append(item)
    request["TranslatedNames"]["Names"] = NULL
    request["LookupLevel"] = _LOOKUP_WKSTA
    request["LookupOptions"] = 0
    request["ClientRevision"] = 2          # LSA_CLIENT_REVISION_2, as Samba's clients send
    return request


def _lookup(call):
    """The answer of one lookup; None when nothing was mapped."""
    try:
        return call()
    except lsat.DCERPCSessionError as exc:
        status = exc.get_error_code()
        if status == STATUS_NONE_MAPPED:
            return None
        if status == STATUS_SOME_NOT_MAPPED:
            return exc.get_packet()
        raise


def _domains(answer) -> list[tuple[str, str]]:
    return [(entry["Name"], entry["Sid"].formatCanonical())
            for entry in answer["ReferencedDomains"]["Domains"]]


def _translations(answer, entries_key: str, sids: list[str] | None,
                  count: int) -> list[DcTranslation | None]:
    """One translation per entry of ``answer[entries_key]``: LookupNames4's
    carry their SID, LookupSids3's their name (the SID is the one asked)."""
    if answer is None:
        return [None] * count
    domains = _domains(answer)
    out: list[DcTranslation | None] = []
    for position, entry in enumerate(answer[entries_key][entries_key.removeprefix("Translated")]):
        index = entry["DomainIndex"]
        if entry["Use"] in (lsat.SID_NAME_USE.SidTypeUnknown, lsat.SID_NAME_USE.SidTypeInvalid) \
                or not 0 <= index < len(domains):
            out.append(None)
            continue
        domain_name, domain_sid = domains[index]
        if sids is None:
            out.append(DcTranslation(entry["Sid"].formatCanonical(), entry["Use"], "",
                                     domain_name, domain_sid))
        else:
            out.append(DcTranslation(sids[position], entry["Use"], entry["Name"], domain_name,
                                     domain_sid))
    return out
