"""ACL inheritance on create ([MS-DTYP] 2.5.3.4), pinned as vectors.

The parent × child-kind table is smbtorture's smb2.acls.INHERITANCE table
(source4/torture/smb2/acls.c ``test_inheritance``, recorded against Windows):
a parent DACL of CREATOR OWNER:WRITE_DATA with the listed flags plus an
Everyone ACE that is not inheritable.  The auto-inherit rows follow
smb2.acls.INHERITFLAGS; the rest follows the text of 2.5.3.4.1-2.5.3.4.3.
"""

import pytest

from smbcad.proto.fscc import Ace, AceFlags, AceType, Acl, SdControl, SecurityDescriptor, Sid
from smbcad.proto.fscc.inherit import (create_security_descriptor, default_dacl,
                                       inherited_aces, normalize_set)

OWNER = Sid.from_string("S-1-22-1-1000")
GROUP = Sid.from_string("S-1-22-2-100")
OTHER = Sid.from_string("S-1-22-1-2000")
EVERYONE = Sid.from_string("S-1-1-0")
SYSTEM = Sid.from_string("S-1-5-18")
CREATOR_OWNER = Sid.from_string("S-1-3-0")
CREATOR_GROUP = Sid.from_string("S-1-3-1")

OI, CI = AceFlags.OBJECT_INHERIT, AceFlags.CONTAINER_INHERIT
NP, IO, ID = AceFlags.NO_PROPAGATE_INHERIT, AceFlags.INHERIT_ONLY, AceFlags.INHERITED
WRITE_DATA, READ_DATA = 0x2, 0x1
FILE_ALL = 0x001F01FF
GENERIC_READ, FILE_GENERIC_READ = 0x80000000, 0x00120089
SR, DP = SdControl.SELF_RELATIVE, SdControl.DACL_PRESENT
AI, PROTECTED = SdControl.DACL_AUTO_INHERITED, SdControl.DACL_PROTECTED
AI_REQ = SdControl.DACL_COMPUTED_INHERITANCE_REQUIRED


def allow(sid, mask, flags=0):
    return Ace(AceType.ACCESS_ALLOWED, flags, mask, sid)


def deny(sid, mask, flags=0):
    return Ace(AceType.ACCESS_DENIED, flags, mask, sid)


def parent_sd(*aces, control=0):
    return SecurityDescriptor(SR | DP | control, OTHER, GROUP, None, Acl(tuple(aces)))


def child(parent, *, container, creator=None):
    return create_security_descriptor(parent, creator, is_container=container,
                                      token_owner=OWNER, token_group=GROUP)


DEFAULT = (allow(OWNER, FILE_ALL), allow(SYSTEM, FILE_ALL))

# parent flags -> (file's DACL, directory's DACL), as smb2.acls.INHERITANCE expects.
TORTURE_TABLE = [
    (0, DEFAULT, DEFAULT),
    (OI, (allow(OWNER, WRITE_DATA),), (allow(CREATOR_OWNER, WRITE_DATA, OI | IO),)),
    (CI, DEFAULT, (allow(OWNER, WRITE_DATA), allow(CREATOR_OWNER, WRITE_DATA, CI | IO))),
    (OI | CI, (allow(OWNER, WRITE_DATA),),
     (allow(OWNER, WRITE_DATA), allow(CREATOR_OWNER, WRITE_DATA, OI | CI | IO))),
    (NP, DEFAULT, DEFAULT),
    (NP | OI, (allow(OWNER, WRITE_DATA),), DEFAULT),
    (NP | CI, DEFAULT, (allow(OWNER, WRITE_DATA),)),
    (NP | CI | OI, (allow(OWNER, WRITE_DATA),), (allow(OWNER, WRITE_DATA),)),
    (IO, DEFAULT, DEFAULT),
    (IO | OI, (allow(OWNER, WRITE_DATA),), (allow(CREATOR_OWNER, WRITE_DATA, OI | IO),)),
    (IO | CI, DEFAULT, (allow(OWNER, WRITE_DATA), allow(CREATOR_OWNER, WRITE_DATA, CI | IO))),
    (IO | CI | OI, (allow(OWNER, WRITE_DATA),),
     (allow(OWNER, WRITE_DATA), allow(CREATOR_OWNER, WRITE_DATA, OI | CI | IO))),
    (IO | NP, DEFAULT, DEFAULT),
    (IO | NP | OI, (allow(OWNER, WRITE_DATA),), DEFAULT),
    (IO | NP | CI, DEFAULT, (allow(OWNER, WRITE_DATA),)),
    (IO | NP | CI | OI, (allow(OWNER, WRITE_DATA),), (allow(OWNER, WRITE_DATA),)),
]


