"""One mirror connection, owned by a thread of its own (issue 10 item 5:
the partner's durable copy acknowledges every commit before the client is
answered, so the replica's receive → write → ACK path is on the latency of
every commit).

The event loop used to read the socket, hand each APPEND to a writer thread
and take the write's completion back to send the ACK: with the partner's
copy on /dev/shm, 109 µs from reading an APPEND to sending its ACK around an
11 µs write, ~40 µs of it the two hand-offs (loop → writer thread → loop;
per-hop probes as in ``bench/mirror_hops.py --pin``).  ``MirrorWire``
instead reads the socket on its own thread: it waits in ``poll``, feeds
what ``recv`` returns to the sans-IO ``MirrorConnection`` and gives the
events to its ``WireHandler`` (``MirrorLink``) on that same thread, so the
replica parses, writes, fsyncs and sends its ACK without waking anyone:
52 µs around an 8 µs write, the ACK's send() included.  The event loop
keeps dialing, accepting and everything that is not per-frame.

Sending is thread-safe (``send``; the loop sends APPENDs, the wire thread
and a replica's worker send ACKs): under one lock the connection core
numbers, MACs and queues the frame and the socket takes what it can at once
(non-blocking); what it cannot take waits in a buffer that the wire thread
flushes when ``poll`` says the socket is writable.  So no sender ever blocks
on the socket, frames leave in counter order, and two nodes streaming
snapshots at each other cannot deadlock.

``close`` may be called from any thread; it shuts the socket down, the wire
thread sees the end, calls ``WireHandler.wire_closed`` on itself, closes
the socket and exits.
"""

import errno
import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Protocol

from smbcad.cluster.mirror_proto import Event, Message, MirrorConnection, ProtocolError

log = logging.getLogger("smbcad.cluster")

_READ_BYTES = 1 << 16
_IN = select.POLLIN | select.POLLPRI
_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL


class WireHandler(Protocol):
    """What a wire reports, on its own thread."""

    def wire_events(self, wire: "MirrorWire", events: list[Event]) -> None:
        """The events one ``recv`` completed, in order."""

    def wire_closed(self, wire: "MirrorWire") -> None:
        """The connection is over (last call; the socket is still open)."""


class MirrorWire:
    """``sock`` is connected; ``conn`` has its HELLO queued.  ``start`` sends
    the HELLO and starts the thread; ``on_exit`` runs last on it."""

    def __init__(self, sock: socket.socket, conn: MirrorConnection, handler: WireHandler,
                 *, name: str, on_exit: Callable[[], None] | None = None) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn
        self._sock = sock
        self._handler = handler
        self._on_exit = on_exit
        self._lock = threading.Lock()            # conn (both directions), _unsent, _closing
        self._unsent = bytearray()               # what the socket has not taken yet
        self._closing = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        with self._lock:
            self._put_locked(self.conn.data_to_send())
        self._thread.start()

    # --- any thread -----------------------------------------------------------------

    def send(self, message: Message) -> bool:
        """Queue one message; False if the connection is closing or its
        handshake has not finished (the peer's HELLO resyncs what is lost)."""
        with self._lock:
            if self._closing:
                return False
            try:
                self.conn.send(message)
            except ProtocolError:
                return False
            self._put_locked(self.conn.data_to_send())
        return True

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass                             # not connected any more: poll sees it
            self._kick()

    @property
    def closing(self) -> bool:
        return self._closing

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _put_locked(self, data: bytes) -> None:
        if self._unsent:
            self._unsent += data                 # behind what waits; the thread flushes
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return                               # the connection is gone; poll sees it
        if sent < len(data):
            self._unsent += memoryview(data)[sent:]
            self._kick()                         # the thread now polls for POLLOUT

    def _kick(self) -> None:
        """Under the lock (the thread closes the pipe under it, last)."""
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass                                 # a wake-up is pending already

    # --- the wire thread ------------------------------------------------------------

    def _run(self) -> None:
        poller = select.poll()
        fd = self._sock.fileno()
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._closing:
                poller.register(fd, _IN | (select.POLLOUT if self._unsent else 0))
                ready = dict(poller.poll())
                if self._wake_r in ready:
                    self._drain_wake()
                revents = ready.get(fd, 0)
                if revents & select.POLLOUT and not self._flush():
                    break
                if revents & (_IN | _GONE) and not self._receive():
                    break
        except Exception:       # noqa: BLE001 - a bug must not leave the link half open
            log.exception("mirror link %s: connection thread failed", self._thread.name)
        finally:
            with self._lock:
                self._closing = True
            try:
                self._handler.wire_closed(self)
            finally:
                with self._lock:
                    self._sock.close()
                    os.close(self._wake_r)
                    os.close(self._wake_w)
                if self._on_exit is not None:
                    self._on_exit()

    def _receive(self) -> bool:
        try:
            data = self._sock.recv(_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as exc:
            if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT):
                log.warning("mirror link %s: receive failed: %s", self._thread.name, exc)
            return False
        if not data:
            return False
        with self._lock:
            events = self.conn.receive_data(data)
        if events:
            self._handler.wire_events(self, events)
        return True

    def _flush(self) -> bool:
        with self._lock:
            try:
                sent = self._sock.send(self._unsent)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            del self._unsent[:sent]
        return True

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 256):
                pass
        except BlockingIOError:
            pass
