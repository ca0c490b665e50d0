"""clusdisk configuration: a frozen dataclass tree loaded once from YAML,
with errors naming the offending key (shared/STYLE.md rule 15).  Times are
in milliseconds in the file (``_ms`` keys) and seconds in the tree.

This is the only clusdisk module that reads settings files (the YAML, the
key file); the primitives (errors, sections, addresses, the YAML reader) are
the shared ``smbca.config``.  config/clusdisk-example.yaml documents every key.
"""

import ipaddress
from dataclasses import dataclass, field, fields, replace

from clusdisk.arbitration import Mode, Timings
from clusdisk.disks import KNOWN_PREFIXES, SUPPORTED_FILESYSTEMS, normalize_designator
from clusdisk.resources import Aggregate, Lif
from clusdisk.scsi.cdb import PrType
from clusdisk.scsi.sgio import ResetKind
from smbca.config import (
    ConfigError, ListenAddress, Section, parse_listen, read_key_file, read_yaml)
from smbca.control import CLUSDISK_SOCKET

DEFAULT_HEARTBEAT_PORT = 5405
DEFAULT_PEER_PORT = 5406
PR_KEY_BASE = 0x736D626300000000            # "smbc" + node id
MIN_PUBLIC_LINK_DOWN_MS = 200               # two link readings (clusdisk.linkwatch)


@dataclass(frozen=True)
class NodeConfig:
    id: int
    name: str
    pr_key: int


@dataclass(frozen=True)
class LinkConfig:
    local: ListenAddress
    peer: ListenAddress


@dataclass(frozen=True)
class HeartbeatSettings:
    interval_s: float = 1.0
    miss_count: int = 5
    links: tuple[LinkConfig, ...] = ()
    peer_port: int = DEFAULT_PEER_PORT    # TCP: the clusdisk peer channel on every link


@dataclass(frozen=True)
class ScsiSettings:
    timeout_ms: int = 5000
    retries: int = 3
    reset: ResetKind = ResetKind.DEVICE
    scsi_hosts: tuple[int, ...] | None = None
    sysfs_root: str = "/sys"
    dev_root: str = "/dev"


@dataclass(frozen=True)
class ArbitrationSettings:
    mode: Mode = Mode.SCSI2
    timings: Timings = Timings()
    pr_preempt_abort: bool = False
    data_pr_type: PrType = PrType.WRITE_EXCLUSIVE


@dataclass(frozen=True)
class ControlSettings:
    socket: str = CLUSDISK_SOCKET
    smbcad_socket: str | None = None
    witnessd_socket: str | None = None


@dataclass(frozen=True)
class FailoverSettings:
    auto_giveback_s: float = 0.0          # 0: giveback only when an operator asks
    # clusdisk.public_links: hand the aggregates to the partner when every
    # public port of their LIFs has been down this long here (and is up there)
    public_link_handover: bool = True
    public_link_down_s: float = 3.0


@dataclass(frozen=True)
class Config:
    cluster_name: str
    node_id: int
    nodes: tuple[NodeConfig, ...]
    key: bytes = field(repr=False)
    quorum_disk: str
    heartbeat: HeartbeatSettings
    arbitration: ArbitrationSettings = ArbitrationSettings()
    scsi: ScsiSettings = ScsiSettings()
    aggregates: tuple[Aggregate, ...] = ()
    control: ControlSettings = ControlSettings()
    failover: FailoverSettings = FailoverSettings()
    metrics_listen: ListenAddress | None = None
    state_dir: str = "/var/lib/smbca"
    log_level: str = "info"
    source_path: str | None = None        # the file, for SIGHUP

    @property
    def me(self) -> NodeConfig:
        return next(n for n in self.nodes if n.id == self.node_id)

    @property
    def partner(self) -> NodeConfig:
        return next(n for n in self.nodes if n.id != self.node_id)


def _pr_key(value, key: str) -> int:
    try:
        number = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"{value!r} is not a number") from None
    if not 0 < number < 1 << 64:
        raise ConfigError(key, "must be a non-zero 64-bit number")
    return number


def _designator(value, key: str) -> str:
    if not isinstance(value, str) or not value.strip().lower().startswith(KNOWN_PREFIXES):
        raise ConfigError(key, f"{value!r}: a designator such as naa.6001405..., eui.... or t10....")
    return normalize_designator(value)


def _nodes(cluster: Section) -> tuple[NodeConfig, ...]:
    nodes = []
    for item in cluster.items("nodes"):
        item.check_keys("id", "name", "pr_key")
        node_id = item.get("id", int, minimum=1)
        pr_key = _pr_key(item.data.get("pr_key", PR_KEY_BASE + node_id), item.key("pr_key"))
        nodes.append(NodeConfig(node_id, item.get("name", str, f"node{node_id}"), pr_key))
    if len(nodes) != 2:
        raise ConfigError(cluster.key("nodes"), "exactly two nodes are supported")
    if nodes[0].id == nodes[1].id or nodes[0].pr_key == nodes[1].pr_key:
        raise ConfigError(cluster.key("nodes"), "node ids and pr_keys must differ")
    return tuple(nodes)


