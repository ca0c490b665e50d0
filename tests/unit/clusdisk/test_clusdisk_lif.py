"""LIF moves against a fake netlink and fake sockets: the address change,
NODAD for IPv6, the announcement rounds and their counters.  The frames
themselves are pinned in test_clusdisk_announce.py; the real kernel's view
is tests/cluster/test_lif_announce.py."""

import asyncio
import errno
import socket

import pytest
from pyroute2 import NetlinkError

from clusdisk.announce import arp_reply, arp_request, neighbour_advertisement, tickle_ack
from clusdisk.lif import IFA_F_NODAD, IFA_F_TENTATIVE, LifError, LifMover
from clusdisk.resources import Lif

MAC = bytes.fromhex("525400123456")
LIF4 = Lif("lif1", "192.0.2.10/24", "eth0")
LIF6 = Lif("v6", "fd5b:ca::10/64", "eth0")       # ULA, as in the namespace tests


class Msg:
    def __init__(self, fields=None, **attrs):
        self.fields = fields or {}
        self.attrs = attrs

    def get_attr(self, name):
        return self.attrs.get(name)

    def __getitem__(self, name):
        return self.fields[name]


class FakeIPRoute:
    def __init__(self, addresses, fail=None, extra_flags=0):
        self.addresses = addresses          # address -> IFA flags
        self.fail = fail
        self.extra_flags = extra_flags
        self.calls = []

    def link_lookup(self, ifname):
        return [2] if ifname == "eth0" else []

    def get_links(self, index):
        return [Msg(IFLA_ADDRESS="52:54:00:12:34:56")]

    def addr(self, command, index, address, prefixlen, **kwargs):
        self.calls.append((command, index, address, prefixlen, kwargs))
        if self.fail:
            raise NetlinkError(self.fail)
        if command == "add":
            self.addresses[address] = kwargs.get("flags", 0) | self.extra_flags
        else:
            self.addresses.pop(address, None)

    def get_addr(self, index):
        return [Msg({"flags": flags}, IFA_ADDRESS=a) for a, flags in self.addresses.items()]

    def close(self):
        pass


class FakeSocket:
    def __init__(self, sent, fail=None):
        self.sent = sent
        self.fail = fail

    def send(self, frame):
        if self.fail:
            raise self.fail
        self.sent.append(frame)

    def sendto(self, packet, address):
        if self.fail:
            raise self.fail
        self.sent.append((packet, address))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


async def inline(func, *args):
    return func(*args)


class Harness:
    def __init__(self, addresses=None, fail=None, extra_flags=0, packet_fail=None,
                 raw_fail=None, **options):
        self.addresses = {} if addresses is None else addresses
        self.frames, self.packets, self.iproutes, self.families = [], [], [], []

        def factory():
            ipr = FakeIPRoute(self.addresses, fail, extra_flags)
            self.iproutes.append(ipr)
            return ipr

        def packet_socket(interface):
            if isinstance(packet_fail, type):
                raise packet_fail("no AF_PACKET")
            return FakeSocket(self.frames, packet_fail)

        def raw_socket(family):
            self.families.append(family)
            return FakeSocket(self.packets, raw_fail)

        self.mover = LifMover(iproute_factory=factory, packet_socket=packet_socket,
                              raw_socket=raw_socket, run_blocking=inline, **options)


def run(coro):
    return asyncio.run(coro)


def test_up_announces_request_and_reply_and_down_removes():
    h = Harness(announce_rounds=1)
    run(h.mover.up(LIF4))                                     # the old signature still works
    assert h.addresses == {"192.0.2.10": 0}
    assert h.iproutes[0].calls == [("add", 2, "192.0.2.10", 24, {})]
    assert h.frames == [arp_request(MAC, "192.0.2.10"), arp_reply(MAC, "192.0.2.10")]
    assert h.packets == [] and h.families == []
    assert h.mover.sent == {"arp_request": 1, "arp_reply": 1} and not h.mover.failed
    run(h.mover.down(LIF4))
    assert h.addresses == {}


