"""Two real peer channel endpoints over loopback TCP (node 1 on 127.0.0.1,
node 2 on 127.0.0.2): a request and its answer, a wrong cluster key and
another protocol version refused, clearly, on both sides."""

import asyncio
import logging
import socket

import pytest

from clusdisk.peer import PeerChannel, PeerError

KEY = b"0123456789abcdef0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def endpoints(key_b=KEY, version_b=1, port=None):
    port = port or free_port()
    seen = {1: [], 2: []}

    def handler(node):
        async def handle(op, args):
            seen[node].append((op, args))
            return {"ok": True, "node": node, "echo": args}
        return handle

    a = PeerChannel(KEY, 1, 2, (("127.0.0.1", port),), (("127.0.0.3", port), ("127.0.0.2", port)),
                    handler(1), connect_timeout_s=1.0)
    b = PeerChannel(key_b, 2, 1, (("127.0.0.2", port),), (("127.0.0.1", port),), handler(2),
                    version=version_b)
    return a, b, seen


def scenario(coro_factory, **kwargs):
    async def main():
        a, b, seen = endpoints(**kwargs)
        await a.start()
        await b.start()
        try:
            await coro_factory(a, b, seen)
        finally:
            await a.close()
            await b.close()
    asyncio.run(main())


def test_request_and_answer_both_ways_first_link_that_works():
    async def body(a, b, seen):
        # a's first partner address (127.0.0.3) has no listener: the next works
        assert await a.call("prepare", {"aggregate": "aggr1"}) == {
            "ok": True, "node": 2, "echo": {"aggregate": "aggr1"}}
        assert await b.call("placement") == {"ok": True, "node": 1, "echo": {}}
        assert seen == {1: [("placement", {})], 2: [("prepare", {"aggregate": "aggr1"})]}
        assert (a.reachable, a.protocol, b.reachable) == (True, "v1", True)
    scenario(body)


def test_wrong_key_is_refused(caplog):
    async def body(a, b, seen):
        with pytest.raises(PeerError, match="wrong cluster key"):
            await a.call("status")
        assert seen == {1: [], 2: []} and a.reachable is False
        await asyncio.sleep(0.05)
        assert "hello authentication failed" in b.last_error
    scenario(body, key_b=b"x" * 32)


def test_other_version_is_refused_by_name_on_both_sides(caplog):
    caplog.set_level(logging.ERROR, "clusdisk.peer")

    async def body(a, b, seen):
        with pytest.raises(PeerError, match="partner speaks clusdisk peer protocol v2, "
                                            "this node v1"):
            await a.call("status")
        assert a.protocol == "partner speaks clusdisk peer protocol v2, this node v1"
        await asyncio.sleep(0.05)
        assert b.protocol == "partner speaks clusdisk peer protocol v1, this node v2"
        assert seen == {1: [], 2: []}
    scenario(body, version_b=2)
    assert "partner speaks clusdisk peer protocol v1, this node v2" in caplog.text


def test_unreachable_partner():
    async def body(a, b, seen):
        await b.close()
        with pytest.raises(PeerError, match="partner unreachable on every link"):
            await a.call("status")
        assert a.reachable is False
    scenario(body)