def _arbitration(section: Section) -> ArbitrationSettings:
    section.check_keys("mode", "renew_ms", "join_window_ms", "challenge_wait_ms", "settle_ms",
                       "takeover_delay_ms", "pr_challenge_delay_ms", "pr_settle_ms",
                       "pr_preempt_abort", "data_pr_type")
    mode_name = section.get("mode", str, "scsi2")
    try:
        mode = Mode(mode_name)
    except ValueError:
        raise ConfigError(section.key("mode"), "must be scsi2 or pr") from None

    def ms(name: str, default: float) -> float:
        return section.get(name, int, int(default * 1000), minimum=0) / 1000

    renew = ms("renew_ms", 3.0)
    if renew <= 0:
        raise ConfigError(section.key("renew_ms"), "must be positive")
    challenge, settle = ms("challenge_wait_ms", 7.0), ms("settle_ms", 10.0)
    pr_delay, pr_settle = ms("pr_challenge_delay_ms", 2.0), ms("pr_settle_ms", 4.0)
    if mode is Mode.SCSI2 and challenge <= 2 * renew:
        raise ConfigError(section.key("challenge_wait_ms"),
                          "must exceed two renew periods, or a live owner may not renew in time")
    default_takeover = (pr_delay + pr_settle if mode is Mode.PR else challenge + settle) + renew
    timings = Timings(renew_s=renew, join_window_s=ms("join_window_ms", 2 * renew),
                      challenge_wait_s=challenge, settle_s=settle,
                      takeover_delay_s=ms("takeover_delay_ms", default_takeover),
                      pr_challenge_delay_s=pr_delay, pr_settle_s=pr_settle)
    type_name = section.get("data_pr_type", str, "write_exclusive").upper()
    try:
        data_type = PrType[type_name]
    except KeyError:
        raise ConfigError(section.key("data_pr_type"), "a PR type such as write_exclusive") from None
    return ArbitrationSettings(mode, timings, section.get("pr_preempt_abort", bool, False), data_type)


def _aggregates(root: Section, nodes) -> tuple[Aggregate, ...]:
    by_name = {n.name: n.id for n in nodes}
    out, names, points = [], set(), set()
    for item in root.items("aggregates"):
        item.check_keys("name", "home", "disk", "filesystem", "mount_point", "mount_options",
                        "lifs")
        name = item.get("name", str)
        if name in names:
            raise ConfigError(item.key("name"), f"duplicate aggregate {name!r}")
        home = item.data.get("home")
        home_id = by_name.get(home, home)
        if home_id not in {n.id for n in nodes}:
            raise ConfigError(item.key("home"), f"{home!r} is not a configured node")
        fs = item.get("filesystem", str)
        if fs not in SUPPORTED_FILESYSTEMS:
            raise ConfigError(item.key("filesystem"), f"one of {', '.join(SUPPORTED_FILESYSTEMS)}")
        point = item.get("mount_point", str)
        if not point.startswith("/") or point in points:
            raise ConfigError(item.key("mount_point"), "an absolute path, unique per aggregate")
        lifs = []
        for lif in item.items("lifs"):
            lif.check_keys("name", "address", "interface")
            address = lif.get("address", str)
            try:
                ipaddress.ip_interface(address)
            except ValueError:
                raise ConfigError(lif.key("address"), f"{address!r} is not ADDRESS/PREFIX") from None
            if "/" not in address:
                raise ConfigError(lif.key("address"), "needs a prefix length (ADDRESS/PREFIX)")
            lifs.append(Lif(lif.get("name", str), address, lif.get("interface", str)))
        names.add(name)
        points.add(point)
        out.append(Aggregate(name, home_id, _designator(item.data.get("disk"), item.key("disk")),
                             fs, point, item.get("mount_options", str, ""), tuple(lifs)))
    return tuple(out)


