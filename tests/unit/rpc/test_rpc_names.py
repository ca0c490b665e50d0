"""Name <-> SID translation (smbcad/rpc/names.py, wellknown.py, accounts.py)."""

import grp
import os
import pwd

import pytest

from smbcad.proto.fscc.security import (
    BUILTIN_ADMINISTRATORS, CREATOR_GROUP, CREATOR_OWNER, EVERYONE, LOCAL_SYSTEM, Sid,
    unix_group_sid, unix_user_sid)
from smbcad.rpc import PosixAccounts, ResolverChain, account_domain
from smbcad.rpc.names import FixedNames, LocalNames, split_name
from smbcad.rpc.wellknown import BUILTIN, UNIX_USERS, Domain, SidType, Translation

from .client import USERS, directory


class DomainController:
    """A second resolver as a DC resolver will plug in: it knows one domain user."""

    def __init__(self) -> None:
        self.user = Translation(Sid(5, (21, 1, 2, 3, 1104)), SidType.USER, "alice",
                                Domain("CORP", Sid(5, (21, 1, 2, 3))))

    def lookup_name(self, domain, name):
        if name.casefold() == "alice" and domain in (None, "CORP"):
            return self.user
        return None

    def lookup_sid(self, sid):
        return self.user if sid == self.user.sid else None


NAMES = directory().names


@pytest.mark.parametrize(("text", "sid"), [
    ("Everyone", EVERYONE), ("CREATOR OWNER", CREATOR_OWNER), ("CREATOR GROUP", CREATOR_GROUP),
    ("NT AUTHORITY\\SYSTEM", LOCAL_SYSTEM), ("SYSTEM", LOCAL_SYSTEM),
    ("NT AUTHORITY\\Authenticated Users", Sid(5, (11,))),
    ("BUILTIN\\Administrators", BUILTIN_ADMINISTRATORS), ("builtin\\users", Sid(5, (32, 545))),
    ("BUILTIN\\Backup Operators", Sid(5, (32, 551))), ("OWNER RIGHTS", Sid(3, (4,))),
    ("Mandatory Label\\High Mandatory Level", Sid(16, (0x3000,))),
    ("bob", unix_user_sid(4242)), ("Unix User\\bob", unix_user_sid(4242)),
])
def test_names_resolve_to_the_sids_tokens_and_acls_use(text, sid) -> None:
    found = NAMES.translate_name(text)
    assert found is not None and found.sid == sid
    assert NAMES.lookup_sid(sid).sid == sid


def test_sid_to_name_is_qualified_by_its_domain() -> None:
    assert NAMES.lookup_sid(EVERYONE).qualified == "Everyone"
    assert NAMES.lookup_sid(LOCAL_SYSTEM).qualified == "NT AUTHORITY\\SYSTEM"
    assert NAMES.lookup_sid(BUILTIN_ADMINISTRATORS).qualified == "BUILTIN\\Administrators"
    assert NAMES.lookup_sid(unix_user_sid(4242)).qualified == "Unix User\\bob"


def test_unknown_names_and_sids() -> None:
    assert NAMES.translate_name("nosuch") is None
    assert NAMES.translate_name("NT AUTHORITY\\Administrators") is None  # wrong domain
    assert NAMES.translate_name("NOSUCHDOMAIN\\Everyone") is None
    assert NAMES.translate_name("") is None
    assert NAMES.translate_name("Everyone\\") is None  # not a domain
    assert NAMES.lookup_sid(Sid(5, (21, 1, 2, 3, 500))) is None
    assert NAMES.lookup_sid(unix_user_sid(4243)) is None  # no account has that uid


def test_a_user_without_a_uid_stays_unmapped() -> None:
    """carol acts as the server's uid like every user without one: no SID of her own."""
    assert NAMES.translate_name("carol") is None
    system = directory(system=True).names
    assert system.translate_name("carol") is None


def test_domain_names_resolve_to_domains() -> None:
    builtin = NAMES.translate_name("BUILTIN\\")
    assert (builtin.sid_type, builtin.sid, builtin.rid) == (SidType.DOMAIN, BUILTIN.sid,
                                                            0xFFFFFFFF)
    own = NAMES.translate_name("SMBCA")
    assert (own.sid_type, own.sid) == (SidType.DOMAIN, account_domain("SMBCA", "smbca").sid)
    assert NAMES.lookup_sid(UNIX_USERS.sid).sid_type == SidType.DOMAIN


def test_account_domain_sid_is_the_same_on_both_nodes() -> None:
    """Derived from the pair's name only (any case), never from the node."""
    first = account_domain("smbca", "Pair-1")
    assert first == account_domain("SMBCA", "pair-1")
    assert first.name == "SMBCA"
    assert first.sid.authority == 5 and first.sid.sub_authorities[0] == 21
    assert len(first.sid.sub_authorities) == 4
    assert account_domain("SMBCA", "pair-2").sid != first.sid


