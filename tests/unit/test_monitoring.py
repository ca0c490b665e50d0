"""contrib/: the Prometheus alerting rules and the Grafana dashboard (issue 15
item 6).  Every metric their expressions name is one a daemon registers; the
rules pass ``promtool check rules``; the dashboard is well-formed JSON with
the fields Grafana needs.  And a metrics port in use is a config error."""

import asyncio
import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from clusdisk.metrics import ClusdiskMetrics
from smbca.config import ConfigError, ListenAddress
from smbca.metrics import serve_metrics
from smbcad.openstate.db import OpenStateDb
from smbcad.domain_metrics import MachineAccountCollector
from smbcad.metrics import SmbMetrics
from smbcad.server.opens import OpenTable
from smbcad.store import LocalHandleStore, LogEngine
from witnessd.metrics import WitnessMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "smbca-rules.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "smbca.json"
PROMETHEUS_BUILTINS = {"up"}            # set by Prometheus on every scrape target
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
             "group_right", "bool", "offset", "inf", "nan"}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                              "_created"),
             "summary": ("_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",),
             "unknown": ("",)}

# A cluster member's status (smbcad.cluster.member.ClusterMember.status), as
# the cluster collector reads it.
CLUSTER_STATUS = {
    "mirror_link": "up", "mirror_link_counts": {"dropped_frames": {"bad_mac": 0}},
    "aggregates": [{"name": "aggr1", "phase": "online", "adopted": {"restored": 2},
                    "last_release_pause_s": 0.5,
                    "mirror": {"role": "primary", "in_sync": True, "epoch": 3, "lag_frames": 0,
                               "lag_bytes": 0, "degrade_count": 0, "last_ack_latency_s": 0.001,
                               "resync_duration_s": 0.2}}]}


def _sample_names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> set[str]:
    """Every sample name the three daemons' registries can expose."""
    async def open_store():
        return await LocalHandleStore.open(LogEngine(str(tmp_path_factory.mktemp("store"))))

    loop = asyncio.new_event_loop()
    store = loop.run_until_complete(open_store())
    try:
        smbcad = SmbMetrics()
        smbcad.watch_cluster(lambda: CLUSTER_STATUS)
        opens = OpenTable(metrics=smbcad, clock=lambda: 0.0, leasing=None, spawn=None,
                          loop=lambda: loop, open_state=OpenStateDb.private())
        smbcad.watch_handles(opens, lambda: {"local": store})
        smbcad.registry.register(MachineAccountCollector(lambda: None))     # as smbcad/daemon.py
        names = set()
        for registry in (smbcad.registry, WitnessMetrics().registry, ClusdiskMetrics().registry):
            names |= _sample_names(registry)
    finally:
        loop.run_until_complete(store.shutdown())
        loop.close()
    return names


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)              # strings
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)          # matchers, ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        after = text[match.end():].lstrip()
        if after.startswith("(") or match.group() in _KEYWORDS:
            continue                                        # a function or an operator
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue                                        # 5m, 0.99e3
        names.add(match.group())
    return names


def _rule_exprs() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", ())]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", query["query"]))
    return exprs


def test_metric_name_extraction():
    assert metric_names('histogram_quantile(0.99, sum by (le, store) '
                        '(rate(smbcad_store_commit_duration_seconds_bucket{instance=~"a"}[5m])))'
                        ) == {"smbcad_store_commit_duration_seconds_bucket"}
    assert metric_names('a_b == 0 and on(instance) (count by (instance) (c_d) > 0)') == \
        {"a_b", "c_d"}


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_used_is_registered(registered, source):
    exprs = _rule_exprs() if source == "rules" else _dashboard_exprs()
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert used, "no metric names found"
    unknown = used - registered - PROMETHEUS_BUILTINS
    assert not unknown, f"{source} use metrics no daemon registers: {sorted(unknown)}"


def test_rules_cover_the_failures_on_call_needs_to_hear_of():
    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"SmbcaNodeLost", "SmbcaMirrorOutOfSync", "SmbcaTakeoverImpossible",
            "SmbcaHandleStoreFailed", "SmbcaReservationLost",
            "SmbcaHeartbeatLinkDown", "SmbcaMachinePasswordOld"} <= alerts


@pytest.mark.interop("promtool")        # skips without it (fails under CI=true)
def test_promtool_check_rules():
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_well_formed():
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    variables = {v["name"] for v in board["templating"]["list"]}
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            for variable in re.findall(r"\$(\w+)", target["expr"]):
                assert variable in variables, (panel["title"], variable)


def test_metrics_port_in_use_is_a_config_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            serve_metrics(ListenAddress("127.0.0.1", port), CollectorRegistry(),
                          "server.metrics_listen")
    assert caught.value.key == "server.metrics_listen"
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_machine_password_set_time_comes_from_the_join_record(tmp_path):
    """smbca domain join / update write the time into the record beside the
    keytab; an older record gives its file's mtime; no record, no sample."""
    from smbca.domain import MachineAccount, machine_account_path
    keytab = str(tmp_path / "krb5.keytab")
    registry = CollectorRegistry()
    registry.register(MachineAccountCollector(lambda: keytab))
    name = "smbcad_domain_machine_password_set_timestamp_seconds"
    labels = {"account": "FS1$", "realm": "SMBCA.TEST"}
    assert registry.get_sample_value(name, labels) is None
    account = MachineAccount(realm="SMBCA.TEST", netbios_domain="SMBCA", domain_sid="S-1-5-21-1",
                             computer_name="FS1", password="pw", password_set=1.7e9)
    record = Path(machine_account_path(keytab))
    record.write_text(account.to_json())
    assert registry.get_sample_value(name, labels) == 1.7e9
    record.write_text(account.to_json().replace('"password_set": 1700000000.0', '"x": 0'))
    os.utime(record, (1.6e9, 1.6e9))
    assert registry.get_sample_value(name, labels) == 1.6e9
