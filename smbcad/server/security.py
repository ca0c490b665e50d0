"""Security descriptors on files ([MS-SMB2] 3.3.5.20.3, 3.3.5.21.3, [MS-DTYP] 2.4.6).

A descriptor a client sets is stored whole (the VFS keeps it in a root-only
xattr, vfs/ntacl.py) and its DACL is also mapped onto the POSIX mode (a file
keeps its owner write bit, see ``apply``), so local users see the same rights;
its owner and group, when they name a POSIX id (a Unix SID, or a domain SID
the ID mapping covers, ``domain_ids``), become the file's owner and group
(the server runs as root).  A file nobody set one on reports
the descriptor its owner, group and mode stand for.  A new file under a
directory with a stored descriptor inherits from it ([MS-DTYP] 2.5.3.4,
``assign_on_create`` over proto/fscc/inherit.py).  Shared by CREATE (SecD
context, inheritance and the access check of stored descriptors), QUERY_INFO
and SET_INFO.

Who a session is, as an access check sees it (``session_token``): a user the
user database gives a uid is S-1-22-1-<uid> (with S-1-22-2-<gid> when it has a
gid), the SIDs ``sd_for_posix`` writes for that file owner.  A domain user
(one with a SID, from Kerberos' PAC or NETLOGON) is its own SID with every
group SID it brought, and, once the ID mapping gave it ids
(``smbca.auth.idmap``), also S-1-22-1-<uid> and S-1-22-2-<gid> of each of its
gids, so a descriptor written from a file's POSIX owner and group matches it
too.  A user without a uid acts on disk as the server's own uid (its files
are owned by it), so its token carries that uid's SID and it is the owner of
what it creates.  Every authenticated user is also Everyone, Authenticated
Users, BUILTIN\\Users and NETWORK; a guest is Everyone, BUILTIN\\Guests and
NETWORK; an anonymous session is ANONYMOUS LOGON and NETWORK only.  The
privileges are those the identity carries (``identity.admins``,
``identity.backup_operators``); with FILE_OPEN_FOR_BACKUP_INTENT,
SeBackupPrivilege and SeRestorePrivilege grant the read and the write rights
whatever a stored DACL says (``privileged_rights``).

A file or directory a CREATE makes is owned on disk by the session's uid and
primary gid when it has them (``own_new_file``), so local Unix tools see the
same owner as the security descriptor.
"""

import functools
import logging
from collections.abc import Callable

from smbca.auth.idmap import IdMap, IdMapError, split_sid
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (
    SdControl, SecurityDescriptor, SecurityInformation, Sid, posix_from_sd, select_parts,
    unix_group_sid, unix_user_sid)
from smbcad.proto.fscc.access_check import (
    MAXIMUM_ALLOWED, Token, access_check, map_generic, maximal_access)
from smbcad.proto.fscc.inherit import create_security_descriptor, normalize_set
from smbcad.proto.fscc.security import EVERYONE, gid_of_sid, sd_for_posix, uid_of_sid
from smbcad.proto.status import NtStatus

log = logging.getLogger("smbcad.security")

_DACL_CONTROL = (SdControl.DACL_PRESENT | SdControl.DACL_DEFAULTED | SdControl.DACL_PROTECTED
                 | SdControl.DACL_AUTO_INHERITED | SdControl.DACL_TRUSTED)
_SACL_CONTROL = (SdControl.SACL_PRESENT | SdControl.SACL_DEFAULTED | SdControl.SACL_PROTECTED
                 | SdControl.SACL_AUTO_INHERITED)
_ALL_PARTS = (SecurityInformation.OWNER | SecurityInformation.GROUP | SecurityInformation.DACL
              | SecurityInformation.SACL)


def current(fs, handle, is_directory: bool) -> SecurityDescriptor:
    stored = fs.get_security(handle)
    if stored:
        try:
            return SecurityDescriptor.decode(stored)
        except SmbError:
            log.warning("ignoring an unreadable stored descriptor on %s", handle.path)
    uid, gid, mode = fs.posix_identity(handle)
    return sd_for_posix(uid, gid, mode, is_directory)


def query(fs, handle, is_directory: bool, security_info: int) -> bytes:
    return select_parts(current(fs, handle, is_directory), security_info).encode()


# A domain SID's uid or gid (``domain_ids``), None when it has none.
IdOf = Callable[[Sid], int | None]


def domain_ids(idmap: IdMap, identity) -> IdOf:
    """The ID mapping of domain SIDs as the session ``identity`` sees it:
    a range keyed by domain name applies to the user's own logon domain."""
    logon = None
    split = split_sid(identity.sid) if identity is not None and identity.sid else None
    if split is not None and identity.domain:
        logon = (identity.domain.upper(), split[0])

    def id_of(sid: Sid) -> int | None:
        try:
            return idmap.id_of(str(sid), logon)
        except IdMapError:
            return None              # past its range: the descriptor alone names it
    return id_of


