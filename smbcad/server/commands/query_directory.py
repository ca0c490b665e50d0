"""QUERY_DIRECTORY ([MS-SMB2] 3.3.5.18; [MS-FSA] 2.1.5.6.3).

The first query (or one with RESTART_SCANS/REOPEN) snapshots the directory's
names that match the pattern (``_Listing``, kept on the open: later pages
resume from its cursor and never read the directory again); each response
then stats the names it returns, so entries deleted meanwhile drop out and
metadata is current, while the order stays stable for the whole enumeration.

What grows with the directory is done once per enumeration, and only when
needed (issue 14): a pattern without wildcards is a lookup of that one name
(exact, then the share's name index), not a scan; 8.3 short names are
computed only for the classes that carry them (the "Both" ones), at their
first page, over the directory's names (``proto.fscc.short_names``: they
must be unique there), and only names that are not valid 8.3 names get one;
a large directory's map is kept per share while its names stay the same
(``vfs.short_name_cache``).

Large directories are scanned off the event loop (issue 17, fairness): a
snapshot of a directory past ``fairness.INLINE_SCAN_BYTES``, or a page that
stats more than ``INLINE_ENTRIES`` names, runs in a worker thread on a
descriptor of its own, and its result is applied to the open on the loop
(``Offloaded``: the connection waits for it, others are served meanwhile).
Small ones stay inline, where the thread hop would cost more than the scan.
"""

import asyncio

from smbcad.proto.constants import AccessMask
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (DirEntry, dir_class_has_short_name, dir_entry_fixed_size,
                               encode_directory_entries, has_wildcards, is_8dot3,
                               match_pattern)
from smbcad.proto.query_directory import (
    QueryDirectoryFlags as Flags, QueryDirectoryRequest, QueryDirectoryResponse)
from smbcad.proto.status import NtStatus
from smbcad.server import eas
from smbcad.server.context import Offloaded
from smbcad.server.fairness import INLINE_SCAN_BYTES
from smbcad.vfs import LargeDirectory

# A directory entry is at least this big on the wire; it sizes each stat window.
_MIN_ENTRY = 64
# A page that stats more names than this runs in a worker thread (each stat
# costs a few microseconds, the hop ~100).
INLINE_ENTRIES = 128


class _Listing:
    """One enumeration's names ([MS-SMB2] 3.3.1.10 Open.EnumerationLocation
    is the open's ``enum_index`` into them) and, once a "Both" class asked,
    their 8.3 names.  ``whole``: the names are the whole directory."""

    __slots__ = ("names", "whole", "short")

    def __init__(self, names: list[str], whole: bool) -> None:
        self.names = names
        self.whole = whole
        self.short: dict[str, str] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def short_names(self, fs, handle) -> dict[str, str]:
        """The 8.3 names of the directory's names that need one (blocking)."""
        if self.short is None:
            if all(_has_no_short_name(name) for name in self.names):
                self.short = {}     # a lookup of one 8.3 name needs no listing
            else:
                # Kept per share by the whole name list (vfs/short_name_cache.py).
                self.short = fs.short_names.short_names(
                    self.names if self.whole else fs.list_names(handle))
        return self.short


def _has_no_short_name(name: str) -> bool:
    return name in (".", "..") or is_8dot3(name)


def _snapshot(fs, handle, pattern: str, found=None) -> _Listing:
    """The names matching ``pattern`` (blocking).  ``found`` is a lookup of a
    pattern without wildcards already made: ``[name]`` or ``[]``."""
    if not has_wildcards(pattern):
        if found is None:
            name = fs.find_name(handle, pattern)
            found = [] if name is None else [name]
        return _Listing(found, False)
    names = fs.list_names(handle)
    if pattern not in ("*", "<"):
        return _Listing([name for name in names if match_pattern(pattern, name)], False)
    return _Listing(names, True)


