"""Planned operations between two nodes, each an Operations over a real
AggregateManager with fake host/reservations/notifier/LIFs, the peer
channel replaced by direct calls (the real channel is in
test_clusdisk_peer.py): relocation with its step order and placement on
both nodes, refusals, rollback of a failed destination bring-up, takeover,
giveback, LIF migration, rejoin without automatic giveback."""

import asyncio
import json

import pytest

from clusdisk import placement as pl
from clusdisk.aggregates import AggregateManager
from clusdisk.errors import ClusdiskError
from clusdisk.control import PairNotifier
from clusdisk.operations import Operations
from clusdisk.resources import Aggregate, Lif, View
from smbca.control import answer as answer_line
from test_clusdisk_aggregates import FakeHost, FakeLifs, FakeNotifier, FakeReservation, inline

LA = Lif("lif-a1", "192.0.2.10/24", "eth0")
LB = Lif("lif-b1", "192.0.2.20/24", "eth0")
AGGRS = (Aggregate("aggr1", 1, "naa.01", "xfs", "/srv/aggr1", lifs=(LA,)),
         Aggregate("aggr2", 2, "naa.02", "ext4", "/srv/aggr2", lifs=(LB,)))
NAMES = {1: "a", 2: "b"}


class MemoryStore:
    def __init__(self):
        self.saved = None

    def load(self):
        return self.saved or pl.default(AGGRS)

    def save(self, placement):
        self.saved = placement


class DirectPeer:
    """The partner's peer handler called in-process; ``cut`` makes it unreachable."""

    def __init__(self):
        self.partner = None
        self.cut = False
        self.reachable, self.protocol = True, "v1"
        self.calls = []

    async def call(self, op, args=None, timeout_s=10.0):
        self.calls.append(op)
        if self.cut:
            self.reachable = False
            raise ClusdiskError("partner unreachable on every link (cut)")
        self.reachable = True
        return await self.partner.ops.peer_request(op, args or {})


class WitnessNotifier(FakeNotifier):
    node_name = "x"

    async def witness_event(self, event):
        self.journal.append(("witness event", event.state.value, str(event.addresses[0])))


class Node:
    def __init__(self, node_id):
        self.node_id = node_id
        self.journal = []
        self.member = True
        self.in_sync = {"aggr1": True, "aggr2": True}
        self.smbcad_up = True
        self.peer = DirectPeer()
        self.reservations = {a.name: FakeReservation(self.journal, a.name) for a in AGGRS}
        self.host = FakeHost(self.journal)
        self.notifier = PairNotifier(WitnessNotifier(self.journal), self.peer, lambda: True)
        self.manager = AggregateManager(AGGRS, node_id, {"aggr1": "/dev/sdb", "aggr2": "/dev/sdc"},
                                        self.reservations, self.host, self.notifier,
                                        FakeLifs(self.journal), run_blocking=inline)
        self.ops = Operations(node_id=node_id, node_names=NAMES, aggregates=AGGRS,
                              manager=self.manager, store=MemoryStore(), peer=self.peer,
                              notifier=self.notifier, smbcad_status=self.smbcad_status,
                              member=lambda: self.member, partner_alive=lambda: True,
                              base_status=self.base_status)
        self.ops.learned = True
        self.ops.keeper.claimed = True

    async def smbcad_status(self):
        if not self.smbcad_up:
            raise ClusdiskError("smbcad.sock: connection refused")
        return {"aggregates": [{"name": n, "mirror": {"role": "primary", "in_sync": s,
                                                      "lag_frames": 0 if s else 12}}
                               for n, s in self.in_sync.items()]}

    def base_status(self):
        return {"node": {"id": self.node_id, "name": NAMES[self.node_id]}, "partner": {},
                "member": self.member, "owns_quorum": self.node_id == 1,
                "aggregates": [{"name": s.name, "home": s.home_node, "up": s.up}
                               for s in self.manager.status()]}

    def view(self, taken_over=False):
        return View(self.node_id, self.member, taken_over, self.ops.owned(True))


def run(coro):
    return asyncio.run(coro)


