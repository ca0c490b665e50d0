"""The [MS-DTYP] 2.5.3.2 access check, pinned as a table: descriptor × token ×
desired access → granted mask or the status the request fails with."""

import pytest

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (Ace, AceFlags, AceType, Acl, SdControl, SecurityDescriptor, Sid,
                               Token, access_check, map_generic, maximal_access, posix_from_sd)
from smbcad.proto.fscc.access_check import OWNER_RIGHTS, SE_SECURITY_PRIVILEGE
from smbcad.proto.status import NtStatus

ALICE = Sid.from_string("S-1-22-1-1000")
BOB = Sid.from_string("S-1-22-1-1001")
STAFF = Sid.from_string("S-1-22-2-100")
EVERYONE = Sid.from_string("S-1-1-0")

READ_DATA, WRITE_DATA, APPEND_DATA = 0x1, 0x2, 0x4
READ_EA, WRITE_EA, EXECUTE = 0x8, 0x10, 0x20
READ_ATTRIBUTES, WRITE_ATTRIBUTES = 0x80, 0x100
DELETE, READ_CONTROL, WRITE_DAC, WRITE_OWNER = 0x10000, 0x20000, 0x40000, 0x80000
SYNCHRONIZE = 0x100000
ACCESS_SYSTEM_SECURITY, MAXIMUM_ALLOWED = 0x01000000, 0x02000000
GENERIC_READ, GENERIC_WRITE, GENERIC_ALL = 0x80000000, 0x40000000, 0x10000000
FILE_ALL_ACCESS = 0x001F01FF
FILE_GENERIC_READ, FILE_GENERIC_WRITE = 0x00120089, 0x00120116
OWNER_IMPLICIT = READ_CONTROL | WRITE_DAC

TOKEN_ALICE = Token(ALICE, frozenset({EVERYONE, STAFF}))
TOKEN_BOB = Token(BOB, frozenset({EVERYONE}))


def allow(sid, mask, flags=0):
    return Ace(AceType.ACCESS_ALLOWED, flags, mask, sid)


def deny(sid, mask, flags=0):
    return Ace(AceType.ACCESS_DENIED, flags, mask, sid)


def sd(*aces, owner=ALICE, dacl=True):
    """A descriptor owned by ``owner``; ``dacl=False`` makes it a NULL DACL."""
    control = SdControl.SELF_RELATIVE | SdControl.DACL_PRESENT
    return SecurityDescriptor(control, owner, STAFF, None, Acl(tuple(aces)) if dacl else None)


DENIED = NtStatus.ACCESS_DENIED
NO_PRIVILEGE = NtStatus.PRIVILEGE_NOT_HELD

