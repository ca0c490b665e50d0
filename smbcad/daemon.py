"""The smbcad process: builds the server from a Config, runs the listeners,
and handles SIGTERM (ordered drain) and SIGHUP (reload: what can change
live applies, what needs a restart is logged, ``config.for_reload``).

It opens the control socket (``server.control_socket``; quick mode: one in
its state directory) that the ``smbca`` command uses (status, sessions,
opens, shares, locks and the admin's closes, ``smbcad.admin_control``) and,
on a cluster node (a ``cluster`` section), clusdisk too (adopt, release).
A cluster node takes the pair's ServerGuid and its node id (the top byte of
every DurableFileId it hands out), and starts with the aggregates' shares
offline until clusdisk says adopt."""

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time

from prometheus_client import generate_latest
from smbca.auth import Authenticator
from smbca.config import (build_user_database, reload_config, systemd_environment,
                          worker_predecessor)
from smbca.control import ControlServer
from smbca.metrics import serve_metrics
from smbca.stall import StopOverrun
from smbca.systemd import feed_watchdog, sd_notify
from smbcad import config as config_mod
from smbcad.admin_control import AdminControl
from smbcad.cluster.control import ControlHandler
from smbcad.cluster.member import ClusterMember
from smbcad.cluster.partition import SINGLE, Partition
from smbcad.loop_lag import LoopLagProbe
from smbcad.domain_metrics import MachineAccountCollector
from smbcad.metrics import SmbMetrics
from smbcad.server.connection import Connection
from smbcad.proto.status import NtStatus
from smbcad.server import (app_instance, dirleases, durable_handover, leases_elsewhere,
                           renamed_opens)
from smbcad.server.commands import session_setup
from smbcad.server.server import SmbServer
from smbcad.store import LocalHandleStore, LogEngine, StoreError
from smbcad.transport import SmbListener
from smbcad.openstate.db import OpenStateDb
from smbcad.openstate.table import OpenStateError
from smbcad.transport import DIRECT_FRAME
from smbcad.vfs import ShareFs
from smbcad.workers import partitions
from smbcad.workers.gate import RoutingGate, WorkerSeat
from smbcad.workers.handoff import HandoffError, HandoffListener
from smbcad.workers.mailbox import Mailbox, MailboxError
from smbcad.workers.messages import (HEADER, MAX_MESSAGE, AppInstanceClose, BreakForOpen,
                                     BreakRequest, DeletePending, ListingChanged, LocksChanged,
                                     LogoffSession, LogoffSessionReply, OpensBelow, PeerStatus,
                                     ReleaseDurable, ReleaseDurableReply, Renamed)
from smbcad.workers.peers import Peers
from smbcad.workers.supervisor import control_path, inherited_listeners, openstate_path

log = logging.getLogger("smbcad")

# Headroom above MaxWrite for the header, a compound's other members and the
# transform header.
FRAME_OVERHEAD = 1024 * 1024
# With workers: how often waiting LOCKs look again at the other workers' locks.
LOCK_RECHECK_S = 1.0


def build_authenticator(cfg: config_mod.Config) -> Authenticator:
    server = cfg.server
    users = build_user_database(cfg.users, cfg.smbpasswd_files, "smbpasswd_file")
    try:
        return Authenticator(users, server_name=server.server_name,
                             domain_name=server.domain, allow_guest=server.guest_ok,
                             allow_anonymous=server.anonymous_ok, keytab=server.keytab)
    except ImportError as exc:
        raise config_mod.ConfigError("server.keytab", f"Kerberos needs python-gssapi: {exc}"
                                     ) from None
    except ValueError as exc:
        raise config_mod.ConfigError("server.keytab", str(exc)) from None


def load_server_guid(state_dir: str) -> bytes:
    """ServerGuid, created once and kept in the state directory (issue 2 item 5).

    Worker processes start together and must all answer with the one GUID:
    each writes a candidate under a name of its own and links it into place,
    which only the first can do; the others read the winner's."""
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise config_mod.ConfigError("server.state_dir", f"cannot create {state_dir}: {exc.strerror}") from None
    path = os.path.join(state_dir, "server_guid")
    guid = _read_server_guid(path)
    if guid is not None:
        return guid
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(config_mod.new_server_guid())
        handle.flush()
        os.fsync(handle.fileno())
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            # Another process won, or an earlier file is damaged: a damaged one
            # is replaced (no client can have seen it).
            if _read_server_guid(path) is None:
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    guid = _read_server_guid(path)
    if guid is None:
        raise config_mod.ConfigError("server.state_dir", f"{path} is not a 16-byte GUID")
    return guid


