"""FSCTLs that describe rather than change: network interfaces, snapshots,
compression, reparse points, object ids and integrity ([MS-SMB2] 3.3.5.15.1,
3.3.5.15.11; [MS-FSA] 2.1.5.10.1, .9, .10, .13, .14, .30, .33).

Each answer is the one Windows gives on an NTFS volume without the feature:
no snapshots, files uncompressed (FORMAT_NONE accepted, compressing is
STATUS_NOT_SUPPORTED as WS2016 ReFS and Samba answer, smbtorture
compress_notsup_*), no reparse points, no integrity streams.
"""

import ipaddress
import struct
from dataclasses import dataclass

from smbcad.netinfo import AF_INET, AF_INET6, InterfaceAddress, NetInfo
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server.fsctl_common import WRITE_DATA, require_access, require_disk_file

# --- FSCTL_QUERY_NETWORK_INTERFACE_INFO ([MS-SMB2] 2.2.32.5, 3.3.5.15.11) -----------------

# Next, IfIndex, Capability, Reserved, LinkSpeed; then a 128-byte SOCKADDR_STORAGE.
_IFACE_HEAD = struct.Struct("<IIIIQ")
_SOCKADDR_STORAGE_SIZE = 128
IFACE_SIZE = _IFACE_HEAD.size + _SOCKADDR_STORAGE_SIZE      # 152, a multiple of 8
_FAMILY_IPV4 = 0x0002            # InterNetwork
_FAMILY_IPV6 = 0x0017            # InterNetworkV6
# Drivers without a speed (virtio, bonds without slaves) get Samba's default.
DEFAULT_LINK_SPEED_BPS = 1_000_000_000
_DIALECT_300 = 0x0300
RSS_CAPABLE = 0x00000001


@dataclass(frozen=True, slots=True)
class NetworkInterfaceInfo:
    """One NETWORK_INTERFACE_INFO entry (2.2.32.5); ``address`` is packed."""

    if_index: int
    capability: int              # RSS_CAPABLE 0x1 | RDMA_CAPABLE 0x2: neither here
    link_speed_bps: int
    family: int                  # AF_INET or AF_INET6
    address: bytes

    def sockaddr_storage(self) -> bytes:
        """SOCKADDR_STORAGE (2.2.32.5.1): Family little-endian, then SOCKADDR_IN
        (Port, IPv4Address, Reserved) or SOCKADDR_IN6 (Port, FlowInfo,
        IPv6Address, ScopeId), in network order, Port/FlowInfo/ScopeId zero."""
        if self.family == AF_INET:
            body = struct.pack("<H", _FAMILY_IPV4) + bytes(2) + self.address
        else:
            body = struct.pack("<H", _FAMILY_IPV6) + bytes(6) + self.address + bytes(4)
        return body + bytes(_SOCKADDR_STORAGE_SIZE - len(body))


def encode_interfaces(entries: list[NetworkInterfaceInfo]) -> bytes:
    """The chain of NETWORK_INTERFACE_INFO structures, Next = 0 on the last."""
    out = bytearray()
    for index, entry in enumerate(entries):
        next_offset = IFACE_SIZE if index + 1 < len(entries) else 0
        out += _IFACE_HEAD.pack(next_offset, entry.if_index, entry.capability, 0,
                                entry.link_speed_bps)
        out += entry.sockaddr_storage()
    return bytes(out)


