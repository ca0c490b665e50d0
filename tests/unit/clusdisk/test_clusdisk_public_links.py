"""The public ports' hysteresis and the cut-off handover decision
(clusdisk.public_links), the link readings (clusdisk.linkwatch), the
config keys, and ``smbca failover show``'s lines for them."""

import asyncio

import pytest

from clusdisk.linkwatch import IFF_LOWER_UP, IFF_UP, LinkReader, reading_of
from clusdisk.public_links import (
    CUT, DOWN, UP, PortChange, PortWatch, Reading, decide, partner_ports)
from clusdisk.resources import Aggregate, Lif
from smbca.admin_failover import show_status

DOWN_S = 3.0
AGGR1 = Aggregate("aggr1", 1, "naa.1", "xfs", "/srv/aggr1",
                  lifs=(Lif("lif1", "192.0.2.10/24", "pub0"),))
AGGR2 = Aggregate("aggr2", 2, "naa.2", "xfs", "/srv/aggr2",
                  lifs=(Lif("lif2", "192.0.2.20/24", "pub0"), Lif("lif3", "198.51.100.20/24",
                                                                     "pub1")))
NO_LIF = Aggregate("aggr3", 1, "naa.3", "xfs", "/srv/aggr3")
UP_READING, ADMIN_DOWN = Reading(True), Reading(False, "admin down")


def watch_at(ports=("pub0", "pub1"), **readings) -> PortWatch:
    """A watch whose ports ``readings`` name have been down for DOWN_S."""
    watch = PortWatch(ports, DOWN_S)
    state = {port: readings.get(port, UP_READING) for port in ports}
    watch.update(state, 100.0)
    watch.update(state, 100.0 + DOWN_S)
    return watch


def partner(**ports) -> dict:
    return {"member": True, "public_links": {"ports": {
        port: {"state": UP if up else CUT, "up": up} for port, up in ports.items()}}}


# -- hysteresis ------------------------------------------------------------------------


def test_a_port_is_cut_only_after_staying_down_for_the_down_time():
    watch = PortWatch(["pub0"], DOWN_S)
    assert watch.update({"pub0": UP_READING}, 10.0) == []
    assert watch.update({"pub0": ADMIN_DOWN}, 11.0) == [
        PortChange("pub0", UP, DOWN, "admin down", 0.0)]
    assert watch.update({"pub0": ADMIN_DOWN}, 13.9) == []
    assert watch.state("pub0") == DOWN
    assert watch.update({"pub0": Reading(False, "no carrier")}, 14.0) == [
        PortChange("pub0", DOWN, CUT, "no carrier", 3.0)]
    assert watch.update({"pub0": UP_READING}, 15.0) == [PortChange("pub0", CUT, UP, "", 0.0)]


def test_a_flapping_port_starts_its_down_time_again():
    watch = PortWatch(["pub0"], DOWN_S)
    for now, reading in ((0.0, ADMIN_DOWN), (2.5, UP_READING), (3.0, ADMIN_DOWN),
                         (5.5, ADMIN_DOWN)):
        watch.update({"pub0": reading}, now)
        assert watch.state("pub0") != CUT, now
    watch.update({"pub0": ADMIN_DOWN}, 6.0)
    assert watch.state("pub0") == CUT


def test_a_port_missing_from_the_readings_is_down():
    watch = PortWatch(["pub0"], DOWN_S)
    watch.update({}, 0.0)
    report = watch.report(1.5)
    assert report["ports"]["pub0"] == {"state": DOWN, "up": False, "detail": "missing",
                                       "down_for_s": 1.5}
    assert report["down_ms"] == 3000


def test_nothing_is_reported_before_the_first_reading():
    watch = PortWatch(["pub0"], DOWN_S)
    assert watch.report(0.0)["ports"] == {}
    assert decide([AGGR1], watch, partner(pub0=True), partner_member=True)[0].action == "stay"


def test_a_down_time_must_be_positive():
    with pytest.raises(ValueError):
        PortWatch(["pub0"], 0)


# -- the decision --------------------------------------------------------------------


def test_every_port_cut_here_and_up_on_the_partner_hands_over():
    [verdict] = decide([AGGR1], watch_at(pub0=ADMIN_DOWN), partner(pub0=True, pub1=True),
                       partner_member=True)
    assert verdict.action == "hand over" and verdict.aggregate == "aggr1"
    assert "pub0" in verdict.reason


