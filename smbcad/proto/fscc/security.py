"""Security descriptors ([MS-DTYP] 2.4.2 SID, 2.4.4 ACE, 2.4.5 ACL, 2.4.6 SECURITY_DESCRIPTOR).

Self-relative encode/decode for QUERY_INFO/SET_INFO SMB2_0_INFO_SECURITY and the
CREATE "SecD" context, plus the POSIX mapping (``sd_from_posix``/``posix_from_sd``).

Decoding errors: a descriptor, ACL, ACE or SID that does not fit its buffer or
has an impossible revision/size is STATUS_INVALID_SECURITY_DESCR (what Windows'
RtlValidRelativeSecurityDescriptor yields for any inner fault); a malformed SID
string is STATUS_INVALID_SID.
"""

import struct
from dataclasses import dataclass

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc.info_classes import FsccStatus
from smbcad.proto.status import NtStatus

_SID_HEADER = struct.Struct("<BB6s")        # Revision, SubAuthorityCount, IdentifierAuthority
_ACE_HEADER = struct.Struct("<BBH")         # AceType, AceFlags, AceSize (2.4.4.1)
_ACL_HEADER = struct.Struct("<BxHH2x")      # AclRevision, Sbz1, AclSize, AceCount, Sbz2
_SD_HEADER = struct.Struct("<BBHIIII")      # Revision, Sbz1, Control, 4 offsets (2.4.6)
_U32 = struct.Struct("<I")
_BAD_SD = FsccStatus.INVALID_SECURITY_DESCR
SID_MAX_SUB_AUTHORITIES = 15


class SecurityInformation:
    """SECURITY_INFORMATION / AdditionalInformation bits ([MS-DTYP] 2.4.7)."""

    OWNER = 0x00000001
    GROUP = 0x00000002
    DACL = 0x00000004
    SACL = 0x00000008
    LABEL = 0x00000010
    ATTRIBUTE = 0x00000020
    SCOPE = 0x00000040
    BACKUP = 0x00010000


class SdControl:
    """SECURITY_DESCRIPTOR Control bits ([MS-DTYP] 2.4.6)."""

    OWNER_DEFAULTED = 0x0001
    GROUP_DEFAULTED = 0x0002
    DACL_PRESENT = 0x0004
    DACL_DEFAULTED = 0x0008
    SACL_PRESENT = 0x0010
    SACL_DEFAULTED = 0x0020
    DACL_TRUSTED = 0x0040
    SERVER_SECURITY = 0x0080
    DACL_COMPUTED_INHERITANCE_REQUIRED = 0x0100
    SACL_COMPUTED_INHERITANCE_REQUIRED = 0x0200
    DACL_AUTO_INHERITED = 0x0400
    SACL_AUTO_INHERITED = 0x0800
    DACL_PROTECTED = 0x1000
    SACL_PROTECTED = 0x2000
    RM_CONTROL_VALID = 0x4000
    SELF_RELATIVE = 0x8000


class AceType:
    """ACE_HEADER AceType values used on files ([MS-DTYP] 2.4.4.1)."""

    ACCESS_ALLOWED = 0x00
    ACCESS_DENIED = 0x01
    SYSTEM_AUDIT = 0x02
    SYSTEM_ALARM = 0x03
    ACCESS_ALLOWED_CALLBACK = 0x09
    ACCESS_DENIED_CALLBACK = 0x0A
    SYSTEM_AUDIT_CALLBACK = 0x0D
    SYSTEM_MANDATORY_LABEL = 0x11
    SYSTEM_RESOURCE_ATTRIBUTE = 0x12
    SYSTEM_SCOPED_POLICY_ID = 0x13


# Types laid out as Header, Mask, Sid[, application data]; others stay opaque.
_MASK_SID_TYPES = frozenset({0x00, 0x01, 0x02, 0x03, 0x09, 0x0A, 0x0D, 0x0E, 0x11, 0x12, 0x13})


class AceFlags:
    """ACE_HEADER AceFlags ([MS-DTYP] 2.4.4.1)."""

    OBJECT_INHERIT = 0x01
    CONTAINER_INHERIT = 0x02
    NO_PROPAGATE_INHERIT = 0x04
    INHERIT_ONLY = 0x08
    INHERITED = 0x10
    SUCCESSFUL_ACCESS = 0x40
    FAILED_ACCESS = 0x80


ACL_REVISION = 0x02
ACL_REVISION_DS = 0x04


def _bad(why: str, status: int = _BAD_SD) -> SmbError:
    return SmbError(status, why)