def select_interfaces(addresses: list[InterfaceAddress], listen,
                      not_served=frozenset()) -> list[NetworkInterfaceInfo]:
    """The addresses a client can reach this server on: those it listens on,
    and for a wildcard listener (0.0.0.0, ::) every global address of that
    family on an interface that is up.  Loopback and link-local addresses come
    only when listened on explicitly (a link-local one has no usable scope on
    the wire, ScopeId being zero).  IfIndex 0 never appears (3.3.5.15.11).
    ``not_served`` are LIFs of aggregates not online here (a LIF still up
    while its aggregate leaves): they lead to the other node soon, so a client
    must not add channels to them.  RSS_CAPABLE comes from the interface's
    receive queues (smbcad.netinfo)."""
    excluded = {ipaddress.ip_address(address) for address in not_served}
    wanted: set = set()
    wildcard: set[int] = set()
    for item in listen:
        host = "127.0.0.1" if item.host == "localhost" else item.host
        ip = ipaddress.ip_address(host)
        if ip.is_unspecified:
            wildcard.add(ip.version)
        else:
            wanted.add(ip)
    chosen = []
    for addr in addresses:
        if not addr.if_index or not addr.is_up or addr.family not in (AF_INET, AF_INET6):
            continue
        ip = ipaddress.ip_address(addr.address)
        if ip in excluded:
            continue
        if ip in wanted or (ip.version in wildcard and not ip.is_loopback
                            and not ip.is_link_local):
            chosen.append(_entry(addr, addr.address))
    # 127.0.0.0/8 is all local (Linux routes it to lo) though lo carries only
    # 127.0.0.1: another loopback address listened on is a path on lo.
    found = {ipaddress.ip_address(entry.address) for entry in chosen}
    loopback = next((addr for addr in addresses if addr.is_loopback and addr.is_up
                     and addr.if_index and addr.family == AF_INET), None)
    for ip in sorted(wanted - found - excluded, key=str):
        if loopback is not None and ip.version == 4 and ip.is_loopback:
            chosen.append(_entry(loopback, ip.packed))
    return chosen


def _entry(addr: InterfaceAddress, packed: bytes) -> NetworkInterfaceInfo:
    return NetworkInterfaceInfo(addr.if_index, RSS_CAPABLE if addr.rss_capable else 0,
                                addr.link_speed_bps or DEFAULT_LINK_SPEED_BPS, addr.family,
                                packed)


def query_network_interface_info(ctx, request, open_) -> bytes:
    """3.3.5.15.11: the node's addresses as NETWORK_INTERFACE_INFO.  SMB 3.x
    only (2.x: STATUS_NOT_SUPPORTED, as the section allows); answered whether
    or not MULTI_CHANNEL was negotiated, like Samba (smbtorture
    bug14788.NETWORK_INTERFACE).  Read at each call, so it follows LIFs as
    they move."""
    if ctx.connection.dialect < _DIALECT_300:
        raise SmbError(NtStatus.NOT_SUPPORTED, "SMB 3.x only")
    chosen = select_interfaces(NetInfo().addresses(), ctx.server.config.server.listen,
                               ctx.server.aggregates.addresses_not_served())
    return encode_interfaces(chosen)


# --- FSCTL_SRV_ENUMERATE_SNAPSHOTS ([MS-SMB2] 2.2.32.2, 3.3.5.15.1) -----------------------

# NumberOfSnapShots, NumberOfSnapShotsReturned, SnapShotArraySize; with no
# snapshots Windows adds two zero bytes and says so in SnapShotArraySize (<383>).
_EMPTY_SNAPSHOT_ARRAY = struct.pack("<III", 0, 0, 2) + bytes(2)
_SNAPSHOT_MIN_OUTPUT = 16


def enumerate_snapshots(ctx, request, open_) -> bytes:
    """No previous versions: an empty SRV_SNAPSHOT_ARRAY."""
    require_disk_file(open_, directory_ok=True)
    if request.max_output_response < _SNAPSHOT_MIN_OUTPUT:
        raise SmbError(NtStatus.INVALID_PARAMETER, "MaxOutputResponse below 16")
    return _EMPTY_SNAPSHOT_ARRAY


# --- compression ([MS-FSCC] 2.3.18/2.3.67, [MS-FSA] 2.1.5.10.9, 2.1.5.10.30) --------------

COMPRESSION_FORMAT_NONE = 0
COMPRESSION_FORMAT_DEFAULT = 1
COMPRESSION_FORMAT_LZNT1 = 2
_U16 = struct.Struct("<H")