def apply(fs, handle, is_directory: bool, descriptor: bytes, security_info: int, *,
          absent_dacl_is_null: bool = False, id_of: IdOf | None = None) -> None:
    """Replace the parts ``security_info`` names with those of ``descriptor``.

    An owner or group that names a POSIX id (S-1-22-1-<uid>, S-1-22-2-<gid>)
    also becomes the file's POSIX owner or group, and so does a domain SID
    the ID mapping gives an id (``id_of``, from ``domain_ids``).  Without DACL_PRESENT a
    descriptor carries no DACL: a CREATE's SecD then leaves the default DACL in
    place, while SET_INFO (``absent_dacl_is_null``) sets a NULL DACL, as
    Windows does (smb2.create.nulldacl checks both).
    """
    new = normalize_set(SecurityDescriptor.decode(bytes(descriptor)))
    old = current(fs, handle, is_directory)
    if (absent_dacl_is_null and security_info & SecurityInformation.DACL
            and not new.dacl_present):
        new = SecurityDescriptor(new.control | SdControl.DACL_PRESENT, new.owner, new.group,
                                 new.sacl, None)
    take_dacl = bool(security_info & SecurityInformation.DACL) and new.dacl_present
    take_sacl = bool(security_info & SecurityInformation.SACL) and (
        bool(new.control & SdControl.SACL_PRESENT) or new.sacl is not None)
    control = SdControl.SELF_RELATIVE
    control |= (new.control if take_dacl else old.control) & _DACL_CONTROL
    control |= (new.control if take_sacl else old.control) & _SACL_CONTROL
    dacl = new.dacl if take_dacl else old.dacl
    sacl = new.sacl if take_sacl else old.sacl
    new_owner = new.owner if security_info & SecurityInformation.OWNER else None
    new_group = new.group if security_info & SecurityInformation.GROUP else None
    merged = SecurityDescriptor(control, new_owner or old.owner, new_group or old.group,
                                sacl, dacl)
    _chown_to(fs, handle, new_owner, new_group, id_of)
    fs.set_security(handle, merged.encode())
    if take_dacl:
        _mode_from_dacl(fs, handle, is_directory, merged)


def _mode_from_dacl(fs, handle, is_directory: bool, descriptor: SecurityDescriptor) -> None:
    """Map a stored DACL onto the POSIX mode, so local users see the same rights."""
    uid, gid, mode = fs.posix_identity(handle)
    if descriptor.dacl is None:
        # POSIX has no NULL DACL: owner, group and Everyone get full access (as Samba).
        new_mode = 0o777
    else:
        _, _, new_mode = posix_from_sd(descriptor.encode(), current_uid=uid, current_gid=gid)
    if new_mode is not None and not is_directory:
        # POSIX lets an owner turn its write bit back on at will, so the stored
        # descriptor, not the mode, enforces a DACL that denies the owner
        # writing; the bit stays so the file does not turn READONLY
        # (vfs/_meta.py infers that from a clear owner write bit).
        new_mode |= 0o200
    if new_mode is not None:
        fs.set_posix_mode(handle, (mode & ~0o777) | new_mode)


def assign_on_create(fs, handle, parent: str, creator: bytes | None, token: Token) -> None:
    """The descriptor of a file or directory this CREATE made ([MS-DTYP] 2.5.3.4,
    ``proto/fscc/inherit.py``): inherited from ``parent`` (share-relative) and
    merged with the CREATE's SD buffer ``creator``.

    A parent with no stored descriptor has nothing to hand on beyond its POSIX
    mode, which the new file already took from the kernel: the file then keeps
    the descriptor its mode stands for, or the creator's laid over that, as
    before inheritance existed.  The token's user and primary group own the new
    descriptor (the file's POSIX owner changes only when the creator names a
    Unix SID, as for SET_INFO).
    """
    parent_sd = stored_descriptor(fs, parent)
    if parent_sd is None:
        if creator is not None:
            apply(fs, handle, handle.is_directory, creator, _ALL_PARTS)
        return
    creator_sd = None if creator is None else SecurityDescriptor.decode(bytes(creator))
    _, file_gid, _ = fs.posix_identity(handle)
    group = token.primary_group or unix_group_sid(file_gid)
    new = create_security_descriptor(parent_sd, creator_sd, is_container=handle.is_directory,
                                     token_owner=token.user, token_group=group)
    if creator_sd is not None:
        _chown_to(fs, handle, creator_sd.owner, creator_sd.group)
    fs.set_security(handle, new.encode())
    _mode_from_dacl(fs, handle, handle.is_directory, new)


