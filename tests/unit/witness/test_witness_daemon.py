"""witnessd end to end on loopback: real sockets, the daemon's own event loop.

The daemon runs in a background thread; the test thread talks to it with
blocking sockets: ept_map without authentication, a SPNEGO-signed witness
session whose AsyncNotify is completed by an event posted on the control
socket, and the metrics that counted it.
"""

import asyncio
import ipaddress
import threading
import time

import pytest

from smbca import events
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
    ResourceChange,
    ResourceState,
    parse_messages,
)

from .client import DceClient, SocketConnection, register


@pytest.fixture
def daemon(tmp_path):
    cfg = config_mod.from_quick_args(config_mod.QuickArgs(
        listen=("127.0.0.1:0",), epm_listen=("127.0.0.1:0",), users=("alice:Secret1",),
        net_name="CLUSTER", interfaces=("NODE1=127.0.0.1", "NODE2=127.0.0.2"),
        control_socket=str(tmp_path / "control.sock")))
    yield from _running(cfg, tmp_path)


@pytest.fixture
def node_b(tmp_path):
    """Node b's witnessd of the pair a/b: LIF1 127.0.0.10 on a, LIF2 127.0.0.20 on b."""
    cfg = config_mod.from_mapping({
        "server": {"listen": ["127.0.0.1:0"], "epm_listen": ["127.0.0.1:0"],
                   "control_socket": str(tmp_path / "control.sock"), "metrics_listen": None},
        "auth": {"users": [{"name": "alice", "password": "Secret1"}]},
        "witness": {"net_name": "CLUSTER", "nodes": ["a", "b"], "local_node": "b",
                    "forced_unregister_after_s": 0},
        "interfaces": [{"node": "a", "ipv4": "127.0.0.10"}, {"node": "b", "ipv4": "127.0.0.20"}],
    })
    yield from _running(cfg, tmp_path)


def _running(cfg, tmp_path):
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



def test_lif_taken_over_by_b_is_one_interface_and_its_clients_hear_it(node_b) -> None:
    """clusdisk posts a's LIF UNAVAILABLE (group a), then AVAILABLE under b (takeover)."""
    client = DceClient(SocketConnection(node_b.ports["witness"]))
    client.bind()
    handle = register(client, ip="127.0.0.10")

    def post_and_answer(event: events.InterfaceState):
        client.conn.receive_data(client.request_pdu(3, encode(AsyncNotifyRequest.NDR,
                                                              AsyncNotifyRequest(handle))))
        assert client.conn.pdus_to_send(first_timeout=0.3) == []     # pending
        answer = request_blocking(node_b.control, event.to_json())
        assert answer == {"ok": True, "registrations": 1}
        response = client.decode_answer(client.conn.pdus_to_send(), AsyncNotifyResponse)
        assert response.response.message_type == MessageType.RESOURCE_CHANGE
        return parse_messages(response.response)

    lif1 = (ipaddress.ip_address("127.0.0.10"),)
    assert post_and_answer(events.InterfaceState("a", events.Availability.UNAVAILABLE,
                                                 lif1)) == (
        ResourceChange(ResourceState.UNAVAILABLE, "127.0.0.10"),)
    assert post_and_answer(events.InterfaceState("b", events.Availability.AVAILABLE,
                                                 lif1)) == (
        ResourceChange(ResourceState.AVAILABLE, "127.0.0.10"),)
    status = request_blocking(node_b.control, {"event": "status"})
    assert [(i["group"], i["ipv4"], i["state"], i["local"]) for i in status["interfaces"]] == [
        ("b", "127.0.0.10", "available", True), ("b", "127.0.0.20", "available", True)]
    assert len(status["registrations"]) == 1