def started(a, b):
    """Each node's home aggregate up; journals cleared."""
    a.peer.partner, b.peer.partner = b, a

    async def start():
        await a.manager.apply(a.view())
        await b.manager.apply(b.view())
    run(start())
    a.journal.clear()
    b.journal.clear()
    return a, b


@pytest.fixture
def pair():
    return started(Node(1), Node(2))


def test_relocate_from_either_node_moves_aggregate_and_lifs(pair):
    a, b = pair
    # sent to the destination: forwarded to the owner, which coordinates
    answer = run(b.ops.control({"command": "relocate", "version": 1, "aggregate": "aggr1",
                                "to": "b"}))
    assert answer["ok"], answer
    assert answer["operation"] == "relocate aggr1"
    assert [(s["node"], s["step"]) for s in answer["steps"]] == [
        ("a", "witness UNAVAILABLE"), ("a", "smbcad release --planned"), ("a", "LIF lif-a1 down"),
        ("a", "unmount"), ("a", "block device read-only"), ("a", "release data LUN"),
        ("b", "reserve data LUN"), ("b", "block device writable"), ("b", "fsck"),
        ("b", "mount"), ("b", "smbcad adopt"), ("b", "LIF lif-a1 up"),
        ("b", "witness AVAILABLE")]
    assert all(s["ok"] and s["aggregate"] == "aggr1" for s in answer["steps"])
    assert a.manager.current == set() and b.manager.current == {"aggr1", "aggr2"}
    for node in (a, b):
        assert node.ops.placement.owner == {"aggr1": 2, "aggr2": 2}
        assert node.ops.placement.lif_node == {"lif-a1": 2, "lif-b1": 2}
        assert node.ops.store.saved == node.ops.placement
    # both witnessd heard UNAVAILABLE then AVAILABLE (local + forwarded)
    assert ("witness event", "unavailable", "192.0.2.10") in b.journal
    assert ("witness event", "available", "192.0.2.10") in a.journal
    assert ("take", "aggr1", False) in b.journal                 # no break_foreign
    # apply afterwards changes nothing (the placement drives the desired set)
    assert run(a.manager.apply(a.view())).empty and run(b.manager.apply(b.view())).empty


@pytest.mark.parametrize("setup, message", [
    (lambda a, b: a.in_sync.update(aggr1=False),
     "the replica of aggr1 on b is not in sync (in_sync False, lag 12 frames)"),
    (lambda a, b: setattr(b.peer, "cut", True) or setattr(a.peer, "cut", True),
     "partner unreachable"),
    (lambda a, b: setattr(b.ops, "operation", "relocate aggr2 to a"),
     "b cannot take aggr1: operation relocate aggr2 to a in progress"),
    (lambda a, b: setattr(b, "member", False), "b cannot take aggr1: not a cluster member"),
    (lambda a, b: setattr(b, "smbcad_up", False), "its smbcad is not reachable"),
])
def test_relocate_refusals_change_nothing(pair, setup, message):
    a, b = pair
    setup(a, b)
    answer = run(a.ops.control({"command": "relocate", "aggregate": "aggr1", "to": 2}))
    assert not answer["ok"] and message in answer["error"], answer
    assert answer["steps"] == [] and a.manager.current == {"aggr1"}
    assert a.ops.placement.owner["aggr1"] == 1 and a.ops.operation is None


def test_force_skips_only_the_in_sync_check(pair):
    a, b = pair
    a.in_sync["aggr1"] = False
    assert run(a.ops.control({"command": "relocate", "aggregate": "aggr1", "to": "b",
                              "force": True}))["ok"]
    b.member = False
    answer = run(b.ops.control({"command": "relocate", "aggregate": "aggr1", "to": "a",
                                "force": True}))
    assert not answer["ok"] and "not a cluster member" in answer["error"]


