"""server/security.py: session tokens, access checks of stored descriptors on
open ([MS-FSA] 2.1.5.1.2.1), and owner/group changes applied as chown."""

import os

import pytest

from smbca.auth.identity import Identity
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (Ace, AceType, Acl, SdControl, SecurityDescriptor,
                               SecurityInformation as SI, Sid, unix_group_sid, unix_user_sid)
from smbcad.proto.status import NtStatus
from smbcad.server import security
from smbcad.vfs import ShareFs

READ_DATA, WRITE_DATA, ADD_FILE, DELETE_CHILD = 0x1, 0x2, 0x2, 0x40
LIST_DIRECTORY, READ_ATTRIBUTES = 0x1, 0x80
DELETE, READ_CONTROL, WRITE_DAC = 0x10000, 0x20000, 0x40000
MAXIMUM_ALLOWED, GENERIC_READ = 0x02000000, 0x80000000
FILE_GENERIC_READ, FILE_ALL_ACCESS = 0x00120089, 0x001F01FF
EVERYONE = Sid.from_string("S-1-1-0")
ALICE = Identity("alice", "", uid=1000, gid=100)
UNMAPPED = Identity("bob", "")


@pytest.fixture
def fs(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    probe = share / ".probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "security.smbca.probe", b"1")     # descriptors live there
    except OSError:
        pytest.skip("security.* xattrs need root and a file system that keeps them")
    probe.unlink()
    with ShareFs(str(share)) as opened:
        yield opened


def _store(fs, path, *aces, owner=None, null=False):
    handle = fs.open(tuple(path.split("/")))
    try:
        acl = None if null else Acl(tuple(aces))
        descriptor = SecurityDescriptor(SdControl.SELF_RELATIVE | SdControl.DACL_PRESENT,
                                        owner or unix_user_sid(1000), unix_group_sid(100),
                                        None, acl)
        fs.set_security(handle, descriptor.encode())
    finally:
        handle.close()


def _make(fs, *names, directory=False):
    for name in names:
        fs.open(tuple(name.split("/")), write=True, create=True, directory=directory).close()


def _allow(sid, mask):
    return Ace(AceType.ACCESS_ALLOWED, 0, mask, sid)


def test_tokens(fs):
    token = security.session_token(fs, ALICE)
    assert token.user == unix_user_sid(1000)
    assert {unix_group_sid(100), EVERYONE, Sid.from_string("S-1-5-11")} <= token.groups
    unmapped = security.session_token(fs, UNMAPPED)
    assert unmapped.user == unix_user_sid(os.geteuid())      # it owns what it creates
    guest = security.session_token(fs, Identity("guest", "", is_guest=True))
    assert EVERYONE in guest.groups and Sid.from_string("S-1-5-11") not in guest.groups
    anonymous = security.session_token(fs, Identity("", "", is_anonymous=True))
    assert anonymous.user == Sid.from_string("S-1-5-7") and EVERYONE not in anonymous.groups


def test_no_stored_descriptor_leaves_it_to_the_caller(fs):
    _make(fs, "plain")
    assert security.check_open(fs, "plain", security.session_token(fs, ALICE), READ_DATA) is None


def test_stored_descriptor_decides(fs):
    _make(fs, "f")
    _store(fs, "f", _allow(EVERYONE, FILE_GENERIC_READ))
    alice = security.session_token(fs, ALICE)
    assert security.check_open(fs, "f", alice, GENERIC_READ) == FILE_GENERIC_READ
    with pytest.raises(SmbError) as denied:
        security.check_open(fs, "f", alice, WRITE_DATA)
    assert denied.value.status == NtStatus.ACCESS_DENIED


def test_empty_dacl_owner_and_parent_rights(fs):
    _make(fs, "f")
    _store(fs, "f")                                   # owned by alice, no ACEs
    alice = security.session_token(fs, ALICE)
    assert security.check_open(fs, "f", alice, READ_CONTROL) == READ_CONTROL
    # The share root has no stored descriptor: it grants DELETE and READ_ATTRIBUTES.
    assert security.check_open(fs, "f", alice, DELETE) == DELETE
    assert security.check_open(fs, "f", alice, MAXIMUM_ALLOWED) == \
        READ_CONTROL | WRITE_DAC | DELETE | READ_ATTRIBUTES
    bob = security.session_token(fs, Identity("bob", "", uid=1001))
    with pytest.raises(SmbError):
        security.check_open(fs, "f", bob, READ_CONTROL)


def test_parent_descriptor_limits_delete_and_create(fs):
    _make(fs, "d", directory=True)
    _make(fs, "d/f")
    _store(fs, "d/f")
    _store(fs, "d", _allow(EVERYONE, LIST_DIRECTORY))
    alice = security.session_token(fs, ALICE)
    with pytest.raises(SmbError):
        security.check_open(fs, "d/f", alice, DELETE)
    assert security.check_open(fs, "d/f", alice, READ_ATTRIBUTES) == READ_ATTRIBUTES
    with pytest.raises(SmbError):
        security.check_create(fs, "d", alice, directory=False)
    _store(fs, "d", _allow(EVERYONE, ADD_FILE | DELETE_CHILD))
    assert security.check_open(fs, "d/f", alice, DELETE) == DELETE
    security.check_create(fs, "d", alice, directory=False)
    security.check_create(fs, "", alice, directory=True)       # root: nothing stored


def test_null_dacl_and_maximal_access_of(fs):
    _make(fs, "f")
    _store(fs, "f", null=True)
    handle = fs.open(("f",))
    try:
        bob = security.session_token(fs, Identity("bob", "", uid=1001))
        assert security.maximal_access_of(fs, handle, bob) == FILE_ALL_ACCESS
    finally:
        handle.close()


def _descriptor(owner=None, group=None, dacl=None, present=True):
    control = SdControl.SELF_RELATIVE | (SdControl.DACL_PRESENT if present else 0)
    return SecurityDescriptor(control, owner, group, None, dacl).encode()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_and_group_are_chowned(fs):
    _make(fs, "f")
    handle = fs.open(("f",), write=True)
    try:
        security.apply(fs, handle, False, _descriptor(owner=unix_user_sid(4242), present=False),
                       SI.OWNER)
        assert fs.posix_identity(handle)[0] == 4242
        security.apply(fs, handle, False, _descriptor(group=unix_group_sid(4343), present=False),
                       SI.GROUP)
        assert fs.posix_identity(handle)[:2] == (4242, 4343)
        # A SID with no POSIX id changes the descriptor only.
        other = Sid.from_string("S-1-5-21-1-2-3-500")
        security.apply(fs, handle, False, _descriptor(owner=other, present=False), SI.OWNER)
        assert fs.posix_identity(handle)[0] == 4242
        assert security.current(fs, handle, False).owner == other
    finally:
        handle.close()


def test_set_info_without_dacl_present_is_a_null_dacl(fs):
    _make(fs, "f")
    handle = fs.open(("f",), write=True)
    try:
        security.apply(fs, handle, False, _descriptor(dacl=Acl(()), present=True), SI.DACL,
                       absent_dacl_is_null=True)
        assert security.current(fs, handle, False).dacl == Acl(())
        assert fs.posix_identity(handle)[2] & 0o777 == 0o200      # owner write stays: no READONLY
        assert not fs.stat(handle).attributes & 0x1
        security.apply(fs, handle, False, _descriptor(present=False), SI.DACL,
                       absent_dacl_is_null=True)
        stored = security.current(fs, handle, False)
        assert stored.dacl is None and stored.control & SdControl.DACL_PRESENT
        assert fs.posix_identity(handle)[2] & 0o777 == 0o777      # as Samba maps a NULL DACL
        # CREATE's SecD without DACL_PRESENT keeps the DACL there is.
        security.apply(fs, handle, False, _descriptor(dacl=Acl(()), present=True), SI.DACL)
        security.apply(fs, handle, False, _descriptor(present=False), SI.DACL)
        assert security.current(fs, handle, False).dacl == Acl(())
    finally:
        handle.close()


DOMAIN = "S-1-5-21-1004336348-1177238915-682003330"
CAROL = Identity("carol", "EXAMPLE", uid=101105, gid=100513, sid=f"{DOMAIN}-1105",
                 group_sids=(f"{DOMAIN}-513", f"{DOMAIN}-1107"), gids=(100513, 101107),
                 privileges=("SeBackupPrivilege",))
DAVE = Identity("dave", "EXAMPLE", uid=101106, gid=100513, sid=f"{DOMAIN}-1106",
                group_sids=(f"{DOMAIN}-513",), gids=(100513,))


def test_a_domain_users_token_has_its_sids_its_unix_ids_and_privileges(fs):
    token = security.session_token(fs, CAROL)
    assert token.user == Sid.from_string(f"{DOMAIN}-1105")
    assert token.primary_group == Sid.from_string(f"{DOMAIN}-513")
    assert {Sid.from_string(f"{DOMAIN}-1107"), unix_user_sid(101105), unix_group_sid(100513),
            unix_group_sid(101107), EVERYONE} <= token.groups
    assert token.privileges == frozenset({"SeBackupPrivilege"})


def test_a_dacl_granting_a_domain_group_lets_its_members_in_only(fs):
    _make(fs, "staff")
    _store(fs, "staff", _allow(Sid.from_string(f"{DOMAIN}-1107"), FILE_ALL_ACCESS))
    assert security.check_open(fs, "staff", security.session_token(fs, CAROL),
                               READ_DATA) == READ_DATA
    with pytest.raises(SmbError) as denied:
        security.check_open(fs, "staff", security.session_token(fs, DAVE), READ_DATA)
    assert denied.value.status == NtStatus.ACCESS_DENIED


def test_a_mode_derived_group_matches_a_domain_users_unix_gid(fs):
    _make(fs, "by-gid")
    _store(fs, "by-gid", _allow(unix_group_sid(101107), READ_DATA))
    assert security.check_open(fs, "by-gid", security.session_token(fs, CAROL),
                               READ_DATA) == READ_DATA


def test_a_new_file_is_owned_by_the_sessions_uid_and_primary_gid(fs):
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    handle = fs.open(("owned",), write=True, create=True)
    try:
        security.own_new_file(fs, handle, CAROL)
        assert fs.posix_identity(handle)[:2] == (101105, 100513)
        security.own_new_file(fs, handle, UNMAPPED)          # no uid: left as it is
        assert fs.posix_identity(handle)[:2] == (101105, 100513)
    finally:
        handle.close()


def test_backup_and_restore_privileges_need_backup_intent(fs):
    _make(fs, "locked")
    _make(fs, "closed", directory=True)
    _store(fs, "locked")                                     # an empty DACL: nobody
    _store(fs, "closed")
    backup = security.session_token(fs, CAROL)               # SeBackupPrivilege only
    with pytest.raises(SmbError):
        security.check_open(fs, "locked", backup, READ_DATA)
    assert security.check_open(fs, "locked", backup, READ_DATA | READ_CONTROL,
                               backup_intent=True) == READ_DATA | READ_CONTROL
    with pytest.raises(SmbError):                            # writing needs the restore one
        security.check_open(fs, "locked", backup, WRITE_DATA, backup_intent=True)
    assert security.check_open(fs, "locked", backup, MAXIMUM_ALLOWED,
                               backup_intent=True) & FILE_GENERIC_READ == FILE_GENERIC_READ
    restore = security.session_token(fs, Identity(
        "erin", "EXAMPLE", uid=101108, gid=100513, sid=f"{DOMAIN}-1108",
        group_sids=(f"{DOMAIN}-513",), privileges=("SeRestorePrivilege",)))
    with pytest.raises(SmbError):
        security.check_create(fs, "closed", restore, directory=False)
    security.check_create(fs, "closed", restore, directory=False, backup_intent=True)
    assert security.check_open(fs, "locked", restore, WRITE_DATA | WRITE_DAC,
                               backup_intent=True) == WRITE_DATA | WRITE_DAC


def test_a_mapped_domain_owner_and_group_are_chowned(fs):
    from smbca.auth.idmap import IdMap, IdRange
    id_of = security.domain_ids(IdMap([IdRange("EXAMPLE", 100000, 101999)]), CAROL)
    _make(fs, "d")
    handle = fs.open(("d",), write=True)
    try:
        dave, staff = Sid.from_string(DAVE.sid), Sid.from_string(f"{DOMAIN}-513")
        security.apply(fs, handle, False, _descriptor(owner=dave, group=staff, present=False),
                       SI.OWNER | SI.GROUP, id_of=id_of)
        assert fs.posix_identity(handle)[:2] == (101106, 100513)
        # past the range (RID 5000) or of an unranged domain: the descriptor only
        for owner in (f"{DOMAIN}-5000", "S-1-5-21-9-9-9-1000"):
            security.apply(fs, handle, False, _descriptor(owner=Sid.from_string(owner),
                                                          present=False), SI.OWNER, id_of=id_of)
            assert fs.posix_identity(handle)[0] == 101106
            assert str(security.current(fs, handle, False).owner) == owner
    finally:
        handle.close()
