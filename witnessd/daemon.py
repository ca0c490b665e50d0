"""The witnessd process: builds the service from a Config, runs the endpoints.

Endpoints: the witness interface (plus mgmt) on ``server.listen``, the
endpoint mapper (plus mgmt) on ``server.epm_listen`` (one listener serves
both when they are the same address), the control socket and the metrics
port.  A periodic tick runs the MS-SWN timers.  SIGTERM / SIGINT drain and
stop; SIGHUP (``systemctl reload witnessd``) re-reads the config file
(``Daemon.reload``); systemd is told READY=1, RELOADING=1 and STOPPING=1
(Type=notify).
"""

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from smbca.auth import Authenticator
from smbca.config import ConfigError, build_user_database, systemd_environment
from smbca.control import ControlServer
from smbca.events import Availability
from smbca.metrics import serve_metrics
from smbca.rpc.dcerpc import AssociationGroups, AuthType, RpcConnection, interface_table
from smbca.rpc.ntlm_security import NtlmSecurity
from smbca.stall import StopOverrun
from smbca.systemd import feed_watchdog, sd_notify
from witnessd import config as config_mod
from witnessd.control import SWN_STATES, control_handler
from witnessd.epm import ConnectionInfo, epm_interface, mgmt_interface
from witnessd.metrics import WitnessMetrics
from witnessd.swn import (
    WITNESS_SYNTAX,
    Interface,
    WitnessService,
    WitnessSettings,
    witness_interface,
)
from witnessd.transport import RpcListener

STOP_REPORT_S = 15.0      # systemd's TimeoutStopSec is 20 s
log = logging.getLogger("witnessd")

def build_settings(cfg: config_mod.Config) -> WitnessSettings:
    witness = cfg.witness
    return WitnessSettings(
        server_global_names=(witness.net_name, *witness.aliases), nodes=witness.nodes,
        local_node=witness.local_node, shares=witness.shares,
        unused_registration_timeout_s=witness.unused_registration_timeout_s,
        forced_unregister_after_s=witness.forced_unregister_after_s,
        unknown_handle_unregister_error=witness.unregister_unknown_handle_error,
        resource_name_style=witness.resource_name, max_registrations=witness.max_registrations)


def build_interfaces(cfg: config_mod.Config) -> list[Interface]:
    settings = build_settings(cfg)
    return [Interface(i.node, SWN_STATES[Availability(i.state)], i.ipv4, i.ipv6,
                      local=settings.is_local(i.node))
            for i in cfg.interfaces]


def build_service(cfg: config_mod.Config, clock: Callable[[], float],
                  observer: WitnessMetrics | None = None) -> WitnessService:
    return WitnessService(build_settings(cfg), build_interfaces(cfg), clock=clock,
                          observer=observer)


def _kerberos(keytab: str | None):
    """Kerberos binds from ``auth.keytab`` (python-gssapi is needed only then)."""
    if keytab is None:
        return None
    try:
        from smbca.auth.kerberos import KerberosMechanism
        return KerberosMechanism(keytab)
    except ImportError as exc:
        raise config_mod.ConfigError("auth.keytab", f"Kerberos needs python-gssapi: {exc}"
                                     ) from None
    except ValueError as exc:
        raise config_mod.ConfigError("auth.keytab", str(exc)) from None


