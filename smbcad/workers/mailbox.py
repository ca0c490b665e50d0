"""A worker's mailbox: its Unix datagram socket (docs/multicore.md,
"Messages between workers"), the I/O shell around ``smbcad.workers.messages``.

Worker K binds ``<directory>/worker-K.sock`` and reaches a peer by its
path, so there are no connections to keep and a restarted worker is found
at the same address.  Sending never blocks the event loop: a peer that is
gone or too slow to read is a ``MailboxError`` for the caller to decide on
(a break owed by a dead worker's open is settled by the database sweep, not
by waiting for it).  Received datagrams go to one callback; one that does
not decode is logged and dropped.
"""

import asyncio
import errno
import logging
import os
import socket
from typing import Callable

from smbcad.workers.messages import MAX_MESSAGE, Header, Message, MessageError, Sequencer, \
    decode, encode
from smbcad.workers.unix_path import SocketPathError, bind_at, unlink_if_own

log = logging.getLogger("smbcad.workers")

# Asked for on both buffers; the kernel caps it at net.core.{r,w}mem_max.  A
# bigger send buffer lets more datagrams wait in a slow peer's queue (Linux
# charges them to the sender until they are read).
BUFFER_BYTES = 4 * 1024 * 1024

_SEND_FAILURES = {
    errno.ENOENT: "has no mailbox (not running)",
    errno.ECONNREFUSED: "is not reading its mailbox (a stale socket file)",
    errno.EAGAIN: "has a full queue",
    errno.ENOBUFS: "has a full queue",
}


class MailboxError(Exception):
    """A mailbox could not be bound or a message not sent; the text names
    the worker and why, ``errno`` keeps the system's code."""

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(text)
        self.errno = code


def socket_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"worker-{index}.sock")


class Mailbox:
    """The socket of worker ``index`` (started as ``generation``), bound on
    construction; ``attach`` starts delivering, ``close`` unbinds."""

    def __init__(self, directory: str, index: int, generation: int) -> None:
        self.directory, self.index, self.generation = directory, index, generation
        self.path = socket_path(directory, index)
        self._sequencer = Sequencer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            _try_to_raise(sock, option)
        try:
            self._bound = bind_at(self.path, sock, f"worker {index}'s mailbox")
        except SocketPathError as error:
            raise MailboxError(str(error), error.errno) from error
        self._sock = sock

    def send(self, to_index: int, message: Message) -> int:
        """Send ``message`` to worker ``to_index`` without waiting; its
        sequence number.  MessageError if it cannot be encoded, MailboxError
        if it cannot be delivered now (a failed send still uses its number)."""
        sequence = self._sequencer.next()
        data = encode(message, sender=self.index, generation=self.generation, sequence=sequence)
        path = socket_path(self.directory, to_index)
        try:
            self._sock.sendto(data, path)
        except OSError as error:
            why = _SEND_FAILURES.get(error.errno, error.strerror or str(error))
            raise MailboxError(f"worker {to_index} {why}: {type(message).__name__} "
                               f"to {path} not sent", error.errno) from error
        return sequence

    def attach(self, loop: asyncio.AbstractEventLoop,
               on_message: Callable[[Header, Message], None]) -> None:
        """Deliver every datagram that arrives to ``on_message`` on ``loop``."""
        if self._closed or self._loop is not None:
            raise RuntimeError(f"worker {self.index}'s mailbox is closed or already attached")
        loop.add_reader(self._sock.fileno(), self._drain, on_message)
        self._loop = loop

    def _drain(self, on_message: Callable[[Header, Message], None]) -> None:
        # One wake-up reads everything queued: datagrams are small and the
        # queue short (net.unix.max_dgram_qlen), so this cannot run long.
        while not self._closed:
            try:
                data = self._sock.recv(MAX_MESSAGE + 1)     # + 1: an oversize one fails decode
            except BlockingIOError:
                return
            try:
                header, message = decode(data)
            except MessageError as error:
                log.warning("worker %d dropped a malformed message of %d bytes: %s",
                            self.index, len(data), error)
                continue
            on_message(header, message)

    def close(self) -> None:
        """Stop delivering, close the socket and remove its file (unless a
        successor of this index has bound the path again meanwhile)."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._loop = None
        self._sock.close()
        unlink_if_own(self.path, self._bound)

    def __enter__(self) -> "Mailbox":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _try_to_raise(sock: socket.socket, option: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, BUFFER_BYTES)
    except OSError as error:
        log.debug("could not raise socket option %d to %d bytes: %s", option, BUFFER_BYTES,
                  error)
