"""The LIF announcement frames (clusdisk/announce.py) pinned byte for byte.

Checksums are pinned as literals and checked again with a reference written
differently from the module's: the one's complement sum of 16-bit words is
the packet read as one big number modulo 0xFFFF (2**16 = 1 mod 0xFFFF).
IPv6 addresses are ULA fd5b:ca::/64, the prefix the namespace tests use."""

import pytest

from clusdisk.announce import (arp_reply, arp_request, internet_checksum,
                               neighbour_advertisement, tickle_ack)

MAC = bytes.fromhex("525400123456")


def reference_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    return int.from_bytes(data, "big") % 0xFFFF


def verifies(data: bytes) -> bool:
    """A block whose checksum field is filled in sums to 0xFFFF (0 mod 0xFFFF)."""
    return reference_sum(data) == 0


def test_internet_checksum_rfc1071_vector():
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D   # RFC 1071 3
    assert internet_checksum(b"\x01") == 0xFEFF                              # odd length padded
    assert 0xFFFF - reference_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_arp_request_bytes():
    frame = arp_request(MAC, "192.0.2.10")
    assert frame == bytes.fromhex(
        "ffffffffffff" "525400123456" "0806"                       # Ethernet: broadcast, ARP
        "0001" "0800" "06" "04" "0001"                             # Ethernet/IPv4, request
        "525400123456" "c000020a" "000000000000" "c000020a")       # sender = target = 192.0.2.10
    with pytest.raises(ValueError):
        arp_request(b"\x00", "192.0.2.10")


def test_arp_reply_bytes():
    frame = arp_reply(MAC, "192.0.2.10")
    assert frame == bytes.fromhex(
        "ffffffffffff" "525400123456" "0806"                       # Ethernet: broadcast, ARP
        "0001" "0800" "06" "04" "0002"                             # Ethernet/IPv4, reply
        "525400123456" "c000020a" "525400123456" "c000020a")       # target hw = sender hw
    with pytest.raises(ValueError):
        arp_reply(MAC, "fd5b:ca::10")


def test_neighbour_advertisement_bytes():
    frame = neighbour_advertisement(MAC, "fd5b:ca::10")
    assert frame == bytes.fromhex(
        "333300000001" "525400123456" "86dd"                       # Ethernet: all-nodes, IPv6
        "60000000" "0020" "3a" "ff"                                # 32 bytes ICMPv6, hop limit 255
        "fd5b00ca000000000000000000000010"                         # from the LIF
        "ff020000000000000000000000000001"                         # to ff02::1
        "88" "00" "d377" "20000000"                                # NA, checksum, Override only
        "fd5b00ca000000000000000000000010"                         # target = the LIF
        "02" "01" "525400123456")                                  # target link-layer option
    ip6, icmp = frame[14:54], frame[54:]
    pseudo = ip6[8:40] + len(icmp).to_bytes(4, "big") + bytes(3) + b"\x3a"
    assert verifies(pseudo + icmp)


def test_tickle_ack_ipv4_bytes():
    packet = tickle_ack("192.0.2.10", 445, "192.0.2.100", 50000)
    assert packet == bytes.fromhex(
        "45" "00" "0028" "0000" "4000" "40" "06" "b661"            # 40 bytes, DF, TTL 64, TCP
        "c000020a" "c0000264"                                      # 192.0.2.10 -> 192.0.2.100
        "01bd" "c350" "00000000" "00000000"                        # 445 -> 50000, seq 0, ack 0
        "50" "10" "04d2" "6186" "0000")                            # 20-byte header, ACK, win 1234
    assert verifies(packet[:20])
    pseudo = packet[12:20] + b"\x00\x06" + (20).to_bytes(2, "big")
    assert verifies(pseudo + packet[20:])


def test_tickle_ack_ipv6_bytes():
    packet = tickle_ack("fd5b:ca::10", 445, "fd5b:ca::100", 50000)
    assert packet == bytes.fromhex(
        "60000000" "0014" "06" "40"                                # 20 bytes TCP, hop limit 64
        "fd5b00ca000000000000000000000010"
        "fd5b00ca000000000000000000000100"
        "01bd" "c350" "00000000" "00000000"
        "50" "10" "04d2" "e899" "0000")
    pseudo = packet[8:40] + (20).to_bytes(4, "big") + bytes(3) + b"\x06"
    assert verifies(pseudo + packet[40:])


@pytest.mark.parametrize("args", [
    ("192.0.2.10", 445, "fd5b:ca::100", 50000),        # mixed families
    ("192.0.2.10", 0, "192.0.2.100", 50000),
    ("192.0.2.10", 445, "192.0.2.100", 65536),
    ("192.0.2.10", 445, "192.0.2.100", "50000"),
    ("192.0.2.10", 445, "not-an-address", 50000),
])
def test_tickle_ack_rejects_bad_input(args):
    with pytest.raises(ValueError):
        tickle_ack(*args)
