"""smbcad's ``cluster:`` config section: what makes the server a member of an
HA pair (shared/ARCHITECTURE.md, shared/reference/cluster.md section 7).

Without the section the server is a single node and every share is local.
With it, shares that name an ``aggregate`` follow that aggregate: offline
until clusdisk tells this node to adopt it, reachable only through its own
client-access addresses (LIFs), their persistent handles in the aggregate's
own store, mirrored to the partner.

Example (node 1 of the pair; node 2 swaps the mirror addresses)::

    cluster:
      node_id: 1                       # 1..255, differs between the nodes
      name: smbca                      # the cluster's name: ServerGuid derives from it
      control_socket: /run/smbca/smbcad.sock
      key_file: /etc/smbca/cluster.key # clusdisk's key; the mirror's HMAC key derives from it
      mirror_listen: 198.51.100.1:7445 # this node's end of the handle mirror (interconnect)
      mirror_peer: 198.51.100.2:7445   # the partner's
      mirror_ack_timeout_ms: 1000      # then degrade to local-only (marker first)
      aggregates:
        - name: aggr1
          mount_point: /srv/smbca/aggr1
          addresses: [192.0.2.10]      # its LIFs (clusdisk moves them)
"""

import ipaddress
import os
import uuid
from dataclasses import dataclass, field

from smbca.config import ConfigError, ListenAddress, Section, parse_listen, read_key_file
from smbca.control import SMBCAD_SOCKET

DEFAULT_MIRROR_PORT = 7445
# A fixed namespace, so both nodes derive the same ServerGuid from the name.
_SERVER_GUID_NAMESPACE = uuid.UUID("1f6c3a52-8d1e-5b7a-9c43-6a0e2f1d7b10")


@dataclass(frozen=True)
class AggregateConfig:
    """One aggregate: a filesystem on a shared LUN and its client-access addresses."""

    name: str
    mount_point: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterConfig:
    node_id: int
    name: str
    control_socket: str = SMBCAD_SOCKET
    key_file: str | None = None
    mirror_listen: ListenAddress | None = None
    mirror_peer: ListenAddress | None = None
    mirror_ack_timeout_ms: int = 1000
    aggregates: tuple[AggregateConfig, ...] = ()
    server_guid: bytes | None = None
    partner_node_id: int = 0             # 0: the other of 1 and 2
    cluster_key: bytes | None = field(default=None, repr=False)   # read from key_file

    @property
    def partner(self) -> int:
        return self.partner_node_id or (3 - self.node_id)

    def aggregate(self, name: str) -> AggregateConfig | None:
        for aggregate in self.aggregates:
            if aggregate.name == name:
                return aggregate
        return None

    @property
    def derived_server_guid(self) -> bytes:
        """Identical on both nodes: from config, or a UUIDv5 of the cluster
        name (as Samba derives its ServerGuid from the NetBIOS name)."""
        if self.server_guid is not None:
            return self.server_guid
        return uuid.uuid5(_SERVER_GUID_NAMESPACE, self.name.lower()).bytes_le


_CLUSTER_KEYS = ("node_id", "name", "control_socket", "key_file", "mirror_listen",
                 "mirror_peer", "mirror_ack_timeout_ms", "aggregates", "server_guid",
                 "partner_node_id")
_AGGREGATE_KEYS = ("name", "mount_point", "addresses")


