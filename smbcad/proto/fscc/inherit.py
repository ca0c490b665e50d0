"""The security descriptor of a new file or directory ([MS-DTYP] 2.5.3.4).

Sans-IO: the parent's descriptor, the one the client sent with the CREATE (the
SMB2_CREATE_SD_BUFFER context, [MS-SMB2] 2.2.13.2.6) and who creates the file
in; the new file's descriptor out.  ``create_security_descriptor`` follows
CreateSecurityDescriptor (2.5.3.4.1) and ComputeACL (2.5.3.4.2) as a file
system applies them:

- Owner and group come from the creator's descriptor, else from the token
  (its user and primary group).
- AutoInheritFlags are the parent's: a parent whose DACL (SACL) carries
  DACL_AUTO_INHERITED (SACL_AUTO_INHERITED) hands on ACEs marked
  INHERITED_ACE and the child is AUTO_INHERITED too; otherwise inherited ACEs
  carry no INHERITED_ACE flag (what Windows returns, smb2.acls.INHERITFLAGS).
- From the parent's ACL (2.5.3.4.3 ComputeInheritedACLfromParent): a file
  takes the OBJECT_INHERIT ACEs, a directory the CONTAINER_INHERIT ones, with
  no inheritance flags left on a file's.  A directory also keeps an
  OBJECT_INHERIT-only ACE as INHERIT_ONLY, for its files.  NO_PROPAGATE_INHERIT
  stops at the child: its ACE keeps no inheritance flags.  An ACE naming
  CREATOR OWNER / CREATOR GROUP or carrying GENERIC_* bits is split on a
  directory that passes it on: the effective copy names the new owner / group
  with the rights mapped, the original stays INHERIT_ONLY for grandchildren.
  The parent's own INHERIT_ONLY and DACL_PROTECTED say nothing about children.
- A creator's ACL ([MS-DTYP] 2.5.3.4.2): used as given (GENERIC_* bits of
  effective ACEs mapped); when the parent auto-inherits, its INHERITED_ACE
  entries are dropped and the parent's inheritable ACEs appended, unless the
  creator's ACL is PROTECTED, which blocks inheritance (its INHERITED_ACE flags
  are then cleared).  A creator's DACL that is only DACL_DEFAULTED yields to
  the parent's inheritable ACEs when there are any.
- No creator DACL and nothing inheritable: the token's default DACL, which on
  Windows is full control for the owner and for SYSTEM (smb2.acls.INHERITANCE's
  ``sd_def1``).

``normalize_set`` is the matching rule for a descriptor a client sets
([MS-DTYP] 2.5.3.4 via SetSecurityInfo; smb2.acls.GENERIC, INHERITFLAGS): the
GENERIC_* bits of effective ACEs are mapped, DACL_AUTO_INHERITED survives only
with DACL_AUTO_INHERIT_REQ (DACL_COMPUTED_INHERITANCE_REQUIRED), and the REQ
bits themselves are never kept.
"""

from dataclasses import replace

from smbcad.proto.fscc.access_check import map_generic
from smbcad.proto.fscc.security import (
    CREATOR_GROUP, CREATOR_OWNER, LOCAL_SYSTEM, Ace, AceFlags, AceType, Acl, SdControl,
    SecurityDescriptor, Sid)

_FILE_ALL_ACCESS = 0x001F01FF
_GENERIC_BITS = 0xF0000000
# ACE types whose inheritance is computed; others (object ACEs, labels, opaque
# ones) are not handed on: they do not occur on files.
_INHERITABLE_TYPES = frozenset({
    AceType.ACCESS_ALLOWED, AceType.ACCESS_DENIED, AceType.SYSTEM_AUDIT, AceType.SYSTEM_ALARM,
    AceType.ACCESS_ALLOWED_CALLBACK, AceType.ACCESS_DENIED_CALLBACK,
    AceType.SYSTEM_AUDIT_CALLBACK})