def test_split_name() -> None:
    assert split_name("BUILTIN\\Users") == ("BUILTIN", "Users")
    assert split_name("Everyone") == (None, "Everyone")
    assert split_name("\\Everyone") == ("", "Everyone")


def test_a_later_resolver_answers_what_earlier_ones_do_not() -> None:
    chain = ResolverChain(*NAMES.resolvers, DomainController())
    assert chain.translate_name("CORP\\alice").qualified == "CORP\\alice"
    assert chain.translate_name("alice").sid == Sid(5, (21, 1, 2, 3, 1104))
    assert chain.lookup_sid(Sid(5, (21, 1, 2, 3, 1104))).name == "alice"
    assert chain.translate_name("Everyone").sid == EVERYONE  # well-known names come first


def test_fixed_names_isolated_and_qualified() -> None:
    fixed = FixedNames()
    assert fixed.lookup_name(None, "Administrators").sid == BUILTIN_ADMINISTRATORS
    assert fixed.lookup_name("BUILTIN", "Administrators").sid == BUILTIN_ADMINISTRATORS


def test_system_accounts_name_file_owners() -> None:
    """uid 0 and gid 0 (file owners sd_for_posix reports) come from NSS."""
    names = directory(system=True).names
    root_user = pwd.getpwuid(0).pw_name
    root_group = grp.getgrgid(0).gr_name
    assert names.lookup_sid(unix_user_sid(0)).qualified == f"Unix User\\{root_user}"
    assert names.lookup_sid(unix_group_sid(0)).qualified == f"Unix Group\\{root_group}"
    assert names.translate_name(f"Unix Group\\{root_group}").sid == unix_group_sid(0)
    assert names.translate_name(root_user).sid == unix_user_sid(0)


def test_smb_users_come_before_system_accounts() -> None:
    accounts = PosixAccounts(lambda: USERS)
    assert accounts.user_id("bob") == 4242
    assert accounts.user_name(4242) == "bob"
    assert accounts.user_id("carol") is None
    assert accounts.user_id("no\x00such") is None
    assert accounts.user_name(2**40) is None
    assert accounts.user_name(os.geteuid()) is not None


def test_local_names_without_system_accounts() -> None:
    local = LocalNames(account_domain("SMBCA", "smbca"), PosixAccounts(lambda: None, system=False))
    assert local.lookup_name(None, "root") is None
    assert local.lookup_sid(unix_user_sid(0)) is None


class _Dc:
    """A DC's answers for ``DomainNames`` (the real one is tests/ad's
    test_smbcacls_domain): what it was asked, and one user, bob, RID 1104."""

    def __init__(self, domain_sid: str, reachable: bool = True) -> None:
        from smbca.auth.dc_names import DcTranslation
        self.asked: list[str] = []
        self.reachable = reachable
        self.bob = DcTranslation(f"{domain_sid}-1104", SidType.USER, "bob", "SMBCA", domain_sid)

    def lookup_names(self, names):
        self.asked += names
        if not self.reachable:
            raise ConnectionError("no DC")
        return [self.bob if name.casefold() == "smbca\\bob" else None for name in names]

    def lookup_sids(self, sids):
        self.asked += sids
        return [self.bob if sid == self.bob.sid else None for sid in sids]


def _joined():
    from smbcad.rpc.names import DomainNames
    domain = Domain("SMBCA", Sid.from_string("S-1-5-21-1-2-3"))
    dc = _Dc(str(domain.sid))
    return DomainNames(domain, "SMBCA.TEST", dc, clock=lambda: 0.0), dc


def test_the_joined_domains_names_go_to_the_dc_and_only_they() -> None:
    joined, dc = _joined()
    for domain in (None, "smbca", "SMBCA.TEST"):
        found = joined.lookup_name(domain, "Bob")
        assert found is not None and str(found.sid) == "S-1-5-21-1-2-3-1104"
        assert found.qualified == "SMBCA\\bob" and found.sid_type == SidType.USER
    assert dc.asked == ["SMBCA\\Bob"]                       # the answer is kept
    assert joined.lookup_name("OTHER", "bob") is None
    assert joined.lookup_sid(Sid.from_string("S-1-5-21-9-9-9-1104")) is None
    assert dc.asked == ["SMBCA\\Bob"]                       # a foreign domain is not asked
    assert joined.lookup_sid(Sid.from_string("S-1-5-21-1-2-3-1104")).qualified == "SMBCA\\bob"
    assert joined.lookup_name(None, "smbca").sid_type == SidType.DOMAIN
    assert joined.lookup_sid(Sid.from_string("S-1-5-21-1-2-3")).sid_type == SidType.DOMAIN


def test_an_unreachable_dc_leaves_the_name_unmapped_and_is_asked_again() -> None:
    joined, dc = _joined()
    dc.reachable = False
    assert joined.lookup_name(None, "bob") is None
    dc.reachable = True
    assert joined.lookup_name(None, "bob") is not None        # a failure is not kept
