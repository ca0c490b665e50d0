"""Named streams in the server: CREATE of ``file:stream``, stream rename, and
what QUERY_INFO reports for them ([MS-FSA] 2.1.5.1 phases 5-7 and 2.1.5.1.2,
2.1.5.15.12.1; [MS-FSCC] 2.1.5.3, 2.4.49).

The bytes live in the vfs (``StreamHandle``, one xattr per stream).  Share
modes are per stream ([MS-FSA] 2.1.5.1.2.2 compares opens of the same
Stream): a stream's opens sit in the open table's share-mode table under
(volume id, inode, stream name as stored), the file's own opens under
(volume id, inode).  What crosses between a file and its streams, as Windows
and Samba do it (smbtorture smb2.streams):

=============================================  ==========================================
Situation                                      Result
=============================================  ==========================================
open a stream of a delete-pending file         STATUS_DELETE_PENDING
open the file with DELETE while one of its     STATUS_SHARING_VIOLATION
streams is open without FILE_SHARE_DELETE
the file is deleted while streams are open     it stays, DELETE_PENDING to new
                                               opens, until the last stream closes
rename the file while streams are open         STATUS_ACCESS_DENIED
overwrite or supersede the file                its closed named streams go
delete-on-close / disposition of a stream      only that stream goes
=============================================  ==========================================

Oplocks and leases on a stream are the stream's own ([MS-FSA] 2.1.1.5
Stream.Oplock; smbtorture smb2.oplock.stream1, batch26, smb2.lease.request):
they are held and broken under the stream's key, so opening the file or
another stream never breaks them.  Stream opens are not durable.
"""

import dataclasses

from smbcad.openstate.record import DATA_ACCESS
from smbcad.proto.constants import (
    AccessMask, CreateAction, CreateDisposition as Disp, CreateOptions as Opt,
    FileAttributes as FA, ShareAccess)
from smbcad.proto.create import CreateResponse
from smbcad.proto.create_contexts import (
    FileId, maximal_access_response, query_on_disk_id_response)
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import FileInfoClass as C
from smbcad.proto.status import NtStatus
from smbcad.server import eas, files, leases, security
from smbcad.server.adm import Open
from smbcad.server import leases_elsewhere
from smbcad.server.opens import CachedElsewhere
from smbcad.vfs import (StreamHandle, has_trailing_backslash, is_valid_stream_name,
                        parse_smb_name)

_OVERWRITE = (Disp.SUPERSEDE, Disp.OVERWRITE, Disp.OVERWRITE_IF)
_CHANGES = (AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA | AccessMask.FILE_WRITE_EA
            | AccessMask.DELETE | AccessMask.FILE_WRITE_ATTRIBUTES)
# The default stream's type name, as a rename target spells it.
_DATA = "$DATA"


def _components(path: str) -> tuple[str, ...]:
    return tuple(path.split("/")) if path else ()


# --- CREATE ------------------------------------------------------------------------------

