"""server/security.py on create: the new file's descriptor from its parent's and
the CREATE's SD buffer ([MS-DTYP] 2.5.3.4), stored and mapped to the mode."""

import os

import pytest

from smbca.auth.identity import Identity
from smbcad.proto.fscc import (Ace, AceFlags, AceType, Acl, SdControl, SecurityDescriptor,
                               SecurityInformation as SI, Sid, unix_group_sid, unix_user_sid)
from smbcad.server import security
from smbcad.vfs import ShareFs

WRITE_DATA, READ_DATA, FILE_ALL = 0x2, 0x1, 0x001F01FF
EVERYONE = Sid.from_string("S-1-1-0")
SYSTEM = Sid.from_string("S-1-5-18")
CREATOR_OWNER = Sid.from_string("S-1-3-0")
ALICE = Identity("alice", "", uid=1000, gid=100)
OI, CI, ID = AceFlags.OBJECT_INHERIT, AceFlags.CONTAINER_INHERIT, AceFlags.INHERITED
SR, DP = SdControl.SELF_RELATIVE, SdControl.DACL_PRESENT
AI, AI_REQ = SdControl.DACL_AUTO_INHERITED, SdControl.DACL_COMPUTED_INHERITANCE_REQUIRED


@pytest.fixture
def fs(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    try:
        os.setxattr(share, "security.smbca.probe", b"1")
        os.removexattr(share, "security.smbca.probe")
    except OSError:
        pytest.skip("security.* xattrs need root and a file system that keeps them")
    with ShareFs(str(share)) as opened:
        yield opened


def _allow(sid, mask, flags=0):
    return Ace(AceType.ACCESS_ALLOWED, flags, mask, sid)


def _set_dir(fs, name, *aces, control=0):
    handle = fs.mkdir((name,))
    try:
        sd = SecurityDescriptor(SR | DP | control, None, None, None, Acl(tuple(aces)))
        security.apply(fs, handle, True, sd.encode(), SI.DACL, absent_dacl_is_null=True)
    finally:
        handle.close()


def _create(fs, path, creator=None, directory=False):
    token = security.session_token(fs, ALICE)
    handle = fs.open(tuple(path.split("/")), write=True, create=True, directory=directory)
    try:
        security.assign_on_create(fs, handle, path.rpartition("/")[0], creator, token)
        return security.current(fs, handle, directory), fs.posix_identity(handle)
    finally:
        handle.close()


def test_parent_without_a_stored_descriptor_keeps_the_mode_mapping(fs):
    fs.mkdir(("plain",)).close()
    sd, _ = _create(fs, "plain/f")
    assert fs.stored_security_at("plain/f") is None
    assert sd.owner == unix_user_sid(os.geteuid())


def test_creator_owner_and_auto_inherit_are_applied_and_stored(fs):
    _set_dir(fs, "d", _allow(CREATOR_OWNER, WRITE_DATA, OI | CI), _allow(EVERYONE, FILE_ALL),
             control=AI | AI_REQ)
    sd, (_, _, mode) = _create(fs, "d/f")
    assert sd.owner == unix_user_sid(1000) and sd.group == unix_group_sid(100)
    assert sd.control == SR | DP | AI
    assert sd.dacl.aces == (_allow(unix_user_sid(1000), WRITE_DATA, ID),)
    assert fs.stored_security_at("d/f") == sd.encode()
    assert mode & 0o777 == 0o200            # the DACL: WRITE_DATA for the owner, nothing else

    sub, _ = _create(fs, "d/sub", directory=True)
    assert sub.dacl.aces == (_allow(unix_user_sid(1000), WRITE_DATA, ID),
                             _allow(CREATOR_OWNER, WRITE_DATA, OI | CI | AceFlags.INHERIT_ONLY
                                    | ID))


def test_nothing_inheritable_gives_owner_and_system(fs):
    _set_dir(fs, "bare", _allow(EVERYONE, FILE_ALL))
    sd, _ = _create(fs, "bare/f")
    assert sd.dacl.aces == (_allow(unix_user_sid(1000), FILE_ALL), _allow(SYSTEM, FILE_ALL))


def test_sd_buffer_is_merged_with_the_parents_aces(fs):
    _set_dir(fs, "d", _allow(EVERYONE, READ_DATA, OI), control=AI | AI_REQ)
    creator = SecurityDescriptor(SR | DP, None, None, None,
                                 Acl((_allow(unix_user_sid(1000), 0x10000000),)))   # GENERIC_ALL
    sd, _ = _create(fs, "d/f", creator.encode())
    assert sd.dacl.aces == (_allow(unix_user_sid(1000), FILE_ALL), _allow(EVERYONE, READ_DATA, ID))
