"""ID mapping of domain SIDs (smbca.auth.idmap, issue 12 item 4) and the
``identity`` config section that sets it up (smbca.config.parse_identity)."""

import pytest

from smbca.auth import Identity
from smbca.auth.idmap import (BUILTIN_ADMINISTRATORS, BUILTIN_BACKUP_OPERATORS, IdentityPolicy,
                              IdMap, IdMapError, IdRange, MappedIds, split_sid)
from smbca.config import ConfigError, Section, parse_identity
from smbca.ntstatus import NtStatus
from smbcad import config as smbcad_config

DOMAIN_SID = "S-1-5-21-1004336348-1177238915-682003330"
OTHER_SID = "S-1-5-21-11-22-33"
ALICE = f"{DOMAIN_SID}-1105"
DOMAIN_USERS = f"{DOMAIN_SID}-513"
STAFF = f"{DOMAIN_SID}-1107"


def example_map() -> IdMap:
    return IdMap([IdRange("EXAMPLE", 100000, 199999), IdRange(OTHER_SID, 300000, 300999)])


def test_split_sid_only_takes_domain_account_sids():
    assert split_sid(ALICE) == (DOMAIN_SID, 1105)
    assert split_sid("s-1-5-21-1-2-3-500") == ("S-1-5-21-1-2-3", 500)
    for other in ("S-1-5-32-544", "S-1-1-0", "S-1-22-1-1000", f"{DOMAIN_SID}", "S-1-5-21-1-2-x-5"):
        assert split_sid(other) is None


def test_uid_is_range_low_plus_rid_for_users_and_groups():
    mapped = example_map().map_ids(ALICE, (DOMAIN_USERS, STAFF, "S-1-18-1"), "example")
    assert mapped == MappedIds(uid=101105, gid=100513, gids=(100513, 101107))


def test_the_same_configuration_gives_the_same_ids_as_another_instance():
    """Both nodes build their own IdMap from the same config: no shared state."""
    first = example_map().map_ids(ALICE, (DOMAIN_USERS, STAFF), "EXAMPLE")
    second = IdMap(list(reversed(example_map().ranges))).map_ids(ALICE, (DOMAIN_USERS, STAFF),
                                                                  "EXAMPLE")
    assert first == second


def test_a_range_by_name_applies_only_to_the_logon_domain():
    idmap = example_map()
    assert idmap.map_ids(ALICE, (DOMAIN_USERS,), "OTHERDOM") is None      # no range for it
    assert idmap.map_ids(ALICE, (DOMAIN_USERS,)) is None                  # no name given


def test_groups_of_another_domain_map_only_by_a_range_keyed_by_their_sid():
    foreign_group = f"{OTHER_SID}-7"
    unranged_group = "S-1-5-21-9-9-9-1000"
    mapped = example_map().map_ids(ALICE, (DOMAIN_USERS, foreign_group, unranged_group),
                                   "EXAMPLE")
    assert mapped.gids == (100513, 300007)


def test_a_user_past_its_range_is_refused_with_no_such_user():
    idmap = IdMap([IdRange("EXAMPLE", 100000, 100999, "identity.idmap[0].range")])
    with pytest.raises(IdMapError) as refused:
        idmap.map_ids(ALICE, (DOMAIN_USERS,), "EXAMPLE")
    assert refused.value.status == NtStatus.NO_SUCH_USER
    assert "RID 1105" in str(refused.value) and "identity.idmap[0].range" in str(refused.value)


def test_a_primary_group_past_its_range_is_refused_and_a_secondary_one_left_out():
    idmap = IdMap([IdRange("EXAMPLE", 100000, 101200)])
    assert idmap.map_ids(ALICE, (DOMAIN_USERS, f"{DOMAIN_SID}-5000"), "EXAMPLE").gids == (100513,)
    with pytest.raises(IdMapError):
        idmap.map_ids(ALICE, (f"{DOMAIN_SID}-5000", DOMAIN_USERS), "EXAMPLE")


def test_an_explicit_primary_group_wins_over_the_first():
    mapped = example_map().map_ids(ALICE, (STAFF, DOMAIN_USERS), "EXAMPLE",
                                   primary_group_sid=DOMAIN_USERS)
    assert (mapped.gid, mapped.gids) == (100513, (100513, 101107))


