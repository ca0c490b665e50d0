"""LIFs (floating addresses): add or remove an address with netlink
(pyroute2; the only clusdisk module that imports it) and announce the move
(shared/reference/cluster.md 1.3 and 4).  Besides the heartbeat transport
and the control plumbing this is the only clusdisk module with sockets:
AF_PACKET for ARP and neighbour advertisements, raw IP for tickle ACKs.

Every change is verified by reading the addresses back (ctdb's
takeip/releaseip discipline).  IPv6 addresses are added with IFA_F_NODAD,
so they are usable at once instead of tentative for a second or two, and
the read-back checks they are not tentative.

After the address is added, ``up`` sends round 1 at once: a gratuitous ARP
request and an unsolicited ARP reply (IPv4) or an unsolicited neighbour
advertisement (IPv6), then one tickle ACK to every client connection of
that address it was given, so each client learns of the move at its next
segment instead of after its retransmission timeouts.  Rounds 2.. follow
``announce_interval_s`` apart in a background task (CTDB: 3 rounds, 1 s),
cancelled by ``down`` of the LIF and by ``close``; ``up`` returns after
round 1.  The frames are built by ``clusdisk.announce``.  A frame that cannot
be sent (no AF_PACKET, EPERM, ...) is logged and counted in ``failed``,
never fails the bring-up; ``sent`` counts what went out, by kind, and
``on_round(sent, failed)`` hears each round's counts (the daemon's
Prometheus counters, ``ClusdiskMetrics.lif_announce_round``).
"""

import asyncio
import collections
import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass

from pyroute2 import IPRoute, NetlinkError

from clusdisk import announce
from clusdisk.errors import ClusdiskError

log = logging.getLogger("clusdisk.lif")

IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40

Tickle = tuple[str, int, str, int]
"""A client connection of a LIF: (client_ip, client_port, server_ip, server_port)."""


class LifError(ClusdiskError):
    status = "lif"


def _packet_socket(interface: str):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((interface, 0))
    return sock


def _raw_ip_socket(family: int):
    """A raw socket that sends whole IP packets: IPPROTO_RAW implies the
    header is included (raw(7); for IPv6 net/ipv6/af_inet6.c)."""
    sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    return sock


@dataclass(frozen=True)
class _Round:
    """What one announcement round sends for a LIF."""
    interface: str
    family: int
    frames: tuple[tuple[str, bytes], ...]      # (kind, Ethernet frame) for the packet socket
    tickles: tuple[tuple[str, bytes], ...]     # (client ip, IP packet) for the raw socket


