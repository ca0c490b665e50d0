"""Oplocks and leases at run time: grant them on CREATE, break them when
another open, a write or a truncation conflicts, and wait for the
acknowledgment ([MS-SMB2] 3.3.1.4 LeaseTable, 3.3.1.12 Lease, 3.3.4.6,
3.3.4.7, 3.3.5.9.8, 3.3.5.9.11, 3.3.5.22, timers 3.3.2.1/3.3.2.5).

Every state change goes through the table of ``smbcad.server.oplocks``;
this module keeps the holders (``Lease`` per ClientGuid and LeaseKey,
``OplockGrant`` per open), sends the notifications, runs the 35-second
acknowledgment timers and wakes the CREATEs waiting for a break.  A waiting
CREATE is retried from the start once something changed (an acknowledgment,
a timeout, a close), as Samba retries a deferred open.

State hangs off ``SmbServer.leasing`` (a ``Leasing``); the hooks the commands
call are the module functions at the end.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from smbcad.proto.constants import (
    AccessMask, Command, CreateDisposition, CreateOptions, Dialect, OplockLevel)
from smbcad.proto.create_contexts import (
    ZERO_KEY, FileId, LeaseFlags, LeaseResponse)
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import FileDispositionInfo, FileDispositionInfoEx, FileRenameInfo
from smbcad.proto.oplock_break import (
    LeaseBreakFlags, LeaseBreakNotification, OplockBreakNotification)
from smbcad.proto.status import NtStatus
from smbcad.server import channels, dirleases, durable, files, oplocks, renames
from smbcad.server import leases_elsewhere as elsewhere
from smbcad.server.context import Pending
from smbcad.server.oplocks import NONE, R, W, Action, CacheState, Event, Kind

log = logging.getLogger("smbcad.leases")

BREAK_TIMEOUT_S = 35.0          # <217>/<220>: Windows waits 35 s for an acknowledgment
# For persistent opens Windows waits longer: 60 s for an oplock (<246>), 180 s
# for a lease (<247>, Windows 8.1 and later).
PERSISTENT_OPLOCK_BREAK_TIMEOUT_S = 60.0
PERSISTENT_LEASE_BREAK_TIMEOUT_S = 180.0
_WAIT_LIMIT_S = 2 * BREAK_TIMEOUT_S   # a waiting CREATE retries at the latest after this
_OVERWRITE = (CreateDisposition.SUPERSEDE, CreateDisposition.OVERWRITE,
              CreateDisposition.OVERWRITE_IF)


@dataclass(eq=False)
class Lease:
    """3.3.1.12 Lease: shared by the opens of one client with one LeaseKey."""

    client_guid: bytes
    lease_key: bytes
    file_key: tuple
    version: int
    state: CacheState = CacheState(NONE)
    epoch: int = 0
    parent_lease_key: bytes = ZERO_KEY
    opens: list = field(default_factory=list)
    file_delete_on_close: bool = False
    timer: Any = None
    parked_break: bool = False     # 3.3.1.12 BreakNotification kept for a reconnect (issue 4)
    commit: Any = None             # the last handle-store commit of a state change

    is_lease = True


@dataclass(eq=False)
class OplockGrant:
    """An open's oplock (3.3.1.10 Open.OplockLevel, OplockState, OplockTimeout)."""

    open: Any
    state: CacheState
    timer: Any = None
    parked_break: bool = False     # a break kept for the persistent open's reconnect
    commit: Any = None             # the last handle-store commit of a state change

    is_lease = False


@dataclass(eq=False)
class FileCaching:
    """The holders of one file and the operations waiting for their breaks."""

    holders: list = field(default_factory=list)
    waiters: list = field(default_factory=list)


def _asyncio_call_later(delay: float, callback: Callable[[], None]):
    return asyncio.get_running_loop().call_later(delay, callback)


def _asyncio_call_soon(callback: Callable[[], None]):
    return asyncio.get_running_loop().call_soon(callback)


