"""The AppInstanceId takeover of a stale open ([MS-SMB2] 3.3.5.9.13).

A CREATE with an AppInstanceId (SMB2_CREATE_APP_INSTANCE_ID) closes every
open of the file on the same share with that AppInstanceId made by another
client, even a disconnected persistent one: a VM or SQL instance that moved
to another Hyper-V host (or whose host crashed and came back) gets its disk
back at once instead of waiting out the old host's handle.  On 3.1.1 an open
that carries an AppInstanceVersion is closed only by a newer version, else
the CREATE fails with STATUS_FILE_FORCED_CLOSED.

With worker processes (docs/multicore.md) the two hosts' ClientGuids
usually route to different workers, so the stale open is often another
worker's: when the open-state record shows another worker has the file
open, the CREATE asks every other worker first (``check_elsewhere``, an
AppInstanceClose to each, the CREATE pending meanwhile; each runs
``on_close_request``) and then runs again.  Before this, the new open broke
the stale open's oplock or lease and then failed on its share modes.
"""

import logging

from smbcad.proto.constants import AccessMask, Dialect
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server.context import COMMIT_INTERIM_S, Pending
from smbcad.server.leases_elsewhere import run_again

log = logging.getLogger("smbcad.reconnect")

_GENERIC_READ_RIGHTS = (AccessMask.FILE_READ_DATA | AccessMask.FILE_READ_EA
                        | AccessMask.FILE_READ_ATTRIBUTES | AccessMask.READ_CONTROL)


def stale_opens(opens, share, app_id: bytes, client_guid: bytes,
                version: tuple[int, int] | None, dialect_311: bool, may_close: bool) -> list:
    """Of ``opens``, those the CREATE closes.  ``version``: the CREATE's
    AppInstanceVersion (high, low) or None; ``may_close``: the opener's tree
    grants the generic read rights.  SmbError FILE_FORCED_CLOSED when a
    stale open's version is not older (checked before the rights, as
    Windows does)."""
    found = []
    for other in opens:
        if (other.app_instance_id != app_id or other.tree.share is not share
                or other.client_guid == client_guid or other.closed):
            continue
        if other.app_instance_version is not None and dialect_311:
            if version is None:
                raise SmbError(NtStatus.FILE_FORCED_CLOSED, "stale open has a version, request none")
            if other.app_instance_version >= version:
                raise SmbError(NtStatus.FILE_FORCED_CLOSED, "stale open's instance is not older")
        if may_close:
            found.append(other)
    return found


def _request_of(ctx, request, key: tuple | None):
    """(AppInstanceId, version, 3.1.1?) when the CREATE takes over, else None."""
    contexts = request.create_contexts
    app_id = contexts.app_instance_id
    dialect = ctx.connection.dialect
    if app_id is None or not any(app_id) or key is None or dialect < Dialect.SMB_3_0:
        return None
    wanted = contexts.app_instance_version if dialect >= Dialect.SMB_3_1_1 else None
    version = (None if wanted is None
               else (wanted.app_instance_version_high, wanted.app_instance_version_low))
    return app_id, version, dialect >= Dialect.SMB_3_1_1


def _may_close(ctx) -> bool:
    return ctx.tree.maximal_access & _GENERIC_READ_RIGHTS == _GENERIC_READ_RIGHTS


def take_over(ctx, request, key: tuple | None) -> None:
    """Close this process's stale opens of the file (SmbError FILE_FORCED_CLOSED)."""
    asked = _request_of(ctx, request, key)
    if asked is None:
        return
    state = ctx.server.opens.file_state(key)
    if state is None:
        return
    app_id, version, dialect_311 = asked
    for other in stale_opens(list(state.opens), ctx.tree.share, app_id,
                             ctx.connection.client_guid, version, dialect_311, _may_close(ctx)):
        log.info("%s: AppInstanceId takeover closes open %#x on %r", ctx.connection.peer,
                 other.persistent_id, other.path)
        ctx.server.opens.close(other)


def check_elsewhere(ctx, request, key: tuple | None, retry) -> Pending | None:
    """With workers, when another worker has the file open: ask each to
    close its stale opens, then run the CREATE again (``ctx.asked_workers``)."""
    peers = ctx.server.peers
    if peers is None or ctx.asked_workers:
        return None
    asked = _request_of(ctx, request, key)
    if asked is None or not ctx.server.opens.open_state.foreign_state(key)[1]:
        return None
    app_id, version, dialect_311 = asked
    may_close = _may_close(ctx)
    if not may_close and not dialect_311:
        return None                     # nothing to close, no version to refuse it
    share, client_guid = ctx.tree.share.name, ctx.connection.client_guid

    async def asked_all():
        status = await peers.close_app_instance(key, share, app_id, client_guid, version,
                                                dialect_311, may_close)
        if status != NtStatus.SUCCESS:
            raise SmbError(status, "a stale open elsewhere refuses the AppInstanceId takeover")
        ctx.asked_workers = True
        return await run_again(ctx, retry)
    return Pending(asked_all(), COMMIT_INTERIM_S)


def on_close_request(server, message) -> int:
    """Another worker's CREATE takes over ``message.app_instance_id``
    (``workers.messages.AppInstanceClose``): close the stale opens here; the
    NTSTATUS to answer."""
    share = server.find_share(message.share)
    state = server.opens.file_state(message.file_key)
    if share is None or state is None:
        return NtStatus.SUCCESS
    try:
        stale = stale_opens(list(state.opens), share, message.app_instance_id,
                            message.client_guid, message.version, message.dialect_311,
                            message.may_close)
    except SmbError as exc:
        return exc.status
    for other in stale:
        log.info("AppInstanceId takeover through another worker closes open %#x on %r",
                 other.persistent_id, other.path)
        server.opens.close(other)
    return NtStatus.SUCCESS
