"""Direct-TCP transport for SMB2 ([MS-SMB2] 2.1): 4-byte framing, back-pressure,
ordered shutdown.  The only module of smbcad that touches sockets.

Small frames are received into a staging buffer, several per ``recv`` when the
client sends them back to back, and copied out whole: one ``recv`` and one
pass of the event loop per request instead of two (length, then body).  A
frame larger than ``DIRECT_FRAME`` is received straight into its own buffer
once its length is known (``BufferedProtocol``), so a 1 MiB WRITE is copied
between the kernel and the handler only for the bytes that came with its
length.  The stage is one buffer for all the listener's connections
(``ReceiveStage``), so an idle connection holds none.

A whole frame runs at once, inside the read callback, when its connection
has nothing running or queued and no other client's event is still due
(``SmbListener.events_due``: a frame queued in another frame loop, a
connection_lost to come); a request then costs one pass of the event loop
instead of two.  A request that must wait (a break, a commit, a worker
thread) hands its wait to the connection's frame-loop task, which runs
every later frame of the connection in order.  Reading pauses
while too many frames or bytes wait or the send buffer is over its high-water
mark, so a client that does not read its responses cannot make us buffer
without bound; one whose unread responses pass a hard limit is closed.

Limits enforced here (issue 17, reported through ``smbcad.server.limits``):
connections in total and per client address (refused before any SMB byte is
read), a deadline for authenticating (slowloris), the idle timeout, the frame
size (before authentication and at all), the buffered bytes each way, and
how long responses may stay unread (``server.send_timeout_s``: reading and
running stop for a client that does not read, and it is closed after that).
"""

import asyncio
import collections
import logging
import socket
import struct

from smbcad import tcp_acks
from smbcad.server.fairness import ClientShares
from smbcad.workers import gate
from smbcad.workers.handoff import HandoffError

log = logging.getLogger("smbcad.transport")

_LENGTH = struct.Struct(">I")
MAX_QUEUED_FRAMES = 64
RECEIVE_HIGH_WATER = 16 * 1024 * 1024    # bytes of whole frames waiting to be run
SEND_HIGH_WATER = 16 * 1024 * 1024
SEND_LOW_WATER = 4 * 1024 * 1024
# Responses are only produced while the send buffer is under its high-water
# mark, but async completions and breaks are not held back: past this the
# client is not reading at all.
SEND_HARD_LIMIT = 4 * SEND_HIGH_WATER
# Before a session is set up only NEGOTIATE and SESSION_SETUP are valid; a
# Kerberos token is at most 64 KiB (MaxTokenSize), so this leaves room.
PREAUTH_MAX_FRAME = 128 * 1024
# Frames up to DIRECT_FRAME bytes are assembled in the staging buffer and
# copied out; larger ones (WRITE data) get a buffer of their own.
STAGE_SIZE = 64 * 1024
DIRECT_FRAME = 16 * 1024


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
        length = sum(len(p) for p in parts)
        transport.write(_LENGTH.pack(length))
        for part in parts:
            transport.write(part)
        self._protocol.bytes_written += 4 + length
        self._protocol.check_send_buffer()

    def send_frame(self, frame) -> None:
        """Write a frame whose first 4 bytes are reserved for the length: one
        write, no copy (asyncio before 3.12 copies what the socket pushes back;
        a later one keeps a view: ``Connection.read_buffer`` allows for it)."""
        transport = self._protocol.transport
        if transport is None or transport.is_closing():
            return
        _LENGTH.pack_into(frame, 0, len(frame) - 4)
        transport.write(frame)
        self._protocol.bytes_written += len(frame)
        self._protocol.check_send_buffer()

    def close(self) -> None:
        self._protocol.abort()

    def reset(self) -> None:
        self._protocol.reset()

    def stop_reading(self) -> None:
        self._protocol.stop_reading()

    def hold_requests(self) -> None:
        self._protocol.hold_requests()

    def half_close(self) -> None:
        self._protocol.half_close()

    def dropped(self) -> int:
        return self._protocol.dropped_frames

    def quiet(self) -> bool:
        return self._protocol.quiet()

    def unsent(self) -> int:
        """Bytes written that the transport still holds (the socket pushed back)."""
        transport = self._protocol.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def bytes_sent(self) -> int:
        return self._protocol.bytes_written

    def bytes_acked(self) -> int | None:
        return self._protocol.bytes_acked()

    def retransmission_timeout_s(self) -> float | None:
        return self._protocol.retransmission_timeout_s()