@pytest.mark.parametrize("flags, file_aces, dir_aces", TORTURE_TABLE,
                         ids=[f"parent-0x{row[0]:02x}" for row in TORTURE_TABLE])
def test_torture_inheritance_table(flags, file_aces, dir_aces):
    parent = parent_sd(allow(CREATOR_OWNER, WRITE_DATA, flags), allow(EVERYONE, FILE_ALL))
    for container, expected in ((False, file_aces), (True, dir_aces)):
        new = child(parent, container=container)
        assert new.dacl.aces == expected
        assert new.owner == OWNER and new.group == GROUP
        assert new.control == SR | DP


def test_plain_ace_passes_on_as_one_ace_on_a_directory():
    parent = parent_sd(allow(EVERYONE, READ_DATA, OI | CI))
    assert child(parent, container=True).dacl.aces == (allow(EVERYONE, READ_DATA, OI | CI),)
    assert child(parent, container=False).dacl.aces == (allow(EVERYONE, READ_DATA),)


def test_generic_rights_are_split_on_a_directory_and_mapped_on_a_file():
    parent = parent_sd(allow(EVERYONE, GENERIC_READ, OI | CI))
    assert child(parent, container=True).dacl.aces == (
        allow(EVERYONE, FILE_GENERIC_READ), allow(EVERYONE, GENERIC_READ, OI | CI | IO))
    assert child(parent, container=False).dacl.aces == (allow(EVERYONE, FILE_GENERIC_READ),)


def test_creator_group_is_the_new_group():
    parent = parent_sd(allow(CREATOR_GROUP, READ_DATA, OI))
    assert child(parent, container=False).dacl.aces == (allow(GROUP, READ_DATA),)


def test_order_and_deny_aces_are_kept():
    parent = parent_sd(deny(OTHER, WRITE_DATA, OI), allow(EVERYONE, FILE_ALL, OI),
                       allow(OTHER, READ_DATA))
    assert child(parent, container=False).dacl.aces == (deny(OTHER, WRITE_DATA),
                                                        allow(EVERYONE, FILE_ALL))


def test_auto_inherited_parent_marks_aces_and_child():
    # smb2.acls.INHERITFLAGS: AUTO_INHERITED on the parent gives INHERITED_ACE
    # ACEs and an AUTO_INHERITED child; PROTECTED on the parent does not pass on.
    parent = parent_sd(allow(OWNER, WRITE_DATA, OI | CI), allow(EVERYONE, FILE_ALL),
                       control=AI | PROTECTED)
    new = child(parent, container=False)
    assert new.control == SR | DP | AI
    assert new.dacl.aces == (allow(OWNER, WRITE_DATA, ID),)
    assert child(parent, container=True).dacl.aces == (allow(OWNER, WRITE_DATA, OI | CI | ID),)


def test_parent_without_inheritable_aces_or_dacl_gives_the_default():
    for parent in (parent_sd(allow(EVERYONE, FILE_ALL)), None,
                   SecurityDescriptor(SR, OTHER, GROUP)):
        new = child(parent, container=False)
        assert new.dacl == default_dacl(OWNER) and new.dacl.aces == DEFAULT


def test_creator_dacl_replaces_inheritance_without_auto_inherit():
    parent = parent_sd(allow(EVERYONE, FILE_ALL, OI | CI))
    creator = SecurityDescriptor(SR | DP, None, None, None,
                                 Acl((allow(OTHER, GENERIC_READ), allow(OTHER, GENERIC_READ,
                                                                         OI | IO))))
    new = child(parent, container=True, creator=creator)
    assert new.dacl.aces == (allow(OTHER, FILE_GENERIC_READ), allow(OTHER, GENERIC_READ, OI | IO))
    assert new.control == SR | DP


def test_creator_dacl_and_auto_inherit_append_the_parents_aces():
    parent = parent_sd(allow(EVERYONE, READ_DATA, OI), control=AI)
    creator = SecurityDescriptor(SR | DP, None, None, None,
                                 Acl((allow(OTHER, WRITE_DATA), allow(OWNER, FILE_ALL, ID))))
    new = child(parent, container=False, creator=creator)
    # The creator's own "inherited" ACE is dropped for the real ones.
    assert new.dacl.aces == (allow(OTHER, WRITE_DATA), allow(EVERYONE, READ_DATA, ID))
    assert new.control == SR | DP | AI