def _read_server_guid(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            guid = handle.read()
    except FileNotFoundError:
        return None
    return guid if len(guid) == 16 else None


def _break_message(key: tuple, opener: leases_elsewhere.ForeignOpen | None):
    """What the other workers hear when this one's clients need their
    caching of ``key`` broken: for an open, or (None) to none."""
    if opener is None:
        return BreakRequest(key, 0, 0, False)   # open id 0: every holder of the file
    flags = ((BreakForOpen.OVERWRITE if opener.overwrite else 0)
             | (BreakForOpen.SHARING_VIOLATION if opener.sharing_violation else 0)
             | (BreakForOpen.DELETE_ON_CLOSE if opener.delete_on_close else 0)
             | (BreakForOpen.TAKE_HANDLE if opener.take_handle else 0))
    return BreakForOpen(key, opener.access, flags)


def _foreign_open(message: BreakForOpen) -> leases_elsewhere.ForeignOpen:
    return leases_elsewhere.ForeignOpen(
        message.access, overwrite=bool(message.flags & BreakForOpen.OVERWRITE),
        sharing_violation=bool(message.flags & BreakForOpen.SHARING_VIOLATION),
        delete_on_close=bool(message.flags & BreakForOpen.DELETE_ON_CLOSE),
        take_handle=bool(message.flags & BreakForOpen.TAKE_HANDLE))


class Daemon:
    def __init__(self, cfg: config_mod.Config, reload_config,
                 seat: WorkerSeat | None = None) -> None:
        """``seat``: this process is worker ``seat.index`` of a supervisor
        (``smbcad.workers.supervisor``), which bound the listening sockets
        and made the open-state records all workers share."""
        self.cfg = cfg
        self.reload_config = reload_config
        self.seat = seat
        self.metrics = SmbMetrics()
        open_state = None
        if seat is not None:
            try:
                open_state = OpenStateDb(openstate_path(cfg.server.state_dir),
                                         create_empty=False)
            except OpenStateError as exc:
                raise config_mod.ConfigError("server.state_dir", str(exc)) from None
        cluster = cfg.cluster
        # Both nodes of a pair answer with one ServerGuid, as Samba's CTDB nodes do.
        server_guid = (cluster.derived_server_guid if cluster is not None
                       else load_server_guid(cfg.server.state_dir))
        self.server = SmbServer(cfg, server_guid=server_guid,
                                authenticator=build_authenticator(cfg), metrics=self.metrics,
                                open_share_fs=ShareFs,
                                node_id=cluster.node_id if cluster is not None else 0,
                                open_state=open_state)
        self.member = None
        self.control = None
        if cluster is not None:
            os.makedirs(cfg.server.state_dir, mode=0o700, exist_ok=True)
            partition = (SINGLE if seat is None
                         else Partition(seat.index, seat.count, seat.seed))
            self.member = ClusterMember(self.server, cluster, cfg.server.state_dir, partition)
            self.metrics.watch_cluster(self.member.status)
            self.member.commit_observer = self.metrics.commit_observer
        control_socket = (cfg.server.control_socket if seat is None
                          else control_path(seat.directory, seat.index))
        if control_socket is not None:
            handler = AdminControl(self.server, ControlHandler(self.server, self.member),
                                   cfg.server.listen,
                                   metrics_text=None if seat is None else self._metrics_text)
            self.control = ControlServer(control_socket, handler.handle)
        self.metrics.watch_handles(self.server.opens, self._stores)
        self.metrics.registry.register(MachineAccountCollector(lambda: self.cfg.server.keytab))
        self.listener = SmbListener(self.server, self._new_connection,
                                    cfg.server.max_io_bytes + FRAME_OVERHEAD)
        self.handoffs = None
        self.mailbox = None
        if seat is not None:
            self.listener.gate = RoutingGate(seat, largest_first_frame=DIRECT_FRAME)
        self._stop = asyncio.Event()
        # Reported past the drain, before systemd's TimeoutStopSec (45 s).
        self.stop_overrun = StopOverrun("smbcad", cfg.server.drain_timeout_s + 10)

    def _metrics_text(self) -> str:
        """For the supervisor's metrics endpoint (``workers.worker_metrics``)."""
        return generate_latest(self.metrics.registry).decode()

    def _new_connection(self, sink, peer: str, local_address: str = "",
                        local_port: int = 0) -> Connection:
        conn = Connection(self.server, sink, peer, local_address, local_port)
        self.server.connections.add(conn)
        return conn

    def _stores(self) -> dict:
        """Every open handle store by name: "local" and one per adopted aggregate."""
        stores = {} if self.server.handle_store is None else {"local": self.server.handle_store}
        if self.member is not None:
            stores.update(self.member.stores())
        return stores

    def reload(self) -> bool:
        """SIGHUP: re-read the config; a config that does not load changes
        nothing.  What needs a restart keeps its running value and is logged."""
        cfg = reload_config(self.cfg, self.reload_config, config_mod.for_reload, log)
        if cfg is None:
            return False
        try:
            authenticator = build_authenticator(cfg)
        except config_mod.ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return False
        self.server.reload(cfg, authenticator)
        self.cfg = cfg
        logging.getLogger().setLevel(cfg.server.log_level.upper())
        log.info("configuration reloaded%s", f" from {cfg.source_path}" if cfg.source_path
                 else " (quick mode: the same flags)")
        return True

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        # First: a port in use is a config error (exit 2), before anything is opened.
        metrics_at = self.cfg.server.metrics_listen
        if metrics_at is not None and self.seat is None:     # a worker's: its supervisor's
            try:
                serve_metrics(metrics_at, self.metrics.registry, "server.metrics_listen")
            except config_mod.ConfigError as exc:
                log.error("%s", exc)
                return 2
        store = await self._open_handle_store()
        if store is None:
            return 1
        try:
            bound = await self._listen(loop)
        except OSError as exc:
            log.error("server.listen: cannot listen: %s", exc.strerror)
            return 1
        except HandoffError as exc:
            log.error("server.state_dir: %s", exc)
            return 1
        if self.member is not None:
            try:
                await self.member.start()
            except OSError as exc:
                log.error("cluster.mirror_listen: cannot start the handle mirror: %s",
                          exc.strerror or exc)
                return 1
        if self.control is not None:
            try:
                await self.control.start()
            except OSError as exc:
                log.error("server.control_socket: cannot listen on %s: %s", self.control.path,
                          exc.strerror or exc)
                return 1
            log.info("control socket %s", self.control.path)
        # What start-up made lives as long as the process: out of the cyclic
        # collector's full passes, which otherwise walk it again and again
        # while they hold the loop (issue 17: gen-2 pauses under churn).
        gc.freeze()
        lag_probe = LoopLagProbe(self.metrics)
        lag_probe.start()
        for host, port in bound:
            if self.seat is None:
                log.info("listening on %s:%s", host, port)
            else:               # the supervisor says "listening on" once all workers are
                log.info("worker %d accepting on %s:%s", self.seat.index, host, port)
        systemd = systemd_environment()
        notify_socket = systemd.notify_socket
        sd_notify(notify_socket, "READY=1")
        watchdog = loop.create_task(feed_watchdog(notify_socket, systemd.watchdog_usec))
        lock_recheck = (loop.create_task(self._recheck_lock_waiters())
                        if self.seat is not None else None)
        await self._stop.wait()
        if lock_recheck is not None:
            lock_recheck.cancel()
        self.stop_overrun.arm()
        sd_notify(notify_socket, "STOPPING=1")
        lag_probe.stop()
        log.info("shutting down: draining connections")
        if self.control is not None:
            await self.control.close()
        if self.handoffs is not None:
            self.handoffs.close()
            self.listener.gate.close()
            self.mailbox.close()
        await self.listener.shutdown(self.cfg.server.drain_timeout_s)
        # Persistent opens were just disconnected, not closed: their records
        # stay, and the next start brings them back for the clients' DH2C.
        await self.server.settle()
        if self.member is not None:
            await self.member.shutdown()
        await store.shutdown()
        watchdog.cancel()          # pinged through the drain, which may take a while
        return 0

    async def _listen(self, loop) -> list:
        """One process: bind ``server.listen``.  A worker: accept on the
        supervisor's sockets, and serve what other workers pass here."""
        if self.seat is None:
            return await self.listener.start(self.cfg.server.listen)
        bound = await self.listener.start_on(inherited_listeners())
        self.handoffs = HandoffListener(self.seat.directory, self.seat.index)
        self.handoffs.attach(loop, lambda sock, already_read: self.server.spawn(
            self.listener.adopt(sock, already_read)))
        try:
            self.mailbox = Mailbox(self.seat.directory, self.seat.index,
                                   os.getpid() & 0xFFFFFFFF)
        except MailboxError as exc:
            raise HandoffError(str(exc)) from None
        self.mailbox.attach(loop, self._message)
        peers = self.server.peers = Peers(self.mailbox, self.seat.index, self.seat.count)
        self.server.opens.locks_released = lambda key: peers.tell(LocksChanged(key))
        self.server.directory_delete_pending_elsewhere = lambda key: peers.tell(
            DeletePending(key))
        self.server.leasing.break_elsewhere = lambda key, opener: peers.tell(
            _break_message(key, opener))
        self.server.leasing.break_listing_elsewhere = (
            lambda share, directory, parent_key: peers.tell(
                ListingChanged(share, directory, parent_key or bytes(16))))
        return bound

    async def _recheck_lock_waiters(self) -> None:
        """LocksChanged is the prompt way; this is the sure one."""
        while True:
            await asyncio.sleep(LOCK_RECHECK_S)
            self.server.opens.retry_every_lock_waiter()

    def _message(self, header, message) -> None:
        if isinstance(message, LocksChanged):
            # Another worker released locks: waiting LOCKs on the file try again.
            self.server.opens.retry_lock_waiters(message.file_key)
        elif isinstance(message, BreakForOpen):
            # Another worker's client opens the file: what conflicts breaks.
            leases_elsewhere.break_for_open(self.server.leasing, message.file_key,
                                            _foreign_open(message))
        elif isinstance(message, ListingChanged):
            # A directory changed through another worker: its leases here break.
            share = self.server.find_share(message.share)
            if share is not None:
                dirleases.break_listing(self.server.leasing, share, message.directory,
                                        message.parent_lease_key if any(
                                            message.parent_lease_key) else None)
        elif isinstance(message, OpensBelow):
            # A directory rename through another worker: anything open below it here?
            found = renamed_opens.on_opens_below(self.server, message.share, message.directory)
            self.server.peers.answer(header.sender, PeerStatus(
                message.request_id, NtStatus.ACCESS_DENIED if found else NtStatus.SUCCESS))
        elif isinstance(message, Renamed):
            # A rename through another worker: opens of it here follow.
            self.server.spawn(self._answer_renamed(header.sender, message))
        elif isinstance(message, AppInstanceClose):
            # A VM's new host opens its disk through another worker: the old
            # host's stale opens here close (3.3.5.9.13).
            self.server.peers.answer(header.sender, PeerStatus(
                message.request_id, app_instance.on_close_request(self.server, message)))
        elif isinstance(message, ReleaseDurable):
            # A reconnect through another worker asks for a durable open held here.
            encoded = None
            if time.monotonic_ns() < message.deadline_ns:      # else nobody waits for it
                encoded = durable_handover.on_release_request(
                    self.server, message.open_id, MAX_MESSAGE - HEADER.size - 24)
            self.server.peers.answer(header.sender, ReleaseDurableReply(
                message.request_id, message.open_id,
                NtStatus.OBJECT_NAME_NOT_FOUND if encoded is None else NtStatus.SUCCESS,
                encoded or b""))
        elif isinstance(message, LogoffSession):
            # PreviousSessionId on another worker names a session held here.
            ended = session_setup.end_previous_for_peer(self.server, message.session_id,
                                                        message.user)
            self.server.peers.answer(header.sender, LogoffSessionReply(
                message.request_id,
                NtStatus.SUCCESS if ended else NtStatus.USER_SESSION_DELETED))
        elif isinstance(message, (PeerStatus, ReleaseDurableReply, LogoffSessionReply)):
            self.server.peers.replied(message)
        elif isinstance(message, DeletePending):
            # A directory left delete-pending by a close through another
            # worker: CHANGE_NOTIFYs on it here complete.
            if self.server.notify_registry is not None:
                self.server.notify_registry.directory_delete_pending(message.file_key)
        elif isinstance(message, BreakRequest):
            # Another worker's client changed the file: read caching of it ends.
            leases_elsewhere.break_for(self.server.leasing, message.file_key)

    async def _answer_renamed(self, sender: int, message) -> None:
        await renamed_opens.on_renamed(self.server, message.file_key, message.share,
                                       message.old_path, message.new_path)
        self.server.peers.answer(sender, PeerStatus(message.request_id, NtStatus.SUCCESS))

    async def _open_handle_store(self):
        """The durable handle store in the state directory (issue 4), then
        the persistent opens it holds from before a restart or crash: this
        worker's partition of it when there are several."""
        server = self.cfg.server
        refusal = partitions.stranded_error(server.state_dir, server.workers)
        if refusal is not None:
            log.error("%s", refusal)
            return None
        path = partitions.partition_path(server.state_dir,
                                         0 if self.seat is None else self.seat.index,
                                         server.workers)
        try:
            store = await LocalHandleStore.open(LogEngine(path),
                                                self.metrics.commit_observer("local"))
        except (StoreError, OSError) as exc:
            log.error("server.state_dir: cannot open the handle store %s: %s", path, exc)
            return None
        self.server.handle_store = store
        await self.server.start_local_shares(store)
        predecessor = worker_predecessor() if self.seat is not None else None
        if predecessor is not None:
            # Its persistent opens are this worker's now (adopted as they were
            # restored); whatever else it left in the records goes.
            swept = self.server.opens.open_state.forget_owner(predecessor)
            log.info("worker %d took over from pid %d (%d records swept)", self.seat.index,
                     predecessor, swept)
        return store