@dataclass(frozen=True, slots=True)
class Sid:
    """SID ([MS-DTYP] 2.4.2): a 48-bit authority and up to 15 sub-authorities."""

    authority: int
    sub_authorities: tuple[int, ...] = ()

    @classmethod
    def from_string(cls, text: str) -> "Sid":
        """Parse ``S-1-<authority>-<sub>...`` ([MS-DTYP] 2.4.2.1); hex authority allowed."""
        parts = text.strip().upper().split("-")
        if len(parts) < 3 or parts[0] != "S" or parts[1] != "1":
            raise _bad(f"bad SID string {text!r}", NtStatus.INVALID_SID)
        try:
            authority = int(parts[2], 16) if parts[2].startswith("0X") else int(parts[2], 10)
            subs = tuple(int(p, 10) for p in parts[3:])
        except ValueError as exc:
            raise _bad(f"bad SID string {text!r}", NtStatus.INVALID_SID) from exc
        sid = cls(authority, subs)
        if not sid.is_valid():
            raise _bad(f"bad SID string {text!r}", NtStatus.INVALID_SID)
        return sid

    def is_valid(self) -> bool:
        return (0 <= self.authority < 1 << 48
                and len(self.sub_authorities) <= SID_MAX_SUB_AUTHORITIES
                and all(0 <= s < 1 << 32 for s in self.sub_authorities))

    def __str__(self) -> str:
        authority = str(self.authority) if self.authority < 1 << 32 else f"0x{self.authority:012X}"
        return "-".join(["S-1", authority, *map(str, self.sub_authorities)])

    @property
    def size(self) -> int:
        return 8 + 4 * len(self.sub_authorities)

    def encode(self) -> bytes:
        """Packet representation ([MS-DTYP] 2.4.2.2): authority big-endian, the rest little."""
        return (_SID_HEADER.pack(1, len(self.sub_authorities), self.authority.to_bytes(6, "big"))
                + struct.pack(f"<{len(self.sub_authorities)}I", *self.sub_authorities))

    @classmethod
    def decode(cls, data: bytes, offset: int = 0, status: int = NtStatus.INVALID_SID) -> "Sid":
        if offset < 0 or len(data) - offset < _SID_HEADER.size:
            raise _bad("short SID", status)
        revision, count, authority = _SID_HEADER.unpack_from(data, offset)
        if revision != 1 or count > SID_MAX_SUB_AUTHORITIES:
            raise _bad("bad SID revision or count", status)
        if len(data) - offset < 8 + 4 * count:
            raise _bad("short SID", status)
        return cls(int.from_bytes(authority, "big"),
                   struct.unpack_from(f"<{count}I", data, offset + 8))


def _sid(text: str) -> Sid:
    return Sid.from_string(text)


EVERYONE = _sid("S-1-1-0")
CREATOR_OWNER = _sid("S-1-3-0")
CREATOR_GROUP = _sid("S-1-3-1")
OWNER_RIGHTS_SID = _sid("S-1-3-4")        # the object's owner, whoever it is ([MS-DTYP] 2.4.2.4)
BUILTIN_ADMINISTRATORS = _sid("S-1-5-32-544")
LOCAL_SYSTEM = _sid("S-1-5-18")


@dataclass(frozen=True, slots=True)
class Ace:
    """An ACE.  For Header/Mask/Sid types ``extra`` is data after the SID (callback
    conditions, padding); for other types ``sid`` is None and ``extra`` is the body."""

    ace_type: int
    flags: int
    mask: int
    sid: Sid | None
    extra: bytes = b""

    def encode(self) -> bytes:
        body = self.extra if self.sid is None else \
            _U32.pack(self.mask) + self.sid.encode() + self.extra
        body += bytes(-len(body) % 4)
        return _ACE_HEADER.pack(self.ace_type, self.flags, 4 + len(body)) + body

    @classmethod
    def decode(cls, data: bytes, offset: int, limit: int) -> "Ace":
        """One ACE at ``offset``, not extending past ``limit``."""
        if limit - offset < _ACE_HEADER.size:
            raise _bad("short ACE")
        ace_type, flags, size = _ACE_HEADER.unpack_from(data, offset)
        if size < _ACE_HEADER.size or size % 4 or offset + size > limit:
            raise _bad("bad AceSize")
        end = offset + size
        if ace_type not in _MASK_SID_TYPES:
            return cls(ace_type, flags, 0, None, bytes(data[offset + 4:end]))
        if size < 4 + 4 + 8:
            raise _bad("ACE too small for its SID")
        mask = _U32.unpack_from(data, offset + 4)[0]
        sid = Sid.decode(data[:end], offset + 8, _BAD_SD)
        return cls(ace_type, flags, mask, sid, bytes(data[offset + 8 + sid.size:end]))


