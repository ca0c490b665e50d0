"""Multichannel: session binding ([MS-SMB2] 3.3.5.5.2, 3.3.5.5.3), per-channel
signing keys, channel loss and LOGOFF (3.3.7.1, 3.3.5.6), driven through the
real Connection with an independent NTLM client (pyspnego)."""

import asyncio
import struct
import uuid
from types import SimpleNamespace

import pytest
import spnego

from tests.unit.server.harness import PASSWORD, USER, Client, header, make_server, negotiate_body, status_of
from smbca.auth import Authenticator, User, UserDatabase
from smbca.auth.legacy_crypto import nt_hash
from smbcad import crypto
from smbcad.proto.constants import Command, Dialect, HeaderFlags, SigningAlgorithmId
from smbcad.proto.status import NtStatus
from smbcad.server import channels
from smbcad.server.adm import SessionState

MULTI_CHANNEL = 0x08
BINDING = 0x01
MORE_PROCESSING = 0xC0000016


def _server(tmp_path, **config):
    share = tmp_path / "share"
    share.mkdir()
    srv = make_server(str(share), str(tmp_path / "state"), **config)
    users = UserDatabase.from_users([User(USER, nt_hash(PASSWORD)),
                                     User("bob", nt_hash("other"))])
    srv.authenticator = Authenticator(users, server_name="SMBCA", domain_name="WORKGROUP")
    return srv


@pytest.fixture
def server(tmp_path):
    return _server(tmp_path)


def _first(server) -> Client:
    client = Client(server)
    client.client_guid = uuid.uuid4().bytes
    client.negotiate()
    client.session_setup()
    assert client.tree_connect() == 0
    return client


def _channel(server, first: Client, client_guid: bytes | None = None, dialects=None) -> Client:
    """A new connection of the same client (ClientGuid), negotiated only."""
    second = Client(server)
    second.client_guid = first.client_guid if client_guid is None else client_guid
    if dialects is None:
        second.negotiate()
    else:
        msg = header(Command.NEGOTIATE, 0) + negotiate_body(dialects, second.client_guid)
        second.message_id = 1
        second.exchange(msg)
    return second


def _bind(second: Client, first: Client, *, user=USER, password=PASSWORD, signed=True,
          signer=None):
    """SESSION_SETUP rounds with SMB2_SESSION_FLAG_BINDING on ``second`` for
    ``first``'s session.  Returns (status, final reply, channel signing key)."""
    ntlm = spnego.client(user, password, hostname="SMBCA", protocol="negotiate")
    token = ntlm.step()
    preauth = second.preauth
    signer = signer or first.signer
    while True:
        body = struct.pack("<HBBIIHHQ", 25, BINDING, 1, 0, 0, 88, len(token), 0) + token
        msg = bytearray(header(Command.SESSION_SETUP, second.message_id, first.session_id,
                               flags=HeaderFlags.SIGNED if signed else 0) + body)
        if signed:
            signer.sign(msg)
        second.message_id += 1
        preauth = crypto.preauth_next(preauth, msg)
        (reply,) = second.exchange(bytes(msg))
        status = status_of(reply)
        if status != MORE_PROCESSING:
            break
        # Interim bind responses are signed with Session.SigningKey.
        assert first.signer.verify(bytearray(reply))
        preauth = crypto.preauth_next(preauth, reply)
        offset, length = struct.unpack_from("<HH", reply, 64 + 4)
        token = ntlm.step(reply[offset:offset + length])
    key = None
    if status == 0:
        key = crypto.derive_signing_key(Dialect.SMB_3_1_1, ntlm.session_key, preauth)
    return status, reply, key


def _bound(server, first: Client) -> Client:
    second = _channel(server, first)
    status, _, key = _bind(second, first)
    assert status == 0
    second.session_id = first.session_id
    second.tree_id = first.tree_id
    second.signer = crypto.make_signer(SigningAlgorithmId.AES_GMAC, key)
    return second


# --- NEGOTIATE: the capability (2.2.4) ------------------------------------------------


def test_negotiate_advertises_multichannel_on_3x_only(server):
    client = Client(server)
    reply = client.negotiate()
    # 2.2.4 Capabilities: LEASING 0x02 | LARGE_MTU 0x04 | MULTI_CHANNEL 0x08 |
    # DIRECTORY_LEASING 0x20 (no handle store here, so no PERSISTENT_HANDLES).
    assert struct.unpack_from("<I", reply, 64 + 24)[0] == 0x0000002E
    older = Client(server)
    (reply,) = older.exchange(header(Command.NEGOTIATE, 0) + negotiate_body((0x0202, 0x0210)))
    assert struct.unpack_from("<I", reply, 64 + 24)[0] & MULTI_CHANNEL == 0


