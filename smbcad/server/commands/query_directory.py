"""QUERY_DIRECTORY ([MS-SMB2] 3.3.5.18; [MS-FSA] 2.1.5.6.3).

The first query (or one with RESTART_SCANS/REOPEN) takes a snapshot of the
directory filtered by the pattern; later queries continue from the open's
cursor, so a listing is consistent even while the directory changes.
"""

from smbcad.proto.constants import AccessMask
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import encode_directory_entries, match_pattern
from smbcad.proto.query_directory import (
    QueryDirectoryFlags as Flags, QueryDirectoryRequest, QueryDirectoryResponse)
from smbcad.proto.status import NtStatus


def _start(ctx, open_, pattern: str) -> None:
    entries = ctx.tree.share.fs.list_directory(open_.handle)
    if pattern in ("*", "<"):
        open_.enum_entries = entries
    else:
        open_.enum_entries = [e for e in entries if match_pattern(pattern, e.name)]
    open_.enum_index = 0
    open_.enum_pattern = pattern


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
    elif request.flags & Flags.INDEX_SPECIFIED and request.file_index:
        # FileIndex resumes are not offered by NTFS either; start from the cursor.
        pass
    remaining = open_.enum_entries[open_.enum_index:]
    if not remaining:
        if open_.enum_index == 0:
            raise SmbError(NtStatus.NO_SUCH_FILE)
        raise SmbError(NtStatus.NO_MORE_FILES)
    data, consumed = encode_directory_entries(
        request.file_information_class, remaining, request.output_buffer_length,
        bool(request.flags & Flags.RETURN_SINGLE_ENTRY))
    if consumed == 0:
        raise SmbError(NtStatus.INFO_LENGTH_MISMATCH, "buffer too small for one entry")
    open_.enum_index += consumed
    if not data:
        raise SmbError(NtStatus.NO_MORE_FILES)
    return QueryDirectoryResponse(data).encode()
