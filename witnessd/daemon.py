"""The witnessd process: builds the service from a Config, runs the endpoints.

Endpoints: the witness interface (plus mgmt) on ``server.listen``, the
endpoint mapper (plus mgmt) on ``server.epm_listen`` (one listener serves
both when they are the same address), the control socket and the metrics
port.  A periodic tick runs the MS-SWN timers.  SIGTERM / SIGINT drain and
stop; systemd is told READY=1 and STOPPING=1 (Type=notify).
"""

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable

from smbca.auth import Authenticator
from smbca.config import build_user_database, systemd_environment
from smbca.control import ControlServer
from smbca.events import Availability
from smbca.rpc.dcerpc import AssociationGroups, AuthType, RpcConnection, interface_table
from smbca.rpc.ntlm_security import NtlmSecurity
from smbca.systemd import sd_notify
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
from witnessd.transport import RpcListener, start_metrics_server

log = logging.getLogger("witnessd")

def build_service(cfg: config_mod.Config, clock: Callable[[], float],
                  observer: WitnessMetrics | None = None) -> WitnessService:
    witness = cfg.witness
    settings = WitnessSettings(
        server_global_names=(witness.net_name, *witness.aliases), shares=witness.shares,
        unused_registration_timeout_s=witness.unused_registration_timeout_s,
        forced_unregister_after_s=witness.forced_unregister_after_s,
        unknown_handle_unregister_error=witness.unregister_unknown_handle_error,
        resource_name_style=witness.resource_name, max_registrations=witness.max_registrations)
    interfaces = [Interface(i.node, SWN_STATES[Availability(i.state)], i.ipv4, i.ipv6,
                            local=witness.local_node is not None
                            and i.node.casefold() == witness.local_node.casefold())
                  for i in cfg.interfaces]
    return WitnessService(settings, interfaces, clock=clock, observer=observer)


class Daemon:
    def __init__(self, cfg: config_mod.Config, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.cfg = cfg
        self.metrics = WitnessMetrics()
        self.service = build_service(cfg, clock, self.metrics)
        auth = cfg.auth
        users = build_user_database(auth.users, auth.smbpasswd_files, "auth.smbpasswd_files")
        authenticator = Authenticator(users, server_name=auth.server_name,
                                      domain_name=auth.domain)
        self.security = NtlmSecurity(authenticator, on_failure=self.metrics.auth_failed)
        self.assoc_groups = AssociationGroups()
        self.endpoints: dict = {}  # filled once the witness port is bound
        principal = cfg.principal
        mgmt = mgmt_interface({AuthType.GSS_NEGOTIATE: principal, AuthType.WINNT: principal})
        self._witness_table = interface_table(witness_interface(self.service), mgmt)
        self._epm_table = interface_table(epm_interface(self.endpoints), mgmt)
        self._combined_table = interface_table(witness_interface(self.service),
                                               epm_interface(self.endpoints), mgmt)
        self.listeners: list[RpcListener] = []
        self._control_servers: list[ControlServer] = []
        self._stop = asyncio.Event()

    def _listener(self, table) -> RpcListener:
        server = self.cfg.server

        def make(local_host: str, local_port: int, peer_host: str, peer_port: int,
                 on_output: Callable[[], None]) -> RpcConnection:
            return RpcConnection(table, self.assoc_groups, max_recv_frag=server.max_frag_bytes,
                                 secondary_address=str(local_port),
                                 transport=ConnectionInfo(local_host, local_port, peer_host,
                                                          peer_port),
                                 security=self.security, on_output=on_output)
        listener = RpcListener(make, max_connections=server.max_connections,
                               idle_timeout_s=server.idle_timeout_s,
                               on_count=self._count_connections,
                               on_protocol_error=self.metrics.protocol_errors.inc)
        self.listeners.append(listener)
        return listener

    def _count_connections(self, _: int) -> None:
        self.metrics.connections.set(sum(len(l.protocols) for l in self.listeners))

    async def start(self) -> list[tuple[str, str, int]]:
        """Bind everything; return (role, host, port) for each listening socket."""
        server = self.cfg.server
        bound = []
        # The same fixed address for both: one listener serves witness and epm.
        shared = [a for a in server.listen if a in set(server.epm_listen) and a.port != 0]
        for address in server.listen:
            table = self._combined_table if address in shared else self._witness_table
            host, port = await self._listener(table).start(address.host, address.port)
            bound.append(("witness", host, port))
            if not self.endpoints:
                self.endpoints[WITNESS_SYNTAX.if_uuid, WITNESS_SYNTAX.major] = (WITNESS_SYNTAX,
                                                                                port)
        for address in server.epm_listen:
            if address in shared:
                continue
            host, port = await self._listener(self._epm_table).start(address.host, address.port)
            bound.append(("epm", host, port))
        if server.control_socket:
            control = ControlServer(server.control_socket,
                                    control_handler(self.service, on_event=self.metrics.event))
            await control.start()
            self._control_servers.append(control)
            bound.append(("control", server.control_socket, 0))
        if server.metrics_listen is not None:
            start_metrics_server(server.metrics_listen.host, server.metrics_listen.port,
                                 self.metrics.registry)
            bound.append(("metrics", server.metrics_listen.host, server.metrics_listen.port))
        return bound

    async def serve(self) -> None:
        """Run the MS-SWN timers until ``request_stop``."""
        interval = self.cfg.server.tick_interval_ms / 1000
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), interval)
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
        try:
            bound = await self.start()
        except OSError as exc:
            print(f"witnessd: cannot listen: {exc.strerror or exc}", file=sys.stderr)
            return 1
        for role, host, port in bound:
            where = host if role == "control" else f"{host}:{port}"
            print(f"witnessd: {role} listening on {where}", file=sys.stderr, flush=True)
        notify_path = systemd_environment().notify_socket
        sd_notify(notify_path, "READY=1")
        await self.serve()
        sd_notify(notify_path, "STOPPING=1")
        log.info("shutting down")
        await self.shutdown()
        return 0
