"""A real smbcad server (SmbServer + the TCP SmbListener) on 127.0.0.1 in an
event-loop thread, and a blocking-socket SMB client for it: for the tests of
the limits and of the no-growth churn (issue 17), which need real sockets,
real timers and the server's objects to look at.

``LoopbackServer.call(fn)`` runs ``fn`` on the server's loop and returns its
result, so a test reads the server's tables without racing it.
"""

import asyncio
import socket
import struct
import threading
import time

import spnego

from smbca.config import ListenAddress
from smbcad import crypto
from smbcad.proto.constants import Command, HeaderFlags
from smbcad.proto.status import NtStatus
from smbcad.server.connection import Connection
from smbcad.transport import SmbListener
from tests.unit.proto import wire
from tests.unit.server import harness

MAX_FRAME = 9 * 1024 * 1024
_LENGTH = struct.Struct(">I")
FILE_NOTIFY_CHANGE_FILE_NAME = 0x1
FILE_DIRECTORY_FILE, FILE_NON_DIRECTORY_FILE = 0x1, 0x40


class LoopbackServer:
    """Start with ``with LoopbackServer(share, state, **server_config) as srv``."""

    def __init__(self, share_dir: str, state_dir: str, **server_config) -> None:
        self.server = harness.make_server(share_dir, state_dir, **server_config)
        self.loop = asyncio.new_event_loop()
        self.listener = SmbListener(self.server, self._new_connection, MAX_FRAME)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def _new_connection(self, sink, peer, local_address="", local_port=0) -> Connection:
        conn = Connection(self.server, sink, peer, local_address, local_port)
        self.server.connections.add(conn)
        return conn

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        bound = self.run(self.listener.start((ListenAddress("127.0.0.1", 0),)))
        self.port = bound[0][1]
        return self

    def __exit__(self, *exc) -> None:
        self.run(self.listener.shutdown(0.0))
        self.run(self.server.settle())
        if self.server.notify_registry is not None:
            # The daemon never closes it (it lives as long as the process).
            self.call(self.server.notify_registry._port.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def run(self, coro, timeout_s: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def call(self, fn, *args):
        async def on_loop():
            return fn(*args)
        return self.run(on_loop())

    def limit_hits(self, limit: str) -> float:
        return self.server.metrics.registry.get_sample_value(
            "smbcad_limit_hits_total", {"limit": limit}) or 0.0

    def wait_for(self, predicate, timeout_s: float = 10.0) -> bool:
        """Poll ``predicate`` on the server's loop until it holds."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.call(predicate):
                return True
            time.sleep(0.02)
        return False


class SocketClient(harness.Client):
    """harness.Client over a real TCP socket: the same requests, on the wire."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        # Not harness.Client.__init__: that builds an in-process Connection.
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                             source_address=(source, 0))
        self.message_id = 0
        self.session_id = 0
        self.tree_id = 0
        self.signer = None
        self.preauth = crypto.PREAUTH_INITIAL
        self.client_guid = None

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: bytes) -> None:
        self.sock.sendall(_LENGTH.pack(len(message)) + message)

    def receive(self, timeout_s: float = 10.0) -> bytes:
        self.sock.settimeout(timeout_s)
        length = _LENGTH.unpack(self._exactly(4))[0]
        return self._exactly(length)

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by the server")
            data += chunk
        return data

    def exchange(self, frame: bytes) -> list[bytes]:
        self.send(frame)
        return [self.receive()]

    def closed_by_server(self, timeout_s: float) -> bool:
        """True once the server closes (EOF or reset) within ``timeout_s``;
        anything it sends before is read and dropped."""
        self.sock.settimeout(timeout_s)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    def still_open(self) -> bool:
        """An ECHO is answered: the connection is alive."""
        try:
            reply = self.request(Command.ECHO, struct.pack("<HH", 4, 0), sign=False)
        except (ConnectionError, OSError):
            return False
        return harness.status_of(reply) == NtStatus.SUCCESS

    def login(self) -> "SocketClient":
        self.negotiate()
        self.session_setup()
        assert self.tree_connect() == 0
        return self

    def send_request(self, command: int, body: bytes) -> int:
        """A signed request sent without waiting; returns its MessageId."""
        mid = self.message_id
        self.message_id += 1
        msg = bytearray(harness.header(command, mid, self.session_id, self.tree_id,
                                       HeaderFlags.SIGNED) + body)
        self.signer.sign(msg)
        self.send(bytes(msg))
        return mid

    def answer(self, mid: int, timeout_s: float = 10.0) -> bytes:
        """The next non-interim response, which must be ``mid``'s."""
        while True:
            reply = self.receive(timeout_s)
            if harness.status_of(reply) == NtStatus.PENDING:
                continue
            assert struct.unpack_from("<Q", reply, 24)[0] == mid, "responses out of order"
            return reply

    def create(self, name: str, options: int = FILE_NON_DIRECTORY_FILE,
               disposition: int = 3) -> tuple[int, int]:
        """CREATE (FILE_OPEN_IF by default); returns the FileId."""
        reply = self.answer(self.send_request(
            Command.CREATE, wire.create_request(name, disposition=disposition, options=options)))
        assert harness.status_of(reply) == 0, hex(harness.status_of(reply))
        return struct.unpack_from("<QQ", reply, 64 + 64)

    def notify(self, file_id: tuple[int, int]) -> int:
        """CHANGE_NOTIFY (2.2.35) on a directory, not waited for."""
        body = struct.pack("<HHI", 32, 0, 4096) + wire.file_id_bytes(*file_id) + struct.pack(
            "<II", FILE_NOTIFY_CHANGE_FILE_NAME, 0)
        return self.send_request(Command.CHANGE_NOTIFY, body)

    def start_session_setup(self) -> None:
        """NEGOTIATE done: the first SESSION_SETUP leg only (an aborted setup)."""
        ntlm = spnego.client(harness.USER, harness.PASSWORD, hostname="SMBCA",
                             protocol="negotiate")
        token = ntlm.step()
        body = struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(token), 0) + token
        (reply,) = self.exchange(harness.header(Command.SESSION_SETUP, self.message_id) + body)
        self.message_id += 1
        assert harness.status_of(reply) == NtStatus.MORE_PROCESSING_REQUIRED
