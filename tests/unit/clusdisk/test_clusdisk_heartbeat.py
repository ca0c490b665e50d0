"""Heartbeat protocol: wire format pinned, authentication, replay protection,
incarnations, link loss and clean shutdown."""

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusdisk.heartbeat import (
    DATAGRAM_BYTES,
    Datagram,
    HeartbeatConfig,
    HeartbeatError,
    HeartbeatProtocol,
    LinkDown,
    LinkUp,
    PartnerLost,
    PartnerRestarted,
    PartnerSeen,
    PartnerShutdown,
    PartnerUp,
    Rejected,
)

KEY = bytes(range(32))


def pair(links: int = 1, interval: float = 1.0, miss: int = 3):
    a = HeartbeatProtocol(HeartbeatConfig(1, 2, KEY, links, interval, miss), incarnation=100)
    b = HeartbeatProtocol(HeartbeatConfig(2, 1, KEY, links, interval, miss), incarnation=200)
    return a, b


def test_datagram_bytes_are_pinned():
    datagram = Datagram(flags=0x01, sender=1, receiver=2, link=0, incarnation=0x0102030405060708,
                        sequence=5)
    wire = datagram.encode(KEY)
    header = bytes.fromhex("43444842 01 01 0001 0002 00 00 0102030405060708 0000000000000005")
    assert wire[:28] == header
    assert wire[28:] == hmac.new(KEY, header, hashlib.sha256).digest()
    assert len(wire) == DATAGRAM_BYTES == 60
    assert Datagram.decode(wire, KEY) == datagram
    assert datagram.claims_quorum and not datagram.clean_shutdown


def test_first_heartbeat_brings_the_partner_up():
    a, b = pair()
    [(link, data)] = a.send(0.0, claims_quorum=True)
    events = b.receive(link, data, 0.0)
    assert events == [PartnerUp(100), LinkUp(0), PartnerSeen(0, True)]
    assert b.partner_alive and b.partner_incarnation == 100
    [(link, data)] = a.send(1.0, claims_quorum=False)
    assert b.receive(link, data, 1.0) == [PartnerSeen(0, False)]


@pytest.mark.parametrize("tamper, reason", [
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "mac"),              # MAC
    (lambda d: d[:5] + bytes([d[5] ^ 2]) + d[6:], "mac"),        # flags changed
    (lambda d: d[:59], "length"),
    (lambda d: d + b"\0", "length"),
])
def test_tampered_datagrams_are_rejected(tamper, reason):
    a, b = pair()
    [(link, data)] = a.send(0.0, claims_quorum=True)
    events = b.receive(link, tamper(data), 0.0)
    assert len(events) == 1 and isinstance(events[0], Rejected) and events[0].reason == reason
    assert not b.partner_alive


def test_wrong_key_is_rejected():
    a, b = pair()
    other = HeartbeatProtocol(HeartbeatConfig(1, 2, b"x" * 32), incarnation=100)
    [(link, data)] = other.send(0.0, claims_quorum=True)
    assert b.receive(link, data, 0.0)[0].reason == "mac"


def test_replay_is_rejected():
    a, b = pair()
    [(link, first)] = a.send(0.0, claims_quorum=True)
    [(_, second)] = a.send(1.0, claims_quorum=True)
    b.receive(link, second, 1.0)
    assert b.receive(link, first, 1.5)[0].reason == "replay"          # older
    assert b.receive(link, second, 1.5)[0].reason == "replay"         # same


def test_replayed_heartbeats_cannot_keep_a_dead_partner_alive():
    a, b = pair(miss=3)
    captured = []
    for t in range(3):
        [(link, data)] = a.send(float(t), claims_quorum=True)
        captured.append(data)
        b.receive(link, data, float(t))
    assert b.poll(4.9) == []
    for data in captured:                                # the attacker replays them all
        assert isinstance(b.receive(0, data, 5.0)[0], Rejected)
    assert b.poll(5.0) == [LinkDown(0), PartnerLost()]


