"""Getting an open back: DHnC and DH2C reconnects ([MS-SMB2] 3.3.5.9.7,
3.3.5.9.12), replayed CREATEs answered from the open they made (3.3.5.9
"replay", 3.3.5.9.10), and the AppInstanceId takeover of a stale open
(3.3.5.9.13).

A reconnect does no path validation and opens nothing: it finds the open
by its DurableFileId (or, for a persistent open on a node that restarted,
by its CreateGuid), checks that the caller is the client and user that
made it, and attaches it to the caller's session and tree with a new
volatile FileId.  Breaks the open could not hear while away go out now.
With worker processes, an open not found here may be another worker's
(a reconnect from another ClientGuid): ``durable_handover`` fetches it first.
"""

import logging

from smbcad.proto.constants import (
    CreateAction, CreateOptions, Dialect, OplockLevel)
from smbcad.proto.create import CreateRequest, CreateResponse
from smbcad.proto.create_contexts import (
    DHANDLE_FLAG_PERSISTENT, FileId, LeaseFlags, LeaseResponse, durable_handle_response_v2, maximal_access_response, query_on_disk_id_response)
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus, name_of
from smbcad.server import durable, durable_handover
from smbcad.server.context import answer_after
from smbcad.store import ZERO_GUID

log = logging.getLogger("smbcad.reconnect")

_NOT_FOUND = NtStatus.OBJECT_NAME_NOT_FOUND


def is_reconnect(ctx, request: CreateRequest) -> bool:
    """DHnC, or DH2C on a 3.x connection (DH2C means nothing below 3.0)."""
    contexts = request.create_contexts
    if contexts.durable_handle_reconnect_v2 is not None:
        return ctx.connection.dialect >= Dialect.SMB_3_0
    return contexts.durable_handle_reconnect is not None


def reconnect(ctx, request: CreateRequest):
    """3.3.5.9.7 (DHnC) and 3.3.5.9.12 (DH2C), counted by result
    (``smbcad_durable_reconnects_total``)."""
    try:
        answer = _reconnect(ctx, request)
    except SmbError as exc:
        if exc.status == _NOT_FOUND:
            pending = _held_elsewhere(ctx, request)
            if pending is not None:
                return pending
        ctx.server.metrics.reconnect(name_of(exc.status))
        raise
    ctx.server.metrics.reconnect("ok")
    return answer


def _held_elsewhere(ctx, request: CreateRequest):
    """With workers, an open this process does not have may be another's:
    fetch it (``durable_handover``), then reconnect again."""
    contexts = request.create_contexts
    v2 = contexts.durable_handle_reconnect_v2
    if v2 is not None and ctx.connection.dialect >= Dialect.SMB_3_0:
        open_id = v2.file_id.persistent
    else:
        open_id = contexts.durable_handle_reconnect.persistent
    if ctx.server.opens.lookup(open_id) is not None:
        return None
    return durable_handover.fetch_elsewhere(ctx, open_id,
                                            lambda again: reconnect(again, request))


def _reconnect(ctx, request: CreateRequest):
    v2 = request.create_contexts.durable_handle_reconnect_v2
    if v2 is not None and ctx.connection.dialect >= Dialect.SMB_3_0:
        open_ = _find_v2(ctx, v2)
        _check_v2(ctx, request, open_, v2)
    else:
        open_ = ctx.server.opens.lookup(
            request.create_contexts.durable_handle_reconnect.persistent)
        if open_ is None:
            raise SmbError(_NOT_FOUND, "no durable open with that FileId")
        _check_common(ctx, request, open_)
        if not open_.durable and not open_.resilient:
            raise SmbError(_NOT_FOUND, "open is neither durable nor resilient")
        if open_.durable and not open_.persistent and not durable.holds_handle_caching(open_):
            raise SmbError(_NOT_FOUND, "durable open lost its batch oplock or H lease")
    if not durable.is_owner(open_.durable_owner, open_.durable_owner_sid, ctx.session):
        raise SmbError(NtStatus.ACCESS_DENIED, "reconnect by another user")
    attach(ctx, open_)
    log.info("%s: reconnected %s open %#x on %r", ctx.connection.peer,
             "persistent" if open_.persistent else "durable", open_.persistent_id, open_.path,
             extra={"client": ctx.connection.peer, "session_id": f"{ctx.session.session_id:#x}",
                    "share": ctx.tree.share.name, "open_id": f"{open_.persistent_id:#x}",
                    "state": "connected"})
    # A reconnect is answered without a DHnQ/DH2Q context, as Windows does
    # (<339>; smb2.durable-open.reopen1a, smb2.durable-v2-open.reopen1a).
    body = _response(ctx, open_, request, CreateAction.OPENED, [])
    ctx.after_send.append(lambda: ctx.server.leasing.deliver_parked(open_))
    return _after_commit(ctx, open_, body)


