"""LIFs (floating addresses): add or remove an address with netlink
(pyroute2; the only clusdisk module that imports it) and announce it with
gratuitous ARP on an AF_PACKET socket (the only other socket user besides
the heartbeat transport and the control plumbing).

``arp_announcement`` is a pure frame builder pinned in the unit tests
(RFC 5227 2.3 ARP Announcement: an ARP request whose sender and target
protocol addresses are both the address, target hardware address zero,
broadcast).  Every change is verified by reading the addresses back
(ctdb's takeip/releaseip discipline).  IPv6 LIFs are added and removed but
not announced (unsolicited neighbour advertisements are future work).
"""

import asyncio
import errno
import ipaddress
import logging
import socket
import struct

from pyroute2 import IPRoute, NetlinkError

from clusdisk.errors import ClusdiskError

log = logging.getLogger("clusdisk.lif")

ETH_P_ARP = 0x0806
_ETHERNET = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")


class LifError(ClusdiskError):
    status = "lif"


def arp_announcement(mac: bytes, address: str) -> bytes:
    """Ethernet frame of an ARP announcement of ``address`` from ``mac``."""
    if len(mac) != 6:
        raise ValueError("a MAC address has 6 bytes")
    ip = ipaddress.IPv4Address(address).packed
    return (_ETHERNET.pack(b"\xff" * 6, mac, ETH_P_ARP)
            + _ARP.pack(1, 0x0800, 6, 4, 1, mac, ip, bytes(6), ip))


def _packet_socket(interface: str):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((interface, 0))
    return sock


class LifMover:
    """Add/remove LIF addresses.  ``iproute_factory()`` returns an object
    with pyroute2 IPRoute's ``link_lookup``/``get_links``/``addr``/
    ``get_addr``/``close``; ``packet_socket(interface)`` an AF_PACKET socket."""

    def __init__(self, *, iproute_factory=IPRoute, packet_socket=_packet_socket,
                 run_blocking=asyncio.to_thread, arp_count: int = 2) -> None:
        self._iproute_factory = iproute_factory
        self._packet_socket = packet_socket
        self._run_blocking = run_blocking
        self.arp_count = arp_count

    async def up(self, lif) -> None:
        await self._run_blocking(self._change, lif, True)

    async def down(self, lif) -> None:
        await self._run_blocking(self._change, lif, False)

    def _change(self, lif, add: bool) -> None:
        interface = ipaddress.ip_interface(lif.address)
        ipr = self._iproute_factory()
        try:
            found = ipr.link_lookup(ifname=lif.interface)
            if not found:
                raise LifError(f"LIF {lif.name}: no interface {lif.interface}")
            index = found[0]
            try:
                ipr.addr("add" if add else "del", index=index, address=str(interface.ip),
                         prefixlen=interface.network.prefixlen)
            except NetlinkError as exc:
                benign = errno.EEXIST if add else errno.EADDRNOTAVAIL
                if exc.code != benign:
                    raise LifError(f"LIF {lif.name}: {'add' if add else 'del'} "
                                   f"{lif.address} on {lif.interface}: {exc}") from None
            present = str(interface.ip) in self._addresses(ipr, index)
            if present != add:
                raise LifError(f"LIF {lif.name}: {lif.address} is "
                               f"{'missing' if add else 'still present'} on {lif.interface}")
            if add and interface.version == 4:
                mac = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
                self._announce(lif, bytes.fromhex(mac.replace(":", "")), str(interface.ip))
            log.info("LIF %s %s: %s on %s", lif.name, "up" if add else "down", lif.address,
                     lif.interface)
        finally:
            ipr.close()

    @staticmethod
    def _addresses(ipr, index: int) -> set[str]:
        return {msg.get_attr("IFA_ADDRESS") for msg in ipr.get_addr(index=index)}

    def _announce(self, lif, mac: bytes, address: str) -> None:
        frame = arp_announcement(mac, address)
        try:
            sock = self._packet_socket(lif.interface)
        except OSError as exc:
            log.warning("LIF %s: no gratuitous ARP (%s)", lif.name, exc)
            return
        with sock:
            for _ in range(self.arp_count):
                sock.send(frame)
