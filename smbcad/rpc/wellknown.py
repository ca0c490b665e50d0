"""The names every Windows machine knows without asking anyone.

Well-known SIDs ([MS-DTYP] 2.4.2.4) with the account and domain names
Windows' LSA translates them to, and the BUILTIN domain's aliases
([MS-SAMR] 2.2.1.14 names its RIDs; the display names are Windows').  Pure
data plus ``SidType`` ([MS-LSAT] 2.2.13 SID_NAME_USE), shared by the LSA and
SAMR interfaces and the name resolver.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from smbcad.proto.fscc.security import Sid


class SidType:
    """SID_NAME_USE ([MS-LSAT] 2.2.13, [MS-SAMR] 2.2.2.3)."""

    USER = 1
    GROUP = 2
    DOMAIN = 3
    ALIAS = 4
    WELL_KNOWN_GROUP = 5
    DELETED_ACCOUNT = 6
    INVALID = 7
    UNKNOWN = 8
    COMPUTER = 9
    LABEL = 10


@dataclass(frozen=True, slots=True)
class Domain:
    """A domain as the referenced-domain lists name it (LSAPR_TRUST_INFORMATION, 2.2.11)."""

    name: str
    sid: Sid

    def member(self, rid: int) -> Sid:
        return Sid(self.sid.authority, (*self.sid.sub_authorities, rid))

    def holds(self, sid: Sid) -> bool:
        """``sid`` is this domain's SID plus exactly one RID."""
        return (sid.authority == self.sid.authority
                and sid.sub_authorities[:-1] == self.sid.sub_authorities
                and len(sid.sub_authorities) == len(self.sid.sub_authorities) + 1)


@dataclass(frozen=True, slots=True)
class Translation:
    """One name <-> SID answer: the account, its type and the domain it belongs to.

    For a domain itself ``sid_type`` is DOMAIN, ``sid`` is ``domain.sid`` and
    ``name`` is the domain's name.
    """

    sid: Sid
    sid_type: int
    name: str
    domain: Domain

    @property
    def rid(self) -> int:
        """RelativeId of the v1/v2 lookups: 0xFFFFFFFF for a domain, as Windows and Samba send."""
        if self.sid_type == SidType.DOMAIN:
            return 0xFFFFFFFF
        return self.sid.sub_authorities[-1] if self.sid.sub_authorities else 0

    @property
    def qualified(self) -> str:
        return f"{self.domain.name}\\{self.name}" if self.domain.name else self.name


NT_AUTHORITY = Domain("NT AUTHORITY", Sid(5))
BUILTIN = Domain("BUILTIN", Sid(5, (32,)))
MANDATORY_LABEL = Domain("Mandatory Label", Sid(16))
UNIX_USERS = Domain("Unix User", Sid(22, (1,)))
UNIX_GROUPS = Domain("Unix Group", Sid(22, (2,)))
"""Samba's domains for POSIX ids without another SID: S-1-22-1-<uid>, S-1-22-2-<gid>."""

SAMR_BUILTIN_NAME = "Builtin"
"""What SAMR calls the BUILTIN domain ([MS-SAMR] 3.1.1.1: the built-in domain's name)."""

# Well-known SIDs outside any real domain: the referenced domain is the SID's
# prefix with an empty name, as Windows answers (rpcclient shows "\Everyone").
_BARE = (
    ("NULL SID", Sid(0, (0,))),
    ("Everyone", Sid(1, (0,))),
    ("LOCAL", Sid(2, (0,))),
    ("CONSOLE LOGON", Sid(2, (1,))),
    ("CREATOR OWNER", Sid(3, (0,))),
    ("CREATOR GROUP", Sid(3, (1,))),
    ("CREATOR OWNER SERVER", Sid(3, (2,))),
    ("CREATOR GROUP SERVER", Sid(3, (3,))),
    ("OWNER RIGHTS", Sid(3, (4,))),
)

_NT_AUTHORITY_RIDS = (
    ("DIALUP", 1), ("NETWORK", 2), ("BATCH", 3), ("INTERACTIVE", 4), ("SERVICE", 6),
    ("ANONYMOUS LOGON", 7), ("PROXY", 8), ("ENTERPRISE DOMAIN CONTROLLERS", 9), ("SELF", 10),
    ("Authenticated Users", 11), ("RESTRICTED", 12), ("TERMINAL SERVER USER", 13),
    ("REMOTE INTERACTIVE LOGON", 14), ("This Organization", 15), ("IUSR", 17),
    ("SYSTEM", 18), ("LOCAL SERVICE", 19), ("NETWORK SERVICE", 20),
)

BUILTIN_ALIASES: Mapping[int, str] = MappingProxyType({
    544: "Administrators", 545: "Users", 546: "Guests", 547: "Power Users",
    548: "Account Operators", 549: "Server Operators", 550: "Print Operators",
    551: "Backup Operators", 552: "Replicator", 554: "Pre-Windows 2000 Compatible Access",
    555: "Remote Desktop Users", 556: "Network Configuration Operators",
    557: "Incoming Forest Trust Builders", 558: "Performance Monitor Users",
    559: "Performance Log Users", 560: "Windows Authorization Access Group",
    561: "Terminal Server License Servers", 562: "Distributed COM Users", 568: "IIS_IUSRS",
    569: "Cryptographic Operators", 573: "Event Log Readers",
    574: "Certificate Service DCOM Access", 575: "RDS Remote Access Servers",
    576: "RDS Endpoint Servers", 577: "RDS Management Servers", 578: "Hyper-V Administrators",
    579: "Access Control Assistance Operators", 580: "Remote Management Users",
})
"""BUILTIN alias RIDs ([MS-DTYP] 2.4.2.4) and their names."""

_LABELS = (("Low Mandatory Level", 0x1000), ("Medium Mandatory Level", 0x2000),
           ("High Mandatory Level", 0x3000), ("System Mandatory Level", 0x4000))


def _table() -> tuple[Translation, ...]:
    rows = [Translation(sid, SidType.WELL_KNOWN_GROUP, name,
                        Domain("", Sid(sid.authority, sid.sub_authorities[:-1])))
            for name, sid in _BARE]
    rows += [Translation(NT_AUTHORITY.member(rid), SidType.WELL_KNOWN_GROUP, name, NT_AUTHORITY)
             for name, rid in _NT_AUTHORITY_RIDS]
    rows += [Translation(BUILTIN.member(rid), SidType.ALIAS, name, BUILTIN)
             for rid, name in BUILTIN_ALIASES.items()]
    rows += [Translation(MANDATORY_LABEL.member(rid), SidType.LABEL, name, MANDATORY_LABEL)
             for name, rid in _LABELS]
    rows += [domain_translation(domain) for domain in (NT_AUTHORITY, BUILTIN)]
    return tuple(rows)


def domain_translation(domain: Domain) -> Translation:
    """A domain's own entry: looking up ``BUILTIN`` yields the domain S-1-5-32."""
    return Translation(domain.sid, SidType.DOMAIN, domain.name, domain)


WELL_KNOWN: tuple[Translation, ...] = _table()
"""Every fixed translation: bare well-known SIDs, NT AUTHORITY, BUILTIN, labels."""