def create(ctx, request, resolved, stream: str, granted_access, maximal_access, retry):
    """CREATE of ``name:stream`` or ``name::$DATA`` ([MS-FSA] 2.1.5.1 phase 7).

    ``resolved`` is the file part, ``stream`` what ``parse_smb_name`` gave;
    ``granted_access`` / ``maximal_access`` are CREATE's own checks and
    ``retry`` runs the whole CREATE again once a break it waited for is over.
    Returns the response body, a ``Pending`` (an oplock or lease break of the
    stream to wait for), or None for ``name::$DATA`` on a file: the caller
    then opens the file as usual.
    """
    options = request.create_options
    if options & Opt.DIRECTORY_FILE:
        raise SmbError(NtStatus.NOT_A_DIRECTORY, "a stream is not a directory")
    if has_trailing_backslash(request.name):
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "trailing backslash on a stream")
    if not stream:
        if resolved.exists and resolved.info.is_directory:
            raise SmbError(NtStatus.FILE_IS_A_DIRECTORY, "a directory has no default stream")
        return None
    server, share = ctx.server, ctx.tree.share
    fs = share.fs
    disposition = request.create_disposition
    if resolved.exists:
        _refuse_if_file_deleted(server, fs, (resolved.info.device_id, resolved.info.file_id))
    access = granted_access(ctx, request, resolved.info if resolved.exists else None)
    if options & Opt.DELETE_ON_CLOSE and not access & AccessMask.DELETE:
        raise SmbError(NtStatus.ACCESS_DENIED, "delete-on-close needs DELETE access")
    if share.read_only and (access & _CHANGES or disposition != Disp.OPEN):
        raise SmbError(NtStatus.ACCESS_DENIED, "read-only share")
    if not resolved.exists:
        resolved = _create_file(ctx, fs, request, resolved)
    handle = fs.open_stream(resolved, stream)
    try:
        _check_disposition(handle, request, resolved.info)
        # Share modes, then the stream's oplock/lease breaks (3.3.5.9.8, 3.3.5.9.11).
        pending = leases.before_open(ctx, request, resolved, access, retry,
                                     key=stream_key(handle))
        if pending is not None:
            handle.close()
            return pending
        action = _open_or_create(server, fs, handle, request, access, resolved.info)
        info = fs.stat(handle)
    except SmbError:
        handle.close()
        raise
    persistent_id, volatile_id = server.next_file_ids()
    open_ = Open(persistent_id=persistent_id, volatile_id=volatile_id, session=ctx.session,
                 tree=ctx.tree, path=handle.path, client_name=request.name, handle=handle,
                 granted_access=access, share_access=request.share_access,
                 create_options=options, is_directory=False, file_key=stream_key(handle),
                 delete_on_close=bool(options & Opt.DELETE_ON_CLOSE),
                 client_guid=ctx.connection.client_guid)
    try:
        server.opens.register(open_)
    except CachedElsewhere as exc:
        handle.close()
        leasing = server.leasing
        return leases_elsewhere.wait_then_retry(
            leasing, ctx, open_.file_key, retry,
            leases_elsewhere.opener_of(request, access, exc.sharing_violation))
    except SmbError:
        handle.close()
        raise
    ctx.compound.file_id = open_.file_id
    oplock_level, contexts = leases.grant(ctx, open_, request, action == CreateAction.CREATED)
    if request.create_contexts.query_maximal_access is not None:
        contexts.append(maximal_access_response(NtStatus.SUCCESS, maximal_access(ctx, info)))
    if request.create_contexts.query_on_disk_id:
        contexts.append(query_on_disk_id_response(info.file_id, info.device_id))
    return CreateResponse(
        oplock_level=oplock_level, flags=0, create_action=action,
        creation_time=info.creation_time, last_access_time=info.last_access_time,
        last_write_time=info.last_write_time, change_time=info.change_time,
        allocation_size=info.allocation_size, end_of_file=info.end_of_file,
        file_attributes=info.attributes, file_id=FileId(persistent_id, volatile_id),
        create_contexts=tuple(contexts)).encode()


def stream_key(handle: StreamHandle) -> tuple:
    """The share-mode key of a stream: (st_dev, st_ino, stored name)."""
    return handle.file_key + (handle.stream,)


def _refuse_if_file_deleted(server, fs, file_key: tuple) -> None:
    if server.opens.delete_pending(file_key) or fs.open_streams.unlink_pending(file_key):
        raise SmbError(NtStatus.DELETE_PENDING, "the file is being deleted")


def _create_file(ctx, fs, request, resolved):
    """A stream of a missing file makes the file first ([MS-FSA] 2.1.5.1.1: a
    data file with an empty default stream), with the requested attributes and
    the descriptor it inherits ([MS-DTYP] 2.5.3.4, server/security.py)."""
    if request.create_disposition in (Disp.OPEN, Disp.OVERWRITE):
        raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "no such file")
    if request.file_attributes & FA.ENCRYPTED:
        raise SmbError(NtStatus.ACCESS_DENIED, "encrypted files are not supported")
    base = fs.open(resolved, write=True, directory=False, create=True)
    try:
        attributes = (request.file_attributes & ~FA.DIRECTORY) | FA.ARCHIVE
        if base.created and attributes & ~FA.NORMAL:
            fs.set_attributes(base, attributes)
        if base.created:
            security.assign_on_create(fs, base, base.path.rpartition("/")[0],
                                      request.create_contexts.sd_buffer,
                                      security.session_token(fs, ctx.session.identity))
    finally:
        base.close()
    found = fs.lookup(_components(base.path))
    if not found.exists:
        raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "file vanished")
    return found


