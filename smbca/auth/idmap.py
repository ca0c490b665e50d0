"""Domain SIDs to POSIX ids, the same on both nodes without shared state
(issue 12 item 4).

The scheme is Samba's ``idmap_rid``: each domain gets a range of ids, and a
SID of that domain with relative id RID maps to ``range low + RID``, for
users and groups alike (a RID names one account in its domain, so a uid and a
gid never stand for two things).  The mapping is a pure function of the
configuration, so the pair's nodes, each with the same ``identity.idmap``,
give a user the same owner on disk and a reconnect after failover finds the
files it left.  Nothing is learned or stored at run time.

A range is keyed by the domain's SID (``S-1-5-21-X-Y-Z``) or by its NetBIOS
name.  A name matches the logon domain a logon reports (the PAC's
LogonDomainName and LogonDomainId, or NETLOGON's answer): the user's own
domain is always known with its SID, so the user's uid and the gids of its
own domain's groups come out the same way every time.  A group of another
domain (a PAC's ExtraSids) has only its SID, so it is mapped only by a range
keyed by that SID.

A RID past its range is refused for the user and its primary group
(``IdMapError``, STATUS_NO_SUCH_USER, as smbd answers a domain user it cannot
map); a secondary group past its range is left out of the gids.  A user of a
domain no range covers is not mapped (``map_ids`` gives None): the caller
keeps its previous behaviour for it.

Sans-IO: no config file, no logging here; ``smbca.config`` validates the
ranges (``check_ranges``) and the session code logs what is refused.
"""

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from smbca.auth.errors import AuthError
from smbca.auth.identity import Identity
from smbca.ntstatus import NtStatus

_DOMAIN_SID_PREFIX = "S-1-5-21-"
_DOMAIN_SUB_AUTHORITIES = 3          # S-1-5-21-X-Y-Z: the domain; one more is the RID
MAX_ID = 0xFFFFFFFE                  # (uid_t) -1 is "no change" to chown(2)
BUILTIN_ADMINISTRATORS = "S-1-5-32-544"
BUILTIN_BACKUP_OPERATORS = "S-1-5-32-551"
# What Windows gives BUILTIN\Administrators and Backup Operators by default
# ([MS-LSAD] 3.1.1.2.1 privilege names) that a file server acts on.
ADMIN_PRIVILEGES = ("SeSecurityPrivilege", "SeTakeOwnershipPrivilege",
                    "SeBackupPrivilege", "SeRestorePrivilege")
BACKUP_PRIVILEGES = ("SeBackupPrivilege", "SeRestorePrivilege")


class IdMapError(AuthError):
    """A SID that falls in a domain's range but past its end."""

    def __init__(self, message: str) -> None:
        super().__init__(NtStatus.NO_SUCH_USER, message)


@dataclass(frozen=True, slots=True)
class IdRange:
    """``domain`` (a NetBIOS name or a domain SID) maps to ``low..high``
    (inclusive); ``key`` is the config key that set it, for messages."""

    domain: str
    low: int
    high: int
    key: str = "identity.idmap"

    @property
    def by_sid(self) -> bool:
        return self.domain.upper().startswith(_DOMAIN_SID_PREFIX)

    def overlaps(self, other: "IdRange") -> bool:
        return self.low <= other.high and other.low <= self.high


@dataclass(frozen=True, slots=True)
class MappedIds:
    """A user's POSIX ids: its uid, its primary group's gid and every group's
    gid it could be given (the primary one first)."""

    uid: int
    gid: int
    gids: tuple[int, ...]


def split_sid(sid: str) -> tuple[str, int] | None:
    """(domain SID, RID) of an account SID ``S-1-5-21-X-Y-Z-RID``; None for
    any other SID (well-known, BUILTIN, Unix)."""
    upper = sid.upper()
    if not upper.startswith(_DOMAIN_SID_PREFIX):
        return None
    parts = upper.split("-")
    # "S", revision 1, authority 5, 21, the domain's three, the RID
    if len(parts) != 4 + _DOMAIN_SUB_AUTHORITIES + 1 or not all(p.isdigit() for p in parts[1:]):
        return None
    return "-".join(parts[:-1]), int(parts[-1])


def check_ranges(ranges: Sequence[IdRange], local_ids: Iterable[tuple[str, int]] = ()) -> None:
    """Raise ``ValueError`` naming the offending range's key when a range is
    empty or out of bounds, two ranges name the same domain or overlap, or a
    local account's id (``(what, id)`` pairs) falls in one."""
    for index, one in enumerate(ranges):
        if not 0 < one.low <= one.high <= MAX_ID:
            raise ValueError(f"{one.key}: range [{one.low}, {one.high}] must have "
                             f"0 < low <= high <= {MAX_ID}")
        for other in ranges[:index]:
            if other.domain.upper() == one.domain.upper():
                raise ValueError(f"{one.key}: domain {one.domain} already has a range "
                                 f"({other.key})")
            if other.overlaps(one):
                raise ValueError(f"{one.key}: range [{one.low}, {one.high}] of {one.domain} "
                                 f"overlaps {other.key} [{other.low}, {other.high}] "
                                 f"of {other.domain}")
    for what, number in local_ids:
        for one in ranges:
            if one.low <= number <= one.high:
                raise ValueError(f"{one.key}: range [{one.low}, {one.high}] of {one.domain} "
                                 f"holds {what}'s id {number}")


