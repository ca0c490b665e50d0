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
from dataclasses import dataclass

from smbcad.config import ConfigError, ListenAddress, _reject_unknown, _typed, parse_listen

DEFAULT_CONTROL_SOCKET = "/run/smbca/smbcad.sock"
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
    control_socket: str = DEFAULT_CONTROL_SOCKET
    key_file: str | None = None
    mirror_listen: ListenAddress | None = None
    mirror_peer: ListenAddress | None = None
    mirror_ack_timeout_ms: int = 1000
    aggregates: tuple[AggregateConfig, ...] = ()
    server_guid: bytes | None = None

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


_CLUSTER_KEYS = {"node_id", "name", "control_socket", "key_file", "mirror_listen",
                 "mirror_peer", "mirror_ack_timeout_ms", "aggregates", "server_guid"}
_AGGREGATE_KEYS = {"name", "mount_point", "addresses"}


def cluster_from_yaml(raw) -> ClusterConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("cluster", "must be a mapping")
    p = "cluster."
    _reject_unknown(raw, _CLUSTER_KEYS, p)
    node_id = _typed(raw, "node_id", int, p)
    if node_id is None or not 1 <= node_id <= 255:
        raise ConfigError(p + "node_id", "is required, 1..255")
    name = _typed(raw, "name", str, p)
    if not name:
        raise ConfigError(p + "name", "is required (the cluster's name)")
    guid_text = _typed(raw, "server_guid", str, p)
    server_guid = None
    if guid_text is not None:
        try:
            server_guid = uuid.UUID(guid_text).bytes_le
        except ValueError:
            raise ConfigError(p + "server_guid", f"{guid_text!r} is not a GUID") from None
    aggregates_raw = raw.get("aggregates") or []
    if not isinstance(aggregates_raw, list):
        raise ConfigError(p + "aggregates", "must be a list")
    mirror_listen = raw.get("mirror_listen")
    mirror_peer = raw.get("mirror_peer")
    return ClusterConfig(
        node_id=node_id, name=name,
        control_socket=_typed(raw, "control_socket", str, p, DEFAULT_CONTROL_SOCKET),
        key_file=_typed(raw, "key_file", str, p),
        mirror_listen=(parse_listen(mirror_listen, p + "mirror_listen", DEFAULT_MIRROR_PORT)
                       if mirror_listen else None),
        mirror_peer=(parse_listen(mirror_peer, p + "mirror_peer", DEFAULT_MIRROR_PORT)
                     if mirror_peer else None),
        mirror_ack_timeout_ms=_typed(raw, "mirror_ack_timeout_ms", int, p, 1000),
        aggregates=tuple(_aggregate_from_yaml(a, i) for i, a in enumerate(aggregates_raw)),
        server_guid=server_guid)


def _aggregate_from_yaml(raw, index: int) -> AggregateConfig:
    prefix = f"cluster.aggregates[{index}]."
    if not isinstance(raw, dict):
        raise ConfigError(f"cluster.aggregates[{index}]", "must be a mapping")
    _reject_unknown(raw, _AGGREGATE_KEYS, prefix)
    for key in ("name", "mount_point"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(prefix + key, "is required (a string)")
    addresses = raw.get("addresses") or []
    if isinstance(addresses, str):
        addresses = [addresses]
    if not isinstance(addresses, list):
        raise ConfigError(prefix + "addresses", "must be a list of IP addresses")
    parsed = []
    for number, text in enumerate(addresses):
        try:
            # "192.0.2.10/24" (clusdisk's form) and "192.0.2.10" both name the address
            parsed.append(str(ipaddress.ip_interface(str(text)).ip))
        except ValueError:
            raise ConfigError(f"{prefix}addresses[{number}]",
                              f"{text!r} is not an IP address") from None
    return AggregateConfig(name=raw["name"], mount_point=os.path.normpath(raw["mount_point"]),
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
