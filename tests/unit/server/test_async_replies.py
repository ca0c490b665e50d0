"""Interim and final responses of asynchronous requests, through real
Connections ([MS-SMB2] 3.3.1.2, 3.3.4.2, 3.3.4.3; issue 16 item 4).

A blocked LOCK (and a CREATE waiting on a lease break) is answered twice: an
interim STATUS_PENDING that carries every credit the request earns, unsigned
("The server SHOULD NOT sign an interim response"), and a final response with
CreditResponse 0.  Samba does the same (smb2_server.c:
smbd_smb2_request_pending_timer grants through smb2_set_operation_credit and
"zero credits on the final response"), matching Windows.  The tests keep the
balance a strict client keeps -- every CreditResponse added, every
CreditCharge taken -- and check it against the server's window.
"""

import struct

from smbcad.proto.constants import Command, HeaderFlags
from smbcad.proto.status import NtStatus
from smbcad.server.credits import CreditWindow
from tests.unit.server import harness
from tests.unit.server.test_leases import (  # noqa: F401 - world is a fixture
    LEASE, RWH, KEY1, _mid, _status, create, created, lease_ack, world)

EXCLUSIVE, UNLOCK = 0x2, 0x4


def lock_body(file_id, offset: int, length: int, flags: int) -> bytes:
    """LOCK Request (2.2.26) with one element."""
    return struct.pack("<HHIQQ", 48, 1, 0, *file_id) + struct.pack("<QQII", offset, length,
                                                                     flags, 0)


def send(client, command: int, body: bytes, credits: int) -> int:
    mid = client.message_id
    client.message_id += 1
    msg = bytearray(harness.header(command, mid, client.session_id, client.tree_id,
                                   HeaderFlags.SIGNED, credits=credits) + body)
    client.signer.sign(msg)
    client.exchange(bytes(msg))
    return mid


def replies_to(client, mid: int) -> list[bytes]:
    return [frame for frame in client.sink.frames if _mid(frame) == mid]


def credits_of(frame) -> int:
    return struct.unpack_from("<H", frame, 14)[0]


def flags_of(frame) -> int:
    return struct.unpack_from("<I", frame, 16)[0]


def client_balance(client) -> int:
    """What a strict client believes it may still use: all CreditResponses
    received minus the MessageIds it has used."""
    granted = 1 + sum(credits_of(f) for f in client.sink.frames
                      if _mid(f) != 0xFFFFFFFFFFFFFFFF)
    return granted - client.message_id


def assert_interim_then_final(frames, requested: int) -> None:
    interim, final = frames
    assert _status(interim) == NtStatus.PENDING
    assert flags_of(interim) & HeaderFlags.ASYNC_COMMAND
    assert not flags_of(interim) & HeaderFlags.SIGNED
    assert interim[48:64] == bytes(16)
    # ERROR body, ByteCount 0, the one ErrorData byte Windows sends (0x21).
    assert interim[64:] == struct.pack("<HBBI", 9, 0, 0, 0) + b"\x21"
    assert credits_of(interim) == requested
    assert _status(final) != NtStatus.PENDING
    assert flags_of(final) & HeaderFlags.ASYNC_COMMAND
    assert flags_of(final) & HeaderFlags.SIGNED
    assert credits_of(final) == 0
    assert final[32:40] == interim[32:40]             # the same AsyncId


def test_blocked_lock_grants_on_the_interim_and_zero_on_the_final(world):
    _, one, two, _ = world
    _, file_one, _ = created(one.final(create(one, "f")))
    _, file_two, _ = created(two.final(create(two, "f")))
    assert _status(one.final(send(one, Command.LOCK, lock_body(file_one, 0, 10, EXCLUSIVE), 1))) == 0

    blocked = send(two, Command.LOCK, lock_body(file_two, 0, 10, EXCLUSIVE), 3)
    assert [_status(f) for f in replies_to(two, blocked)] == [NtStatus.PENDING]
    send(one, Command.LOCK, lock_body(file_one, 0, 10, UNLOCK), 1)

    frames = replies_to(two, blocked)
    assert_interim_then_final(frames, requested=3)
    assert _status(frames[1]) == NtStatus.SUCCESS
    assert two.signer.verify(bytearray(frames[1]))
    assert client_balance(two) == two.conn.credits.granted
    assert client_balance(one) == one.conn.credits.granted


def test_create_waiting_on_a_lease_break_grants_once(world):
    _, one, two, _ = world
    created(one.final(create(one, "g", oplock=LEASE, lease=(KEY1, RWH))))
    mid = create(two, "g")
    lease_ack(one, KEY1, 0x3)
    frames = replies_to(two, mid)
    assert_interim_then_final(frames, requested=64)    # harness.header asks for 64
    assert _status(frames[1]) == NtStatus.SUCCESS
    assert client_balance(two) == two.conn.credits.granted


def test_multi_credit_request_gets_at_least_its_charge_back():
    # 3.3.1.2: granting the number consumed keeps the client's balance level.
    window = CreditWindow(8192)
    window.grant(64, 1)
    window.consume(1, 4)
    assert window.grant(1, 4) == 4
    assert window.grant(0, 1) == 1
    assert window.grant(10, 4) == 10
