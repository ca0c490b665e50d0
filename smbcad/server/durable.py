"""Durable, persistent and resilient opens: granting durability on CREATE,
and the handle-store commits of persistent opens.

[MS-SMB2] 3.3.5.9.6 (DHnQ), 3.3.5.9.10 (DH2Q), 3.3.5.9 (a CREATE against a
disconnected persistent open).  Keeping opens through a lost connection
(3.3.7.1), their scavenger timers (3.3.6.2, 3.3.6.4) and rebuilding them
after a restart or takeover are the open table's (``smbcad.server.opens``);
reconnects are in ``smbcad.server.reconnect``.

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
from smbcad.server.open_records import to_record

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


def supports_persistent_handles(share) -> bool:
    """Persistent handles on a share need a handle store behind it."""
    return share.store is not None


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


def owner_sid_of(session) -> str:
    """The session user's SID ("" for a local user): a domain user's SID is
    the same on both nodes, whatever name it logged on with."""
    identity = session.identity
    return identity.sid.upper() if identity is not None and identity.sid else ""


def set_owner(open_, session) -> None:
    """Open.DurableOwner ([MS-SMB2] 3.3.5.9.7, 3.3.5.9.10): name and SID."""
    open_.durable_owner = owner_of(session)
    open_.durable_owner_sid = owner_sid_of(session)


def is_owner(owner: tuple, owner_sid: str, session) -> bool:
    """Whether ``session``'s user is the durable owner (``owner`` the name
    pair, ``owner_sid`` its SID or ""), for a reconnect or a replay
    (3.3.5.9.7, 3.3.5.9.12).  An owner with a SID is matched by SID, so a
    reconnect on the partner or with another logon (Kerberos ``user@REALM``,
    NTLM ``DOMAIN\\user``) still finds its open, and nobody without that SID
    does; an owner without one (a local user, or a record the previous
    release wrote) by name, as before."""
    if owner_sid:
        return owner_sid.upper() == owner_sid_of(session)
    return owner == owner_of(session)


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
        set_owner(open_, ctx.session)
        open_.is_replay_eligible = not open_.is_directory and bool(
            open_.granted_access & _REPLAY_ACCESS)
        ctx.server.opens.track_create_guid(open_)
        persistent = will_be_persistent(ctx, v2)
        # <342>: without persistence, durability needs a batch oplock or an H lease.
        if not persistent and not holds_handle_caching(open_):
            return []
        timeout = v2_timeout_ms(share, v2)
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


def will_be_persistent(ctx, v2) -> bool:
    """A DH2Q CREATE asking for a persistent handle gets one (3.3.5.9.10):
    known before the open runs, so a create intent can be committed first."""
    share = ctx.tree.share
    return bool(v2.persistent and share.is_ca and ctx.connection.dialect >= Dialect.SMB_3_0
                and persistent_capable(ctx.connection) and supports_persistent_handles(share))


def v2_timeout_ms(share, v2) -> int:
    """DH2Q's Timeout capped at 300 s; 0: the share's CA timeout, else 60 s."""
    return (min(v2.timeout, DURABLE_V2_MAX_TIMEOUT_MS) if v2.timeout
            else share.ca_timeout_ms or DURABLE_V2_DEFAULT_TIMEOUT_MS)


def _make_durable(ctx, open_, timeout_ms: int, persistent: bool) -> None:
    open_.durable = True
    open_.persistent = persistent
    open_.durable_timeout_ms = timeout_ms
    set_owner(open_, ctx.session)
    open_.client_guid = ctx.connection.client_guid


def make_resilient(open_, session, timeout_ms: int) -> None:
    """FSCTL_LMR_REQUEST_RESILIENCY (3.3.5.15.9): the open survives a
    disconnect for ``timeout_ms`` whatever its oplock or lease."""
    open_.durable = False
    open_.resilient = True
    open_.resiliency_timeout_ms = timeout_ms or DEFAULT_RESILIENCY_TIMEOUT_MS
    set_owner(open_, session)
    open_.client_guid = session.connection.client_guid


# --- CREATE against a disconnected persistent open (3.3.5.9) ------------------------

def check_not_held_disconnected(ctx, key: tuple) -> None:
    """A 3.x CREATE of a file that a disconnected persistent open holds gets
    STATUS_FILE_NOT_AVAILABLE until the owner reconnects or the open times
    out: nobody steps on a VM's disk while its host reconnects."""
    if ctx.connection.dialect < Dialect.SMB_3_0:
        return
    # The records, not this process's opens: with worker processes the
    # disconnected open may be another's (smbcad.openstate.record).
    if ctx.server.opens.held_disconnected(key):
        raise SmbError(NtStatus.FILE_NOT_AVAILABLE,
                       "the file is held by a disconnected persistent open")


# --- the handle store ------------------------------------------------------------------
# Each open's record goes to its share's store: the node's own, or, for a
# share on an aggregate, that aggregate's (mirrored to the partner).

def persist(opens, open_) -> Awaitable | None:
    """The store commit that a change to a persistent open needs before its
    response goes out; None for other opens.  ``opens`` is the OpenTable.
    The record is built when the commit starts, so it carries every change
    made up to then."""
    if not open_.persistent or open_.tree.share.store is None:
        return None
    if open_.store_version == 0 and not open_.closed:
        # A new record starts now: the future is the store's own, so the
        # CREATE that waits on it needs no task (issue 14 item 6).
        open_.store_version = 1
        return open_.tree.share.store.begin_create(_record(opens, open_, 0))
    return _commit(opens, open_)


def persist_many(table, opens) -> Awaitable | None:
    """One atomic commit for several opens (a lease change touches each open
    of the lease; they are all on one file, hence one share and store)."""
    opens = [open_ for open_ in opens if open_.persistent and not open_.closed]
    if not opens or opens[0].tree.share.store is None:
        return None
    return _commit_many(table, opens)


def _record(table, open_, version: int):
    return to_record(open_, table.file_state(open_.file_key), version,
                     delete_pending=table.delete_pending(open_.file_key))


async def _commit(table, open_) -> None:
    store = open_.tree.share.store
    if open_.closed:
        return
    if open_.store_version == 0:
        # update/create check and index synchronously before their first
        # await, so bumping the version here keeps concurrent commits in order
        open_.store_version = 1
        await store.create(_record(table, open_, 0))
    else:
        version = open_.store_version
        open_.store_version += 1
        await store.update(_record(table, open_, version))


async def _commit_many(table, opens) -> None:
    fresh = [open_ for open_ in opens if open_.store_version == 0]
    for open_ in fresh:
        await _commit(table, open_)
    stored = [open_ for open_ in opens if open_ not in fresh and not open_.closed]
    if not stored:
        return
    records = []
    for open_ in stored:
        records.append(_record(table, open_, open_.store_version))
        open_.store_version += 1
    await stored[0].tree.share.store.update_many(records)


def forget(open_) -> Awaitable | None:
    """The open closed: remove its record (awaited by CLOSE)."""
    if open_.store_version == 0 or open_.tree.share.store is None:
        return None
    open_.store_version = 0
    return open_.tree.share.store.begin_close(open_.persistent_id)