def test_multichannel_off_is_not_advertised_and_refuses_binds(tmp_path):
    server = _server(tmp_path, multichannel=False)
    probe = Client(server)
    assert struct.unpack_from("<I", probe.negotiate(), 64 + 24)[0] & MULTI_CHANNEL == 0
    first = _first(server)
    second = _channel(server, first)
    status, _, _ = _bind(second, first)
    assert status == NtStatus.REQUEST_NOT_ACCEPTED


# --- binding ----------------------------------------------------------------------


def test_bind_signs_final_response_with_the_channel_key(server):
    first = _first(server)
    second = _channel(server, first)
    status, reply, key = _bind(second, first)
    assert status == 0
    # SESSION_SETUP response: StructureSize 9, SessionFlags 0 (Samba sends
    # none on a bind), SecurityBufferOffset 0x48.
    assert reply[64:70] == bytes.fromhex("0900 0000 4800")
    assert struct.unpack_from("<Q", reply, 40)[0] == first.session_id
    assert reply[16] & HeaderFlags.SIGNED
    channel_signer = crypto.make_signer(SigningAlgorithmId.AES_GMAC, key)
    assert channel_signer.verify(bytearray(reply))
    assert not first.signer.verify(bytearray(reply))
    session = server.sessions[first.session_id]
    assert set(session.channels) == {first.conn, second.conn}


def test_binding_an_encrypting_session_is_signed_not_encrypted(server):
    """The binding connection's responses are signed (interim: session key,
    final: channel key), never encrypted, as Samba answers; later requests on
    the channel are encrypted with the session's shared key."""
    first = _first(server)
    session = server.sessions[first.session_id]
    assert session.encryptor is not None
    session.encrypt_data = True
    second = _channel(server, first)
    status, reply, key = _bind(second, first)          # asserts each signature
    assert status == 0 and reply[:4] == b"\xfeSMB"
    assert crypto.make_signer(SigningAlgorithmId.AES_GMAC, key).verify(bytearray(reply))


def test_the_first_session_setup_of_an_encrypting_session_answers_signed_in_the_clear(
        tmp_path):
    """[MS-SMB2] 3.3.5.5.3, 3.3.4.1.4: the request was not encrypted, so
    neither is the final response; it is signed with the new key (3.1.1)
    and says ENCRYPT_DATA, as smbd answers."""
    client = Client(_server(tmp_path, encryption="required"))
    client.negotiate()
    client.session_setup()                  # asserts the final response's signature
    reply = client.sink.frames[-1]
    assert reply[:4] == b"\xfeSMB" and status_of(reply) == 0
    assert struct.unpack_from("<H", reply, 64 + 2)[0] & 0x0004     # SESSION_FLAG_ENCRYPT_DATA


def test_requests_on_a_channel_use_its_own_key(server):
    first = _first(server)
    second = _bound(server, first)
    assert second.tree_connect() == 0
    wrong = Client(server)
    wrong.conn, wrong.sink = second.conn, second.sink
    wrong.message_id, wrong.session_id = second.message_id, first.session_id
    wrong.signer = first.signer               # Session.SigningKey is not this channel's
    reply = wrong.request(Command.TREE_CONNECT, struct.pack("<HHHH", 9, 0, 72, 0))
    assert status_of(reply) == NtStatus.ACCESS_DENIED


def test_a_second_bind_on_a_bound_connection_is_refused(server):
    first = _first(server)
    second = _bound(server, first)
    status, _, _ = _bind(second, first, signer=second.signer)
    assert status == NtStatus.REQUEST_NOT_ACCEPTED
    status, _, _ = _bind(second, first)            # signed with the session's key
    assert status == NtStatus.ACCESS_DENIED


