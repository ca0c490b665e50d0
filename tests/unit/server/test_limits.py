"""Resource limits (issue 17 item 2): a real server on 127.0.0.1, raw-socket
clients.  Each limit refuses or closes the offender, counts the hit in
smbcad_limit_hits_total{limit}, and leaves well-behaved clients working.
Timing is asserted only as "within the configured timeout plus a generous
margin"."""

import logging
import os
import socket
import struct

import pytest

from smbcad.proto.constants import Command, HeaderFlags
from smbcad.proto.status import NtStatus, name_of
from smbcad.server.credits import CreditWindow
from smbcad.server.limits import LimitReporter
from smbcad.metrics import SmbMetrics
from smbcad.transport import PREAUTH_MAX_FRAME
from tests.unit.proto import wire
from tests.unit.server import harness
from tests.unit.server.loopback import (
    FILE_DIRECTORY_FILE, MAX_FRAME, LoopbackServer, SocketClient)

MARGIN_S = 5.0


@pytest.fixture
def dirs(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "dir").mkdir()
    return str(share), str(tmp_path / "state")


def _connections(srv) -> int:
    return srv.call(lambda: len(srv.server.connections))


def test_connections_over_the_total_are_refused_at_once(dirs):
    with LoopbackServer(*dirs, max_connections=3) as srv:
        clients = [SocketClient(srv.port) for _ in range(3)]
        for client in clients:
            client.negotiate()
        extra = SocketClient(srv.port)
        assert extra.closed_by_server(MARGIN_S)
        assert srv.limit_hits("connections") == 1
        assert _connections(srv) == 3
        # A slot freed is a slot a new client gets.
        clients.pop().close()
        assert srv.wait_for(lambda: len(srv.server.connections) == 2)
        late = SocketClient(srv.port)
        assert harness.status_of(late.negotiate()) == NtStatus.SUCCESS
        for client in clients + [extra, late]:
            client.close()


def test_connections_per_client_address_are_refused_others_are_not(dirs):
    with LoopbackServer(*dirs, max_connections_per_client=2) as srv:
        mine = [SocketClient(srv.port) for _ in range(2)]
        for client in mine:
            client.negotiate()
        third = SocketClient(srv.port)
        assert third.closed_by_server(MARGIN_S)
        assert srv.limit_hits("connections_per_client") == 1
        # Another address (still loopback) is another client.
        other = SocketClient(srv.port, source="127.0.0.2")
        other.login()
        assert other.still_open()
        assert all(client.still_open() for client in mine)
        for client in mine + [third, other]:
            client.close()
        assert srv.wait_for(lambda: srv.listener.tracked() == {
            "protocols": 0, "client_addresses": 0, "client_shares": 0})


def test_unauthenticated_connection_is_closed_at_the_auth_deadline(dirs):
    with LoopbackServer(*dirs, auth_timeout_s=1) as srv:
        silent = SocketClient(srv.port)                  # sends nothing at all
        negotiated = SocketClient(srv.port)
        negotiated.negotiate()                           # then never authenticates
        half = SocketClient(srv.port)
        half.negotiate()
        half.start_session_setup()
        good = SocketClient(srv.port).login()
        for client in (silent, negotiated, half):
            assert client.closed_by_server(1 + MARGIN_S)
        assert srv.limit_hits("auth_timeout") == 3
        assert good.still_open()
        # The half-done session went with its connection.
        assert srv.call(lambda: len(srv.server.sessions)) == 1
        for client in (silent, negotiated, half, good):
            client.close()


def test_idle_connection_is_closed_but_not_one_with_an_open(dirs):
    with LoopbackServer(*dirs, idle_timeout_s=1) as srv:
        idle = SocketClient(srv.port).login()
        holder = SocketClient(srv.port).login()
        holder.create("file.txt")
        assert idle.closed_by_server(1 + MARGIN_S)
        assert srv.limit_hits("idle_timeout") == 1
        # Twice the timeout with nothing sent: the open keeps it (as Windows'
        # autodisconnect, [MS-CIFS] 3.3.2.2).
        assert not holder.closed_by_server(2.5)
        assert holder.still_open()
        idle.close()
        holder.close()


def test_idle_timeout_zero_never_closes(dirs):
    with LoopbackServer(*dirs, idle_timeout_s=0, auth_timeout_s=1) as srv:
        client = SocketClient(srv.port).login()
        assert not client.closed_by_server(2.5)
        assert client.still_open()
        assert srv.limit_hits("idle_timeout") == 0
        client.close()