def _chown_to(fs, handle, owner: Sid | None, group: Sid | None,
              id_of: IdOf | None = None) -> None:
    """Make a new owner or group that is a Unix SID, or a mapped domain SID,
    the file's POSIX owner or group; other SIDs have no POSIX id and leave
    the file's alone."""
    uid, gid = uid_of_sid(owner), gid_of_sid(group)
    if id_of is not None:
        if uid is None and owner is not None:
            uid = id_of(owner)
        if gid is None and group is not None:
            gid = id_of(group)
    if uid is None and gid is None:
        return
    current_uid, current_gid, _ = fs.posix_identity(handle)
    if uid == current_uid:
        uid = None
    if gid == current_gid:
        gid = None
    if uid is not None or gid is not None:
        fs.set_posix_owner(handle, uid, gid)


# --- access checks of stored descriptors ([MS-FSA] 2.1.5.1.2) -------------------------

_NETWORK = Sid(5, (2,))
_ANONYMOUS_LOGON = Sid(5, (7,))
_AUTHENTICATED_USERS = Sid(5, (11,))
_BUILTIN_USERS = Sid(5, (32, 545))
_BUILTIN_GUESTS = Sid(5, (32, 546))
_ANONYMOUS_TOKEN = Token(_ANONYMOUS_LOGON, frozenset({_NETWORK}))
_GUEST_TOKEN = Token(_BUILTIN_GUESTS, frozenset({EVERYONE, _BUILTIN_GUESTS, _NETWORK}))

_FILE_LIST_DIRECTORY = 0x00000001
_FILE_ADD_FILE = 0x00000002
_FILE_ADD_SUBDIRECTORY = 0x00000004
_FILE_DELETE_CHILD = 0x00000040
_FILE_READ_ATTRIBUTES = 0x00000080
_DELETE = 0x00010000
# Rights a file's parent can grant on its own ([MS-FSA] 2.1.5.1.2.1).
_VIA_PARENT = _DELETE | _FILE_READ_ATTRIBUTES
# What an open with FILE_OPEN_FOR_BACKUP_INTENT gets from SeBackupPrivilege
# and SeRestorePrivilege whatever the DACL says (Windows' SeAccessCheck;
# Samba's SEC_RIGHTS_PRIV_BACKUP / _RESTORE).  ACCESS_SYSTEM_SECURITY is left
# out: CREATE refuses it before any descriptor is read.
_PRIVILEGE_RIGHTS = (
    ("SeBackupPrivilege", 0x00020000 | 0x00120089 | 0x00000020),   # READ_CONTROL, FILE_GENERIC_READ, TRAVERSE
    ("SeRestorePrivilege", 0x00040000 | 0x00080000 | 0x00120116     # WRITE_DAC, WRITE_OWNER, FILE_GENERIC_WRITE,
     | _FILE_ADD_FILE | _FILE_ADD_SUBDIRECTORY | _DELETE),          # ADD_FILE, ADD_SUBDIRECTORY, DELETE
)


def privileged_rights(token: Token, backup_intent: bool) -> int:
    """The rights the token's backup and restore privileges grant an open
    made with FILE_OPEN_FOR_BACKUP_INTENT (none without it)."""
    if not backup_intent:
        return 0
    rights = 0
    for name, granted in _PRIVILEGE_RIGHTS:
        if name in token.privileges:
            rights |= granted
    return rights


def session_token(fs, identity) -> Token:
    """The token of a session's user (mapping in the module docstring).
    Identities and tokens are immutable, so each is built once (every CREATE
    asks for one)."""
    if identity is None or identity.is_anonymous:
        return _ANONYMOUS_TOKEN
    if identity.is_guest:
        return _GUEST_TOKEN
    if identity.uid is None:
        return _token_of(identity, *fs.default_owner())
    return _token_of(identity, identity.uid, identity.gid)


@functools.lru_cache(maxsize=4096)
def _token_of(identity, uid: int, gid: int | None) -> Token:
    groups = {EVERYONE, _AUTHENTICATED_USERS, _BUILTIN_USERS, _NETWORK}
    primary = unix_group_sid(gid) if gid is not None else None
    groups.update(unix_group_sid(number) for number in (gid, *identity.gids)
                  if number is not None)
    user = unix_user_sid(uid)
    if identity.sid:
        # The domain SIDs name the user in descriptors a client writes; the
        # Unix SIDs in those written from the file's POSIX owner and group.
        groups.add(user)
        user = Sid.from_string(identity.sid)
        groups.update(Sid.from_string(sid) for sid in identity.group_sids)
        if identity.group_sids:
            primary = Sid.from_string(identity.group_sids[0])
    return Token(user, frozenset(groups), frozenset(identity.privileges), primary_group=primary)


