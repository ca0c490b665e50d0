"""Open.DurableOwner with the user's SID (issue 12 item 8): a reconnect or
replay matches a domain user by SID, a local user (or a record the previous
release wrote, which has no SID) by name."""

from types import SimpleNamespace

from smbca.auth import Identity
from smbcad.server import durable

ALICE_SID = "S-1-5-21-1004336348-1177238915-682003330-1105"


def session(user, domain, sid=None):
    return SimpleNamespace(identity=Identity(user, domain, sid=sid))


def owned_by(session_):
    open_ = SimpleNamespace()
    durable.set_owner(open_, session_)
    return open_


def test_a_domain_users_open_records_its_sid():
    open_ = owned_by(session("Alice", "smbca", ALICE_SID.lower()))
    assert open_.durable_owner == ("alice", "SMBCA") and open_.durable_owner_sid == ALICE_SID


def test_the_same_sid_under_another_logon_name_is_the_owner():
    """Kerberos gives alice/SMBCA, an NTLM logon may say alice@smbca.test with no domain."""
    open_ = owned_by(session("alice", "SMBCA", ALICE_SID))
    assert durable.is_owner(open_.durable_owner, open_.durable_owner_sid,
                            session("alice@smbca.test", "", ALICE_SID))


def test_another_sid_or_none_is_not_the_owner_even_with_the_same_name():
    open_ = owned_by(session("alice", "SMBCA", ALICE_SID))
    other = ALICE_SID[:-4] + "1106"
    assert not durable.is_owner(open_.durable_owner, open_.durable_owner_sid,
                                session("alice", "SMBCA", other))
    assert not durable.is_owner(open_.durable_owner, open_.durable_owner_sid,
                                session("alice", "SMBCA"))         # a local "alice"


def test_an_owner_without_a_sid_matches_by_name():
    """A local user's open, or one adopted from the previous release's record."""
    assert durable.is_owner(("alice", "SMBCA"), "", session("ALICE", "smbca", ALICE_SID))
    assert durable.is_owner(("bob", "WORKGROUP"), "", session("bob", "workgroup"))
    assert not durable.is_owner(("bob", "WORKGROUP"), "", session("carol", "WORKGROUP"))


def test_a_channel_binds_for_the_same_sid_and_not_for_another():
    """Session binding (3.3.5.5.2) compares the SIDs of domain users too."""
    from smbcad.server.channels import same_user
    alice = Identity("alice", "SMBCA", sid=ALICE_SID)
    assert same_user(alice, Identity("alice@smbca.test", "", sid=ALICE_SID))
    assert not same_user(alice, Identity("alice", "SMBCA", sid=ALICE_SID[:-4] + "1106"))
    assert same_user(Identity("bob", "WORKGROUP"), Identity("BOB", "workgroup"))