@pytest.mark.parametrize("case, expected", [
    ("unsigned", NtStatus.INVALID_PARAMETER),
    ("other_client_guid", NtStatus.USER_SESSION_DELETED),
    # The session signs with AES-GMAC (the harness offers it), which a 3.0.2
    # or 2.1 connection cannot: that is checked first, as Samba does.
    ("other_dialect", NtStatus.REQUEST_OUT_OF_SEQUENCE),
    ("smb2_connection", NtStatus.REQUEST_OUT_OF_SEQUENCE),
    ("bad_signature", NtStatus.ACCESS_DENIED),
    ("other_user", NtStatus.ACCESS_DENIED),
    ("bad_password", NtStatus.LOGON_FAILURE),
])
def test_refused_binds_leave_the_session_alone(server, case, expected):
    first = _first(server)
    kwargs = {}
    second_kwargs = {}
    if case == "unsigned":
        kwargs["signed"] = False
    elif case == "other_client_guid":
        second_kwargs["client_guid"] = uuid.uuid4().bytes
    elif case == "other_dialect":
        second_kwargs["dialects"] = (0x0302,)
    elif case == "smb2_connection":
        second_kwargs["dialects"] = (0x0210,)
    elif case == "bad_signature":
        kwargs["signer"] = crypto.make_signer(SigningAlgorithmId.AES_GMAC, b"k" * 16)
    elif case == "other_user":
        kwargs.update(user="bob", password="other")
    elif case == "bad_password":
        kwargs["password"] = "wrong"
    second = _channel(server, first, **second_kwargs)
    status, _, _ = _bind(second, first, **kwargs)
    assert status == expected
    session = server.sessions[first.session_id]
    assert list(session.channels) == [first.conn]
    assert not second.conn.bindings and not second.conn.sessions
    assert first.tree_connect() == 0                 # the session still works


def test_bind_to_an_unknown_session_is_user_session_deleted(server):
    """As after a failover: sessions are not mirrored, so the client sets up
    a new one and reconnects its handles."""
    first = _first(server)
    second = _channel(server, first)
    first.session_id ^= 0x1
    status, _, _ = _bind(second, first)
    assert status == NtStatus.USER_SESSION_DELETED


def test_channel_limit(tmp_path):
    server = _server(tmp_path, max_channels_per_session=2)
    first = _first(server)
    _bound(server, first)
    status, _, _ = _bind(_channel(server, first), first)
    assert status == NtStatus.INSUFFICIENT_RESOURCES


# --- losing a channel, LOGOFF -----------------------------------------------------


def test_losing_one_channel_keeps_the_session_and_its_trees(server):
    first = _first(server)
    second = _bound(server, first)
    first.conn.connection_lost()
    session = server.sessions[first.session_id]
    assert session.connection is second.conn
    assert list(session.channels) == [second.conn]
    assert second.tree_connect() == 0
    second.conn.connection_lost()
    assert first.session_id not in server.sessions


def test_logoff_on_one_channel_ends_the_session_on_all(server):
    first = _first(server)
    second = _bound(server, first)
    reply = second.request(Command.LOGOFF, struct.pack("<HH", 4, 0))
    assert status_of(reply) == 0
    assert second.signer.verify(bytearray(reply))       # with that channel's key
    assert first.session_id not in server.sessions
    assert not first.conn.sessions and not second.conn.sessions
    reply = first.request(Command.TREE_CONNECT, struct.pack("<HHHH", 9, 0, 72, 0))
    assert status_of(reply) == NtStatus.USER_SESSION_DELETED


# --- the rule, pure ---------------------------------------------------------------


def _session(**fields):
    base = dict(signing_algorithm=SigningAlgorithmId.AES_CMAC, dialect=Dialect.SMB_3_1_1,
                cipher_id=0, state=SessionState.VALID, is_guest_or_anonymous=False,
                client_guid=b"g" * 16, channels={object(): None})
    base.update(fields)
    return SimpleNamespace(**base)


def _conn(**fields):
    base = dict(signing_algorithm=SigningAlgorithmId.AES_CMAC, dialect=Dialect.SMB_3_1_1,
                cipher_id=0, client_guid=b"g" * 16)
    base.update(fields)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("session, conn, signed, expected", [
    ({}, {}, True, None),
    ({"signing_algorithm": SigningAlgorithmId.AES_GMAC}, {}, True,
     NtStatus.REQUEST_OUT_OF_SEQUENCE),
    ({}, {"signing_algorithm": SigningAlgorithmId.AES_GMAC}, True, NtStatus.NOT_SUPPORTED),
    ({}, {"signing_algorithm": SigningAlgorithmId.HMAC_SHA256}, True, None),
    ({"dialect": Dialect.SMB_2_1}, {"dialect": Dialect.SMB_2_1}, True,
     NtStatus.REQUEST_NOT_ACCEPTED),
    ({}, {}, False, NtStatus.INVALID_PARAMETER),
    ({"dialect": Dialect.SMB_3_0_2}, {}, True, NtStatus.INVALID_PARAMETER),
    ({"cipher_id": 2}, {"cipher_id": 1}, True, NtStatus.INVALID_PARAMETER),
    ({"state": SessionState.IN_PROGRESS}, {}, True, NtStatus.REQUEST_NOT_ACCEPTED),
    ({"state": SessionState.EXPIRED}, {}, True, NtStatus.NETWORK_SESSION_EXPIRED),
    ({"is_guest_or_anonymous": True}, {}, True, NtStatus.NOT_SUPPORTED),
    ({}, {"client_guid": b"h" * 16}, True, NtStatus.USER_SESSION_DELETED),
    # The dialect is checked before the ClientGuid (smb2.session.bind_negative_smb2to3d).
    ({"dialect": Dialect.SMB_2_1}, {"client_guid": b"h" * 16}, True, NtStatus.INVALID_PARAMETER),
])
def test_bind_refusal_order(session, conn, signed, expected):
    refusal = channels.bind_refusal(_session(**session), _conn(**conn), signed=signed,
                                    multichannel=True, max_channels=32)
    assert (refusal[0] if refusal else None) == expected


