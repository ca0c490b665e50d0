"""Network interfaces, snapshots, compression, reparse points, object ids,
integrity ([MS-SMB2] 3.3.5.15.1, 3.3.5.15.11; [MS-FSA] 2.1.5.10), and the
netinfo port that reads the interfaces."""

import socket
import struct

import pytest

from smbca.config import ListenAddress
from smbcad import netinfo
from smbcad.netinfo import AF_INET, AF_INET6, InterfaceAddress
from smbcad.proto.constants import AccessMask as A
from smbcad.proto.status import NtStatus as S
from smbcad.server import fsctl_info
from smbcad.server.fsctl_common import Fsctl
from .test_fsctl_harness import harness, status_of  # noqa: F401  (fixture)

V4 = bytes([192, 0, 2, 7])
V6 = bytes.fromhex("20010db8000000000000000000000007")
LINK_LOCAL = bytes.fromhex("fe800000000000000000000000000001")
LOOP4 = bytes([127, 0, 0, 1])


def addr(index, family, raw, speed=10_000_000_000, up=True, loopback=False):
    return InterfaceAddress(index, "eth%d" % index, family, raw, 0, speed, up, loopback)


ADDRESSES = [
    addr(1, AF_INET, LOOP4, None, loopback=True),
    addr(2, AF_INET, V4),
    addr(2, AF_INET6, V6),
    addr(2, AF_INET6, LINK_LOCAL),
    addr(3, AF_INET, bytes([198, 51, 100, 1]), up=False),
    addr(0, AF_INET, bytes([203, 0, 113, 1])),
]


def test_interface_info_golden_bytes():
    """NETWORK_INTERFACE_INFO (2.2.32.5): 152 bytes each, Next chains them."""
    entries = [fsctl_info.NetworkInterfaceInfo(2, 0, 10**10, AF_INET, V4),
               fsctl_info.NetworkInterfaceInfo(2, 0, 10**10, AF_INET6, V6)]
    out = fsctl_info.encode_interfaces(entries)
    assert len(out) == 2 * 152
    assert out[:24] == struct.pack("<IIIIQ", 152, 2, 0, 0, 10**10)
    assert out[24:40] == bytes.fromhex("0200" "0000" "c0000207") + bytes(8)
    assert out[40:152] == bytes(112)
    assert out[152:176] == struct.pack("<IIIIQ", 0, 2, 0, 0, 10**10)
    assert out[176:204] == bytes.fromhex("1700" "0000" "00000000") + V6 + bytes(4)
    assert out[204:304] == bytes(100)


def test_select_listened_addresses():
    picked = fsctl_info.select_interfaces(ADDRESSES, [ListenAddress("192.0.2.7", 445)])
    assert [(e.if_index, e.address) for e in picked] == [(2, V4)]
    loop = fsctl_info.select_interfaces(ADDRESSES, [ListenAddress("localhost", 445)])
    assert [(e.address, e.link_speed_bps) for e in loop] == [(LOOP4, 1_000_000_000)]


def test_select_wildcards_skip_loopback_link_local_down_and_index_zero():
    v4 = fsctl_info.select_interfaces(ADDRESSES, [ListenAddress("0.0.0.0", 445)])
    assert [e.address for e in v4] == [V4]
    both = fsctl_info.select_interfaces(ADDRESSES, [ListenAddress("0.0.0.0", 445),
                                                    ListenAddress("::", 445)])
    assert [e.address for e in both] == [V4, V6]
    assert all(e.capability == 0 and e.link_speed_bps == 10**10 for e in both)


def test_query_network_interface_info(harness, monkeypatch):
    class FakeNetInfo:
        def addresses(self):
            return ADDRESSES
    monkeypatch.setattr(fsctl_info, "NetInfo", FakeNetInfo)
    request = harness.request(Fsctl.QUERY_NETWORK_INTERFACE_INFO)
    out = fsctl_info.query_network_interface_info(harness.ctx(), request, None)
    assert len(out) == 152 and out[24:32] == bytes.fromhex("02000000" "7f000001")
    harness.connection.dialect = 0x0210
    assert status_of(fsctl_info.query_network_interface_info, harness.ctx(), request, None) \
        == S.NOT_SUPPORTED


def test_snapshots_empty_array(harness):
    fh = harness.open("f")
    request = harness.request(Fsctl.SRV_ENUMERATE_SNAPSHOTS, max_output=16)
    assert fsctl_info.enumerate_snapshots(harness.ctx(), request, fh) == \
        struct.pack("<III", 0, 0, 2) + bytes(2)
    small = harness.request(Fsctl.SRV_ENUMERATE_SNAPSHOTS, max_output=15)
    assert status_of(fsctl_info.enumerate_snapshots, harness.ctx(), small, fh) == \
        S.INVALID_PARAMETER