def test_other_refusals(pair):
    a, b = pair
    answer = run(a.ops.control({"command": "relocate", "aggregate": "aggr1", "to": "a"}))
    assert answer == {"ok": False, "operation": "relocate aggr1",
                      "error": "aggr1 is already on a", "steps": []}
    assert "unknown aggregate" in run(a.ops.control({"command": "relocate", "aggregate": "x",
                                                     "to": "a"}))["error"]
    assert "unknown node" in run(a.ops.control({"command": "relocate", "aggregate": "aggr1",
                                                "to": "c"}))["error"]
    refused = json.loads(run(answer_line(a.ops.control, b'{"command": "takeover", "version": 2}')))
    assert refused == {"ok": False,
                       "error": "unsupported control protocol version 2 (this daemon speaks 1)"}
    assert a.ops.operation is None
    a.ops.operation = "takeover to a"
    answer = run(a.ops.control({"command": "relocate", "aggregate": "aggr1", "to": "b"}))
    assert answer["error"] == "operation takeover to a in progress"


def test_failed_destination_bring_up_rolls_back(pair):
    a, b = pair
    b.host.fail = {"mount": "aggr1"}
    answer = run(a.ops.control({"command": "relocate", "aggregate": "aggr1", "to": "b"}))
    assert not answer["ok"]
    assert "bring-up of aggr1 on b failed" in answer["error"]
    assert "aggr1 is back up on a" in answer["error"]
    failed = [s for s in answer["steps"] if not s["ok"]]
    assert [(s["node"], s["step"]) for s in failed] == [("b", "mount")]
    assert answer["steps"][-1] == {**answer["steps"][-1], "node": "a", "step": "witness AVAILABLE"}
    assert a.manager.current == {"aggr1"} and b.manager.current == {"aggr2"}
    assert a.ops.placement.owner["aggr1"] == 1 and b.ops.placement.owner["aggr1"] == 1


def test_planned_takeover_and_giveback(pair):
    a, b = pair
    answer = run(a.ops.control({"command": "takeover"}))
    assert answer["ok"] and answer["operation"] == "takeover"
    assert a.manager.current == {"aggr1", "aggr2"} and b.manager.current == set()
    assert b.ops.placement.owned_by(1) == {"aggr1", "aggr2"}
    assert "owns no aggregate" in run(a.ops.control({"command": "takeover"}))["error"]
    a.in_sync["aggr2"] = False                # b's replica of aggr2 lags: refused
    answer = run(b.ops.control({"command": "giveback"}))
    assert not answer["ok"] and "replica of aggr2 on b is not in sync" in answer["error"]
    status = run(a.ops.status())
    assert status["giveback_possible"] is False
    assert "replica not in sync: aggr2" in status["giveback_veto"]
    a.in_sync["aggr2"] = True
    # sent to the holder (the lab found a second pass over the moved aggregate)
    answer = run(a.ops.control({"command": "giveback"}))
    assert answer["ok"], answer
    assert a.manager.current == {"aggr1"} and b.manager.current == {"aggr2"}
    assert "every aggregate is on its home node" in run(a.ops.control(
        {"command": "giveback"}))["error"]


def test_lif_migrate_only_to_the_aggregate_owner(pair):
    a, b = pair
    answer = run(a.ops.control({"command": "lif-migrate", "lif": "lif-a1", "to": "b"}))
    assert answer == {"ok": False, "error": "aggr1 is owned by a: relocate the aggregate instead",
                      "steps": []}
    # the LIF was left on b (e.g. its bring-up failed there): bring it home to a
    for node in (a, b):
        node.ops.keeper.placement = pl.move_lif(node.ops.placement, "lif-a1", 2)
    # a's smbcad has b's connections on the LIF from the mirror: a tickles them
    a.notifier.notifier.tickles = [["192.0.2.99", 50000, "192.0.2.10", 445],
                                   ["192.0.2.98", 50001, "192.0.2.11", 445]]
    answer = run(b.ops.control({"command": "lif-migrate", "lif": "lif-a1", "to": "a"}))
    assert answer["ok"], answer
    assert [(s["node"], s["step"]) for s in answer["steps"]] == [
        ("b", "witness UNAVAILABLE"), ("b", "LIF lif-a1 down"), ("a", "LIF lif-a1 up"),
        ("a", "witness AVAILABLE")]
    assert ("smbcad tickles", "aggr1") in a.journal
    assert ("lif up", "lif-a1", (("192.0.2.99", 50000, "192.0.2.10", 445),)) in a.journal
    assert a.ops.placement.lif_node["lif-a1"] == 1 == b.ops.placement.lif_node["lif-a1"]