class IdMap:
    """The configured ranges; ``map_ids`` is the mapping (module docstring)."""

    def __init__(self, ranges: Sequence[IdRange]) -> None:
        check_ranges(ranges)
        self._by_sid = {r.domain.upper(): r for r in ranges if r.by_sid}
        self._by_name = {r.domain.upper(): r for r in ranges if not r.by_sid}

    @property
    def ranges(self) -> tuple[IdRange, ...]:
        return (*self._by_sid.values(), *self._by_name.values())

    def __bool__(self) -> bool:
        return bool(self._by_sid or self._by_name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and set(self.ranges) == set(other.ranges)

    def __hash__(self) -> int:
        return hash(frozenset(self.ranges))

    def __repr__(self) -> str:
        return f"IdMap({list(self.ranges)!r})"

    def _range_of(self, domain_sid: str, logon: tuple[str, str] | None) -> IdRange | None:
        found = self._by_sid.get(domain_sid)
        if found is None and logon is not None and logon[1] == domain_sid:
            found = self._by_name.get(logon[0])
        return found

    def id_of(self, sid: str, logon: tuple[str, str] | None = None) -> int | None:
        """The id of ``sid``; None when no range covers its domain.
        ``logon`` is (NetBIOS name, domain SID) of the logon domain, which
        lets a range keyed by name apply.  ``IdMapError`` past a range's end."""
        split = split_sid(sid)
        if split is None:
            return None
        domain_sid, rid = split
        found = self._range_of(domain_sid, logon)
        if found is None:
            return None
        number = found.low + rid
        if number > found.high:
            raise IdMapError(f"{sid}: RID {rid} is past the range [{found.low}, {found.high}] "
                             f"of {found.domain} ({found.key}); widen it to map this account")
        return number

    def map_ids(self, sid: str, group_sids: Sequence[str], domain: str | None = None,
                primary_group_sid: str | None = None) -> MappedIds | None:
        """(uid, gid, gids) of a domain user: ``sid`` and its ``group_sids``
        (the primary group first unless ``primary_group_sid`` says which),
        ``domain`` its logon domain's NetBIOS name.  None when no range
        covers the user's domain; ``IdMapError`` when the user's or its
        primary group's RID is past its range."""
        split = split_sid(sid)
        if split is None:
            return None
        logon = (domain.upper(), split[0]) if domain else None
        uid = self.id_of(sid, logon)
        if uid is None:
            return None
        primary = primary_group_sid or (group_sids[0] if group_sids else None)
        gid = self.id_of(primary, logon) if primary else None
        if gid is None:
            raise IdMapError(f"{sid}: its primary group {primary or '(none)'} has no "
                             f"idmap range")
        gids = [gid]
        for group in group_sids:
            try:
                number = self.id_of(group, logon)
            except IdMapError:
                continue                 # a secondary group past its range: left out
            if number is not None and number not in gids:
                gids.append(number)
        return MappedIds(uid, gid, tuple(gids))


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    """What the server makes of an authenticated identity: the ID mapping
    and who is an administrator or a backup operator (``identity.admins``,
    ``identity.backup_operators``: user or group SIDs)."""

    idmap: IdMap
    admins: frozenset[str] = frozenset()
    backup_operators: frozenset[str] = frozenset()

    def apply(self, identity: Identity) -> Identity:
        """``identity`` with its POSIX ids, BUILTIN groups and privileges.
        A local user keeps its own uid and gid; ``IdMapError`` as ``map_ids``."""
        if identity.is_guest or identity.is_anonymous:
            return identity
        changes: dict = {}
        if identity.uid is None and identity.sid:
            mapped = self.idmap.map_ids(identity.sid, identity.group_sids, identity.domain)
            if mapped is not None:
                changes.update(uid=mapped.uid, gid=mapped.gid, gids=mapped.gids)
        elif identity.gid is not None and not identity.gids:
            changes["gids"] = (identity.gid,)
        sids = {sid.upper() for sid in (identity.sid, *identity.group_sids) if sid}
        groups, privileges = list(identity.group_sids), list(identity.privileges)
        for members, builtin, granted in (
                (self.admins, BUILTIN_ADMINISTRATORS, ADMIN_PRIVILEGES),
                (self.backup_operators, BUILTIN_BACKUP_OPERATORS, BACKUP_PRIVILEGES)):
            if sids & members:
                groups += [builtin] if builtin not in groups else []
                privileges += [name for name in granted if name not in privileges]
        if groups != list(identity.group_sids):
            changes.update(group_sids=tuple(groups), privileges=tuple(privileges))
        return dataclasses.replace(identity, **changes) if changes else identity
