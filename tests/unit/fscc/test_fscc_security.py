"""Security descriptors ([MS-DTYP] 2.4.2, 2.4.4-2.4.6) and the POSIX mapping, with
cross-checks against impacket's SR_SECURITY_DESCRIPTOR in both directions."""

import pytest
from hypothesis import given, settings, strategies as st
from impacket.ldap import ldaptypes as lt

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (Ace, AceFlags, AceType, Acl, FsccStatus, SdControl,
                               SecurityDescriptor, SecurityInformation as SI, Sid,
                               posix_from_sd, sd_from_posix, unix_group_sid, unix_user_sid)
from smbcad.proto.status import NtStatus

ALL = SI.OWNER | SI.GROUP | SI.DACL

OWNER_SID = "01 02 000000000016 01000000 e8030000"     # S-1-22-1-1000
GROUP_SID = "01 02 000000000016 02000000 64000000"     # S-1-22-2-100
EVERYONE_SID = "01 01 000000000001 00000000"           # S-1-1-0


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# sd_from_posix(1000, 100, 0o754, False, OWNER|GROUP|DACL), laid out by hand.
EXPECTED_754 = h(
    "01 00 0480"                        # Revision, Sbz1, Control = SR | DACL_PRESENT
    "14000000 24000000 00000000 34000000"   # OffsetOwner, OffsetGroup, OffsetSacl, OffsetDacl
    + OWNER_SID + GROUP_SID
    + "02 00 4c00 0300 0000"            # ACL: revision 2, size 76, 3 ACEs
    "00 00 1800 ff011f00" + OWNER_SID   # allow, owner: rwx -> FILE_ALL_ACCESS
    + "00 00 1800 a9001200" + GROUP_SID     # allow, group: r-x -> GENERIC_READ|EXECUTE
    + "00 00 1400 89001200" + EVERYONE_SID  # allow, Everyone: r-- -> FILE_GENERIC_READ
)


def test_sd_from_posix_exact():
    assert sd_from_posix(1000, 100, 0o754, False, ALL) == EXPECTED_754


def test_sd_cross_check_impacket():
    sd = lt.SR_SECURITY_DESCRIPTOR(data=sd_from_posix(1000, 100, 0o754, True, ALL))
    assert sd["Control"] == 0x8004
    assert sd["OwnerSid"].formatCanonical() == "S-1-22-1-1000"
    assert sd["GroupSid"].formatCanonical() == "S-1-22-2-100"
    aces = sd["Dacl"].aces
    assert [a["AceType"] for a in aces] == [0, 0, 0]
    assert [a["AceFlags"] for a in aces] == [0x03, 0x03, 0x03]     # OI | CI on directories
    assert [a["Ace"]["Mask"]["Mask"] for a in aces] == [0x001F01FF, 0x001200A9, 0x00120089]
    assert [a["Ace"]["Sid"].formatCanonical() for a in aces] == \
        ["S-1-22-1-1000", "S-1-22-2-100", "S-1-1-0"]


def impacket_ace(ace_type: int, mask: int, sid: str, flags: int = 0) -> lt.ACE:
    ace = lt.ACE()
    ace["AceType"] = ace_type
    ace["AceFlags"] = flags
    body = lt.ACCESS_ALLOWED_ACE() if ace_type == 0 else lt.ACCESS_DENIED_ACE()
    body["Mask"] = lt.ACCESS_MASK()
    body["Mask"]["Mask"] = mask
    body["Sid"] = lt.LDAP_SID()
    body["Sid"].fromCanonical(sid)
    ace["Ace"] = body
    return ace


def impacket_sd(aces, owner="S-1-22-1-1000", group="S-1-22-2-100") -> bytes:
    """impacket lays a descriptor out SACL, DACL, owner, group: another order than ours."""
    sd = lt.SR_SECURITY_DESCRIPTOR()
    sd["Revision"] = b"\x01"
    sd["Sbz1"] = b"\x00"
    sd["Control"] = 0x8004
    sd["OwnerSid"] = lt.LDAP_SID()
    sd["OwnerSid"].fromCanonical(owner)
    sd["GroupSid"] = lt.LDAP_SID()
    sd["GroupSid"].fromCanonical(group)
    sd["Sacl"] = b""
    acl = lt.ACL()
    acl["AclRevision"] = 2
    acl["Sbz1"] = 0
    acl["Sbz2"] = 0
    acl.aces = list(aces)
    sd["Dacl"] = acl
    return sd.getData()


