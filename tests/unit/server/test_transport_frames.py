"""The transport's framing and where a frame runs (smbcad/transport.py):
small frames are received into the listener's shared stage, several per
read or split across reads; a large one into its own buffer.  A frame runs
in the read callback only when nothing of its connection runs or waits and
no other client's event is still due; otherwise the frame loop runs it, in
order.  A real server on 127.0.0.1 and raw sockets."""

import struct
import threading
import time

import pytest

from smbcad.proto.constants import Command, HeaderFlags
from smbcad.proto.status import NtStatus
from smbcad.transport import DIRECT_FRAME
from tests.unit.proto import wire
from tests.unit.server import harness
from tests.unit.server.loopback import (
    FILE_DIRECTORY_FILE, LoopbackServer, SocketClient)

_LENGTH = struct.Struct(">I")
ECHO_BODY = struct.pack("<HH", 4, 0)


@pytest.fixture
def server(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "dir").mkdir()
    with LoopbackServer(str(share), str(tmp_path / "state")) as srv:
        srv.share_dir = share
        yield srv


def _signed(client: SocketClient, command: int, body: bytes) -> tuple[int, bytes]:
    mid = client.message_id
    client.message_id += 1
    msg = bytearray(harness.header(command, mid, client.session_id, client.tree_id,
                                   HeaderFlags.SIGNED) + body)
    client.signer.sign(msg)
    return mid, _LENGTH.pack(len(msg)) + bytes(msg)


def _answered_in_order(client: SocketClient, mids: list[int]) -> None:
    for mid in mids:
        reply = client.answer(mid)
        assert harness.status_of(reply) == NtStatus.SUCCESS


def _protocol_of(srv, client: SocketClient):
    port = client.sock.getsockname()[1]
    (protocol,) = [p for p in srv.listener._protocols
                   if p.connection.peer.endswith(f":{port}")]
    return protocol


def test_frames_back_to_back_in_one_send_are_all_answered_in_order(server):
    client = SocketClient(server.port).login()
    sent = [_signed(client, Command.ECHO, ECHO_BODY) for _ in range(40)]
    client.send_raw(b"".join(data for _, data in sent))
    _answered_in_order(client, [mid for mid, _ in sent])
    assert client.still_open()


def test_frames_split_at_every_byte_are_assembled(server):
    client = SocketClient(server.port).login()
    first, second = _signed(client, Command.ECHO, ECHO_BODY), _signed(client, Command.ECHO,
                                                                        ECHO_BODY)
    data = first[1] + second[1]
    for index in range(len(data)):
        client.send_raw(data[index:index + 1])
        time.sleep(0.001)       # one read each, most of the time
    _answered_in_order(client, [first[0], second[0]])


def test_a_large_frame_goes_to_its_own_buffer_and_the_next_one_follows(server):
    client = SocketClient(server.port).login()
    file_id = client.create("big.bin")
    data = bytes(range(256)) * ((3 * DIRECT_FRAME) // 256)
    body = wire.write_request(0, 0, 0, data)
    write = _signed(client, Command.WRITE, body[:16] + wire.file_id_bytes(*file_id) + body[32:])
    echo = _signed(client, Command.ECHO, ECHO_BODY)
    stream = write[1] + echo[1]
    # The length and a few bytes, then the rest in uneven pieces.
    for start, end in ((0, 10), (10, 5000), (5000, len(stream) - 30), (len(stream) - 30, None)):
        client.send_raw(stream[start:end])
        time.sleep(0.01)
    _answered_in_order(client, [write[0], echo[0]])
    assert (server.share_dir / "big.bin").read_bytes() == data


def test_requests_run_in_the_read_callback_and_a_wait_hands_over(server):
    client = SocketClient(server.port).login()
    protocol = server.call(_protocol_of, server, client)
    before = server.call(lambda: protocol.ran_in_callback)
    assert client.still_open()
    assert server.call(lambda: protocol.ran_in_callback) == before + 1
    # A CHANGE_NOTIFY waits: it goes async from the frame loop, and the
    # requests after it are answered meanwhile.
    directory = client.create("dir", options=FILE_DIRECTORY_FILE, disposition=1)
    notify_mid = client.notify(directory)
    interim = client.receive()
    assert harness.status_of(interim) == NtStatus.PENDING
    assert struct.unpack_from("<Q", interim, 24)[0] == notify_mid
    sent = [_signed(client, Command.ECHO, ECHO_BODY) for _ in range(3)]
    client.send_raw(b"".join(data for _, data in sent))
    _answered_in_order(client, [mid for mid, _ in sent])
    assert server.wait_for(lambda: server.listener.events_due == 0)


def test_no_frame_runs_in_a_read_callback_while_another_client_event_is_due(server):
    """A client closes one connection and sends on another while the loop is
    busy: both come in one poll.  The request must wait for the first
    connection's connection_lost, as the frame loop's order gives."""
    closing = SocketClient(server.port).login()
    other = SocketClient(server.port).login()
    protocol = server.call(_protocol_of, server, other)
    before = server.call(lambda: protocol.ran_in_callback)
    blocked, release = threading.Event(), threading.Event()

    def hold_the_loop() -> None:
        blocked.set()
        release.wait(5)
    server.loop.call_soon_threadsafe(hold_the_loop)
    assert blocked.wait(5)
    closing.close()
    mid, data = _signed(other, Command.ECHO, ECHO_BODY)
    other.send_raw(data)
    time.sleep(0.2)
    release.set()
    _answered_in_order(other, [mid])
    assert server.call(lambda: protocol.ran_in_callback) == before
    assert server.wait_for(lambda: server.listener.events_due == 0)
    assert server.wait_for(lambda: len(server.listener._protocols) == 1)
    # With nothing due any more, requests run in the read callback again.
    assert other.still_open()
    assert server.call(lambda: protocol.ran_in_callback) == before + 1


def test_events_due_returns_to_zero_after_clients_come_and_go(server):
    for _ in range(5):
        client = SocketClient(server.port).login()
        sent = [_signed(client, Command.ECHO, ECHO_BODY) for _ in range(20)]
        client.send_raw(b"".join(data for _, data in sent))
        client.close()
    assert server.wait_for(lambda: not server.listener._protocols)
    assert server.call(lambda: server.listener.events_due) == 0
