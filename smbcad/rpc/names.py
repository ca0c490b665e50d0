"""Name <-> SID translation behind the LSA and SAMR interfaces ([MS-LSAT] 3.1.4.5, 3.1.4.9).

A ``NameResolver`` answers one name or one SID; ``ResolverChain`` asks
several in order, the way [MS-LSAT] 3.1.4.5 searches views: well-known SIDs
and BUILTIN first, then this server's own account domain and its local
accounts, then the domain the server joined, through a DC (``DomainNames``,
at the end of the chain).

Local accounts are named by the SIDs the server's session tokens and file
owners carry (``smbcad/server/security.py``, ``proto/fscc/security.py``):
a user with a uid is ``Unix User\\<name>`` = S-1-22-1-<uid> and a POSIX group
``Unix Group\\<name>`` = S-1-22-2-<gid>, Samba's names for the same SIDs.
An ACE a client adds by name therefore matches the token of that user's
next session.  A configured user without a uid acts on disk as the server's
own uid, sharing its SID with every such user, so its name is left unmapped
rather than resolved to a SID that would grant or deny them all.

The account domain (``LsarQueryInformationPolicy`` class 5, SAMR's
non-builtin domain) is named after the server and its SID is derived from
the pair's name (``account_domain``), so both nodes answer the same; it
holds no accounts of its own yet.
"""

import hashlib
import logging
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

from smbcad.proto.fscc.security import Sid
from smbcad.rpc.wellknown import (
    UNIX_GROUPS,
    UNIX_USERS,
    WELL_KNOWN,
    Domain,
    SidType,
    Translation,
    domain_translation,
)


log = logging.getLogger("smbcad.rpc.names")


class NameResolver(Protocol):
    """One source of translations; ``None`` means "not mine, ask the next one"."""

    def lookup_name(self, domain: str | None, name: str) -> Translation | None:
        """``domain`` is None for an isolated name (no ``DOMAIN\\`` part)."""

    def lookup_sid(self, sid: Sid) -> Translation | None: ...


class Accounts(Protocol):
    """Local POSIX accounts: SMB users first, then the system's users and groups."""

    def user_id(self, name: str) -> int | None:
        """The uid ``name`` acts as, or None (unknown, or an SMB user without a uid)."""

    def user_name(self, uid: int) -> str | None: ...

    def group_id(self, name: str) -> int | None: ...

    def group_name(self, gid: int) -> str | None: ...


def split_name(text: str) -> tuple[str | None, str]:
    """``DOMAIN\\name`` -> (DOMAIN, name); an isolated ``name`` -> (None, name)
    ([MS-LSAT] 3.1.4.5: names are isolated or "domain\\account")."""
    domain, sep, name = text.partition("\\")
    return (domain, name) if sep else (None, text)


def _key(text: str) -> str:
    """Account and domain names compare case-insensitively ([MS-LSAT] 3.1.4.5)."""
    return text.casefold()


def account_domain(name: str, pair_name: str) -> Domain:
    """The server's account domain: NetBIOS ``name``, SID S-1-5-21-a-b-c from ``pair_name``.

    Both nodes of a pair derive the same SID from the cluster's name, as they
    derive one ServerGuid (``ClusterConfig.derived_server_guid``); a lone
    server passes its own name.  The three sub-authorities are the first 12
    bytes of a SHA-256, like the random ones of a Windows machine SID.
    """
    digest = hashlib.sha256(b"smbca account domain\x00" + _key(pair_name).encode()).digest()
    return Domain(name.upper(), Sid(5, (21, *struct.unpack_from("<3I", digest))))


class FixedNames:
    """The well-known SIDs, NT AUTHORITY, BUILTIN and the mandatory labels (``wellknown``)."""

    def __init__(self, rows: Iterable[Translation] = WELL_KNOWN) -> None:
        self._by_sid: dict[Sid, Translation] = {}
        self._by_name: dict[tuple[str, str], Translation] = {}
        self._isolated: dict[str, Translation] = {}
        for row in rows:
            self._by_sid.setdefault(row.sid, row)
            self._isolated.setdefault(_key(row.name), row)
            if row.sid_type != SidType.DOMAIN:
                self._by_name.setdefault((_key(row.domain.name), _key(row.name)), row)

    def lookup_name(self, domain: str | None, name: str) -> Translation | None:
        if domain is None:
            return self._isolated.get(_key(name))
        return self._by_name.get((_key(domain), _key(name)))

    def lookup_sid(self, sid: Sid) -> Translation | None:
        return self._by_sid.get(sid)


