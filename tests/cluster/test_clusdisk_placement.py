"""Two clusdisk processes agree on the newest placement (issue 11), in
network namespaces on served LUNs (clusdisk_pair.py):

- a cold start of both nodes after a takeover: the node that forms first
  holds an older placement file, reads the newer placement on the quorum
  LUN, brings up nothing and says why, and the partner serves both
  aggregates when it comes back;
- a relocation whose bring-up answer is lost (its TCP connection killed on
  the source while the destination is half-way): the source asks the
  destination, reports success, and both placements agree.
"""

import os
import shutil
import threading
import time

import pytest

from clusdisk_pair import LIFS, PEER_PORT, ClusdiskNode, LunServer
from pair import INTERCONNECT, Topology, run


@pytest.fixture
def cluster(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the cluster tier needs root (network namespaces)")
    for tool in ("ip", "nsenter", "ss"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    topology, luns, nodes = Topology(), None, []
    try:
        luns = LunServer(tmp_path)

        def make(mode: str, takeover_delay_ms: int = 20000) -> dict:
            for side in ("A", "B"):
                nodes.append(ClusdiskNode(topology, side, tmp_path, luns, mode,
                                          takeover_delay_ms))
            return {node.side: node for node in nodes}
        yield make
    finally:
        for node in nodes:
            node.kill()
        if luns is not None:
            luns.close()
        topology.close()


def start_pair(a: ClusdiskNode, b: ClusdiskNode) -> None:
    a.start()
    a.wait_for(lambda s: s["owns_quorum"] and a.up(s) == {"aggr1"}, "aggr1 up on a")
    b.start()
    b.wait_for(lambda s: s["state"] == "standby" and b.up(s) == {"aggr2"}, "aggr2 up on b")


@pytest.mark.parametrize("mode", ["scsi2", "pr"])
def test_cold_start_after_a_takeover_waits_for_the_newer_placement(cluster, mode):
    nodes = cluster(mode)
    a, b = nodes["A"], nodes["B"]
    start_pair(a, b)
    # A leaves; B takes both aggregates over (a new placement generation)
    assert a.stop() == 0
    taken = b.wait_for(lambda s: b.up(s) == {"aggr1", "aggr2"}, "takeover by b")
    assert taken["placement"] == {"aggr1": "b", "aggr2": "b"}
    generation = taken["placement_record"]["generation"]
    assert b.stop() == 0

    # A starts first, alone, with its placement file from before the takeover
    before = len(a.host_log())
    a.start()
    alone = a.wait_for(lambda s: s["owns_quorum"] and s["member"], "a forming the cluster")
    # a few renew periods (each applies the placement), well inside the takeover delay
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        alone = a.status()
        assert a.up(alone) == set(), f"a brought up what b holds: {alone}"
        time.sleep(0.1)
    assert alone["state"] == "online-partner-lost"
    assert alone["placement"] == {"aggr1": "b", "aggr2": "b"}
    assert alone["placement_record"]["generation"] == generation
    assert alone["placement_source"] == "the quorum LUN (written by b)"
    for entry in alone["aggregates"]:
        assert entry["why"] == (f"placed on b (placement generation {generation} from the "
                                "quorum LUN (written by b)), which holds its newest copy: "
                                "waiting for b")
    assert LIFS["aggr1"] not in a.addresses()

    # B comes back: it serves both, A nothing
    b.start()
    both = b.wait_for(lambda s: b.up(s) == {"aggr1", "aggr2"}, "both aggregates up on b")
    assert both["state"] == "standby" and a.up(a.status()) == set()
    addresses = b.addresses()
    assert LIFS["aggr1"] in addresses and LIFS["aggr2"] in addresses
    steps = [line.split()[1] for line in a.host_log()[before:].splitlines()]
    assert set(steps) == {"read-only"}, steps         # nothing made writable, nothing mounted
    assert b.stop() == 0 and a.stop() == 0


def test_lost_bring_up_answer_is_asked_for_not_undone(cluster):
    nodes = cluster("scsi2")
    a, b = nodes["A"], nodes["B"]
    start_pair(a, b)
    hold = b.state_dir / "hold-mount-aggr1"
    hold.write_text("held by the test\n")
    answers = {}
    relocation = threading.Thread(target=lambda: answers.update(a.request(
        {"command": "relocate", "aggregate": "aggr1", "to": "b"})))
    relocation.start()
    try:
        b.wait_for(lambda s: "mount-held aggr1" in b.host_log(), "b's bring-up half-way")
        # the answer's connection dies on A (the destination goes on)
        killed = run(["ip", "netns", "exec", a.topology.ns["A"], "ss", "-K", "dst",
                      INTERCONNECT["B"], "dport", "=", str(PEER_PORT)], check=False)
        assert killed.returncode == 0, killed.stderr
    finally:
        hold.unlink()
        relocation.join(120)
    assert answers.get("ok"), answers
    lost = [s for s in answers["steps"] if s["step"].startswith("bring-up answer lost")]
    assert lost and lost[0]["ok"] and lost[0]["node"] == "b", answers["steps"]
    mine = a.wait_for(lambda s: s["placement"]["aggr1"] == "b", "the placement moved")
    theirs = b.status()
    assert a.up(mine) == set() and b.up(theirs) == {"aggr1", "aggr2"}
    assert mine["placement_record"] == theirs["placement_record"]
    after_release = a.host_log().split("unmount aggr1", 1)[1]
    assert "writable" not in after_release and "mount aggr1" not in after_release
    assert LIFS["aggr1"] in b.addresses() and LIFS["aggr1"] not in a.addresses()
    assert b.stop() == 0 and a.stop() == 0