def test_protected_creator_dacl_blocks_inheritance():
    parent = parent_sd(allow(EVERYONE, READ_DATA, OI), control=AI)
    creator = SecurityDescriptor(SR | DP | PROTECTED, None, None, None,
                                 Acl((allow(OTHER, WRITE_DATA, ID),)))
    new = child(parent, container=False, creator=creator)
    assert new.dacl.aces == (allow(OTHER, WRITE_DATA),)
    assert new.control == SR | DP | PROTECTED


def test_defaulted_creator_dacl_yields_to_inheritance_only_when_there_is_some():
    creator = SecurityDescriptor(SR | DP | SdControl.DACL_DEFAULTED, None, None, None,
                                 Acl((allow(OTHER, WRITE_DATA),)))
    inheriting = parent_sd(allow(EVERYONE, READ_DATA, OI))
    assert child(inheriting, container=False, creator=creator).dacl.aces == (
        allow(EVERYONE, READ_DATA),)
    barren = parent_sd(allow(EVERYONE, READ_DATA))
    assert child(barren, container=False, creator=creator).dacl.aces == (
        allow(OTHER, WRITE_DATA),)


def test_creator_null_dacl_and_owner():
    creator = SecurityDescriptor(SR | DP, OTHER, None, None, None)
    new = child(parent_sd(allow(CREATOR_OWNER, READ_DATA, OI)), container=False, creator=creator)
    assert new.dacl is None and new.control & DP
    assert new.owner == OTHER and new.group == GROUP


def test_creator_owner_is_what_creator_owner_becomes():
    creator = SecurityDescriptor(SR, OTHER, None, None, None)     # no DACL: inherit
    new = child(parent_sd(allow(CREATOR_OWNER, READ_DATA, OI)), container=False, creator=creator)
    assert new.dacl.aces == (allow(OTHER, READ_DATA),)


def test_sacl_is_inherited_like_the_dacl():
    audit = Ace(AceType.SYSTEM_AUDIT, OI | AceFlags.FAILED_ACCESS, WRITE_DATA, EVERYONE)
    parent = SecurityDescriptor(SR | DP | SdControl.SACL_PRESENT, OTHER, GROUP,
                                Acl((audit,)), Acl(()))
    new = child(parent, container=False)
    assert new.sacl.aces == (Ace(AceType.SYSTEM_AUDIT, AceFlags.FAILED_ACCESS, WRITE_DATA,
                                 EVERYONE),)
    assert new.control & SdControl.SACL_PRESENT
    assert child(parent_sd(), container=False).sacl is None


def test_inherited_aces_skip_opaque_aces():
    opaque = Ace(0x05, OI, 0, None, b"\x00" * 12)      # an object ACE, kept opaque
    assert inherited_aces(Acl((opaque,)), False, OWNER, GROUP, False) == ()


def test_encoded_child_round_trips():
    parent = parent_sd(allow(CREATOR_OWNER, WRITE_DATA, OI | CI), control=AI)
    new = child(parent, container=True)
    assert SecurityDescriptor.decode(new.encode()) == SecurityDescriptor(
        new.control, new.owner, new.group, None, new.dacl)


# --- what SET_INFO stores (smb2.acls.INHERITFLAGS, GENERIC) -------------------------------

@pytest.mark.parametrize("sent, kept", [
    (0, 0), (AI, 0), (AI_REQ, 0), (AI | AI_REQ, AI), (PROTECTED, PROTECTED),
    (AI | AI_REQ | PROTECTED, AI | PROTECTED),
])
def test_normalize_set_auto_inherit_bits(sent, kept):
    stored = normalize_set(SecurityDescriptor(SR | DP | sent, None, None, None, Acl(())))
    assert stored.control == SR | DP | kept


def test_normalize_set_maps_generic_bits_of_effective_aces_only():
    sent = SecurityDescriptor(SR | DP, None, None, None,
                              Acl((allow(OWNER, GENERIC_READ | 0x00010000),
                                   allow(OWNER, GENERIC_READ, OI | IO))))
    assert normalize_set(sent).dacl.aces == (allow(OWNER, FILE_GENERIC_READ | 0x00010000),
                                             allow(OWNER, GENERIC_READ, OI | IO))