def _check_disposition(handle, request, file_info) -> None:
    """The checks of the disposition table that come before share modes and
    oplock breaks ([MS-FSA] 2.1.5.1.2, DataStream)."""
    disposition = request.create_disposition
    if handle.exists:
        if disposition == Disp.CREATE:
            raise SmbError(NtStatus.OBJECT_NAME_COLLISION, "stream exists")
    elif disposition in (Disp.OPEN, Disp.OVERWRITE):
        raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "no such stream")
    elif file_info.attributes & FA.READONLY:
        raise SmbError(NtStatus.ACCESS_DENIED, "read-only file")


def _open_or_create(server, fs, handle, request, access: int, file_info) -> int:
    """The stream half of [MS-FSA] 2.1.5.1.2 (DataStream): the disposition table
    applied to the stream (checked by ``_check_disposition``), share access
    checked again before anything changes."""
    disposition = request.create_disposition
    if server.opens.file_state(stream_key(handle)) is not None:
        files.check_share_access(server, stream_key(handle), access, request.share_access)
    if not handle.exists:
        fs.create_stream(handle)
        if not file_info.attributes & FA.ARCHIVE and not file_info.is_directory:
            fs.set_attributes(handle, file_info.attributes | FA.ARCHIVE)
        return CreateAction.CREATED
    if disposition in _OVERWRITE:
        fs.truncate(handle, 0)
        if disposition == Disp.SUPERSEDE:
            return CreateAction.SUPERSEDED
        return CreateAction.OVERWRITTEN
    return CreateAction.OPENED


def check_file_open(ctx, resolved, access: int) -> None:
    """Stream rules for an open of the file itself (module table): DELETE_PENDING
    while a deleted file waits for its streams, SHARING_VIOLATION for DELETE
    access while a stream is open without FILE_SHARE_DELETE.  One truth test
    when no stream of the share is open."""
    open_streams = ctx.tree.share.fs.open_streams
    if not open_streams or not resolved.exists:
        return
    file_key = (resolved.info.device_id, resolved.info.file_id)
    if open_streams.unlink_pending(file_key):
        raise SmbError(NtStatus.DELETE_PENDING, "the file is being deleted")
    if not access & AccessMask.DELETE:
        return
    for name in open_streams.names(file_key):
        for other in ctx.server.opens.open_state.entries(file_key + (name,)):
            if other.access & DATA_ACCESS and not other.share & ShareAccess.DELETE:
                raise SmbError(NtStatus.SHARING_VIOLATION, "a stream forbids delete")


def after_overwrite(fs, handle, action: int) -> None:
    """Overwriting or superseding a file drops its named streams (smbtorture
    smb2.streams.create-disposition; Samba deletes them the same way)."""
    if action in (CreateAction.OVERWRITTEN, CreateAction.SUPERSEDED) and fs.user_xattrs():
        fs.remove_streams(handle)


# --- SET_INFO FileRenameInformation --------------------------------------------------------

def rename(ctx, open_, info) -> bool:
    """The stream cases of FileRenameInformation ([MS-FSA] 2.1.5.15.12); True when
    handled here, False to rename the file as usual.

    ``:name[:$DATA]`` renames the open stream (2.1.5.15.12.1); a stream handle
    given a full path is renamed only to another stream of the same file.  The
    file itself cannot be renamed while its streams are open (ACCESS_DENIED, as
    Samba; smbtorture basefile-rename-with-open-stream).
    """
    name = info.file_name.lstrip("\\")
    handle = open_.handle
    if name.startswith(":"):
        _rename_stream(ctx, open_, _target_stream(name), info.replace_if_exists)
        return True
    if isinstance(handle, StreamHandle):
        _rename_stream_by_path(ctx, open_, name, info.replace_if_exists)
        return True
    open_streams = ctx.tree.share.fs.open_streams
    if open_streams and open_streams.is_open(open_.file_key):
        raise SmbError(NtStatus.ACCESS_DENIED, "the file has open streams")
    return False


def _target_stream(name: str) -> str:
    """``:stream[:type]`` → stream; the checks of [MS-FSA] 2.1.5.15.12.1."""
    if name.endswith(":") or name.count(":") > 2:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad stream rename target")
    pieces = name[1:].split(":")
    stream = pieces[0]
    if stream and not is_valid_stream_name(stream):
        raise SmbError(NtStatus.INVALID_PARAMETER, "invalid stream name")
    if len(pieces) == 2 and pieces[1].upper() != _DATA:
        raise SmbError(NtStatus.OBJECT_TYPE_MISMATCH, "a data stream keeps type $DATA")
    return stream