class Daemon:
    def __init__(self, cfg: config_mod.Config, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.cfg = cfg
        self.metrics = WitnessMetrics()
        self.service = build_service(cfg, clock, self.metrics)
        self.security = self._security(cfg)
        self.assoc_groups = AssociationGroups()
        self.endpoints: dict = {}  # filled once the witness port is bound
        self._tables = self._interface_tables(cfg)
        self.listeners: list[RpcListener] = []
        self._control_servers: list[ControlServer] = []
        self._stop = asyncio.Event()
        self.stop_overrun = StopOverrun("witnessd", STOP_REPORT_S)

    def _security(self, cfg: config_mod.Config) -> NtlmSecurity:
        auth = cfg.auth
        users = build_user_database(auth.users, auth.smbpasswd_files, "auth.smbpasswd_files")
        authenticator = Authenticator(users, server_name=auth.server_name,
                                      domain_name=auth.domain)
        return NtlmSecurity(authenticator, on_failure=self.metrics.auth_failed,
                            kerberos=_kerberos(auth.keytab))

    def _interface_tables(self, cfg: config_mod.Config) -> dict:
        """The interfaces each kind of listener serves, by role."""
        principal = cfg.principal
        mgmt = mgmt_interface({AuthType.GSS_NEGOTIATE: principal, AuthType.WINNT: principal,
                               **({AuthType.GSS_KERBEROS: principal} if cfg.auth.keytab
                                  else {})})
        witness, epm = witness_interface(self.service), epm_interface(self.endpoints)
        return {"witness": interface_table(witness, mgmt), "epm": interface_table(epm, mgmt),
                "combined": interface_table(witness, epm, mgmt)}

    def _listener(self, role: str) -> RpcListener:
        # Tables, security and frame size are looked up per connection, so a
        # reload reaches the next connection; open ones keep what they bound with.
        def make(local_host: str, local_port: int, peer_host: str, peer_port: int,
                 on_output: Callable[[], None]) -> RpcConnection:
            return RpcConnection(self._tables[role], self.assoc_groups,
                                 max_recv_frag=self.cfg.server.max_frag_bytes,
                                 secondary_address=str(local_port),
                                 transport=ConnectionInfo(local_host, local_port, peer_host,
                                                          peer_port),
                                 security=self.security, on_output=on_output)
        server = self.cfg.server
        listener = RpcListener(make, max_connections=server.max_connections,
                               idle_timeout_s=server.idle_timeout_s,
                               on_count=self._count_connections,
                               on_protocol_error=self.metrics.protocol_errors.inc)
        self.listeners.append(listener)
        return listener

    def reload(self) -> bool:
        """SIGHUP: re-read the config file and apply it; False if it was refused.

        A file that does not load is logged with the key it names and
        changes nothing.  Otherwise interfaces, users, names, shares, timers
        and the log level take effect at once (new connections authenticate
        against the new users); the sockets (``config_mod.RESTART_ONLY``)
        keep their running values until a restart.  Registrations stay.
        """
        path = self.cfg.source_path
        if path is None:
            log.warning("reload: started without --config, nothing to re-read")
            return False
        try:
            loaded = config_mod.load_yaml(path)
            security = self._security(loaded)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return False
        cfg, needs_restart = config_mod.for_reload(self.cfg, loaded)
        for key in needs_restart:
            log.warning("reload: %s changed; it takes effect at the next restart", key)
        self.cfg = cfg
        self.service.reconfigure(build_settings(cfg), build_interfaces(cfg))
        self.security = security
        self._tables = self._interface_tables(cfg)
        for listener in self.listeners:
            listener.max_connections = cfg.server.max_connections
            listener.idle_timeout_s = cfg.server.idle_timeout_s
        logging.getLogger().setLevel(cfg.server.log_level.upper())
        log.info("configuration reloaded from %s", path)
        return True

    def _reload_signalled(self) -> None:
        notify_path = systemd_environment().notify_socket
        sd_notify(notify_path, f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        self.reload()
        sd_notify(notify_path, "READY=1")

    def _count_connections(self, _: int) -> None:
        self.metrics.connections.set(sum(len(l.protocols) for l in self.listeners))

    async def start(self) -> list[tuple[str, str, int]]:
        """Bind everything; return (role, host, port) for each listening socket."""
        server = self.cfg.server
        bound = []
        # The same fixed address for both: one listener serves witness and epm.
        shared = [a for a in server.listen if a in set(server.epm_listen) and a.port != 0]
        for address in server.listen:
            role = "combined" if address in shared else "witness"
            host, port = await self._listener(role).start(address.host, address.port)
            bound.append(("witness", host, port))
            if not self.endpoints:
                self.endpoints[WITNESS_SYNTAX.if_uuid, WITNESS_SYNTAX.major] = (WITNESS_SYNTAX,
                                                                                port)
        for address in server.epm_listen:
            if address in shared:
                continue
            host, port = await self._listener("epm").start(address.host, address.port)
            bound.append(("epm", host, port))
        if server.control_socket:
            control = ControlServer(server.control_socket,
                                    control_handler(self.service, on_event=self.metrics.event))
            await control.start()
            self._control_servers.append(control)
            bound.append(("control", server.control_socket, 0))
        if server.metrics_listen is not None:
            serve_metrics(server.metrics_listen, self.metrics.registry, "server.metrics_listen")
            bound.append(("metrics", server.metrics_listen.host, server.metrics_listen.port))
        return bound

    async def serve(self) -> None:
        """Run the MS-SWN timers until ``request_stop``."""
        interval = self.cfg.server.tick_interval_ms / 1000
        while not self._stop.is_set():
            try:
                async with asyncio.timeout(interval):
                    await self._stop.wait()
            except TimeoutError:
                self.service.tick()

    def request_stop(self) -> None:
        """The injectable shutdown trigger (SIGTERM / SIGINT call it)."""
        self._stop.set()

    async def shutdown(self) -> None:
        """Stop accepting everywhere first, then drain each endpoint (bounded)."""
        for listener in self.listeners:
            listener.stop_accepting()
        for listener in self.listeners:
            await listener.shutdown(self.cfg.server.drain_timeout_s)
        for control in self._control_servers:
            await control.close()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_signalled)
        try:
            bound = await self.start()
        except OSError as exc:
            log.error("cannot listen: %s", exc.strerror or exc)
            return 1
        except ConfigError as exc:
            log.error("%s", exc)
            return 2
        for role, host, port in bound:
            log.info("%s listening on %s", role, host if role == "control" else f"{host}:{port}")
        systemd = systemd_environment()
        notify_path = systemd.notify_socket
        sd_notify(notify_path, "READY=1")
        watchdog = loop.create_task(feed_watchdog(notify_path, systemd.watchdog_usec))
        await self.serve()
        self.stop_overrun.arm()
        sd_notify(notify_path, "STOPPING=1")
        log.info("shutting down")
        await self.shutdown()
        watchdog.cancel()          # pinged through the drain
        return 0
