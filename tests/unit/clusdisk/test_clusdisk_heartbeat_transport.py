"""Two HeartbeatTransports over loopback UDP (real sockets, short interval)."""

import asyncio

from clusdisk.config import LinkConfig
from clusdisk.executor import LoopClock
from clusdisk.heartbeat import (
    HeartbeatConfig,
    HeartbeatProtocol,
    PartnerLost,
    PartnerSeen,
    PartnerShutdown,
    PartnerUp,
    Rejected,
)
from clusdisk.heartbeat_transport import HeartbeatTransport
from smbca.config import ListenAddress
from test_clusdisk_daemon import free_ports

KEY = b"k" * 32


def test_loopback_heartbeats_loss_and_shutdown():
    pa, pb = free_ports(2)
    seen = {1: [], 2: []}

    def transport(me, peer, mine, theirs):
        protocol = HeartbeatProtocol(HeartbeatConfig(me, peer, KEY, 1, 0.02, 3), incarnation=me)
        link = LinkConfig(ListenAddress("127.0.0.1", mine), ListenAddress("127.0.0.1", theirs))
        return HeartbeatTransport(protocol, (link,), seen[me].extend, lambda: me == 1, LoopClock())

    async def scenario():
        a, b = transport(1, 2, pa, pb), transport(2, 1, pb, pa)
        await a.start()
        await b.start()
        assert a.local_ports() == [pa]
        await asyncio.sleep(0.2)
        assert PartnerUp(1) in seen[2] and PartnerSeen(0, True) in seen[2]
        assert PartnerSeen(0, False) in seen[1]
        b.received(0, b"x" * 60, ("127.0.0.2", pa))                  # wrong source
        assert seen[2][-1] == Rejected(0, "source", "from 127.0.0.2")
        await b.close()                                                # b dies silently
        await asyncio.sleep(0.2)
        assert PartnerLost() in seen[1]
        seen[2].clear()
        b2 = transport(2, 1, pb, pa)
        await b2.start()
        await a.announce_shutdown()
        await asyncio.sleep(0.1)
        assert PartnerShutdown(1) in seen[2]
        await a.close()
        await b2.close()
    asyncio.run(scenario())
