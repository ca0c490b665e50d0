"""Where a file's NT security descriptor is kept: the ``security.smbca.ntacl`` xattr.

A descriptor a client sets (or a new file inherits) is stored whole, in
self-relative form, as Samba keeps its ``security.NTACL`` (our own name: the
format differs).  The ``security.`` namespace is the point: the kernel lets
only a process with CAP_SYS_ADMIN write it (commoncap's
``cap_inode_setxattr``), so a local user who may write a file cannot rewrite
the descriptor SMB clients are checked against.  Anyone may read it, which
gives nothing away the SMB QUERY_INFO would not.

Earlier versions kept descriptors in ``user.smbca.ntacl``, which any local
user with write access to the file can change.  ``migrate_share`` moves them
once per share, before the share serves anything: per file it copies the
legacy value into the security xattr (never over one already there) and then
removes the legacy one, and only when the whole tree is done it marks the
share root (``security.smbca.ntacl-migrated``).  Each step can be repeated,
so a crash midway just means the walk runs again on the next start.  Nothing
ever reads the legacy xattr except that walk: a ``user.smbca.ntacl`` planted
after it grants nothing.

DOS attributes (``attrs.py``), EAs (``eas.py``) and named streams
(``streams.py``) stay in ``user.`` xattrs: whoever may write those can write
the file's data anyway, and none of them grants access.  Client EA names are
always stored under ``user.smbca.ea.``, so no EA reaches this namespace.
"""

import errno
import logging
import os

from smbcad.vfs.errors import smb_error

SECURITY_XATTR = "security.smbca.ntacl"
LEGACY_XATTR = "user.smbca.ntacl"
MIGRATED_XATTR = "security.smbca.ntacl-migrated"

log = logging.getLogger("smbcad.vfs")

_ABSENT = frozenset({errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP})
# A name that went away, or a file type that holds no user xattrs (symlinks, devices).
_SKIP = frozenset({errno.ENODATA, errno.ENOENT, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP})


class MigrationError(OSError):
    """Legacy descriptors exist but cannot be moved (the file system refuses
    ``security.`` xattrs): serving the share would drop them."""


def read(target: int | str) -> bytes | None:
    """The stored descriptor of an open fd (not O_PATH) or of a ``/proc/self/fd``
    path, None if there is none or the file system keeps no xattrs."""
    try:
        return os.getxattr(target, SECURITY_XATTR)
    except OSError as err:
        if err.errno in _ABSENT or (isinstance(target, str) and err.errno == errno.ENOENT):
            return None
        raise smb_error(err) from err


def write(fd: int, descriptor: bytes) -> bool:
    """Store a descriptor on an open fd; False where the file system keeps no
    ``security.`` xattrs (the POSIX mode mapping then stands alone)."""
    try:
        os.setxattr(fd, SECURITY_XATTR, descriptor)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise smb_error(err) from err
    return True


def _has(path: str, name: str) -> bool:
    try:
        os.getxattr(path, name)
    except OSError as err:
        if err.errno in _SKIP:
            return False
        raise
    return True


def _migrate_one(path: str, follow: bool = False) -> bool:
    """Move one file's legacy descriptor; True if it had one.  ``follow``: the
    path is a /proc/self/fd link to the file itself (the share root)."""
    try:
        legacy = os.getxattr(path, LEGACY_XATTR, follow_symlinks=follow)
    except OSError as err:
        if err.errno in _SKIP:
            return False
        raise
    try:
        os.setxattr(path, SECURITY_XATTR, legacy, os.XATTR_CREATE, follow_symlinks=follow)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise MigrationError(
                f"{path}: has an NT ACL in {LEGACY_XATTR} but its file system takes no "
                f"security.* xattrs to move it to") from err
        if err.errno != errno.EEXIST:       # moved before a crash: the new one wins
            raise
    try:
        os.removexattr(path, LEGACY_XATTR, follow_symlinks=follow)
    except OSError as err:
        if err.errno not in (errno.ENODATA, errno.ENOENT):
            raise
    return True


def _unless_gone(err: OSError) -> None:
    """A directory the walk cannot list must not be marked done; one removed
    meanwhile has nothing left to move."""
    if err.errno not in (errno.ENOENT, errno.ENOTDIR):
        raise err


def migrate_share(root_fd: int, label: str = "") -> int:
    """Move every legacy descriptor under the share root once (module docstring).

    Returns how many files were moved (0 when the share was done before).
    Raises MigrationError where the file system cannot take the move, OSError
    for other failures (the share should then not be served).
    """
    root = f"/proc/self/fd/{root_fd}"
    try:
        if _has(root, MIGRATED_XATTR):
            return 0
    except OSError as err:
        raise OSError(err.errno, f"share {label}: reading {MIGRATED_XATTR}: {err.strerror}") \
            from err
    moved = int(_migrate_one(root, follow=True))
    for _, dirs, files, dir_fd in os.fwalk(".", dir_fd=root_fd, follow_symlinks=False,
                                           onerror=_unless_gone):
        for name in (*dirs, *files):
            moved += _migrate_one(f"/proc/self/fd/{dir_fd}/{name}")
    try:
        os.setxattr(root, MIGRATED_XATTR, b"1")
    except OSError as err:
        if err.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        # No security.* xattrs here and no legacy descriptor was found: nothing
        # to remember; the (cheap, empty) walk repeats on the next start.
    if moved:
        log.info("share %s: moved %d NT ACL(s) from %s to %s", label, moved, LEGACY_XATTR,
                 SECURITY_XATTR)
    return moved