def cluster_from_yaml(raw) -> ClusterConfig | None:
    if raw is None:
        return None
    section = Section(raw, "cluster")
    section.check_keys(*_CLUSTER_KEYS)
    node_id = section.get("node_id", int)
    if not 1 <= node_id <= 255:
        raise ConfigError(section.key("node_id"), "is required, 1..255")
    name = section.get("name", str)
    if not name:
        raise ConfigError(section.key("name"), "is required (the cluster's name)")
    guid_text = section.get("server_guid", str, None)
    server_guid = None
    if guid_text is not None:
        try:
            server_guid = uuid.UUID(guid_text).bytes_le
        except ValueError:
            raise ConfigError(section.key("server_guid"),
                              f"{guid_text!r} is not a GUID") from None
    mirror_listen = raw.get("mirror_listen")
    mirror_peer = raw.get("mirror_peer")
    key_file = section.get("key_file", str, None)
    partner = section.get("partner_node_id", int, 0)
    if partner == 0 and node_id not in (1, 2):
        raise ConfigError(section.key("partner_node_id"),
                          "is required when node_id is not 1 or 2")
    if not 0 <= partner <= 255 or partner == node_id:
        raise ConfigError(section.key("partner_node_id"), "1..255, not this node's id")
    return ClusterConfig(
        node_id=node_id, name=name,
        control_socket=section.get("control_socket", str, SMBCAD_SOCKET),
        key_file=key_file, partner_node_id=partner,
        cluster_key=(read_key_file(key_file, section.key("key_file"))
                     if key_file is not None else None),
        mirror_listen=(parse_listen(mirror_listen, section.key("mirror_listen"),
                                    DEFAULT_MIRROR_PORT) if mirror_listen else None),
        mirror_peer=(parse_listen(mirror_peer, section.key("mirror_peer"), DEFAULT_MIRROR_PORT)
                     if mirror_peer else None),
        mirror_ack_timeout_ms=section.get("mirror_ack_timeout_ms", int, 1000),
        aggregates=tuple(_aggregate_from_yaml(item) for item in section.items("aggregates")),
        server_guid=server_guid)


def _aggregate_from_yaml(section: Section) -> AggregateConfig:
    section.check_keys(*_AGGREGATE_KEYS)
    name, mount_point = section.get("name", str), section.get("mount_point", str)
    for key, value in (("name", name), ("mount_point", mount_point)):
        if not value:
            raise ConfigError(section.key(key), "is required (a string)")
    addresses = section.data.get("addresses") or []
    if isinstance(addresses, str):
        addresses = [addresses]
    if not isinstance(addresses, list):
        raise ConfigError(section.key("addresses"), "must be a list of IP addresses")
    parsed = []
    for number, text in enumerate(addresses):
        try:
            # "192.0.2.10/24" (clusdisk's form) and "192.0.2.10" both name the address
            parsed.append(str(ipaddress.ip_interface(str(text)).ip))
        except ValueError:
            raise ConfigError(f"{section.key('addresses')}[{number}]",
                              f"{text!r} is not an IP address") from None
    return AggregateConfig(name=name, mount_point=os.path.normpath(mount_point),
                           addresses=tuple(parsed))


def check_cluster(cluster: ClusterConfig | None, shares) -> None:
    """Cross-checks between ``cluster`` and ``shares``; errors name the key."""
    if cluster is None:
        for index, share in enumerate(shares):
            if share.aggregate:
                raise ConfigError(f"shares[{index}].aggregate",
                                  "needs a cluster section that defines the aggregate")
        return
    if not 100 <= cluster.mirror_ack_timeout_ms <= 60_000:
        raise ConfigError("cluster.mirror_ack_timeout_ms", "must be 100..60000")
    if (cluster.mirror_listen is None) != (cluster.mirror_peer is None):
        raise ConfigError("cluster.mirror_peer", "give both mirror_listen and mirror_peer, or neither")
    if cluster.mirror_listen is not None and cluster.key_file is None:
        raise ConfigError("cluster.key_file", "the handle mirror needs the cluster key")
    names, addresses = set(), {}
    for index, aggregate in enumerate(cluster.aggregates):
        key = f"cluster.aggregates[{index}]"
        if aggregate.name in names:
            raise ConfigError(f"{key}.name", f"duplicate aggregate {aggregate.name!r}")
        names.add(aggregate.name)
        if not os.path.isabs(aggregate.mount_point):
            raise ConfigError(f"{key}.mount_point", "must be an absolute path")
        for address in aggregate.addresses:
            if address in addresses:
                raise ConfigError(f"{key}.addresses",
                                  f"{address} is already {addresses[address]}'s")
            addresses[address] = aggregate.name
    for index, share in enumerate(shares):
        if not share.aggregate:
            continue
        aggregate = cluster.aggregate(share.aggregate)
        if aggregate is None:
            raise ConfigError(f"shares[{index}].aggregate",
                              f"no aggregate {share.aggregate!r} in cluster.aggregates")
        path = os.path.normpath(share.path)
        if os.path.commonpath([path, aggregate.mount_point]) != aggregate.mount_point:
            raise ConfigError(f"shares[{index}].path",
                              f"{share.path!r} is not under {aggregate.mount_point!r}, "
                              f"the mount point of aggregate {aggregate.name!r}")
