"""The access check of a token against a security descriptor ([MS-DTYP] 2.5.3.2).

Sans-IO: a ``Token`` (who asks) and a ``SecurityDescriptor`` (what the object
allows) in, the granted access mask out, or ``SmbError`` with the status to
send.  CREATE uses it for files that carry a stored descriptor ([MS-FSA]
2.1.5.1.2.1); files without one keep the POSIX-mode behaviour of the caller.

What the algorithm does, in the order of [MS-DTYP] 2.5.3.2:

1. GENERIC_* bits of the request (and of every ACE, see below) are mapped with
   the file generic mapping ([MS-DTYP] 2.4.3, [MS-SMB2] 2.2.13.1.1).
2. ACCESS_SYSTEM_SECURITY needs SeSecurityPrivilege: without it the whole
   request fails with STATUS_PRIVILEGE_NOT_HELD; WRITE_OWNER is granted by
   SeTakeOwnershipPrivilege.
3. A NULL DACL grants everything.
4. The owner is always granted READ_CONTROL and WRITE_DAC, unless the DACL has
   an ACE for OWNER RIGHTS (S-1-3-4), which then says what the owner gets.
5. The ACEs are walked in order, skipping INHERIT_ONLY ones.  An allow ACE for
   a SID in the token grants its bits; a deny ACE for a SID in the token fails
   the request if it names a bit still wanted.  With MAXIMUM_ALLOWED every
   ACE is visited and a bit counts as allowed or denied by the first ACE that
   mentions it.  An empty DACL therefore grants nothing but the owner's rights.
6. Whatever is still wanted at the end is STATUS_ACCESS_DENIED.

Two simplifications, both on the safe side: conditional (callback) ACEs are
never evaluated, so a callback allow ACE grants nothing and a callback deny ACE
always applies; object ACEs do not occur on files and are ignored.  ACE masks
carrying GENERIC_* bits are mapped before use: Windows maps them when it stores
a descriptor, a descriptor stored here is kept as the client sent it.
"""

from dataclasses import dataclass, field

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc.security import (OWNER_RIGHTS_SID as OWNER_RIGHTS, AceFlags, AceType,
                                        SecurityDescriptor, Sid)
from smbcad.proto.status import NtStatus

_DELETE = 0x00010000
_READ_CONTROL = 0x00020000
_WRITE_DAC = 0x00040000
_WRITE_OWNER = 0x00080000
_SYNCHRONIZE = 0x00100000
ACCESS_SYSTEM_SECURITY = 0x01000000
MAXIMUM_ALLOWED = 0x02000000
_GENERIC_ALL = 0x10000000
_GENERIC_EXECUTE = 0x20000000
_GENERIC_WRITE = 0x40000000
_GENERIC_READ = 0x80000000
FILE_ALL_ACCESS = 0x001F01FF

# [MS-DTYP] 2.4.3 / [MS-SMB2] 2.2.13.1.1: the file object's GENERIC_MAPPING.
FILE_GENERIC_MAPPING = (
    (_GENERIC_READ, 0x00120089),         # FILE_GENERIC_READ
    (_GENERIC_WRITE, 0x00120116),        # FILE_GENERIC_WRITE
    (_GENERIC_EXECUTE, 0x001200A0),      # FILE_GENERIC_EXECUTE
    (_GENERIC_ALL, FILE_ALL_ACCESS),
)

SE_SECURITY_PRIVILEGE = "SeSecurityPrivilege"
SE_TAKE_OWNERSHIP_PRIVILEGE = "SeTakeOwnershipPrivilege"

_CALLBACK_ALLOW = AceType.ACCESS_ALLOWED_CALLBACK
_CALLBACK_DENY = AceType.ACCESS_DENIED_CALLBACK


@dataclass(frozen=True, slots=True)
class Token:
    """The parts of a Token ([MS-DTYP] 2.5.2) an access check reads: the user's
    SID, its group SIDs and the names of the privileges it holds; and its
    primary group, which a new file's descriptor takes ([MS-DTYP] 2.5.3.4.1)."""

    user: Sid
    groups: frozenset[Sid] = field(default_factory=frozenset)
    privileges: frozenset[str] = field(default_factory=frozenset)
    primary_group: Sid | None = None

    def has_sid(self, sid: Sid | None) -> bool:
        """SidInToken ([MS-DTYP] 2.5.3.1.1), without PrincipalSelf substitution."""
        return sid is not None and (sid == self.user or sid in self.groups)


