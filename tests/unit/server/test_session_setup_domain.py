"""SESSION_SETUP with NTLM pass-through to a domain controller (issue 12
item 3), sans-IO: the step that calls the DC runs off the event loop
(``Offloaded``), the session's keys come from the key the DC returned, and
a refusal ends the session.  The "DC" is an NTLMv2 verifier in process
(tests/unit/auth/test_auth_netlogon.py); tests/ad uses a real one."""

import asyncio
import struct
import threading
import uuid

import pytest
import spnego

from smbca.auth import Authenticator, User, UserDatabase
from smbca.auth.legacy_crypto import nt_hash
from smbca.config import ListenAddress
from smbcad.config import Config, ServerConfig, ShareConfig
from smbcad.metrics import SmbMetrics
from smbcad.proto.constants import Command
from smbcad.proto.status import NtStatus
from smbcad.server.server import SmbServer
from smbcad.vfs import ShareFs
from tests.unit.auth.test_auth_netlogon import DOMAIN_SID, NtlmV2Verifier
from tests.unit.server.harness import PASSWORD, USER, Client, header, negotiate_body, status_of

DOMAIN_PASSWORD = "Dom-Pass1"


class GatedVerifier(NtlmV2Verifier):
    """Holds each DC call until ``gate`` is set: a slow DC."""

    def __init__(self, passwords: dict[str, str]) -> None:
        super().__init__(passwords)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def logon(self, logon):
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return super().logon(logon)


def domain_server(tmp_path, verifier) -> SmbServer:
    share = tmp_path / "share"
    share.mkdir()
    cfg = Config(server=ServerConfig(listen=(ListenAddress("127.0.0.1", 0),),
                                     state_dir=str(tmp_path / "state")),
                 shares=(ShareConfig(name="share", path=str(share)),))
    users = UserDatabase.from_users([User(USER, nt_hash(PASSWORD))])
    auth = Authenticator(users, server_name="FS1", domain_name="SMBCA", domain_logon=verifier)
    return SmbServer(cfg, server_guid=uuid.uuid4().bytes_le, authenticator=auth,
                     metrics=SmbMetrics(), open_share_fs=ShareFs)


@pytest.fixture
def verifier():
    return NtlmV2Verifier({"carol": DOMAIN_PASSWORD})


def test_domain_user_session_is_signed_with_the_dcs_key(tmp_path, verifier):
    server = domain_server(tmp_path, verifier)
    client = Client(server)
    client.negotiate()
    # session_setup checks the final response's signature with pyspnego's key.
    client.session_setup("SMBCA\\carol", DOMAIN_PASSWORD)
    session = server.sessions[client.session_id]
    assert session.identity.sid == f"{DOMAIN_SID}-1103"
    assert verifier.threads and all(name.startswith("smbca-auth") for name in verifier.threads)
    assert client.tree_connect() == 0
    server.authenticator.close()


def test_the_dcs_refusal_is_logon_failure_and_ends_the_session(tmp_path, verifier):
    server = domain_server(tmp_path, verifier)
    client = Client(server)
    client.negotiate()
    with pytest.raises(AssertionError, match="0xc000006d"):
        client.session_setup("SMBCA\\carol", "wrong")
    assert client.session_id not in server.sessions
    server.authenticator.close()


def test_local_users_still_log_on(tmp_path, verifier):
    server = domain_server(tmp_path, verifier)
    client = Client(server)
    client.negotiate()
    client.session_setup()
    assert server.sessions[client.session_id].identity.sid is None
    assert verifier.threads == []
    server.authenticator.close()


def _setup_message(message_id: int, session_id: int, token: bytes) -> bytes:
    body = struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(token), 0) + token
    return header(Command.SESSION_SETUP, message_id, session_id) + body


def test_a_slow_dc_does_not_hold_the_event_loop(tmp_path):
    """While one connection's AUTHENTICATE waits on the DC, another
    connection negotiates on the same loop."""
    verifier = GatedVerifier({"carol": DOMAIN_PASSWORD})
    server = domain_server(tmp_path, verifier)
    waiting, other = Client(server), Client(server)
    waiting.negotiate()
    ntlm = spnego.client("SMBCA\\carol", DOMAIN_PASSWORD, hostname="FS1", protocol="negotiate")
    (reply,) = waiting.exchange(_setup_message(1, 0, ntlm.step()))
    assert status_of(reply) == NtStatus.MORE_PROCESSING_REQUIRED
    session_id = struct.unpack_from("<Q", reply, 40)[0]
    offset, length = struct.unpack_from("<HH", reply, 64 + 4)
    authenticate = _setup_message(2, session_id, ntlm.step(reply[offset:offset + length]))

    async def run():
        before = len(waiting.sink.frames)
        pending = asyncio.ensure_future(waiting.conn.receive_frame(bytearray(authenticate)))
        while not verifier.entered.is_set():
            await asyncio.sleep(0.01)
        await other.conn.receive_frame(bytearray(header(Command.NEGOTIATE, 0)
                                                 + negotiate_body()))
        assert other.sink.frames and status_of(other.sink.frames[-1]) == 0
        assert len(waiting.sink.frames) == before       # still waiting on the DC
        verifier.gate.set()
        await pending
        return waiting.sink.frames[before:]
    try:
        (final,) = asyncio.run(run())
    finally:
        verifier.gate.set()
        server.authenticator.close()
    assert status_of(final) == 0
    assert server.sessions[session_id].identity.user == "carol"