def own_new_file(fs, handle, identity) -> None:
    """A new file or directory is owned by the session's uid and primary
    gid, when it has them (a local user with a uid, a mapped domain user)."""
    if identity is not None and identity.uid is not None and not identity.is_guest:
        fs.set_posix_owner(handle, identity.uid, identity.gid)


# ``check_open``'s ``stored`` when the caller has not read the descriptor.
UNREAD = object()


def stored_descriptor(fs, path: str, raw=UNREAD) -> SecurityDescriptor | None:
    """The readable descriptor a client stored on ``path`` (share-relative, any
    case); ``raw``: its stored bytes, when the caller read them already (a
    lookup's ``Resolved.security``)."""
    if raw is UNREAD:
        raw = fs.stored_security_at(path)
    if not raw:
        return None
    try:
        return SecurityDescriptor.decode(raw)
    except SmbError:
        log.warning("ignoring an unreadable stored descriptor on %s", path)
        return None


def check_open(fs, path: str, token: Token, desired: int, *,
               backup_intent: bool = False, stored=UNREAD) -> int | None:
    """The access a stored descriptor grants for ``desired`` when opening ``path``
    ([MS-FSA] 2.1.5.1.2.1), or None when the file has none stored.

    GENERIC_* bits are mapped and MAXIMUM_ALLOWED answered.  As on Windows,
    FILE_DELETE_CHILD on the parent also grants DELETE and FILE_LIST_DIRECTORY
    on it FILE_READ_ATTRIBUTES; a parent without a stored descriptor grants
    both (its mode-derived rights are the share's).  With ``backup_intent``
    the token's backup and restore privileges grant their rights first
    (``privileged_rights``).  Raises SmbError (STATUS_ACCESS_DENIED) when a
    wanted right is not granted.
    """
    descriptor = stored_descriptor(fs, path, stored)
    if descriptor is None:
        return None
    wanted = map_generic(desired)
    privileged = privileged_rights(token, backup_intent)
    if privileged:
        if wanted & MAXIMUM_ALLOWED:
            return check_open(fs, path, token, wanted & ~privileged, stored=stored) | privileged
        rest = wanted & ~privileged
        return (wanted & privileged) | (check_open(fs, path, token, rest, stored=stored)
                                        if rest else 0)
    if wanted & MAXIMUM_ALLOWED:
        granted = access_check(descriptor, token, wanted & ~_VIA_PARENT)
        if path and granted & _VIA_PARENT != _VIA_PARENT:
            granted |= _rights_from_parent(fs, path, token)
        missing = wanted & _VIA_PARENT & ~granted
        if missing:
            raise SmbError(NtStatus.ACCESS_DENIED, f"not granted: 0x{missing:08x}")
        return granted
    try:
        return access_check(descriptor, token, wanted)
    except SmbError as denied:
        if denied.status != NtStatus.ACCESS_DENIED or not path or not wanted & _VIA_PARENT:
            raise
        via_parent = wanted & _rights_from_parent(fs, path, token)
        if not via_parent:
            raise
    return access_check(descriptor, token, wanted & ~via_parent) | via_parent


def check_create(fs, parent: str, token: Token, directory: bool, *,
                 backup_intent: bool = False) -> None:
    """A new entry in ``parent`` needs FILE_ADD_FILE or FILE_ADD_SUBDIRECTORY
    there ([MS-FSA] 2.1.5.1.2), when the parent has a stored descriptor (or
    SeRestorePrivilege and backup intent)."""
    wanted = _FILE_ADD_SUBDIRECTORY if directory else _FILE_ADD_FILE
    if wanted & privileged_rights(token, backup_intent):
        return
    descriptor = stored_descriptor(fs, parent)
    if descriptor is not None:
        access_check(descriptor, token, wanted)


def maximal_access_of(fs, handle, token: Token) -> int | None:
    """MAXIMUM_ALLOWED against the open file's stored descriptor, None without one."""
    raw = fs.get_security(handle)
    if not raw:
        return None
    try:
        descriptor = SecurityDescriptor.decode(raw)
    except SmbError:
        return None
    granted = maximal_access(descriptor, token)
    if handle.path and granted & _VIA_PARENT != _VIA_PARENT:
        granted |= _rights_from_parent(fs, handle.path, token)
    return granted


def _rights_from_parent(fs, path: str, token: Token) -> int:
    """DELETE and FILE_READ_ATTRIBUTES as far as ``path``'s parent grants them."""
    descriptor = stored_descriptor(fs, path.rpartition("/")[0])
    if descriptor is None:
        return _VIA_PARENT
    parent = maximal_access(descriptor, token)
    return ((_DELETE if parent & _FILE_DELETE_CHILD else 0)
            | (_FILE_READ_ATTRIBUTES if parent & _FILE_LIST_DIRECTORY else 0))