class _ClosedSink:
    """What a connection writes to once its socket is gone: nothing happens.
    Swapped in at ``connection_lost`` so the connection no longer points back
    at its protocol; without that cycle a dropped connection is freed at once
    by reference counting instead of waiting for the cyclic collector, whose
    full passes over thousands of dead connections held the loop (issue 17)."""

    __slots__ = ()

    def send(self, parts: list) -> None:
        pass

    def send_frame(self, frame) -> None:
        pass

    def close(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def stop_reading(self) -> None:
        pass

    def hold_requests(self) -> None:
        pass

    def half_close(self) -> None:
        pass

    def dropped(self) -> int:
        return 0

    def quiet(self) -> bool:
        return True

    def unsent(self) -> int:
        return 0

    def bytes_sent(self) -> int:
        return 0

    def bytes_acked(self) -> int | None:
        return None

    def retransmission_timeout_s(self) -> float | None:
        return None


_CLOSED_SINK = _ClosedSink()


class ReceiveStage:
    """The buffer small frames are received into, one for all the connections
    of a listener: asyncio runs ``get_buffer``, ``recv_into`` and
    ``buffer_updated`` back to back for one connection at a time, and every
    whole frame is copied out before the next connection reads.  The bytes of
    a frame not yet whole (rare: a frame split between two reads) are kept by
    their connection and put back in front of its next read, so an idle
    connection holds no receive buffer."""

    def __init__(self, size: int = STAGE_SIZE) -> None:
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)

    def take(self, partial: bytes) -> memoryview:
        """The stage to receive into, after ``partial`` (at most a small frame)."""
        if partial:
            self.buffer[:len(partial)] = partial
            return self.view[len(partial):]
        return self.view


