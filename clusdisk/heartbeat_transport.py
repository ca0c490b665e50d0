"""asyncio UDP endpoints for the heartbeat (one per interconnect link), the
I/O half of clusdisk.heartbeat: sends every ``interval_s``, polls the
protocol's deadlines, and hands every event to ``on_events``.

A datagram whose source address is not the link's configured peer is
counted as rejected ("source") before the protocol sees it.
"""

import asyncio
import ipaddress
import logging

from clusdisk.heartbeat import HeartbeatProtocol, Rejected

log = logging.getLogger("clusdisk.heartbeat")


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return a == b


class _Link(asyncio.DatagramProtocol):
    def __init__(self, owner: "HeartbeatTransport", index: int) -> None:
        self.owner = owner
        self.index = index

    def datagram_received(self, data: bytes, addr) -> None:
        self.owner.received(self.index, data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("heartbeat link %d: %s", self.index, exc)


class HeartbeatTransport:
    def __init__(self, protocol: HeartbeatProtocol, links, on_events, claims_quorum,
                 clock) -> None:
        """``links``: LinkConfig tuple (local and peer endpoints, in link
        order); ``claims_quorum()`` is sampled for every send; ``clock`` has
        ``now()`` (clusdisk.executor.LoopClock)."""
        self.protocol = protocol
        self.links = tuple(links)
        self.on_events = on_events
        self.claims_quorum = claims_quorum
        self.clock = clock
        self._transports: list = []
        self._task: asyncio.Task | None = None
        self._stopped = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for index, link in enumerate(self.links):
            transport, _ = await loop.create_datagram_endpoint(
                lambda index=index: _Link(self, index), local_addr=(link.local.host, link.local.port))
            self._transports.append(transport)
        self._task = loop.create_task(self._tick())

    def local_ports(self) -> list[int]:
        return [t.get_extra_info("sockname")[1] for t in self._transports]

    async def _tick(self) -> None:
        interval = self.protocol.config.interval_s
        while not self._stopped:
            self.send()
            self.on_events(self.protocol.poll(self.clock.now()))
            await asyncio.sleep(interval)

    def send(self, clean_shutdown: bool = False) -> None:
        datagrams = self.protocol.send(self.clock.now(), claims_quorum=self.claims_quorum(),
                                       clean_shutdown=clean_shutdown)
        for link, data in datagrams:
            peer = self.links[link].peer
            try:
                self._transports[link].sendto(data, (peer.host, peer.port))
            except OSError as exc:
                log.debug("heartbeat link %d: send: %s", link, exc)

    def received(self, index: int, data: bytes, addr) -> None:
        if self._stopped:
            return
        if not _same_host(addr[0], self.links[index].peer.host):
            self.on_events([Rejected(index, "source", f"from {addr[0]}")])
            return
        self.on_events(self.protocol.receive(index, data, self.clock.now()))

    async def announce_shutdown(self, repeat: int = 3) -> None:
        """Send the clean-shutdown flag a few times (UDP may lose one)."""
        for _ in range(repeat):
            self.send(clean_shutdown=True)
            await asyncio.sleep(0.05)
        self._stopped = True

    async def close(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for transport in self._transports:
            transport.close()
        self._transports.clear()
