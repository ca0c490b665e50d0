"""Direct-TCP transport for SMB2 ([MS-SMB2] 2.1): 4-byte framing, back-pressure,
ordered shutdown.  The only module of smbcad that touches sockets.

Frames are received straight into their own buffer (``BufferedProtocol``), so a
1 MiB WRITE is never copied between the kernel and the handler.  Reading pauses
while too many frames wait or the send buffer is over its high-water mark, so
a client that does not read its responses cannot make us buffer without bound.
"""

import asyncio
import collections
import logging
import socket
import struct

log = logging.getLogger("smbcad.transport")

_LENGTH = struct.Struct(">I")
MAX_QUEUED_FRAMES = 64
SEND_HIGH_WATER = 16 * 1024 * 1024
SEND_LOW_WATER = 4 * 1024 * 1024


class _FrameSink:
    """What the connection core writes to: frames out, or a close."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: "SmbProtocol") -> None:
        self._protocol = protocol

    def send(self, parts: list) -> None:
        """Write a frame given as parts; each part goes to the socket as it is
        (Python 3.11's writelines would join them into one more copy)."""
        transport = self._protocol.transport
        if transport is None or transport.is_closing():
            return
        transport.write(_LENGTH.pack(sum(len(p) for p in parts)))
        for part in parts:
            transport.write(part)

    def send_frame(self, frame) -> None:
        """Write a frame whose first 4 bytes are reserved for the length: one
        write, no copy unless the socket pushes back (then asyncio copies)."""
        transport = self._protocol.transport
        if transport is None or transport.is_closing():
            return
        _LENGTH.pack_into(frame, 0, len(frame) - 4)
        transport.write(frame)

    def close(self) -> None:
        self._protocol.abort()

    def stop_reading(self) -> None:
        self._protocol.stop_reading()


class SmbProtocol(asyncio.BufferedProtocol):
    """One TCP connection: frame assembly plus a task that runs frames in order."""

    def __init__(self, server, make_connection, max_frame: int) -> None:
        self.server = server
        self.make_connection = make_connection
        self.max_frame = max_frame
        self.transport = None
        self.connection = None
        self._header = bytearray(4)
        self._frame: bytearray | None = None
        self._view: memoryview | None = None
        self._filled = 0
        self._frames: collections.deque = collections.deque()
        self._frame_ready = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._reading_paused = False
        self._draining = False           # shutdown: never resume reading
        self._closing = False
        self._task = None

    # --- asyncio callbacks ----------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(SEND_HIGH_WATER, SEND_LOW_WATER)
        peer = transport.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}" if peer else "?"
        local = transport.get_extra_info("sockname")
        local_address = str(local[0]) if local else ""
        local_port = int(local[1]) if local else 0
        self.connection = self.make_connection(_FrameSink(self), peer_text, local_address,
                                               local_port)
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.server.on_connection_open(self)

    def get_buffer(self, sizehint: int):
        if self._frame is None:
            return memoryview(self._header)[self._filled:]
        return self._view[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        if self._frame is None:
            if self._filled < 4:
                return
            length = _LENGTH.unpack(self._header)[0]
            if length >> 24 or length > self.max_frame or length < 4:
                # The first byte must be zero (2.1); oversized frames are refused.
                log.info("%s: bad frame length %d", self.connection.peer, length)
                self.server.metrics.protocol_errors.inc()
                self.abort()
                return
            self._frame = bytearray(length)
            self._view = memoryview(self._frame)
            self._filled = 0
            return
        if self._filled == len(self._frame):
            self._frames.append(self._frame)
            self._frame = self._view = None
            self._filled = 0
            self._frame_ready.set()
            if len(self._frames) >= MAX_QUEUED_FRAMES:
                self._pause_reading()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def eof_received(self):
        return False

    def connection_lost(self, exc) -> None:
        self._closing = True
        self._frame_ready.set()
        self._can_write.set()
        if self.connection is not None:
            self.connection.connection_lost()
        self.server.on_connection_closed(self)

    # --- frame loop ---------------------------------------------------------------

    async def _run(self) -> None:
        conn = self.connection
        try:
            while not self._closing:
                if not self._frames:
                    self._frame_ready.clear()
                    await self._frame_ready.wait()
                    continue
                frame = self._frames.popleft()
                await conn.receive_frame(frame)
                if not self._can_write.is_set():
                    await self._can_write.wait()
                if self._reading_paused and len(self._frames) < MAX_QUEUED_FRAMES // 2:
                    self._resume_reading()
        except asyncio.CancelledError:
            pass

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._draining:
            return
        if self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()

    def stop_reading(self) -> None:
        """Shutdown step: take no new requests; in-flight ones finish.  The
        frame loop's flow control must not resume reading afterwards."""
        self._draining = True
        self._pause_reading()

    def idle(self) -> bool:
        return not self._frames and not (self.connection and self.connection.pending)

    def abort(self) -> None:
        self._closing = True
        self._frame_ready.set()
        if self.transport is not None:
            self.transport.abort()


_ABORT_WAIT_S = 5.0


class SmbListener:
    """All listening sockets plus the set of live connections; ordered shutdown."""

    def __init__(self, server, make_connection, max_frame: int) -> None:
        self.server = server
        self.make_connection = make_connection
        self.max_frame = max_frame
        self._servers: list = []
        self._protocols: set = set()
        self.metrics = server.metrics

    def on_connection_open(self, protocol: SmbProtocol) -> None:
        self._protocols.add(protocol)
        self.metrics.connections.set(len(self._protocols))

    def on_connection_closed(self, protocol: SmbProtocol) -> None:
        self._protocols.discard(protocol)
        self.metrics.connections.set(len(self._protocols))

    async def start(self, addresses) -> list:
        loop = asyncio.get_running_loop()
        bound = []
        for address in addresses:
            srv = await loop.create_server(
                lambda: SmbProtocol(self, self.make_connection, self.max_frame),
                host=address.host, port=address.port, reuse_address=True, backlog=256)
            self._servers.append(srv)
            bound.extend(sock.getsockname()[:2] for sock in srv.sockets)
        return bound

    async def shutdown(self, drain_timeout_s: float) -> None:
        """Stop accepting, stop reading, let in-flight requests finish (bounded),
        then close every connection."""
        for srv in self._servers:
            srv.close()
        for protocol in list(self._protocols):
            protocol.stop_reading()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout_s
        while loop.time() < deadline and not all(p.idle() for p in self._protocols):
            await asyncio.sleep(0.05)
        for protocol in list(self._protocols):
            protocol.abort()
        # abort() only schedules connection_lost; the daemon must not shut the
        # handle store down before it ran (it disconnects persistent opens).
        closed_by = loop.time() + _ABORT_WAIT_S
        while self._protocols and loop.time() < closed_by:
            await asyncio.sleep(0.01)
        for srv in self._servers:
            await srv.wait_closed()
