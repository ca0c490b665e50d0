"""Durable, persistent and resilient opens: granting durability on CREATE,
keeping opens through a lost connection, the scavenger, and the records the
handle store keeps of persistent opens (issue 4).

[MS-SMB2] 3.3.5.9.6 (DHnQ), 3.3.5.9.10 (DH2Q), 3.3.7.1 (connection lost),
3.3.6.2 / 3.3.6.4 (durable and resilient scavenger timers), 3.3.5.9 (a
CREATE against a disconnected persistent open).  Reconnects are in
``smbcad.server.reconnect``, recovery after a restart in
``smbcad.server.restore``.

Only persistent opens go to the handle store: durable and resilient opens
live in memory and survive a dropped connection, not a restart (as on
Windows, where only CA handles survive a failover).  Every store call
happens before the response that depends on it is sent: handlers return a
``Pending`` whose work awaits the commit.
"""

import logging
from typing import Awaitable

from smbcad.proto.constants import AccessMask, Dialect, GlobalCaps, OplockLevel
from smbcad.proto.create_contexts import (
    DHANDLE_FLAG_PERSISTENT, durable_handle_response, durable_handle_response_v2)
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import channel_sequence
from smbcad.store import ZERO_GUID, LeaseRecord, LockRecord, PersistentOpen

log = logging.getLogger("smbcad.durable")

# DHnQ has no timeout field: Windows 8 / Server 2012 and later keep a
# disconnected v1 durable open for 2 minutes (<335>).
DURABLE_V1_TIMEOUT_MS = 120_000
# DH2Q Timeout 0: the share's CA timeout, else 60 s (<344>); a requested
# timeout is capped at 300 s (3.3.5.9.10).
DURABLE_V2_DEFAULT_TIMEOUT_MS = 60_000
DURABLE_V2_MAX_TIMEOUT_MS = 300_000
# FSCTL_LMR_REQUEST_RESILIENCY: MaxResiliencyTimeout and the Timeout-0 value (<226>, <401>).
MAX_RESILIENCY_TIMEOUT_MS = 300_000
DEFAULT_RESILIENCY_TIMEOUT_MS = 120_000

_HANDLE_CACHING = 0x02
_REPLAY_ACCESS = (AccessMask.FILE_READ_DATA | AccessMask.FILE_EXECUTE
                  | AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
                  | AccessMask.DELETE)


def supports_persistent_handles(server) -> bool:
    """The server offers persistent handles when it has a handle store."""
    return server.handle_store is not None


def persistent_capable(connection) -> bool:
    """3.3.5.9.10: Connection.ServerCapabilities includes PERSISTENT_HANDLES."""
    return bool(connection.server_capabilities & GlobalCaps.PERSISTENT_HANDLES)


def holds_handle_caching(open_) -> bool:
    if open_.lease is not None:
        return bool(open_.lease.state.held & _HANDLE_CACHING)
    return open_.oplock_level == OplockLevel.BATCH


def owner_of(session) -> tuple:
    identity = session.identity
    return (identity.user.lower(), identity.domain.upper()) if identity is not None else ("", "")


# --- grant (3.3.5.9.6, 3.3.5.9.10) ---------------------------------------------------

def grant(ctx, open_, request) -> list:
    """Decide durability for a new open after its oplock or lease is granted;
    returns the DHnQ or DH2Q response context (or nothing)."""
    contexts = request.create_contexts
    share = ctx.tree.share
    if share.is_ipc:
        return []
    v2 = contexts.durable_handle_request_v2
    if v2 is not None:
        if ctx.connection.dialect < Dialect.SMB_3_0:
            return []
        # CreateGuid and replay eligibility go with every DH2Q open, durable
        # or not: a replay finds it either way (smb2.replay.dhv2-pending1n-*).
        open_.create_guid = v2.create_guid
        open_.client_guid = ctx.connection.client_guid
        open_.durable_owner = owner_of(ctx.session)
        open_.is_replay_eligible = not open_.is_directory and bool(
            open_.granted_access & _REPLAY_ACCESS)
        ctx.server.opens_by_create_guid[v2.create_guid] = open_
        persistent = (v2.persistent and share.is_ca and persistent_capable(ctx.connection)
                      and supports_persistent_handles(ctx.server))
        # <342>: without persistence, durability needs a batch oplock or an H lease.
        if not persistent and not holds_handle_caching(open_):
            return []
        timeout = (min(v2.timeout, DURABLE_V2_MAX_TIMEOUT_MS) if v2.timeout
                   else share.ca_timeout_ms or DURABLE_V2_DEFAULT_TIMEOUT_MS)
        _make_durable(ctx, open_, timeout, persistent)
        open_.is_replay_eligible = open_.is_replay_eligible or persistent
        return [durable_handle_response_v2(timeout,
                                           DHANDLE_FLAG_PERSISTENT if persistent else 0)]
    if not contexts.durable_handle_request or open_.is_directory:
        return []
    if not holds_handle_caching(open_):
        return []
    _make_durable(ctx, open_, DURABLE_V1_TIMEOUT_MS, False)
    return [durable_handle_response()]


