"""CREATE ([MS-SMB2] 3.3.5.9; open semantics from [MS-FSA] 2.1.5.1).

Decode and validate the request and its contexts, resolve the name inside the
share (the VFS port keeps it there), check access and share modes, open or
create, then answer with the file's metadata and the response contexts.
Durable and persistent handles (grant, reconnect, replay, AppInstanceId)
are in ``durable`` and ``reconnect``; a persistent open's response waits
for its record to be in the handle store, and a persistent CREATE that
creates or overwrites first commits its intent (``intents``), so a replay
after a crash or takeover is answered as the CREATE would have been.

A name not found under its exact spelling in a large directory is looked
up again, case-insensitively, in a worker thread (issue 17: the scan grows
with the directory); the CREATE goes on from there on the loop.
"""

import asyncio
import logging

from smbcad.proto.constants import (
    AccessMask, CreateAction, CreateDisposition as Disp, CreateOptions as Opt, Dialect,
    FileAttributes as FA, ImpersonationLevel, OplockLevel)
from smbcad.proto.create import CreateRequest, CreateResponse
from smbcad.proto.create_contexts import (
    FileId, maximal_access_response, query_on_disk_id_response)
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import (
    app_instance, deletes, durable, eas, files, intents, leases, pipes, reconnect, security,
    streams)
from smbcad.server.adm import Open
from smbcad.server import leases_elsewhere
from smbcad.server.opens import CachedElsewhere
from smbcad.server.context import Offloaded, Pending, answer_after
from smbcad.server.fairness import INLINE_SCAN_BYTES
from smbcad.vfs import LargeDirectory, has_trailing_backslash, parse_smb_name

_CREATE_TREE_CONNECTION = 0x00000080
# CreateOptions a server must refuse outright (3.3.5.9, [MS-FSA] 2.1.5.1).
_NOT_SUPPORTED_OPTIONS = Opt.OPEN_BY_FILE_ID | Opt.RESERVE_OPFILTER | _CREATE_TREE_CONNECTION
_VALID_ATTRIBUTES = 0x00007FB7          # [MS-FSCC] 2.6 settable on create
_VALID_ACCESS = (AccessMask.FILE_ALL_ACCESS | AccessMask.ACCESS_SYSTEM_SECURITY
                 | AccessMask.MAXIMUM_ALLOWED | AccessMask.GENERIC_ALL
                 | AccessMask.GENERIC_EXECUTE | AccessMask.GENERIC_WRITE
                 | AccessMask.GENERIC_READ)
_WRITE_DATA = AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
_TRUNCATING = (Disp.SUPERSEDE, Disp.OVERWRITE, Disp.OVERWRITE_IF)
log = logging.getLogger("smbcad.create")
_READ_ONLY_DENIED = (AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
                     | AccessMask.FILE_WRITE_EA | AccessMask.DELETE
                     | AccessMask.FILE_DELETE_CHILD)


def _validate(request: CreateRequest) -> None:
    """Field checks of 3.3.5.9 in the order Windows applies them."""
    if request.impersonation_level > ImpersonationLevel.DELEGATE:
        raise SmbError(NtStatus.BAD_IMPERSONATION_LEVEL)
    options = request.create_options
    if options & _NOT_SUPPORTED_OPTIONS:
        raise SmbError(NtStatus.NOT_SUPPORTED, "create option not supported")
    if options & ~Opt.VALID_FLAGS:
        raise SmbError(NtStatus.INVALID_PARAMETER, "reserved create options")
    if options & Opt.DIRECTORY_FILE and options & Opt.NON_DIRECTORY_FILE:
        raise SmbError(NtStatus.INVALID_PARAMETER, "directory and non-directory")
    if request.create_disposition > Disp.OVERWRITE_IF:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad disposition")
    if request.desired_access & ~_VALID_ACCESS:
        raise SmbError(NtStatus.ACCESS_DENIED, "reserved access bits")
    if request.file_attributes & ~_VALID_ATTRIBUTES:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad file attributes")
    if request.requested_oplock_level not in (
            OplockLevel.NONE, OplockLevel.LEVEL_II, OplockLevel.EXCLUSIVE,
            OplockLevel.BATCH, OplockLevel.LEASE):
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad oplock level")
    if (options & Opt.DIRECTORY_FILE and request.create_disposition
            in (Disp.SUPERSEDE, Disp.OVERWRITE, Disp.OVERWRITE_IF)):
        raise SmbError(NtStatus.INVALID_PARAMETER, "directory cannot be overwritten")
    request.create_contexts.validate()