def test_async_requests_over_the_limit_get_insufficient_resources(dirs):
    limit = 4                                 # limit - 1 may be pending
    with LoopbackServer(*dirs, max_async_requests=limit) as srv:
        client = SocketClient(srv.port).login()
        handles = [client.create("dir", options=FILE_DIRECTORY_FILE) for _ in range(limit)]
        pending = []
        for handle in handles[:limit - 1]:
            mid = client.notify(handle)
            interim = client.receive()
            assert harness.status_of(interim) == NtStatus.PENDING
            pending.append(mid)
        refused = client.notify(handles[-1])
        reply = client.answer(refused)
        assert harness.status_of(reply) == NtStatus.INSUFFICIENT_RESOURCES
        assert srv.limit_hits("async_requests") == 1
        assert srv.server.metrics.registry.get_sample_value("smbcad_async_requests") == limit - 1
        # The connection still works, and the waits still complete.
        assert client.still_open()
        closer = client.send_request(Command.CLOSE, struct.pack("<HHI", 24, 0, 0)
                                     + struct.pack("<QQ", *handles[0]))
        seen = {}
        while closer not in seen or pending[0] not in seen:
            reply = client.receive()
            if harness.status_of(reply) != NtStatus.PENDING:
                seen[struct.unpack_from("<Q", reply, 24)[0]] = harness.status_of(reply)
        assert seen[pending[0]] == NtStatus.NOTIFY_CLEANUP
        client.close()
        assert srv.wait_for(lambda: not srv.server.connections)
        assert srv.server.metrics.registry.get_sample_value("smbcad_async_requests") == 0


def test_async_requests_per_session_over_the_limit_get_insufficient_resources(dirs):
    limit = 3                                 # limit - 1 may be pending on the session
    with LoopbackServer(*dirs, max_async_requests=64,
                        max_async_requests_per_session=limit) as srv:
        client = SocketClient(srv.port).login()
        handles = [client.create("dir", options=FILE_DIRECTORY_FILE) for _ in range(limit)]
        pending = []
        for handle in handles[:limit - 1]:
            pending.append(client.notify(handle))
            assert harness.status_of(client.receive()) == NtStatus.PENDING
        reply = client.answer(client.notify(handles[-1]))
        assert harness.status_of(reply) == NtStatus.INSUFFICIENT_RESOURCES
        assert srv.limit_hits("async_requests_per_session") == 1
        assert srv.limit_hits("async_requests") == 0
        session = srv.call(lambda: next(iter(srv.server.sessions.values())))
        assert session.async_requests == limit - 1
        # A wait that ends gives its place back: the next one goes async.
        closer = client.send_request(Command.CLOSE, wire.close_request(*handles[0]))
        seen = set()
        while not {closer, pending[0]} <= seen:
            seen.add(struct.unpack_from("<Q", client.receive(), 24)[0])
        assert srv.wait_for(lambda: session.async_requests == limit - 2)
        client.notify(handles[-1])
        assert harness.status_of(client.receive()) == NtStatus.PENDING
        client.close()
        assert srv.wait_for(lambda: session.async_requests == 0)


def _read_flood(client: SocketClient, file_id, count: int, length: int) -> None:
    """``count`` READs of ``length`` bytes sent without reading a response;
    one ECHO first asks for the credits they need."""
    charge = length // 65536
    msg = bytearray(harness.header(Command.ECHO, client.message_id, client.session_id,
                                   client.tree_id, HeaderFlags.SIGNED,
                                   credits=count * charge + 64) + struct.pack("<HH", 4, 0))
    client.message_id += 1
    client.signer.sign(msg)
    client.send(bytes(msg))
    assert harness.status_of(client.receive()) == NtStatus.SUCCESS
    for _ in range(count):
        msg = bytearray(harness.header(Command.READ, client.message_id, client.session_id,
                                       client.tree_id, HeaderFlags.SIGNED, charge=charge)
                        + wire.read_request(*file_id, length, 0))
        client.message_id += charge
        client.signer.sign(msg)
        client.send(bytes(msg))


def test_a_client_that_never_reads_is_paused_then_closed_others_are_served(dirs):
    requests, length = 100, 1024 * 1024
    with open(os.path.join(dirs[0], "data.bin"), "wb") as data:
        data.write(os.urandom(length))
    with LoopbackServer(*dirs, send_timeout_s=2) as srv:
        reader = SocketClient(srv.port).login()
        stalled = SocketClient(srv.port).login()
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        _read_flood(stalled, stalled.create("data.bin", disposition=1), requests, length)
        # Its responses pile up to the send high-water mark (16 MiB); then
        # nothing more of it runs, its requests queue and reading stops.
        assert srv.wait_for(lambda: srv.limit_hits("receive_buffer") >= 1)
        answered = srv.server.metrics.registry.get_sample_value(
            "smbcad_requests_total", {"command": "read", "status": name_of(NtStatus.SUCCESS)})
        assert answered < requests
        assert reader.still_open()                  # the others are served meanwhile
        assert srv.limit_hits("send_buffer") == 0
        # Its responses stay unread for send_timeout_s: it is closed.
        assert srv.wait_for(lambda: srv.limit_hits("send_buffer") == 1, 2 + MARGIN_S)
        assert srv.wait_for(lambda: len(srv.server.connections) == 1)
        assert reader.still_open()
        reader.close()
        stalled.close()


