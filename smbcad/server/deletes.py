"""When a directory counts as empty for deletion ([MS-FSA] 2.1.5.1.2.1
FILE_DELETE_ON_CLOSE on a directory, 2.1.5.15.3 FileDispositionInformation).

An entry whose deletion is pending — delete-on-close set or a disposition
taken, but another handle keeps it open — is already gone for the client:
it cannot be opened again (STATUS_DELETE_PENDING), and Windows lets its
directory be deleted (smbtorture smb2.notify.rec and smb2.notify.mask-change
remove a directory whose only child was deleted while a leaked handle still
holds it open).  Such entries do not make the directory non-empty.

Linux still has them on disk until their last close, so the directory's own
removal at its last close may find it not empty; ``OpenTable.close`` then
logs it and the directory stays, as Windows loses a delete silently when a
directory gained entries meanwhile.
"""

from smbcad.proto.errors import SmbError


def directory_is_empty(server, fs, handle) -> bool:
    """True when every entry of the open directory ``handle`` is delete-pending
    (read entry by entry: the first live one ends it, in a directory of any size)."""
    base = tuple(handle.path.split("/")) if handle.path else ()
    for name in fs.iter_names(handle):
        try:
            info = fs.stat_path(base + (name,))
        except SmbError:
            continue                                  # gone meanwhile: not an entry
        if not server.opens.delete_pending((info.device_id, info.file_id)):
            return False
    return True