def _granted_access(ctx, request: CreateRequest, exists_info, components=None,
                    stored=security.UNREAD) -> int:
    """Map generic rights and check them against the share, the file's stored
    descriptor (or, for a new file, its parent's) and READONLY ([MS-FSA]
    2.1.5.1.2, 2.1.5.1.2.1; server/security.py).  A file without a stored
    descriptor is limited by the share's rights alone.  ``stored``: the
    file's stored descriptor as its lookup read it."""
    tree = ctx.tree
    access = files.map_generic(request.desired_access, tree.maximal_access)
    if access == 0:
        # SYNCHRONIZE alone is a valid stat open (smb2.oplock.statopen1), even
        # though smb2.create.gentest's table expects it refused.
        raise SmbError(NtStatus.ACCESS_DENIED, "no access requested")
    if access & ~tree.maximal_access & ~AccessMask.SYNCHRONIZE & ~AccessMask.ACCESS_SYSTEM_SECURITY:
        raise SmbError(NtStatus.ACCESS_DENIED, "share does not allow that access")
    if access & AccessMask.ACCESS_SYSTEM_SECURITY:
        raise SmbError(NtStatus.PRIVILEGE_NOT_HELD, "SACL access needs a privilege")
    fs = tree.share.fs
    token = security.session_token(fs, ctx.session.identity)
    if components is None:
        components, _ = parse_smb_name(request.name)
    backup = bool(request.create_options & Opt.OPEN_FOR_BACKUP_INTENT)
    if exists_info is not None:
        path = "/".join(components)
        granted = security.check_open(fs, path, token, request.desired_access,
                                      backup_intent=backup, stored=stored)
        if granted is not None:
            access &= granted           # MAXIMUM_ALLOWED: the share's and the DACL's
            if request.create_disposition in _TRUNCATING:
                # Overwriting is writing, whatever access the open asks for
                # (smb2.acls.OVERWRITE_READ_ONLY_FILE, as Windows and Samba).
                security.check_open(fs, path, token, AccessMask.FILE_WRITE_DATA,
                                    backup_intent=backup, stored=stored)
    elif components and request.create_disposition not in (Disp.OPEN, Disp.OVERWRITE):
        security.check_create(fs, "/".join(components[:-1]), token,
                              bool(request.create_options & Opt.DIRECTORY_FILE),
                              backup_intent=backup)
    if exists_info is not None and exists_info.attributes & FA.READONLY:
        if access & (_WRITE_DATA | AccessMask.FILE_WRITE_EA) and not exists_info.is_directory:
            raise SmbError(NtStatus.ACCESS_DENIED, "file is read-only")
        if request.create_options & Opt.DELETE_ON_CLOSE:
            raise SmbError(NtStatus.CANNOT_DELETE, "file is read-only")
    return access


def _maximal_access(ctx, info) -> int:
    """MxAc ([MS-SMB2] 3.3.5.9.5) of the open this CREATE just made (the
    compound's FileId): the share's rights, cut by the stored descriptor's
    MAXIMUM_ALLOWED when the file has one, and by READONLY."""
    access = ctx.tree.maximal_access
    file_id = ctx.compound.file_id
    open_ = ctx.session.opens.get(file_id[1]) if file_id is not None else None
    if open_ is not None:
        fs = ctx.tree.share.fs
        token = security.session_token(fs, ctx.session.identity)
        stored = security.maximal_access_of(fs, open_.handle, token)
        if stored is not None:
            access &= stored
    if info is not None and info.attributes & FA.READONLY and not info.is_directory:
        access &= ~(_WRITE_DATA | AccessMask.FILE_WRITE_EA)
    return access


