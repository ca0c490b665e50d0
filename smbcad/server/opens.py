"""The open table: the one owner of every Open on this node.

[MS-SMB2] 3.3.1.5 GlobalOpenTable (by DurableFileId), the CreateGuid index
of 3.3.5.9.10, and the per-file share-mode table of [MS-FSA] 2.1.1.4/2.1.1.5,
with the verbs that change them: register, close, disconnect, attach,
expire, adopt (opens rebuilt from handle-store records, after a restart or a
takeover) and release (a share leaves this node with its persistent opens'
records intact); and the create intents ``adopt`` brings back
(``RestoredIntent``, smbcad.server.intents) until their CREATE is replayed.
Every other module reads these tables; only this one writes them.

An open's life is a small table (``LIFECYCLE``): connected, disconnected
(kept for a reconnect, 3.3.7.1), closed; ``release`` hands a disconnected
persistent open to the partner node: gone from here, its record kept.
"""

import enum
import itertools
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from smbcad.openstate.record import is_stat_access
from smbcad.openstate.table import CachingElsewhere, OpenStateConflict, OpenStateFull
from smbcad.proto.constants import CreateAction
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import channel_sequence, durable, locks, open_records

log = logging.getLogger("smbcad.opens")
# Create actions whose open truncated the file: never a stat open.
_TRUNCATING = (CreateAction.SUPERSEDED, CreateAction.OVERWRITTEN)


