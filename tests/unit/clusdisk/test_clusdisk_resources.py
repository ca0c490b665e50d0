"""The resource planner: exact step order for bring-up and tear-down."""

from clusdisk import resources as r
from clusdisk.resources import Aggregate, Lif, View

L1 = Lif("lif1", "192.0.2.10/24", "eth0")
L2 = Lif("lif2", "2001:db8::10/64", "eth0")
A1 = Aggregate("aggr1", 1, "naa.01", "xfs", "/srv/aggr1", lifs=(L1, L2))
A2 = Aggregate("aggr2", 2, "naa.02", "ext4", "/srv/aggr2", lifs=(Lif("lif3", "192.0.2.11/24", "eth1"),))
A3 = Aggregate("aggr3", 1, "naa.03", "xfs", "/srv/aggr3")
ALL = (A1, A2, A3)


def test_bring_up_order():
    assert r.bring_up(A1) == (
        r.ReserveDisk("aggr1", False), r.SetWritable("aggr1"), r.CheckFilesystem("aggr1"),
        r.Mount("aggr1"), r.NotifySmbcad("aggr1", "adopt"), r.LifUp("aggr1", L1),
        r.LifUp("aggr1", L2),
        r.NotifyWitness("aggr1", "online", ("192.0.2.10/24", "2001:db8::10/64")))


def test_tear_down_releases_smbcad_before_the_lifs_go():
    assert r.tear_down(A1) == (
        r.NotifyWitness("aggr1", "offline", ("192.0.2.10/24", "2001:db8::10/64")),
        r.NotifySmbcad("aggr1", "release"), r.LifDown("aggr1", L2), r.LifDown("aggr1", L1),
        r.Unmount("aggr1"), r.SetReadOnly("aggr1"), r.ReleaseDisk("aggr1"))


def test_undo_reverses_a_partial_bring_up():
    done = r.bring_up(A1)[:5]                     # up to smbcad adopt
    assert r.undo(done) == (r.NotifySmbcad("aggr1", "release"), r.Unmount("aggr1"),
                            r.SetReadOnly("aggr1"), r.ReleaseDisk("aggr1"))
    assert r.undo(()) == ()
    full = r.bring_up(A1)
    assert r.undo(full) == r.tear_down(A1)


def test_desired():
    assert r.desired(ALL, View(1, member=False, taken_over=False)) == frozenset()
    assert r.desired(ALL, View(1, True, False)) == {"aggr1", "aggr3"}
    assert r.desired(ALL, View(1, True, True)) == {"aggr1", "aggr2", "aggr3"}
    assert r.desired(ALL, View(2, True, False)) == {"aggr2"}
    # the placement decides once there is one (aggr1 relocated to node 2)
    assert r.desired(ALL, View(1, True, False, owned=frozenset({"aggr3"}))) == {"aggr3"}
    assert r.desired(ALL, View(2, True, False, owned=frozenset({"aggr1", "aggr2"}))) == \
        {"aggr1", "aggr2"}
    assert r.desired(ALL, View(2, False, False, owned=frozenset({"aggr1"}))) == frozenset()
    assert r.desired(ALL, View(2, True, True, owned=frozenset())) == {"aggr1", "aggr2", "aggr3"}


def test_describe_and_planned_release():
    names = [r.describe(s) for s in r.tear_down(A1, planned=True)]
    assert names == ["witness UNAVAILABLE", "smbcad release --planned", "LIF lif2 down",
                     "LIF lif1 down", "unmount", "block device read-only", "release data LUN"]
    assert r.undo(r.bring_up(A2, break_foreign=True)[:2]) == (r.ReleaseDisk("aggr2"),)


def test_plan_takeover_breaks_only_when_taken_over():
    plan = r.plan(ALL, View(1, True, True), frozenset({"aggr1", "aggr3"}))
    assert plan.tear_down == ()
    [(aggregate, steps)] = plan.bring_up
    assert aggregate is A2 and steps[:2] == (r.NotifyWitness("aggr2", "offline", ("192.0.2.11/24",)),
                                             r.ReserveDisk("aggr2", True))
    plan = r.plan(ALL, View(1, True, False), frozenset())
    assert [a.name for a, _ in plan.bring_up] == ["aggr1", "aggr3"]
    assert all(steps[0].break_foreign is False for _, steps in plan.bring_up)


def test_plan_giveback_and_offline():
    plan = r.plan(ALL, View(1, True, False), frozenset({"aggr1", "aggr2", "aggr3"}))
    assert [a.name for a, _ in plan.tear_down] == ["aggr2"] and plan.bring_up == ()
    plan = r.plan(ALL, View(1, False, False), frozenset({"aggr1", "aggr2", "aggr3"}))
    assert [a.name for a, _ in plan.tear_down] == ["aggr3", "aggr2", "aggr1"]
    assert plan.steps()[0] == r.NotifyWitness("aggr3", "offline", ())
    assert r.plan(ALL, View(1, True, False), frozenset({"aggr1", "aggr3"})).empty


def test_a_clean_shutdown_releases_smbcad_planned():
    """Found in the lab: a clean shutdown (and so a rolling restart) told
    smbcad an unplanned release, so in-flight requests were cut."""
    view = View(1, False, False)

    def releases(planned):
        steps = r.plan((A1,), view, frozenset({"aggr1"}), **planned).tear_down[0][1]
        return [s.planned for s in steps if isinstance(s, r.NotifySmbcad)]
    assert releases({"planned": True}) == [True]
    assert releases({}) == [False]