def test_decode_impacket_built():
    raw = impacket_sd([impacket_ace(0, 0x001F01FF, "S-1-22-1-1000"),
                       impacket_ace(0, 0x00120089, "S-1-22-2-100"),
                       impacket_ace(1, 0x00000002, "S-1-1-0")])
    sd = SecurityDescriptor.decode(raw)
    assert str(sd.owner) == "S-1-22-1-1000" and str(sd.group) == "S-1-22-2-100"
    assert [(a.ace_type, a.mask, str(a.sid)) for a in sd.dacl.aces] == [
        (0, 0x001F01FF, "S-1-22-1-1000"), (0, 0x00120089, "S-1-22-2-100"),
        (1, 0x00000002, "S-1-1-0")]
    # Everyone's write deny takes write from the owner too.
    assert posix_from_sd(raw) == (1000, 100, 0o540)
    assert SecurityDescriptor.decode(sd.encode()) == sd


@pytest.mark.parametrize("info, control, owner, group, dacl, length", [
    (0, 0x8000, 0, 0, 0, 20),
    (SI.OWNER, 0x8000, 0x14, 0, 0, 36),
    (SI.GROUP, 0x8000, 0, 0x14, 0, 36),
    (SI.DACL, 0x8004, 0, 0, 0x14, 20 + 76),
    (SI.SACL, 0x8000, 0, 0, 0, 20),          # SACL requested: not kept, left out
    (SI.OWNER | SI.DACL | SI.SACL, 0x8004, 0x14, 0, 0x24, 36 + 76),
])
def test_parts_selected(info, control, owner, group, dacl, length):
    data = sd_from_posix(1000, 100, 0o754, False, info)
    assert len(data) == length
    assert data[2:4] == control.to_bytes(2, "little")
    assert data[4:20] == b"".join(v.to_bytes(4, "little") for v in (owner, group, 0, dacl))


def test_empty_permission_classes_omitted():
    sd = SecurityDescriptor.decode(sd_from_posix(0, 0, 0o700, False, ALL))
    assert len(sd.dacl.aces) == 1
    sd = SecurityDescriptor.decode(sd_from_posix(0, 0, 0o000, False, ALL))
    # The owner keeps what POSIX always lets an owner do.
    assert [a.mask for a in sd.dacl.aces] == [0x001F0180]


def test_root_is_a_unix_user():
    sd = SecurityDescriptor.decode(sd_from_posix(0, 0, 0o755, False, ALL))
    assert str(sd.owner) == "S-1-22-1-0" and str(sd.group) == "S-1-22-2-0"


# --- SIDs ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, raw", [
    ("S-1-5-32-544", "01 02 000000000005 20000000 20020000"),
    ("S-1-1-0", EVERYONE_SID),
    ("S-1-5-18", "01 01 000000000005 12000000"),
    ("S-1-22-1-1000", OWNER_SID),
    ("S-1-0", "01 00 000000000000"),
    ("S-1-0x123456789ABC-7", "01 01 123456789abc 07000000"),
])
def test_sid_strings(text, raw):
    sid = Sid.from_string(text)
    assert sid.encode() == h(raw)
    assert Sid.decode(h(raw)) == sid
    assert str(sid) == text


def test_sid_helpers():
    assert str(unix_user_sid(5)) == "S-1-22-1-5"
    assert str(unix_group_sid(7)) == "S-1-22-2-7"
    assert Sid.from_string(" s-1-5-32-544 ") == Sid(5, (32, 544))


@pytest.mark.parametrize("text", [
    "", "S-1", "X-1-5", "S-2-5-1", "S-1-5-abc", "S-1--1", "S-1-5-4294967296",
    "S-1-281474976710656", "S-1-5" + "-1" * 16,
])
def test_bad_sid_strings(text):
    with pytest.raises(SmbError) as err:
        Sid.from_string(text)
    assert err.value.status == NtStatus.INVALID_SID


# --- Decoding ------------------------------------------------------------------------

def test_round_trip_with_opaque_and_callback_aces():
    object_ace_body = bytes(range(4, 40))                       # type 5: kept as is
    sd = SecurityDescriptor(
        SdControl.SELF_RELATIVE | SdControl.DACL_PRESENT | SdControl.DACL_PROTECTED,
        Sid.from_string("S-1-5-21-1-2-3-500"), None, None,
        Acl((Ace(AceType.ACCESS_DENIED, AceFlags.INHERITED, 0x2, Sid.from_string("S-1-1-0")),
             Ace(0x05, 0, 0, None, object_ace_body),
             Ace(AceType.ACCESS_ALLOWED_CALLBACK, 0, 0x1, Sid.from_string("S-1-1-0"),
                 b"artx\x00\x00\x00\x00")),
            revision=4))
    assert SecurityDescriptor.decode(sd.encode()) == sd


def test_null_dacl():
    raw = h("01 00 0480 00000000 00000000 00000000 00000000")
    sd = SecurityDescriptor.decode(raw)
    assert sd.dacl is None and sd.dacl_present
    assert posix_from_sd(raw) == (None, None, None)


