"""The node's network interfaces: the port FSCTL_QUERY_NETWORK_INTERFACE_INFO
reads ([MS-SMB2] 3.3.5.15.11).

The one module in smbcad that looks at the host's interfaces.  It opens no
socket and issues no ioctl (shared/STYLE.md layering rules): addresses come
from libc ``getifaddrs(3)`` (through ctypes, loaded per instance, not at
import), interface indexes from libc ``if_nametoindex(3)``, link speeds
from sysfs (``/sys/class/net/<name>/speed``, in Mbit/s), and
receive-side scaling from the number of receive queues
(``/sys/class/net/<name>/queues/rx-N``: more than one spreads a NIC's
receive work over CPUs, what Windows calls RSS; ethtool is not needed).  Parsing is
split from reading so tests feed it plain values.

The index comes from libc because sysfs shows the interfaces of the network
namespace it was mounted in: a server started with ``nsenter --net`` (the
lab's nodes) sees the initial namespace's /sys/class/net, where its own
interfaces are not, and would list none of its addresses.

Nothing here decides which addresses a client should see; the FSCTL handler
filters by what the server listens on.
"""

import ctypes
import os
from dataclasses import dataclass

# <bits/socket.h> and <net/if.h> on Linux.
AF_INET = 2
AF_INET6 = 10
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40

SYS_CLASS_NET = "/sys/class/net"


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One IP address on one interface.

    ``address`` is the packed address (4 or 16 bytes); ``scope_id`` is the
    IPv6 scope (0 for global addresses); ``link_speed_bps`` is None when the
    driver does not report a speed (virtual NICs, loopback); ``rss_capable``
    when the interface has more than one receive queue.
    """

    if_index: int
    if_name: str
    family: int
    address: bytes
    scope_id: int
    link_speed_bps: int | None
    is_up: bool
    is_loopback: bool
    rss_capable: bool = False


def parse_speed(text: str) -> int | None:
    """``/sys/class/net/X/speed`` (Mbit/s; -1 or junk when unknown) → bit/s."""
    try:
        mbits = int(text.strip())
    except ValueError:
        return None
    return mbits * 1_000_000 if mbits > 0 else None


def count_rx_queues(entries) -> int:
    """The receive queues among ``/sys/class/net/X/queues`` entries (rx-0, tx-0, ...)."""
    return sum(1 for name in entries if name.startswith("rx-"))


def parse_sockaddr(raw: bytes) -> tuple[int, bytes, int] | None:
    """(family, packed address, scope id) from a ``struct sockaddr_in`` /
    ``sockaddr_in6`` image; None for other families (AF_PACKET, ...)."""
    if len(raw) < 2:
        return None
    family = int.from_bytes(raw[:2], "little")
    if family == AF_INET and len(raw) >= 8:
        return family, bytes(raw[4:8]), 0
    if family == AF_INET6 and len(raw) >= 28:
        return family, bytes(raw[8:24]), int.from_bytes(raw[24:28], "little")
    return None


class _IfAddrs(ctypes.Structure):
    """struct ifaddrs (<ifaddrs.h>)."""


_IfAddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_IfAddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.c_void_p),
    ("ifa_netmask", ctypes.c_void_p),
    ("ifa_ifu", ctypes.c_void_p),
    ("ifa_data", ctypes.c_void_p),
]

_SOCKADDR_IN_SIZE = 16
_SOCKADDR_IN6_SIZE = 28


class NetInfo:
    """Reads the interface list; ``sys_class_net`` is replaceable for tests,
    which also read indexes from it (``index_from_libc=False``)."""

    def __init__(self, sys_class_net: str = SYS_CLASS_NET, index_from_libc: bool = True) -> None:
        self._sys = sys_class_net
        self._index_from_libc = index_from_libc
        self._libc = None

    def addresses(self) -> list[InterfaceAddress]:
        """Every IPv4/IPv6 address of every interface, in getifaddrs order."""
        found = []
        for name, flags, family, address, scope in self._getifaddrs():
            device = name.partition(":")[0]          # "eth0:1" aliases live on eth0
            found.append(InterfaceAddress(
                if_index=self._if_index(device), if_name=device, family=family,
                address=address, scope_id=scope, link_speed_bps=self._speed(device),
                is_up=bool(flags & IFF_UP), is_loopback=bool(flags & IFF_LOOPBACK),
                rss_capable=self._rx_queues(device) > 1))
        return found

    def _rx_queues(self, device: str) -> int:
        try:
            return count_rx_queues(os.listdir(os.path.join(self._sys, device, "queues")))
        except OSError:
            return 0

    def _read(self, device: str, leaf: str) -> str | None:
        try:
            with open(os.path.join(self._sys, device, leaf), encoding="ascii") as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError):
            return None      # e.g. EINVAL reading "speed" of a link that is down

    def _if_index(self, device: str) -> int:
        """The index in this process's network namespace; 0 if it is gone."""
        if self._index_from_libc:
            return self._load_libc().if_nametoindex(device.encode())
        text = self._read(device, "ifindex")
        try:
            return int(text) if text is not None else 0
        except ValueError:
            return 0

    def _speed(self, device: str) -> int | None:
        text = self._read(device, "speed")
        return parse_speed(text) if text is not None else None

    def _load_libc(self):
        if self._libc is None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.getifaddrs.argtypes = (ctypes.POINTER(ctypes.POINTER(_IfAddrs)),)
            libc.getifaddrs.restype = ctypes.c_int
            libc.freeifaddrs.argtypes = (ctypes.POINTER(_IfAddrs),)
            libc.freeifaddrs.restype = None
            libc.if_nametoindex.argtypes = (ctypes.c_char_p,)
            libc.if_nametoindex.restype = ctypes.c_uint
            self._libc = libc
        return self._libc

    def _getifaddrs(self) -> list[tuple[str, int, int, bytes, int]]:
        self._load_libc()
        head = ctypes.POINTER(_IfAddrs)()
        if self._libc.getifaddrs(ctypes.byref(head)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        result = []
        try:
            node = head
            while node:
                entry = node.contents
                if entry.ifa_addr and entry.ifa_name:
                    family = ctypes.c_ushort.from_address(entry.ifa_addr).value
                    size = _SOCKADDR_IN6_SIZE if family == AF_INET6 else _SOCKADDR_IN_SIZE
                    parsed = parse_sockaddr(ctypes.string_at(entry.ifa_addr, size))
                    if parsed is not None:
                        result.append((entry.ifa_name.decode(errors="replace"),
                                       entry.ifa_flags, *parsed))
                node = entry.ifa_next
        finally:
            self._libc.freeifaddrs(head)
        return result
