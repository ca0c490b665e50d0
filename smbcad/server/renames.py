"""What a rename (SET_INFO FileRenameInformation) settles before it runs and
tells afterwards ([MS-FSA] 2.1.5.15.12, [MS-SMB2] 3.3.5.21.1).

Before: the order of Samba's smbd_smb2_setinfo_lease_break_check, which
follows Windows.

0. With worker processes, a directory's rename asks the other workers
   whether they have opens below it (``renamed_opens.check_elsewhere``;
   STATUS_ACCESS_DENIED if one has, as ``commands/set_info`` refuses it for
   this process's opens).

1. Replacing a target that is open: its handle caching is broken first
   (a lease loses H, a batch oplock goes to level II) and the rename waits for
   the acknowledgment, so a client that only cached the handle can close it.
   A target still open then fails the rename (STATUS_ACCESS_DENIED, in
   ``commands/set_info``; smb2.lease.v2_rename_target_overwrite in Samba master).
2. The target's directory: [MS-FSA] 2.1.5.15.12 opens it for the rename
   (<185>: FILE_ADD_FILE or FILE_ADD_SUBDIRECTORY, sharing read and write),
   so the rename fails with STATUS_SHARING_VIOLATION where that open would:
   while the directory is open for DELETE, or open by a handle that does
   not share write (smb2.rename.*_delete_access*, smb2.oplock.batch19,
   batch20, exclusive6 — no oplock break for the file being renamed), and
   with STATUS_DELETE_PENDING while it is being deleted.  Directory leases
   with H are broken first and waited for, so their holders can close
   (Samba master smb2.dirlease.rename_dst_parent).  A watcher's handle with
   SEC_FILE_ALL (0x1FF, no DELETE) sharing read and write does not block
   (smb2.notify.rec, mask-change).

After: the directory leases of the source and target directories are broken
(``dirleases.after_rename``).

Named-stream renames (``:stream`` targets, stream handles) are
``server/streams.py``'s and skip all of this.

Finding the target and its directory (``_key_of``) is ``ShareFs.lookup``: a
target not found in its exact spelling is looked for in other cases through
the directory's name index (``vfs/name_index.py``), a dict probe once the
directory is indexed, not a scan per rename (issue 14); the rename itself
(``ShareFs.rename``) looks the target up the same way.
"""

from smbcad.proto.constants import AccessMask, ShareAccess
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import dirleases, files, leases_elsewhere, renamed_opens
from smbcad.server.oplocks import H, R, Event, Kind
from smbcad.vfs import StreamHandle, parse_smb_path

_ADD_FILE = AccessMask.FILE_WRITE_DATA              # FILE_ADD_FILE on a directory
_ADD_SUBDIRECTORY = AccessMask.FILE_APPEND_DATA     # FILE_ADD_SUBDIRECTORY


def before_rename(ctx, open_, info, retry):
    """None to go on with the rename, a ``Pending`` that waits for handle
    caching to be given up and then retries the SET_INFO, or an SmbError."""
    name = info.file_name.lstrip("\\")
    if info.root_directory or name.startswith(":") or isinstance(open_.handle, StreamHandle):
        return None
    try:
        target = parse_smb_path(name)
    except SmbError:
        return None                 # the rename itself reports the bad name
    if not target:
        return None
    if open_.is_directory and ctx.server.peers is not None and not ctx.asked_workers:
        return renamed_opens.check_elsewhere(ctx, open_, retry)     # step 0
    if info.replace_if_exists:
        pending = _settle_target(ctx, open_, target, retry)
        if pending is not None:
            return pending
    return _settle_target_directory(ctx, open_, target[:-1], retry)


def after_rename(ctx, open_, old_path: str, new_path: str) -> None:
    """The rename happened: the directories' listings changed."""
    dirleases.after_rename(ctx.server.leasing, open_, old_path, new_path)


def _key_of(fs, components) -> tuple | None:
    try:
        resolved = fs.lookup(components)
    except SmbError:
        return None                 # the rename reports a missing path itself
    if not resolved.exists:
        return None
    return resolved.info.device_id, resolved.info.file_id


def _settle_target(ctx, open_, target, retry):
    """Step 1: break handle caching on an open target that will be replaced."""
    key = _key_of(ctx.tree.share.fs, target)
    leasing = ctx.server.leasing
    if key is None or key == open_.file_key:
        return None
    pending = leases_elsewhere.take_handle(leasing, ctx, key, retry)   # other workers' first
    if pending is not None or key not in leasing.files:
        return pending
    wait = False
    for holder in list(leasing.files[key].holders):
        state = holder.state
        if state.held & H and not state.breaking:
            level = state.held & ~H if holder.is_lease else R
            leasing.apply(holder, Event(Kind.BREAK, level))
        wait = wait or (holder.state.breaking and holder.state.held & H)
    return leasing.retry_after_change(ctx, key, retry) if wait else None


def _settle_target_directory(ctx, open_, directory, retry):
    """Step 2: the share-mode check of the rename's open of the target's
    directory (see the module text)."""
    key = _key_of(ctx.tree.share.fs, directory)
    if key is None:
        return None
    access = _ADD_SUBDIRECTORY if open_.is_directory else _ADD_FILE
    try:
        files.check_share_access(ctx.server, key, access | AccessMask.SYNCHRONIZE,
                                 ShareAccess.READ | ShareAccess.WRITE)
    except SmbError as exc:
        if exc.status != NtStatus.SHARING_VIOLATION:
            raise
        leasing = ctx.server.leasing
        caching = leasing.files.get(key)
        wait = False
        for holder in list(caching.holders if caching is not None else ()):
            if holder.is_lease and holder.state.held & H and not holder.state.breaking:
                leasing.apply(holder, Event(Kind.BREAK, holder.state.held & ~H))
            wait = wait or (holder.state.breaking and holder.state.held & H)
        if not wait:
            raise SmbError(NtStatus.SHARING_VIOLATION, "target directory open incompatibly") \
                from exc
        return leasing.retry_after_change(ctx, key, retry)
    return None