# (case, descriptor, token, desired, granted mask or failure status)
CASES = [
    # NULL DACL: everything, MAXIMUM_ALLOWED is FILE_ALL_ACCESS.
    ("null dacl, write", sd(dacl=False), TOKEN_BOB, WRITE_DATA, WRITE_DATA),
    ("null dacl, generic write", sd(dacl=False), TOKEN_BOB, GENERIC_WRITE, FILE_GENERIC_WRITE),
    ("null dacl, maximum", sd(dacl=False), TOKEN_BOB, MAXIMUM_ALLOWED, FILE_ALL_ACCESS),
    # No DACL_PRESENT at all is the same as a NULL DACL.
    ("no dacl", SecurityDescriptor(SdControl.SELF_RELATIVE, ALICE, STAFF), TOKEN_BOB,
     READ_DATA, READ_DATA),
    # Empty DACL: nothing, except the owner's implicit READ_CONTROL | WRITE_DAC.
    ("empty, owner read control", sd(), TOKEN_ALICE, READ_CONTROL, READ_CONTROL),
    ("empty, owner write dac", sd(), TOKEN_ALICE, WRITE_DAC, WRITE_DAC),
    ("empty, owner read", sd(), TOKEN_ALICE, READ_DATA, DENIED),
    ("empty, owner generic read", sd(), TOKEN_ALICE, GENERIC_READ, DENIED),
    ("empty, owner maximum", sd(), TOKEN_ALICE, MAXIMUM_ALLOWED, OWNER_IMPLICIT),
    ("empty, other read control", sd(), TOKEN_BOB, READ_CONTROL, DENIED),
    ("empty, other maximum", sd(), TOKEN_BOB, MAXIMUM_ALLOWED, 0),
    ("empty, other write owner", sd(), TOKEN_ALICE, WRITE_OWNER, DENIED),
    # Allow ACEs add up across SIDs in the token; others' ACEs do not count.
    ("allow via group", sd(allow(STAFF, FILE_GENERIC_READ)), TOKEN_ALICE, READ_DATA, READ_DATA),
    ("allow two aces", sd(allow(ALICE, READ_DATA), allow(EVERYONE, WRITE_DATA)), TOKEN_ALICE,
     READ_DATA | WRITE_DATA, READ_DATA | WRITE_DATA),
    ("allow for someone else", sd(allow(ALICE, FILE_ALL_ACCESS)), TOKEN_BOB, READ_DATA, DENIED),
    ("partly allowed", sd(allow(EVERYONE, READ_DATA)), TOKEN_BOB, READ_DATA | WRITE_DATA, DENIED),
    ("generic bits in the ace", sd(allow(EVERYONE, GENERIC_READ)), TOKEN_BOB, READ_EA, READ_EA),
    # Deny ACEs: order matters; a deny after the allow has no say.
    ("deny first", sd(deny(EVERYONE, WRITE_DATA), allow(EVERYONE, FILE_ALL_ACCESS)), TOKEN_BOB,
     WRITE_DATA, DENIED),
    ("deny first, other bit", sd(deny(EVERYONE, WRITE_DATA), allow(EVERYONE, FILE_ALL_ACCESS)),
     TOKEN_BOB, READ_DATA, READ_DATA),
    ("deny after allow", sd(allow(EVERYONE, FILE_ALL_ACCESS), deny(EVERYONE, WRITE_DATA)),
     TOKEN_BOB, WRITE_DATA, WRITE_DATA),
    ("deny for someone else", sd(deny(ALICE, FILE_ALL_ACCESS), allow(EVERYONE, READ_DATA)),
     TOKEN_BOB, READ_DATA, READ_DATA),
    ("deny cannot take owner rights", sd(deny(ALICE, READ_CONTROL)), TOKEN_ALICE,
     READ_CONTROL, READ_CONTROL),
    ("maximum with deny first",
     sd(deny(EVERYONE, WRITE_DATA), allow(EVERYONE, FILE_GENERIC_READ | WRITE_DATA)), TOKEN_BOB,
     MAXIMUM_ALLOWED, FILE_GENERIC_READ),
    ("maximum with deny after",
     sd(allow(EVERYONE, READ_DATA | WRITE_DATA), deny(EVERYONE, WRITE_DATA)), TOKEN_BOB,
     MAXIMUM_ALLOWED, READ_DATA | WRITE_DATA),
    ("maximum plus a denied bit", sd(allow(EVERYONE, READ_DATA)), TOKEN_BOB,
     MAXIMUM_ALLOWED | WRITE_DATA, DENIED),
    ("maximum plus a granted bit", sd(allow(EVERYONE, READ_DATA)), TOKEN_BOB,
     MAXIMUM_ALLOWED | READ_DATA, READ_DATA),
    # INHERIT_ONLY ACEs are templates for children, not rules for this object.
    ("inherit-only allow", sd(allow(EVERYONE, FILE_ALL_ACCESS, AceFlags.INHERIT_ONLY)), TOKEN_BOB,
     READ_DATA, DENIED),
    ("inherit-only deny", sd(deny(EVERYONE, READ_DATA, AceFlags.INHERIT_ONLY),
                             allow(EVERYONE, READ_DATA)), TOKEN_BOB, READ_DATA, READ_DATA),
    # OWNER RIGHTS replaces the owner's implicit rights.
    ("owner rights ace", sd(allow(OWNER_RIGHTS, READ_DATA)), TOKEN_ALICE, READ_CONTROL, DENIED),
    ("owner rights grants", sd(allow(OWNER_RIGHTS, READ_DATA)), TOKEN_ALICE, READ_DATA,
     READ_DATA),
    ("owner rights, not owner", sd(allow(OWNER_RIGHTS, READ_DATA)), TOKEN_BOB, READ_DATA, DENIED),
    # Callback (conditional) ACEs are never evaluated: allow grants nothing, deny applies.
    ("callback allow", sd(Ace(AceType.ACCESS_ALLOWED_CALLBACK, 0, READ_DATA, EVERYONE)),
     TOKEN_BOB, READ_DATA, DENIED),
    ("callback deny", sd(Ace(AceType.ACCESS_DENIED_CALLBACK, 0, READ_DATA, EVERYONE),
                         allow(EVERYONE, READ_DATA)), TOKEN_BOB, READ_DATA, DENIED),
    # SACL access is a privilege, not a DACL right.
    ("sacl without privilege", sd(dacl=False), TOKEN_BOB, ACCESS_SYSTEM_SECURITY, NO_PRIVILEGE),
    ("sacl with privilege", sd(), Token(BOB, frozenset(), frozenset({SE_SECURITY_PRIVILEGE})),
     ACCESS_SYSTEM_SECURITY, ACCESS_SYSTEM_SECURITY),
    ("synchronize needs an ace", sd(allow(EVERYONE, READ_DATA)), TOKEN_BOB,
     READ_DATA | SYNCHRONIZE, DENIED),
]


@pytest.mark.parametrize("descriptor,token,desired,expected",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_access_check_table(descriptor, token, desired, expected):
    if expected in (DENIED, NO_PRIVILEGE):
        with pytest.raises(SmbError) as failure:
            access_check(descriptor, token, desired)
        assert failure.value.status == expected
    else:
        assert access_check(descriptor, token, desired) == expected


def test_the_check_survives_a_wire_round_trip():
    descriptor = sd(deny(BOB, WRITE_DATA), allow(EVERYONE, FILE_GENERIC_READ | WRITE_DATA))
    decoded = SecurityDescriptor.decode(descriptor.encode())
    assert maximal_access(decoded, TOKEN_BOB) == FILE_GENERIC_READ
    assert maximal_access(decoded, TOKEN_ALICE) == FILE_GENERIC_READ | WRITE_DATA | WRITE_DAC


def test_map_generic():
    assert map_generic(GENERIC_ALL | MAXIMUM_ALLOWED) == FILE_ALL_ACCESS | MAXIMUM_ALLOWED
    assert map_generic(GENERIC_READ | WRITE_EA) == FILE_GENERIC_READ | WRITE_EA


def test_owner_rights_ace_maps_to_the_owner_mode_bits():
    descriptor = sd(allow(ALICE, FILE_GENERIC_READ), allow(OWNER_RIGHTS, WRITE_DATA))
    assert posix_from_sd(descriptor.encode())[2] == 0o600