def _rename_stream_by_path(ctx, open_, name: str, replace: bool) -> None:
    """A stream handle renamed with a full path.  [MS-FSA] 2.1.5.15.12 first opens
    the target's directory sharing only read and write (<185>), which fails while
    that directory is open with DELETE access; then only ``file:stream`` of the
    same file can be taken."""
    components, stream = parse_smb_name(name)
    fs = ctx.tree.share.fs
    parent = fs.lookup(components[:-1]) if components else None
    if parent is not None and parent.exists:
        parent_key = (parent.info.device_id, parent.info.file_id)
        for other in ctx.server.opens.open_state.entries(parent_key):
            if other.access & AccessMask.DELETE:
                raise SmbError(NtStatus.SHARING_VIOLATION, "target directory open with DELETE")
    if stream is None:
        raise SmbError(NtStatus.INVALID_PARAMETER, "a stream cannot become a file")
    target = fs.lookup(components)
    if not target.exists or (target.info.device_id, target.info.file_id) != open_.handle.file_key:
        raise SmbError(NtStatus.INVALID_PARAMETER, "a stream stays with its file")
    _rename_stream(ctx, open_, stream, replace)


def _rename_stream(ctx, open_, stream: str, replace: bool) -> None:
    """[MS-FSA] 2.1.5.15.12.1 for the open's stream; ``stream`` "" is the default one."""
    handle = open_.handle
    server, fs = ctx.server, ctx.tree.share.fs
    if not isinstance(handle, StreamHandle):
        if open_.is_directory:
            raise SmbError(NtStatus.INVALID_PARAMETER, "a directory stream cannot be renamed")
        if stream:
            # The default stream becoming a named one is not offered here.
            raise SmbError(NtStatus.INVALID_PARAMETER, "the default stream cannot be renamed")
        return          # "::$DATA" onto itself: nothing to do
    old_key = stream_key(handle)
    state = server.opens.file_state(old_key)
    if not stream:
        _rename_to_default(server, fs, open_, state, replace)
        return
    if stream.upper() == handle.stream.upper():
        return
    busy = [name for name in fs.open_streams.names(handle.file_key)
            if name.upper() == stream.upper()]
    if busy:
        if not replace:
            raise SmbError(NtStatus.OBJECT_NAME_COLLISION, "target stream exists")
        raise SmbError(NtStatus.INVALID_PARAMETER, "target stream is open")
    fs.rename_stream(handle, stream, replace)
    _rekey(server, state, old_key, stream_key(handle), handle)


def _rename_to_default(server, fs, open_, state, replace: bool) -> None:
    """A named stream onto the (empty) default stream: the open becomes an open
    of the file, under the file's share-mode key."""
    handle = open_.handle
    file_state = server.opens.file_state(handle.file_key)
    others = state is not None and len(state.opens) > 1
    if others or (file_state is not None and file_state.opens):
        raise SmbError(NtStatus.INVALID_PARAMETER, "the streams involved are open")
    base = fs.stream_to_default(handle, replace)
    open_.handle = base
    server.leasing.move(open_.file_key, handle.file_key)
    server.opens.move_open(open_, handle.file_key)
    handle.close()


def _rekey(server, state, old_key: tuple, new_key: tuple, handle: StreamHandle) -> None:
    """The stream's opens follow it to its new name."""
    if state is None or old_key == new_key:
        return
    server.leasing.move(old_key, new_key)       # the stream's oplocks and leases go along
    server.opens.rekey(old_key, new_key)
    for other in state.opens:
        other.file_key = new_key
        if isinstance(other.handle, StreamHandle):
            other.handle.stream = handle.stream


# --- QUERY_INFO ----------------------------------------------------------------------------

def complete_query(ctx, open_, info_class: int, query):
    """What QUERY_INFO needs besides the file's metadata: a stream handle's name
    (``path:stream``, as Windows reports it), the stream list for
    FileStreamInformation and EaSize for FileEaInformation / FileAllInformation
    (computed only for those classes: it costs a listxattr)."""
    handle = open_.handle
    fs = ctx.tree.share.fs
    if isinstance(handle, StreamHandle):
        query = dataclasses.replace(query, name=f"{query.name}:{handle.stream}")
    if info_class == C.FILE_STREAM:
        query = dataclasses.replace(query, streams=fs.stream_list(handle))
    elif info_class in (C.FILE_EA, C.FILE_ALL):
        query = dataclasses.replace(
            query, info=dataclasses.replace(query.info, ea_size=eas.ea_size(fs, handle)))
    return query