@dataclass(frozen=True, slots=True)
class Acl:
    """ACL ([MS-DTYP] 2.4.5): a revision and its ACEs in order."""

    aces: tuple[Ace, ...] = ()
    revision: int = ACL_REVISION

    def encode(self) -> bytes:
        body = b"".join(ace.encode() for ace in self.aces)
        return _ACL_HEADER.pack(self.revision, _ACL_HEADER.size + len(body), len(self.aces)) + body

    @classmethod
    def decode(cls, data: bytes, offset: int) -> "Acl":
        if offset < 0 or len(data) - offset < _ACL_HEADER.size:
            raise _bad("short ACL")
        revision, size, count = _ACL_HEADER.unpack_from(data, offset)
        if revision not in (2, 3, 4) or size < _ACL_HEADER.size or offset + size > len(data):
            raise _bad("bad ACL header")
        limit = offset + size
        aces = []
        pos = offset + _ACL_HEADER.size
        for _ in range(count):
            ace = Ace.decode(data, pos, limit)
            aces.append(ace)
            pos += _ACE_HEADER.unpack_from(data, pos)[2]
        return cls(tuple(aces), revision)


@dataclass(frozen=True, slots=True)
class SecurityDescriptor:
    """SECURITY_DESCRIPTOR ([MS-DTYP] 2.4.6).

    ``dacl is None`` with DACL_PRESENT in ``control`` is a NULL DACL (everyone has
    full access); without DACL_PRESENT there is no DACL at all.  Same for the SACL.
    """

    control: int = SdControl.SELF_RELATIVE
    owner: Sid | None = None
    group: Sid | None = None
    sacl: Acl | None = None
    dacl: Acl | None = None

    @property
    def dacl_present(self) -> bool:
        return bool(self.control & SdControl.DACL_PRESENT) or self.dacl is not None

    def encode(self) -> bytes:
        """Self-relative form: header, then owner, group, SACL, DACL."""
        control = self.control | SdControl.SELF_RELATIVE
        if self.dacl is not None:
            control |= SdControl.DACL_PRESENT
        if self.sacl is not None:
            control |= SdControl.SACL_PRESENT
        parts = []
        offsets = []
        pos = _SD_HEADER.size
        for part in (self.owner, self.group, self.sacl, self.dacl):
            if part is None:
                offsets.append(0)
                continue
            raw = part.encode()
            offsets.append(pos)
            parts.append(raw)
            pos += len(raw)
        owner, group, sacl, dacl = offsets
        return _SD_HEADER.pack(1, 0, control, owner, group, sacl, dacl) + b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> "SecurityDescriptor":
        data = bytes(data)
        if len(data) < _SD_HEADER.size:
            raise _bad("short security descriptor")
        revision, _sbz1, control, o_owner, o_group, o_sacl, o_dacl = _SD_HEADER.unpack_from(data)
        if revision != 1:
            raise _bad("bad security descriptor revision")
        for off in (o_owner, o_group, o_sacl, o_dacl):
            if off and (off < _SD_HEADER.size or off >= len(data)):
                raise _bad("offset outside the security descriptor")
        owner = Sid.decode(data, o_owner, _BAD_SD) if o_owner else None
        group = Sid.decode(data, o_group, _BAD_SD) if o_group else None
        sacl = Acl.decode(data, o_sacl) if o_sacl and control & SdControl.SACL_PRESENT else None
        dacl = Acl.decode(data, o_dacl) if o_dacl and control & SdControl.DACL_PRESENT else None
        return cls(control, owner, group, sacl, dacl)


def select_parts(sd: SecurityDescriptor, security_info: int) -> SecurityDescriptor:
    """Keep only the parts ``security_info`` asks for ([MS-SMB2] 3.3.5.20.3)."""
    want = security_info
    control = sd.control
    if not want & SecurityInformation.DACL:
        control &= ~(SdControl.DACL_PRESENT | SdControl.DACL_PROTECTED
                     | SdControl.DACL_AUTO_INHERITED | SdControl.DACL_DEFAULTED)
    if not want & SecurityInformation.SACL:
        control &= ~(SdControl.SACL_PRESENT | SdControl.SACL_PROTECTED
                     | SdControl.SACL_AUTO_INHERITED | SdControl.SACL_DEFAULTED)
    return SecurityDescriptor(
        control,
        sd.owner if want & SecurityInformation.OWNER else None,
        sd.group if want & SecurityInformation.GROUP else None,
        sd.sacl if want & SecurityInformation.SACL else None,
        sd.dacl if want & SecurityInformation.DACL else None)



