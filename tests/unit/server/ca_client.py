"""A CA share with a real handle store and a client sending persistent
(DH2Q) CREATEs on the test's event loop: for the create-intent tests and
their crash child (tests/unit/server/intent_crash_child.py)."""

import asyncio
import struct
import uuid

from smbca.auth import Authenticator, User, UserDatabase
from smbca.auth.legacy_crypto import nt_hash
from smbca.config import ListenAddress
from smbcad.config import Config, ServerConfig, ShareConfig
from smbcad.metrics import SmbMetrics
from smbcad.proto.constants import Command, HeaderFlags
from smbcad.proto.status import NtStatus
from smbcad.server.server import SmbServer
from smbcad.vfs import ShareFs
from tests.unit.proto import wire
from tests.unit.server import harness

CLIENT_GUID = bytes(range(100, 116))
CREATE_GUID = bytes(range(200, 216))
DH2Q_PERSISTENT = 0x00000002
FILE_CREATE, FILE_OVERWRITE_IF = 2, 5


def make_ca_server(share_dir: str, state_dir: str, user: str = harness.USER,
                   password: str = harness.PASSWORD) -> SmbServer:
    cfg = Config(
        server=ServerConfig(listen=(ListenAddress("127.0.0.1", 0),), state_dir=state_dir),
        shares=(ShareConfig(name="ca", path=share_dir, ca=True),),
    )
    users = UserDatabase.from_users([User(user, nt_hash(password))])
    auth = Authenticator(users, server_name="SMBCA", domain_name="WORKGROUP")
    return SmbServer(cfg, server_guid=uuid.UUID(int=7).bytes_le, authenticator=auth,
                     metrics=SmbMetrics(), open_share_fs=ShareFs)


def persistent_create(name: str, disposition: int, create_guid: bytes = CREATE_GUID,
                      options: int = 0x40) -> bytes:
    """CREATE (2.2.13) of ``name`` with DH2Q asking for a persistent handle
    (``options`` 0x40: FILE_NON_DIRECTORY_FILE, 0x01: FILE_DIRECTORY_FILE)."""
    dh2q = struct.pack("<II8s16s", 0, DH2Q_PERSISTENT, bytes(8), create_guid)
    return wire.create_request(name, wire.context_chain((b"DH2Q", dh2q)),
                               disposition=disposition, share=1, options=options)


class CaClient(harness.Client):
    """harness.Client whose requests run on the caller's event loop."""

    def __init__(self, server, client_guid: bytes = CLIENT_GUID) -> None:
        super().__init__(server)
        self.client_guid = client_guid

    async def login(self, user: str = harness.USER,
                    password: str = harness.PASSWORD) -> "CaClient":
        await asyncio.to_thread(self.negotiate)
        await asyncio.to_thread(self.session_setup, user, password)
        assert await asyncio.to_thread(self.tree_connect, "ca") == 0
        return self

    async def send(self, command: int, body: bytes, flags: int = 0) -> int:
        mid = self.message_id
        self.message_id += 1
        msg = bytearray(harness.header(command, mid, self.session_id, self.tree_id,
                                       flags | HeaderFlags.SIGNED) + body)
        self.signer.sign(msg)
        await self.conn.receive_frame(msg)
        return mid

    async def answer(self, mid: int, timeout_s: float = 10.0) -> bytes:
        """The final response to request ``mid`` (interim ones skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            for frame in self.sink.frames:
                if (struct.unpack_from("<Q", frame, 24)[0] == mid
                        and harness.status_of(frame) != NtStatus.PENDING):
                    return frame
            await asyncio.sleep(0.001)
        raise AssertionError(f"no answer to request {mid}")

    async def create(self, name: str, disposition: int, *, replay: bool = False,
                     create_guid: bytes = CREATE_GUID, options: int = 0x40) -> bytes:
        flags = HeaderFlags.REPLAY_OPERATION if replay else 0
        mid = await self.send(Command.CREATE,
                              persistent_create(name, disposition, create_guid, options), flags)
        return await self.answer(mid)


def create_action(reply: bytes) -> int:
    return struct.unpack_from("<I", reply, 64 + 4)[0]


def durable_file_id(reply: bytes) -> int:
    return struct.unpack_from("<Q", reply, 64 + 64)[0]