def test_one_port_still_up_here_keeps_the_aggregate():
    verdicts = decide([AGGR2], watch_at(pub0=ADMIN_DOWN), partner(pub0=True, pub1=True),
                      partner_member=True)
    assert [v.action for v in verdicts] == ["stay"]
    verdicts = decide([AGGR2], watch_at(pub0=ADMIN_DOWN, pub1=ADMIN_DOWN),
                      partner(pub0=True, pub1=True), partner_member=True)
    assert [v.action for v in verdicts] == ["hand over"]


def test_a_port_down_but_not_yet_cut_keeps_the_aggregate():
    watch = PortWatch(["pub0"], DOWN_S)
    watch.update({"pub0": ADMIN_DOWN}, 0.0)
    watch.update({"pub0": ADMIN_DOWN}, DOWN_S - 0.1)
    assert decide([AGGR1], watch, partner(pub0=True), partner_member=True)[0].action == "stay"


@pytest.mark.parametrize("partner_status, member, busy, why", [
    (None, True, "", "does not report its public ports"),
    ({"member": True, "state": "standby"}, True, "", "does not report its public ports"),
    ({"member": True, "public_links": {"ports": "garbage"}}, True, "", "does not report"),
    (partner(pub0=False), True, "", "not up either (pub0)"),
    (partner(pub1=True), True, "", "not up either (pub0)"),
    (partner(pub0=True), False, "", "not a cluster member"),
    (partner(pub0=True), True, "relocate aggr2 to a", "operation relocate aggr2 to a"),
])
def test_cut_off_but_nothing_moves_unless_the_partner_is_known_to_do_better(
        partner_status, member, busy, why):
    [verdict] = decide([AGGR1], watch_at(pub0=ADMIN_DOWN), partner_status,
                       partner_member=member, busy=busy)
    assert verdict.action == "wait" and why in verdict.reason, verdict


def test_an_aggregate_without_lifs_never_moves():
    watch = watch_at(pub0=ADMIN_DOWN, pub1=ADMIN_DOWN)
    verdicts = decide([NO_LIF, AGGR1], watch, partner(pub0=True, pub1=True), partner_member=True)
    assert [(v.aggregate, v.action) for v in verdicts] == [("aggr3", "stay"),
                                                           ("aggr1", "hand over")]


def test_partner_ports_reads_only_a_true_up():
    assert partner_ports({"public_links": {"ports": {"pub0": {"up": True},
                                                     "pub1": {"up": "yes"}, "pub2": 1}}}) == {
        "pub0": True, "pub1": False, "pub2": False}
    assert partner_ports("not a status") is None


# -- the link readings ---------------------------------------------------------------


def test_a_port_is_up_with_admin_up_and_carrier():
    assert reading_of(IFF_UP | IFF_LOWER_UP) == Reading(True)
    assert reading_of(IFF_UP) == Reading(False, "no carrier")
    assert reading_of(IFF_LOWER_UP) == Reading(False, "admin down")


def test_the_reader_asks_netlink_for_the_ports():
    """The real netlink dump of this namespace: lo is up, a name that is
    no interface is missing."""
    readings = asyncio.run(LinkReader(["lo", "no-such-port0"]).read())
    assert readings == {"lo": Reading(True), "no-such-port0": Reading(False, "missing")}


# -- smbca failover show ---------------------------------------------------------------


def test_failover_show_prints_both_nodes_public_ports():
    mine = {"ports": {"pub0": {"state": CUT, "up": False, "detail": "admin down",
                               "down_for_s": 4.25}},
            "handover": True, "waiting": {"aggr1": "every public port ... but reasons"}}
    status = {"node": {"id": 1, "name": "a"}, "public_links": mine,
              "partner": {"id": 2, "name": "b", "alive": True,
                          "status": {"state": "standby", "member": True}}}
    lines = show_status(status)
    assert "public ports on a: pub0 cut (admin down, 4.2 s)" in lines
    assert "  aggr1: every public port ... but reasons" in lines
    assert "public ports on b: unknown (not reported: an older release)" in lines
    status["partner"]["status"]["public_links"] = {"ports": {"pub0": {"state": UP, "up": True}},
                                                   "handover": False}
    assert "public ports on b: pub0 up; handover when cut off: disabled" in show_status(status)