def get_compression(ctx, request, open_) -> bytes:
    """Every file and directory is uncompressed (no access check, as Windows)."""
    require_disk_file(open_, directory_ok=True)
    if request.max_output_response < _U16.size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "MaxOutputResponse below 2")
    return _U16.pack(COMPRESSION_FORMAT_NONE)


def set_compression(ctx, request, open_) -> bytes:
    """FORMAT_NONE succeeds (nothing is compressed); DEFAULT and LZNT1 are
    STATUS_NOT_SUPPORTED; other values STATUS_INVALID_PARAMETER.  Needs
    FILE_WRITE_DATA (smbtorture compress_perms)."""
    require_disk_file(open_, directory_ok=True)
    require_access(open_, WRITE_DATA, "FSCTL_SET_COMPRESSION")
    if len(request.input) < _U16.size:
        raise SmbError(NtStatus.INVALID_PARAMETER, "CompressionState missing")
    (state,) = _U16.unpack_from(request.input)
    if state == COMPRESSION_FORMAT_NONE:
        return b""
    if state in (COMPRESSION_FORMAT_DEFAULT, COMPRESSION_FORMAT_LZNT1):
        raise SmbError(NtStatus.NOT_SUPPORTED, "compression not supported")
    raise SmbError(NtStatus.INVALID_PARAMETER, f"unknown compression state {state}")


# --- reparse points and object ids ([MS-FSA] 2.1.5.10.1, .13, .14) -------------------------

_FILE_OBJECTID_BUFFER_SIZE = 64


def get_reparse_point(ctx, request, open_) -> bytes:
    """No file served here is a reparse point (symlinks are followed or hidden
    by the VFS): STATUS_NOT_A_REPARSE_POINT, as NTFS answers for a plain file."""
    require_disk_file(open_, directory_ok=True)
    raise SmbError(NtStatus.NOT_A_REPARSE_POINT)


def object_id_buffer(open_) -> bytes:
    """FILE_OBJECTID_BUFFER ([MS-FSCC] 2.1.3.1): ObjectId and BirthObjectId are
    derived from the file's identity (inode, device), BirthVolumeId from the
    device, DomainId zero, so a file keeps its id without anything stored
    (Samba does the same)."""
    device, inode = open_.file_key
    object_id = struct.pack("<QQ", inode, device)
    return object_id + struct.pack("<QQ", device, 0) + object_id + bytes(16)


def create_or_get_object_id(ctx, request, open_) -> bytes:
    """2.1.5.10.1: the file's (derived) object id."""
    require_disk_file(open_, directory_ok=True)
    if request.max_output_response < _FILE_OBJECTID_BUFFER_SIZE:
        raise SmbError(NtStatus.INVALID_PARAMETER, "MaxOutputResponse below 64")
    return object_id_buffer(open_)


def get_object_id(ctx, request, open_) -> bytes:
    """2.1.5.10.13 on a file that was never given an object id:
    STATUS_OBJECTID_NOT_FOUND, what NTFS answers for a plain file.  Ids are
    derived, not stored, so this stays the answer even after
    FSCTL_CREATE_OR_GET_OBJECT_ID (which link tracking uses) handed one out."""
    require_disk_file(open_, directory_ok=True)
    if request.max_output_response < _FILE_OBJECTID_BUFFER_SIZE:
        raise SmbError(NtStatus.INVALID_PARAMETER, "MaxOutputResponse below 64")
    raise SmbError(NtStatus.OBJECTID_NOT_FOUND)


# --- integrity streams ([MS-FSA] 2.1.5.10.10, 2.1.5.10.33) --------------------------------

def integrity_information(ctx, request, open_) -> bytes:
    """GET/SET_INTEGRITY_INFORMATION are ReFS-only (<103>, <135>): NTFS answers
    STATUS_INVALID_DEVICE_REQUEST, the usual "not ReFS" that Hyper-V expects."""
    raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "no integrity streams")