def test_compression(harness):
    """compress_notsup_get / compress_notsup_set."""
    fh = harness.open("f", access=A.FILE_READ_ATTRIBUTES)
    get = harness.request(Fsctl.GET_COMPRESSION, max_output=2)
    assert fsctl_info.get_compression(harness.ctx(), get, fh) == b"\x00\x00"
    assert status_of(fsctl_info.get_compression, harness.ctx(),
                     harness.request(Fsctl.GET_COMPRESSION, max_output=1), fh) == \
        S.INVALID_PARAMETER
    writer = harness.open("f")

    def set_to(value, open_=writer, data=None):
        request = harness.request(Fsctl.SET_COMPRESSION, struct.pack("<H", value) if data is None
                                  else data, 0)
        return fsctl_info.set_compression(harness.ctx(), request, open_)
    assert set_to(0) == b""
    assert status_of(set_to, 1) == S.NOT_SUPPORTED
    assert status_of(set_to, 2) == S.NOT_SUPPORTED
    assert status_of(set_to, 3) == S.INVALID_PARAMETER
    assert status_of(set_to, 0, data=b"\x00") == S.INVALID_PARAMETER
    assert status_of(set_to, 0, open_=fh) == S.ACCESS_DENIED


def test_reparse_and_object_ids(harness):
    fh = harness.open("f")
    ctx = harness.ctx()
    assert status_of(fsctl_info.get_reparse_point, ctx,
                     harness.request(Fsctl.GET_REPARSE_POINT), fh) == S.NOT_A_REPARSE_POINT
    assert status_of(fsctl_info.get_object_id, ctx,
                     harness.request(Fsctl.GET_OBJECT_ID), fh) == S.OBJECTID_NOT_FOUND
    create = harness.request(Fsctl.CREATE_OR_GET_OBJECT_ID)
    first = fsctl_info.create_or_get_object_id(ctx, create, fh)
    again = fsctl_info.create_or_get_object_id(
        ctx, harness.request(Fsctl.CREATE_OR_GET_OBJECT_ID), harness.open("f"))
    assert len(first) == 64 and first == again and first[:16] == first[32:48]
    assert status_of(fsctl_info.create_or_get_object_id, ctx,
                     harness.request(Fsctl.CREATE_OR_GET_OBJECT_ID, max_output=63), fh) \
        == S.INVALID_PARAMETER


def test_integrity_is_not_refs(harness):
    fh = harness.open("f")
    for code in (Fsctl.GET_INTEGRITY_INFORMATION, Fsctl.SET_INTEGRITY_INFORMATION):
        assert status_of(fsctl_info.integrity_information, harness.ctx(),
                         harness.request(code), fh) == S.INVALID_DEVICE_REQUEST


# --- smbcad.netinfo -------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("10000\n", 10**10), ("-1\n", None), ("0", None),
                                            ("junk", None)])
def test_parse_speed(text, expected):
    assert netinfo.parse_speed(text) == expected


def test_parse_sockaddr():
    sin = struct.pack("<HH", AF_INET, 0x1234) + V4 + bytes(8)
    assert netinfo.parse_sockaddr(sin) == (AF_INET, V4, 0)
    sin6 = struct.pack("<HHI", AF_INET6, 0, 0) + LINK_LOCAL + struct.pack("<I", 4)
    assert netinfo.parse_sockaddr(sin6) == (AF_INET6, LINK_LOCAL, 4)
    assert netinfo.parse_sockaddr(struct.pack("<H", 17) + bytes(18)) is None     # AF_PACKET
    assert netinfo.parse_sockaddr(b"\x02") is None