def test_tickles_of_the_lif_only():
    h = Harness(announce_rounds=1)
    run(h.mover.up(LIF4, tickles=[
        ("192.0.2.100", 50000, "192.0.2.10", 445),
        ("192.0.2.101", 50001, "192.0.2.11", 445),              # another LIF: ignored
        ("192.0.2.102", 50002, "192.0.2.10", 445),
        ("fd5b:ca::100", 50003, "192.0.2.10", 445),             # mixed families: skipped
        ("192.0.2.103", 0, "192.0.2.10", 445),                  # bad port: skipped
    ]))
    assert h.packets == [(tickle_ack("192.0.2.10", 445, "192.0.2.100", 50000), ("192.0.2.100", 0)),
                         (tickle_ack("192.0.2.10", 445, "192.0.2.102", 50002), ("192.0.2.102", 0))]
    assert h.families == [socket.AF_INET]
    assert h.mover.sent == {"arp_request": 1, "arp_reply": 1, "tickle_ack": 2}


def test_ipv6_is_added_without_dad_and_advertised():
    h = Harness(announce_rounds=1)
    run(h.mover.up(LIF6, tickles=[("fd5b:ca::100", 50000, "fd5b:ca:0::10", 445)]))
    assert h.iproutes[0].calls == [("add", 2, "fd5b:ca::10", 64, {"flags": IFA_F_NODAD})]
    assert h.frames == [neighbour_advertisement(MAC, "fd5b:ca::10")]
    assert h.packets == [(tickle_ack("fd5b:ca::10", 445, "fd5b:ca::100", 50000),
                          ("fd5b:ca::100", 0))]
    assert h.families == [socket.AF_INET6]
    assert h.mover.sent == {"neighbour_advertisement": 1, "tickle_ack": 1}


def test_tentative_ipv6_address_fails_the_bring_up():
    h = Harness(extra_flags=IFA_F_TENTATIVE)
    with pytest.raises(LifError, match="tentative"):
        run(h.mover.up(LIF6))
    assert h.frames == []


def test_three_rounds_then_none_pending():
    async def scenario(h):
        await h.mover.up(LIF4, tickles=[("192.0.2.100", 50000, "192.0.2.10", 445)])
        assert h.mover.sent == {"arp_request": 1, "arp_reply": 1, "tickle_ack": 1}
        assert h.mover.pending_rounds == ("lif1",)
        for _ in range(100):
            if not h.mover.pending_rounds:
                break
            await asyncio.sleep(0)
    h = Harness(announce_rounds=3, announce_interval_s=0)
    run(scenario(h))
    assert h.mover.pending_rounds == ()
    assert h.mover.sent == {"arp_request": 3, "arp_reply": 3, "tickle_ack": 3}
    assert len(h.frames) == 6 and len(h.packets) == 3


@pytest.mark.parametrize("stop", ["down", "close"])
def test_down_and_close_cancel_later_rounds(stop):
    async def scenario(h):
        await h.mover.up(LIF4)
        assert h.mover.pending_rounds == ("lif1",)
        await (h.mover.down(LIF4) if stop == "down" else h.mover.close())
        assert h.mover.pending_rounds == ()
        for _ in range(20):                  # rounds with no interval would run here
            await asyncio.sleep(0)
    h = Harness(announce_rounds=3, announce_interval_s=0)
    run(scenario(h))
    assert h.mover.sent == {"arp_request": 1, "arp_reply": 1}


def test_up_again_replaces_pending_rounds():
    async def scenario(h):
        await h.mover.up(LIF4)
        first = h.mover._later_rounds["lif1"]
        await h.mover.up(LIF4)
        assert first.cancelled() and h.mover.pending_rounds == ("lif1",)
        await h.mover.close()
    h = Harness(addresses={}, announce_rounds=2, announce_interval_s=3600)
    run(scenario(h))
    assert h.mover.sent == {"arp_request": 2, "arp_reply": 2}


