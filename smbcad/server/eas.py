"""Extended attributes in the server: the CREATE "ExtA" context, QUERY_INFO and
SET_INFO FileFullEaInformation, and EaSize ([MS-SMB2] 3.3.5.9.1, 3.3.5.20.1,
3.3.5.21.1; [MS-FSA] 2.1.5.12.10, 2.1.5.12.12, 2.1.5.15.6).

The EAs themselves live in the vfs (``smbcad/vfs/eas.py``: one user xattr per
EA).  Here: access checks, the FILE_GET_EA_INFORMATION list, the query flags
and ``Open.current_ea_index`` ([MS-SMB2] 3.3.1.10 Open.CurrentEaIndex).

Query rules (3.3.5.20.1), in the order applied:

======================================  =========================================
Request                                 Entries returned
======================================  =========================================
an EaList (InputBuffer)                 the named EAs in list order; a missing
                                        one as an empty value (as NTFS and
                                        Samba); the index is left alone
SL_INDEX_SPECIFIED                      from AdditionalInformation (1-based);
                                        out of range: NONEXISTENT_EA_ENTRY
SL_RESTART_SCAN                         from the first EA
neither                                 from ``Open.current_ea_index``
======================================  =========================================

Then: no EAs on the file at all is STATUS_NO_EAS_ON_FILE, an index past the
last EA STATUS_NO_MORE_EAS, nothing fitting STATUS_BUFFER_TOO_SMALL, some
left over STATUS_BUFFER_OVERFLOW ([MS-FSA] 2.1.5.12.12);
SL_RETURN_SINGLE_ENTRY returns one entry.  Index-based queries advance
``Open.current_ea_index`` by the entries returned.
"""

from smbcad.proto.constants import AccessMask, CreateAction, CreateOptions as Opt
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (FileInfoClass as C, FullEa, decode_full_ea_list,
                               decode_get_ea_list, encode_full_ea_list)
from smbcad.proto.fscc.ea import FILE_NEED_EA
from smbcad.proto.query_info import FILE_FULL_EA_INFORMATION, QueryInfoFlags as Flags
from smbcad.proto.status import NtStatus

FULL_EA = FILE_FULL_EA_INFORMATION
STATUS_NO_MORE_EAS = 0x80000012         # [MS-ERREF] 2.3.1
# QUERY_DIRECTORY classes without an EaSize field ([MS-FSCC] 2.4.10, 2.4.33).
_NO_EA_SIZE = frozenset({C.FILE_DIRECTORY, C.FILE_NAMES})


def in_directory_class(info_class: int) -> bool:
    """Whether a QUERY_DIRECTORY class reports EaSize (so entries need it computed)."""
    return info_class not in _NO_EA_SIZE


# --- CREATE ------------------------------------------------------------------------------

def check_create_context(fs, request, resolved) -> None:
    """Before the open: FILE_NO_EA_KNOWLEDGE ([MS-SMB2] 2.2.13, [MS-FSA] 2.1.5.1.2)
    and a well-formed ExtA list on a share that can keep it (3.3.5.9.1:
    STATUS_EAS_NOT_SUPPORTED otherwise; a bad list fails the open, nothing made)."""
    buffer = request.create_contexts.ea_buffer
    if request.create_options & Opt.NO_EA_KNOWLEDGE:
        if buffer is not None:
            raise SmbError(NtStatus.ACCESS_DENIED, "EAs sent with FILE_NO_EA_KNOWLEDGE")
        if resolved.exists and _needs_ea_knowledge(fs, resolved):
            raise SmbError(NtStatus.ACCESS_DENIED, "file has FILE_NEED_EA attributes")
    if buffer is None:
        return
    if not fs.user_xattrs():
        raise SmbError(NtStatus.EAS_NOT_SUPPORTED, "no user xattrs on this share")
    decode_full_ea_list(buffer)


def _needs_ea_knowledge(fs, resolved) -> bool:
    try:
        handle = fs.open(resolved)
    except SmbError:
        return False        # the open proper reports what is wrong with the file
    try:
        return any(ea.flags & FILE_NEED_EA for ea in fs.get_eas(handle))
    finally:
        handle.close()


def apply_create_context(fs, handle, request, action: int) -> None:
    """Store the ExtA EAs on a created, overwritten or superseded file (3.3.5.9.1:
    ignored when an existing file is just opened)."""
    buffer = request.create_contexts.ea_buffer
    if buffer is not None and action != CreateAction.OPENED:
        fs.set_eas(handle, decode_full_ea_list(buffer))


# --- QUERY_INFO / SET_INFO ---------------------------------------------------------------

def query(ctx, open_, request) -> tuple[bytes, int]:
    """QUERY_INFO FileFullEaInformation ([MS-SMB2] 3.3.5.20.1); (data, status)."""
    if not open_.granted_access & AccessMask.FILE_READ_EA:
        raise SmbError(NtStatus.ACCESS_DENIED, "FILE_READ_EA needed")
    everything = ctx.tree.share.fs.get_eas(open_.handle)
    flags = request.flags
    single = bool(flags & Flags.SL_RETURN_SINGLE_ENTRY)
    if request.input_buffer:
        by_name = {ea.name.upper(): ea for ea in everything}
        wanted = [by_name.get(name.upper(), FullEa(name, b""))
                  for name in decode_get_ea_list(request.input_buffer)]
        return _fit(wanted, request.output_buffer_length, single)[:2]
    if not everything:
        raise SmbError(NtStatus.NO_EAS_ON_FILE, "no EAs")
    if flags & Flags.SL_INDEX_SPECIFIED:
        start = request.additional_information
        if not 1 <= start <= len(everything):
            raise SmbError(NtStatus.NONEXISTENT_EA_ENTRY, "EA index out of range")
    elif flags & Flags.SL_RESTART_SCAN:
        start = 1
    else:
        start = open_.current_ea_index
    if start > len(everything):
        raise SmbError(STATUS_NO_MORE_EAS, "no more EAs")
    data, status, count = _fit(everything[start - 1:], request.output_buffer_length, single)
    open_.current_ea_index = start + count
    return data, status


def _fit(eas: list[FullEa], max_len: int, single: bool) -> tuple[bytes, int, int]:
    data, count = encode_full_ea_list(eas, max_len, single)
    if count == 0 and eas:
        raise SmbError(NtStatus.BUFFER_TOO_SMALL, "no EA fits the output buffer")
    status = NtStatus.BUFFER_OVERFLOW if count < len(eas) and not single else NtStatus.SUCCESS
    return data, status, count


def set_full_ea(ctx, open_, info) -> None:
    """SET_INFO FileFullEaInformation ([MS-SMB2] 3.3.5.21.1, [MS-FSA] 2.1.5.15.6)."""
    if not open_.granted_access & AccessMask.FILE_WRITE_EA:
        raise SmbError(NtStatus.ACCESS_DENIED, "FILE_WRITE_EA needed")
    ctx.tree.share.fs.set_eas(open_.handle, info.eas)


def ea_size(fs, handle) -> int:
    """EaSize of FileEaInformation / FileAllInformation ([MS-FSA] 2.1.5.12.10)."""
    return fs.ea_size(handle)