def test_netinfo_reads_sysfs(tmp_path, monkeypatch):
    for name, index, speed in (("eth0", "4\n", "25000\n"), ("lo", "1\n", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ifindex").write_text(index)
        if speed is not None:
            (tmp_path / name / "speed").write_text(speed)
    reader = netinfo.NetInfo(str(tmp_path), index_from_libc=False)
    monkeypatch.setattr(reader, "_getifaddrs", lambda: [
        ("lo", netinfo.IFF_UP | netinfo.IFF_LOOPBACK, AF_INET, LOOP4, 0),
        ("eth0:1", netinfo.IFF_UP, AF_INET, V4, 0),
        ("ghost", 0, AF_INET6, V6, 0)])
    found = reader.addresses()
    assert [(a.if_index, a.if_name, a.link_speed_bps, a.is_up, a.is_loopback) for a in found] == [
        (1, "lo", None, True, True), (4, "eth0", 25 * 10**9, True, False),
        (0, "ghost", None, False, False)]


def test_netinfo_on_this_host():
    """The real getifaddrs through ctypes: well-formed records, whatever the host has."""
    for found in netinfo.NetInfo().addresses():
        assert found.family in (AF_INET, AF_INET6)
        assert len(found.address) == (4 if found.family == AF_INET else 16)
        assert found.if_index >= 0 and found.if_name


def test_netinfo_indexes_come_from_this_network_namespace(tmp_path):
    """Not from sysfs, which may show another namespace's interfaces (a
    server started with nsenter --net): an empty /sys/class/net still gives
    the loopback its index."""
    loopback = [found for found in netinfo.NetInfo(str(tmp_path)).addresses()
                if found.is_loopback and found.family == AF_INET]
    assert loopback and loopback[0].if_index == socket.if_nametoindex("lo")


# --- issue 13: RSS from the receive queues, LIFs of aggregates not online here --------------

def test_rss_capable_interfaces_say_so():
    rss = InterfaceAddress(5, "eth5", AF_INET, V4, 0, 10**10, True, False, rss_capable=True)
    (entry,) = fsctl_info.select_interfaces([rss], [ListenAddress("0.0.0.0", 445)])
    assert entry.capability == fsctl_info.RSS_CAPABLE
    out = fsctl_info.encode_interfaces([entry])
    assert out[:24] == struct.pack("<IIIIQ", 0, 5, 1, 0, 10**10)


def test_lifs_of_aggregates_not_online_here_are_left_out():
    lif = bytes([192, 0, 2, 10])
    addresses = ADDRESSES + [addr(2, AF_INET, lif)]
    listen = [ListenAddress("0.0.0.0", 445)]
    assert [e.address for e in fsctl_info.select_interfaces(addresses, listen)] == [V4, lif]
    kept = fsctl_info.select_interfaces(addresses, listen, frozenset({"192.0.2.10"}))
    assert [e.address for e in kept] == [V4]


def test_count_rx_queues():
    assert netinfo.count_rx_queues(["rx-0", "rx-1", "tx-0", "tx-1"]) == 2
    assert netinfo.count_rx_queues(["tx-0"]) == 0


def test_netinfo_reads_rx_queues(tmp_path, monkeypatch):
    for name, queues in (("eth0", ("rx-0", "rx-1", "rx-2", "tx-0")), ("eth1", ("rx-0", "tx-0"))):
        (tmp_path / name / "queues").mkdir(parents=True)
        (tmp_path / name / "ifindex").write_text("7\n")
        for queue in queues:
            (tmp_path / name / "queues" / queue).mkdir()
    reader = netinfo.NetInfo(str(tmp_path), index_from_libc=False)
    monkeypatch.setattr(reader, "_getifaddrs", lambda: [
        ("eth0", netinfo.IFF_UP, AF_INET, V4, 0), ("eth1", netinfo.IFF_UP, AF_INET, LOOP4, 0),
        ("gone", netinfo.IFF_UP, AF_INET, LOOP4, 0)])
    assert [a.rss_capable for a in reader.addresses()] == [True, False, False]


def test_addresses_not_served_follow_the_aggregates_phase():
    from types import SimpleNamespace

    from smbcad.server.aggregates import Aggregates, Phase
    cluster = SimpleNamespace(aggregates=[
        SimpleNamespace(name="aggr1", mount_point="/m1", addresses=("192.0.2.10",)),
        SimpleNamespace(name="aggr2", mount_point="/m2", addresses=("192.0.2.20", "192.0.2.21"))])
    aggregates = Aggregates(server=None, cluster_config=cluster)
    assert aggregates.addresses_not_served() == {"192.0.2.10", "192.0.2.20", "192.0.2.21"}
    aggregates.get("aggr2").settle(Phase.ONLINE)
    assert aggregates.addresses_not_served() == {"192.0.2.10"}
    aggregates.get("aggr2").settle(Phase.RELEASING)
    assert "192.0.2.20" in aggregates.addresses_not_served()
    assert Aggregates(server=None, cluster_config=None).addresses_not_served() == frozenset()


def test_other_loopback_addresses_listened_on_are_paths_on_lo():
    """127.0.0.2 is local though lo carries only 127.0.0.1 (a second path for
    multichannel tests on one host); a non-loopback address not on any
    interface is not listed."""
    listen = [ListenAddress("127.0.0.1", 445), ListenAddress("127.0.0.2", 445),
              ListenAddress("203.0.113.9", 445)]
    picked = fsctl_info.select_interfaces(ADDRESSES, listen)
    assert [(e.if_index, e.address) for e in picked] == [(1, LOOP4), (1, bytes([127, 0, 0, 2]))]
