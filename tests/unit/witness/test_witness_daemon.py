"""witnessd end to end on loopback: real sockets, the daemon's own event loop.

The daemon runs in a background thread; the test thread talks to it with
blocking sockets: ept_map without authentication, a SPNEGO-signed witness
session whose AsyncNotify is completed by an event posted on the control
socket, and the metrics that counted it.
"""

import asyncio
import socket
import struct
import threading
import time

import pytest

from smbca.control import request_blocking
from smbca.rpc.dcerpc import NDR20, Bind, PresentationContext, Request, decode_pdu
from smbca.rpc.ndr import NULL_HANDLE, decode, encode
from witnessd import config as config_mod
from witnessd.daemon import Daemon
from witnessd.epm import EPM_SYNTAX, EptMapRequest, EptMapResponse, tcp_tower
from witnessd.swn import (
    WITNESS_SYNTAX,
    AsyncNotifyRequest,
    AsyncNotifyResponse,
    MessageType,
    parse_messages,
)

from .client import DceClient, register


class SocketConnection:
    """What DceClient needs from a connection, over a TCP socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.closed = False

    def receive_data(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _pdu(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            header = self.sock.recv(16, socket.MSG_PEEK)
        except TimeoutError:
            return None
        if len(header) < 16:
            return None
        (length,) = struct.unpack_from("<H", header, 8)
        data = b""
        self.sock.settimeout(5)
        while len(data) < length:
            data += self.sock.recv(length - len(data))
        return data

    def pdus_to_send(self, first_timeout: float = 2.0) -> list[bytes]:
        pdus = []
        pdu = self._pdu(first_timeout)
        while pdu is not None:
            pdus.append(pdu)
            flags = pdu[3]
            pdu = self._pdu(0.05 if flags & 0x02 else 2.0)
        return pdus


@pytest.fixture
def daemon(tmp_path):
    cfg = config_mod.from_quick_args(config_mod.QuickArgs(
        listen=("127.0.0.1:0",), epm_listen=("127.0.0.1:0",), users=("alice:Secret1",),
        net_name="CLUSTER", interfaces=("NODE1=127.0.0.1", "NODE2=127.0.0.2"),
        control_socket=str(tmp_path / "control.sock")))
    loop = asyncio.new_event_loop()
    daemon = Daemon(cfg)
    started = threading.Event()
    bound: list = []

    def run() -> None:
        async def main() -> None:
            bound.extend(await daemon.start())
            started.set()
            await daemon.serve()
            await daemon.shutdown()
        loop.run_until_complete(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    daemon.ports = {role: port for role, _, port in bound}
    daemon.control = str(tmp_path / "control.sock")
    yield daemon
    loop.call_soon_threadsafe(daemon.request_stop)
    thread.join(10)
    assert not thread.is_alive()
    loop.close()


def test_ept_map_over_tcp_names_the_witness_port(daemon) -> None:
    conn = SocketConnection(daemon.ports["epm"])
    conn.receive_data(Bind(call_id=1, max_xmit_frag=4280, max_recv_frag=4280, p_context_elem=(
        PresentationContext(p_cont_id=0, abstract_syntax=EPM_SYNTAX,
                            transfer_syntaxes=(NDR20,)),)).encode())
    (ack,) = conn.pdus_to_send()
    assert decode_pdu(ack).sec_addr == str(daemon.ports["epm"])
    stub = encode(EptMapRequest.NDR, EptMapRequest(None, tcp_tower(WITNESS_SYNTAX, "0.0.0.0", 0),
                                                   NULL_HANDLE, 1))
    conn.receive_data(Request(call_id=2, opnum=3, alloc_hint=len(stub), stub_data=stub).encode())
    (raw,) = conn.pdus_to_send()
    (tower,) = decode(EptMapResponse.NDR, decode_pdu(raw).stub_data).towers.towers
    assert tower == tcp_tower(WITNESS_SYNTAX, "127.0.0.1", daemon.ports["witness"])


def test_event_on_the_control_socket_completes_async_notify(daemon) -> None:
    client = DceClient(SocketConnection(daemon.ports["witness"]))
    client.bind()
    handle = register(client, ip="127.0.0.2")
    client.conn.receive_data(client.request_pdu(3, encode(AsyncNotifyRequest.NDR,
                                                          AsyncNotifyRequest(handle))))
    assert client.conn.pdus_to_send(first_timeout=0.3) == []  # pending
    started = time.monotonic()
    answer = request_blocking(daemon.control, {"event": "node", "node": "NODE2",
                                               "state": "down"})
    assert answer == {"ok": True, "registrations": 1}
    response = client.decode_answer(client.conn.pdus_to_send(), AsyncNotifyResponse)
    assert time.monotonic() - started < 1.0  # "complete within a second"
    assert response.response.message_type == MessageType.RESOURCE_CHANGE
    (change,) = parse_messages(response.response)
    assert change.resource_name == "127.0.0.2"
    registry = daemon.metrics.registry
    assert registry.get_sample_value("witnessd_notifications_sent_total",
                                     {"type": "RESOURCE_CHANGE"}) == 1
    assert registry.get_sample_value("witnessd_registrations") == 1
    assert registry.get_sample_value("witnessd_control_events_total", {"event": "node"}) == 1


def test_failed_logon_is_counted(daemon) -> None:
    client = DceClient(SocketConnection(daemon.ports["witness"]), password="wrong")
    with pytest.raises(AssertionError):
        client.bind()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if daemon.metrics.registry.get_sample_value("witnessd_auth_failures_total") == 1:
            break
        time.sleep(0.02)
    assert daemon.metrics.registry.get_sample_value("witnessd_auth_failures_total") == 1