class SmbProtocol(asyncio.BufferedProtocol):
    """One TCP connection: frame assembly plus a task that runs frames in order."""

    def __init__(self, server, make_connection, max_frame: int, *, routing: bool = False,
                 already_read: bytes = b"", passed: bool = False) -> None:
        """``routing``: the first frames go through ``server.gate`` (worker
        processes); ``already_read``: what another worker read from this
        connection before it passed it here."""
        self.server = server
        self.make_connection = make_connection
        self.max_frame = max_frame
        self._routing = routing
        self._already_read = already_read
        self.passed = passed             # another worker admitted it and passed it here
        self.transport = None
        self.connection = None
        self._stage = server.stage       # shared by the listener's connections
        self._partial = b""              # a small frame's first bytes, not yet whole
        self._frame: bytearray | None = None     # a large frame received in place
        self._view: memoryview | None = None
        self._filled = 0
        self._frames: collections.deque = collections.deque()
        self._queued_bytes = 0
        self._refused = False
        self._auth_timer = None
        self._idle_timer = None
        self._send_timer = None
        self._last_frame_at = 0.0
        self.client_host = ""
        self._frame_ready = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._reading_paused = False
        self._draining = False           # shutdown: never resume reading
        self._holding = False            # a planned release: read on, run nothing new
        self.dropped_frames = 0          # requests that arrived while holding
        self.bytes_written = 0           # every frame byte handed to the transport
        self._closing = False
        self._task = None
        self._loop = None
        self._running = False            # the frame loop runs or awaits a frame
        self._rest = None                # what a frame run in the read callback left to await
        self._lost_due = False           # counted in events_due until connection_lost
        self.ran_in_callback = 0         # frames run in the read callback (tests read it)

    # --- asyncio callbacks ----------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.client_host = str(peer[0]) if peer else "?"
        local = transport.get_extra_info("sockname")
        local_address = str(local[0]) if local else ""
        local_port = int(local[1]) if local else 0
        if not self.server.admit(self, peer_text):
            # Refused before any SMB byte is read: nothing was allocated.
            self._refused = self._closing = True
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(SEND_HIGH_WATER, SEND_LOW_WATER)
        self.connection = self.make_connection(_FrameSink(self), peer_text, local_address,
                                               local_port)
        self.connection.turn.join(self.server.client_shares, self.client_host)
        loop = self._loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        self._last_frame_at = loop.time()
        limits = self.server.limits_config()
        self._auth_timer = loop.call_later(limits.auth_timeout_s, self._auth_deadline)
        if limits.idle_timeout_s:
            self._idle_timer = loop.call_later(limits.idle_timeout_s, self._idle_check)
        if self._already_read:
            self._take_already_read()

    def _take_already_read(self) -> None:
        """Run what the worker that passed this connection had read, as if
        it had just been received."""
        data, self._already_read = memoryview(self._already_read), b""
        while data and not self._closing:
            buffer = self.get_buffer(len(data))
            part = min(len(buffer), len(data))
            buffer[:part] = data[:part]
            data = data[part:]
            self.buffer_updated(part)

    def get_buffer(self, sizehint: int):
        if self._frame is not None:
            return self._view[self._filled:]
        return self._stage.take(self._partial)

    def buffer_updated(self, nbytes: int) -> None:
        if not self._running and not self._frames:
            # The loop polled its sockets since this connection last ran.
            self.connection.turn.fresh()
        if self._frame is not None:
            self._filled += nbytes
            if self._filled == len(self._frame):
                frame = self._frame
                self._frame = self._view = None
                self._filled = 0
                self._deliver(frame)
            return
        stage = self._stage.view
        start, end = 0, len(self._partial) + nbytes
        self._partial = b""
        if self._routing and not self._route(stage[:end]):
            return
        while end - start >= 4 and not self._closing:
            length = _LENGTH.unpack_from(stage, start)[0]
            if not self._length_ok(length):
                return
            have = end - start - 4
            if have >= length:
                frame = bytearray(stage[start + 4:start + 4 + length])
                start += 4 + length
                self._deliver(frame)
                continue
            if length > DIRECT_FRAME:
                # The rest goes straight into the frame's own buffer.
                frame = bytearray(length)
                frame[:have] = stage[start + 4:end]
                self._frame, self._view, self._filled = frame, memoryview(frame), have
                return
            break
        if start < end and not self._closing:
            self._partial = bytes(stage[start:end])

    def _route(self, received: memoryview) -> bool:
        """Whether this worker serves what was received (the connection's
        first bytes); if another worker owns the client, the connection and
        the bytes go there and this side lets go of it without a word."""
        owner = self.server.gate.decide(received)
        if owner == gate.NEED_MORE:
            self._partial = bytes(received)
            return False
        if owner == gate.SERVE:
            self._routing = False
            return True
        if owner == gate.SERVE_LOOK_AGAIN:
            return True
        self._routing = False
        self._closing = True
        sock = self.transport.get_extra_info("socket")
        try:
            self.server.gate.hand_off(owner, sock.fileno(), bytes(received))
        except (HandoffError, OSError) as exc:
            # The owner is restarting: the client connects again.
            log.warning("%s: cannot pass the connection to worker %d: %s; closing",
                        self.connection.peer, owner, exc)
        self.transport.abort()          # closes this descriptor only: no FIN, no RST
        return False

    def _length_ok(self, length: int) -> bool:
        """Check a frame's direct-TCP length; a bad one closes the connection."""
        if length >> 24 or length < 4:
            # The first byte must be zero (2.1).
            log.info("%s: bad frame length %d", self.connection.peer, length)
            self.server.metrics.protocol_errors.inc()
            self.abort()
            return False
        if length > self.max_frame:
            # More than MaxWrite/MaxTransact plus headers could ever need.
            self.server.limits.hit("frame_size", self.connection.peer,
                                   f"{length}-byte frame (at most {self.max_frame}); closing")
            self.abort()
            return False
        if length > PREAUTH_MAX_FRAME and not self.connection.authenticated:
            self.server.limits.hit("preauth_frame", self.connection.peer,
                                   f"{length}-byte frame before authentication; closing")
            self.abort()
            return False
        return True

    def _deliver(self, frame: bytearray) -> None:
        """A whole frame: run it now, in the read callback, when nothing of
        this connection runs or waits, its turn is not used up, the client
        reads its answers and no other client's event is still due
        (``SmbListener.events_due``); else queue it for the frame loop."""
        if self._closing:
            return
        if self._holding:
            # Read whole, never run, never answered: the client sends it again
            # after it reconnected to the aggregate's new owner.
            self.dropped_frames += 1
            return
        if (not self._running and not self._frames and not self.server.events_due
                and self._can_write.is_set() and not self.connection.turn.used_up()):
            self._run_now(frame)
            return
        self._frames.append(frame)
        self._queued_bytes += len(frame)
        self.server.events_due += 1
        self._frame_ready.set()
        if len(self._frames) >= MAX_QUEUED_FRAMES or self._queued_bytes >= RECEIVE_HIGH_WATER:
            self.server.limits.hit("receive_buffer", self.connection.peer,
                                   f"{len(self._frames)} frames, {self._queued_bytes} bytes "
                                   "waiting; reading paused")
            self._pause_reading()

    def _run_now(self, frame: bytearray) -> None:
        """A request that needs no wait costs one pass of the event loop, not
        two (read callback, then frame-loop task).  One that must wait goes
        on in the frame loop, which runs nothing else of this connection
        before it is done."""
        self._last_frame_at = self._loop.time()
        self.ran_in_callback += 1
        try:
            rest = self.connection.receive_frame_now(frame)
        except Exception:       # noqa: BLE001 - as a failing frame-loop task: drop the client
            log.exception("%s: internal error running a request; closing", self.connection.peer)
            self.abort()
            return
        if rest is not None:
            self._running = True
            self._rest = rest
            self._frame_ready.set()

    def pause_writing(self) -> None:
        self._can_write.clear()
        if self._send_timer is None and not self._closing:
            self._send_timer = asyncio.get_running_loop().call_later(
                self.server.limits_config().send_timeout_s, self._send_stalled)

    def resume_writing(self) -> None:
        self._can_write.set()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def eof_received(self):
        self._lose_later()
        return False

    def _lose_later(self) -> None:
        """connection_lost is due (the client closed, or we abort): until it
        runs, no other connection runs a request in its read callback, so a
        client that closes one connection and then sends on another gets the
        first one's opens disconnected before its request runs
        (smb2.durable-open.oplock), as the frame loop's order gives."""
        if not self._lost_due and not self._refused:
            self._lost_due = True
            self.server.events_due += 1

    def connection_lost(self, exc) -> None:
        if self._lost_due:
            self._lost_due = False
            self.server.events_due -= 1
        self.server.events_due -= len(self._frames)
        self._closing = True
        self._frame_ready.set()
        self._can_write.set()
        for timer in (self._auth_timer, self._idle_timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        self._auth_timer = self._idle_timer = self._send_timer = None
        self._frames.clear()
        self._frame = self._view = None
        self._partial = b""
        if self.connection is not None:
            self.connection.connection_lost()
            self.connection.sink = _CLOSED_SINK
        self.server.on_connection_closed(self)

    # --- limits -------------------------------------------------------------------

    def _auth_deadline(self) -> None:
        """NEGOTIATE and SESSION_SETUP must be done by now (slowloris)."""
        self._auth_timer = None
        if self._closing or self.connection.authenticated:
            return
        self.server.limits.hit(
            "auth_timeout", self.connection.peer,
            f"not authenticated after {self.server.limits_config().auth_timeout_s} s "
            "(server.auth_timeout_s); closing")
        self.abort()

    def _idle_check(self) -> None:
        """Close a connection with no request, no open and nothing pending for
        ``idle_timeout_s`` (its durable opens, if any, stay disconnected)."""
        self._idle_timer = None
        timeout = self.server.limits_config().idle_timeout_s
        if self._closing or not timeout:
            return
        loop = asyncio.get_running_loop()
        idle_for = loop.time() - self._last_frame_at
        if self._frames or self.connection.busy or idle_for < timeout:
            wait = timeout - idle_for if idle_for < timeout else timeout
            self._idle_timer = loop.call_later(wait, self._idle_check)
            return
        self.server.limits.hit("idle_timeout", self.connection.peer,
                               f"idle for {idle_for:.0f} s (server.idle_timeout_s); closing")
        self.abort()

    def _send_stalled(self) -> None:
        """The client has left its responses unread (the send buffer over its
        high-water mark) for ``send_timeout_s``: nothing of its runs while
        that lasts, and its buffers are given back now."""
        self._send_timer = None
        if self._closing or self.transport is None:
            return
        self.server.limits.hit(
            "send_buffer", self.connection.peer,
            f"{self.transport.get_write_buffer_size()} bytes of responses unread for "
            f"{self.server.limits_config().send_timeout_s} s (server.send_timeout_s); closing")
        self.abort()

    def check_send_buffer(self) -> None:
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size() > SEND_HARD_LIMIT:
            self.server.limits.hit(
                "send_buffer", self.connection.peer,
                f"{transport.get_write_buffer_size()} bytes of responses unread; closing")
            self.abort()

    # --- frame loop ---------------------------------------------------------------

    async def _run(self) -> None:
        conn = self.connection
        try:
            while True:
                if self._rest is not None:
                    # A request whose handler ran goes to its end, as one
                    # the frame loop started does when the connection closes.
                    rest, self._rest = self._rest, None
                    await rest
                    del rest
                elif self._closing:
                    break
                elif self._frames:
                    self._running = True
                    frame = self._frames.popleft()
                    self._queued_bytes -= len(frame)
                    self.server.events_due -= 1
                    self._last_frame_at = self._loop.time()
                    await conn.receive_frame(frame)
                    del frame
                else:
                    self._running = False
                    self._frame_ready.clear()
                    conn.turn.waiting()
                    await self._frame_ready.wait()
                    conn.turn.rested()
                    continue
                if not self._can_write.is_set():
                    await self._can_write.wait()
                if (self._reading_paused and len(self._frames) < MAX_QUEUED_FRAMES // 2
                        and self._queued_bytes < RECEIVE_HIGH_WATER // 2):
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

    def hold_requests(self) -> None:
        """A planned release: requests already received finish; later ones are
        read whole and dropped, so a client is never cut off in the middle of
        sending one (Linux 6.1's cifs fails a request whose send breaks,
        where it sends again one that was sent and never answered)."""
        self._holding = True
        if self._reading_paused and self.transport is not None \
                and not self.transport.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()

    def half_close(self) -> None:
        """A held connection's end: our answers out, then FIN, while we read on
        (and drop) until the client closes.  A client that was starting its
        next request finishes sending it, and sends it again after the
        reconnect; a RST would break that send (and 6.1's cifs would fail it)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
        else:
            self.abort()

    def quiet(self) -> bool:
        """Between two requests, with every answer handed to the kernel: the
        moment to close a held connection."""
        transport = self.transport
        return (self._frame is None and not self._partial
                and (transport is None or transport.get_write_buffer_size() == 0))

    # --- what the peer has received (break delivery, [MS-SMB2] 3.3.4.6/3.3.4.7) --------

    def _tcp_socket(self):
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        return sock

    def bytes_acked(self) -> int | None:
        """Bytes of ``bytes_written`` the client's TCP has acknowledged: what
        left asyncio's buffer less what the kernel still holds unacknowledged;
        None when unknown."""
        sock = self._tcp_socket()
        if sock is None or self.transport.is_closing():
            return None
        queued = tcp_acks.unacknowledged_bytes(sock)
        if queued is None:
            return None
        return self.bytes_written - self.transport.get_write_buffer_size() - queued

    def retransmission_timeout_s(self) -> float | None:
        sock = self._tcp_socket()
        return tcp_acks.retransmission_timeout_s(sock) if sock is not None else None

    def idle(self) -> bool:
        return (not self._frames and self._rest is None
                and not (self.connection and self.connection.pending))

    def reset(self) -> None:
        """Close with a TCP reset, not a FIN queued behind data the peer never
        acknowledged: it has stopped responding, and learns at once that this
        connection is gone (its requests on it fail, as smbtorture's
        smb2.multichannel.leases.test2 expects)."""
        sock = self._tcp_socket()
        if sock is not None:
            tcp_acks.reset_on_close(sock)
        self.abort()

    def abort(self) -> None:
        self._closing = True
        self._frame_ready.set()
        if self.transport is not None:
            if not self.transport.is_closing():
                self._lose_later()
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
        self._per_client: dict[str, int] = {}      # client address → live connections
        self.client_shares = ClientShares()         # their turns (server/fairness.py)
        self.stage = ReceiveStage()
        # Client events the loop has yet to handle: frames queued in a frame
        # loop, connection_lost callbacks due.  A frame is run in its read
        # callback only while there are none, so requests keep the order in
        # which their connections' events came (SmbProtocol._deliver).
        self.events_due = 0
        self.gate = None                # a worker's RoutingGate (smbcad.workers.gate)
        self.metrics = server.metrics
        self.limits = server.limits

    def limits_config(self):
        """The live server section: a reload changes the limits for what follows."""
        return self.server.config.server

    def admit(self, protocol: SmbProtocol, peer: str) -> bool:
        """Count a new connection in, or refuse it: server.max_connections,
        server.max_connections_per_client, for the whole node.  With worker
        processes the counts are every worker's together, in the open-state
        database; a connection another worker passed here was admitted there."""
        limits = self.limits_config()
        host = protocol.client_host
        open_state = self.server.opens.open_state
        if open_state.shared:
            refused = open_state.admit_connection(
                host, *((None, None) if protocol.passed else
                        (limits.max_connections, limits.max_connections_per_client)))
        elif len(self._protocols) >= limits.max_connections:
            refused = "connections", len(self._protocols)
        elif self._per_client.get(host, 0) >= limits.max_connections_per_client:
            refused = "connections_per_client", self._per_client[host]
        else:
            refused = None
        if refused is not None:
            limit, held = refused
            what = (f"{held} connections open (server.max_connections)" if limit == "connections"
                    else f"{held} connections from {host} (server.max_connections_per_client)")
            self.limits.hit(limit, peer, what + "; refused")
            return False
        self._per_client[host] = self._per_client.get(host, 0) + 1
        self._protocols.add(protocol)
        self.metrics.connections.set(len(self._protocols))
        return True

    def on_connection_closed(self, protocol: SmbProtocol) -> None:
        if protocol not in self._protocols:
            return                                  # refused: never counted
        self._protocols.discard(protocol)
        if protocol.connection is not None:
            protocol.connection.turn.leave(self.client_shares)
        host = protocol.client_host
        left = self._per_client.get(host, 1) - 1
        if left > 0:
            self._per_client[host] = left
        else:
            self._per_client.pop(host, None)
        if self.server.opens.open_state.shared:
            self.server.opens.open_state.connection_closed(host)
        self.metrics.connections.set(len(self._protocols))

    def tracked(self) -> dict:
        """What the listener holds (the no-growth test compares it to a baseline)."""
        return {"protocols": len(self._protocols), "client_addresses": len(self._per_client),
                "client_shares": len(self.client_shares)}

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

    async def start_on(self, sockets) -> list:
        """Serve on listening sockets bound by the supervisor (worker
        processes): every worker accepts on them, the gate routes."""
        loop = asyncio.get_running_loop()
        bound = []
        for sock in sockets:
            srv = await loop.create_server(
                lambda: SmbProtocol(self, self.make_connection, self.max_frame,
                                    routing=self.gate is not None),
                sock=sock, backlog=256)
            self._servers.append(srv)
            bound.append(sock.getsockname()[:2])
        return bound

    async def adopt(self, sock: socket.socket, already_read: bytes) -> None:
        """Serve a connection another worker passed here."""
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: SmbProtocol(self, self.make_connection, self.max_frame,
                                    already_read=already_read, passed=True), sock)
        except OSError as exc:
            log.info("a passed connection was gone before it was served: %s", exc)
            sock.close()

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