class Leasing:
    """Server-wide oplock and lease state (3.3.1.5 GlobalLeaseTableList)."""

    def __init__(self, *, call_later=_asyncio_call_later, call_soon=_asyncio_call_soon,
                 break_timeout_s: float = BREAK_TIMEOUT_S) -> None:
        self.call_later = call_later
        self.call_soon = call_soon
        self.break_timeout_s = break_timeout_s
        self.lease_tables: dict[bytes, dict[bytes, Lease]] = {}
        self.files: dict[tuple, FileCaching] = {}
        self.grants: dict[Any, OplockGrant] = {}     # Open → its oplock
        self._server = None
        self.dir_leases: set[Lease] = set()          # leases on directories (dirleases.py)
        self.dir_lease_places: dict[Lease, tuple] = {}   # with workers: (share, path)
        self.written: set = set()          # opens written while dir_leases existed or shared
        self._retrying: set[int] = set()             # id(ctx) of CREATEs being retried
        self.delivery = channels.BreakDelivery(call_later)
        # Worker processes (docs/multicore.md, "Caching across workers"): ask
        # the other processes to break their caching of a file, for an open
        # (a ForeignOpen) or to none (None); set by the daemon.
        self.break_elsewhere: Callable[[tuple, elsewhere.ForeignOpen | None], None] = (
            lambda _key, _opener: None)
        # ... and to break their directory leases on a listing changed here:
        # (share name, directory path, the acting open's ParentLeaseKey or None).
        self.break_listing_elsewhere: Callable[[str, str, bytes | None], None] = (
            lambda _share, _directory, _parent_key: None)

    @property
    def server(self):
        """The SmbServer (connections, purges), set by it."""
        return self._server

    @server.setter
    def server(self, server) -> None:
        self._server = server
        if server is not None:
            server.connections.watchers.append(self.delivery)

    # --- lookups ---------------------------------------------------------------------

    def tracked(self) -> dict[str, int]:
        """Sizes of the caching tables (SmbServer.tracked)."""
        return {"lease_tables": len(self.lease_tables),
                "leases": sum(len(table) for table in self.lease_tables.values()),
                "caching_files": len(self.files), "oplock_grants": len(self.grants),
                "dir_leases": len(self.dir_leases), "written": len(self.written),
                "creates_retrying": len(self._retrying),
                "break_deliveries": self.delivery.tracked()}

    def lease(self, client_guid: bytes, lease_key: bytes) -> Lease | None:
        table = self.lease_tables.get(client_guid)
        return table.get(lease_key) if table is not None else None

    def _file(self, key: tuple) -> FileCaching:
        caching = self.files.get(key)
        if caching is None:
            caching = self.files[key] = FileCaching()
        return caching

    def restore(self, open_, record) -> None:
        """Give an open rebuilt from its store record (``OpenTable.adopt``)
        its lease or oplock back; a break it had not acknowledged stays parked
        for its reconnect."""
        if record.lease is not None:
            saved = record.lease
            lease = self.lease(record.client_guid, saved.lease_key)
            if lease is None:
                state = CacheState(saved.state)
                if saved.breaking:
                    state = CacheState(saved.state, saved.break_to_state, saved.break_to_state)
                lease = Lease(record.client_guid, saved.lease_key, open_.file_key, saved.version,
                              state, epoch=saved.epoch, parent_lease_key=saved.parent_lease_key,
                              parked_break=saved.breaking)
                self.lease_tables.setdefault(record.client_guid, {})[saved.lease_key] = lease
                self.add_holder(open_.file_key, lease)
                if open_.is_directory:        # changes to its listing break it
                    dirleases.granted(self, lease, open_)
            lease.opens.append(open_)
            open_.lease = lease
            open_.oplock_level = OplockLevel.LEASE
        elif record.oplock_level in (OplockLevel.LEVEL_II, OplockLevel.EXCLUSIVE,
                                     OplockLevel.BATCH):
            grant = OplockGrant(open_, CacheState(oplocks.lease_of_oplock(record.oplock_level)))
            self.grants[open_] = grant
            self.add_holder(open_.file_key, grant)
            open_.oplock_level = record.oplock_level
        else:
            return
        if (elsewhere.shared(self) and not self.server.opens.open_state.claim_caching(
                open_.file_key, elsewhere.local_bits(self, open_.file_key))):
            # Another worker opened or cached the file since: this caching must go.
            log.info("restored caching of %r broken: open through another worker",
                     open_.path)
            elsewhere.break_for(self, open_.file_key)

    def add_holder(self, key: tuple, holder) -> None:
        """A lease or oplock joins a file's caching state."""
        self._file(key).holders.append(holder)

    def move(self, old_key: tuple, new_key: tuple) -> None:
        """A renamed named stream takes its oplocks and leases to its new key."""
        if old_key == new_key or old_key not in self.files:
            return
        caching = self.files[new_key] = self.files.pop(old_key)
        for holder in caching.holders:
            if holder.is_lease:
                holder.file_key = new_key

    def _tidy(self, key: tuple) -> None:
        caching = self.files.get(key)
        if caching is not None and not caching.holders and not caching.waiters:
            del self.files[key]

    # --- the state machine ------------------------------------------------------------

    def apply(self, holder, event: Event, defer: bool = False):
        """Run one event through the table and carry out its actions.

        Notifications go out at once, or, when ``defer`` is set (an
        acknowledgment caused them), after the response being built.
        """
        before = holder.state
        transition = oplocks.step(before, event)
        holder.state = transition.next
        for action in transition.actions:
            if action == Action.NEW_EPOCH and holder.is_lease:
                holder.epoch = (holder.epoch + 1) & 0xFFFF
            elif action == Action.NOTIFY_ACK:
                self._notify(holder, transition.next.held, transition.next.breaking_to,
                             True, defer)
            elif action == Action.NOTIFY:
                self._notify(holder, R, NONE, False, defer)
            elif action == Action.START_TIMER:
                self._start_timer(holder)
            elif action == Action.STOP_TIMER:
                self._stop_timer(holder)
            elif action == Action.WAKE:
                self.wake(self._file_key(holder))
        if not holder.is_lease:
            self._oplock_changed(holder)
        if transition.next.held != before.held and elsewhere.shared(self):
            elsewhere.sync_caching(self, self._file_key(holder))
        # A break that starts is stored too: a persistent open's owner that
        # reconnects after a restart or takeover must still hear it (parked).
        if (transition.next.held, transition.next.breaking_to) != (before.held,
                                                                   before.breaking_to):
            self._persist(holder)
        return transition

    def _persist(self, holder) -> None:
        """A persistent open's caching state changed: its record (every open
        of a lease, atomically) goes to the handle store; an acknowledgment's
        response waits for ``holder.commit`` (commands/oplock_break.py)."""
        if self.server is None:
            return
        opens = holder.opens if holder.is_lease else [holder.open]
        commit = durable.persist_many(self.server.opens, opens)
        if commit is not None:
            holder.commit = self.server.spawn(commit)

    def _file_key(self, holder) -> tuple:
        return holder.file_key if holder.is_lease else holder.open.file_key

    def _oplock_changed(self, grant: OplockGrant) -> None:
        """Keep Open.OplockLevel in step; an oplock broken to none is gone."""
        open_ = grant.open
        if grant.state.breaking:
            return
        open_.oplock_level = oplocks.oplock_of_lease(grant.state.held)
        if grant.state.held == NONE:
            self._drop_grant(grant)

    def _drop_grant(self, grant: OplockGrant) -> None:
        self._stop_timer(grant)
        if self.grants.get(grant.open) is grant:
            del self.grants[grant.open]
        caching = self.files.get(grant.open.file_key)
        if caching is not None and grant in caching.holders:
            caching.holders.remove(grant)
            self._tidy(grant.open.file_key)
        if elsewhere.shared(self):
            elsewhere.sync_caching(self, grant.open.file_key)

    def _start_timer(self, holder) -> None:
        self._stop_timer(holder)
        holder.timer = self.call_later(self._timeout_of(holder), lambda: self._timed_out(holder))

    def _timeout_of(self, holder) -> float:
        """3.3.4.6 Open.OplockTimeout / 3.3.4.7 Lease.LeaseBreakTimeout."""
        if holder.is_lease:
            if any(open_.persistent for open_ in holder.opens):
                return max(self.break_timeout_s, PERSISTENT_LEASE_BREAK_TIMEOUT_S)
        elif holder.open.persistent:
            return max(self.break_timeout_s, PERSISTENT_OPLOCK_BREAK_TIMEOUT_S)
        return self.break_timeout_s

    @staticmethod
    def _stop_timer(holder) -> None:
        if holder.timer is not None:
            holder.timer.cancel()
            holder.timer = None

    def _timed_out(self, holder) -> None:
        """3.3.6.1 / 3.3.2.5: the client did not acknowledge in time."""
        holder.timer = None
        if holder.state.breaking:
            log.info("break of %s timed out", _describe(holder))
            self.apply(holder, Event(Kind.TIMEOUT))

    # --- notifications (3.3.4.6, 3.3.4.7) ----------------------------------------------

    def _notify(self, holder, current: int, new: int, ack_required: bool,
                defer: bool) -> None:
        """Send a break on the channel ``channels`` chooses and watch that it
        arrives; a lease break that does not goes again on the next channel."""
        if holder.is_lease:
            connection = channels.lease_break_channel(holder, self._connections(holder))
            flags = LeaseBreakFlags.ACK_REQUIRED if ack_required else 0
            epoch = holder.epoch if holder.version == 2 else 0
            body = LeaseBreakNotification(epoch, flags, holder.lease_key, current, new).encode()
            session = None

            def on_lost() -> None:
                self._resend(holder, current, new, ack_required)
        else:
            open_ = holder.open
            session = open_.session             # None while disconnected (issue 4)
            connection = channels.oplock_break_channel(session) if session is not None else None
            # Breaks are never signed (3.3.4.6 "SHOULD NOT be signed"; clients
            # reject a signature on MessageId all-ones), so the SessionId goes
            # along only where the session's traffic must be encrypted anyway.
            session = session if session is not None and session.encrypt_data else None
            level = OplockLevel.LEVEL_II if new & R else OplockLevel.NONE
            body = OplockBreakNotification(
                level, FileId(open_.persistent_id, open_.volatile_id)).encode()
            on_lost = None                      # Windows sends an oplock break once
        if connection is None or connection.closed:
            self._undeliverable(holder, ack_required)
            return

        def send() -> None:
            if connection.closed:
                self._notify(holder, current, new, ack_required, False)
                return
            connection.send_unsolicited(Command.OPLOCK_BREAK, body, session)
            self.delivery.watch(connection, on_lost)
        if defer:
            self.call_soon(send)
        else:
            send()

    def _connections(self, lease: Lease):
        server = self.server or next((open_.session.connection.server for open_ in lease.opens
                                      if open_.session is not None), None)
        return server.connections if server is not None else ()

    def _resend(self, holder, current: int, new: int, ack_required: bool) -> None:
        """The channel a lease break went on stopped responding: the same
        notification goes on the next one, while the break is outstanding."""
        state = holder.state
        if ack_required and (state.held, state.breaking_to) != (current, new):
            return                  # acknowledged, timed out or broken further meanwhile
        if not holder.opens:
            return
        log.info("%s: break sent again on another channel", _describe(holder))
        self._notify(holder, current, new, ack_required, False)

    def _undeliverable(self, holder, ack_required: bool) -> None:
        """Nobody to tell (3.3.4.6, 3.3.4.7).  Persistent opens keep the break
        for their reconnect, with the acknowledgment timer running; durable
        opens that cannot hear it are closed (a conflicting open must not wait
        for a client that may never come back); resilient ones stay; anything
        else completes the break as if it timed out."""
        opens = list(holder.opens) if holder.is_lease else [holder.open]
        away = [open_ for open_ in opens if open_.session is None]
        if ack_required and opens and len(away) == len(opens) and all(
                open_.persistent for open_ in opens):
            holder.parked_break = True
            return
        doomed = [open_ for open_ in away if not open_.persistent and not open_.resilient]
        if doomed and len(doomed) == len(opens) and self.server is not None:
            server = self.server

            def purge() -> None:
                for open_ in doomed:
                    server.opens.purge(open_)
            self.call_soon(purge)
            return
        if ack_required:
            self.call_later(0, lambda: self._timed_out(holder))

    def deliver_parked(self, open_) -> None:
        """A persistent open reconnected: send the break it could not hear
        (3.3.5.9.7 / 3.3.5.9.12, last step).  The acknowledgment timer restarts."""
        holder = open_.lease if isinstance(open_.lease, Lease) else self.grants.get(open_)
        if holder is None or not holder.parked_break:
            return
        holder.parked_break = False
        if holder.state.breaking:
            self._start_timer(holder)
            self._notify(holder, holder.state.held, holder.state.breaking_to, True, True)

    # --- waiting ---------------------------------------------------------------------

    def wake(self, key: tuple) -> None:
        caching = self.files.get(key)
        if caching is None:
            return
        waiters, caching.waiters = caching.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._tidy(key)

    def expect_change(self, key: tuple) -> asyncio.Future:
        """Register interest now, so a change that happens before the waiting
        task first runs (a purge scheduled by the break) is not missed."""
        waiter = asyncio.get_running_loop().create_future()
        self._file(key).waiters.append(waiter)
        return waiter

    async def wait_for_change(self, key: tuple, waiter: asyncio.Future | None = None) -> None:
        """Until a holder of the file acknowledges, times out or closes."""
        if waiter is None:
            waiter = self.expect_change(key)
        try:
            # Not asyncio.wait_for: in 3.11 it swallows a cancellation that
            # comes with the waiter's result (the requester's connection lost
            # in the loop iteration the holder's close woke it), and the
            # CREATE would then be retried for a session that is gone.
            async with asyncio.timeout(_WAIT_LIMIT_S):
                await waiter
        except TimeoutError:
            pass
        finally:
            caching = self.files.get(key)
            if caching is not None and waiter in caching.waiters:
                caching.waiters.remove(waiter)
                self._tidy(key)

    # --- CREATE ------------------------------------------------------------------------

    def before_open(self, ctx, request, resolved, access: int, retry: Callable,
                    key: tuple | None = None):
        """Path-name validation and the break step of an open (3.3.5.9.8,
        [MS-FSA] 2.1.5.1.2 share access, 2.1.4.12 oplock breaks).

        Returns None to go on with the open, or a ``Pending`` whose work waits
        for the breaks and then runs ``retry(ctx)`` (the whole CREATE again).
        ``key`` overrides the file's key (a named stream has its own).
        """
        lease_request = _lease_request(ctx, request)
        if key is None and resolved.exists:
            key = (resolved.info.device_id, resolved.info.file_id)
        if lease_request is not None:
            lease = self.lease(ctx.connection.client_guid, lease_request.lease_key)
            if lease is not None and lease.opens and lease.file_key != key:
                raise SmbError(NtStatus.INVALID_PARAMETER, "lease key in use for another file")
        if key is None:
            return None
        if elsewhere.shared(self) and not elsewhere.is_stat_open(
                access, request.create_disposition in _OVERWRITE):
            pending = elsewhere.before_open(self, ctx, request, access, retry, key)
            if pending is not None:
                return pending
        violation = False
        try:
            files.check_share_access(ctx.server, key, access, request.share_access)
        except SmbError as exc:
            if exc.status != NtStatus.SHARING_VIOLATION:
                raise
            violation = True
        caching = self.files.get(key)
        if caching is not None and caching.holders:
            own = (self.lease(ctx.connection.client_guid, lease_request.lease_key)
                   if lease_request is not None else None)
            views = [oplocks.HolderView(h, h.is_lease, h.state, h is own)
                     for h in caching.holders]
            decision = oplocks.decide_open(
                views, access=access, overwrite=request.create_disposition in _OVERWRITE,
                sharing_violation=violation, first_attempt=id(ctx) not in self._retrying,
                delete_on_close=bool(request.create_options & CreateOptions.DELETE_ON_CLOSE))
            for holder, level in decision.breaks:
                self.apply(holder, Event(Kind.BREAK, level))
            if decision.wait:
                return Pending(self._wait_then_retry(ctx, key, retry), interim_after_s=0.0)
        if violation:
            raise SmbError(NtStatus.SHARING_VIOLATION)
        return None

    def retry_after_change(self, ctx, key: tuple, retry: Callable) -> Pending:
        """A Pending that waits until a holder of ``key`` acknowledges, times
        out or closes, then runs ``retry(ctx)`` (the whole request again)."""
        return Pending(self._wait_then_retry(ctx, key, retry), interim_after_s=0.0)

    def _wait_then_retry(self, ctx, key: tuple, retry: Callable):
        return self._wait_then_retry_on(ctx, key, retry, self.expect_change(key))

    async def _wait_then_retry_on(self, ctx, key: tuple, retry: Callable, waiter):
        self._retrying.add(id(ctx))
        try:
            await self.wait_for_change(key, waiter)
            return await elsewhere.run_again(ctx, retry)
        finally:
            self._retrying.discard(id(ctx))

    def grant(self, ctx, open_, request, created: bool) -> tuple[int, list]:
        """Oplock Acquisition for a new open (3.3.5.9, 3.3.5.9.8, 3.3.5.9.11):
        returns the response's OplockLevel and its lease context, if any.
        A new or overwritten entry then breaks its directory's leases
        (``dirleases``), once the open's own lease (and ParentLeaseKey) is known.
        """
        granted = self._grant(ctx, open_, request, created)
        dirleases.after_create(self, open_, created, not created and
                               request.create_disposition in _OVERWRITE)
        return granted

    def _grant(self, ctx, open_, request, created: bool) -> tuple[int, list]:
        """A stat open of an existing file gets no oplock, though it may get a
        lease (smb2.oplock.exclusive4, batch9).  A directory gets a lease only
        as ``dirleases.allowed`` says, and never an oplock."""
        requested = request.requested_oplock_level
        if requested == OplockLevel.LEASE:
            lease_request = _lease_request(ctx, request)
            if lease_request is None or (open_.is_directory
                                         and not dirleases.allowed(ctx, lease_request)):
                return OplockLevel.NONE, []
            return OplockLevel.LEASE, [self._grant_lease(ctx, open_, lease_request)]
        if requested not in (OplockLevel.LEVEL_II, OplockLevel.EXCLUSIVE, OplockLevel.BATCH):
            return OplockLevel.NONE, []
        access = open_.granted_access
        if request.create_disposition in _OVERWRITE:
            access |= AccessMask.FILE_WRITE_DATA
        if not created and oplocks.is_stat_open(access, against_lease=False):
            return OplockLevel.NONE, []
        level = self._grantable(ctx.server, open_, oplocks.lease_of_oplock(requested), None,
                                is_lease=False)
        if level == NONE:
            return OplockLevel.NONE, []
        grant = OplockGrant(open_, CacheState(level))
        self.grants[open_] = grant
        self._file(open_.file_key).holders.append(grant)
        open_.oplock_level = oplocks.oplock_of_lease(level)
        return open_.oplock_level, []

    def _grant_lease(self, ctx, open_, lease_request):
        client_guid = ctx.connection.client_guid
        lease = self.lease(client_guid, lease_request.lease_key)
        level = self._grantable(ctx.server, open_, lease_request.lease_state, lease,
                                is_lease=True)
        if lease is None:
            lease = Lease(client_guid, lease_request.lease_key, open_.file_key,
                          lease_request.version, CacheState(level),
                          epoch=(lease_request.epoch + 1) & 0xFFFF,
                          parent_lease_key=(lease_request.parent_lease_key
                                            if lease_request.parent_lease_key_set else ZERO_KEY))
            self.lease_tables.setdefault(client_guid, {})[lease.lease_key] = lease
            self._file(open_.file_key).holders.append(lease)
            if open_.is_directory:
                dirleases.granted(self, lease, open_)
        elif level == (oplocks.normalise(lease_request.lease_state) & ~W if open_.is_directory
                       else lease_request.lease_state):
            self.apply(lease, Event(Kind.GRANT, level))
        lease.opens.append(open_)
        open_.lease = lease
        open_.oplock_level = OplockLevel.LEASE
        if open_.create_options & CreateOptions.DELETE_ON_CLOSE:
            lease.file_delete_on_close = True
        flags = LeaseFlags.BREAK_IN_PROGRESS if lease.state.breaking else 0
        # The lease keeps the version it was created with (smb2.lease.v2_epoch2/3).
        return LeaseResponse(lease.lease_key, lease.state.held, flags, lease.parent_lease_key,
                             lease.epoch, lease.version).context()

    def _grantable(self, server, open_, requested: int, lease: Lease | None, *,
                   is_lease: bool) -> int:
        shared = elsewhere.shared(self)
        other_opens = other_oplocks = other_handle_leases = 0
        state = server.opens.file_state(open_.file_key)
        for other in (state.opens if state is not None else ()):
            if other is open_ or (lease is not None and other.lease is lease):
                continue
            # Stat opens do not stop a writer, unless they hold a lease or an
            # oplock of their own (smb2.lease.statopen, statopen3, oplock.batch9).
            if (oplocks.is_stat_open(other.granted_access, against_lease=True)
                    and not isinstance(other.lease, Lease) and other not in self.grants):
                continue
            other_opens += 1
        caching = self.files.get(open_.file_key)
        for holder in (caching.holders if caching is not None else ()):
            if holder is lease:
                continue
            if holder.is_lease:
                other_handle_leases += bool(holder.state.held & oplocks.H)
            elif holder.open is not open_ and holder.state.held:
                other_oplocks += 1
        has_locks = bool(state is not None and state.locks is not None and state.locks.locks)
        if shared:
            # Other workers' opens, holders and locks count as local ones.
            foreign = elsewhere.Foreign.of(server.opens.open_state, open_.file_key)
            other_opens += foreign.opened
            other_oplocks += foreign.oplocks
            other_handle_leases += foreign.handle_leases
            has_locks = has_locks or foreign.has_locks
        level = oplocks.grantable(requested, is_lease=is_lease, other_opens=other_opens,
                                  other_oplocks=other_oplocks,
                                  other_handle_leases=other_handle_leases,
                                  is_directory=open_.is_directory, has_locks=has_locks)
        if level != NONE and shared and not foreign.claim(self, open_.file_key, level, is_lease):
            return NONE             # another worker opened or cached it meanwhile
        return level

    # --- CLOSE, WRITE, SET_INFO ----------------------------------------------------------

    def release(self, open_) -> None:
        """An open closed: it leaves its lease or drops its oplock, and whoever
        waited on the file may retry ([MS-FSA] 2.1.4.12 case CLOSE).  Its
        directory's leases hear of a deletion or an earlier write (``dirleases``)."""
        if self.dir_leases or open_ in self.written or elsewhere.shared(self):
            dirleases.on_close(self, open_, self._deletes(open_))
        grant = self.grants.get(open_)
        if grant is not None:
            self._drop_grant(grant)
        lease = open_.lease
        if isinstance(lease, Lease) and open_ in lease.opens:
            lease.opens.remove(open_)
            if not lease.opens:
                self._drop_lease(lease)
        self.wake(open_.file_key)

    def hand_over(self, open_) -> None:
        """Another worker adopts this disconnected open (``durable_handover``,
        an oplock open: a lease's opens cannot part): its oplock ends here
        and is restored there.  A write it made breaks its directory's
        leases now, as its close would have."""
        if open_ in self.written:
            dirleases.on_close(self, open_, False)
        grant = self.grants.get(open_)
        if grant is not None:
            self._drop_grant(grant)
        self.wake(open_.file_key)

    def _deletes(self, open_) -> bool:
        """Whether closing ``open_`` removes its file: delete pending and the last open."""
        if self.server is None:
            return False
        opens = self.server.opens
        state = opens.file_state(open_.file_key)
        return bool(state is not None and all(other is open_ for other in state.opens)
                    and (open_.delete_on_close or opens.delete_pending(open_.file_key)))

    def _drop_lease(self, lease: Lease) -> None:
        self._stop_timer(lease)
        dirleases.dropped(self, lease)
        table = self.lease_tables.get(lease.client_guid)
        if table is not None and table.get(lease.lease_key) is lease:
            del table[lease.lease_key]
            if not table:
                del self.lease_tables[lease.client_guid]
        caching = self.files.get(lease.file_key)
        if caching is not None and lease in caching.holders:
            caching.holders.remove(lease)
            self._tidy(lease.file_key)
        if elsewhere.shared(self):
            elsewhere.sync_caching(self, lease.file_key)

    def break_read_caching(self, open_) -> None:
        """A write, truncation or allocation change through ``open_`` breaks
        every other read cache to none without waiting ([MS-FSA] 2.1.4.12
        cases WRITE and SET_INFORMATION; level II breaks need no ack)."""
        caching = self.files.get(open_.file_key)
        own = open_.lease if isinstance(open_.lease, Lease) else self.grants.get(open_)
        if own is not None and own.state.held & W:
            return
        if elsewhere.shared(self) and self.server.opens.open_state.foreign_caching(
                open_.file_key):
            self.break_elsewhere(open_.file_key, None)
        if caching is None:
            return
        for holder in list(caching.holders):
            if holder.is_lease and holder is own:
                continue
            if holder.state.held & R:
                self.apply(holder, Event(Kind.BREAK, NONE))

    def before_handle_change(self, ctx, open_, retry: Callable):
        """A rename or a delete disposition through ``open_`` first takes
        handle caching from every other lease of the file and waits for the
        acknowledgments ([MS-FSA] 2.1.4.12 case SET_INFORMATION,
        FileRenameInformation / FileDispositionInformation: HANDLE_CACHING;
        smb2.lease.rename_wait).  Returns None or a ``Pending`` that retries.
        """
        caching = self.files.get(open_.file_key)
        if caching is None:
            return None
        wait = False
        for holder in list(caching.holders):
            if not holder.is_lease or holder is open_.lease:
                continue
            if holder.state.held & oplocks.H and not holder.state.breaking:
                self.apply(holder, Event(Kind.BREAK, holder.state.held & ~oplocks.H))
            if holder.state.breaking and holder.state.held & oplocks.H:
                wait = True
        if not wait:
            return None
        return Pending(self._wait_then_retry(ctx, open_.file_key, retry), interim_after_s=0.0)

    def acknowledge_lease(self, client_guid: bytes, lease_key: bytes, level: int) -> int:
        """3.3.5.22.2; returns the acknowledged state or raises."""
        lease = self.lease(client_guid, lease_key)
        if lease is None:
            raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "no such lease")
        transition = self.apply(lease, Event(Kind.ACK, level), defer=True)
        if Action.NOT_BREAKING in transition.actions:
            raise SmbError(NtStatus.UNSUCCESSFUL, "lease is not breaking")
        if Action.BAD_LEVEL in transition.actions:
            raise SmbError(NtStatus.REQUEST_NOT_ACCEPTED, "not a state the break allows")
        return level

    def acknowledge_oplock(self, open_, oplock_level: int) -> int:
        """3.3.5.22.1; returns the new oplock level or raises."""
        grant = self.grants.get(open_)
        if grant is None or not grant.state.breaking:
            raise SmbError(NtStatus.INVALID_OPLOCK_PROTOCOL, "no oplock break in progress")
        if oplock_level not in (OplockLevel.LEVEL_II, OplockLevel.NONE):
            raise SmbError(NtStatus.INVALID_PARAMETER, "acknowledge with level II or none")
        # A break to none is acknowledged to none whatever the client says.
        level = oplocks.lease_of_oplock(oplock_level) & grant.state.breaking_to
        self.apply(grant, Event(Kind.ACK, level), defer=True)
        return oplocks.oplock_of_lease(level)


