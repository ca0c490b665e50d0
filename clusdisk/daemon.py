"""The clusdisk process: finds the cluster disks, keeps them offline until
owned, and runs the arbitration executor, the heartbeat transport, the data
LUN renewals, the control socket, metrics and the systemd notifications.

Exit status: 0 after a clean shutdown (SIGTERM: tear down, release, tell the
partner), 1 when the arbitration stopped the cluster services (lost
challenge, lost reservation: systemd's Restart=on-failure brings it back as
a joining node), 2 when the configuration or the disks are unusable.
"""

import asyncio
import logging
import os
import signal
import time

from clusdisk import disks, resources
from clusdisk.aggregates import AggregateManager, HostOps
from clusdisk.arbitration import Arbiter, Input, Mode, State
from clusdisk import config as config_mod
from clusdisk.config import Config
from clusdisk.control import Notifier, PairNotifier
from clusdisk.cutoff import CutOffMonitor
from clusdisk.errors import ClusdiskError
from clusdisk.executor import ArbitrationExecutor, LoopClock, QuorumCall, Step
from clusdisk.heartbeat import (
    HeartbeatConfig,
    HeartbeatProtocol,
    LinkDown,
    LinkUp,
    PartnerLost,
    PartnerRestarted,
    PartnerSeen,
    PartnerShutdown,
    PartnerUp,
    Rejected,
)
from clusdisk.heartbeat_transport import HeartbeatTransport
from clusdisk.metrics import ClusdiskMetrics
from clusdisk.operations import Operations
from clusdisk.peer import PeerChannel
from clusdisk.placement import PlacementError
from clusdisk.placement_file import PlacementFile, write_atomically
from clusdisk.quorum_placement import QuorumPlacement
from clusdisk.reservations import PrReservation, Scsi2Reservation
from clusdisk.scsi import cdb
from clusdisk.scsi.cdb import PrType
from clusdisk.scsi.errors import ScsiError
from clusdisk.scsi.sgio import SgDevice
from clusdisk.smb_relay import PEER_OP as SMB_PEER_OP, SmbRelay
from smbca.config import ConfigError, SystemdEnv, reload_config
from smbca.control import ControlError, ControlServer, request
from smbca.metrics import serve_metrics
from smbca.stall import StopOverrun
from smbca.systemd import feed_watchdog, sd_notify
from smbca.version import version

log = logging.getLogger("clusdisk")
QUORUM = "quorum"
STATUS_REFRESH_S = 1.0
STOP_REPORT_S = 20.0      # systemd's TimeoutStopSec (and the tests') is 30 s


def read_vpd83_blocking(sg: str) -> bytes:
    """VPD page 0x83 with one SG_IO INQUIRY (for kernels without vpd_pg83)."""
    device = SgDevice(sg)
    try:
        result = device.execute_blocking(cdb.inquiry(0x83))
    finally:
        device.close()
    if not result.outcome.ok:
        raise ScsiError(f"{sg}: INQUIRY VPD 0x83: {result.outcome.describe()}")
    return result.data


def next_incarnation(state_dir: str, now_us: int) -> int:
    """A heartbeat incarnation larger than every earlier one of this node:
    max(previous + 1, wall-clock microseconds), persisted in ``state_dir``
    (the partner rejects an incarnation older than the newest it saw, so a
    clock that steps back across a reboot must not matter)."""
    path = os.path.join(state_dir, "clusdisk.incarnation")
    previous = 0
    try:
        with open(path, encoding="ascii") as handle:
            previous = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        previous = 0
    value = max(previous + 1, now_us) & ((1 << 63) - 1)
    try:
        write_atomically(path, f"{value}\n")
    except OSError as exc:
        log.warning("cannot persist the heartbeat incarnation in %s: %s", state_dir, exc)
    return value


def _mount_points(block: str) -> tuple[str, ...]:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return disks.mount_points(block, handle.read())


