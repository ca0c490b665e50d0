"""The local control protocol every daemon speaks on its Unix socket.

One JSON object per line (UTF-8, ``\\n``) each way; every request line gets
one answer line: ``{"ok": true, ...}`` or ``{"ok": false, "error": TEXT}``.
A line that is not JSON but a bare word is shorthand for
``{"command": WORD}`` (``echo status | socat - UNIX:...``).  Lines are at
most ``MAX_LINE_BYTES``; a longer one is answered with an error and the
connection is closed.

Who listens where (the example configs in config/ use the same paths):
smbcad on ``SMBCAD_SOCKET`` (adopt / release), witnessd on
``WITNESSD_SOCKET`` (interface and move events), clusdisk on
``CLUSDISK_SOCKET`` (status).  The request vocabulary of each is its own;
the inter-daemon events are typed in ``smbca.events``.

``LineSession`` is the sans-IO framing; ``ControlServer`` the asyncio
listener around it; ``request`` and ``request_blocking`` the client, for
daemons and for command-line tools.  Every failure is a ``ControlError``.
"""

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger("smbca.control")

SMBCAD_SOCKET = "/run/smbca/smbcad.sock"
WITNESSD_SOCKET = "/run/smbca/witnessd.sock"
CLUSDISK_SOCKET = "/run/smbca/clusdisk.sock"
MAX_LINE_BYTES = 64 * 1024
SOCKET_MODE = 0o600       # root only: these sockets move shares and addresses

Handler = Callable[[dict], dict]
"""A decoded request -> the answer's fields besides ``ok``; raises ControlError."""


class ControlError(Exception):
    """A control request that failed: refused by the daemon (the message goes
    back as ``error``), malformed, or the daemon could not be reached."""


def decode_request(line: bytes) -> dict:
    """The request object of one line (without its newline)."""
    word = line.strip().decode(errors="replace")
    if word.isidentifier():
        return {"command": word}
    try:
        message = json.loads(word)
    except ValueError as exc:
        raise ControlError(f"bad request: neither JSON nor a command ({exc})") from None
    if not isinstance(message, dict):
        raise ControlError("bad request: a control request is a JSON object")
    return message


def encode_line(message: dict) -> bytes:
    return json.dumps(message).encode() + b"\n"


def answer(handle: Handler, line: bytes) -> bytes:
    """One request line in, one answer line (with its newline) out."""
    try:
        reply = {"ok": True, **handle(decode_request(line))}
    except ControlError as exc:
        log.info("control request refused: %s", exc)
        reply = {"ok": False, "error": str(exc)}
    return encode_line(reply)


class LineSession:
    """Line framing for one control connection: bytes in, answer bytes out."""

    def __init__(self, handle: Handler) -> None:
        self._handle = handle
        self._buffer = bytearray()
        self.closed = False

    def receive_data(self, data: bytes) -> bytes:
        """Answers for every complete line in ``data``; closes on an over-long line."""
        self._buffer += data
        out = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            if line.strip():
                out.append(answer(self._handle, line))
        if len(self._buffer) > MAX_LINE_BYTES:
            self._buffer.clear()
            self.closed = True
            out.append(encode_line({"ok": False, "error": "request line too long"}))
        return b"".join(out)


class _ControlProtocol(asyncio.Protocol):
    def __init__(self, handle: Handler) -> None:
        self._session = LineSession(handle)
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        reply = self._session.receive_data(data)
        if reply:
            self._transport.write(reply)
        if self._session.closed:
            self._transport.close()


class ControlServer:
    """A daemon's control socket: ``handle`` answers each request."""

    def __init__(self, path: str, handle: Handler) -> None:
        self.path = path
        self._handle = handle
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen on ``path`` (mode 0600; a stale socket file is replaced)."""
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o750, exist_ok=True)
        try:
            if os.path.exists(self.path):
                os.unlink(self.path)          # left over from a previous run
        except OSError as exc:
            raise OSError(exc.errno, f"cannot replace {self.path}: {exc.strerror}") from None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _ControlProtocol(self._handle),
                                                     path=self.path)
        os.chmod(self.path, SOCKET_MODE)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


async def request(path: str, message: dict, timeout_s: float = 10.0) -> dict:
    """One request and its answer over ``path``, from an event loop."""
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_LINE_BYTES)
        try:
            writer.write(encode_line(message))
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()

    try:
        line = await asyncio.wait_for(exchange(), timeout_s)
    except TimeoutError:
        raise ControlError(f"{path}: no answer within {timeout_s} s") from None
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:                   # an answer line over the limit
        raise ControlError(f"{path}: {exc}") from None
    return _decode_answer(path, line)


def request_blocking(path: str, message: dict, timeout_s: float = 10.0) -> dict:
    """The same exchange with a blocking socket, for command-line tools."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(encode_line(message))
            line = bytearray()
            while not line.endswith(b"\n") and len(line) <= MAX_LINE_BYTES:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                line += chunk
    except TimeoutError:
        raise ControlError(f"{path}: no answer within {timeout_s} s") from None
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}") from None
    return _decode_answer(path, bytes(line))


def _decode_answer(path: str, line: bytes) -> dict:
    if not line.endswith(b"\n"):
        raise ControlError(f"{path}: connection closed without an answer")
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError(f"{path}: the answer is not JSON: {line[:80]!r}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: the answer is not a JSON object")
    return reply