def _lease_request(ctx, request):
    """The lease a CREATE asks for, if the dialect and the request allow it
    (3.3.5.9.8: RqLs only with OplockLevel LEASE on 2.1+; 3.3.5.9.11: v2 on 3.x)."""
    if request.requested_oplock_level != OplockLevel.LEASE:
        return None
    lease_request = request.create_contexts.lease
    dialect = ctx.connection.dialect
    if lease_request is None or dialect < Dialect.SMB_2_1:
        return None
    if lease_request.version == 2 and dialect < Dialect.SMB_3_0:
        return None
    return lease_request


def _describe(holder) -> str:
    if holder.is_lease:
        return f"lease {holder.lease_key.hex()} ({holder.state})"
    return f"oplock on {holder.open.path!r} ({holder.state})"


# --- hooks for the commands (one call each) ----------------------------------------------

def before_open(ctx, request, resolved, access: int, retry: Callable,
                key: tuple | None = None):
    """CREATE, before opening: None to go on, or a Pending (see Leasing.before_open)."""
    return ctx.server.leasing.before_open(ctx, request, resolved, access, retry, key)


def grant(ctx, open_, request, created: bool) -> tuple[int, list]:
    return ctx.server.leasing.grant(ctx, open_, request, created)


def release(server, open_) -> None:
    server.leasing.release(open_)


