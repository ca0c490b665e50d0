"""Domain users as themselves on disk (issue 12 items 4 and 5) against the
real Samba AD DC: two users' files carry their two mapped owners, a second
server with the other node's config computes the same ids, and a DACL that
grants a domain group lets its member in and keeps a non-member out."""

import os

import pytest

import samba_dc
from ad_member import MemberSmbcad
from smbcad.proto.fscc import Ace, AceFlags, AceType, Acl, SdControl, SecurityDescriptor, Sid
from smbcad.vfs import ntacl

pytestmark = pytest.mark.root

LOW = 200000                      # identity.idmap's range for the DC's domain
IDMAP = f"""identity:
  idmap:
    - {{domain: {samba_dc.DOMAIN}, range: [{LOW}, {LOW + 99999}]}}
"""
OTHER_NODE_PORT = 1446
FILE_ALL_ACCESS = 0x001F01FF
INHERIT = AceFlags.OBJECT_INHERIT | AceFlags.CONTAINER_INHERIT


@pytest.fixture(scope="module")
def mapped_smbcad(dc, joined, tmp_path_factory):
    server = MemberSmbcad(dc, tmp_path_factory.mktemp("idmap"), joined["keytab"],
                          config_extra=IDMAP)
    yield server
    server.stop()


def smbclient(dc, ccache, commands: str, port: int = 445):
    argv = ["smbclient", "//fs1/share", "-N", "-I", dc.member_address, "-p", str(port),
            "--use-kerberos=required", "-c", commands]
    return dc.member_run(argv, env=dc.env(KRB5CCNAME=f"FILE:{ccache}"), check=False,
                         timeout=60)


def output(result) -> str:
    return (result.stdout + result.stderr).decode(errors="replace")


def rid_of(dc, kind: str, name: str) -> int:
    return int(dc.object_sid(kind, name).rpartition("-")[2])


def expected_ids(dc, user: str) -> tuple[int, int]:
    return LOW + rid_of(dc, "user", user), LOW + 513          # Domain Users: primary


def put(dc, ccache, tmp_path, name: str, port: int = 445):
    source = tmp_path / "source.txt"
    source.write_bytes(b"owned\n")
    return smbclient(dc, ccache, f"put {source} {name}", port)


def test_two_domain_users_files_have_their_two_mapped_owners(dc, mapped_smbcad, ccaches,
                                                             tmp_path):
    for user in ("alice", "bob"):
        result = put(dc, ccaches[user], tmp_path, f"{user}.txt")
        assert result.returncode == 0, output(result) + mapped_smbcad.log()
        made = os.stat(mapped_smbcad.share / f"{user}.txt")
        assert (made.st_uid, made.st_gid) == expected_ids(dc, user)
        uid, gid = expected_ids(dc, user)
        assert f"set up for SMBCA\\{user}, uid {uid} gid {gid}" in mapped_smbcad.log()
    result = smbclient(dc, ccaches["alice"], "mkdir alices-dir")
    assert result.returncode == 0, output(result)
    made = os.stat(mapped_smbcad.share / "alices-dir")
    assert (made.st_uid, made.st_gid) == expected_ids(dc, "alice")


def test_the_other_nodes_config_maps_to_the_same_ids(dc, joined, mapped_smbcad, ccaches,
                                                      tmp_path):
    """A second smbcad, as the partner node would run it (its own config
    file, state and share), gives alice the same owner: nothing is shared."""
    other = MemberSmbcad(dc, tmp_path / "other", joined["keytab"], port=OTHER_NODE_PORT,
                         config_extra=IDMAP)
    try:
        assert other.config_path != mapped_smbcad.config_path
        result = put(dc, ccaches["alice"], tmp_path, "on-the-partner.txt", OTHER_NODE_PORT)
        assert result.returncode == 0, output(result) + other.log()
        made = os.stat(other.share / "on-the-partner.txt")
        assert (made.st_uid, made.st_gid) == expected_ids(dc, "alice")
    finally:
        other.stop()


def test_a_dacl_granting_a_domain_group_lets_only_its_members_in(dc, mapped_smbcad, ccaches,
                                                                 tmp_path):
    staff = Sid.from_string(dc.object_sid("group", dc.group))       # alice is in it, bob not
    folder = mapped_smbcad.share / "staff-only"
    folder.mkdir()
    descriptor = SecurityDescriptor(
        SdControl.SELF_RELATIVE | SdControl.DACL_PRESENT | SdControl.DACL_PROTECTED,
        Sid.from_string("S-1-5-32-544"), Sid.from_string("S-1-5-32-544"), None,
        Acl((Ace(AceType.ACCESS_ALLOWED, INHERIT, FILE_ALL_ACCESS, staff),)))
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert ntacl.write(fd, descriptor.encode())
    finally:
        os.close(fd)
    source = tmp_path / "in.txt"
    source.write_bytes(b"staff\n")
    result = smbclient(dc, ccaches["alice"], f"put {source} staff-only\\alice.txt; "
                       "ls staff-only\\*")
    assert result.returncode == 0, output(result) + mapped_smbcad.log()
    assert "alice.txt" in output(result)
    made = os.stat(folder / "alice.txt")
    assert (made.st_uid, made.st_gid) == expected_ids(dc, "alice")
    for commands in ("ls staff-only\\*", f"put {source} staff-only\\bob.txt"):
        result = smbclient(dc, ccaches["bob"], commands)
        assert "NT_STATUS_ACCESS_DENIED" in output(result), output(result)
    assert not (folder / "bob.txt").exists()


def test_a_rid_past_the_range_is_refused_at_session_setup(dc, joined, ccaches, tmp_path):
    narrow = f"""identity:
  idmap:
    - {{domain: {samba_dc.DOMAIN}, range: [{LOW}, {LOW + 600}]}}
"""
    server = MemberSmbcad(dc, tmp_path / "narrow", joined["keytab"], port=OTHER_NODE_PORT,
                          config_extra=narrow)
    try:
        result = smbclient(dc, ccaches["alice"], "ls", OTHER_NODE_PORT)
        assert result.returncode != 0
        assert "NT_STATUS_NO_SUCH_USER" in output(result), output(result)
        assert f"RID {rid_of(dc, 'user', 'alice')} is past the range" in server.log()
    finally:
        server.stop()