def test_send_failures_are_counted_not_raised():
    h = Harness(packet_fail=PermissionError, raw_fail=OSError(errno.ENETUNREACH, "unreachable"),
                announce_rounds=1)
    run(h.mover.up(LIF4, tickles=[("192.0.2.100", 50000, "192.0.2.10", 445)]))
    assert h.addresses == {"192.0.2.10": 0}
    assert h.mover.sent == {}
    assert h.mover.failed == {"arp_request": 1, "arp_reply": 1, "tickle_ack": 1}
    h = Harness(packet_fail=OSError(errno.ENETDOWN, "down"), announce_rounds=1)
    run(h.mover.up(LIF4))
    assert h.mover.failed == {"arp_request": 1, "arp_reply": 1}


def test_bad_knobs():
    with pytest.raises(ValueError, match="announce_rounds"):
        LifMover(announce_rounds=0)
    with pytest.raises(ValueError, match="announce_interval_s"):
        LifMover(announce_interval_s=-1)


def test_idempotent_and_failures():
    lif = LIF4
    run(Harness({"192.0.2.10": 0}, fail=errno.EEXIST).mover.up(lif))   # already there
    run(Harness(fail=errno.EADDRNOTAVAIL).mover.down(lif))            # already gone
    with pytest.raises(LifError, match="no interface eth9"):
        run(Harness().mover.up(Lif("x", "192.0.2.10/24", "eth9")))
    with pytest.raises(LifError, match="add 192.0.2.10/24 on eth0"):
        run(Harness(fail=errno.EPERM).mover.up(lif))
    with pytest.raises(LifError, match="missing"):                     # EEXIST but not present
        run(Harness(fail=errno.EEXIST).mover.up(lif))


def test_announcement_counters_reach_the_prometheus_registry():
    from clusdisk.metrics import ClusdiskMetrics
    metrics = ClusdiskMetrics()
    sample = metrics.registry.get_sample_value

    async def scenario(h):
        await h.mover.up(LIF4, tickles=[("192.0.2.100", 50000, "192.0.2.10", 445),
                                        ("192.0.2.101", 50001, "192.0.2.10", 445)])
        await h.mover.up(LIF6)
        while h.mover.pending_rounds:
            await asyncio.sleep(0)
    h = Harness(announce_rounds=3, announce_interval_s=0,
                on_round=metrics.lif_announce_round)
    assert sample("clusdisk_lif_announce_rounds_total") == 0
    assert sample("clusdisk_lif_announcements_sent_total", {"kind": "arp_reply"}) == 0
    run(scenario(h))
    assert sample("clusdisk_lif_announce_rounds_total") == 6
    for kind, count in (("arp_request", 3), ("arp_reply", 3), ("neighbour_advertisement", 3)):
        assert sample("clusdisk_lif_announcements_sent_total", {"kind": kind}) == count
    assert sample("clusdisk_lif_tickle_acks_sent_total") == 6
    assert sample("clusdisk_lif_announce_failures_total", {"kind": "arp_request"}) == 0
    # what cannot be sent is counted as a failure, by kind
    h = Harness(packet_fail=PermissionError, raw_fail=OSError(errno.ENETUNREACH, "unreachable"),
                announce_rounds=1, on_round=metrics.lif_announce_round)
    run(h.mover.up(LIF4, tickles=[("192.0.2.100", 50000, "192.0.2.10", 445)]))
    assert sample("clusdisk_lif_announce_rounds_total") == 7
    for kind in ("arp_request", "arp_reply", "tickle_ack"):
        assert sample("clusdisk_lif_announce_failures_total", {"kind": kind}) == 1
    assert sample("clusdisk_lif_announcements_sent_total", {"kind": "arp_request"}) == 3
