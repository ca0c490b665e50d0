"""smbcad/tcp_acks.py on real loopback TCP sockets: what the peer's kernel
acknowledged, the retransmission timeout, and a close that resets."""

import socket
import time

import pytest

from smbcad import tcp_acks


@pytest.fixture
def pair():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    yield server, client
    server.close()
    client.close()


def test_sent_bytes_are_acknowledged_by_the_peers_kernel(pair):
    server, client = pair
    server.sendall(b"x" * 10000)           # the client never reads: its kernel still acks
    deadline = time.monotonic() + 5
    while tcp_acks.unacknowledged_bytes(server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tcp_acks.unacknowledged_bytes(server) == 0


def test_the_retransmission_timeout_is_read_from_tcp_info(pair):
    server, _ = pair
    rto = tcp_acks.retransmission_timeout_s(server)
    assert rto is not None and 0.2 <= rto < 3.5     # Linux: at least TCP_RTO_MIN, 1 s initial


def test_a_reset_close_makes_the_peer_see_a_reset(pair):
    server, client = pair
    tcp_acks.reset_on_close(server)
    server.close()
    client.settimeout(5)
    with pytest.raises(ConnectionResetError):
        client.recv(1)


def test_a_closed_socket_gives_no_counts():
    sock = socket.socket()
    sock.close()
    assert tcp_acks.unacknowledged_bytes(sock) is None
    assert tcp_acks.retransmission_timeout_s(sock) is None
