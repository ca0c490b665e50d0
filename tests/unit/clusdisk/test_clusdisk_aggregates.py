"""AggregateManager: the plan executed against fakes, including rollback,
a stuck unmount and a lost data reservation; data reservations over the
fake LUN."""

import asyncio

from clusdisk.aggregates import AggregateManager
from clusdisk.disks import DiskError
from clusdisk.reservations import Answer, PrReservation, Scsi2Reservation, Verdict
from clusdisk.resources import Aggregate, Lif, View
from clusdisk.scsi.cdb import PrType
from fake_lun import FakeLun

L1 = Lif("lif1", "192.0.2.10/24", "eth0")
A1 = Aggregate("aggr1", 1, "naa.01", "xfs", "/srv/aggr1", lifs=(L1,))
A2 = Aggregate("aggr2", 2, "naa.02", "ext4", "/srv/aggr2")


Journal = list


class FakeHost:
    def __init__(self, journal, fail=None):
        self.journal, self.fail = journal, fail or {}

    def _do(self, what, aggregate, block):
        self.journal.append((what, aggregate.name, block))
        if self.fail.get(what) == aggregate.name:
            raise DiskError(aggregate.name, "mount", f"{what} failed")

    def set_writable(self, a, b): self._do("writable", a, b)
    def set_read_only(self, a, b): self._do("readonly", a, b)
    def check_filesystem(self, a, b): self._do("fsck", a, b)
    def mount(self, a, b): self._do("mount", a, b)
    def unmount(self, a, b): self._do("unmount", a, b)


class FakeNotifier:
    def __init__(self, journal):
        self.journal = journal

    async def smbcad(self, event, aggregate, planned=False, clients_cut_off=False):
        self.journal.append(("smbcad", event, aggregate.name) + (("planned",) if planned else ())
                            + (("clients cut off",) if clients_cut_off else ()))
        return {"ok": True, "tickles": self.tickles} if event == "adopt" else {"ok": True}

    tickles: list = []

    async def partner_tickles(self, aggregate):
        self.journal.append(("smbcad tickles", aggregate.name))
        return self.tickles

    async def witness(self, event, aggregate):
        self.journal.append(("witness", event, aggregate.name))


class FakeLifs:
    def __init__(self, journal):
        self.journal = journal

    async def up(self, lif, tickles=()):
        self.journal.append(("lif up", lif.name) + ((tickles,) if tickles else ()))

    async def down(self, lif):
        self.journal.append(("lif down", lif.name))

    async def close(self):
        self.closed = True


class FakeReservation:
    def __init__(self, journal, name, verdicts=None):
        self.journal, self.name = journal, name
        self.verdicts = verdicts or {}

    async def _verb(self, verb, *args):
        self.journal.append((verb, self.name) + args)
        return Answer(self.verdicts.get(verb, Verdict.OK), f"{verb} said no")

    async def take(self, break_foreign=True):
        return await self._verb("take", break_foreign)

    async def release(self):
        return await self._verb("release")

    async def renew(self):
        return await self._verb("renew")


async def inline(func, *args):
    return func(*args)


def manager(journal, host_fail=None, verdicts=None, node_id=1):
    reservations = {a.name: FakeReservation(journal, a.name, (verdicts or {}).get(a.name))
                    for a in (A1, A2)}
    return AggregateManager((A1, A2), node_id, {"aggr1": "/dev/sdb", "aggr2": "/dev/sdc"},
                            reservations, FakeHost(journal, host_fail), FakeNotifier(journal),
                            FakeLifs(journal), run_blocking=inline)


def run(coro):
    return asyncio.run(coro)


def test_bring_up_and_tear_down_in_order():
    journal = Journal()
    m = manager(journal)
    run(m.apply(View(1, True, False)))
    assert journal == [("take", "aggr1", False), ("writable", "aggr1", "/dev/sdb"),
                       ("fsck", "aggr1", "/dev/sdb"), ("mount", "aggr1", "/dev/sdb"),
                       ("smbcad", "adopt", "aggr1"), ("lif up", "lif1"),
                       ("witness", "online", "aggr1")]
    assert m.current == {"aggr1"}
    journal.clear()
    run(m.apply(View(1, False, False)))
    assert journal == [("witness", "offline", "aggr1"), ("smbcad", "release", "aggr1"),
                       ("lif down", "lif1"), ("unmount", "aggr1", "/dev/sdb"),
                       ("readonly", "aggr1", "/dev/sdb"), ("release", "aggr1")]
    assert m.current == set()


def test_takeover_breaks_the_partner_reservation():
    journal = Journal()
    m = manager(journal)
    run(m.apply(View(1, True, True)))
    assert ("take", "aggr2", True) in journal and m.current == {"aggr1", "aggr2"}


