"""Security descriptors on files ([MS-SMB2] 3.3.5.20.3, 3.3.5.21.3, [MS-DTYP] 2.4.6).

A descriptor a client sets is stored whole (the VFS keeps it in an xattr) and
its DACL is also mapped onto the POSIX mode, so local users see the same
rights; a file nobody set one on reports the descriptor its owner, group and
mode stand for.  Shared by CREATE (SecD context), QUERY_INFO and SET_INFO.
"""

import logging

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (
    SdControl, SecurityDescriptor, SecurityInformation, posix_from_sd, select_parts)
from smbcad.proto.fscc.security import sd_for_posix

log = logging.getLogger("smbcad.security")

_DACL_CONTROL = (SdControl.DACL_PRESENT | SdControl.DACL_DEFAULTED | SdControl.DACL_PROTECTED
                 | SdControl.DACL_AUTO_INHERITED | SdControl.DACL_TRUSTED)
_SACL_CONTROL = (SdControl.SACL_PRESENT | SdControl.SACL_DEFAULTED | SdControl.SACL_PROTECTED
                 | SdControl.SACL_AUTO_INHERITED)


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


def apply(fs, handle, is_directory: bool, descriptor: bytes, security_info: int) -> None:
    """Replace the parts ``security_info`` names with those of ``descriptor``."""
    new = SecurityDescriptor.decode(bytes(descriptor))
    old = current(fs, handle, is_directory)
    # A part counts only if the descriptor carries it: a CREATE's SecD without
    # DACL_PRESENT leaves the default DACL in place (smb2.create.nulldacl).
    take_dacl = bool(security_info & SecurityInformation.DACL) and new.dacl_present
    take_sacl = bool(security_info & SecurityInformation.SACL) and (
        bool(new.control & SdControl.SACL_PRESENT) or new.sacl is not None)
    control = SdControl.SELF_RELATIVE
    control |= (new.control if take_dacl else old.control) & _DACL_CONTROL
    control |= (new.control if take_sacl else old.control) & _SACL_CONTROL
    dacl = new.dacl if take_dacl else old.dacl
    sacl = new.sacl if take_sacl else old.sacl
    merged = SecurityDescriptor(
        control,
        new.owner if security_info & SecurityInformation.OWNER and new.owner else old.owner,
        new.group if security_info & SecurityInformation.GROUP and new.group else old.group,
        sacl, dacl)
    fs.set_security(handle, merged.encode())
    if take_dacl and new.dacl is not None:
        uid, gid, mode = fs.posix_identity(handle)
        _, _, new_mode = posix_from_sd(merged.encode(), current_uid=uid, current_gid=gid)
        if new_mode is not None:
            fs.set_posix_mode(handle, (mode & ~0o777) | new_mode)