def _open_or_create(fs, request: CreateRequest, resolved, access: int, done: int | None):
    """Disposition table of [MS-FSA] 2.1.5.1.1 / 2.1.5.1.2; returns (handle, action).
    ``done``: the CreateAction a replayed CREATE already had (server/intents.py),
    whose file is opened as it is."""
    disposition = request.create_disposition
    options = request.create_options
    want_dir = True if options & Opt.DIRECTORY_FILE else (
        False if options & Opt.NON_DIRECTORY_FILE else None)
    if done is not None:
        return fs.open(resolved, write=not resolved.info.is_directory, directory=want_dir), done
    write = bool(access & (_WRITE_DATA | AccessMask.FILE_WRITE_ATTRIBUTES
                           | AccessMask.FILE_WRITE_EA))
    if resolved.exists:
        if disposition == Disp.CREATE:
            raise SmbError(NtStatus.OBJECT_NAME_COLLISION)
        truncate = disposition in (Disp.SUPERSEDE, Disp.OVERWRITE, Disp.OVERWRITE_IF)
        if truncate and resolved.info.is_directory:
            raise SmbError(NtStatus.INVALID_PARAMETER, "directory cannot be overwritten")
        if truncate and _drops_hidden_or_system(resolved.info.attributes, request.file_attributes):
            raise SmbError(NtStatus.ACCESS_DENIED, "overwrite must keep HIDDEN/SYSTEM")
        handle = fs.open(resolved, write=write or truncate, directory=want_dir, truncate=truncate)
        if not truncate:
            return handle, CreateAction.OPENED
        return handle, (CreateAction.SUPERSEDED if disposition == Disp.SUPERSEDE
                        else CreateAction.OVERWRITTEN)
    if disposition in (Disp.OPEN, Disp.OVERWRITE):
        raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND)
    if request.file_attributes & FA.ENCRYPTED:
        # No EFS here: Windows standalone servers refuse it the same way.
        raise SmbError(NtStatus.ACCESS_DENIED, "encrypted files are not supported")
    if request.file_attributes & FA.READONLY and options & Opt.DELETE_ON_CLOSE:
        raise SmbError(NtStatus.CANNOT_DELETE, "read-only and delete-on-close")
    handle = fs.open(resolved, write=True, directory=bool(want_dir), create=True,
                     exclusive=disposition == Disp.CREATE)
    return handle, CreateAction.CREATED


def _drops_hidden_or_system(existing: int, requested: int) -> bool:
    """Overwriting a HIDDEN or SYSTEM file without asking for those bits is
    denied ([MS-FSA] 2.1.5.1.2.2)."""
    return bool((existing & FA.HIDDEN and not requested & FA.HIDDEN)
                or (existing & FA.SYSTEM and not requested & FA.SYSTEM))


def _apply_new_attributes(ctx, fs, handle, request: CreateRequest, action: int) -> None:
    if action == CreateAction.OPENED:
        return
    streams.after_overwrite(fs, handle, action)         # named streams go ([MS-FSA] 2.1.5.1.2)
    eas.apply_create_context(fs, handle, request, action)   # ExtA (3.3.5.9.1)
    if action == CreateAction.CREATED:
        security.own_new_file(fs, handle, ctx.session.identity)
        # The parent's inheritable ACEs and the SecD context (2.2.13.2.6), [MS-DTYP] 2.5.3.4.
        security.assign_on_create(fs, handle, handle.path.rpartition("/")[0],
                                  request.create_contexts.sd_buffer,
                                  security.session_token(fs, ctx.session.identity))
    attributes = request.file_attributes & ~FA.DIRECTORY
    if not handle.is_directory:
        attributes |= FA.ARCHIVE            # new and overwritten files are "changed"
    if attributes & ~FA.NORMAL:
        fs.set_attributes(handle, attributes)
    allocation = request.create_contexts.allocation_size
    if allocation and not handle.is_directory:
        fs.allocate(handle, allocation)


def handle(ctx, max_scan_bytes: int | None = INLINE_SCAN_BYTES):
    request = CreateRequest.decode(ctx.message)
    if reconnect.is_reconnect(ctx, request) and not ctx.tree.share.is_ipc:
        # Only the reconnect context matters: every other field is ignored
        # (3.3.5.9.7, 3.3.5.9.12; smb2.durable-open.reopen2).
        request.create_contexts.validate()
        return reconnect.reconnect(ctx, request)
    _validate(request)
    if ctx.tree.share.is_ipc:
        return pipes.open_pipe(ctx, request)
    share = ctx.tree.share
    fs = share.fs
    if request.create_contexts.timewarp_token is not None:
        # Previous versions (snapshots) are not offered.
        raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "no snapshots")
    replayed = reconnect.replay(ctx, request)
    if replayed is not None:
        return replayed
    intents.find_replayed(ctx, request)     # a CREATE that ran before a crash or takeover
    components, stream = parse_smb_name(request.name)
    if has_trailing_backslash(request.name) and request.create_options & Opt.NON_DIRECTORY_FILE:
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "trailing backslash on a file")
    try:
        resolved = fs.lookup(components, max_scan_bytes)
    except LargeDirectory:
        return Offloaded(_resolved_off_the_loop(ctx, request, components, stream))
    return _open_resolved(ctx, request, components, stream, resolved)