def _find_v2(ctx, v2):
    server = ctx.server
    open_ = server.opens.lookup(v2.file_id.persistent)
    if open_ is None and v2.persistent and ctx.tree.share.is_ca and durable.persistent_capable(
            ctx.connection):
        open_ = server.opens.by_guid(v2.create_guid)
    if open_ is None or open_.closed:
        raise SmbError(_NOT_FOUND, "no durable open with that FileId or CreateGuid")
    return open_


def _check_v2(ctx, request, open_, v2) -> None:
    """The checks of 3.3.5.9.12, in its order."""
    if open_.lease is not None and open_.client_guid != ctx.connection.client_guid:
        raise SmbError(_NOT_FOUND, "lease belongs to another client")
    if open_.persistent and not v2.persistent:
        raise SmbError(_NOT_FOUND, "persistent open reconnected without the flag")
    if (open_.create_guid or ZERO_GUID) != v2.create_guid:     # a v1 open has none
        raise SmbError(_NOT_FOUND, "CreateGuid differs")
    if not open_.durable and not open_.resilient:
        raise SmbError(_NOT_FOUND, "open is neither durable nor resilient")
    _check_common(ctx, request, open_)
    if open_.durable and not open_.persistent and not durable.holds_handle_caching(open_):
        raise SmbError(_NOT_FOUND, "durable open lost its batch oplock or H lease")
    if not open_.persistent and v2.persistent:
        raise SmbError(NtStatus.INVALID_PARAMETER, "open is not persistent")


def _check_common(ctx, request, open_) -> None:
    """What 3.3.5.9.7 and 3.3.5.9.12 share: the open is free, on this share,
    and the request names the same lease, file and lease version."""
    if open_.session is not None:
        raise SmbError(_NOT_FOUND, "open is still attached to a session")
    if open_.tree.share is not ctx.tree.share:
        raise SmbError(_NOT_FOUND, "open is on another share")
    # The RqLs context counts, not RequestedOplockLevel: a reconnect ignores
    # every other field of the request (smb2.durable-open.reopen2).
    lease_request = request.create_contexts.lease
    lease = open_.lease
    if (lease is None) != (lease_request is None):
        raise SmbError(_NOT_FOUND, "lease in the open and the request differ")
    if lease is not None:
        if lease.client_guid != ctx.connection.client_guid:
            raise SmbError(_NOT_FOUND, "lease belongs to another client")
        if lease.lease_key != lease_request.lease_key:
            raise SmbError(_NOT_FOUND, "lease key differs")
        if lease.version != lease_request.version:
            raise SmbError(_NOT_FOUND, "lease version differs")
        delete_pending = ctx.server.opens.delete_pending(open_.file_key)
        if not delete_pending and _normal(request.name) != _normal(open_.client_name):
            raise SmbError(NtStatus.INVALID_PARAMETER, "reconnect names another file")


def _normal(name: str) -> str:
    return name.replace("/", "\\").strip("\\").lower()


def attach(ctx, open_) -> None:
    """3.3.5.9.7 step 7 / 3.3.5.9.12 step 5: the open joins this session and
    tree under a new volatile FileId.

    Which FileId the client gets back, the same in every case (same node,
    after an smbcad restart, on the partner after a takeover):
    FileId.Persistent is the open's DurableFileId, the key of
    GlobalOpenTable that the store record carries, so it never changes;
    FileId.Volatile is allocated anew, because it names the open in
    Session.OpenTable and the session is a new one.  Windows does the same
    (the volatile half is its per-session handle index), so does Samba
    (smbXsrv_open_recreate allocates a new local id), and clients expect
    it: Windows and Linux take the FileId from the CREATE response, and the
    MS test suite even reconnects with a volatile part of 0 (cluster.md).
    """
    ctx.server.opens.attach(open_, ctx.session, ctx.tree)
    ctx.compound.file_id = open_.file_id


def _response(ctx, open_, request, action: int, contexts: list,
              oplock_level: int | None = None) -> bytes:
    info = ctx.tree.share.fs.stat(open_.handle)
    lease = open_.lease
    if lease is not None:
        flags = LeaseFlags.BREAK_IN_PROGRESS if lease.state.breaking else 0
        contexts.append(LeaseResponse(lease.lease_key, lease.state.held, flags,
                                      lease.parent_lease_key, lease.epoch,
                                      lease.version).context())
    if request.create_contexts.query_maximal_access is not None:
        contexts.append(maximal_access_response(NtStatus.SUCCESS, ctx.tree.maximal_access))
    if request.create_contexts.query_on_disk_id:
        contexts.append(query_on_disk_id_response(info.file_id, info.device_id))
    return CreateResponse(
        oplock_level=open_.oplock_level if oplock_level is None else oplock_level,
        flags=0, create_action=action,
        creation_time=info.creation_time, last_access_time=info.last_access_time,
        last_write_time=info.last_write_time, change_time=info.change_time,
        allocation_size=info.allocation_size, end_of_file=info.end_of_file,
        file_attributes=info.attributes,
        file_id=FileId(open_.persistent_id, open_.volatile_id),
        create_contexts=tuple(contexts)).encode()