@pytest.mark.parametrize("ranges, words", [
    ([IdRange("A", 10, 20, "k0"), IdRange("B", 20, 30, "k1")], "k1: range [20, 30] of B overlaps k0"),
    ([IdRange("A", 10, 20, "k0"), IdRange("a", 30, 40, "k1")], "k1: domain a already has a range"),
    ([IdRange("A", 0, 20, "k0")], "k0: range [0, 20]"),
    ([IdRange("A", 30, 20, "k0")], "k0: range [30, 20]"),
])
def test_bad_ranges_are_refused_naming_the_key(ranges, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        IdMap(ranges)


def _policy(data: dict, joined: str | None = "EXAMPLE", local=()) -> IdentityPolicy:
    return parse_identity(Section(data, "identity"), joined, local)


def test_config_gives_the_joined_domain_a_default_range():
    policy = _policy({})
    assert policy.idmap.ranges == (IdRange("EXAMPLE", 1_000_000, 1_999_999,
                                           "identity.default_range"),)
    assert _policy({"default_range": [5000, 9999]}).idmap.id_of(ALICE, ("EXAMPLE", DOMAIN_SID)) \
        == 6105
    assert _policy({}, joined=None).idmap.ranges == ()


def test_config_ranges_by_name_and_by_sid():
    policy = _policy({"idmap": [{"domain": "example", "range": [100000, 199999]},
                                {"domain": OTHER_SID.lower(), "range": [300000, 300999]}]})
    assert {r.domain for r in policy.idmap.ranges} == {"EXAMPLE", OTHER_SID}


@pytest.mark.parametrize("data, local, key", [
    ({"idmap": [{"domain": "A", "range": [100, 200]}, {"domain": "B", "range": [150, 300]}]},
     (), "identity.idmap[1].range"),
    ({"idmap": [{"domain": "A", "range": [100, 200]}], "default_range": [200, 400]},
     (), "identity.default_range"),
    ({"idmap": [{"domain": "A", "range": [1000, 2000]}]}, (("bob", 1500),),
     "identity.idmap[0].range"),
    ({"default_range": [1000, 2000]}, (("bob", 2000),), "identity.default_range"),
    ({"idmap": [{"domain": "A", "range": [1, "x"]}]}, (), "identity.idmap[0].range"),
    ({"idmap": [{"domain": "S-1-5-21-1-2", "range": [1, 2]}]}, (), "identity.idmap[0].domain"),
    ({"idmap": [{"domain": "A", "rnage": [1, 2]}]}, (), "identity.idmap[0].rnage"),
    ({"admins": ["Domain Admins"]}, (), "identity.admins[0]"),
    ({"idmp": []}, (), "identity.idmp"),
])
def test_config_refusals_name_the_key(data, local, key):
    with pytest.raises(ConfigError) as refused:
        _policy(data, local=local)
    assert refused.value.key == key


def test_smbcad_refuses_a_range_holding_a_local_users_uid_at_start_up(tmp_path):
    share = tmp_path / "s"
    share.mkdir()
    keytab = tmp_path / "krb5.keytab"
    keytab.write_bytes(b"\x05\x02")
    smbpasswd = tmp_path / "smbpasswd"
    smbpasswd.write_text("carol:1000500:" + "X" * 32 + ":" + "0" * 32 + ":[U          ]:LCT-00000000:\n")
    path = tmp_path / "smbcad.yaml"
    path.write_text(f"server: {{domain: EXAMPLE, keytab: {keytab}}}\n"
                    f"shares: [{{name: s, path: {share}}}]\nsmbpasswd_file: {smbpasswd}\n")
    with pytest.raises(ConfigError) as refused:
        smbcad_config.load_yaml(str(path))
    assert refused.value.key == "identity.default_range" and "carol" in str(refused.value)
    path.write_text(path.read_text() + "identity: {default_range: [2000000, 2999999]}\n")
    loaded = smbcad_config.load_yaml(str(path))
    assert loaded.identity.idmap.ranges[0].low == 2000000


def test_policy_maps_a_domain_user_and_leaves_a_local_one():
    policy = _policy({"idmap": [{"domain": "EXAMPLE", "range": [100000, 199999]}]})
    domain_user = Identity("alice", "EXAMPLE", sid=ALICE, group_sids=(DOMAIN_USERS, STAFF))
    applied = policy.apply(domain_user)
    assert (applied.uid, applied.gid, applied.gids) == (101105, 100513, (100513, 101107))
    local = Identity("bob", "WORKGROUP", uid=1000, gid=1000)
    assert policy.apply(local).gids == (1000,) and policy.apply(local).uid == 1000
    guest = Identity("guest", "", is_guest=True)
    assert policy.apply(guest) is guest
    unranged = Identity("eve", "ELSEWHERE", sid=f"{OTHER_SID}-5", group_sids=(f"{OTHER_SID}-513",))
    assert policy.apply(unranged).uid is None


def test_admins_and_backup_operators_get_builtin_groups_and_privileges():
    policy = _policy({"admins": [STAFF.lower()], "backup_operators": [ALICE]})
    applied = policy.apply(Identity("alice", "EXAMPLE", sid=ALICE,
                                    group_sids=(DOMAIN_USERS, STAFF)))
    assert applied.group_sids[:2] == (DOMAIN_USERS, STAFF)
    assert BUILTIN_ADMINISTRATORS in applied.group_sids
    assert BUILTIN_BACKUP_OPERATORS in applied.group_sids
    assert {"SeBackupPrivilege", "SeRestorePrivilege", "SeSecurityPrivilege",
            "SeTakeOwnershipPrivilege"} == set(applied.privileges)
    bob = policy.apply(Identity("bob", "EXAMPLE", sid=f"{DOMAIN_SID}-1106",
                                group_sids=(DOMAIN_USERS,)))
    assert BUILTIN_ADMINISTRATORS not in bob.group_sids and not bob.privileges
