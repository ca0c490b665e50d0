"""The connection core end to end, sans-IO: negotiate, authenticate, sign,
tree connect, create/write/read/close, compounds and the credit window."""

import struct

import pytest

from smbcad.proto.constants import Command
from smbcad.proto.status import NtStatus
from tests.unit.proto import wire
from tests.unit.server.harness import Client, connected_client, make_server, status_of


@pytest.fixture
def server(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    return make_server(str(share), str(tmp_path / "state"))


def test_negotiate_picks_311_with_gmac_and_gcm(server):
    client = Client(server)
    reply = client.negotiate()
    assert status_of(reply) == 0
    assert struct.unpack_from("<H", reply, 64 + 4)[0] == 0x0311
    assert client.conn.signing_algorithm == 2 and client.conn.cipher_id == 2


def test_second_negotiate_drops_the_connection(server):
    client = Client(server)
    client.negotiate()
    client.exchange(wire.message(Command.NEGOTIATE, b"\x24\x00" + bytes(34), message_id=1))
    assert client.sink.closed


def test_a_read_buffer_the_transport_still_holds_is_not_reused(server):
    """asyncio from Python 3.12 (and uvloop) keeps a view of what the socket
    pushed back: the next READ must not overwrite it before it is sent."""
    client = connected_client(server)
    reply = client.request(Command.CREATE, wire.create_request("held.bin", disposition=5,
                                                               access=0x0012019F))
    fid = struct.unpack_from("<QQ", reply, 64 + 64)
    client.request(Command.WRITE, wire.write_request(*fid, 0, b"first second"))
    conn = client.conn
    client.request(Command.READ, wire.read_request(*fid, 5, 0))
    sent = conn.read_buffer(1)
    client.request(Command.READ, wire.read_request(*fid, 5, 0))
    assert conn.read_buffer(1) is sent              # all of it went: reused
    client.sink.held = 100                          # the last response is still queued
    client.request(Command.READ, wire.read_request(*fid, 5, 6))
    assert b"first" in bytes(sent) and b"secon" not in bytes(sent)


def test_wrong_password_is_logon_failure(server):
    client = Client(server)
    client.negotiate()
    with pytest.raises(AssertionError, match="0xc000006d"):
        client.session_setup(password="wrong")


def test_unsigned_request_after_signing_is_refused(server):
    client = connected_client(server)
    reply = client.request(Command.CREATE, wire.create_request("x"), sign=False)
    assert status_of(reply) == NtStatus.ACCESS_DENIED


def test_file_round_trip(server, tmp_path):
    client = connected_client(server)
    reply = client.request(Command.CREATE, wire.create_request("a.txt", disposition=5,
                                                               access=0x0012019F))
    assert status_of(reply) == 0
    persistent, volatile = struct.unpack_from("<QQ", reply, 64 + 64)
    reply = client.request(Command.WRITE, wire.write_request(persistent, volatile, 0, b"hello"))
    assert status_of(reply) == 0
    reply = client.request(Command.READ, wire.read_request(persistent, volatile, 5, 0))
    assert status_of(reply) == 0 and reply[80:85] == b"hello"
    reply = client.request(Command.CLOSE, wire.close_request(persistent, volatile))
    assert status_of(reply) == 0
    assert (tmp_path / "share" / "a.txt").read_bytes() == b"hello"
    # per-share counters (smbcad_share_*): bytes both ways, and every request
    # on the share (TREE_CONNECT, CREATE, WRITE, READ, CLOSE)
    sample = server.metrics.registry.get_sample_value
    assert sample("smbcad_share_written_bytes_total", {"share": "share"}) == 5
    assert sample("smbcad_share_read_bytes_total", {"share": "share"}) == 5
    assert sample("smbcad_share_operations_total", {"share": "share"}) == 5


def test_message_id_reuse_drops_the_connection(server):
    client = connected_client(server)
    client.message_id -= 1
    client.exchange(wire.message(Command.ECHO, struct.pack("<HH", 4, 0),
                                 message_id=client.message_id, session_id=client.session_id))
    assert client.sink.closed


def test_unknown_tree_is_network_name_deleted(server):
    client = connected_client(server)
    client.tree_id = 999
    reply = client.request(Command.CREATE, wire.create_request("x"))
    assert status_of(reply) == NtStatus.NETWORK_NAME_DELETED


def _smb1_negotiate(*dialects: str) -> bytes:
    """An SMB1 NEGOTIATE ([MS-CIFS] 2.2.4.52.1) as old clients send first."""
    names = b"".join(b"\x02" + d.encode() + b"\x00" for d in dialects)
    header = b"\xffSMB" + bytes([0x72]) + bytes(27)
    return header + b"\x00" + struct.pack("<H", len(names)) + names


def test_smb1_negotiate_with_wildcard_gets_smb2_response(server):
    client = Client(server)
    (reply,) = client.exchange(_smb1_negotiate("NT LM 0.12", "SMB 2.002", "SMB 2.???"))
    assert reply[:4] == b"\xfeSMB" and status_of(reply) == 0
    assert struct.unpack_from("<H", reply, 64 + 4)[0] == 0x02FF     # wildcard: SMB2 NEGOTIATE follows
    client.message_id = 1
    reply = client.negotiate_again()
    assert struct.unpack_from("<H", reply, 64 + 4)[0] == 0x0311


def test_smb1_negotiate_with_only_2002_selects_it(server):
    client = Client(server)
    (reply,) = client.exchange(_smb1_negotiate("NT LM 0.12", "SMB 2.002"))
    assert struct.unpack_from("<H", reply, 64 + 4)[0] == 0x0202


def test_smb1_negotiate_without_smb2_drops_the_connection(server):
    client = Client(server)
    client.exchange(_smb1_negotiate("NT LM 0.12"))
    assert client.sink.closed


def _signed_compound(client, requests) -> bytes:
    """Unrelated signed requests chained in one frame (3.3.5.2.7); each is
    (command, body, credit charge)."""
    frame = bytearray()
    for index, (command, body, charge) in enumerate(requests):
        msg = bytearray(wire.message(command, body, message_id=client.message_id,
                                     session_id=client.session_id, tree_id=client.tree_id,
                                     flags=0x08, credit_charge=charge, credits=256))
        client.message_id += charge
        if index < len(requests) - 1:
            msg += bytes(-len(msg) % 8)
            struct.pack_into("<I", msg, 20, len(msg))            # NextCommand
        client.signer.sign(msg)
        frame += msg
    return bytes(frame)


def test_a_compound_whose_responses_overflow_one_frame_gets_insufficient_resources(tmp_path):
    """Two 8 MiB READs in one compound would need a frame over the 24-bit
    direct-TCP length: the second gets STATUS_INSUFFICIENT_RESOURCES, the
    members after it still run, and the frame stays valid."""
    share = tmp_path / "share"
    share.mkdir()
    (share / "big").write_bytes(b"\xab" * (8 << 20))
    server = make_server(str(share), str(tmp_path / "state"))
    client = connected_client(server)
    for _ in range(3):                  # credits for 2 x 128 + 1
        client.request(Command.ECHO, struct.pack("<HH", 4, 0), charge=1)
    reply = client.request(Command.CREATE, wire.create_request("big", access=0x0012019F))
    assert status_of(reply) == 0
    fid = struct.unpack_from("<QQ", reply, 64 + 64)
    read = wire.read_request(*fid, 8 << 20, 0)
    (frame,) = client.exchange(_signed_compound(client, [
        (Command.READ, read, 128), (Command.READ, read, 128),
        (Command.ECHO, struct.pack("<HH", 4, 0), 1)]))
    assert len(frame) <= 0xFFFFFF
    first_next = struct.unpack_from("<I", frame, 20)[0]
    assert status_of(frame) == 0 and frame[64 + 16:64 + 16 + 4] == b"\xab" * 4
    second = frame[first_next:]
    assert status_of(second) == NtStatus.INSUFFICIENT_RESOURCES
    third = second[struct.unpack_from("<I", second, 20)[0]:]
    assert status_of(third) == 0 and struct.unpack_from("<H", third, 12)[0] == Command.ECHO


def test_a_session_whose_ticket_ran_out_is_expired_until_it_reauthenticates(server):
    """3.3.5.2.9: past the identity's end time (a Kerberos ticket's), requests
    get STATUS_NETWORK_SESSION_EXPIRED, except LOGOFF, CLOSE and LOCK; a
    re-authentication brings a fresh identity and the session back."""
    import dataclasses
    import time
    client = connected_client(server)
    reply = client.request(Command.CREATE, wire.create_request("a.txt", disposition=5,
                                                               access=0x0012019F))
    fid = struct.unpack_from("<QQ", reply, 64 + 64)
    session = server.sessions[client.session_id]
    session.identity = dataclasses.replace(session.identity, expires_at=time.time() - 1)
    reply = client.request(Command.WRITE, wire.write_request(*fid, 0, b"late"))
    assert status_of(reply) == NtStatus.NETWORK_SESSION_EXPIRED
    assert status_of(client.request(Command.CLOSE, wire.close_request(*fid))) == 0
    _reauthenticate(client)                    # a new identity, the same keys
    assert session.identity.expires_at is None
    reply = client.request(Command.CREATE, wire.create_request("a.txt", access=0x0012019F))
    assert status_of(reply) == 0


def _reauthenticate(client) -> None:
    """SESSION_SETUP on the live session, signed with its key (3.3.5.5.3)."""
    import spnego
    from tests.unit.server.harness import PASSWORD, USER
    ntlm = spnego.client(USER, PASSWORD, hostname="SMBCA", protocol="negotiate")
    token = ntlm.step()
    while True:
        body = struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(token), 0) + token
        reply = client.request(Command.SESSION_SETUP, body)
        offset, length = struct.unpack_from("<HH", reply, 64 + 4)
        if status_of(reply) != NtStatus.MORE_PROCESSING_REQUIRED:
            break
        token = ntlm.step(reply[offset:offset + length])
    assert status_of(reply) == 0
