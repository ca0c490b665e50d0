"""A relocation whose ``bring-up`` answer is lost (issue 11): the source asks
the destination before undoing anything, and the placements of the two
nodes converge (the generation's reconcile) whatever the destination did.
Two Operations over real AggregateManagers, the peer channel replaced by
direct calls that can drop an answer (test_clusdisk_operations.py)."""

import asyncio

import pytest

from clusdisk import operations
from clusdisk.errors import ClusdiskError
from clusdisk.reservations import Verdict
from test_clusdisk_operations import DirectPeer, Node, run, started


class LosingPeer(DirectPeer):
    """Runs the partner's handler, then loses the answer of ``lose``;
    ``cut_after_loss``: the partner is unreachable from then on."""

    def __init__(self):
        super().__init__()
        self.lose = set()
        self.cut_after_loss = False

    async def call(self, op, args=None, timeout_s=10.0):
        reply = await super().call(op, args, timeout_s)
        if op in self.lose:
            self.lose.discard(op)
            self.cut = self.cut_after_loss
            raise ClusdiskError(f"no answer to {op} within {timeout_s} s")
        return reply


@pytest.fixture
def pair(monkeypatch):
    monkeypatch.setattr(operations, "ANSWER_LOST_WAIT_S", 0.05)
    a, b = Node(1), Node(2)
    for node in (a, b):
        node.peer = LosingPeer()
        node.ops.peer = node.notifier.peer = node.peer
    return started(a, b)


def relocate(node):
    return run(node.ops.control({"command": "relocate", "aggregate": "aggr1", "to": "b"}))


def test_answer_lost_after_the_destination_brought_it_up_is_no_failure(pair):
    a, b = pair
    a.peer.lose = {"bring-up"}
    answer = relocate(a)
    assert answer["ok"], answer
    lost = answer["steps"][-1]
    assert (lost["node"], lost["step"], lost["ok"]) == (
        "b", "bring-up answer lost: asked for its status", True)
    assert a.manager.current == set() and b.manager.current == {"aggr1", "aggr2"}
    assert not any(entry[0] == "take" for entry in a.journal)         # nothing undone on a
    assert a.ops.placement == b.ops.placement
    assert a.ops.placement.owner == {"aggr1": 2, "aggr2": 2}


def test_answer_lost_after_the_destination_failed_brings_it_back(pair):
    a, b = pair
    b.reservations["aggr1"].verdicts = {"take": Verdict.CONFLICT}
    a.peer.lose = {"bring-up"}
    answer = relocate(a)
    assert not answer["ok"]
    assert "aggr1 is down there" in answer["error"] and "aggr1 is back up on a" in answer["error"]
    assert a.manager.current == {"aggr1"} and b.manager.current == {"aggr2"}
    assert a.ops.placement.owner == b.ops.placement.owner == {"aggr1": 1, "aggr2": 2}
    # the status refreshes reconcile nothing away from the truth
    run(a.ops.refresh())
    run(b.ops.refresh())
    assert a.ops.placement == b.ops.placement
    assert a.ops.placement.owner == {"aggr1": 1, "aggr2": 2}


def test_answer_lost_and_partner_gone_converges_on_reconnect(pair):
    """The destination brought aggr1 up, then became unreachable: the
    source's undo meets the destination's reservation and fails, and its
    placement keeps aggr1 on b; once the channel is back, both agree."""
    a, b = pair
    a.peer.lose, a.peer.cut_after_loss = {"bring-up"}, True
    a.reservations["aggr1"].verdicts = {"take": Verdict.CONFLICT}       # b holds the LUN
    answer = relocate(a)
    assert not answer["ok"] and "aggr1 is unknown" in answer["error"], answer
    assert a.manager.current == set() and b.manager.current == {"aggr1", "aggr2"}
    assert a.ops.placement.owner == {"aggr1": 2, "aggr2": 2}
    a.peer.cut = False
    run(a.ops.refresh())
    run(b.ops.refresh())
    assert a.ops.placement == b.ops.placement
    assert a.ops.placement.owner == {"aggr1": 2, "aggr2": 2}
    # and the renew loop's apply leaves everything where it is
    run(a.manager.apply(a.view()))
    run(b.manager.apply(b.view()))
    assert a.manager.current == set() and b.manager.current == {"aggr1", "aggr2"}


def test_reconnect_after_a_failed_destination_brings_it_up_on_the_source(pair):
    """The destination failed and put aggr1 back on a (a newer generation),
    but the source never heard: it had left aggr1 on b.  The reconcile of
    the next status refresh hands it back to a, whose apply brings it up."""
    a, b = pair
    b.reservations["aggr1"].verdicts = {"take": Verdict.CONFLICT}
    a.reservations["aggr1"].verdicts = {"take": Verdict.CONFLICT}      # undo fails too
    a.peer.lose, a.peer.cut_after_loss = {"bring-up"}, True
    answer = relocate(a)
    assert not answer["ok"]
    assert a.ops.placement.owner["aggr1"] == 2 and b.ops.placement.owner["aggr1"] == 1
    assert b.ops.placement.generation > a.ops.placement.generation
    a.reservations["aggr1"].verdicts = {}
    a.peer.cut = False
    run(a.ops.refresh())
    assert a.ops.placement == b.ops.placement and a.ops.placement.owner["aggr1"] == 1
    run(a.manager.apply(a.view()))
    assert a.manager.current == {"aggr1"} and b.manager.current == {"aggr2"}


def test_no_reconcile_while_an_operation_runs(pair):
    a, b = pair
    b.ops.keeper.set(b.ops.placement)           # b newer, same places
    b.ops.operation = "relocate aggr2 to a"
    generation = a.ops.placement.generation
    run(a.ops.refresh())
    assert a.ops.placement.generation == generation
    b.ops.operation = None
    asyncio.run(a.ops.refresh())
    assert a.ops.placement.generation == b.ops.placement.generation