def break_read_caching(server, open_) -> None:
    """Cheap when nobody caches the file: one dictionary lookup (and a set's
    length for directory leases); with workers, a read of the file's record."""
    dirleases.noted_write(server.leasing, open_)
    if open_.file_key in server.leasing.files or server.opens.open_state.shared:
        server.leasing.break_read_caching(open_)


def acknowledge_lease(ctx, lease_key: bytes, level: int) -> int:
    return ctx.server.leasing.acknowledge_lease(ctx.connection.client_guid, lease_key, level)


def acknowledge_oplock(ctx, open_, oplock_level: int) -> int:
    return ctx.server.leasing.acknowledge_oplock(open_, oplock_level)


def before_set_info(ctx, open_, info, retry: Callable):
    """SET_INFO: a rename or a delete disposition may have to wait for handle
    caching to be given up; None, or a Pending that retries the request.
    A rename first settles its target and the target's directory
    (``renames``); a change to what a listing shows breaks directory leases."""
    leasing = ctx.server.leasing
    if isinstance(info, FileRenameInfo):
        pending = renames.before_rename(ctx, open_, info, retry)
        if pending is not None:
            return pending
    dirleases.before_set_info(leasing, open_, info)
    if not (isinstance(info, FileRenameInfo) or (
            isinstance(info, FileDispositionInfo) and info.delete_pending) or (
            isinstance(info, FileDispositionInfoEx) and info.delete)):
        return None
    pending = elsewhere.take_handle(leasing, ctx, open_.file_key, retry)
    if pending is not None or open_.file_key not in leasing.files:
        return pending
    return leasing.before_handle_change(ctx, open_, retry)
