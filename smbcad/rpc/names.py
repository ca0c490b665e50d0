"""Name <-> SID translation behind the LSA and SAMR interfaces ([MS-LSAT] 3.1.4.5, 3.1.4.9).

A ``NameResolver`` answers one name or one SID; ``ResolverChain`` asks
several in order, the way [MS-LSAT] 3.1.4.5 searches views: well-known SIDs
and BUILTIN first, then this server's own account domain and its local
accounts, then (issue 12 items 3/4, not yet) the domain through a DC, which
plugs in as one more resolver at the end of the chain.

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
import struct
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Protocol

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