def test_bind_refusal_limits():
    assert channels.bind_refusal(_session(), _conn(), signed=True, multichannel=False,
                                 max_channels=32)[0] == NtStatus.REQUEST_NOT_ACCEPTED
    refusal = channels.bind_refusal(_session(), _conn(), signed=True, multichannel=True,
                                    max_channels=1)
    assert refusal[0] == NtStatus.INSUFFICIENT_RESOURCES
    assert "server.max_channels_per_session" in refusal[1]


class _Conn:
    def __init__(self, closed: bool) -> None:
        self.closed = closed


def test_leave_moves_the_session_to_a_live_channel():
    first, second = _Conn(closed=True), _Conn(closed=False)
    session = SimpleNamespace(connection=first, channels={first: None, second: None})
    assert channels.leave(session, first)
    assert session.connection is second
    assert not channels.leave(session, second)


def test_pending_waits_when_a_channel_dies(server):
    """A CREATE waiting for a break (no cancel of its own) keeps going when
    its channel dies and another lives (smb2.replay dhv2-pending2*); a wait
    only a cancel ends (CHANGE_NOTIFY) is cancelled as a CANCEL would."""
    first = _first(server)
    _bound(server, first)
    session = server.sessions[first.session_id]
    conn = first.conn

    async def scenario():
        from smbcad.server.connection import _AsyncRequest
        from smbcad.server.context import Pending
        loop = asyncio.get_running_loop()
        cancels = []
        kept = _AsyncRequest(SimpleNamespace(session=session), 1,
                             Pending(loop.create_future(), 0, None))
        kept.task = loop.create_task(asyncio.sleep(0.01))
        ended = _AsyncRequest(SimpleNamespace(session=session), 2,
                              Pending(loop.create_future(), 0, lambda: cancels.append(2)))
        ended.task = loop.create_task(asyncio.sleep(0.01))
        conn.pending = {1: kept, 2: ended}
        conn.connection_lost()
        assert kept.session_survives and ended.session_survives
        assert cancels == [2]
        assert not kept.task.cancelled() and not ended.task.cancelled()
        await asyncio.gather(kept.task, ended.task)
    asyncio.run(scenario())


def _signed(client: Client, command: int, body: bytes) -> bytes:
    msg = bytearray(header(command, client.message_id, client.session_id, client.tree_id,
                           flags=HeaderFlags.SIGNED) + body)
    client.message_id += 1
    client.signer.sign(msg)
    return bytes(msg)


def test_a_wait_cancelled_with_its_channel_is_uncounted(server):
    """A CHANGE_NOTIFY pending on a channel that dies is cancelled, and its
    Open.OutstandingRequestCount (3.3.5.2.10) is given back, so later
    replays on the surviving channel are not refused for it."""
    from tests.unit.proto import wire
    first = _first(server)
    second = _bound(server, first)

    async def scenario():
        await first.conn.receive_frame(bytearray(_signed(first, Command.CREATE, wire.create_request(
            "dir", disposition=3, options=0x1, access=0x00100081))))
        reply = first.sink.frames[-1]
        assert status_of(reply) == 0
        persistent, volatile = struct.unpack_from("<QQ", reply, 64 + 64)
        open_ = server.opens.by_persistent_id[persistent]
        notify = struct.pack("<HHIQQII", 32, 0, 4096, persistent, volatile, 0x17, 0)
        await first.conn.receive_frame(bytearray(_signed(first, Command.CHANGE_NOTIFY, notify)))
        assert first.conn.pending and open_.outstanding_requests == 1
        first.conn.connection_lost()
        for _ in range(5):
            await asyncio.sleep(0)
        assert open_.outstanding_requests == 0 and not open_.closed
        assert open_.session is server.sessions[first.session_id]
        close = struct.pack("<HHIQQ", 24, 0, 0, persistent, volatile)
        await second.conn.receive_frame(bytearray(_signed(second, Command.CLOSE, close)))
        assert status_of(second.sink.frames[-1]) == 0
    asyncio.run(scenario())
