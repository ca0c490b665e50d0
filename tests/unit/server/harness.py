"""A sans-IO client for driving ``Connection`` in unit tests (STYLE rule 14:
two real state machines wired together, no mocks).

The server side is the real one: SmbServer with a ShareFs on a temp dir and
the real Authenticator.  The client side builds requests with the proto
codecs' wire layouts, authenticates with pyspnego (an independent NTLM
client) and signs with smbcad.crypto, as STYLE rule 7 intends.
"""

import asyncio
import os
import struct
import uuid

import spnego

from smbca.auth import Authenticator, User, UserDatabase
from smbca.auth.legacy_crypto import nt_hash
from smbca.config import ListenAddress
from smbcad import crypto
from smbcad.config import Config, ServerConfig, ShareConfig
from smbcad.metrics import SmbMetrics
from smbcad.openstate.db import OpenStateDb
from smbcad.proto.constants import Command, HeaderFlags
from smbcad.proto.header import Smb2Header
from smbcad.server.connection import Connection
from smbcad.server.server import SmbServer
from smbcad.vfs import ShareFs

USER, PASSWORD = "alice", "secret"


class MemorySink:
    """Collects what the connection sends; stands where the transport would."""

    def __init__(self, rto_s: float | None = None) -> None:
        self.frames: list[bytes] = []
        self.closed = False
        self.rto_s = rto_s             # None: not TCP, nobody watches deliveries
        self.sent = 0
        self.acked_upto: int | None = None     # None: the peer takes in everything
        self.was_reset = False
        self.held = 0                  # bytes a transport would not have sent yet

    def send(self, parts) -> None:
        self.frames.append(b"".join(bytes(p) for p in parts))
        self.sent += 4 + len(self.frames[-1])

    def send_frame(self, frame) -> None:
        self.frames.append(bytes(frame[4:]))
        self.sent += len(frame)

    def stall(self) -> None:
        """The client stops acknowledging (its link cut): what was sent so far
        stays the last byte acknowledged."""
        self.acked_upto = self.sent

    def bytes_sent(self) -> int:
        return self.sent

    def bytes_acked(self) -> int | None:
        return self.sent if self.acked_upto is None else self.acked_upto

    def retransmission_timeout_s(self) -> float | None:
        return self.rto_s

    def close(self) -> None:
        self.closed = True

    def reset(self) -> None:
        self.closed = self.was_reset = True

    def stop_reading(self) -> None:
        self.reading = False

    def hold_requests(self) -> None:
        self.holding = True

    def half_close(self) -> None:
        self.close()                        # the client answers a FIN by closing

    def quiet(self) -> bool:
        return True

    def unsent(self) -> int:
        """What the transport would still hold: tests set ``held``."""
        return self.held

    def dropped(self) -> int:
        return 1


def make_server(share_dir: str, state_dir: str, open_state=None,
                **server_overrides) -> SmbServer:
    cfg = Config(
        server=ServerConfig(listen=(ListenAddress("127.0.0.1", 0),), state_dir=state_dir,
                            **server_overrides),
        shares=(ShareConfig(name="share", path=share_dir),),
    )
    users = UserDatabase.from_users([User(USER, nt_hash(PASSWORD))])
    auth = Authenticator(users, server_name="SMBCA", domain_name="WORKGROUP")
    # Over LMDB, as a node of several worker processes runs: the server-level
    # unit tests cover that store, the daemon's own tests the in-memory one.
    return SmbServer(cfg, server_guid=uuid.uuid4().bytes_le, authenticator=auth,
                     metrics=SmbMetrics(), open_share_fs=ShareFs,
                     open_state=open_state or OpenStateDb.private())


def header(command: int, message_id: int, session_id: int = 0, tree_id: int = 0,
           flags: int = 0, credits: int = 64, charge: int = 1) -> bytes:
    return Smb2Header(command=command, message_id=message_id, flags=flags, credits=credits,
                      credit_charge=charge, session_id=session_id, tree_id=tree_id).encode()