def _make_durable(ctx, open_, timeout_ms: int, persistent: bool) -> None:
    open_.durable = True
    open_.persistent = persistent
    open_.durable_timeout_ms = timeout_ms
    open_.durable_owner = owner_of(ctx.session)
    open_.client_guid = ctx.connection.client_guid


def make_resilient(open_, session, timeout_ms: int) -> None:
    """FSCTL_LMR_REQUEST_RESILIENCY (3.3.5.15.9): the open survives a
    disconnect for ``timeout_ms`` whatever its oplock or lease."""
    open_.durable = False
    open_.resilient = True
    open_.resiliency_timeout_ms = timeout_ms or DEFAULT_RESILIENCY_TIMEOUT_MS
    open_.durable_owner = owner_of(session)
    open_.client_guid = session.connection.client_guid


def forget_create_guid(server, open_) -> None:
    if open_.create_guid and server.opens_by_create_guid.get(open_.create_guid) is open_:
        del server.opens_by_create_guid[open_.create_guid]


# --- CREATE against a disconnected persistent open (3.3.5.9) ------------------------

def check_not_held_disconnected(ctx, key: tuple) -> None:
    """A 3.x CREATE of a file that a disconnected persistent open holds gets
    STATUS_FILE_NOT_AVAILABLE until the owner reconnects or the open times
    out: nobody steps on a VM's disk while its host reconnects."""
    if ctx.connection.dialect < Dialect.SMB_3_0:
        return
    state = ctx.server.opens_by_file.get(key)
    if state is None:
        return
    for other in state.opens:
        if other.persistent and other.session is None:
            raise SmbError(NtStatus.FILE_NOT_AVAILABLE,
                           f"{other.path!r} is held by a disconnected persistent open")


# --- connection lost (3.3.7.1) and the scavenger (3.3.6.2, 3.3.6.4) -----------------

def disconnect(server, open_) -> Awaitable | None:
    """Keep ``open_`` without its session: share modes, locks and lease stay;
    a timer closes it unless a reconnect comes first.  Returns the store
    commit for a persistent open."""
    session = open_.session
    session.opens.pop(open_.volatile_id, None)
    open_.tree.open_count -= 1
    open_.session = None
    channel_sequence.reset(open_)        # its requests in flight died with the connection
    open_.disconnected_at_ms = int(server.clock() * 1000)
    timeout_ms = open_.resiliency_timeout_ms if open_.resilient else open_.durable_timeout_ms
    start_scavenger(server, open_, timeout_ms / 1000)
    log.info("kept %s open %#x on %r for %d ms after its connection went",
             "persistent" if open_.persistent else "resilient" if open_.resilient
             else "durable", open_.persistent_id, open_.path, timeout_ms)
    return persist(server, open_)


def start_scavenger(server, open_, delay_s: float) -> None:
    stop_scavenger(open_)
    loop = server.loop()
    open_.scavenger = loop.call_later(max(delay_s, 0.0), lambda: expire(server, open_))


def stop_scavenger(open_) -> None:
    if open_.scavenger is not None:
        open_.scavenger.cancel()
        open_.scavenger = None


def expire(server, open_) -> None:
    """The timeout ran out without a reconnect: close the open for good."""
    open_.scavenger = None
    if open_.closed or open_.session is not None:
        return
    log.info("durable open %#x on %r timed out", open_.persistent_id, open_.path)
    purge(server, open_)


