"""What several commands share about open files: the per-file share-mode and
delete-pending state, access mapping, and closing an Open.

[MS-FSA] 2.1.5.1.2 (share access check), 2.1.5.4 (cleanup / delete on close),
[MS-SMB2] 3.3.4.17 (closing an Open).
"""

import logging
from dataclasses import dataclass, field
from typing import Any

from smbcad.proto.constants import AccessMask, ShareAccess
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import durable, locks, notify

log = logging.getLogger("smbcad.files")

# The access bits that share modes govern ([MS-FSA] 2.1.5.1.2.1).
READ_LIKE = AccessMask.FILE_READ_DATA | AccessMask.FILE_EXECUTE
WRITE_LIKE = AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
DATA_ACCESS = READ_LIKE | WRITE_LIKE | AccessMask.DELETE

_GENERIC_MAP = (
    (AccessMask.GENERIC_READ, AccessMask.FILE_GENERIC_READ),
    (AccessMask.GENERIC_WRITE, AccessMask.FILE_GENERIC_WRITE),
    (AccessMask.GENERIC_EXECUTE, AccessMask.FILE_GENERIC_EXECUTE),
    (AccessMask.GENERIC_ALL, AccessMask.FILE_ALL_ACCESS),
)
WRITE_ACCESS = (AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
                | AccessMask.FILE_WRITE_EA | AccessMask.FILE_WRITE_ATTRIBUTES
                | AccessMask.DELETE | AccessMask.WRITE_DAC | AccessMask.WRITE_OWNER
                | AccessMask.FILE_DELETE_CHILD)


def map_generic(access: int, maximal: int) -> int:
    """GENERIC_* → specific rights; MAXIMUM_ALLOWED → what the tree allows
    ([MS-SMB2] 3.3.5.9, [MS-DTYP] 2.4.3)."""
    for generic, specific in _GENERIC_MAP:
        if access & generic:
            access = (access & ~generic) | specific
    if access & AccessMask.MAXIMUM_ALLOWED:
        access = (access & ~AccessMask.MAXIMUM_ALLOWED) | maximal
    return access


@dataclass(eq=False)
class FileState:
    """One file's shared state across its opens ([MS-FSA] 2.1.1.4 File / 2.1.1.5 Stream)."""

    key: tuple
    opens: list = field(default_factory=list)
    delete_pending: bool = False
    locks: Any = None      # locks.ByteRangeLockList while the file has locks or waiters
    sync: Any = None       # write_sync.FileSync once a write-through WRITE came


def file_state(server, key: tuple) -> FileState | None:
    return server.opens_by_file.get(key)


def check_share_access(server, key: tuple, access: int, share: int) -> None:
    """STATUS_SHARING_VIOLATION when the new open and an existing one exclude
    each other ([MS-FSA] 2.1.5.1.2.1); opens without data access never conflict."""
    state = server.opens_by_file.get(key)
    if state is None:
        return
    if state.delete_pending:
        raise SmbError(NtStatus.DELETE_PENDING)
    if not access & DATA_ACCESS:
        return
    for other in state.opens:
        if not other.granted_access & DATA_ACCESS:
            continue
        if _excludes(other.share_access, access) or _excludes(share, other.granted_access):
            raise SmbError(NtStatus.SHARING_VIOLATION)


def _excludes(share: int, access: int) -> bool:
    return bool((access & READ_LIKE and not share & ShareAccess.READ)
                or (access & WRITE_LIKE and not share & ShareAccess.WRITE)
                or (access & AccessMask.DELETE and not share & ShareAccess.DELETE))


def register_open(server, open_) -> None:
    state = server.opens_by_file.get(open_.file_key)
    if state is None:
        state = server.opens_by_file[open_.file_key] = FileState(open_.file_key)
    state.opens.append(open_)
    server.opens_by_persistent_id[open_.persistent_id] = open_
    open_.session.opens[open_.volatile_id] = open_
    open_.tree.open_count += 1
    server.metrics.opens.inc()


def close_open(server, open_):
    """Close an Open: last close of a delete-pending file deletes it ([MS-FSA] 2.1.5.4).

    A persistent open's store record goes too; the commit is returned (CLOSE
    awaits it before answering) and runs in the background either way."""
    if open_.closed:
        return None
    open_.closed = True
    if open_.session is not None:
        open_.session.opens.pop(open_.volatile_id, None)
        open_.tree.open_count -= 1
    server.opens_by_persistent_id.pop(open_.persistent_id, None)
    server.metrics.opens.dec()
    if open_.is_pipe:
        open_.handle.close()
        return None
    durable.stop_scavenger(open_)
    durable.forget_create_guid(server, open_)
    forget = durable.forget(server, open_)
    commit = server.spawn(forget) if forget is not None else None
    server.leasing.release(open_)          # its lease or oplock ([MS-FSA] 2.1.4.12 CLOSE)
    state = server.opens_by_file.get(open_.file_key)
    if open_.delete_on_close and state is not None:
        state.delete_pending = True
    notify.open_closed(server, open_)      # pending CHANGE_NOTIFYs ([MS-FSA] 2.1.5.5 phase 5)
    try:
        if state is None:
            return commit
        if open_ in state.opens:
            state.opens.remove(open_)
        locks.release_open(state, open_)
        if state.opens:
            return commit
        del server.opens_by_file[open_.file_key]
        if state.delete_pending:
            try:
                open_.tree.share.fs.delete(open_.handle)
            except SmbError as exc:
                # Windows loses the delete silently too when, say, a directory
                # gained entries; log it for the admin.
                log.info("delete-on-close of %s failed: %s", open_.handle.path, exc)
    finally:
        open_.handle.close()
    return commit
