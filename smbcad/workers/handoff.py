"""Passing a client connection to the worker that owns it (docs/multicore.md,
"Connections and routing"): the I/O shell that ``smbcad.workers.routing``
decides for.

Worker K listens on ``<directory>/handoff-K.sock``, an AF_UNIX SOCK_SEQPACKET
socket; each peer worker connects once and keeps its channel.  One handoff
is one message, so a connection and its bytes arrive together or not at all::

    u16 version, u16 reserved (sent 0, ignored), u32 length of already_read,
    then the bytes already read from the connection
    ancillary data: SCM_RIGHTS with exactly one descriptor, the TCP socket

The bytes are what the sender read before it could decide (the NEGOTIATE,
which the owner must answer itself: 3.1.1 folds it into the preauth hash),
at most ``MAX_HANDOFF_BYTES``.  The receiver never leaks a descriptor: one
that arrives with a malformed message is closed before ``HandoffError``.
Only processes that can reach the directory (0700, the node's user) connect.
"""

import array
import asyncio
import errno
import logging
import os
import socket
import struct
from typing import Callable

from smbcad.workers.routing import MAX_HANDOFF_BYTES
from smbcad.workers.unix_path import SocketPathError, bind_at, unlink_if_own

log = logging.getLogger("smbcad.workers")

VERSION = 1
HEADER = struct.Struct("<HHI")
# Room for more descriptors than a handoff carries, so that a message with
# two still arrives whole and is refused as such (the kernel closes any that
# do not fit: MSG_CTRUNC).
_DESCRIPTOR_ROOM = 4
_ANCILLARY_BYTES = socket.CMSG_SPACE(_DESCRIPTOR_ROOM * array.array("i").itemsize)
# One byte more than a valid message: a longer one shows as too long, not cut.
_RECEIVE_BYTES = HEADER.size + MAX_HANDOFF_BYTES + 1

_SEND_FAILURES = {
    errno.ENOENT: "has no handoff socket (not running)",
    errno.ECONNREFUSED: "is not accepting handoffs (a stale socket file)",
    errno.EAGAIN: "has a full handoff queue",
    errno.EPIPE: "closed its handoff channel",
    errno.ECONNRESET: "closed its handoff channel",
}


class HandoffError(Exception):
    """A connection could not be passed, or a handoff message was malformed;
    the text says what was wrong, ``errno`` keeps the system's code."""

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(text)
        self.errno = code


class ChannelClosed(HandoffError):
    """The peer closed the channel: no more handoffs will come on it."""


def handoff_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"handoff-{index}.sock")


def send_connection(channel: socket.socket, conn: socket.socket, already_read: bytes) -> None:
    """Pass ``conn`` and the bytes already read from it over ``channel``.

    On success the receiver holds its own descriptor: the caller then closes
    ``conn`` (after taking it from its event loop; nothing may read it in
    between).  On HandoffError nothing was sent and ``conn`` is the caller's.
    """
    if len(already_read) > MAX_HANDOFF_BYTES:
        raise HandoffError(f"{len(already_read)} bytes already read: a handoff carries at "
                           f"most {MAX_HANDOFF_BYTES}")
    descriptor = conn.fileno()
    if descriptor < 0:
        raise HandoffError("the connection to hand off is closed")
    header = HEADER.pack(VERSION, 0, len(already_read))
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [descriptor]))]
    try:
        # MSG_NOSIGNAL: a peer that went away is EPIPE, not a signal.
        channel.sendmsg([header, already_read], rights, socket.MSG_NOSIGNAL)
    except OSError as error:
        why = _SEND_FAILURES.get(error.errno, error.strerror or str(error))
        raise HandoffError(f"handoff not sent: the receiving worker {why}",
                           error.errno) from error


def receive_connection(channel: socket.socket) -> tuple[socket.socket, bytes]:
    """The next handoff on ``channel``: the passed connection (non-blocking,
    as an event loop wants it) and the bytes read from it before.

    ChannelClosed at end of stream; HandoffError for a malformed message
    (its descriptors closed); on a non-blocking channel with nothing queued,
    BlockingIOError, as ``recv`` does.
    """
    body, ancillary, flags, _ = channel.recvmsg(_RECEIVE_BYTES, _ANCILLARY_BYTES,
                                                socket.MSG_CMSG_CLOEXEC)
    descriptors = _descriptors(ancillary)
    try:
        if not body and not descriptors:
            raise ChannelClosed("the sending worker closed its handoff channel")
        already_read = _check_message(body, flags, len(descriptors))
        return _adopt(descriptors[0]), already_read
    except HandoffError:
        for descriptor in descriptors:
            os.close(descriptor)
        raise


