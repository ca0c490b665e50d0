"""The local control protocol every daemon speaks on its Unix socket.

One JSON object per line (UTF-8, ``\\n``) each way; every request line gets
one answer line: ``{"ok": true, ...}`` or ``{"ok": false, "error": TEXT}``.
A line that is not JSON but a bare word is shorthand for
``{"command": WORD}`` (``echo status | socat - UNIX:...``).  A request may
carry ``"version"``: a daemon refuses one it does not speak, by name, and
changes nothing (``PROTOCOL_VERSION``; the clients here send it).  Lines are at
most ``MAX_LINE_BYTES``; a longer one is answered with an error and the
connection is closed.

Who listens where (the example configs in config/ use the same paths):
smbcad on ``SMBCAD_SOCKET`` (adopt / release, the admin's SMB view; a
quick-mode smbcad in its own state directory), witnessd on
``WITNESSD_SOCKET`` (interface and move events), clusdisk on
``CLUSDISK_SOCKET`` (status).  The request vocabulary of each is its own;
the inter-daemon events are typed in ``smbca.events``.

``answer`` turns one request line into its answer line; ``ControlServer`` is
the asyncio listener around it; ``request`` and ``request_blocking`` are the
client, for daemons and for command-line tools.  Every failure is a
``ControlError``.
"""

import asyncio
import errno
import inspect
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable

log = logging.getLogger("smbca.control")

SMBCAD_SOCKET = "/run/smbca/smbcad.sock"
WITNESSD_SOCKET = "/run/smbca/witnessd.sock"
CLUSDISK_SOCKET = "/run/smbca/clusdisk.sock"
# A quick-mode smbcad (``smbcad --listen ... --share ...``) keeps its state
# and its control socket in a directory of its own under this one
# (HOST-PORT of its first listen address), where ``smbca`` looks for it.
SMBCAD_QUICK_STATE_ROOT = "/var/lib/smbca/quick"
SMBCAD_QUICK_SOCKET_NAME = "smbcad.sock"
PROTOCOL_VERSION = 1      # every request may say which it speaks ("version")
MAX_LINE_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 16 << 20   # an answer may list every open of a busy server
SOCKET_MODE = 0o600       # root only: these sockets move shares and addresses

Handler = Callable[[dict], dict | Awaitable[dict]]
"""A decoded request -> the answer's fields besides ``ok`` (or a coroutine
that returns them); raises ControlError to refuse."""


class ControlError(Exception):
    """A control request that failed: refused by the daemon (the message goes
    back as ``error``), malformed, or the daemon could not be reached."""


def decode_request(line: bytes) -> dict:
    """The request object of one line (without its newline), its ``version``
    checked and removed (absent: version 1, what every earlier release sent)."""
    word = line.strip().decode(errors="replace")
    if word.isidentifier():
        return {"command": word}
    try:
        message = json.loads(word)
    except ValueError as exc:
        raise ControlError(f"bad request: neither JSON nor a command ({exc})") from None
    if not isinstance(message, dict):
        raise ControlError("bad request: a control request is a JSON object")
    version = message.pop("version", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ControlError(f"unsupported control protocol version {version!r} "
                           f"(this daemon speaks {PROTOCOL_VERSION})")
    return message


def encode_line(message: dict) -> bytes:
    return json.dumps(message).encode() + b"\n"


async def answer(handle: Handler, line: bytes) -> bytes:
    """One request line in, one answer line (with its newline) out."""
    try:
        fields = handle(decode_request(line))
        if inspect.isawaitable(fields):
            fields = await fields
        reply = {"ok": True, **fields}
    except ControlError as exc:
        log.info("control request refused: %s", exc)
        reply = {"ok": False, "error": str(exc)}
    return encode_line(reply)


class ControlServer:
    """A daemon's control socket: ``handle`` answers each request, in order
    per connection; a daemon's verbs that must wait (adopt) are coroutines."""

    def __init__(self, path: str, handle: Handler) -> None:
        self.path = path
        self._handle = handle
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen on ``path`` (mode 0600; a stale socket file is replaced,
        one a running daemon listens on is not: OSError EADDRINUSE)."""
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o750, exist_ok=True)
        if _in_use(self.path):
            raise OSError(errno.EADDRINUSE, f"{self.path} is in use by a running daemon")
        try:
            if os.path.exists(self.path):
                os.unlink(self.path)          # left over from a previous run
        except OSError as exc:
            raise OSError(exc.errno, f"cannot replace {self.path}: {exc.strerror}") from None
        self._server = await asyncio.start_unix_server(self._serve, self.path,
                                                       limit=MAX_LINE_BYTES)
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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break                                  # the peer is done
                except asyncio.LimitOverrunError:
                    writer.write(encode_line({"ok": False, "error": "request line too long"}))
                    break
                if line.strip():
                    writer.write(await answer(self._handle, line))
                    await writer.drain()
            await writer.drain()
        except ConnectionError:
            pass                                           # the peer left without its answer
        finally:
            writer.close()


async def request(path: str, message: dict, timeout_s: float = 10.0) -> dict:
    """One request and its answer over ``path``, from an event loop."""
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_ANSWER_BYTES)
        try:
            writer.write(encode_line(_versioned(message)))
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()

    try:
        async with asyncio.timeout(timeout_s):
            line = await exchange()
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
            sock.sendall(encode_line(_versioned(message)))
            line = bytearray()
            while not line.endswith(b"\n") and len(line) <= MAX_ANSWER_BYTES:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                line += chunk
    except TimeoutError:
        raise ControlError(f"{path}: no answer within {timeout_s} s") from None
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}") from None
    return _decode_answer(path, bytes(line))


def _in_use(path: str) -> bool:
    """Something accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(path)
        except OSError:          # absent, stale (refused), not a socket
            return False
    return True


def _versioned(message: dict) -> dict:
    return message if "version" in message else {**message, "version": PROTOCOL_VERSION}


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