# --- POSIX mapping ---------------------------------------------------------------
#
# Owners and groups are Samba's Unix SIDs: S-1-22-1-<uid> ("Unix User") and
# S-1-22-2-<gid> ("Unix Group").  uid 0 is S-1-22-1-0 like every other uid: mapping
# root to BUILTIN\Administrators would not round-trip (any admin would become root).
# Other SIDs are the identity-mapping layer's business; here they map to None.
#
# The DACL has at most three allow ACEs -- owner, group, Everyone -- and omits a
# class with no permissions.  rwx map to FILE_GENERIC_READ/WRITE/EXECUTE, w+x
# adds FILE_DELETE_CHILD; the owner always gets what POSIX lets
# an owner do regardless of mode (READ_CONTROL, WRITE_DAC, WRITE_OWNER, DELETE,
# FILE_READ/WRITE_ATTRIBUTES, SYNCHRONIZE), so owner rwx is FILE_ALL_ACCESS.
# Directory ACEs carry OBJECT_INHERIT|CONTAINER_INHERIT.  Windows grants the union
# of matching allow ACEs, so an owner whose "other" bits exceed its own (e.g. 0o007)
# is over-granted on paper; we emit no deny ACEs, as Samba by default.

UNIX_USERS_AUTHORITY = 22       # S-1-22-1-<uid>, S-1-22-2-<gid>

_FILE_READ_DATA = 0x0001
_FILE_WRITE_DATA = 0x0002
_FILE_APPEND_DATA = 0x0004
_FILE_EXECUTE = 0x0020
_FILE_DELETE_CHILD = 0x0040
_FILE_READ_ATTRIBUTES = 0x0080
_FILE_WRITE_ATTRIBUTES = 0x0100
_DELETE = 0x00010000
_READ_CONTROL = 0x00020000
_WRITE_DAC = 0x00040000
_WRITE_OWNER = 0x00080000
_SYNCHRONIZE = 0x00100000
_GENERIC_ALL = 0x10000000
_GENERIC_EXECUTE = 0x20000000
_GENERIC_WRITE = 0x40000000
_GENERIC_READ = 0x80000000
FILE_GENERIC_READ = 0x00120089
FILE_GENERIC_WRITE = 0x00120116
FILE_GENERIC_EXECUTE = 0x001200A0
OWNER_RIGHTS = (_READ_CONTROL | _WRITE_DAC | _WRITE_OWNER | _DELETE
                | _FILE_READ_ATTRIBUTES | _FILE_WRITE_ATTRIBUTES | _SYNCHRONIZE)
_DIR_INHERIT = AceFlags.OBJECT_INHERIT | AceFlags.CONTAINER_INHERIT


def unix_user_sid(uid: int) -> Sid:
    """S-1-22-1-<uid> (Samba's "Unix User" domain)."""
    return Sid(UNIX_USERS_AUTHORITY, (1, uid))


def unix_group_sid(gid: int) -> Sid:
    """S-1-22-2-<gid> (Samba's "Unix Group" domain)."""
    return Sid(UNIX_USERS_AUTHORITY, (2, gid))


def _unix_id(sid: Sid | None, kind: int) -> int | None:
    if sid is None or sid.authority != UNIX_USERS_AUTHORITY:
        return None
    if len(sid.sub_authorities) != 2 or sid.sub_authorities[0] != kind:
        return None
    return sid.sub_authorities[1]


def uid_of_sid(sid: Sid | None) -> int | None:
    """The uid an S-1-22-1-<uid> ("Unix User") SID stands for, else None."""
    return _unix_id(sid, 1)


def gid_of_sid(sid: Sid | None) -> int | None:
    """The gid an S-1-22-2-<gid> ("Unix Group") SID stands for, else None."""
    return _unix_id(sid, 2)


def rwx_to_mask(bits: int) -> int:
    """Access mask for three POSIX permission bits (r=4, w=2, x=1).

    w+x adds FILE_DELETE_CHILD (what w+x on a POSIX directory allows; meaningless
    but harmless on a file, where it makes owner rwx exactly FILE_ALL_ACCESS).
    """
    mask = 0
    if bits & 4:
        mask |= FILE_GENERIC_READ
    if bits & 2:
        mask |= FILE_GENERIC_WRITE
    if bits & 1:
        mask |= FILE_GENERIC_EXECUTE
    if bits & 3 == 3:
        mask |= _FILE_DELETE_CHILD
    return mask