def _after_commit(ctx, open_, body):
    commit = durable.persist(ctx.server.opens, open_)
    if commit is None:
        return body
    return answer_after(commit, body)


# --- replayed CREATEs (3.3.5.9, 3.3.5.9.10) -------------------------------------------

def replay(ctx, request: CreateRequest):
    """A CREATE carrying DH2Q whose CreateGuid made an open already: answer
    from that open, or refuse; None means open normally."""
    v2 = request.create_contexts.durable_handle_request_v2
    if v2 is None or ctx.connection.dialect < Dialect.SMB_3_0:
        return None
    server = ctx.server
    waiting = server.opens.creates_in_progress.get((v2.create_guid, ctx.connection.client_guid))
    if ctx.header.is_replay and waiting and id(ctx) not in waiting:
        # The original CREATE still waits for a break: Samba's answer (the
        # "sane" variants of smb2.replay.dhv2-pending*); Windows says ACCESS_DENIED.
        raise SmbError(NtStatus.FILE_NOT_AVAILABLE, "the original CREATE is still pending")
    existing = server.opens.by_guid(v2.create_guid)
    if existing is None or existing.closed:
        return None
    same_client = existing.client_guid == ctx.connection.client_guid
    if existing.is_replay_eligible and same_client:
        if not ctx.header.is_replay:
            raise SmbError(NtStatus.DUPLICATE_OBJECTID, "CreateGuid already in use")
        _check_replay_owner(ctx, request, existing)
        if existing.session is not None and existing.session is not ctx.session:
            raise SmbError(NtStatus.DUPLICATE_OBJECTID, "replay from another session")
        if existing.persistent and not v2.persistent:
            raise SmbError(NtStatus.INVALID_PARAMETER, "replay of a persistent open without the flag")
        if existing.session is None:
            # the client lost the connection mid-CREATE and replays it on a new
            # one: the open moves to this session (smb2.replay.replay5)
            if existing.tree.share is not ctx.tree.share:
                raise SmbError(NtStatus.FILE_NOT_AVAILABLE, "the open is on another share")
            attach(ctx, existing)
        return answer_replay(ctx, existing, request, v2)
    if (ctx.header.is_replay and existing.persistent and v2.persistent
            and ctx.tree.share.is_ca and durable.persistent_capable(ctx.connection)):
        # v84: a persistent open found by CreateGuid alone
        if existing.session is not None:
            raise SmbError(NtStatus.FILE_NOT_AVAILABLE, "persistent open still in use")
        if not durable.is_owner(existing.durable_owner, existing.durable_owner_sid,
                                ctx.session):
            raise SmbError(NtStatus.ACCESS_DENIED, "replay by another user")
        if ((existing.create_options ^ request.create_options) & ~CreateOptions.WRITE_THROUGH
                or existing.desired_access != request.desired_access
                or existing.share_access != request.share_access):
            raise SmbError(NtStatus.CONTEXT_MISMATCH, "replay differs from the original CREATE")
        attach(ctx, existing)
        return answer_replay(ctx, existing, request, v2)
    return None


def _check_replay_owner(ctx, request, existing) -> None:
    if not durable.is_owner(existing.durable_owner, existing.durable_owner_sid, ctx.session):
        raise SmbError(NtStatus.ACCESS_DENIED, "replay by another user")
    lease_request = request.create_contexts.lease
    if existing.lease is not None and (lease_request is None
                                       or lease_request.lease_key != existing.lease.lease_key):
        raise SmbError(NtStatus.ACCESS_DENIED, "replay with another lease key")


def answer_replay(ctx, open_, request, v2):
    """The response of the original CREATE, as far as the replay asks for it:
    Windows answers an oplock open with the oplock level the replay requests
    (capped at what the open holds) and a DH2Q context only if that level
    would have made it durable (smb2.replay.replay-dhv2-oplock2); a lease
    requested against an oplock open, or the reverse, is ACCESS_DENIED."""
    wants_lease = request.requested_oplock_level == OplockLevel.LEASE
    if wants_lease != (open_.lease is not None):
        raise SmbError(NtStatus.ACCESS_DENIED, "replay asks for another kind of caching")
    if open_.lease is not None:
        oplock_level = OplockLevel.LEASE
        durable_again = open_.persistent or durable.holds_handle_caching(open_)
    else:
        oplock_level = min(request.requested_oplock_level, open_.oplock_level,
                           key=_OPLOCK_RANK.get)
        durable_again = open_.persistent or oplock_level == OplockLevel.BATCH
    contexts = ([durable_handle_response_v2(open_.durable_timeout_ms,
                                            DHANDLE_FLAG_PERSISTENT if open_.persistent else 0)]
                if durable_again else [])
    ctx.compound.file_id = open_.file_id
    body = _response(ctx, open_, request, open_.create_action or CreateAction.OPENED, contexts,
                     oplock_level)
    return _after_commit(ctx, open_, body)


_OPLOCK_RANK = {OplockLevel.NONE: 0, OplockLevel.LEVEL_II: 1, OplockLevel.EXCLUSIVE: 2,
                OplockLevel.BATCH: 3}
