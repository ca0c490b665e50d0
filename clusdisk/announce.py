"""Frames that tell the network a LIF has moved (shared/reference/cluster.md
1.3 and 4): pure builders, standard library only; ``clusdisk.lif`` sends them.

* ``arp_request``: RFC 5227 2.3 ARP Announcement, a broadcast ARP request
  whose sender and target protocol addresses are both the LIF, target
  hardware address zero.
* ``arp_reply``: the unsolicited ARP reply CTDB sends next to it
  (``ctdb_sys_send_arp``): broadcast, sender = target = the LIF, and target
  hardware = sender hardware, which is what Linux needs to count a reply as
  gratuitous (``net/ipv4/arp.c:arp_is_garp``) and let it override a
  neighbour entry younger than its locktime.
* ``neighbour_advertisement``: RFC 4861 4.4 / 7.2.6 unsolicited Neighbour
  Advertisement to all-nodes (ff02::1, 33:33:00:00:00:01), hop limit 255,
  Override set, Solicited and Router clear, with the Target Link-Layer
  Address option (4.6.1).  A node that has an entry for the target takes
  the new link-layer address at once (7.2.5).
* ``tickle_ack``: a whole IPv4 or IPv6 packet carrying a TCP ACK with
  sequence 0, acknowledgement 0 and window 1234 from the LIF to a client
  (CTDB ``ctdb_sys_send_tcp(..., 0, 0, 0)``).  The client answers the
  out-of-window segment with an ACK of its own (RFC 9293 3.10.7.4, RFC 5961
  4); the new owner has no such connection and answers that with RST, so
  the client learns at once that its connection is gone.
"""

import ipaddress
import struct

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST = b"\xff" * 6
ALL_NODES_MAC = bytes.fromhex("333300000001")     # RFC 2464 7: 33:33 + low 32 bits of ff02::1
ALL_NODES = ipaddress.IPv6Address("ff02::1")

ARP_REQUEST, ARP_REPLY = 1, 2
ICMPV6_NEIGHBOUR_ADVERTISEMENT = 136
NA_OVERRIDE = 0x20000000                           # R S O flags lead the 32-bit word
OPTION_TARGET_LINK_LAYER = 2
IPPROTO_TCP, IPPROTO_ICMPV6 = 6, 58
TCP_ACK = 0x10
TICKLE_WINDOW = 1234                               # CTDB's marker, easy to spot in a capture
TICKLE_TTL = 64
IPV4_DONT_FRAGMENT = 0x4000

_ETHERNET = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_PSEUDO_IPV4 = struct.Struct("!4s4sxBH")
_PSEUDO_IPV6 = struct.Struct("!16s16sI3xB")
_TCP = struct.Struct("!HHIIBBHHH")
_NEIGHBOUR_ADVERTISEMENT = struct.Struct("!BBHI16sBB6s")


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's complement of the one's complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac(mac: bytes) -> bytes:
    if len(mac) != 6:
        raise ValueError("a MAC address has 6 bytes")
    return mac


def _port(port: int) -> int:
    if not isinstance(port, int) or not 0 < port <= 0xFFFF:
        raise ValueError(f"{port!r} is not a TCP port")
    return port


def _arp(mac: bytes, address: str, opcode: int, target_mac: bytes) -> bytes:
    ip = ipaddress.IPv4Address(address).packed
    return (_ETHERNET.pack(BROADCAST, mac, ETH_P_ARP)
            + _ARP.pack(1, ETH_P_IP, 6, 4, opcode, mac, ip, target_mac, ip))


def arp_request(mac: bytes, address: str) -> bytes:
    """Ethernet frame of an ARP announcement (request) of ``address``."""
    return _arp(_mac(mac), address, ARP_REQUEST, bytes(6))


def arp_reply(mac: bytes, address: str) -> bytes:
    """Ethernet frame of an unsolicited, broadcast ARP reply for ``address``."""
    return _arp(_mac(mac), address, ARP_REPLY, _mac(mac))


def _ipv6_header(payload_length: int, next_header: int, hop_limit: int,
                 source: bytes, destination: bytes) -> bytes:
    return _IPV6.pack(6 << 28, payload_length, next_header, hop_limit, source, destination)


def neighbour_advertisement(mac: bytes, address: str) -> bytes:
    """Ethernet frame of an unsolicited Neighbour Advertisement of ``address``."""
    target = ipaddress.IPv6Address(address).packed
    body = _NEIGHBOUR_ADVERTISEMENT.pack(ICMPV6_NEIGHBOUR_ADVERTISEMENT, 0, 0, NA_OVERRIDE,
                                         target, OPTION_TARGET_LINK_LAYER, 1, _mac(mac))
    pseudo = _PSEUDO_IPV6.pack(target, ALL_NODES.packed, len(body), IPPROTO_ICMPV6)
    checksum = internet_checksum(pseudo + body)
    body = body[:2] + checksum.to_bytes(2, "big") + body[4:]
    return (_ETHERNET.pack(ALL_NODES_MAC, mac, ETH_P_IPV6)
            + _ipv6_header(len(body), IPPROTO_ICMPV6, 255, target, ALL_NODES.packed) + body)


def tickle_ack(source: str, source_port: int, destination: str, destination_port: int) -> bytes:
    """IP packet (header included) of a tickle ACK from the LIF ``source``
    to the client ``destination``; the family follows the addresses."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    if src.version != dst.version:
        raise ValueError(f"{source} and {destination} are of different families")

    def segment(checksum: int) -> bytes:
        return _TCP.pack(_port(source_port), _port(destination_port), 0, 0,
                         (_TCP.size // 4) << 4, TCP_ACK, TICKLE_WINDOW, checksum, 0)

    if src.version == 4:
        pseudo = _PSEUDO_IPV4.pack(src.packed, dst.packed, IPPROTO_TCP, _TCP.size)
        tcp = segment(internet_checksum(pseudo + segment(0)))
        total = _IPV4.size + len(tcp)
        header = _IPV4.pack(0x45, 0, total, 0, IPV4_DONT_FRAGMENT, TICKLE_TTL, IPPROTO_TCP, 0,
                            src.packed, dst.packed)
        checksum = internet_checksum(header)
        return header[:10] + checksum.to_bytes(2, "big") + header[12:] + tcp
    pseudo = _PSEUDO_IPV6.pack(src.packed, dst.packed, _TCP.size, IPPROTO_TCP)
    tcp = segment(internet_checksum(pseudo + segment(0)))
    return _ipv6_header(len(tcp), IPPROTO_TCP, TICKLE_TTL, src.packed, dst.packed) + tcp