def mask_to_rwx(mask: int) -> int:
    """POSIX bits granted by an access mask, GENERIC_* rights included."""
    bits = 0
    if mask & (_FILE_READ_DATA | _GENERIC_READ | _GENERIC_ALL):
        bits |= 4
    if mask & (_FILE_WRITE_DATA | _FILE_APPEND_DATA | _GENERIC_WRITE | _GENERIC_ALL):
        bits |= 2
    if mask & (_FILE_EXECUTE | _GENERIC_EXECUTE | _GENERIC_ALL):
        bits |= 1
    return bits


def sd_for_posix(uid: int, gid: int, mode: int, is_directory: bool) -> SecurityDescriptor:
    """The full descriptor the POSIX owner, group and mode stand for."""
    flags = _DIR_INHERIT if is_directory else 0
    owner, group = unix_user_sid(uid), unix_group_sid(gid)
    aces = [Ace(AceType.ACCESS_ALLOWED, flags,
                rwx_to_mask(mode >> 6 & 7) | OWNER_RIGHTS, owner)]
    for sid, bits in ((group, mode >> 3 & 7), (EVERYONE, mode & 7)):
        if bits:
            aces.append(Ace(AceType.ACCESS_ALLOWED, flags, rwx_to_mask(bits), sid))
    return SecurityDescriptor(SdControl.SELF_RELATIVE | SdControl.DACL_PRESENT,
                              owner, group, None, Acl(tuple(aces)))


def sd_from_posix(uid: int, gid: int, mode: int, is_directory: bool,
                  security_info: int) -> bytes:
    """Self-relative descriptor with the parts ``security_info`` asks for.

    OWNER (1), GROUP (2) and DACL (4) are honoured; SACL (8) and the rest are not
    kept, so they are left out (no SACL_PRESENT).
    """
    return select_parts(sd_for_posix(uid, gid, mode, is_directory), security_info).encode()


def posix_from_sd(sd_bytes: bytes, *, current_uid: int | None = None,
                  current_gid: int | None = None) -> tuple[int | None, int | None, int | None]:
    """Best-effort ``(uid, gid, mode)`` from a client's descriptor (SET_INFO, CREATE).

    uid/gid come from Unix SIDs in Owner/Group, else None.  mode (the 0o777 bits)
    comes from the DACL: allow/deny ACEs for the owner (the descriptor's owner, or
    ``current_uid``'s SID when the descriptor carries none, and OWNER RIGHTS), the
    group (likewise) and Everyone; inherit-only ACEs and other SIDs are ignored.  Windows grants
    owner and group whatever Everyone has, so those bits are folded in; a deny for
    Everyone removes bits from all three classes.  No DACL, or a NULL DACL
    (Windows: everyone full access), gives mode None -- "leave it alone" is the
    safer reading of a descriptor we cannot express.
    """
    sd = SecurityDescriptor.decode(sd_bytes)
    uid = _unix_id(sd.owner, 1)
    gid = _unix_id(sd.group, 2)
    if sd.dacl is None:
        return uid, gid, None
    owner = sd.owner or (unix_user_sid(current_uid) if current_uid is not None else None)
    group = sd.group or (unix_group_sid(current_gid) if current_gid is not None else None)
    allow = {"u": 0, "g": 0, "o": 0}
    deny = {"u": 0, "g": 0, "o": 0}
    for ace in sd.dacl.aces:
        if ace.sid is None or ace.flags & AceFlags.INHERIT_ONLY:
            continue
        if ace.ace_type == AceType.ACCESS_ALLOWED:
            target = allow
        elif ace.ace_type == AceType.ACCESS_DENIED:
            target = deny
        else:
            continue
        bits = mask_to_rwx(ace.mask)
        if ace.sid in (owner, OWNER_RIGHTS_SID):
            target["u"] |= bits
        elif ace.sid == group:
            target["g"] |= bits
        elif ace.sid == EVERYONE:
            target["o"] |= bits
    other = allow["o"] & ~deny["o"]
    user = (allow["u"] | allow["o"]) & ~(deny["u"] | deny["o"])
    grp = (allow["g"] | allow["o"]) & ~(deny["g"] | deny["o"])
    return uid, gid, (user << 6) | (grp << 3) | other