async def _resolved_off_the_loop(ctx, request, components, stream):
    """The case-insensitive lookup in a worker thread, then the rest of the
    CREATE on the loop, unless its session went meanwhile."""
    resolved = await asyncio.to_thread(ctx.tree.share.fs.lookup, components)
    if ctx.connection.closed or ctx.server.sessions.get(ctx.session.session_id) is not ctx.session:
        raise SmbError(NtStatus.USER_SESSION_DELETED, "session gone during the lookup")
    return _open_resolved(ctx, request, components, stream, resolved)


def _open_resolved(ctx, request, components, stream, resolved):
    share = ctx.tree.share
    fs = share.fs
    intents.check_not_reserved(ctx, resolved)
    done = intents.original_action(ctx, resolved)
    eas.check_create_context(fs, request, resolved)     # ExtA list, FILE_NO_EA_KNOWLEDGE
    if stream is not None:                              # "file:stream" (server/streams.py)
        reply = streams.create(ctx, request, resolved, stream, _granted_access, _maximal_access,
                               _retry)
        if reply is not None:
            return reply
    if not components and request.create_options & Opt.NON_DIRECTORY_FILE:
        raise SmbError(NtStatus.FILE_IS_A_DIRECTORY)
    access = _granted_access(ctx, request, resolved.info if resolved.exists
                             and done != CreateAction.CREATED else None, components,
                             resolved.security if resolved.exists else security.UNREAD)
    options = request.create_options
    if options & Opt.DELETE_ON_CLOSE and not access & AccessMask.DELETE:
        raise SmbError(NtStatus.ACCESS_DENIED, "delete-on-close needs DELETE access")
    if share.read_only and (access & _READ_ONLY_DENIED or request.create_disposition != Disp.OPEN
                            and not resolved.exists):
        raise SmbError(NtStatus.ACCESS_DENIED, "read-only share")
    if resolved.exists:
        info = resolved.info
        if info.is_directory and options & Opt.NON_DIRECTORY_FILE:
            raise SmbError(NtStatus.FILE_IS_A_DIRECTORY)
        if not info.is_directory and options & Opt.DIRECTORY_FILE:
            raise SmbError(NtStatus.NOT_A_DIRECTORY)
        if request.create_disposition == Disp.CREATE and done is None:
            raise SmbError(NtStatus.OBJECT_NAME_COLLISION)
        streams.check_file_open(ctx, resolved, access)   # open streams vs DELETE
    if resolved.exists:
        key = (resolved.info.device_id, resolved.info.file_id)
        app_instance.take_over(ctx, request, key)               # 3.3.5.9.13
        pending = app_instance.check_elsewhere(ctx, request, key, _retry)
        if pending is not None:
            return _tracked(ctx, request, pending)
        durable.check_not_held_disconnected(ctx, key)
    # Share modes, then oplock/lease breaks; a break to wait for retries the CREATE.
    pending = leases.before_open(ctx, request, resolved, access, _retry)
    if pending is not None:
        return _tracked(ctx, request, pending)
    # A creating or overwriting persistent CREATE commits its intent first.
    pending = intents.before_open(ctx, request, resolved, _retry)
    if pending is not None:
        return _tracked(ctx, request, pending)
    handle, action = _open_or_create(fs, request, resolved, access, done)
    try:
        _apply_new_attributes(ctx, fs, handle, request, action)
        info = fs.stat(handle)
        key = (info.device_id, info.file_id)
        if action == CreateAction.CREATED:
            # A racing open elsewhere may have made it meanwhile: check again.
            files.check_share_access(ctx.server, key, access, request.share_access)
        if (options & Opt.DELETE_ON_CLOSE and info.is_directory
                and not deletes.directory_is_empty(ctx.server, fs, handle)):
            raise SmbError(NtStatus.DIRECTORY_NOT_EMPTY)
    except SmbError:
        handle.close()
        raise
    if share.is_ca and durable.supports_persistent_handles(share):
        options |= Opt.WRITE_THROUGH        # every write on a CA share is stable (3.3.5.9)
    persistent_id, volatile_id = ctx.server.next_file_ids()
    store_version = 0
    taken = intents.take(ctx)
    if taken is not None:       # the open's record replaces its intent, same key
        persistent_id, store_version = taken
    open_ = Open(persistent_id=persistent_id, volatile_id=volatile_id, session=ctx.session,
                 tree=ctx.tree, path=handle.path, client_name=request.name, handle=handle,
                 granted_access=access, share_access=request.share_access,
                 create_options=options, is_directory=info.is_directory, file_key=key,
                 delete_on_close=bool(options & Opt.DELETE_ON_CLOSE),
                 client_guid=ctx.connection.client_guid,
                 desired_access=request.desired_access,
                 file_attributes=request.file_attributes, create_action=action,
                 store_version=store_version)
    _note_app_instance(ctx, open_, request)
    try:
        ctx.server.opens.register(open_)
    except CachedElsewhere as exc:
        handle.close()
        leasing = ctx.server.leasing
        return leases_elsewhere.wait_then_retry(
            leasing, ctx, key, _retry,
            leases_elsewhere.opener_of(request, access, exc.sharing_violation))
    except SmbError:
        handle.close()
        raise
    ctx.compound.file_id = open_.file_id
    oplock_level, contexts = leases.grant(ctx, open_, request, action == CreateAction.CREATED)
    contexts += durable.grant(ctx, open_, request)
    if request.create_contexts.query_maximal_access is not None:
        contexts.append(maximal_access_response(NtStatus.SUCCESS, _maximal_access(ctx, info)))
    if request.create_contexts.query_on_disk_id:
        contexts.append(query_on_disk_id_response(info.file_id, info.device_id))
    body = CreateResponse(
        oplock_level=oplock_level, flags=0, create_action=action,
        creation_time=info.creation_time, last_access_time=info.last_access_time,
        last_write_time=info.last_write_time, change_time=info.change_time,
        allocation_size=info.allocation_size, end_of_file=info.end_of_file,
        file_attributes=info.attributes, file_id=FileId(persistent_id, volatile_id),
        create_contexts=tuple(contexts)).encode()
    commit = durable.persist(ctx.server.opens, open_)
    if commit is None:
        return body
    return answer_after(commit, body, lambda exc: _not_stored(ctx, open_, exc))


