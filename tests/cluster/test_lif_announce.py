"""A LIF moved by clusdisk's LifMover, seen by a real client kernel
(shared/reference/cluster.md 1.3 and 4; cluster tier: root, namespaces).

The namespaces are tests/cluster/pair.py's: a client C on a bridge with the
public links of nodes A and B.  The mover runs in this process with its
blocking calls (netlink, sockets) in a worker thread that has entered B's
namespace, as clusdisk does on B.  IPv6 uses the ULA prefix fd5b:ca::/64 on
those namespace-internal links only (never routed anywhere); IPv4 the
documentation prefix 192.0.2.0/24 of pair.py.

* the client's neighbour entry for the LIF follows the move to B's MAC
  (gratuitous ARP request + reply, or an unsolicited NA), and does not
  without them (packet socket refused: the bring-up still succeeds);
* a client blocked in recv() on a connection to A, after A left the network
  without a word, gets ECONNRESET within seconds of the tickle ACK from B,
  and is still blocked without it;
* three rounds are sent, and down() cancels the rounds still to come.
"""

import asyncio
import contextlib
import errno
import json
import socket
import time

import pytest

from clusdisk.lif import LifMover
from clusdisk.resources import Lif
from pair import LIF, PREFIX, ClientThread, Topology, run

pytestmark = pytest.mark.root

V6 = {"A": "fd5b:ca::1", "B": "fd5b:ca::2", "C": "fd5b:ca::100"}
LIF6, PREFIX6 = "fd5b:ca::10", 64
FAMILIES = {"ipv4": (LIF, PREFIX, "192.0.2.100"), "ipv6": (LIF6, PREFIX6, V6["C"])}
PORT = 4450
ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
RESET_WITHIN_S = 5.0
WAIT_S = 10.0