def test_status_fields(pair):
    a, b = pair
    status = run(a.ops.status())
    assert status["placement"] == {"aggr1": "a", "aggr2": "b"}
    assert status["lifs"] == {"lif-a1": "a", "lif-b1": "b"}
    assert (status["partner_reachable"], status["peer_protocol"], status["operation"]) == \
        (True, "v1", None)
    assert [(e["name"], e["owner"], e["in_sync"]) for e in status["aggregates"]] == [
        ("aggr1", "a", True), ("aggr2", "b", True)]
    assert status["takeover_possible"] is True and status["takeover_veto"] is None
    assert status["giveback_veto"] == "every aggregate is on its home node"


def test_unplanned_takeover_then_rejoin_keeps_the_aggregates(pair):
    """The partner dies: this node takes its aggregates (placement moved,
    persisted); the partner restarts, learns the placement and brings up
    nothing; no automatic giveback."""
    a, b = pair
    b.peer.cut = a.peer.cut = True
    a.ops.take_over()
    run(a.manager.apply(a.view(taken_over=True)))
    assert a.manager.current == {"aggr1", "aggr2"}
    assert a.ops.store.saved.owner == {"aggr1": 1, "aggr2": 1}
    assert a.journal[0] == ("witness", "offline", "aggr2")       # 7(b) step 3 first
    restarted = Node(2)                                          # persisted: its home
    restarted.ops.learned = False
    restarted.peer.partner, a.peer.partner = a, restarted
    a.peer.cut = False
    assert restarted.ops.owned(owns_quorum=False) == frozenset()
    run(restarted.ops.learn())
    assert restarted.ops.owned(owns_quorum=False) == frozenset()
    run(restarted.manager.apply(restarted.view()))
    assert restarted.manager.current == set()
    assert run(a.manager.apply(a.view())).empty                  # rejoined: nothing moves
    status = run(a.ops.status())
    assert status["giveback_possible"] is True and status["placement"]["aggr2"] == "a"


def test_auto_giveback_waits_for_the_delay_and_the_replica(pair):
    a, b = pair
    run(a.ops.control({"command": "takeover"}))
    assert run(a.ops.auto_giveback(None, 30.0)) is None           # partner not back
    assert run(a.ops.auto_giveback(10.0, 30.0)) is None           # not long enough
    assert run(a.ops.auto_giveback(100.0, 0.0)) is None           # off
    a.in_sync["aggr2"] = False
    answer = run(a.ops.auto_giveback(31.0, 30.0))
    assert not answer["ok"] and "not in sync" in answer["error"]
    assert a.manager.current == {"aggr1", "aggr2"}
    a.in_sync["aggr2"] = True
    assert run(a.ops.auto_giveback(40.0, 30.0))["ok"]
    assert a.manager.current == {"aggr1"} and b.manager.current == {"aggr2"}
    assert run(a.ops.auto_giveback(50.0, 30.0)) is None           # nothing left


def test_a_status_request_answers_from_what_refresh_gathered(pair):
    """smbcad and the partner may take seconds to answer during a move: the
    control socket's status uses what the daemon's refresh gathered (this
    node's own fields stay current)."""
    a, b = pair
    run(a.ops.refresh())
    a.in_sync["aggr1"] = False
    a.smbcad_up = False
    status = run(a.ops.control({"command": "status"}))["status"]
    assert [(e["name"], e["in_sync"]) for e in status["aggregates"]][0] == ("aggr1", True)
    assert status["partner"]["status"]["node"]["name"] == "b"
    a.ops.operation = "relocate aggr2"
    assert run(a.ops.control({"command": "status"}))["status"]["operation"] == "relocate aggr2"
    a.ops.operation = None
    run(a.ops.refresh())
    status = run(a.ops.control({"command": "status"}))["status"]
    assert [(e["name"], e["in_sync"]) for e in status["aggregates"]][0] == ("aggr1", None)
