"""QUERY_DIRECTORY ([MS-SMB2] 3.3.5.18; [MS-FSA] 2.1.5.6.3).

The first query (or one with RESTART_SCANS/REOPEN) snapshots the directory's
names that match the pattern, each with its 8.3 short name (computed over all
the directory's names, ``proto.fscc.short_names``); each response then stats
the names it returns, so entries deleted meanwhile drop out and metadata is
current, while the order stays stable for the whole enumeration.
"""

from smbcad.proto.constants import AccessMask
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (DirEntry, dir_entry_fixed_size, encode_directory_entries,
                               match_pattern, short_names)
from smbcad.proto.query_directory import (
    QueryDirectoryFlags as Flags, QueryDirectoryRequest, QueryDirectoryResponse)
from smbcad.proto.status import NtStatus
from smbcad.server import eas

# A directory entry is at least this big on the wire; it sizes each stat window.
_MIN_ENTRY = 64


def _start(ctx, open_, pattern: str) -> None:
    names = ctx.tree.share.fs.list_names(open_.handle)
    short = short_names(names)
    if pattern not in ("*", "<"):
        names = [name for name in names if match_pattern(pattern, name)]
    open_.enum_entries = [(name, short.get(name, "")) for name in names]
    open_.enum_index = 0
    open_.enum_pattern = pattern


def _next_batch(ctx, open_, request) -> bytes:
    """Encode what fits from the cursor on, skipping names that vanished."""
    fs = ctx.tree.share.fs
    single = bool(request.flags & Flags.RETURN_SINGLE_ENTRY)
    names = open_.enum_entries
    dir_entry_fixed_size(request.file_information_class)    # INVALID_INFO_CLASS first
    with_ea_size = eas.in_directory_class(request.file_information_class)
    while open_.enum_index < len(names):
        width = 1 if single else max(1, request.output_buffer_length // _MIN_ENTRY)
        window = names[open_.enum_index:open_.enum_index + width]
        live = []
        for offset, (name, short_name) in enumerate(window):
            info = fs.entry_info(open_.handle, name, ea_size=with_ea_size)
            if info is not None:
                live.append((offset, DirEntry(name, info, short_name)))
        if not live:
            open_.enum_index += len(window)
            continue
        data, consumed = encode_directory_entries(
            request.file_information_class, [entry for _, entry in live],
            request.output_buffer_length, single)
        if consumed == 0:
            raise SmbError(NtStatus.INFO_LENGTH_MISMATCH, "buffer too small for one entry")
        open_.enum_index += live[consumed - 1][0] + 1
        if data:
            return data
    return b""


def handle(ctx):
    request = QueryDirectoryRequest.decode(ctx.message)
    open_ = ctx.lookup_open(request.file_id)
    if not open_.is_directory:
        raise SmbError(NtStatus.INVALID_PARAMETER, "not a directory")
    if not open_.granted_access & AccessMask.FILE_LIST_DIRECTORY:
        raise SmbError(NtStatus.ACCESS_DENIED, "no FILE_LIST_DIRECTORY access")
    if request.output_buffer_length > ctx.connection.max_transact_size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "output larger than MaxTransactSize")
    if "\\" in request.file_name or "/" in request.file_name:
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "pattern with a path")
    pattern = request.file_name or "*"
    first = open_.enum_entries is None
    if first or request.flags & (Flags.RESTART_SCANS | Flags.REOPEN):
        _start(ctx, open_, pattern)
    started_empty = not open_.enum_entries
    data = _next_batch(ctx, open_, request)
    if not data:
        if started_empty and open_.enum_index == 0:
            raise SmbError(NtStatus.NO_SUCH_FILE)
        raise SmbError(NtStatus.NO_MORE_FILES)
    return QueryDirectoryResponse(data).encode()