def _not_stored(ctx, open_, exc: Exception) -> SmbError:
    """A persistent open exists for the client only once the store has it:
    any store failure closes it."""
    log.error("persistent open of %r not stored, closing it: %s", open_.path, exc)
    ctx.server.opens.close(open_)
    return SmbError(NtStatus.INSUFFICIENT_RESOURCES, "handle store failed")


def _note_app_instance(ctx, open_, request) -> None:
    """Open.AppInstanceId and its version (3.3.5.9, "Successful Open
    Initialization"): 3.x, with the version on 3.1.1 only."""
    contexts = request.create_contexts
    dialect = ctx.connection.dialect
    if contexts.app_instance_id is None or dialect < Dialect.SMB_3_0:
        return
    if dialect < Dialect.SMB_3_1_1 and contexts.durable_handle_request_v2 is None:
        return
    open_.app_instance_id = contexts.app_instance_id
    version = contexts.app_instance_version
    if version is not None and dialect >= Dialect.SMB_3_1_1:
        open_.app_instance_version = (version.app_instance_version_high,
                                      version.app_instance_version_low)


def _tracked(ctx, request, pending: Pending) -> Pending:
    """A DH2Q CREATE waiting for a break is known by its CreateGuid, so a
    replay of it meanwhile is refused rather than run twice (3.3.5.9)."""
    v2 = request.create_contexts.durable_handle_request_v2
    if v2 is None:
        return pending
    key = (v2.create_guid, ctx.connection.client_guid)
    waiting = ctx.server.opens.creates_in_progress
    waiting.setdefault(key, set()).add(id(ctx))     # its own retry is not a replay

    async def work():
        try:
            return await pending.work
        finally:
            requests = waiting.get(key)
            if requests is not None:
                requests.discard(id(ctx))
                if not requests:
                    del waiting[key]
    return Pending(work(), pending.interim_after_s, pending.on_cancel)


def _retry(ctx):
    """A CREATE that waited for an oplock or lease break starts over (its
    lookup inline: the retry runs inside the wait, not as a handler)."""
    return handle(ctx, max_scan_bytes=None)