def map_generic(mask: int) -> int:
    """GENERIC_* bits replaced by the file rights they stand for ([MS-DTYP] 2.4.3)."""
    for generic, specific in FILE_GENERIC_MAPPING:
        if mask & generic:
            mask = (mask & ~generic) | specific
    return mask


def _ace_matches(token: Token, sid: Sid | None, is_owner: bool) -> bool:
    if sid == OWNER_RIGHTS:
        return is_owner
    return token.has_sid(sid)


def access_check(descriptor: SecurityDescriptor, token: Token, desired: int) -> int:
    """AccessCheck ([MS-DTYP] 2.5.3.2): the access granted for ``desired``.

    ``desired`` may carry GENERIC_* bits and MAXIMUM_ALLOWED; the result never
    does.  Raises SmbError(STATUS_ACCESS_DENIED) when a wanted bit is not
    granted, SmbError(STATUS_PRIVILEGE_NOT_HELD) for ACCESS_SYSTEM_SECURITY
    without SeSecurityPrivilege.
    """
    remaining = map_generic(desired)
    max_allowed = bool(remaining & MAXIMUM_ALLOWED)
    remaining &= ~MAXIMUM_ALLOWED
    granted = 0
    if remaining & ACCESS_SYSTEM_SECURITY:
        if SE_SECURITY_PRIVILEGE not in token.privileges:
            raise SmbError(NtStatus.PRIVILEGE_NOT_HELD, "SACL access needs SeSecurityPrivilege")
        granted |= ACCESS_SYSTEM_SECURITY
        remaining &= ~ACCESS_SYSTEM_SECURITY
    if remaining & _WRITE_OWNER and SE_TAKE_OWNERSHIP_PRIVILEGE in token.privileges:
        granted |= _WRITE_OWNER
        remaining &= ~_WRITE_OWNER
    if descriptor.dacl is None:
        # A NULL DACL (or none at all) grants every right ([MS-DTYP] 2.4.6).
        return granted | remaining | (FILE_ALL_ACCESS if max_allowed else 0)
    aces = [ace for ace in descriptor.dacl.aces if not ace.flags & AceFlags.INHERIT_ONLY]
    is_owner = token.has_sid(descriptor.owner)
    owner_implicit = 0
    if is_owner and not any(ace.sid == OWNER_RIGHTS for ace in aces):
        owner_implicit = _READ_CONTROL | _WRITE_DAC
    if max_allowed:
        granted |= _walk_maximum(aces, token, is_owner, owner_implicit)
        missing = remaining & ~granted
    else:
        granted |= remaining & owner_implicit
        missing = _walk_requested(aces, token, is_owner, remaining & ~owner_implicit)
        granted |= remaining & ~missing
    if missing:
        raise SmbError(NtStatus.ACCESS_DENIED, f"the DACL does not grant 0x{missing:08x}")
    return granted


def maximal_access(descriptor: SecurityDescriptor, token: Token) -> int:
    """Everything ``token`` may open the object for: MAXIMUM_ALLOWED's answer
    (what the MxAc create context reports, [MS-SMB2] 3.3.5.9.5)."""
    return access_check(descriptor, token, MAXIMUM_ALLOWED)


def _walk_requested(aces, token: Token, is_owner: bool, remaining: int) -> int:
    """The ACE walk for a specific request; returns the bits left ungranted.

    A deny ACE naming a bit still wanted ends the walk with that bit (and all
    others still wanted) refused, exactly as [MS-DTYP] 2.5.3.2 fails there.
    """
    for ace in aces:
        if not remaining:
            break
        if ace.sid is None:
            continue
        mask = map_generic(ace.mask)
        if ace.ace_type in (AceType.ACCESS_DENIED, _CALLBACK_DENY):
            if _ace_matches(token, ace.sid, is_owner) and remaining & mask:
                return remaining
        elif ace.ace_type == AceType.ACCESS_ALLOWED:
            if _ace_matches(token, ace.sid, is_owner):
                remaining &= ~mask
    return remaining


def _walk_maximum(aces, token: Token, is_owner: bool, owner_implicit: int) -> int:
    """The ACE walk in MAXIMUM_ALLOWED mode: every bit decided by its first ACE."""
    allowed = owner_implicit
    denied = 0
    for ace in aces:
        if ace.sid is None or not _ace_matches(token, ace.sid, is_owner):
            continue
        mask = map_generic(ace.mask)
        if ace.ace_type in (AceType.ACCESS_DENIED, _CALLBACK_DENY):
            denied |= mask & ~allowed
        elif ace.ace_type == AceType.ACCESS_ALLOWED:
            allowed |= mask & ~denied
    return allowed & ~denied
