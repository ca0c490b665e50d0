"""A small raw SMB2 client on asyncio streams, for the soak benchmark's loads
and probes (bench only, not a product client).

It speaks just enough: NEGOTIATE (3.1.1 with the test harness's contexts),
NTLM SESSION_SETUP through pyspnego, TREE_CONNECT, then signed requests that
may be pipelined within the credits the server granted.  Interim
STATUS_PENDING responses are skipped.  Requests are built with the unit
tests' wire helpers, so the bench and the tests send the same bytes.
"""

import asyncio
import struct

import spnego

from smbcad import crypto
from smbcad.proto.constants import Command, HeaderFlags
from tests.unit.proto import wire
from tests.unit.server import harness

_LENGTH = struct.Struct(">I")
STATUS_PENDING = 0x00000103
STATUS_MORE_PROCESSING = 0xC0000016
FILE_DIRECTORY_FILE, FILE_NON_DIRECTORY_FILE = 0x1, 0x40
ECHO_BODY = struct.pack("<HH", 4, 0)


def status_of(reply: bytes) -> int:
    return struct.unpack_from("<I", reply, 8)[0]


def message_id_of(reply: bytes) -> int:
    return struct.unpack_from("<Q", reply, 24)[0]


class AsyncClient:
    """One TCP connection to the server under test."""

    def __init__(self, reader, writer) -> None:
        self.reader = reader
        self.writer = writer
        self.message_id = 0
        self.session_id = 0
        self.tree_id = 0
        self.signer = None
        self.preauth = crypto.PREAUTH_INITIAL
        self.credits = 1                   # granted and not yet used

    @classmethod
    async def connect(cls, port: int, source: str = "127.0.0.1",
                      host: str = "127.0.0.1") -> "AsyncClient":
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        return cls(reader, writer)

    def close(self) -> None:
        self.writer.transport.abort()

    # --- frames -------------------------------------------------------------------

    def send(self, message: bytes) -> None:
        self.writer.write(_LENGTH.pack(len(message)) + message)

    async def receive(self) -> bytes:
        """The next frame, interim responses included; credits are counted."""
        length = _LENGTH.unpack(await self.reader.readexactly(4))[0]
        reply = await self.reader.readexactly(length)
        self.credits += struct.unpack_from("<H", reply, 14)[0]
        return reply

    async def answer(self) -> bytes:
        """The next final response."""
        while True:
            reply = await self.receive()
            if status_of(reply) != STATUS_PENDING:
                return reply

    def send_request(self, command: int, body: bytes, sign: bool = True,
                     charge: int = 1) -> int:
        """Sign and send; ``charge`` credits for a large READ or WRITE (3.3.5.2.5)."""
        mid = self.message_id
        self.message_id += charge
        self.credits -= charge
        flags = HeaderFlags.SIGNED if sign and self.signer else 0
        msg = bytearray(harness.header(command, mid, self.session_id, self.tree_id, flags,
                                       charge=charge) + body)
        if flags:
            self.signer.sign(msg)
        self.send(bytes(msg))
        return mid

    async def request(self, command: int, body: bytes, charge: int = 1) -> bytes:
        self.send_request(command, body, charge=charge)
        await self.writer.drain()
        return await self.answer()

    # --- setup --------------------------------------------------------------------

    async def negotiate(self, client_guid: bytes | None = None) -> bytes:
        msg = harness.header(Command.NEGOTIATE, 0) + harness.negotiate_body(
            client_guid=client_guid)
        self.message_id = 1
        self.credits -= 1
        self.send(msg)
        reply = await self.answer()
        self.preauth = crypto.preauth_next(crypto.preauth_next(self.preauth, msg), reply)
        return reply

    async def session_setup(self, user: str = harness.USER,
                            password: str = harness.PASSWORD) -> int:
        ntlm = spnego.client(user, password, hostname="SMBCA", protocol="negotiate")
        token = ntlm.step()
        preauth = self.preauth
        while True:
            body = struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(token), 0) + token
            msg = harness.header(Command.SESSION_SETUP, self.message_id, self.session_id) + body
            self.message_id += 1
            self.credits -= 1
            preauth = crypto.preauth_next(preauth, msg)
            self.send(msg)
            reply = await self.answer()
            status = status_of(reply)
            self.session_id = struct.unpack_from("<Q", reply, 40)[0]
            offset, length = struct.unpack_from("<HH", reply, 64 + 4)
            token = ntlm.step(reply[offset:offset + length]) if length else None
            if status != STATUS_MORE_PROCESSING:
                break
            preauth = crypto.preauth_next(preauth, reply)
        if status == 0:
            keys = crypto.derive_session_keys(0x0311, ntlm.session_key, preauth, 2)
            self.signer = crypto.make_signer(2, keys.signing)
        return status

    async def tree_connect(self, share: str = "share") -> int:
        path = f"\\\\127.0.0.1\\{share}".encode("utf-16-le")
        reply = await self.request(Command.TREE_CONNECT,
                                   struct.pack("<HHHH", 9, 0, 72, len(path)) + path)
        if status_of(reply) == 0:
            self.tree_id = struct.unpack_from("<I", reply, 36)[0]
        return status_of(reply)

    async def login(self, share: str = "share") -> "AsyncClient":
        await self.negotiate()
        status = await self.session_setup()
        if status:
            raise ConnectionError(f"SESSION_SETUP failed: 0x{status:08x}")
        status = await self.tree_connect(share)
        if status:
            raise ConnectionError(f"TREE_CONNECT failed: 0x{status:08x}")
        return self

    # --- files --------------------------------------------------------------------

    async def create(self, name: str, options: int = FILE_NON_DIRECTORY_FILE,
                     disposition: int = 3) -> tuple[int, int] | int:
        """CREATE (FILE_OPEN_IF by default): the FileId, or the failure status."""
        reply = await self.request(Command.CREATE, wire.create_request(
            name, disposition=disposition, options=options))
        if status_of(reply):
            return status_of(reply)
        return struct.unpack_from("<QQ", reply, 64 + 64)

    async def close_file(self, file_id: tuple[int, int]) -> int:
        return status_of(await self.request(Command.CLOSE, wire.close_request(*file_id)))

    async def read(self, file_id: tuple[int, int], length: int, offset: int) -> int:
        """READ; the number of data bytes returned."""
        reply = await self.request(Command.READ, wire.read_request(*file_id, length, offset),
                                   charge=-(-length // 65536))
        if status_of(reply):
            return 0
        return struct.unpack_from("<I", reply, 64 + 4)[0]

    async def list_directory(self, file_id: tuple[int, int], pattern: str = "*") -> int:
        """QUERY_DIRECTORY from the start to the end; the number of responses."""
        flags = 0x01                                    # RESTART_SCANS
        pages = 0
        while True:
            reply = await self.request(Command.QUERY_DIRECTORY, wire.query_directory_request(
                *file_id, pattern, flags=flags))
            flags = 0
            if status_of(reply):
                return pages
            pages += 1
