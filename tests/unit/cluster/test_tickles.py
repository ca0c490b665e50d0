"""The tickle list (smbcad/cluster/tickles.py) and its trip over a real
mirror link on 127.0.0.1 (issue 11 item 1: "the list of connections is
carried on the mirror")."""

import asyncio
from types import SimpleNamespace

import pytest

from smbcad.cluster.mirror_link import MirrorLink
from smbcad.cluster.tickles import TickleTracker, split_peer
from smbcad.server.connections import ConnectionSet

KEY = b"k" * 32


class Conn(SimpleNamespace):
    __hash__ = object.__hash__                  # identity, like smbcad's Connection
    __eq__ = object.__eq__


def conn(peer: str, local: str, port: int = 445):
    return Conn(peer=peer, local_address=local, local_port=port)


@pytest.mark.parametrize("peer, expected", [
    ("192.0.2.100:50123", ("192.0.2.100", 50123)),
    ("fd5b:ca::64:40000", ("fd5b:ca::64", 40000)),
    ("fe80::1%pub0:40000", ("fe80::1", 40000)),
    ("?", None), ("192.0.2.1:", None)])
def test_split_peer(peer, expected):
    assert split_peer(peer) == expected


def tracker():
    published, scheduled = [], []
    tracked = TickleTracker({"aggr1": ("192.0.2.10",), "aggr2": ("192.0.2.20",)},
                            lambda name, conns: published.append((name, conns)),
                            scheduled.append)
    return tracked, published, scheduled


def test_connections_on_lifs_are_listed_per_aggregate_and_published_once_per_turn():
    tracked, published, scheduled = tracker()
    connections = ConnectionSet()
    connections.watchers.append(tracked)
    first, second = conn("192.0.2.100:1000", "192.0.2.10"), conn("192.0.2.101:1001", "192.0.2.10")
    other, node_local = conn("192.0.2.100:1002", "192.0.2.20"), conn("192.0.2.100:1003", "192.0.2.1")
    for c in (first, second, other, node_local):
        connections.add(c)
    connections.add(first)                                   # again: no change
    assert len(scheduled) == 1 and published == []
    scheduled.pop()()
    assert published == [
        ("aggr1", (("192.0.2.100", 1000, "192.0.2.10", 445), ("192.0.2.101", 1001, "192.0.2.10", 445))),
        ("aggr2", (("192.0.2.100", 1002, "192.0.2.20", 445),))]
    published.clear()
    connections.discard(first)
    connections.discard(first)                               # gone already: no change
    connections.discard(node_local)                          # on no LIF: no publication
    scheduled.pop()()
    assert published == [("aggr1", (("192.0.2.101", 1001, "192.0.2.10", 445),))]
    assert tracked.connections("aggr2") == (("192.0.2.100", 1002, "192.0.2.20", 445),)
    assert first not in connections and second in connections


async def _link_pair(features_b=None):
    a = MirrorLink(node_id="1", cluster_key=KEY, incarnation=1, listen=("127.0.0.1", 0),
                   peer=("127.0.0.1", 1), peer_node_id="2")
    await a.start()
    extra = {} if features_b is None else {"features": features_b}
    b = MirrorLink(node_id="2", cluster_key=KEY, incarnation=2, listen=("127.0.0.1", 0),
                   peer=a.listen, peer_node_id="1", **extra)
    await b.start()
    a.peer = b.listen
    a._dialer.cancel()
    a._dialer = asyncio.get_running_loop().create_task(a._dial_forever())
    await asyncio.wait_for(asyncio.gather(a.wait_open(), b.wait_open()), 10)
    return a, b


async def _until(predicate, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def test_tickle_list_reaches_the_partner_and_outlives_the_connection():
    async def scenario():
        a, b = await _link_pair()
        try:
            listed = (("192.0.2.100", 50123, "192.0.2.10", 445),)
            a.set_tickles("aggr1", listed)
            await _until(lambda: "aggr1" in b.partner_tickles)
            assert b.partner_tickles["aggr1"] == listed
            a.set_tickles("aggr1", ())
            await _until(lambda: b.partner_tickles["aggr1"] == ())
            a.set_tickles("aggr1", listed)
            await _until(lambda: b.partner_tickles["aggr1"] == listed)
            await a.stop()                                   # the owner dies
            await _until(lambda: not b.is_open)
            assert b.take_partner_tickles("aggr1") == listed
            assert b.take_partner_tickles("aggr1") == ()     # taken once
        finally:
            await a.stop()
            await b.stop()
    asyncio.run(scenario())


def test_lists_set_before_the_connection_are_sent_when_it_opens():
    async def scenario():
        a = MirrorLink(node_id="1", cluster_key=KEY, incarnation=1, listen=("127.0.0.1", 0),
                       peer=("127.0.0.1", 1), peer_node_id="2")
        a.set_tickles("aggr1", (("192.0.2.100", 1, "192.0.2.10", 445),))
        await a.start()
        b = MirrorLink(node_id="2", cluster_key=KEY, incarnation=2, listen=("127.0.0.1", 0),
                       peer=a.listen, peer_node_id="1")
        await b.start()
        a.peer = b.listen
        try:
            await _until(lambda: "aggr1" in b.partner_tickles)
        finally:
            await a.stop()
            await b.stop()
    asyncio.run(scenario())


def test_a_partner_of_the_previous_release_gets_no_tickles_and_stays_connected():
    async def scenario():
        a, b = await _link_pair(features_b=0)
        try:
            a.set_tickles("aggr1", (("192.0.2.100", 1, "192.0.2.10", 445),))
            await asyncio.sleep(0.2)
            assert b.partner_tickles == {} and a.is_open and b.is_open
            assert a.drops == b.drops == 0
        finally:
            await a.stop()
            await b.stop()
    asyncio.run(scenario())


def test_a_store_still_loading_has_no_mirror_status_yet(tmp_path):
    """smbcad's status during an adoption: the store's engine exists before
    load() recovered the copy; status says None instead of failing (seen in
    the lab: a clusdisk status during a takeover got smbcad's traceback)."""
    from smbcad.cluster.mirrored_engine import MirroredEngine
    loop = asyncio.new_event_loop()
    try:
        link = MirrorLink(node_id="1", cluster_key=KEY, incarnation=1,
                          listen=("127.0.0.1", 0), peer=("127.0.0.1", 1), peer_node_id="2")
        engine = MirroredEngine(state_dir=str(tmp_path / "state"), aggregate="aggr1",
                                mount_point=str(tmp_path / "mnt"), link=link, loop=loop)
        assert engine.status() is None
        engine.close()
    finally:
        loop.close()
