"""LIF moves against a fake netlink, and the ARP announcement frame pinned."""

import asyncio
import errno

import pytest
from pyroute2 import NetlinkError

from clusdisk.lif import LifError, LifMover, arp_announcement
from clusdisk.resources import Lif

MAC = bytes.fromhex("525400123456")


def test_arp_announcement_bytes():
    frame = arp_announcement(MAC, "192.0.2.10")
    assert frame == bytes.fromhex(
        "ffffffffffff" "525400123456" "0806"                       # Ethernet: broadcast, ARP
        "0001" "0800" "06" "04" "0001"                             # Ethernet/IPv4, request
        "525400123456" "c000020a" "000000000000" "c000020a")       # sender = target = 192.0.2.10
    assert len(frame) == 42
    with pytest.raises(ValueError):
        arp_announcement(b"\x00", "192.0.2.10")


class Msg:
    def __init__(self, **attrs):
        self.attrs = attrs

    def get_attr(self, name):
        return self.attrs.get(name)


class FakeIPRoute:
    def __init__(self, addresses, fail=None):
        self.addresses = addresses
        self.fail = fail
        self.calls = []

    def link_lookup(self, ifname):
        return [2] if ifname == "eth0" else []

    def get_links(self, index):
        return [Msg(IFLA_ADDRESS="52:54:00:12:34:56")]

    def addr(self, command, index, address, prefixlen):
        self.calls.append((command, index, address, prefixlen))
        if self.fail:
            raise NetlinkError(self.fail)
        (self.addresses.add if command == "add" else self.addresses.discard)(address)

    def get_addr(self, index):
        return [Msg(IFA_ADDRESS=a) for a in self.addresses]

    def close(self):
        pass


class FakeSocket:
    def __init__(self, sent):
        self.sent = sent

    def send(self, frame):
        self.sent.append(frame)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


async def inline(func, *args):
    return func(*args)


def mover(addresses, sent, fail=None, ipr_box=None):
    def factory():
        ipr = FakeIPRoute(addresses, fail)
        if ipr_box is not None:
            ipr_box.append(ipr)
        return ipr
    return LifMover(iproute_factory=factory, packet_socket=lambda iface: FakeSocket(sent),
                    run_blocking=inline)


def test_up_announces_and_down_removes():
    addresses, sent, box = set(), [], []
    m = mover(addresses, sent, ipr_box=box)
    lif = Lif("lif1", "192.0.2.10/24", "eth0")
    asyncio.run(m.up(lif))
    assert addresses == {"192.0.2.10"} and box[0].calls == [("add", 2, "192.0.2.10", 24)]
    assert sent == [arp_announcement(MAC, "192.0.2.10")] * 2
    asyncio.run(m.down(lif))
    assert addresses == set()


def test_ipv6_is_added_without_arp():
    addresses, sent = set(), []
    asyncio.run(mover(addresses, sent).up(Lif("v6", "2001:db8::10/64", "eth0")))
    assert addresses == {"2001:db8::10"} and sent == []


def test_idempotent_and_failures():
    addresses, sent = {"192.0.2.10"}, []
    lif = Lif("lif1", "192.0.2.10/24", "eth0")
    asyncio.run(mover(addresses, sent, fail=errno.EEXIST).up(lif))       # already there
    asyncio.run(mover(set(), sent, fail=errno.EADDRNOTAVAIL).down(lif))  # already gone
    with pytest.raises(LifError, match="no interface eth9"):
        asyncio.run(mover(set(), sent).up(Lif("x", "192.0.2.10/24", "eth9")))
    with pytest.raises(LifError, match="add 192.0.2.10/24 on eth0"):
        asyncio.run(mover(set(), sent, fail=errno.EPERM).up(lif))
    with pytest.raises(LifError, match="missing"):            # EEXIST but not present
        asyncio.run(mover(set(), sent, fail=errno.EEXIST).up(lif))