class LocalNames:
    """This server's account domain and its local POSIX users and groups (module docstring)."""

    def __init__(self, domain: Domain, accounts: Accounts) -> None:
        self.domain = domain
        self._accounts = accounts
        self._domains: Mapping[str, Domain] = MappingProxyType(
            {_key(d.name): d for d in (domain, UNIX_USERS, UNIX_GROUPS)})

    def lookup_name(self, domain: str | None, name: str) -> Translation | None:
        if domain is None:
            own = self._domains.get(_key(name))
            if own is not None:
                return domain_translation(own)
            return self._user(name) or self._group(name)
        where = self._domains.get(_key(domain))
        if where is UNIX_USERS:
            return self._user(name)
        if where is UNIX_GROUPS:
            return self._group(name)
        if where is self.domain:
            # "SERVER\alice" is how Windows users spell a local account.
            return self._user(name) or self._group(name)
        return None

    def lookup_sid(self, sid: Sid) -> Translation | None:
        for own in (self.domain, UNIX_USERS, UNIX_GROUPS):
            if sid == own.sid:
                return domain_translation(own)
        if UNIX_USERS.holds(sid):
            name = self._accounts.user_name(sid.sub_authorities[-1])
            return None if name is None else Translation(sid, SidType.USER, name, UNIX_USERS)
        if UNIX_GROUPS.holds(sid):
            name = self._accounts.group_name(sid.sub_authorities[-1])
            return None if name is None else Translation(sid, SidType.GROUP, name, UNIX_GROUPS)
        return None

    def _user(self, name: str) -> Translation | None:
        uid = self._accounts.user_id(name)
        if uid is None:
            return None
        shown = self._accounts.user_name(uid) or name
        return Translation(UNIX_USERS.member(uid), SidType.USER, shown, UNIX_USERS)

    def _group(self, name: str) -> Translation | None:
        gid = self._accounts.group_id(name)
        if gid is None:
            return None
        shown = self._accounts.group_name(gid) or name
        return Translation(UNIX_GROUPS.member(gid), SidType.GROUP, shown, UNIX_GROUPS)


class ResolverChain:
    """Asks each resolver in turn; the first answer wins."""

    def __init__(self, *resolvers: NameResolver) -> None:
        self.resolvers = resolvers

    def lookup_name(self, domain: str | None, name: str) -> Translation | None:
        for resolver in self.resolvers:
            found = resolver.lookup_name(domain, name)
            if found is not None:
                return found
        return None

    def lookup_sid(self, sid: Sid) -> Translation | None:
        for resolver in self.resolvers:
            found = resolver.lookup_sid(sid)
            if found is not None:
                return found
        return None

    def translate_name(self, text: str) -> Translation | None:
        """A name as a client typed it, ``DOMAIN\\name`` or isolated."""
        domain, name = split_name(text)
        if domain is not None and not name:
            # "BUILTIN\" names the domain itself.
            found = self.lookup_name(None, domain)
            return found if found is not None and found.sid_type == SidType.DOMAIN else None
        return self.lookup_name(domain, name) if name else None


class DomainLookup(Protocol):
    """A DC's LsarLookupNames / LsarLookupSids (``smbca.auth.dc_names.DcNames``):
    one answer per item (``sid``, ``sid_type``, ``name``, ``domain_name``),
    None where unmapped; raises ``ConnectionError`` when no DC answers."""

    def lookup_names(self, names: list[str]) -> list[Any]: ...

    def lookup_sids(self, sids: list[str]) -> list[Any]: ...


class DomainNames:
    """The joined domain's users and groups, asked of its DC ([MS-LSAT] 3.1.4.5:
    the primary domain is searched after the local views).

    Only names of this domain (``NETBIOS\\name``, ``realm\\name`` or an
    isolated name no local view knew) and SIDs under the domain's SID go to
    the DC, so a typo of a local name costs one DC round trip at most and a
    foreign SID none.  Answers, mapped or not, are kept for ``ttl_s``
    (``clock`` seconds): smbcacls asks for the same names in every listing,
    and a DC call blocks the caller.  A DC that does not answer leaves the
    name unmapped, and the log says why.
    """

    def __init__(self, domain: Domain, realm: str, dc: DomainLookup, ttl_s: float = 300.0,
                 clock: Callable[[], float] | None = None) -> None:
        self.domain = domain
        self._names = (_key(domain.name), _key(realm), _key(realm.split(".")[0]))
        self._dc = dc
        self._ttl_s = ttl_s
        self._clock = clock or time.monotonic
        self._cache: dict[tuple[str, str], tuple[float, Translation | None]] = {}

    def lookup_name(self, domain: str | None, name: str) -> Translation | None:
        if domain is not None and _key(domain) not in self._names:
            return None
        if domain is None and _key(name) in self._names:
            return domain_translation(self.domain)
        return self._cached(("name", _key(name)), lambda: self._ask_name(name))

    def lookup_sid(self, sid: Sid) -> Translation | None:
        if sid == self.domain.sid:
            return domain_translation(self.domain)
        if not self.domain.holds(sid):
            return None
        return self._cached(("sid", str(sid)), lambda: self._ask_sid(sid))

    def _cached(self, key: tuple[str, str], ask: Callable[[], Translation | None]):
        now = self._clock()
        kept = self._cache.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        try:
            found = ask()
        except ConnectionError as exc:
            log.warning("%s %s: the domain controller did not answer: %s", *key, exc)
            return None
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = (now + self._ttl_s, found)
        return found

    def _ask_name(self, name: str) -> Translation | None:
        (answer,) = self._dc.lookup_names([f"{self.domain.name}\\{name}"])
        if answer is None or answer.sid_type == SidType.DOMAIN:
            return None
        sid = Sid.from_string(answer.sid)
        if not self.domain.holds(sid):
            return None
        return Translation(sid, answer.sid_type, answer.name or name, self.domain)

    def _ask_sid(self, sid: Sid) -> Translation | None:
        (answer,) = self._dc.lookup_sids([str(sid)])
        if answer is None or not answer.name:
            return None
        return Translation(sid, answer.sid_type, answer.name, self.domain)