def from_dict(data, *, key_loader=read_key_file) -> Config:
    root = Section(data, "")
    root.check_keys("cluster", "heartbeat", "arbitration", "scsi", "quorum", "aggregates",
                    "control", "failover", "metrics", "state_dir", "log_level")
    failover = root.sub("failover")
    failover.check_keys("auto_giveback_s", "public_link_handover", "public_link_down_ms")
    cluster = root.sub("cluster")
    cluster.check_keys("name", "node_id", "key_file", "nodes")
    nodes = _nodes(cluster)
    node_id = cluster.get("node_id", int)
    if node_id not in {n.id for n in nodes}:
        raise ConfigError(cluster.key("node_id"), f"{node_id} is not one of the nodes")
    key = key_loader(cluster.get("key_file", str), cluster.key("key_file"))

    hb = root.sub("heartbeat")
    hb.check_keys("interval_ms", "miss_count", "links", "peer_port")
    links = []
    for item in hb.items("links"):
        item.check_keys("local", "peer")
        links.append(LinkConfig(
            parse_listen(item.data.get("local"), item.key("local"), DEFAULT_HEARTBEAT_PORT),
            parse_listen(item.data.get("peer"), item.key("peer"), DEFAULT_HEARTBEAT_PORT)))
    if not links:
        raise ConfigError(hb.key("links"), "at least one heartbeat link is required")
    peer_port = hb.get("peer_port", int, DEFAULT_PEER_PORT, minimum=1, maximum=65535)
    heartbeat = HeartbeatSettings(hb.get("interval_ms", int, 1000, minimum=10) / 1000,
                                  hb.get("miss_count", int, 5, minimum=1), tuple(links),
                                  peer_port)

    scsi = root.sub("scsi")
    scsi.check_keys("timeout_ms", "retries", "reset", "scsi_hosts", "sysfs_root", "dev_root")
    reset_name = scsi.get("reset", str, "device")
    if reset_name not in ("device", "target", "bus", "host"):
        raise ConfigError(scsi.key("reset"), "one of device, target, bus, host")
    hosts = scsi.data.get("scsi_hosts")
    if hosts is not None and (not isinstance(hosts, list)
                              or not all(isinstance(h, int) and h >= 0 for h in hosts)):
        raise ConfigError(scsi.key("scsi_hosts"), "a list of SCSI host numbers")
    scsi_settings = ScsiSettings(scsi.get("timeout_ms", int, 5000, minimum=100),
                                 scsi.get("retries", int, 3, minimum=0),
                                 ResetKind[reset_name.upper()],
                                 tuple(hosts) if hosts is not None else None,
                                 scsi.get("sysfs_root", str, "/sys"), scsi.get("dev_root", str, "/dev"))

    arbitration = _arbitration(root.sub("arbitration"))
    if heartbeat.interval_s * heartbeat.miss_count >= arbitration.timings.takeover_delay_s:
        raise ConfigError("arbitration.takeover_delay_ms", "must exceed the heartbeat timeout")
    quorum = root.sub("quorum")
    quorum.check_keys("disk")
    control = root.sub("control")
    control.check_keys("socket", "smbcad_socket", "witnessd_socket")
    metrics = root.sub("metrics")
    metrics.check_keys("listen")
    listen = metrics.data.get("listen")
    log_level = root.get("log_level", str, "info")
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level", "one of debug, info, warning, error")
    aggregates = _aggregates(root, nodes)
    quorum_disk = _designator(quorum.data.get("disk"), quorum.key("disk"))
    if quorum_disk in {a.disk for a in aggregates}:
        raise ConfigError("quorum.disk", "the quorum LUN cannot also be an aggregate's disk")
    return Config(
        cluster_name=cluster.get("name", str, "smbca"), node_id=node_id, nodes=nodes, key=key,
        quorum_disk=quorum_disk, heartbeat=heartbeat, arbitration=arbitration,
        scsi=scsi_settings, aggregates=aggregates,
        control=ControlSettings(control.get("socket", str, CLUSDISK_SOCKET),
                                control.get("smbcad_socket", str, None),
                                control.get("witnessd_socket", str, None)),
        failover=FailoverSettings(
            failover.get("auto_giveback_s", float, 0.0, minimum=0),
            failover.get("public_link_handover", bool, True),
            failover.get("public_link_down_ms", int, 3000, minimum=MIN_PUBLIC_LINK_DOWN_MS,
                         maximum=3_600_000) / 1000),
        metrics_listen=parse_listen(listen, metrics.key("listen")) if listen else None,
        state_dir=root.get("state_dir", str, "/var/lib/smbca"), log_level=log_level)


def load_yaml(path: str) -> Config:
    return replace(from_dict(read_yaml(path)), source_path=path)


# What a SIGHUP applies at once; everything else (membership, disks, links,
# timings, sockets) is bound into running state machines and needs a restart.
LIVE = ("failover", "log_level")


def for_reload(running: Config, loaded: Config) -> tuple[Config, tuple[str, ...]]:
    """``running`` with the ``LIVE`` settings of ``loaded``, and the names
    of the other top-level settings the new file changed (restart)."""
    changed = tuple(f.name for f in fields(Config)
                    if f.name not in LIVE and f.name != "source_path"
                    and getattr(running, f.name) != getattr(loaded, f.name))
    return replace(running, **{name: getattr(loaded, name) for name in LIVE}), changed