class OpenState(enum.Enum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"
    RELEASED = "released"


class OpenInput(enum.Enum):
    DISCONNECT = "disconnect"
    ATTACH = "attach"
    EXPIRE = "expire"
    CLOSE = "close"
    RELEASE = "release"


_S, _I = OpenState, OpenInput
LIFECYCLE: dict[tuple[OpenState, OpenInput], OpenState] = {
    (_S.CONNECTED, _I.DISCONNECT): _S.DISCONNECTED,
    (_S.CONNECTED, _I.CLOSE): _S.CLOSED,
    (_S.DISCONNECTED, _I.ATTACH): _S.CONNECTED,
    (_S.DISCONNECTED, _I.EXPIRE): _S.CLOSED,
    (_S.DISCONNECTED, _I.CLOSE): _S.CLOSED,        # a purge, an AppInstanceId takeover
    (_S.DISCONNECTED, _I.RELEASE): _S.RELEASED,    # the partner or another worker adopts it
}


class InvalidTransition(RuntimeError):
    """An open was asked to do what its state does not allow: a bug, said loudly."""


def state_of(open_) -> OpenState:
    if open_.closed:
        return OpenState.RELEASED if open_.released else OpenState.CLOSED
    return OpenState.DISCONNECTED if open_.session is None else OpenState.CONNECTED


def _step(open_, event: OpenInput) -> OpenState:
    current = state_of(open_)
    try:
        return LIFECYCLE[(current, event)]
    except KeyError:
        raise InvalidTransition(
            f"open {open_.persistent_id:#x}: {event.value} while {current.value}") from None


class CachedElsewhere(SmbError):
    """``register``: another worker process caches the file; the CREATE has
    that broken and runs again (``Leasing.wait_for_elsewhere``).  A caller
    that does not handle it answers STATUS_SHARING_VIOLATION."""

    def __init__(self, text: str, *, sharing_violation: bool = False) -> None:
        super().__init__(NtStatus.SHARING_VIOLATION, text)
        self.sharing_violation = sharing_violation   # the share modes refused it too


@dataclass(eq=False)
class FileState:
    """This process's opens of one file ([MS-FSA] 2.1.1.4 File / 2.1.1.5 Stream).

    What other processes must see of them (access, share access,
    delete-pending) is the file's record in the open-state database
    (``smbcad.openstate``): ``OpenTable`` keeps both in step."""

    key: tuple
    opens: list = field(default_factory=list)
    locks: Any = None      # locks.ByteRangeLockList while the file has locks or waiters
    sync: Any = None       # write_sync.FileSync once a write-through WRITE came


@dataclass(frozen=True)
class AdoptResult:
    """What ``OpenTable.adopt`` did with the records it was given."""

    restored: int = 0
    kept: int = 0          # for a share not online here: left in the store untouched
    dropped: int = 0       # removed from the store: timed out, file gone or replaced
    intents: int = 0       # create intents brought back for a replay (RestoredIntent)


@dataclass(eq=False)
class RestoredIntent:
    """The create intent of a persistent CREATE that may have run on the
    node before (a crash or takeover came before its open's record): kept
    until its client replays the CREATE or its durable timeout passes
    (smbcad.server.intents decides what the replay is answered)."""

    record: Any            # smbcad.store.PersistentOpen carrying create_intent
    share: Any
    timer: Any = None


# DurableFileIds carry the node id in their top byte, so the two nodes of a
# pair never hand out the same one and an adopted open keeps its id.
NODE_ID_SHIFT = 56
_COUNTER_MASK = (1 << NODE_ID_SHIFT) - 1


class OpenTable:
    """3.3.1.5 GlobalOpenTable plus the share-mode table; see the module docstring."""

    def __init__(self, *, metrics, clock: Callable[[], float], leasing,
                 spawn: Callable[[Awaitable], Any], loop: Callable[[], Any],
                 open_state, node_id: int = 0) -> None:
        """``open_state``: the node's open-state database
        (``smbcad.openstate``: an ``OpenStateTable``), where share modes and
        delete-pending live for every process to see."""
        self.metrics = metrics
        self.open_state = open_state
        self.clock = clock
        self.leasing = leasing
        self._spawn = spawn
        self._loop = loop
        self.by_persistent_id: dict[int, Any] = {}
        self.by_file: dict[tuple, FileState] = {}
        # The share-mode entry of a file key, or None: READ and WRITE ask on
        # every request, so it is the dict's own bound get, no Python frame.
        self.file_state = self.by_file.get
        self.by_create_guid: dict[bytes, Any] = {}
        # (CreateGuid, ClientGuid) of DH2Q CREATEs waiting for a break → their requests
        self.creates_in_progress: dict[tuple, set] = {}
        # CreateGuid → RestoredIntent, and their DurableFileIds (never handed out again)
        self.intents: dict[bytes, RestoredIntent] = {}
        self._intent_ids: set[int] = set()
        if not 0 <= node_id < 256:
            raise ValueError("node id must fit in 8 bits")
        # A random start keeps ids from repeating across restarts of this node.
        start = secrets.randbits(NODE_ID_SHIFT - 1) | 1
        self._node_prefix = node_id << NODE_ID_SHIFT
        self._counter = itertools.count(start)
        self._volatile_ids = itertools.count(1)
        # DurableFileIds held elsewhere (the partner's replica): never reused here.
        self.foreign_ids: Callable[[int], bool] = lambda _id: False
        # Told of every open that closes here (change notify's cleanup hook).
        self.on_closed: Callable[[Any, bool], None] = lambda _open, _delete_pending: None
        # Worker processes: tell the others that this process released locks
        # on a file (their waiting LOCKs try again); set by the daemon.
        self.locks_released: Callable[[tuple], None] = lambda _key: None

    def tracked(self) -> dict[str, int]:
        """Sizes of the open tables (SmbServer.tracked)."""
        durable = sum(1 for open_ in self.by_persistent_id.values()
                      if open_.durable or open_.persistent or open_.resilient)
        return {"opens": len(self.by_persistent_id), "opens_not_durable":
                len(self.by_persistent_id) - durable, "open_files": len(self.by_file),
                "create_guids": len(self.by_create_guid),
                "creates_in_progress": len(self.creates_in_progress),
                "intents": len(self.intents)}

    # --- ids ---------------------------------------------------------------------

    def next_file_ids(self) -> tuple[int, int]:
        while True:
            persistent_id = self._node_prefix | (next(self._counter) & _COUNTER_MASK)
            if (persistent_id and persistent_id not in self.by_persistent_id
                    and persistent_id not in self._intent_ids
                    and not self.foreign_ids(persistent_id)):
                return persistent_id, next(self._volatile_ids)

    def next_volatile_id(self) -> int:
        return next(self._volatile_ids)

    # --- reads ---------------------------------------------------------------------

    def lookup(self, persistent_id: int):
        return self.by_persistent_id.get(persistent_id)

    def by_guid(self, create_guid: bytes):
        return self.by_create_guid.get(create_guid)

    def delete_pending(self, key: tuple) -> bool:
        """Whether the file of ``key`` is delete-pending ([MS-FSA] 2.1.5.15.3)."""
        return self.open_state.delete_pending(key)

    def set_delete_pending(self, key: tuple, pending: bool) -> None:
        self.open_state.set_delete_pending(key, pending)

    def shared_locks(self, key: tuple) -> "locks.SharedLocks | None":
        """``key``'s byte-range locks as the node's other processes see them,
        or None while this process is the node's only one."""
        if not self.open_state.shared:
            return None
        return locks.SharedLocks(self.open_state, key, self.locks_released)

    def retry_lock_waiters(self, key: tuple) -> None:
        """Another process released locks on ``key``: this one's waiting LOCKs
        on it try again."""
        state = self.by_file.get(key)
        if state is not None and state.locks is not None:
            state.locks.grant_waiters()
            locks.discard_if_empty(state)

    def retry_every_lock_waiter(self) -> None:
        """Every waiting LOCK of this process tries again.  With worker
        processes this runs every second, so a waiter held back by another
        process's lock is granted even when no LocksChanged arrives (a
        datagram dropped on a full socket, or the holder's worker killed: its
        supervisor sweeps its locks and tells nobody)."""
        for key in [key for key, state in self.by_file.items()
                    if state.locks is not None and state.locks.waiters]:
            self.retry_lock_waiters(key)

    def held_disconnected(self, key: tuple) -> bool:
        """Whether a disconnected persistent open, in any process, holds ``key``."""
        return self.open_state.held_disconnected(key)

    def is_open(self, key: tuple) -> bool:
        """Whether any process of the node has an open of ``key``."""
        return self.open_state.is_open(key)

    def opens_on(self, share) -> list:
        return [open_ for open_ in self.by_persistent_id.values()
                if open_.tree.share is share]

    # --- register, CreateGuid -----------------------------------------------------

    def register(self, open_, *, restored: bool = False) -> None:
        """A new open joins the table (and its session, when it has one);
        STATUS_INSUFFICIENT_RESOURCES, with nothing changed, when the
        open-state database has no room for it.  ``restored``: a persistent
        open back from the handle store, whose entry in the records a
        predecessor process may have left (``OpenStateTable.adopt_open``)."""
        if not open_.is_pipe:
            try:
                if restored:
                    self.open_state.adopt_open(
                        open_.file_key, open_.persistent_id, open_.granted_access,
                        open_.share_access, disconnected=open_.persistent and open_.session is None)
                else:
                    # With other processes the CREATE's own check is not enough:
                    # one of them may have added a conflicting open since.
                    shared = self.open_state.shared
                    self.open_state.add_open(
                        open_.file_key, open_.persistent_id, open_.granted_access,
                        open_.share_access, checked=shared,
                        stat_open=shared and open_.create_action not in _TRUNCATING
                        and is_stat_access(open_.granted_access))
            except OpenStateFull as exc:
                raise SmbError(NtStatus.INSUFFICIENT_RESOURCES, str(exc)) from None
            except OpenStateConflict as exc:
                raise SmbError(exc.status, "another process's open conflicts") from None
            except CachingElsewhere as exc:
                raise CachedElsewhere(str(exc), sharing_violation=exc.sharing_violation) from None
        state = self.by_file.get(open_.file_key)
        if state is None:
            state = self.by_file[open_.file_key] = FileState(open_.file_key)
        state.opens.append(open_)
        self.by_persistent_id[open_.persistent_id] = open_
        if open_.session is not None:
            open_.session.opens[open_.volatile_id] = open_
            open_.tree.open_count += 1
        self.metrics.opens.inc()

    def rebuild(self, open_, record) -> None:
        """An Open rebuilt from its record (``open_records.from_record``: a
        restart, a takeover, another worker's hand-over) joins the table
        with its CreateGuid, lease or oplock and byte-range locks.  Its
        share-mode entry and the locks another process published for it
        become this process's in place (``register``, ``adopt_locks``)."""
        self.register(open_, restored=True)
        if record.create_guid != open_records.ZERO_GUID:
            self.track_create_guid(open_)
        self.leasing.restore(open_, record)
        if record.locks and self.open_state.shared:
            self.open_state.adopt_locks(open_.file_key, open_.persistent_id)
        locks.restore(self.by_file[open_.file_key], open_, record.locks,
                      self.shared_locks(open_.file_key))

    def track_create_guid(self, open_) -> None:
        self.by_create_guid[open_.create_guid] = open_

    def forget_create_guid(self, open_) -> None:
        if open_.create_guid and self.by_create_guid.get(open_.create_guid) is open_:
            del self.by_create_guid[open_.create_guid]

    def rekey(self, old_key: tuple, new_key: tuple) -> FileState | None:
        """A stream renamed: its share-mode entry follows it."""
        state = self.by_file.pop(old_key, None)
        if state is not None:
            state.key = new_key
            self.by_file[new_key] = state
        self.open_state.rekey(old_key, new_key)
        return state

    def move_open(self, open_, new_key: tuple) -> None:
        """``open_`` now refers to another file key (a stream renamed onto the
        default stream)."""
        state = self.by_file.get(open_.file_key)
        if state is not None and open_ in state.opens:
            state.opens.remove(open_)
            if not state.opens:
                del self.by_file[open_.file_key]
        self.open_state.move_open(open_.file_key, new_key, open_.persistent_id)
        open_.file_key = new_key
        target = self.by_file.get(new_key)
        if target is None:
            target = self.by_file[new_key] = FileState(new_key)
        target.opens.append(open_)

    # --- close (3.3.4.17, [MS-FSA] 2.1.5.4) -----------------------------------------

    def close(self, open_, *, _event: OpenInput = OpenInput.CLOSE):
        """Close an Open: last close of a delete-pending file deletes it.

        A persistent open's store record goes too; the commit is returned (CLOSE
        awaits it before answering) and runs in the background either way."""
        if open_.closed:
            return None
        _step(open_, _event)
        return self._take_out(open_, forget_record=True)

    def _take_out(self, open_, *, forget_record: bool):
        open_.closed = True
        if open_.session is not None:
            open_.session.opens.pop(open_.volatile_id, None)
            open_.tree.open_count -= 1
        self.by_persistent_id.pop(open_.persistent_id, None)
        self.metrics.opens.dec()
        if open_.is_pipe:
            open_.handle.close()
            return None
        self.stop_scavenger(open_)
        self.forget_create_guid(open_)
        commit = None
        if forget_record:
            forget = durable.forget(open_)
            commit = self._spawn(forget) if forget is not None else None
        self.leasing.release(open_)          # its lease or oplock ([MS-FSA] 2.1.4.12 CLOSE)
        state = self.by_file.get(open_.file_key)
        # Out of the shared record in one transaction: the last open of the
        # node out deletes a delete-pending file, whichever process holds it.
        left, delete_pending = self.open_state.remove_open(
            open_.file_key, open_.persistent_id,
            mark_delete_pending=open_.delete_on_close and forget_record)
        if forget_record:                   # pending CHANGE_NOTIFYs ([MS-FSA] 2.1.5.5 phase 5)
            self.on_closed(open_, delete_pending)
        try:
            if state is None:
                return commit
            if open_ in state.opens:
                state.opens.remove(open_)
            locks.release_open(state, open_)
            if state.opens:
                return commit
            del self.by_file[open_.file_key]
            if delete_pending and not left and forget_record:
                try:
                    open_.tree.share.fs.delete(open_.handle)
                except SmbError as exc:
                    # Windows loses the delete silently too when, say, a directory
                    # gained entries; log it for the admin.
                    log.info("delete-on-close of %s failed: %s", open_.handle.path, exc)
        finally:
            open_.handle.close()
        return commit

    def hand_over(self, open_) -> None:
        """Another worker adopts this disconnected open (``durable_handover``):
        it leaves this process with no close.  Its share-mode entry and
        byte-range locks stay in the shared records for the adopter to take
        over; its oplock and descriptor end here."""
        _step(open_, OpenInput.RELEASE)
        open_.released = open_.closed = True
        self.by_persistent_id.pop(open_.persistent_id, None)
        self.metrics.opens.dec()
        self.stop_scavenger(open_)
        self.forget_create_guid(open_)
        self.leasing.hand_over(open_)
        state = self.by_file.get(open_.file_key)
        if state is not None:
            if open_ in state.opens:
                state.opens.remove(open_)
            locks.hand_over(state, open_)
            if not state.opens:
                del self.by_file[open_.file_key]
        open_.handle.close()

    # --- connection lost (3.3.7.1) and the scavenger (3.3.6.2, 3.3.6.4) -----------

    def disconnect(self, open_) -> Awaitable | None:
        """Keep ``open_`` without its session: share modes, locks and lease stay;
        a timer closes it unless a reconnect comes first.  Returns the store
        commit for a persistent open."""
        _step(open_, OpenInput.DISCONNECT)
        open_.session.opens.pop(open_.volatile_id, None)
        open_.tree.open_count -= 1
        open_.session = None
        if open_.persistent:
            self.open_state.set_disconnected(open_.file_key, open_.persistent_id, True)
        channel_sequence.reset(open_)        # its requests in flight died with the connection
        open_.disconnected_at_ms = int(self.clock() * 1000)
        self.start_scavenger(open_, open_.timeout_ms / 1000)
        log.info("kept %s open %#x on %r for %d ms after its connection went",
                 "persistent" if open_.persistent else "resilient" if open_.resilient
                 else "durable", open_.persistent_id, open_.path, open_.timeout_ms,
                 extra={"open_id": f"{open_.persistent_id:#x}", "share": open_.tree.share.name,
                        "state": "disconnected"})
        return durable.persist(self, open_)

    def attach(self, open_, session, tree) -> None:
        """3.3.5.9.7 step 7 / 3.3.5.9.12 step 5: the open joins this session and
        tree under a new volatile FileId."""
        _step(open_, OpenInput.ATTACH)
        self.stop_scavenger(open_)
        open_.session = session
        open_.tree = tree
        tree.open_count += 1
        open_.volatile_id = self.next_volatile_id()
        session.opens[open_.volatile_id] = open_
        open_.disconnected_at_ms = None
        if open_.persistent:
            self.open_state.set_disconnected(open_.file_key, open_.persistent_id, False)

    def start_scavenger(self, open_, delay_s: float) -> None:
        self.stop_scavenger(open_)
        open_.scavenger = self._loop().call_later(max(delay_s, 0.0), lambda: self.expire(open_))

    @staticmethod
    def stop_scavenger(open_) -> None:
        if open_.scavenger is not None:
            open_.scavenger.cancel()
            open_.scavenger = None

    def expire(self, open_) -> None:
        """The timeout ran out without a reconnect: close the open for good."""
        open_.scavenger = None
        if open_.closed or open_.session is not None:
            return
        log.info("durable open %#x on %r timed out", open_.persistent_id, open_.path)
        self.close(open_, _event=OpenInput.EXPIRE)

    def purge(self, open_) -> None:
        """Close a disconnected open now (a break it cannot answer, an
        AppInstanceId takeover); its store record goes in the background."""
        self.close(open_)

    def end_session(self, session, *, keep_durable: bool) -> None:
        """A session ends (3.3.4.16 LOGOFF, 3.3.7.1 connection lost): its opens
        close, except, when ``keep_durable``, the ones that survive a disconnect."""
        for open_ in list(session.opens.values()):
            if keep_durable and open_.survives_disconnect and not open_.closed:
                commit = self.disconnect(open_)
                if commit is not None:
                    self._spawn(commit)
            else:
                self.close(open_)
        session.opens.clear()

    # --- adopt and release (restart, takeover, giveback) ----------------------------

    async def adopt(self, records, shares: dict, *, restart_timers: bool) -> AdoptResult:
        """Rebuild persistent opens from handle-store records as disconnected
        opens (their lease, oplock, locks and sequences with them).

        ``shares`` maps lower-cased share names to the online shares whose
        records this adoption takes; a record of any other share is *kept*
        in the store, untouched: its aggregate may be mounted later or be the
        partner's.  ``restart_timers``: a takeover starts every reconnect
        timer now (the old owner's disconnect times are from another clock,
        and its death was no disconnect); a restart continues them."""
        now_ms = int(self.clock() * 1000)
        restored = kept = dropped = 0
        ghost_trees: dict[str, Any] = {}
        to_commit: dict[int, list] = {}      # id(store) → opens whose record changes now
        intents = 0
        for record in records:
            share = shares.get(record.share_name.lower())
            if share is None:
                kept += 1
                continue
            if record.create_intent is not None:
                self._restore_intent(record, share)
                intents += 1
                continue
            why_not = _unusable(record, now_ms, restart_timers)
            open_ = None
            if not why_not:
                try:
                    open_ = open_records.from_record(
                        record, share, ghost_trees, self.next_volatile_id())
                except (SmbError, OSError) as exc:
                    why_not = f"cannot reopen the file: {exc}"
            if open_ is None:
                log.warning("persistent open %#x on %s/%s not restored: %s",
                            record.durable_file_id, record.share_name, record.path, why_not)
                await share.store.close(record.durable_file_id)
                dropped += 1
                continue
            self.rebuild(open_, record)
            was_connected = record.disconnected_at_ms is None
            if restart_timers or was_connected:
                open_.disconnected_at_ms = now_ms
            left_ms = open_.disconnected_at_ms + record.timeout_ms - now_ms
            self.start_scavenger(open_, left_ms / 1000)
            if was_connected or restart_timers:      # its disconnect, the new timer's start
                to_commit.setdefault(id(share.store), []).append(open_)
            restored += 1
        for opens in to_commit.values():             # one atomic commit per store
            commit = durable.persist_many(self, opens)
            if commit is not None:
                await commit
        if restored or dropped or intents:
            log.info("handle store: %d persistent opens restored, %d dropped, %d kept for "
                     "shares not online here, %d create intents", restored, dropped, kept,
                     intents)
        return AdoptResult(restored, kept, dropped, intents)

    def release(self, share) -> list[Awaitable]:
        """``share`` leaves this node: its connected opens must already be
        disconnected (their sessions ended).  Persistent opens and create
        intents go with their records kept for the next owner; the others close.  Returns the
        store commits still running (the caller awaits them, then the store's
        commit barrier)."""
        commits = []
        for intent in [i for i in self.intents.values() if i.share is share]:
            self.take_intent(intent)         # its record stays for the next owner
        for open_ in self.opens_on(share):
            if open_.session is not None:
                raise InvalidTransition(f"open {open_.persistent_id:#x} still connected")
            if open_.persistent:
                _step(open_, OpenInput.RELEASE)
                open_.released = True
                self._take_out(open_, forget_record=False)
            else:
                commit = self.close(open_)
                if commit is not None:
                    commits.append(commit)
        return commits


    # --- create intents (smbcad.server.intents) ------------------------------------

    def _restore_intent(self, record, share) -> None:
        """An intent whose CREATE never answered: its client may replay it for
        as long as the open would have waited (its durable timeout), counted
        from now like a connected open's, since the client was waiting."""
        intent = RestoredIntent(record, share)
        self.intents[record.create_guid] = intent
        self._intent_ids.add(record.durable_file_id)
        intent.timer = self._loop().call_later(record.durable_timeout_ms / 1000,
                                               lambda: self._expire_intent(intent))

    def intent(self, create_guid: bytes) -> RestoredIntent | None:
        return self.intents.get(create_guid)

    def intent_on(self, share, path: str) -> RestoredIntent | None:
        """The restored intent reserving ``path`` on ``share``, if any."""
        path = path.lower()
        for intent in self.intents.values():
            if intent.share is share and intent.record.path.lower() == path:
                return intent
        return None

    def take_intent(self, intent: RestoredIntent) -> None:
        """Its replay made the open, whose record replaces the intent's."""
        if self.intents.get(intent.record.create_guid) is intent:
            del self.intents[intent.record.create_guid]
        self._intent_ids.discard(intent.record.durable_file_id)
        if intent.timer is not None:
            intent.timer.cancel()
            intent.timer = None

    def _expire_intent(self, intent: RestoredIntent) -> None:
        intent.timer = None
        if self.intents.get(intent.record.create_guid) is not intent:
            return
        log.info("create intent %#x on %r timed out without a replay",
                 intent.record.durable_file_id, intent.record.path)
        self.take_intent(intent)
        self._spawn(intent.share.store.close(intent.record.durable_file_id))


def _unusable(record, now_ms: int, restart_timers: bool) -> str:
    if not record.is_persistent:
        return "not a persistent open"
    if restart_timers:
        return ""
    disconnected_at = record.disconnected_at_ms or now_ms
    if disconnected_at + record.timeout_ms <= now_ms:
        return "its timeout passed while the server was down"
    return ""