def _page(fs, handle, listing: _Listing, cursor: list, request) -> bytes:
    """Encode what fits from ``cursor[0]`` on, skipping names that vanished;
    ``cursor[0]`` moves past what was returned (blocking: stats each name,
    and one more than fits at most)."""
    single = bool(request.flags & Flags.RETURN_SINGLE_ENTRY)
    fixed = dir_entry_fixed_size(request.file_information_class)    # INVALID_INFO_CLASS first
    with_ea_size = eas.in_directory_class(request.file_information_class)
    short = listing.short_names(fs, handle) \
        if dir_class_has_short_name(request.file_information_class) else {}
    names = listing.names
    limit = request.output_buffer_length
    while cursor[0] < len(names):
        live = []
        used = 0
        position = cursor[0]
        while position < len(names) and used <= limit and not (single and live):
            name = names[position]
            info = fs.entry_info(handle, name, ea_size=with_ea_size)
            if info is not None:
                live.append((position - cursor[0], DirEntry(name, info, short.get(name, ""))))
                # Its size on the wire, 8-aligned (UTF-16: at least 2 bytes a character).
                used = ((used + 7) & ~7) + fixed + 2 * len(name)
            position += 1
        if not live:
            cursor[0] = position
            continue
        data, consumed = encode_directory_entries(
            request.file_information_class, [entry for _, entry in live], limit, single)
        if consumed == 0:
            raise SmbError(NtStatus.INFO_LENGTH_MISMATCH, "buffer too small for one entry")
        cursor[0] += live[consumed - 1][0] + 1
        if data:
            return data
    return b""


def _query(fs, handle, names, index: int, request, pattern: str, found=None):
    """A snapshot when ``names`` is None (a first or restarted scan), then one
    page.  Touches only its arguments, so it may run in a worker thread;
    returns (names, index, data, error) for ``_apply`` on the loop."""
    if names is None:
        names, index = _snapshot(fs, handle, pattern, found), 0
    cursor = [index]
    try:
        data = _page(fs, handle, names, cursor, request)
    except SmbError as exc:
        return names, cursor[0], b"", exc
    return names, cursor[0], data, None


def _apply(open_, restarted: bool, pattern: str, outcome) -> bytes:
    """On the loop: the enumeration moves on, then the answer."""
    names, index, data, error = outcome
    open_.enum_entries, open_.enum_index = names, index
    if restarted:
        open_.enum_pattern = pattern
    if error is not None:
        raise error
    if not data:
        if not names and index == 0:
            raise SmbError(NtStatus.NO_SUCH_FILE)
        raise SmbError(NtStatus.NO_MORE_FILES)
    return QueryDirectoryResponse(data).encode()


def _is_large(fs, open_, restart: bool, request) -> bool:
    if restart:
        return fs.directory_bytes(open_.handle) > INLINE_SCAN_BYTES
    page = 1 if request.flags & Flags.RETURN_SINGLE_ENTRY else \
        request.output_buffer_length // _MIN_ENTRY
    return min(page, len(open_.enum_entries) - open_.enum_index) > INLINE_ENTRIES


async def _off_the_loop(fs, open_, names, index, request, pattern: str, restart: bool,
                        found=None):
    # A descriptor of its own: a CLOSE meanwhile cannot hand its number to
    # another file under the scan (as fsctl_copy does).
    handle = fs.duplicate(open_.handle)
    try:
        outcome = await asyncio.to_thread(_query, fs, handle, names, index, request, pattern,
                                          found)
    finally:
        handle.close()
    if open_.closed:
        raise SmbError(NtStatus.FILE_CLOSED)
    return _apply(open_, restart, pattern, outcome)


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
    restart = open_.enum_entries is None or bool(request.flags & (Flags.RESTART_SCANS
                                                                  | Flags.REOPEN))
    names = None if restart else open_.enum_entries
    fs = ctx.tree.share.fs
    found = None
    if restart and not has_wildcards(pattern):
        # One name: a lookup, inline unless the directory's index must first
        # be built from a large directory.
        try:
            name = fs.find_name(open_.handle, pattern, INLINE_SCAN_BYTES)
        except LargeDirectory:
            return Offloaded(_off_the_loop(fs, open_, None, 0, request, pattern, restart))
        found = [] if name is None else [name]
        if (name is not None and not _has_no_short_name(name)
                and dir_class_has_short_name(request.file_information_class)
                and fs.directory_bytes(open_.handle) > INLINE_SCAN_BYTES):
            # Its 8.3 name must be unique among the directory's: a listing.
            return Offloaded(_off_the_loop(fs, open_, None, 0, request, pattern, restart,
                                           found))
    elif _is_large(fs, open_, restart, request):
        return Offloaded(_off_the_loop(fs, open_, names, open_.enum_index, request, pattern,
                                       restart))
    return _apply(open_, restart, pattern,
                  _query(fs, open_.handle, names, open_.enum_index, request, pattern, found))