def test_failed_bring_up_is_undone_and_retried():
    journal = Journal()
    m = manager(journal, host_fail={"mount": "aggr1"})
    run(m.apply(View(1, True, False)))
    assert m.current == set() and "mount failed" in m.errors["aggr1"]
    tail = [j[0] for j in journal[journal.index(("mount", "aggr1", "/dev/sdb")) + 1:]]
    assert tail == ["readonly", "release"]                    # undo of writable, take
    m.host.fail = {}
    run(m.apply(View(1, True, False)))
    assert m.current == {"aggr1"} and "aggr1" not in m.errors
    assert [s.up for s in m.status()] == [True, False]


def test_reservation_conflict_fails_the_bring_up_without_touching_the_disk():
    journal = Journal()
    m = manager(journal, verdicts={"aggr1": {"take": Verdict.CONFLICT}})
    run(m.apply(View(1, True, False)))
    assert journal == [("take", "aggr1", False)] and m.current == set()
    assert "take said no" in m.errors["aggr1"]


def test_stuck_unmount_keeps_the_reservation():
    journal = Journal()
    m = manager(journal, host_fail={"unmount": "aggr1"})
    run(m.apply(View(1, True, False)))
    journal.clear()
    run(m.apply(View(1, False, False)))
    assert [j[0] for j in journal] == ["witness", "smbcad", "lif down", "unmount"]
    assert m.current == {"aggr1"} and m.stuck == {"aggr1"}


def test_lost_data_reservation_takes_the_aggregate_down():
    journal = Journal()
    m = manager(journal)
    run(m.apply(View(1, True, False)))
    m.reservations["aggr1"].verdicts = {"renew": Verdict.CONFLICT}
    journal.clear()
    assert run(m.renew()) == ["aggr1"]
    assert [j[0] for j in journal][:2] == ["renew", "witness"] and m.current == set()
    assert m.errors["aggr1"] == "data reservation lost"


def test_non_owner_write_conflicts_on_the_real_reservation_model():
    """Data disk through the fake LUN: after the owner's bring-up, the other
    node's WRITE(16) gets RESERVATION CONFLICT (issue 5, item 6)."""
    from clusdisk.scsi import cdb
    from clusdisk.scsi.sense import OutcomeKind
    for mode in ("scsi2", "pr"):
        lun = FakeLun(serial="lab-lun1-data")
        if mode == "pr":
            mine = PrReservation(lun.device(0), 0xA1, 0xB1, pr_type=PrType.WRITE_EXCLUSIVE)
        else:
            mine = Scsi2Reservation(lun.device(0))
        journal = Journal()
        m = AggregateManager((A1,), 1, {"aggr1": "/dev/sdb"}, {"aggr1": mine},
                             FakeHost(journal), FakeNotifier(journal), FakeLifs(journal),
                             run_blocking=inline)
        run(m.apply(View(1, True, False)))
        write = run(lun.device(1).execute(cdb.write_16(0, bytes(512), 512)))
        assert write.outcome.kind is OutcomeKind.RESERVATION_CONFLICT, mode
        assert run(lun.device(0).execute(cdb.write_16(0, bytes(512), 512))).outcome.ok
        run(m.apply(View(1, False, False)))
        assert run(lun.device(1).execute(cdb.write_16(0, bytes(512), 512))).outcome.ok, mode


def test_takeover_tells_the_witness_first_and_tickles_after_adopt():
    """cluster.md 7(b): UNAVAILABLE first (step 3), LIF up with the adopt
    reply's tickles for that LIF's address (step 7); the step records."""
    journal = Journal()
    m = manager(journal)
    m.notifier.tickles = [["192.0.2.99", 50000, "192.0.2.10", 445],
                          ["192.0.2.98", 50001, "192.0.2.77", 445], ["junk"]]
    records = []
    assert run(m.bring_up("aggr1", records, break_foreign=True))
    assert journal[0] == ("witness", "offline", "aggr1")
    assert journal[1] == ("take", "aggr1", True)
    assert ("lif up", "lif1", (("192.0.2.99", 50000, "192.0.2.10", 445),)) in journal
    assert [r.step for r in records] == [
        "witness UNAVAILABLE", "reserve data LUN (break foreign)", "block device writable",
        "fsck", "mount", "smbcad adopt", "LIF lif1 up", "witness AVAILABLE"]
    assert all(r.ok for r in records)
    journal.clear()
    records.clear()
    assert run(m.tear_down("aggr1", records))
    assert ("smbcad", "release", "aggr1", "planned") in journal
    assert [r.step for r in records][1] == "smbcad release --planned"