def _descriptors(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    received = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received.frombytes(data[:len(data) - len(data) % received.itemsize])
    return received.tolist()


def _check_message(body: bytes, flags: int, descriptor_count: int) -> bytes:
    """The bytes a well-formed handoff carries, or HandoffError saying why not."""
    if flags & socket.MSG_CTRUNC:
        raise HandoffError(f"more than {_DESCRIPTOR_ROOM} descriptors (or other ancillary "
                           f"data) in a handoff")
    if descriptor_count != 1:
        raise HandoffError(f"a handoff carries one descriptor, this one {descriptor_count}")
    if flags & socket.MSG_TRUNC:
        raise HandoffError(f"handoff longer than {_RECEIVE_BYTES - 1} bytes")
    if len(body) < HEADER.size:
        raise HandoffError(f"handoff of {len(body)} bytes is shorter than its "
                           f"{HEADER.size}-byte header")
    version, _, length = HEADER.unpack_from(body)
    if version != VERSION:
        raise HandoffError(f"handoff version {version}: this node speaks {VERSION}")
    carried = len(body) - HEADER.size
    if length != carried:
        raise HandoffError(f"handoff header says {length} bytes already read, the "
                           f"message carries {carried}")
    return body[HEADER.size:]


def _adopt(descriptor: int) -> socket.socket:
    """A socket object owning ``descriptor``, which must be a stream socket;
    on HandoffError the descriptor is still the caller's to close."""
    try:
        conn = socket.socket(fileno=descriptor)
    except OSError as error:
        raise HandoffError(f"the passed descriptor is not a socket ({error.strerror})",
                           error.errno) from error
    if conn.type != socket.SOCK_STREAM:
        conn.detach()                   # the caller closes the descriptor
        raise HandoffError(f"the passed socket is {conn.type!r}, not a stream")
    # The descriptor shares its file status with the sender's copy, which
    # may be in either mode; the Python object must agree with the fd.
    conn.setblocking(False)
    return conn


def connect(directory: str, index: int) -> socket.socket:
    """A channel to worker ``index``'s HandoffListener, non-blocking, so a
    send never stalls the sender's event loop (a full queue is HandoffError)."""
    path = handoff_path(directory, index)
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        # Non-blocking already: a listener whose backlog is full is EAGAIN
        # at once rather than a wait.
        channel.setblocking(False)
        channel.connect(path)
    except OSError as error:
        channel.close()
        why = _SEND_FAILURES.get(error.errno, error.strerror or str(error))
        raise HandoffError(f"worker {index} {why}: cannot connect to {path}",
                           error.errno) from error
    return channel


class HandoffListener:
    """Worker ``index``'s handoff socket, bound on construction; ``attach``
    starts accepting peers' channels and delivering what they pass, ``close``
    unbinds."""

    def __init__(self, directory: str, index: int, backlog: int = 64) -> None:
        self.directory, self.index = directory, index
        self.path = handoff_path(directory, index)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channels: dict[int, socket.socket] = {}
        self._closed = False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            self._bound = bind_at(self.path, sock, f"worker {index}'s handoff socket")
        except SocketPathError as error:
            raise HandoffError(str(error), error.errno) from error
        try:
            sock.listen(backlog)
        except OSError as error:
            sock.close()
            raise HandoffError(f"worker {index} cannot listen on {self.path}: {error}",
                               error.errno) from error
        self._sock = sock

    def attach(self, loop: asyncio.AbstractEventLoop,
               on_connection: Callable[[socket.socket, bytes], None]) -> None:
        """Accept channels and hand each passed (connection, bytes already
        read) to ``on_connection`` on ``loop``; the callback owns the socket."""
        if self._closed or self._loop is not None:
            raise RuntimeError(f"worker {self.index}'s handoff listener is closed or "
                               f"already attached")
        self._loop = loop
        loop.add_reader(self._sock.fileno(), self._accept, on_connection)

    def _accept(self, on_connection: Callable[[socket.socket, bytes], None]) -> None:
        while not self._closed:
            try:
                channel, _ = self._sock.accept()
            except BlockingIOError:
                return
            except OSError as error:        # ECONNABORTED, EMFILE: the peer retries
                log.warning("worker %d could not accept a handoff channel: %s",
                            self.index, error)
                return
            channel.setblocking(False)
            self._channels[channel.fileno()] = channel
            self._loop.add_reader(channel.fileno(), self._drain, channel, on_connection)

    def _drain(self, channel: socket.socket,
               on_connection: Callable[[socket.socket, bytes], None]) -> None:
        while not self._closed:
            try:
                conn, already_read = receive_connection(channel)
            except BlockingIOError:
                return
            except ChannelClosed:
                self._drop(channel)
                return
            except HandoffError as error:
                log.warning("worker %d dropped a malformed handoff: %s", self.index, error)
                continue
            except OSError as error:
                log.warning("worker %d lost a handoff channel: %s", self.index, error)
                self._drop(channel)
                return
            on_connection(conn, already_read)

    def _drop(self, channel: socket.socket) -> None:
        descriptor = channel.fileno()
        if self._loop is not None:
            self._loop.remove_reader(descriptor)
        del self._channels[descriptor]
        channel.close()

    def close(self) -> None:
        """Stop delivering, close the channels and the socket, and remove its
        file (unless a successor of this index has bound the path meanwhile)."""
        if self._closed:
            return
        self._closed = True
        for channel in list(self._channels.values()):
            self._drop(channel)
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._loop = None
        self._sock.close()
        unlink_if_own(self.path, self._bound)

    def __enter__(self) -> "HandoffListener":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