class LifMover:
    """Add/remove LIF addresses and announce them.  ``iproute_factory()``
    returns an object with pyroute2 IPRoute's ``link_lookup``/``get_links``/
    ``addr``/``get_addr``/``close``; ``packet_socket(interface)`` an
    AF_PACKET socket; ``raw_socket(family)`` a raw IP socket with the header
    included; ``run_blocking(func, *args)`` runs blocking calls;
    ``on_round(sent, failed)`` is called after each round with its counts."""

    def __init__(self, *, iproute_factory=IPRoute, packet_socket=_packet_socket,
                 raw_socket=_raw_ip_socket, run_blocking=asyncio.to_thread,
                 announce_rounds: int = 3, announce_interval_s: float = 1.0,
                 on_round=None) -> None:
        if announce_rounds < 1 or announce_interval_s < 0:
            raise ValueError("announce_rounds must be >= 1 and announce_interval_s >= 0")
        self._iproute_factory = iproute_factory
        self._packet_socket = packet_socket
        self._raw_socket = raw_socket
        self._run_blocking = run_blocking
        self.announce_rounds = announce_rounds
        self.announce_interval_s = announce_interval_s
        self.on_round = on_round
        self.sent: collections.Counter[str] = collections.Counter()
        self.failed: collections.Counter[str] = collections.Counter()
        self._later_rounds: dict[str, asyncio.Task] = {}

    async def up(self, lif, tickles=()) -> None:
        """Add ``lif``'s address, send round 1, schedule the later rounds.
        ``tickles`` holds ``Tickle`` tuples; those of other addresses are ignored."""
        await self._cancel_rounds(lif)
        mac = await self._run_blocking(self._change, lif, True)
        plan = self._plan(lif, mac, tickles)
        await self._send(plan)
        if self.announce_rounds > 1:
            task = asyncio.get_running_loop().create_task(
                self._repeat(plan), name=f"lif-announce-{lif.name}")
            self._later_rounds[lif.name] = task
            task.add_done_callback(lambda done: self._round_done(lif.name, done))

    async def down(self, lif) -> None:
        await self._cancel_rounds(lif)
        await self._run_blocking(self._change, lif, False)

    @property
    def pending_rounds(self) -> tuple[str, ...]:
        """Names of the LIFs whose later announcement rounds are still to come."""
        return tuple(self._later_rounds)

    async def close(self) -> None:
        """Cancel every pending announcement round."""
        tasks = list(self._later_rounds.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- announcements

    def _plan(self, lif, mac: bytes | None, tickles) -> _Round:
        address = ipaddress.ip_interface(lif.address).ip
        frames: tuple[tuple[str, bytes], ...] = ()
        if mac is None:
            log.warning("LIF %s: %s has no MAC address, nothing to announce", lif.name,
                        lif.interface)
        elif address.version == 4:
            frames = (("arp_request", announce.arp_request(mac, str(address))),
                      ("arp_reply", announce.arp_reply(mac, str(address))))
        else:
            frames = (("neighbour_advertisement",
                       announce.neighbour_advertisement(mac, str(address))),)
        packets = []
        for client_ip, client_port, server_ip, server_port in tickles:
            try:
                if ipaddress.ip_address(server_ip) != address:
                    continue
                packets.append((client_ip, announce.tickle_ack(
                    str(address), server_port, client_ip, client_port)))
            except ValueError as exc:
                log.warning("LIF %s: no tickle ACK to %s:%s (%s)", lif.name, client_ip,
                            client_port, exc)
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        return _Round(lif.interface, family, frames, tuple(packets))

    async def _send(self, plan: _Round) -> None:
        sent, failed = await self._run_blocking(self._send_round, plan)
        self.sent.update(sent)
        self.failed.update(failed)
        if self.on_round is not None:
            self.on_round(sent, failed)

    async def _repeat(self, plan: _Round) -> None:
        for _ in range(self.announce_rounds - 1):
            await asyncio.sleep(self.announce_interval_s)
            await self._send(plan)

    def _round_done(self, name: str, task: asyncio.Task) -> None:
        if self._later_rounds.get(name) is task:
            del self._later_rounds[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("LIF %s: announcement rounds failed: %r", name, task.exception())

    async def _cancel_rounds(self, lif) -> None:
        task = self._later_rounds.pop(lif.name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _send_round(self, plan: _Round) -> tuple[collections.Counter, collections.Counter]:
        """Blocking: one round's frames and tickles; returns (sent, failed) by kind."""
        sent: collections.Counter[str] = collections.Counter()
        failed: collections.Counter[str] = collections.Counter()
        if plan.frames:
            self._send_each(plan.frames, lambda: self._packet_socket(plan.interface),
                            lambda sock, frame: sock.send(frame), sent, failed)
        if plan.tickles:
            tickles = tuple(("tickle_ack", packet, client) for client, packet in plan.tickles)
            self._send_each(tickles, lambda: self._raw_socket(plan.family),
                            lambda sock, packet, client: sock.sendto(packet, (client, 0)),
                            sent, failed)
        return sent, failed

    @staticmethod
    def _send_each(items, open_socket, send, sent, failed) -> None:
        try:
            sock = open_socket()
        except OSError as exc:
            log.warning("LIF: cannot open a socket for %s (%s)",
                        ", ".join(sorted({item[0] for item in items})), exc)
            failed.update(item[0] for item in items)
            return
        with sock:
            for kind, *args in items:
                try:
                    send(sock, *args)
                except OSError as exc:
                    log.warning("LIF: sending %s failed (%s)", kind, exc)
                    failed[kind] += 1
                else:
                    sent[kind] += 1

    # -- netlink

    def _change(self, lif, add: bool) -> bytes | None:
        """Blocking: add or remove the address and read it back; on add,
        returns the interface's MAC address (None if it has none)."""
        interface = ipaddress.ip_interface(lif.address)
        ipr = self._iproute_factory()
        try:
            found = ipr.link_lookup(ifname=lif.interface)
            if not found:
                raise LifError(f"LIF {lif.name}: no interface {lif.interface}")
            index = found[0]
            extra = {"flags": IFA_F_NODAD} if add and interface.version == 6 else {}
            try:
                ipr.addr("add" if add else "del", index=index, address=str(interface.ip),
                         prefixlen=interface.network.prefixlen, **extra)
            except NetlinkError as exc:
                benign = errno.EEXIST if add else errno.EADDRNOTAVAIL
                if exc.code != benign:
                    raise LifError(f"LIF {lif.name}: {'add' if add else 'del'} "
                                   f"{lif.address} on {lif.interface}: {exc}") from None
            flags = self._addresses(ipr, index).get(str(interface.ip))
            if (flags is not None) != add:
                raise LifError(f"LIF {lif.name}: {lif.address} is "
                               f"{'missing' if add else 'still present'} on {lif.interface}")
            if add and flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
                raise LifError(f"LIF {lif.name}: {lif.address} is tentative or failed "
                               f"duplicate address detection on {lif.interface}")
            log.info("LIF %s %s: %s on %s", lif.name, "up" if add else "down", lif.address,
                     lif.interface)
            if not add:
                return None
            mac = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
            if not mac or mac == "00:00:00:00:00:00":
                return None
            return bytes.fromhex(mac.replace(":", ""))
        finally:
            ipr.close()

    @staticmethod
    def _addresses(ipr, index: int) -> dict[str, int]:
        """Address -> IFA flags (the 32-bit IFA_FLAGS attribute when present)."""
        found = {}
        for msg in ipr.get_addr(index=index):
            flags = msg.get_attr("IFA_FLAGS")
            found[msg.get_attr("IFA_ADDRESS")] = flags if flags is not None else msg["flags"]
        return found