class Net:
    """The topology, a worker thread in each namespace, and what the tests read."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.threads = {side: ClientThread(topology.path(side)) for side in "ABC"}
        self.blocked = ClientThread(topology.path("C"))    # the client's recv() waits here
        for side, dev in (("A", "pub0"), ("B", "pub0"), ("C", "br0")):
            self.ip(side, "addr", "add", f"{V6[side]}/{PREFIX6}", "dev", dev, "nodad")

    def ip(self, side: str, *argv: str) -> str:
        return run(["ip", "-n", self.topology.ns[side], *argv]).stdout.decode()

    def mac(self, side: str) -> str:
        return json.loads(self.ip(side, "-j", "link", "show", "pub0"))[0]["address"]

    def neighbour(self, address: str) -> str | None:
        entries = json.loads(self.ip("C", "-j", "neigh", "show", "to", address, "dev", "br0"))
        return entries[0].get("lladdr") if entries else None

    def learn(self, address: str, mac: str) -> None:
        """The client resolves ``address`` (to ``mac``) by sending it a datagram."""
        deadline = time.monotonic() + WAIT_S
        while self.neighbour(address) != mac:
            assert time.monotonic() < deadline, f"the client never resolved {address} to {mac}"
            self.threads["C"].call(poke, address)
            time.sleep(0.1)

    def mover(self, **options) -> LifMover:
        in_b = self.threads["B"]
        return LifMover(run_blocking=lambda func, *args: asyncio.wrap_future(
            in_b.submit(func, *args)), **options)

    def close(self) -> None:
        for thread in (*self.threads.values(), self.blocked):
            thread.close()


def poke(address: str) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"?", (address, 9))


def open_capture(ethertype: int) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    sock.bind(("br0", ethertype))
    sock.setblocking(False)
    return sock


def captured(sock: socket.socket, mac: str) -> list[bytes]:
    """Frames captured so far whose Ethernet source is ``mac``."""
    source, frames = bytes.fromhex(mac.replace(":", "")), []
    while True:
        try:
            frame = sock.recv(2048)
        except BlockingIOError:
            return frames
        if frame[6:12] == source:
            frames.append(frame)


def announcements(frames: list[bytes], family: str) -> list[str]:
    """ARP opcodes, or unsolicited NAs with Override set to ff02::1."""
    if family == "ipv4":
        return [{1: "request", 2: "reply"}[int.from_bytes(f[20:22], "big")] for f in frames]
    return ["na" for f in frames
            if f[20] == 58 and f[54] == 136 and f[38:54] == socket.inet_pton(
                socket.AF_INET6, "ff02::1") and f[58] & 0xE0 == 0x20]


async def wait_rounds(mover: LifMover) -> None:
    deadline = time.monotonic() + WAIT_S
    while mover.pending_rounds:
        assert time.monotonic() < deadline, "announcement rounds never finished"
        await asyncio.sleep(0.05)


@pytest.fixture
def net():
    topology = Topology()
    made = None
    try:
        made = Net(topology)
        yield made
    finally:
        if made is not None:
            made.close()
        topology.close()


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_client_neighbour_entry_follows_the_lif(net, family):
    address, prefix, _ = FAMILIES[family]
    lif = Lif("lif1", f"{address}/{prefix}", "pub0")
    mac_a, mac_b = net.mac("A"), net.mac("B")
    net.ip("A", "addr", "add", f"{address}/{prefix}", "dev", "pub0", "nodad")
    net.learn(address, mac_a)
    capture = net.threads["C"].call(open_capture, ETH_P_ARP if family == "ipv4" else ETH_P_IPV6)
    net.ip("A", "addr", "del", f"{address}/{prefix}", "dev", "pub0")

    def refused(interface):
        raise PermissionError(errno.EPERM, "AF_PACKET refused")

    async def move() -> tuple[LifMover, LifMover]:
        mute = net.mover(packet_socket=refused, announce_rounds=1)
        await mute.up(lif)                 # no announcement: the bring-up still succeeds
        await asyncio.sleep(0.5)
        assert net.neighbour(address) == mac_a, "the client moved without an announcement"
        await mute.down(lif)
        loud = net.mover(announce_rounds=3, announce_interval_s=0.2)
        await loud.up(lif)
        await wait_rounds(loud)
        await loud.close()
        return mute, loud

    with capture:
        mute, loud = asyncio.run(move())
        time.sleep(0.2)
        frames = announcements(captured(capture, mac_b), family)
    assert net.neighbour(address) == mac_b
    if family == "ipv4":
        assert mute.failed == {"arp_request": 1, "arp_reply": 1} and not mute.sent
        assert loud.sent == {"arp_request": 3, "arp_reply": 3} and not loud.failed
        assert frames == ["request", "reply"] * 3
    else:
        assert mute.failed == {"neighbour_advertisement": 1} and not mute.sent
        assert loud.sent == {"neighbour_advertisement": 3} and not loud.failed
        assert frames == ["na"] * 3
        flags = [a for a in json.loads(net.ip("B", "-j", "addr", "show", "dev", "pub0"))[0][
            "addr_info"] if a["local"] == address][0]
        assert "tentative" not in flags and flags.get("nodad") is True


def serve_one(address: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, PORT))
    listener.listen(1)
    return listener


def connect(address: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.create_connection((address, PORT), timeout=WAIT_S)
    assert sock.family == family
    sock.settimeout(None)
    return sock


def receive(sock: socket.socket) -> bytes:
    return sock.recv(1)


@pytest.mark.parametrize("tickle", [True, False], ids=["tickle", "no-tickle"])
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_tickle_ack_resets_the_client_connection(net, family, tickle):
    address, prefix, client_ip = FAMILIES[family]
    lif = Lif("lif1", f"{address}/{prefix}", "pub0")
    net.ip("A", "addr", "add", f"{address}/{prefix}", "dev", "pub0", "nodad")
    listener = net.threads["A"].call(serve_one, address)
    accepted = net.threads["A"].submit(listener.accept)
    client = net.threads["C"].call(connect, address)
    server, _ = accepted.result(WAIT_S)
    client_port = client.getsockname()[1]
    try:
        server.sendall(b"1")
        assert net.threads["C"].call(receive, client) == b"1"
        pending = net.blocked.submit(receive, client)          # the client waits for more
        net.topology.isolate("A")                               # A is gone, no RST from it
        tickles = [(client_ip, client_port, address, PORT),
                   (client_ip, client_port + 1, "192.0.2.99", PORT)]   # another LIF: ignored

        async def take_over() -> LifMover:
            mover = net.mover(announce_rounds=3, announce_interval_s=0.5)
            await mover.up(lif, tickles=tickles if tickle else ())
            started = time.monotonic()
            while not pending.done() and time.monotonic() - started < RESET_WITHIN_S:
                await asyncio.sleep(0.05)
            await mover.close()
            return mover

        mover = asyncio.run(take_over())
        if tickle:
            assert pending.done(), "the tickle ACK did not reset the client's connection"
            with pytest.raises(ConnectionResetError):
                pending.result(0)
            assert mover.sent["tickle_ack"] >= 1 and not mover.failed
        else:
            assert not pending.done(), f"the client noticed without a tickle: {pending}"
            assert "tickle_ack" not in mover.sent
    finally:
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)                   # wakes a blocked recv()
        for sock in (client, server, listener):
            sock.close()


def test_down_cancels_the_rounds_to_come(net):
    lif = Lif("lif1", f"{LIF}/{PREFIX}", "pub0")
    capture = net.threads["C"].call(open_capture, ETH_P_ARP)

    async def up_then_down() -> LifMover:
        mover = net.mover(announce_rounds=3, announce_interval_s=0.3)
        await mover.up(lif)
        assert mover.pending_rounds == ("lif1",)
        await mover.down(lif)
        assert mover.pending_rounds == ()
        await asyncio.sleep(1.0)                       # rounds 2 and 3 would have gone by now
        return mover

    with capture:
        mover = asyncio.run(up_then_down())
        frames = announcements(captured(capture, net.mac("B")), "ipv4")
    assert mover.sent == {"arp_request": 1, "arp_reply": 1}
    assert frames == ["request", "reply"]
    assert f"{LIF}/" not in net.ip("B", "addr", "show", "dev", "pub0")