def test_other_cluster_node_ids_links_and_reflection():
    a, b = pair(links=2)
    datagrams = dict(a.send(0.0, claims_quorum=False))
    assert b.receive(1, datagrams[0], 0.0)[0].reason == "link"        # link 0 data on link 1
    assert b.receive(7, datagrams[0], 0.0)[0].reason == "link"
    own = dict(b.send(0.0, claims_quorum=False))
    assert b.receive(0, own[0], 0.0)[0].reason == "reflected"
    stranger = HeartbeatProtocol(HeartbeatConfig(3, 2, KEY, 2), incarnation=1)
    assert b.receive(0, dict(stranger.send(0.0, claims_quorum=False))[0], 0.0)[0].reason == "address"
    misaddressed = Datagram(0, 1, 3, 0, 100, 1).encode(KEY)
    assert b.receive(0, misaddressed, 0.0)[0].reason == "address"
    future = Datagram(0, 1, 2, 0, 100, 1, version=2).encode(KEY)
    assert b.receive(0, future, 0.0)[0].reason == "version"


def test_restart_and_stale_incarnation():
    a, b = pair()
    b.receive(*a.send(0.0, claims_quorum=True)[0], 0.0)
    restarted = HeartbeatProtocol(a.config, incarnation=150)
    events = b.receive(*restarted.send(1.0, claims_quorum=False)[0], 1.0)
    assert events == [PartnerRestarted(100, 150), PartnerSeen(0, False)]
    [(link, old)] = a.send(2.0, claims_quorum=True)                     # the old incarnation
    assert b.receive(link, old, 2.0)[0].reason == "stale-incarnation"


def test_link_loss_and_partner_loss_with_two_links():
    a, b = pair(links=2, interval=1.0, miss=3)
    for t in range(3):
        for link, data in a.send(float(t), claims_quorum=True):
            if not (t > 0 and link == 0):                 # link 0 dies after t=0
                b.receive(link, data, float(t))
    assert b.poll(3.0) == [LinkDown(0)]
    assert b.partner_alive and b.links_alive() == (False, True)
    assert b.next_deadline() == pytest.approx(5.0)
    assert b.poll(4.9) == []
    assert b.poll(5.0) == [LinkDown(1), PartnerLost()]
    assert b.poll(9.0) == [] and b.next_deadline() is None
    events = b.receive(*a.send(9.0, claims_quorum=True)[0], 9.0)     # back on link 0
    assert events == [PartnerUp(100), LinkUp(0), PartnerSeen(0, True)]


def test_clean_shutdown_is_not_a_loss():
    a, b = pair(links=2)
    for link, data in a.send(0.0, claims_quorum=True):
        b.receive(link, data, 0.0)
    notice = a.send(0.5, claims_quorum=False, clean_shutdown=True)
    assert b.receive(*notice[0], 0.5) == [PartnerShutdown(100)]
    assert b.receive(*notice[1], 0.5) == []                            # duplicate on link 1
    for link, data in a.send(0.6, claims_quorum=False, clean_shutdown=True):
        assert b.receive(link, data, 0.6) == []
    assert not b.partner_alive and b.poll(100.0) == []
    newer = HeartbeatProtocol(a.config, incarnation=300)
    assert b.receive(*newer.send(101.0, claims_quorum=False)[0], 101.0)[0] == PartnerUp(300)


def test_config_validation():
    with pytest.raises(ValueError):
        HeartbeatConfig(1, 2, b"short")
    with pytest.raises(ValueError):
        HeartbeatConfig(1, 1, KEY)
    with pytest.raises(ValueError):
        HeartbeatConfig(1, 2, KEY, links=0)
    with pytest.raises(ValueError):
        HeartbeatConfig(1, 2, KEY, interval_s=0)
    assert HeartbeatConfig(1, 2, KEY, interval_s=0.5, miss_count=4).timeout_s == 2.0
    with pytest.raises(HeartbeatError):
        Datagram.decode(b"CDHB" + bytes(56), KEY)


@given(st.binary(max_size=80), st.integers(min_value=-1, max_value=3))
def test_garbage_is_rejected_never_raised(blob, link):
    _, b = pair(links=2)
    events = b.receive(link, blob, 0.0)
    assert len(events) == 1 and isinstance(events[0], Rejected)
