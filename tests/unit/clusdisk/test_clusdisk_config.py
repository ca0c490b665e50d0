"""Config loading: the shipped example parses; every error names its key."""

from pathlib import Path

import pytest
import yaml

from clusdisk import config as config_mod
from clusdisk.arbitration import Mode
from clusdisk.scsi.cdb import PrType
from clusdisk.scsi.sgio import ResetKind
from smbca.config import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "clusdisk-example.yaml"
KEY = b"0123456789abcdef0123456789abcdef"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def load(data):
    return config_mod.from_dict(data, key_loader=lambda path, key: KEY)


def test_example_parses():
    cfg = load(example())
    assert cfg.node_id == 1 and cfg.me.name == "NODEA" and cfg.partner.id == 2
    assert cfg.me.pr_key == 0x736D626300000001
    assert cfg.arbitration.mode is Mode.SCSI2
    t = cfg.arbitration.timings
    assert (t.renew_s, t.challenge_wait_s, t.settle_s, t.takeover_delay_s) == (3, 7, 10, 20)
    assert cfg.heartbeat.interval_s == 1.0 and len(cfg.heartbeat.links) == 2
    assert str(cfg.heartbeat.links[0].peer) == "198.51.100.2:5405"
    assert cfg.heartbeat.peer_port == 5406 and cfg.failover.auto_giveback_s == 0
    assert cfg.failover.public_link_handover and cfg.failover.public_link_down_s == 3.0
    assert cfg.scsi.reset is ResetKind.DEVICE and cfg.scsi.scsi_hosts is None
    assert cfg.quorum_disk == "naa.6001405abcdef0123456789abcdef012"
    aggr1, aggr2 = cfg.aggregates
    assert aggr1.home_node == 1 and aggr2.home_node == 2 and aggr2.disk == "t10.LIO-ORG lab-lun2-data2"
    assert aggr1.lifs[0].address == "192.0.2.10/24"
    assert cfg.metrics_listen.port == 9447 and cfg.control.smbcad_socket.endswith("smbcad.sock")
    assert cfg.arbitration.data_pr_type is PrType.WRITE_EXCLUSIVE
    assert repr(KEY) not in repr(cfg)                      # the key stays out of logs


def test_pr_mode_defaults():
    data = example()
    data["arbitration"] = {"mode": "pr"}
    t = load(data).arbitration.timings
    assert (t.pr_challenge_delay_s, t.pr_settle_s, t.takeover_delay_s) == (2, 4, 9)


def edit(path: str, value):
    data = example()
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize("path, value, key", [
    ("cluster.node_id", 3, "cluster.node_id"),
    ("cluster.nodes.1.id", 1, "cluster.nodes"),
    ("cluster.nodes.0.pr_key", "zzz", "cluster.nodes[0].pr_key"),
    ("cluster.bogus", 1, "cluster.bogus"),
    ("heartbeat.links", [], "heartbeat.links"),
    ("heartbeat.links.0.peer", "not-an-ip:1", "heartbeat.links[0].peer"),
    ("heartbeat.interval_ms", "1s", "heartbeat.interval_ms"),
    ("heartbeat.peer_port", 70000, "heartbeat.peer_port"),
    ("heartbeat.peer_port", "5406", "heartbeat.peer_port"),
    ("failover.auto_giveback_s", -1, "failover.auto_giveback_s"),
    ("failover.auto_giveback", 5, "failover.auto_giveback"),
    ("failover.public_link_down_ms", 100, "failover.public_link_down_ms"),
    ("failover.public_link_down_ms", "3s", "failover.public_link_down_ms"),
    ("failover.public_link_handover", "yes", "failover.public_link_handover"),
    ("arbitration.mode", "scsi3", "arbitration.mode"),
    ("arbitration.challenge_wait_ms", 5000, "arbitration.challenge_wait_ms"),
    ("arbitration.takeover_delay_ms", 4000, "arbitration.takeover_delay_ms"),
    ("arbitration.data_pr_type", "shared", "arbitration.data_pr_type"),
    ("scsi.reset", "lun", "scsi.reset"),
    ("scsi.scsi_hosts", ["a"], "scsi.scsi_hosts"),
    ("quorum.disk", "6001405abcdef", "quorum.disk"),
    ("quorum.disk", "naa.6001405abcdef0123456789abcdef013", "quorum.disk"),
    ("aggregates.0.home", "c", "aggregates[0].home"),
    ("aggregates.0.filesystem", "btrfs", "aggregates[0].filesystem"),
    ("aggregates.1.mount_point", "/srv/smbca/aggr1", "aggregates[1].mount_point"),
    ("aggregates.0.lifs.0.address", "192.0.2.10", "aggregates[0].lifs[0].address"),
    ("aggregates.0.lifs.0.address", "192.0.2.300/24", "aggregates[0].lifs[0].address"),
    ("aggregates.1.name", "aggr1", "aggregates[1].name"),
    ("aggregates.0.disk", DELETE, "aggregates[0].disk"),
    ("metrics.listen", "localhost", "metrics.listen"),
    ("log_level", "loud", "log_level"),
])
def test_errors_name_the_key(path, value, key):
    with pytest.raises(ConfigError) as info:
        load(edit(path, value))
    assert info.value.key == key, str(info.value)


def test_key_file(tmp_path):
    raw = tmp_path / "raw.key"
    raw.write_bytes(bytes(range(32)))
    assert config_mod.read_key_file(str(raw)) == bytes(range(32))
    hexfile = tmp_path / "hex.key"
    hexfile.write_text(bytes(range(32)).hex() + "\n")
    assert config_mod.read_key_file(str(hexfile)) == bytes(range(32))
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        config_mod.read_key_file(str(short))
    with pytest.raises(ConfigError) as info:
        config_mod.read_key_file(str(tmp_path / "missing"))
    assert info.value.key == "cluster.key_file"


def test_load_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_mod.load_yaml(str(bad))
    with pytest.raises(ConfigError, match="must be a mapping"):
        config_mod.from_dict(["a"])


def test_public_link_settings_default_to_a_few_seconds():
    data = example()
    del data["failover"]
    assert load(data).failover.public_link_down_s == 3.0
    data["failover"] = {"public_link_down_ms": 1500, "public_link_handover": False}
    failover = load(data).failover
    assert failover.public_link_down_s == 1.5 and not failover.public_link_handover