def default_dacl(owner: Sid) -> Acl:
    """A Windows token's default DACL: full control for the owner and SYSTEM."""
    return Acl((Ace(AceType.ACCESS_ALLOWED, 0, _FILE_ALL_ACCESS, owner),
                Ace(AceType.ACCESS_ALLOWED, 0, _FILE_ALL_ACCESS, LOCAL_SYSTEM)))


def _needs_expansion(ace: Ace) -> bool:
    return bool(ace.mask & _GENERIC_BITS) or ace.sid in (CREATOR_OWNER, CREATOR_GROUP)


def _expanded(ace: Ace, owner: Sid, group: Sid, flags: int) -> Ace:
    """The effective copy of an inherited ACE: creator SIDs replaced, rights mapped."""
    sid = owner if ace.sid == CREATOR_OWNER else group if ace.sid == CREATOR_GROUP else ace.sid
    return replace(ace, flags=flags, mask=map_generic(ace.mask), sid=sid)


def inherited_aces(parent: Acl | None, is_container: bool, owner: Sid, group: Sid,
                   auto_inherit: bool) -> tuple[Ace, ...]:
    """ComputeInheritedACLfromParent ([MS-DTYP] 2.5.3.4.3) for a file system object."""
    if parent is None:
        return ()
    marker = AceFlags.INHERITED if auto_inherit else 0
    out: list[Ace] = []
    for ace in parent.aces:
        if ace.sid is None or ace.ace_type not in _INHERITABLE_TYPES:
            continue
        flags = ace.flags
        audit = flags & (AceFlags.SUCCESSFUL_ACCESS | AceFlags.FAILED_ACCESS)
        applies = bool(flags & (AceFlags.CONTAINER_INHERIT if is_container
                                else AceFlags.OBJECT_INHERIT))
        no_propagate = bool(flags & AceFlags.NO_PROPAGATE_INHERIT)
        if not applies:
            # A directory keeps a files-only ACE for its own files, inert on itself.
            if is_container and flags & AceFlags.OBJECT_INHERIT and not no_propagate:
                out.append(replace(ace, flags=(AceFlags.OBJECT_INHERIT | AceFlags.INHERIT_ONLY
                                               | audit | marker)))
            continue
        if not is_container or no_propagate:
            out.append(_expanded(ace, owner, group, audit | marker))
            continue
        passed_on = flags & (AceFlags.OBJECT_INHERIT | AceFlags.CONTAINER_INHERIT)
        if _needs_expansion(ace):
            out.append(_expanded(ace, owner, group, audit | marker))
            out.append(replace(ace, flags=passed_on | AceFlags.INHERIT_ONLY | audit | marker))
        else:
            out.append(replace(ace, flags=passed_on | audit | marker))
    return tuple(out)


def _map_effective(aces) -> tuple[Ace, ...]:
    """GENERIC_* bits of ACEs that apply to the object itself, mapped."""
    return tuple(ace if ace.flags & AceFlags.INHERIT_ONLY or not ace.mask & _GENERIC_BITS
                 else replace(ace, mask=map_generic(ace.mask)) for ace in aces)


def _explicit_aces(creator: Acl, protected: bool, auto_inherit: bool) -> tuple[Ace, ...]:
    """A creator's ACEs as they go into the new descriptor."""
    aces = []
    for ace in creator.aces:
        if ace.flags & AceFlags.INHERITED:
            if protected:
                ace = replace(ace, flags=ace.flags & ~AceFlags.INHERITED)
            elif auto_inherit:
                continue            # the parent's inherited ACEs take their place
        aces.append(ace)
    return _map_effective(aces)