def test_a_client_that_reads_late_gets_every_response(dirs):
    """The same flood from a client that reads after a pause shorter than
    send_timeout_s: back-pressure only, nothing lost, nothing closed."""
    requests, length = 100, 1024 * 1024
    with open(os.path.join(dirs[0], "data.bin"), "wb") as data:
        data.write(os.urandom(length))
    with LoopbackServer(*dirs, send_timeout_s=60) as srv:
        client = SocketClient(srv.port).login()
        _read_flood(client, client.create("data.bin", disposition=1), requests, length)
        assert srv.wait_for(lambda: srv.limit_hits("receive_buffer") >= 1)
        for _ in range(requests):
            reply = client.receive()
            assert harness.status_of(reply) == NtStatus.SUCCESS
            assert struct.unpack_from("<I", reply, 64 + 4)[0] == length
        assert client.still_open()
        assert srv.limit_hits("send_buffer") == 0
        client.close()


def test_a_frame_past_the_maximum_closes_the_connection(dirs):
    with LoopbackServer(*dirs) as srv:
        good = SocketClient(srv.port).login()
        big = SocketClient(srv.port).login()
        big.send_raw(struct.pack(">I", MAX_FRAME + 1))     # first byte still zero (2.1)
        assert big.closed_by_server(MARGIN_S)
        assert srv.limit_hits("frame_size") == 1
        assert good.still_open()
        good.close()
        big.close()


def test_credits_granted_stay_under_max_outstanding_requests(dirs):
    with LoopbackServer(*dirs, max_outstanding_requests=10) as srv:
        client = SocketClient(srv.port)
        client.negotiate()
        client.session_setup()
        # Every request asked for 64 credits; the window never passes 10.
        reply = client.request(Command.ECHO, struct.pack("<HH", 4, 0), sign=False)
        granted = struct.unpack_from("<H", reply, 14)[0]
        window = srv.call(lambda: next(iter(srv.server.connections)).credits.granted)
        assert 1 <= granted and window <= 10
        client.close()


def test_request_beyond_the_credits_granted_closes_the_connection(dirs):
    with LoopbackServer(*dirs, max_outstanding_requests=10) as srv:
        client = SocketClient(srv.port)
        client.negotiate()
        client.message_id = 500                   # far outside the window granted
        client.send(harness.header(Command.ECHO, client.message_id) + struct.pack("<HH", 4, 0))
        assert client.closed_by_server(MARGIN_S)
        assert srv.limit_hits("credits") == 1
        client.close()


def test_large_frame_before_authentication_closes(dirs):
    with LoopbackServer(*dirs) as srv:
        client = SocketClient(srv.port)
        client.negotiate()
        client.send_raw(struct.pack(">I", PREAUTH_MAX_FRAME + 1))
        assert client.closed_by_server(MARGIN_S)
        assert srv.limit_hits("preauth_frame") == 1
        # After authentication the same size is an ordinary frame.
        good = SocketClient(srv.port).login()
        mid = good.message_id
        good.send(harness.header(Command.ECHO, mid) + bytes(PREAUTH_MAX_FRAME))
        good.message_id += 1
        assert struct.unpack_from("<Q", good.receive(), 24)[0] == mid
        assert good.still_open()
        client.close()
        good.close()


def test_grant_counts_pending_async_requests_against_the_maximum():
    window = CreditWindow(max_outstanding=10)
    window.consume(0, 1)
    assert window.grant(64, 1, in_flight=4) == 6            # 10 - 0 granted - 4 pending
    window.consume(1, 6)
    assert window.grant(64, 1, in_flight=10) == 1           # never none at all


def test_limit_log_is_rate_limited_and_counts_every_hit(caplog):
    now = [0.0]
    metrics = SmbMetrics()
    reporter = LimitReporter(metrics.limit_hits, clock=lambda: now[0], interval_s=10)
    with caplog.at_level(logging.INFO, logger="smbcad.limits"):
        for _ in range(5):
            reporter.hit("connections", "127.0.0.1:5", "refused")
        now[0] = 11.0
        reporter.hit("connections", "127.0.0.1:6", "refused")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "and 4 more" in lines[1]
    assert metrics.registry.get_sample_value("smbcad_limit_hits_total",
                                             {"limit": "connections"}) == 6
