"""Passing a connection between workers (smbcad/workers/handoff.py): a real
TCP connection handed to a second process mid-stream, and malformed handoff
messages over a real SOCK_SEQPACKET pair, counting this process's open
descriptors."""

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import stat

import pytest

from smbcad.workers.handoff import (
    HEADER, VERSION, ChannelClosed, HandoffError, HandoffListener, connect, handoff_path,
    receive_connection, send_connection)
from smbcad.workers.routing import MAX_HANDOFF_BYTES

FIRST = bytes(range(256)) + b"first part, partly read by worker 0"   # 291 bytes
ALREADY_READ = 100
SECOND = b"sent after the handoff" * 5


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, f"EOF after {len(data)} of {count} bytes"
        data += chunk
    return bytes(data)


def _owner_worker(directory: str, ready, expected: int) -> None:
    """Worker 1 in another process: takes one handed-off connection, reads
    the rest of the client's bytes from it and echoes everything back."""
    async def first_handoff():
        loop = asyncio.get_running_loop()
        arrived = loop.create_future()

        def on_connection(conn, already_read):
            if arrived.done():
                conn.close()
            else:
                arrived.set_result((conn, already_read))

        with HandoffListener(directory, 1) as listener:
            listener.attach(loop, on_connection)
            ready.set()
            return await asyncio.wait_for(arrived, 60)

    conn, already_read = asyncio.run(first_handoff())
    with conn:
        conn.settimeout(30)
        received = already_read + recv_exactly(conn, expected - len(already_read))
        conn.sendall(received)
        conn.shutdown(socket.SHUT_WR)


def test_a_tcp_connection_moves_to_another_process_mid_stream(tmp_path):
    directory = str(tmp_path / "workers")
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_owner_worker,
                            args=(directory, ready, len(FIRST) + len(SECOND)))
    child.start()
    server = socket.create_server(("127.0.0.1", 0))
    client = accepted = channel = None
    try:
        assert ready.wait(60)
        client = socket.create_connection(server.getsockname(), timeout=30)
        accepted, _ = server.accept()
        client.sendall(FIRST)
        already_read = accepted.recv(ALREADY_READ, socket.MSG_WAITALL)
        assert already_read == FIRST[:ALREADY_READ]
        channel = connect(directory, 1)
        send_connection(channel, accepted, already_read)
        accepted.close()
        channel.close()
        client.sendall(SECOND)
        echoed = bytearray()
        while chunk := client.recv(65536):
            echoed += chunk
        assert echoed == FIRST + SECOND
        child.join(30)
        assert child.exitcode == 0
        assert not os.path.exists(handoff_path(directory, 1))
    finally:
        for sock in (client, accepted, channel, server):
            if sock is not None:
                sock.close()
        if child.exitcode is None:
            os.kill(child.pid, signal.SIGKILL)
            child.join()


@pytest.fixture
def channel_pair():
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield sender, receiver
    sender.close()
    receiver.close()


def _pipe_read_end() -> list[int]:
    read_end, write_end = os.pipe()
    os.close(write_end)
    return [read_end]


def _stream_sockets(count: int):
    def make() -> list[int]:
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
        return [sock.detach() for sock in sockets]
    return make


def _datagram_socket() -> list[int]:
    return [socket.socket(socket.AF_INET, socket.SOCK_DGRAM).detach()]


GOOD_HEADER = HEADER.pack(VERSION, 0, 3) + b"abc"