def purge(server, open_) -> None:
    """Close a disconnected open now (timeout, a break it cannot answer, an
    AppInstanceId takeover); its store record goes in the background, as
    nothing waits for it: a restart finds the file free either way, because
    recovery skips records of opens whose file is gone or changed."""
    from smbcad.server import files
    files.close_open(server, open_)


# --- the handle store ------------------------------------------------------------------

def to_record(server, open_, version: int) -> PersistentOpen:
    """The store's view of an open (smbcad.store.records)."""
    lease = open_.lease
    lease_record = None
    if lease is not None:
        state = lease.state
        lease_record = LeaseRecord(
            lease_key=lease.lease_key, version=lease.version, state=state.held,
            epoch=lease.epoch, parent_lease_key=lease.parent_lease_key,
            breaking=state.breaking, break_to_state=state.breaking_to or 0,
            break_notification_pending=bool(getattr(lease, "parked_break", None)))
    locks = ()
    file_state = server.opens_by_file.get(open_.file_key)
    if file_state is not None and file_state.locks is not None:
        locks = tuple(LockRecord(lock.offset, lock.length, lock.exclusive)
                      for lock in file_state.locks.locks if lock.owner is open_)
    user, domain = open_.durable_owner or ("", "")
    return PersistentOpen(
        durable_file_id=open_.persistent_id, create_guid=open_.create_guid or ZERO_GUID,
        client_guid=open_.client_guid or ZERO_GUID, owner_user=user, owner_domain=domain,
        share_name=open_.tree.share.name, path=open_.path,
        file_dev=open_.file_key[0], file_ino=open_.file_key[1],
        desired_access=open_.desired_access, granted_access=open_.granted_access,
        share_access=open_.share_access, create_options=open_.create_options,
        file_attributes=open_.file_attributes, is_directory=open_.is_directory,
        oplock_level=open_.oplock_level, lease=lease_record,
        app_instance_id=open_.app_instance_id or ZERO_GUID,
        app_instance_version=open_.app_instance_version,
        is_durable=open_.durable, is_persistent=open_.persistent,
        is_resilient=open_.resilient, durable_timeout_ms=open_.durable_timeout_ms,
        resiliency_timeout_ms=open_.resiliency_timeout_ms,
        disconnected_at_ms=open_.disconnected_at_ms, locks=locks,
        lock_sequences=bytes(open_.lock_sequences),
        # a delete disposition set through the open is carried as its
        # delete-on-close: restored, the file goes at the open's last close
        delete_on_close=open_.delete_on_close or bool(
            file_state is not None and file_state.delete_pending),
        is_replay_eligible=open_.is_replay_eligible, channel_sequence=open_.channel_sequence,
        position=open_.position, record_version=version)


def persist(server, open_) -> Awaitable | None:
    """The store commit that a change to a persistent open needs before its
    response goes out; None for other opens.  The record is built when the
    commit starts, so it carries every change made up to then."""
    if not open_.persistent or server.handle_store is None:
        return None
    return _commit(server, open_)


def persist_many(server, opens) -> Awaitable | None:
    """One atomic commit for several opens (a lease change touches each open
    of the lease)."""
    opens = [open_ for open_ in opens if open_.persistent and not open_.closed]
    if not opens or server.handle_store is None:
        return None
    return _commit_many(server, opens)


async def _commit(server, open_) -> None:
    store = server.handle_store
    if open_.closed:
        return
    if open_.store_version == 0:
        # update/create check and index synchronously before their first
        # await, so bumping the version here keeps concurrent commits in order
        open_.store_version = 1
        await store.create(to_record(server, open_, 0))
    else:
        version = open_.store_version
        open_.store_version += 1
        await store.update(to_record(server, open_, version))


async def _commit_many(server, opens) -> None:
    fresh = [open_ for open_ in opens if open_.store_version == 0]
    for open_ in fresh:
        await _commit(server, open_)
    stored = [open_ for open_ in opens if open_ not in fresh and not open_.closed]
    if not stored:
        return
    records = []
    for open_ in stored:
        records.append(to_record(server, open_, open_.store_version))
        open_.store_version += 1
    await server.handle_store.update_many(records)


def forget(server, open_) -> Awaitable | None:
    """The open closed: remove its record (awaited by CLOSE)."""
    if open_.store_version == 0 or server.handle_store is None:
        return None
    open_.store_version = 0
    return server.handle_store.close(open_.persistent_id)
