"""Reservation verbs over SgDevice against the fake LUN (two nexuses)."""

import asyncio

from clusdisk.reservations import PrReservation, Scsi2Reservation, Verdict, probe_any
from clusdisk.scsi import cdb
from clusdisk.scsi.cdb import PrType
from clusdisk.scsi.sense import OutcomeKind
from fake_lun import FakeLun

KA, KB = 0xA1, 0xB1


def run(coro):
    return asyncio.run(coro)


def test_scsi2_reserve_renew_release_reset():
    lun = FakeLun()
    a, b = Scsi2Reservation(lun.device(0)), Scsi2Reservation(lun.device(1))
    assert run(a.reserve()).ok and run(a.renew()).ok
    assert run(b.reserve()).verdict is Verdict.CONFLICT
    assert run(b.release()).ok and lun.scsi2_holder == 0          # non-holder RELEASE: no-op
    assert run(b.reset()).ok and lun.scsi2_holder is None
    assert run(a.renew()).ok and lun.scsi2_holder == 0            # UA retried, re-reserved
    assert run(b.preempt()).verdict is Verdict.FAILED
    assert run(b.register()).ok


def test_scsi2_take_breaks_a_stale_reservation():
    lun = FakeLun()
    a, b = Scsi2Reservation(lun.device(0)), Scsi2Reservation(lun.device(1))
    run(a.reserve())
    assert run(b.take()).ok and lun.scsi2_holder == 1
    assert (1, "reset 1") in lun.journal


def test_scsi2_reset_refused():
    lun = FakeLun()
    from clusdisk.scsi.sgio import ResetKind
    b = Scsi2Reservation(lun.device(1), reset_kind=ResetKind.BUS)
    answer = run(b.reset())
    assert answer.verdict is Verdict.FAILED and "BUS" in answer.detail


def test_scsi2_probe():
    lun = FakeLun()
    a, b = Scsi2Reservation(lun.device(0)), Scsi2Reservation(lun.device(1))
    assert "not reserved" in run(b.probe()).summary
    run(a.reserve())
    assert run(b.probe()).summary == "reserved by another initiator (SPC-2)"
    assert run(probe_any(lun.device(1))).summary == "reserved by another initiator (SPC-2)"


def test_pr_register_reserve_renew():
    lun = FakeLun()
    a = PrReservation(lun.device(0), KA, KB)
    b = PrReservation(lun.device(1), KB, KA)
    assert run(a.register()).ok and run(b.register()).ok
    assert lun.registrations == {0: KA, 1: KB}
    assert run(a.reserve()).ok and (lun.pr_holder, lun.pr_type) == (0, 5)
    assert run(a.reserve()).ok                                     # holder, same type: GOOD
    assert run(a.renew()).ok
    assert run(b.reserve()).verdict is Verdict.CONFLICT
    answer = run(b.renew())
    assert answer.verdict is Verdict.CONFLICT and f"{KA:016x}" in answer.detail


def test_pr_preempt_fences_the_partner():
    lun = FakeLun()
    a = PrReservation(lun.device(0), KA, KB)
    b = PrReservation(lun.device(1), KB, KA)
    run(a.register()), run(b.register()), run(a.reserve())
    assert run(b.preempt()).ok
    assert lun.pr_holder == 1 and lun.registrations == {1: KB}
    # A: UNIT ATTENTION 2A/05, then its writes conflict and its verify fails
    write = run(lun.device(0).execute(cdb.write_16(0, bytes(512), 512)))
    assert write.outcome.kind is OutcomeKind.RESERVATION_CONFLICT and write.attempts == 2
    assert run(a.renew()).verdict is Verdict.CONFLICT
    # A preempting back fails: its key is gone
    answer = run(a.preempt())
    assert answer.verdict is Verdict.CONFLICT and "no longer registered" in answer.detail


def test_pr_preempt_of_an_absent_key_is_ok():
    lun = FakeLun()
    b = PrReservation(lun.device(1), KB, KA)
    run(b.register())
    assert run(b.preempt()).ok                    # conflict, then READ KEYS: A not registered


def test_pr_preempt_and_abort_is_configurable():
    lun = FakeLun()
    a = PrReservation(lun.device(0), KA, KB)
    b = PrReservation(lun.device(1), KB, KA, preempt_abort=True)
    run(a.register()), run(b.register()), run(a.reserve())
    assert run(b.preempt()).ok and (1, "5f/05") in lun.journal
    lun.hang_preempt_and_abort = True
    answer = run(a.preempt())
    assert answer.verdict is Verdict.CONFLICT     # A's key was preempted before


def test_pr_release_unregisters():
    lun = FakeLun()
    a = PrReservation(lun.device(0), KA, KB)
    b = PrReservation(lun.device(1), KB, KA)
    run(a.register()), run(b.register()), run(a.reserve())
    assert run(a.release()).ok
    assert lun.pr_holder is None and lun.registrations == {1: KB}
    assert list(lun.pending_ua[1]) == [(0x2A, 0x04)]               # RESERVATIONS RELEASED
    assert run(b.reserve()).ok


def test_pr_take_data_disk():
    lun = FakeLun()
    a = PrReservation(lun.device(0), KA, KB, pr_type=PrType.WRITE_EXCLUSIVE)
    b = PrReservation(lun.device(1), KB, KA, pr_type=PrType.WRITE_EXCLUSIVE)
    assert run(a.take()).ok and lun.pr_holder == 0 and lun.pr_type == 1
    assert run(a.take()).ok                                        # idempotent
    # the non-owner, even registered, cannot write under WRITE EXCLUSIVE
    run(b.register())
    write = run(lun.device(1).execute(cdb.write_16(0, bytes(512), 512)))
    assert write.outcome.kind is OutcomeKind.RESERVATION_CONFLICT
    assert run(lun.device(1).execute(cdb.read_16(0, 1, 512))).outcome.ok
    assert run(b.take()).ok and lun.pr_holder == 1 and lun.registrations == {1: KB}


def test_pr_probe():
    lun = FakeLun()
    a = PrReservation(lun.device(0), KA, KB)
    run(a.register())
    state = run(probe_any(lun.device(1)))
    assert state.summary == "no persistent reservation" and state.registered_keys == (KA,)
    run(a.reserve())
    state = run(probe_any(lun.device(1)))
    assert state.summary == f"WRITE_EXCLUSIVE_REGISTRANTS_ONLY held by key 0x{KA:016x}"
    assert state.holder_key == KA


def test_scsi2_reserve_conflicts_with_pr_registrations():
    lun = FakeLun()
    run(PrReservation(lun.device(0), KA).register())
    assert run(Scsi2Reservation(lun.device(1)).reserve()).verdict is Verdict.CONFLICT


def test_take_without_breaking():
    lun = FakeLun()
    run(Scsi2Reservation(lun.device(0)).reserve())
    assert run(Scsi2Reservation(lun.device(1)).take(break_foreign=False)).verdict is Verdict.CONFLICT
    assert lun.scsi2_holder == 0 and not [j for j in lun.journal if j[1].startswith("reset")]
    lun2 = FakeLun()
    a = PrReservation(lun2.device(0), KA, KB, pr_type=PrType.WRITE_EXCLUSIVE)
    b = PrReservation(lun2.device(1), KB, KA, pr_type=PrType.WRITE_EXCLUSIVE)
    run(a.take())
    answer = run(b.take(break_foreign=False))
    assert answer.verdict is Verdict.CONFLICT and lun2.pr_holder == 0