class Daemon:
    def __init__(self, cfg: Config, env: SystemdEnv = SystemdEnv(), *, luns=None,
                 device_factory=SgDevice, host=None, lifs=None, notifier=None,
                 mounted=None, incarnation: int | None = None, clock=None) -> None:
        self.cfg = cfg
        self.env = env
        self.metrics = ClusdiskMetrics()
        self.clock = clock or LoopClock()
        self._luns = luns
        self._device_factory = device_factory
        self._host = host
        self._lifs = lifs
        self._notifier = notifier
        self._mounted = mounted or _mount_points
        self._incarnation = incarnation
        self.exit_code = 0
        self._done = asyncio.Event()
        self._devices: list = []
        self._tasks: list = []
        self.manager: AggregateManager | None = None
        self.executor: ArbitrationExecutor | None = None
        self.heartbeat: HeartbeatProtocol | None = None
        self.transport: HeartbeatTransport | None = None
        self.peer: PeerChannel | None = None
        self.operations: Operations | None = None
        self.smb_relay: SmbRelay | None = None
        self.cutoff: CutOffMonitor | None = None
        self._partner_back_at: float | None = None     # heartbeat heard again since
        self._takeover_possible: bool | None = None     # last logged
        self.arbiter = Arbiter(cfg.arbitration.mode, cfg.arbitration.timings)
        self.stop_overrun = StopOverrun("clusdisk", STOP_REPORT_S)

    # -- wiring ------------------------------------------------------------------

    def _device(self, path: str):
        device = self._device_factory(path, timeout_ms=self.cfg.scsi.timeout_ms,
                                      retries=self.cfg.scsi.retries)
        self._devices.append(device)
        return device

    def _reservation(self, path: str, pr_type: PrType):
        device, arb = self._device(path), self.cfg.arbitration
        if arb.mode is Mode.PR:
            return PrReservation(device, self.cfg.me.pr_key, self.cfg.partner.pr_key,
                                 pr_type=pr_type, preempt_abort=arb.pr_preempt_abort)
        return Scsi2Reservation(device, self.cfg.scsi.reset)

    def discover(self) -> dict:
        """Resolve the quorum and data disks (raises DiskError)."""
        scsi = self.cfg.scsi
        luns = self._luns
        if luns is None:
            luns = disks.scan(scsi.sysfs_root, scsi.dev_root, read_vpd83=read_vpd83_blocking)
        wanted = {QUORUM: self.cfg.quorum_disk, **{a.name: a.disk for a in self.cfg.aggregates}}
        return disks.resolve(wanted, luns, scsi.scsi_hosts)

    def _take_offline(self, found: dict) -> None:
        """At start nothing is mounted and every data block device is
        read-only, whatever a previous incarnation left behind."""
        host = self.manager.host
        for aggregate in self.cfg.aggregates:
            block = found[aggregate.name].block
            if self._mounted(block):
                log.warning("%s is mounted from a previous run: unmounting", aggregate.name)
                host.unmount(aggregate, block)
            host.set_read_only(aggregate, block)

    def build(self) -> None:
        cfg = self.cfg
        found = self.discover()
        arb = cfg.arbitration
        quorum = self._reservation(found[QUORUM].sg, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
        data = {a.name: self._reservation(found[a.name].sg, arb.data_pr_type)
                for a in cfg.aggregates}
        if self._lifs is None:
            from clusdisk.lif import LifMover
            self._lifs = LifMover(on_round=self.metrics.lif_announce_round)
        hb = cfg.heartbeat
        self.peer = PeerChannel(cfg.key, cfg.node_id, cfg.partner.id,
                                tuple((link.local.host, hb.peer_port) for link in hb.links),
                                tuple((link.peer.host, hb.peer_port) for link in hb.links),
                                self._peer_request)
        self.smb_relay = SmbRelay(self.peer, cfg.control.smbcad_socket, cfg.me.name,
                                  cfg.partner.name)
        notifier = PairNotifier(
            self._notifier or Notifier(cfg.node_id, cfg.control.smbcad_socket,
                                       cfg.control.witnessd_socket, node_name=cfg.me.name),
            self.peer, self._partner_alive)
        self.manager = AggregateManager(
            cfg.aggregates, cfg.node_id, {a.name: found[a.name].block for a in cfg.aggregates},
            data, self._host or HostOps(), notifier, self._lifs, observer=self._aggregate_event)
        self.operations = Operations(
            node_id=cfg.node_id, node_names={n.id: n.name for n in cfg.nodes},
            aggregates=cfg.aggregates, manager=self.manager,
            store=PlacementFile(cfg.state_dir, cfg.aggregates, [n.id for n in cfg.nodes]),
            peer=self.peer, notifier=notifier, smbcad_status=self._smbcad_status,
            member=lambda: self.arbiter.member, partner_alive=self._partner_alive,
            base_status=self.status, shared=QuorumPlacement(self._device(found[QUORUM].sg)),
            owns_quorum=lambda: self.arbiter.owns_quorum)
        self.cutoff = CutOffMonitor(
            cfg.aggregates, lambda: self.cfg.failover, self.operations, self.metrics,
            up_here=lambda: self.manager.current, clock=self.clock.now,
            partner_member=lambda: self._partner_alive() and bool(
                (self.operations.partner_status or {}).get("member")))
        self._take_offline(found)
        self.executor = ArbitrationExecutor(self.arbiter, quorum, self.clock, self,
                                            observer=self._arbitration_event)
        incarnation = self._incarnation if self._incarnation is not None else \
            next_incarnation(cfg.state_dir, time.time_ns() // 1000)
        self.heartbeat = HeartbeatProtocol(
            HeartbeatConfig(cfg.node_id, cfg.partner.id, cfg.key, len(hb.links), hb.interval_s,
                            hb.miss_count), incarnation)
        self.transport = HeartbeatTransport(self.heartbeat, hb.links, self._heartbeat_events,
                                            lambda: self.arbiter.claims_quorum, self.clock)

    # -- ClusterHooks (called by the executor) -----------------------------------

    def view(self) -> resources.View:
        return resources.View(self.cfg.node_id, self.arbiter.member,
                              self.arbiter.state is State.ONLINE_TAKEN_OVER,
                              self.operations.owned(self.arbiter.owns_quorum))

    async def go_online(self) -> None:
        """The quorum owner first reads the placement record on the quorum
        LUN, a standby learns the placement from the owner; neither brings
        up anything before (issue 11: never what the partner owns, never on
        a stale placement)."""
        if self.arbiter.owns_quorum:
            await self.operations.claim()
        while self.arbiter.member and not self.arbiter.owns_quorum \
                and not self.operations.learned:
            try:
                await self.operations.learn()
            except (ClusdiskError, PlacementError) as exc:
                log.warning("cannot learn the placement from the partner yet: %s", exc)
                await asyncio.sleep(self.cfg.arbitration.timings.renew_s)
        await self.manager.apply(self.view)

    async def take_over_partner(self) -> None:
        await self.operations.claim()
        self.operations.take_over()
        await self.manager.apply(self.view)

    async def partner_rejoined(self) -> None:
        log.info("partner rejoined; its aggregates stay here until a giveback")

    async def go_offline(self, planned: bool = False) -> None:
        await self.operations.keeper.flush()      # a placement record still to write
        self.operations.keeper.reset()
        await self.manager.apply(resources.View(self.cfg.node_id, False, False), planned=planned)

    # -- ports of the operations ---------------------------------------------------

    def _partner_alive(self) -> bool:
        return bool(self.heartbeat and self.heartbeat.partner_alive)

    async def _smbcad_status(self) -> dict:
        path = self.cfg.control.smbcad_socket
        if path is None:
            # No smbcad on this pair: no handle store to keep in sync.
            return {"aggregates": [{"name": a.name, "mirror": {"role": "none", "in_sync": True}}
                                   for a in self.cfg.aggregates]}
        reply = await request(path, {"command": "status"}, 5.0)
        if not reply.get("ok"):
            raise ControlError(f"smbcad status: {reply.get('error')}")
        return reply.get("status") or {}

    async def _peer_request(self, op: str, args: dict) -> dict:
        if op == SMB_PEER_OP:
            return await self.smb_relay.answer_peer(args)
        return await self.operations.peer_request(op, args)

    async def stop_services(self, clean: bool, reason: str) -> None:
        (log.info if clean else log.error)("leaving the cluster: %s", reason)
        await self.go_offline()
        self.exit_code = 0 if clean else 1
        self._done.set()

    async def announce_shutdown(self) -> None:
        await self.transport.announce_shutdown()

    # -- observers ---------------------------------------------------------------

    def _arbitration_event(self, record) -> None:
        if isinstance(record, Step):
            if record.new is not record.old:
                self.metrics.state_changed(record.old, record.new)
            if record.error:
                self.metrics.arbitration_outcomes.labels("table_error").inc()
        elif isinstance(record, QuorumCall):
            self.metrics.reservation(QUORUM, record.name, record.verdict.value, record.seconds)

    def _aggregate_event(self, what: str, name: str, ok: bool) -> None:
        if what in ("bring_up", "tear_down"):
            self.metrics.disk_owned.labels(name).set(1 if name in self.manager.current else 0)
        elif what == "renew":
            self.metrics.reservation_commands.labels(name, "renew", "ok" if ok else "lost").inc()

    def _heartbeat_events(self, events) -> None:
        for event in events:
            if isinstance(event, PartnerSeen):
                self.executor.post(Input.PARTNER_OWNER if event.claims_quorum
                                   else Input.PARTNER_STANDBY)
            elif isinstance(event, PartnerLost):
                log.warning("partner lost on every heartbeat link")
                self.metrics.partner_losses.inc()
                self.metrics.partner_alive.set(0)
                self._partner_back_at = None
                self.executor.post(Input.PARTNER_LOST)
            elif isinstance(event, PartnerShutdown):
                log.info("partner announced a clean shutdown")
                self.metrics.partner_alive.set(0)
                self._partner_back_at = None
                self.executor.post(Input.PARTNER_CLEAN_SHUTDOWN)
            elif isinstance(event, (PartnerUp, PartnerRestarted)):
                log.info("partner up (%s)", event)
                self.metrics.partner_alive.set(1)
                self._partner_back_at = self.clock.now()
            elif isinstance(event, (LinkUp, LinkDown)):
                up = isinstance(event, LinkUp)
                self.metrics.heartbeat_link_up.labels(str(event.link)).set(1 if up else 0)
                (log.info if up else log.warning)(
                    "heartbeat link %d %s", event.link, "up" if up else "down",
                    extra={"node": self.cfg.partner.name, "state": "up" if up else "down"})
            elif isinstance(event, Rejected):
                log.debug("heartbeat rejected on link %d: %s %s", event.link, event.reason,
                          event.detail)
                self.metrics.heartbeats_rejected.labels(event.reason).inc()

    # -- status --------------------------------------------------------------------

    def status(self) -> dict:
        hb = self.heartbeat
        return {
            "cluster": self.cfg.cluster_name, "version": version(),
            "node": {"id": self.cfg.node_id, "name": self.cfg.me.name},
            "mode": self.cfg.arbitration.mode.value,
            "state": self.arbiter.state.value,
            "owns_quorum": self.arbiter.owns_quorum,
            "member": self.arbiter.member,
            "partner": {"id": self.cfg.partner.id, "name": self.cfg.partner.name,
                        "alive": hb.partner_alive if hb else False,
                        "incarnation": hb.partner_incarnation if hb else None,
                        "links": list(hb.links_alive()) if hb else []},
            "aggregates": [{"name": s.name, "home": s.home_node, "up": s.up, "error": s.error}
                           for s in (self.manager.status() if self.manager else ())],
            "public_links": self.cutoff.report() if self.cutoff else {"ports": {}},
        }

    # -- running -------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        """Data LUN reservations are renewed like the quorum's; a member also
        retries aggregates whose bring-up failed (apply is idempotent)."""
        period = self.cfg.arbitration.timings.renew_s
        while True:
            await asyncio.sleep(period)
            await self.manager.renew()
            if self.arbiter.member:
                await self.manager.apply(self.view)
                await self._auto_giveback()

    async def _status_loop(self) -> None:
        """What smbcad and the partner say, gathered for status requests."""
        while True:
            await self.operations.refresh()
            self._note_takeover(await self.operations.status(cached=True))
            await asyncio.sleep(STATUS_REFRESH_S)

    def _note_takeover(self, status: dict) -> None:
        """clusdisk_takeover_possible, and a log line each time it flips."""
        possible = bool(status.get("takeover_possible"))
        self.metrics.takeover_possible.set(1 if possible else 0)
        if possible is not self._takeover_possible:
            self._takeover_possible = possible
            if possible:
                log.info("takeover possible: yes")
            else:
                log.warning("takeover possible: no (%s)", status.get("takeover_veto"))

    async def _auto_giveback(self) -> None:
        back = self._partner_back_at
        answer = await self.operations.auto_giveback(
            None if back is None else self.clock.now() - back,
            self.cfg.failover.auto_giveback_s)
        if answer is not None:
            (log.info if answer["ok"] else log.warning)("automatic giveback: %s",
                                                        answer.get("error") or "done")

    def reload(self) -> bool:
        """SIGHUP: re-read the config file; ``config.LIVE`` settings apply at
        once, the others are logged as needing a restart; a file that does
        not load changes nothing."""
        path = self.cfg.source_path
        if path is None:
            log.warning("reload: started without a config file, nothing to re-read")
            return False
        cfg = reload_config(self.cfg, lambda: config_mod.load_yaml(path),
                            config_mod.for_reload, log)
        if cfg is None:
            return False
        self.cfg = cfg
        logging.getLogger().setLevel(self.cfg.log_level.upper())
        log.info("configuration reloaded from %s", path)
        return True

    def request_shutdown(self) -> None:
        log.info("shutdown requested")
        sd_notify(self.env.notify_socket, "STOPPING=1")
        self.executor.post(Input.SHUTDOWN)

    def _stop_signalled(self) -> None:
        self.stop_overrun.arm()
        self.request_shutdown()

    async def run(self) -> int:
        try:
            self.build()
        except (disks.DiskError, ScsiError, OSError) as exc:
            # 1, not 2: a LUN not visible yet (slow SAN paths at boot) is worth
            # a restart, and the unit's RestartPreventExitStatus=2 is for config errors.
            log.error("cannot start: %s", exc)
            return 1
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop_signalled)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        control = ControlServer(self.cfg.control.socket,
                                self.smb_relay.control(self.operations.control))
        try:
            try:
                await self.transport.start()
                await self.peer.start()
                await control.start()
                if self.cfg.metrics_listen is not None:
                    serve_metrics(self.cfg.metrics_listen, self.metrics.registry,
                                  "metrics.listen")
            except (OSError, ConfigError) as exc:
                log.error("cannot start: %s", exc)
                return 2
            self.executor.start()
            self._tasks.append(loop.create_task(self._renew_loop()))
            self._tasks.append(loop.create_task(self._status_loop()))
            self._tasks.append(loop.create_task(self.cutoff.run()))
            self._tasks.append(loop.create_task(feed_watchdog(
                self.env.notify_socket, self.env.watchdog_usec,
                lambda: self.arbiter.state is not State.ERROR)))
            sd_notify(self.env.notify_socket, "READY=1")
            await self._done.wait()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.transport.close()
            await self.peer.close()
            await self._lifs.close()              # announcement rounds still to come
            await control.close()
            await self.executor.stop()
            for device in self._devices:
                device.close()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            self.stop_overrun.loop_done()
        return self.exit_code