def _compute_acl(parent: SecurityDescriptor | None, creator: SecurityDescriptor | None,
                 is_container: bool, owner: Sid, group: Sid, *,
                 dacl: bool) -> tuple[int, Acl | None, bool]:
    """ComputeACL ([MS-DTYP] 2.5.3.4.2) for the DACL or the SACL.

    Returns (control bits, ACL, present); ``present`` False means the new
    descriptor gets no such ACL at all (the caller may then use a default).
    """
    if dacl:
        present_bit, defaulted_bit = SdControl.DACL_PRESENT, SdControl.DACL_DEFAULTED
        protected_bit, auto_bit = SdControl.DACL_PROTECTED, SdControl.DACL_AUTO_INHERITED
    else:
        present_bit, defaulted_bit = SdControl.SACL_PRESENT, SdControl.SACL_DEFAULTED
        protected_bit, auto_bit = SdControl.SACL_PROTECTED, SdControl.SACL_AUTO_INHERITED
    parent_acl = None if parent is None else (parent.dacl if dacl else parent.sacl)
    auto_inherit = parent is not None and bool(parent.control & auto_bit)
    creator_acl = None
    creator_present = False
    protected = False
    if creator is not None:
        creator_acl = creator.dacl if dacl else creator.sacl
        creator_present = bool(creator.control & present_bit) or creator_acl is not None
        protected = creator_present and bool(creator.control & protected_bit)
    inherited = () if protected else inherited_aces(parent_acl, is_container, owner, group,
                                                      auto_inherit)
    defaulted = creator_present and bool(creator.control & defaulted_bit)
    if creator_present and not (defaulted and inherited):
        control = protected_bit if protected else 0
        if creator_acl is None:
            return control, None, True                  # a NULL ACL: present, no ACEs
        aces = _explicit_aces(creator_acl, protected, auto_inherit)
        if auto_inherit and not protected:
            return control | auto_bit, Acl(aces + inherited, creator_acl.revision), True
        return control, Acl(aces, creator_acl.revision), True
    if inherited:
        revision = parent_acl.revision if parent_acl is not None else Acl().revision
        return (auto_bit if auto_inherit else 0), Acl(inherited, revision), True
    return 0, None, False


def create_security_descriptor(parent: SecurityDescriptor | None,
                               creator: SecurityDescriptor | None, *, is_container: bool,
                               token_owner: Sid, token_group: Sid) -> SecurityDescriptor:
    """CreateSecurityDescriptor ([MS-DTYP] 2.5.3.4.1) for a new file or directory.

    ``parent``: the containing directory's descriptor; ``creator``: the
    CREATE's SD buffer, if any; ``token_owner`` / ``token_group``: the
    creating token's user and primary group.
    """
    owner = creator.owner if creator is not None and creator.owner is not None else token_owner
    group = creator.group if creator is not None and creator.group is not None else token_group
    control = SdControl.SELF_RELATIVE
    dacl_control, dacl, dacl_present = _compute_acl(parent, creator, is_container, owner, group,
                                                    dacl=True)
    if not dacl_present:
        dacl = default_dacl(owner)
    control |= dacl_control | SdControl.DACL_PRESENT
    sacl_control, sacl, sacl_present = _compute_acl(parent, creator, is_container, owner, group,
                                                    dacl=False)
    if sacl_present:
        control |= sacl_control | SdControl.SACL_PRESENT
    return SecurityDescriptor(control, owner, group, sacl, dacl)


def normalize_set(descriptor: SecurityDescriptor) -> SecurityDescriptor:
    """A descriptor a client sets, as it is to be stored (module docstring)."""
    control = descriptor.control
    for auto, required in ((SdControl.DACL_AUTO_INHERITED,
                            SdControl.DACL_COMPUTED_INHERITANCE_REQUIRED),
                           (SdControl.SACL_AUTO_INHERITED,
                            SdControl.SACL_COMPUTED_INHERITANCE_REQUIRED)):
        if not control & required:
            control &= ~auto
        control &= ~required
    dacl = descriptor.dacl
    if dacl is not None:
        dacl = Acl(_map_effective(dacl.aces), dacl.revision)
    return replace(descriptor, control=control, dacl=dacl)
