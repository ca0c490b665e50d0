"""A node cut off from its clients hands its aggregates over (clusdisk.cutoff
driving clusdisk.public_links and Operations.hand_over), on two in-process
nodes of test_clusdisk_operations (real Operations and AggregateManager,
fake host, reservations and LIFs).  The link readings are given by the test
(the netlink reader is proven in the cluster tier, where each node is a
namespace); the clock is the test's."""

import logging

import pytest

from clusdisk.config import FailoverSettings
from clusdisk.cutoff import RETRY_S, CutOffMonitor
from clusdisk.metrics import ClusdiskMetrics
from clusdisk.public_links import Reading
from test_clusdisk_operations import AGGRS, Node, run, started


class Links:
    """The readings a node's port reader returns (the test flips them)."""

    def __init__(self):
        self.up = True

    async def read(self):
        return {"eth0": Reading(True) if self.up else Reading(False, "no carrier")}


class WatchedNode(Node):
    def __init__(self, node_id, settings=FailoverSettings()):
        super().__init__(node_id)
        self.now = 1000.0
        self.links = Links()
        self.metrics = ClusdiskMetrics()
        self.cutoff = CutOffMonitor(AGGRS, lambda: settings, self.ops, self.metrics,
                                    up_here=lambda: self.manager.current,
                                    partner_member=lambda: True, clock=lambda: self.now,
                                    reader=self.links)

    def base_status(self):
        return {**super().base_status(), "public_links": self.cutoff.report()}

    def port_up_gauge(self) -> float:
        return self.metrics.registry.get_sample_value("clusdisk_public_link_up",
                                                      {"port": "eth0"})


@pytest.fixture
def pair():
    return started(WatchedNode(1), WatchedNode(2))


def tick(node, seconds: float = 0.5, refresh: bool = True) -> None:
    """``seconds`` later: the partner's status refreshed, one monitor step."""
    node.now += seconds
    if refresh:
        run(node.ops.refresh())
    run(node.cutoff.step())


def test_cut_off_owner_hands_over_and_nothing_comes_back_by_itself(pair, caplog):
    a, b = pair
    caplog.set_level(logging.INFO, "clusdisk")
    run(b.cutoff.step())                          # b has read its ports: up
    tick(a)
    assert a.port_up_gauge() == 1
    a.links.up = False
    tick(a, 0.5)                                  # the first reading down
    tick(a, 2.5)                                  # down 2.5 s: not yet
    assert a.manager.current == {"aggr1"} and a.port_up_gauge() == 0
    tick(a, 0.5)                                  # 3 s: cut off, handed over
    assert a.manager.current == set() and b.manager.current == {"aggr1", "aggr2"}
    assert run(b.ops.status())["placement"] == {"aggr1": "b", "aggr2": "b"}
    assert "public port eth0 down for 3.0 s (no carrier): cut off" in caplog.text
    assert "aggr1 handed over to b" in caplog.text
    # a planned release that waits for no client: none can reach a
    assert ("smbcad", "release", "aggr1", "planned", "clients cut off") in a.journal
    assert a.metrics.registry.get_sample_value("clusdisk_public_link_handovers_total",
                                               {"outcome": "ok"}) == 1

    # b never gives it back by itself, even with auto-giveback on, and says why
    assert run(b.ops.auto_giveback(1e6, 1.0)) is None
    [entry] = [e for e in run(b.ops.status())["aggregates"] if e["name"] == "aggr1"]
    assert "handed over by a, whose public ports were down" in entry["why"]

    # the link returns: nothing moves
    a.links.up = True
    for _ in range(10):
        tick(a)
        run(b.cutoff.step())
    assert a.manager.current == set() and b.manager.current == {"aggr1", "aggr2"}
    assert "public port eth0 up" in caplog.text

    # the operator gives back; the pin goes with it; b's clients can reach b
    assert run(a.ops.control({"command": "giveback"}))["ok"]
    assert a.manager.current == {"aggr1"} and "aggr1" not in b.ops.pinned
    assert ("smbcad", "release", "aggr1", "planned") in b.journal


def test_a_replica_not_in_sync_refuses_and_is_tried_again_later(pair, caplog):
    a, b = pair
    run(b.cutoff.step())
    a.in_sync["aggr1"] = False
    a.links.up = False
    tick(a)
    tick(a, 3.0)
    assert a.manager.current == {"aggr1"}
    assert "handover of aggr1 refused" in caplog.text and "not in sync" in caplog.text
    a.in_sync["aggr1"] = True
    tick(a, RETRY_S / 2)
    assert a.manager.current == {"aggr1"}         # not before RETRY_S
    tick(a, RETRY_S / 2)
    assert a.manager.current == set() and "aggr1" in b.manager.current
    assert caplog.text.count("handover of aggr1 refused") == 1


def test_both_cut_off_nothing_moves(pair):
    a, b = pair
    for node in (a, b):
        node.links.up = False
    for _ in range(10):
        tick(b)
        tick(a)
    assert a.manager.current == {"aggr1"} and b.manager.current == {"aggr2"}
    waiting = run(a.ops.status())["public_links"]["waiting"]
    assert "the partner's public ports are not up either (eth0)" in waiting["aggr1"]


def test_a_partner_that_does_not_report_its_ports_is_unknown(pair):
    a, b = pair
    b.ops.base_status = lambda: Node.base_status(b)      # an older release's status
    a.links.up = False
    for _ in range(10):
        tick(a)
    assert a.manager.current == {"aggr1"}
    assert "does not report its public ports" in run(a.ops.status())["public_links"][
        "waiting"]["aggr1"]


def test_disabled_by_config():
    a, b = started(WatchedNode(1, FailoverSettings(public_link_handover=False)), WatchedNode(2))
    run(b.cutoff.step())
    a.links.up = False
    for _ in range(10):
        tick(a)
    assert a.manager.current == {"aggr1"}
    report = run(a.ops.status())["public_links"]
    assert report["handover"] is False and report["ports"]["eth0"]["state"] == "cut"


def test_the_destination_checks_its_own_ports_before_taking_it(pair):
    """The owner decided on the partner's status of up to a second ago: the
    partner's prepare looks at its ports again."""
    a, b = pair
    run(b.cutoff.step())
    a.links.up = False
    tick(a)
    tick(a, 2.0)                                  # a's last view of b: ports up
    b.links.up = False
    run(b.cutoff.step())                          # b's own ports just went down
    tick(a, 1.0, refresh=False)
    assert a.manager.current == {"aggr1"} and b.manager.current == {"aggr2"}
    assert "its public ports are not up (eth0)" in a.cutoff._last_failure
