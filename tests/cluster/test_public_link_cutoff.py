"""A node cut off from its clients hands its aggregate to the partner
(issue 11; clusdisk.public_links), in the cluster tier's namespaces: two
clusdisk processes on served LUNs (clusdisk_pair.py) each driving its
node's smbcad (pair.py's Node: the mirror on the interconnect, aggregate
``aggr1`` a directory both see, CA share ``vms``), the real LIF mover in
each namespace, and an smbprotocol client in the client namespace.

Node A owns aggr1 (LIF 192.0.2.10 on pub0).  A persistent open writes; A's
public link goes down inside its namespace (heartbeat and peer channel on
the interconnect stay up).  After ``failover.public_link_down_ms`` A hands
aggr1 over the planned way (mirror in sync), B serves it and its LIF, and
the client's DH2C finds its open with the same persistent FileId and its
data.  ``smbca failover show`` and the metrics say what the ports are.
A's link back up moves nothing, though both nodes have automatic giveback
on; the operator's giveback brings aggr1 home, the open following again.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from clusdisk_pair import LIFS, ClusdiskNode, LunServer  # noqa: E402
from pair import REPO, ClientThread, Node, Topology, code_env, run  # noqa: E402
from previous_release import export  # noqa: E402
from test_cluster_failover import Owner, adopted_opens, wait_in_sync  # noqa: E402

DOWN_MS = 1500
METRICS_PORT = 9447
MOVE_S = 60.0
QUIET_S = 6.0            # four down times and more: long enough for a move back to start


class CutoffClusdisk(ClusdiskNode):
    """clusdisk_pair's node with aggr1 only, driving its own smbcad, with
    automatic giveback on and metrics served in its namespace."""

    def __init__(self, topology, side, base, luns, mount_point, smbcad_socket=None,
                 code: Path = REPO) -> None:
        super().__init__(topology, side, base, luns, "pr", 20000, code)
        config = json.loads(self.config_path.read_text())
        [aggr1] = [a for a in config["aggregates"] if a["name"] == "aggr1"]
        aggr1["mount_point"] = str(mount_point)
        config["aggregates"] = [aggr1]
        config["failover"] = {"auto_giveback_s": 1}
        if smbcad_socket is not None:
            config["control"]["smbcad_socket"] = smbcad_socket
        if code == REPO:                      # the previous release knows neither
            config["failover"]["public_link_down_ms"] = DOWN_MS
            config["metrics"] = {"listen": f"127.0.0.1:{METRICS_PORT}"}
        self.config_path.write_text(json.dumps(config, indent=1))


def needs_root_and_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("the cluster tier needs root (network namespaces)")
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@pytest.fixture
def cluster(tmp_path):
    needs_root_and_tools()
    topology = Topology()
    luns, processes, threads = None, [], []
    try:
        luns = LunServer(tmp_path)
        mount = tmp_path / "aggr1"
        (mount / "vms").mkdir(parents=True)
        smbcads = {side: Node(topology, side, tmp_path, mount, mount / "vms")
                   for side in ("A", "B")}
        processes += smbcads.values()
        for node in smbcads.values():
            node.start()
        disks = {side: CutoffClusdisk(topology, side, tmp_path, luns, mount,
                                      smbcads[side].control_socket) for side in ("A", "B")}
        processes += disks.values()
        client = ClientThread(topology.path("C"))
        threads.append(client)
        yield topology, smbcads, disks, client
    finally:
        for thread in threads:
            thread.close()
        for process in processes:
            process.kill()
        if luns is not None:
            luns.close()
        topology.close()


def failover_show(disk) -> str:
    done = subprocess.run([sys.executable, "-m", "smbca.admin", "failover", "show", "--socket",
                           disk.socket], capture_output=True, text=True, env=code_env(),
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def metrics_of(topology, side: str) -> str:
    """clusdisk's metrics page, fetched inside ``side``'s namespace."""
    thread = ClientThread(topology.path(side))
    try:
        return thread.call(lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).read().decode())
    finally:
        thread.close()


def reconnected(owner) -> None:
    owner.reconnect()
    assert owner.handle.file_id[:8] == owner.file_id[:8], "another persistent FileId"
    owner.read_back()


def test_a_node_cut_off_from_its_clients_hands_its_aggregate_over(cluster):
    topology, smbcads, disks, client = cluster
    a, b = disks["A"], disks["B"]
    a.start()
    a.wait_for(lambda s: s["owns_quorum"] and a.up(s) == {"aggr1"}, "aggr1 up on a")
    b.start()
    b.wait_for(lambda s: s["state"] == "standby" and s["public_links"]["ports"], "b standby")
    a.wait_for(lambda s: ((s["partner"].get("status") or {}).get("public_links") or {}).get(
        "ports"), "b's public ports seen by a")
    wait_in_sync(smbcads["A"])
    assert "public ports on b: pub0 up" in failover_show(a)
    assert 'clusdisk_public_link_up{port="pub0"} 1.0' in metrics_of(topology, "A")

    owner = Owner(client, "vm.vhdx")
    for index in range(4):
        owner.write(index)
    wait_in_sync(smbcads["A"])

    cut_at = time.monotonic()
    topology.isolate("A")                       # pub0 down inside A's namespace
    moved = b.wait_for(lambda s: b.up(s) == {"aggr1"}, "aggr1 handed over to b", MOVE_S)
    print(f"public link of a down: aggr1 up on b {time.monotonic() - cut_at:.1f} s later "
          f"(down time {DOWN_MS} ms)")
    assert moved["placement"] == {"aggr1": "b"}
    assert a.up(a.status()) == set()
    assert LIFS["aggr1"] in b.addresses() and LIFS["aggr1"] not in a.addresses()
    log = a.log_text()
    assert "public port pub0 down" in log and "aggr1 handed over to b" in log, a.log_tail()
    shown = failover_show(a)
    assert "public ports on a: pub0 cut (admin down" in shown, shown
    assert "public ports on b: pub0 up" in shown, shown
    assert 'clusdisk_public_link_up{port="pub0"} 0.0' in metrics_of(topology, "A")
    assert 'clusdisk_public_link_handovers_total{outcome="ok"} 1.0' in metrics_of(topology, "A")

    reconnected(owner)
    assert [entry["state"] for entry in adopted_opens(smbcads["B"])] == ["connected"]
    owner.write(4)

    # The link returns: nothing moves back by itself (automatic giveback is on).
    run(["ip", "-n", topology.ns["A"], "link", "set", "pub0", "up"])
    a.wait_for(lambda s: s["public_links"]["ports"]["pub0"]["state"] == "up", "pub0 up on a")
    time.sleep(QUIET_S)
    assert b.up(b.status()) == {"aggr1"} and a.up(a.status()) == set()
    assert a.status()["placement"] == {"aggr1": "b"}
    assert "handed over by a, whose public ports were down" in failover_show(b)
    assert "automatic giveback" not in b.log_text(), b.log_tail()

    # The operator gives back: the open follows again.
    answer = a.request({"command": "giveback"})
    assert answer.get("ok"), (answer, a.log_tail(), b.log_tail())
    a.wait_for(lambda s: a.up(s) == {"aggr1"}, "aggr1 back on a")
    reconnected(owner)
    assert b.stop() == 0 and a.stop() == 0


@pytest.fixture
def mixed(tmp_path):
    """clusdisk alone (no smbcad): A this checkout, B the previous release."""
    needs_root_and_tools()
    previous = export(tmp_path / "previous-release")
    topology, luns, disks = Topology(), None, {}
    try:
        luns = LunServer(tmp_path)
        for side, code in (("A", REPO), ("B", previous)):
            disks[side] = CutoffClusdisk(topology, side, tmp_path, luns, tmp_path / "aggr1",
                                         code=code)
        yield topology, disks
    finally:
        for disk in disks.values():
            disk.kill()
        if luns is not None:
            luns.close()
        topology.close()


def test_a_partner_of_the_previous_release_is_unknown_and_nothing_moves(mixed):
    """The mixed-version rule: B (previous release) reports no public ports,
    so A cut off from its clients keeps aggr1 and says why."""
    topology, disks = mixed
    a, b = disks["A"], disks["B"]
    a.start()
    a.wait_for(lambda s: s["owns_quorum"] and a.up(s) == {"aggr1"}, "aggr1 up on a")
    b.start()
    b.wait_for(lambda s: s["state"] == "standby", "b standby")
    a.wait_for(lambda s: (s["partner"].get("status") or {}).get("member"), "b's status on a")
    topology.isolate("A")
    waiting = a.wait_for(lambda s: s["public_links"].get("waiting"), "a's verdict", MOVE_S)
    assert "does not report its public ports" in waiting["public_links"]["waiting"]["aggr1"]
    time.sleep(QUIET_S)
    assert a.up(a.status()) == {"aggr1"} and b.up(b.status()) == set()
    shown = failover_show(a)
    assert "public ports on b: unknown (not reported: an older release)" in shown, shown
    assert "aggr1 stays here" in a.log_text() and "handing" not in a.log_text()
    assert b.stop() == 0 and a.stop() == 0