@pytest.mark.parametrize("body,make_descriptors,why", [
    (GOOD_HEADER, lambda: [], "one descriptor, this one 0"),
    (GOOD_HEADER, _stream_sockets(2), "one descriptor, this one 2"),
    (GOOD_HEADER, _stream_sockets(6), "more than 4 descriptors"),
    (HEADER.pack(VERSION + 1, 0, 3) + b"abc", _stream_sockets(1), "version 2"),
    (HEADER.pack(VERSION, 0, 10) + b"abc", _stream_sockets(1), "says 10 bytes"),
    (HEADER.pack(VERSION, 0, 3)[:5], _stream_sockets(1), "shorter than its 8-byte header"),
    (b"", _stream_sockets(1), "shorter than its 8-byte header"),
    (GOOD_HEADER, _pipe_read_end, "not a socket"),
    (GOOD_HEADER, _datagram_socket, "not a stream"),
])
def test_a_malformed_handoff_is_refused_without_leaking(channel_pair, body, make_descriptors,
                                                        why):
    sender, receiver = channel_pair
    descriptors = make_descriptors()
    try:
        socket.send_fds(sender, [body], descriptors)
    finally:
        for descriptor in descriptors:
            os.close(descriptor)                      # only the copies in flight are left
    before = open_descriptors()
    with pytest.raises(HandoffError, match=why) as raised:
        receive_connection(receiver)
    assert not isinstance(raised.value, ChannelClosed)
    assert open_descriptors() == before
    # The channel still works for the next, well-formed handoff.
    with socket.socket() as conn:
        send_connection(sender, conn, b"negotiate")
        passed, already_read = receive_connection(receiver)
    with passed:
        assert already_read == b"negotiate" and passed.type == socket.SOCK_STREAM
        assert passed.getblocking() is False and not os.get_inheritable(passed.fileno())


def test_too_many_bytes_already_read_are_refused_and_nothing_is_sent(channel_pair):
    sender, receiver = channel_pair
    receiver.setblocking(False)
    with socket.socket() as conn:
        with pytest.raises(HandoffError, match=f"{MAX_HANDOFF_BYTES + 1} bytes already read"):
            send_connection(sender, conn, bytes(MAX_HANDOFF_BYTES + 1))
        with pytest.raises(BlockingIOError):
            receive_connection(receiver)
        send_connection(sender, conn, bytes(MAX_HANDOFF_BYTES))     # the limit itself passes
    passed, already_read = receive_connection(receiver)
    passed.close()
    assert already_read == bytes(MAX_HANDOFF_BYTES)


def test_a_closed_channel_is_channel_closed_and_a_gone_peer_fails_the_send(channel_pair):
    sender, receiver = channel_pair
    sender.close()
    with pytest.raises(ChannelClosed):
        receive_connection(receiver)
    other_sender, other_receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    other_receiver.close()
    with other_sender, socket.socket() as conn:
        with pytest.raises(HandoffError, match="closed its handoff channel"):
            send_connection(other_sender, conn, b"x")


def test_the_listener_drops_a_malformed_handoff_and_delivers_the_next(tmp_path, caplog):
    directory = str(tmp_path)

    async def main():
        loop = asyncio.get_running_loop()
        delivered = loop.create_future()
        with HandoffListener(directory, 0) as listener:
            listener.attach(loop, lambda conn, data: delivered.set_result((conn, data)))
            with pytest.raises(RuntimeError):
                listener.attach(loop, lambda conn, data: None)
            channel = connect(directory, 0)
            with channel, socket.socket() as conn:
                channel.sendmsg([GOOD_HEADER])                    # no descriptor
                send_connection(channel, conn, b"after")
                passed, already_read = await asyncio.wait_for(delivered, 10)
            passed.close()
            return already_read

    with caplog.at_level(logging.WARNING, logger="smbcad.workers"):
        assert asyncio.run(main()) == b"after"
    assert "malformed handoff" in caplog.text and "this one 0" in caplog.text


def test_close_unlinks_and_stale_or_foreign_files_are_handled(tmp_path):
    directory = tmp_path / "workers"
    listener = HandoffListener(str(directory), 2)
    assert stat.S_IMODE(os.stat(directory).st_mode) & 0o077 == 0
    assert stat.S_ISSOCK(os.lstat(directory / "handoff-2.sock").st_mode)
    successor = HandoffListener(str(directory), 2)      # replaces the stale file
    listener.close()                                    # must not unbind its successor
    assert os.path.exists(successor.path)
    successor.close()
    successor.close()                                   # twice is harmless
    assert not os.path.exists(successor.path)
    with pytest.raises(HandoffError, match="worker 2 has no handoff socket"):
        connect(str(directory), 2)
    (directory / "handoff-3.sock").write_text("not a socket")
    with pytest.raises(HandoffError, match="not a socket"):
        HandoffListener(str(directory), 3)
    assert (directory / "handoff-3.sock").read_text() == "not a socket"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dead.bind(handoff_path(str(directory), 4))
    dead.close()
    with pytest.raises(HandoffError, match="worker 4 is not accepting"):
        connect(str(directory), 4)