BAD_SDS = [
    b"",
    bytes(19),
    h("02 00 0080 00000000 00000000 00000000 00000000"),           # revision 2
    h("01 00 0080 64000000 00000000 00000000 00000000"),           # owner past the end
    h("01 00 0080 04000000 00000000 00000000 00000000") + bytes(8),  # owner inside header
    h("01 00 0080 14000000 00000000 00000000 00000000 01 02 000000000005 20000000"),
    h("01 00 0080 14000000 00000000 00000000 00000000 02 01 000000000005 20000000"),
    h("01 00 0080 14000000 00000000 00000000 00000000 01 10 000000000005") + bytes(64),
    # DACL whose AclSize overruns the buffer
    h("01 00 0480 00000000 00000000 00000000 14000000 02 00 ff00 0000 0000"),
    # DACL revision 1
    h("01 00 0480 00000000 00000000 00000000 14000000 01 00 0800 0000 0000"),
    # ACE count larger than the ACEs present
    h("01 00 0480 00000000 00000000 00000000 14000000 02 00 0800 0100 0000"),
    # AceSize not a multiple of 4
    h("01 00 0480 00000000 00000000 00000000 14000000 02 00 1800 0100 0000"
      "00 00 0e00 01000000") + h(EVERYONE_SID)[:6],
    # ACE too small for its SID
    h("01 00 0480 00000000 00000000 00000000 14000000 02 00 1000 0100 0000"
      "00 00 0800 01000000"),
]


@pytest.mark.parametrize("raw", BAD_SDS)
def test_malformed(raw):
    with pytest.raises(SmbError) as err:
        SecurityDescriptor.decode(raw)
    assert err.value.status == FsccStatus.INVALID_SECURITY_DESCR


# --- posix_from_sd -------------------------------------------------------------------

def build(aces, owner="S-1-22-1-1000", group="S-1-22-2-100") -> bytes:
    return SecurityDescriptor(
        SdControl.SELF_RELATIVE, Sid.from_string(owner) if owner else None,
        Sid.from_string(group) if group else None, None,
        Acl(tuple(Ace(t, f, m, Sid.from_string(s)) for t, f, m, s in aces))).encode()


def test_everyone_bits_fold_into_owner_and_group():
    raw = build([(0, 0, 0x00120089, "S-1-22-1-1000"), (0, 0, 0x001F01FF, "S-1-1-0")])
    assert posix_from_sd(raw) == (1000, 100, 0o777)


def test_deny_for_everyone_applies_to_all():
    raw = build([(1, 0, 0x00000002, "S-1-1-0"), (0, 0, 0x10000000, "S-1-22-1-1000"),
                 (0, 0, 0x80000000, "S-1-1-0")])
    assert posix_from_sd(raw) == (1000, 100, 0o544)


def test_inherit_only_and_foreign_sids_ignored():
    raw = build([(0, AceFlags.INHERIT_ONLY | AceFlags.OBJECT_INHERIT, 0x1F01FF, "S-1-3-0"),
                 (0, AceFlags.INHERIT_ONLY, 0x1F01FF, "S-1-22-1-1000"),
                 (0, 0, 0x1F01FF, "S-1-5-21-9-9-9-1001"),
                 (0, 0, 0x001200A0, "S-1-22-1-1000")])
    assert posix_from_sd(raw) == (1000, 100, 0o100)


def test_foreign_owner_and_current_ids():
    raw = build([(0, 0, 0x001F01FF, "S-1-22-1-7"), (0, 0, 0x00120089, "S-1-22-2-8")],
                owner=None, group=None)
    assert posix_from_sd(raw) == (None, None, 0o000)
    assert posix_from_sd(raw, current_uid=7, current_gid=8) == (None, None, 0o740)
    raw = build([], owner="S-1-5-21-1-2-3-500", group="S-1-5-32-544")
    assert posix_from_sd(raw) == (None, None, 0o000)


def test_owner_only_descriptor():
    raw = sd_from_posix(42, 43, 0o640, False, SI.OWNER)
    assert posix_from_sd(raw) == (42, None, None)


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1), st.integers(0, 0o777),
       st.booleans())
def test_posix_round_trip(uid, gid, mode, is_directory):
    other = mode & 7
    # Windows semantics give the owner and group Everyone's rights too, so only modes
    # where "other" is a subset of both come back unchanged.
    if other & ~(mode >> 6 & 7) or other & ~(mode >> 3 & 7):
        return
    raw = sd_from_posix(uid, gid, mode, is_directory, ALL)
    assert posix_from_sd(raw) == (uid, gid, mode)