def negotiate_body(dialects=(0x0202, 0x0210, 0x0300, 0x0302, 0x0311),
                   client_guid: bytes | None = None) -> bytes:
    """NEGOTIATE with the 3.1.1 preauth, encryption and signing contexts (2.2.3);
    a random ClientGuid unless one is given."""
    fixed = 36 + 2 * len(dialects)
    pad = (-(64 + fixed)) % 8
    ctx_offset = 64 + fixed + pad
    salt = os.urandom(32)
    contexts = [
        struct.pack("<HHI", 1, 6 + len(salt), 0) + struct.pack("<HHH", 1, len(salt), 1) + salt,
        struct.pack("<HHI", 2, 6, 0) + struct.pack("<HHH", 2, 2, 1),
        struct.pack("<HHI", 8, 6, 0) + struct.pack("<HHH", 2, 2, 1),
    ]
    blob = b""
    for index, ctx in enumerate(contexts):
        if index:
            blob += b"\x00" * ((-len(blob)) % 8)
        blob += ctx
    body = struct.pack("<HHHHI16sIHH", 36, len(dialects), 1, 0, 0x7F,
                       client_guid or uuid.uuid4().bytes,
                       ctx_offset, len(contexts), 0)
    body += struct.pack(f"<{len(dialects)}H", *dialects) + b"\x00" * pad + blob
    return body


class Client:
    """Drives one Connection: negotiate, authenticate, tree connect, then requests."""

    def __init__(self, server: SmbServer) -> None:
        self.server = server
        self.sink = MemorySink()
        self.conn = Connection(server, self.sink, "test:1")
        self.message_id = 0
        self.session_id = 0
        self.tree_id = 0
        self.signer = None
        self.preauth = crypto.PREAUTH_INITIAL
        self.client_guid: bytes | None = None      # None: a random one per NEGOTIATE

    def exchange(self, frame: bytes) -> list[bytes]:
        before = len(self.sink.frames)
        asyncio.run(self.conn.receive_frame(bytearray(frame)))
        return self.sink.frames[before:]

    def message(self, command: int, body: bytes, sign: bool = True,
                charge: int = 1) -> bytearray:
        """The next request of this client, signed once it has a session."""
        mid = self.message_id
        self.message_id += max(charge, 1)
        flags = HeaderFlags.SIGNED if sign and self.signer else 0
        msg = bytearray(header(command, mid, self.session_id, self.tree_id, flags,
                               charge=charge) + body)
        if flags:
            self.signer.sign(msg)
        return msg

    def request(self, command: int, body: bytes, sign: bool = True, charge: int = 1) -> bytes:
        replies = self.exchange(bytes(self.message(command, body, sign, charge)))
        assert len(replies) == 1, replies
        return replies[0]

    def negotiate(self) -> bytes:
        msg = header(Command.NEGOTIATE, 0) + negotiate_body(client_guid=self.client_guid)
        self.message_id = 1
        (reply,) = self.exchange(msg)
        self.preauth = crypto.preauth_next(crypto.preauth_next(self.preauth, msg), reply)
        return reply

    def negotiate_again(self) -> bytes:
        """The SMB2 NEGOTIATE that follows an SMB1 one answered with 0x02FF."""
        msg = header(Command.NEGOTIATE, self.message_id) + negotiate_body()
        self.message_id += 1
        (reply,) = self.exchange(msg)
        return reply

    def session_setup(self, user: str = USER, password: str = PASSWORD) -> int:
        ntlm = spnego.client(user, password, hostname="SMBCA", protocol="negotiate")
        token = ntlm.step()
        preauth = self.preauth
        while True:
            body = struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(token), 0) + token
            msg = header(Command.SESSION_SETUP, self.message_id, self.session_id) + body
            self.message_id += 1
            preauth = crypto.preauth_next(preauth, msg)
            (reply,) = self.exchange(msg)
            status = struct.unpack_from("<I", reply, 8)[0]
            self.session_id = struct.unpack_from("<Q", reply, 40)[0]
            offset, length = struct.unpack_from("<HH", reply, 64 + 4)
            token = ntlm.step(reply[offset:offset + length]) if length else None
            if status != 0xC0000016:
                break
            preauth = crypto.preauth_next(preauth, reply)
        assert status == 0, hex(status)
        keys = crypto.derive_session_keys(0x0311, ntlm.session_key, preauth, 2)
        self.signer = crypto.make_signer(2, keys.signing)
        assert self.signer.verify(bytearray(reply)), "final SESSION_SETUP must be signed"
        return status

    def tree_connect(self, share: str = "share") -> int:
        path = f"\\\\127.0.0.1\\{share}".encode("utf-16-le")
        reply = self.request(Command.TREE_CONNECT, struct.pack("<HHHH", 9, 0, 72, len(path)) + path)
        status = struct.unpack_from("<I", reply, 8)[0]
        if status == 0:
            self.tree_id = struct.unpack_from("<I", reply, 36)[0]
        return status


def status_of(reply: bytes) -> int:
    return struct.unpack_from("<I", reply, 8)[0]


def connected_client(server: SmbServer) -> Client:
    client = Client(server)
    client.negotiate()
    client.session_setup()
    assert client.tree_connect() == 0
    return client
