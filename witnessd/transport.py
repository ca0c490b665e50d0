"""witnessd's sockets: RPC over TCP (ncacn_ip_tcp) and the metrics endpoint.
The control socket and sd_notify are the shared ``smbca.control`` and
``smbca.systemd``.

The only module of witnessd that opens sockets (shared/STYLE.md layering).
Thin by design (rule 12): bytes go into the sans-IO ``RpcConnection`` and
whatever it queues is written back.  Reading stops while the kernel send
buffer is above its high-water mark; an idle timer per connection closes
connections that have neither traffic nor pending calls.
Shutdown is ordered: stop accepting, send each connection a shutdown PDU,
let queued output drain (bounded), then close.
"""

import asyncio
import logging
import socket
from collections.abc import Callable


from smbca.rpc.dcerpc import ProtocolError, RpcConnection, Shutdown

log = logging.getLogger("witnessd.transport")

SEND_HIGH_WATER = 256 * 1024
SEND_LOW_WATER = 64 * 1024

MakeConnection = Callable[[str, int, str, int, Callable[[], None]], RpcConnection]
"""(local host, local port, peer host, peer port, on_output) -> a new RpcConnection."""


class RpcProtocol(asyncio.Protocol):
    """One TCP connection carrying DCE/RPC PDUs (the core does the framing)."""

    def __init__(self, listener: "RpcListener") -> None:
        self._listener = listener
        self.transport: asyncio.Transport | None = None
        self.connection: RpcConnection | None = None
        self.peer = "?"
        self._idle_handle: asyncio.TimerHandle | None = None
        self._last_activity = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if len(self._listener.protocols) >= self._listener.max_connections:
            log.warning("connection limit reached, refusing a connection")
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(SEND_HIGH_WATER, SEND_LOW_WATER)
        local = transport.get_extra_info("sockname") or ("", 0)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self.connection = self._listener.make_connection(local[0], local[1], peer[0], peer[1],
                                                         self.flush)
        self._listener.opened(self)
        self._touch()

    def data_received(self, data: bytes) -> None:
        if self.connection is None:
            return
        self._touch()
        try:
            self.connection.receive_data(data)
        except ProtocolError as exc:
            log.info("%s: DCE/RPC protocol error: %s", self.peer, exc)
            self._listener.protocol_error()
            self.flush()
            self.close()
            return
        self.flush()

    def flush(self) -> None:
        """Write whatever the core queued (also called for deferred answers)."""
        if self.connection is None or self.transport is None or self.transport.is_closing():
            return
        data = self.connection.data_to_send()
        if data:
            self.transport.write(data)
            self._touch()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        if self.connection is not None:
            self.connection.close()
        self._listener.closed(self)

    def _touch(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_activity = loop.time()
        timeout = self._listener.idle_timeout_s
        if timeout and self._idle_handle is None:
            self._idle_handle = loop.call_later(timeout, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_handle = None
        loop = asyncio.get_running_loop()
        timeout = self._listener.idle_timeout_s
        busy = self.connection is not None and self.connection.pending_calls > 0
        if busy or loop.time() - self._last_activity < timeout:
            self._idle_handle = loop.call_later(timeout, self._idle_check)
            return
        log.info("%s: idle for %d s, closing", self.peer, timeout)
        self.close()

    def send_shutdown(self) -> None:
        """Ask the client to close ([MS-RPCE] 3.3.3.4.2 shutdown PDU)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(Shutdown(call_id=0).encode())

    def drained(self) -> bool:
        return self.transport is None or self.transport.get_write_buffer_size() == 0

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class RpcListener:
    """The listening sockets of one endpoint plus its live connections."""

    def __init__(self, make_connection: MakeConnection, *, max_connections: int,
                 idle_timeout_s: float, on_count: Callable[[int], None] | None = None,
                 on_protocol_error: Callable[[], None] | None = None) -> None:
        self.make_connection = make_connection
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.protocols: set[RpcProtocol] = set()
        self._servers: list[asyncio.Server] = []
        self._on_count = on_count
        self._on_protocol_error = on_protocol_error

    def opened(self, protocol: RpcProtocol) -> None:
        self.protocols.add(protocol)
        if self._on_count is not None:
            self._on_count(len(self.protocols))

    def closed(self, protocol: RpcProtocol) -> None:
        self.protocols.discard(protocol)
        if self._on_count is not None:
            self._on_count(len(self.protocols))

    def protocol_error(self) -> None:
        if self._on_protocol_error is not None:
            self._on_protocol_error()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: RpcProtocol(self), host=host, port=port,
                                          reuse_address=True, backlog=128)
        self._servers.append(server)
        name = server.sockets[0].getsockname()
        return name[0], name[1]

    def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()

    async def shutdown(self, drain_timeout_s: float) -> None:
        self.stop_accepting()
        for protocol in list(self.protocols):
            protocol.send_shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout_s
        while loop.time() < deadline and not all(p.drained() for p in self.protocols):
            await asyncio.sleep(0.05)
        for protocol in list(self.protocols):
            protocol.close()
        for server in self._servers:
            await server.wait_closed()
