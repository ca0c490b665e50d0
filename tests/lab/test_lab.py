"""The lab itself, booted: the smoke checks (guest/smoke.sh: LUN identity
through both initiators, SCSI-2 RESERVE/RELEASE, persistent reservations)
and the in-guest pytest path (guest_tests/test_guest_harness.py)."""

import pytest

import labvm

pytestmark = pytest.mark.lab

SMOKE = labvm.REPO_ROOT / "tests" / "lab" / "guest" / "smoke.sh"


def test_smoke_shared_luns_and_reservations(lab_host, record_property):
    result = labvm.run(["/bin/bash", str(SMOKE)], labvm.LabOptions(timeout_s=600, cwd="/"),
                       host=lab_host)
    record_property("lab_boot_s", round(result.boot_s, 1))
    record_property("lab_command_s", round(result.command_s, 1))
    print(result.describe())
    assert result.status == 0, result.describe()
    assert "not ok" not in result.text
    assert "0 failed" in result.text.splitlines()[-1]


def test_pytest_runs_in_the_guest(run_in_guest):
    result = run_in_guest(["tests/lab/guest_tests/test_guest_harness.py"], timeout=900)
    assert result.status == 0, result.describe()
    assert " passed" in result.text


def test_timeout_kills_the_guest(lab_host):
    result = labvm.run(["sleep", "600"], labvm.LabOptions(luns=0, timeout_s=3), host=lab_host)
    assert result.status == labvm.TIMEOUT_STATUS
    assert result.total_s < 30
    assert "timeout" in result.failure


def test_a_guest_kernel_lockup_ends_the_run_with_its_backtraces(lab_host):
    """guest/init.sh's lockup watch, fed the line the kernel's watchdog
    prints (through /dev/kmsg: nothing here can lock a CPU up for real)."""
    report = "<0>watchdog: BUG: soft lockup - CPU#0 stuck for 130s! [lab-test:1]"
    result = labvm.run(["/bin/sh", "-c", f"echo '{report}' > /dev/kmsg; sleep 600"],
                       labvm.LabOptions(luns=0, timeout_s=300, cwd="/"), host=lab_host)
    assert result.status == labvm.LOCKUP_STATUS, result.describe()
    assert result.total_s < 120, result.describe()
    assert "soft lockup" in result.failure
    assert "lab-guest: the guest kernel reports a soft lockup" in result.text
    assert "lab-guest: a CPU has been stuck in the kernel for 130 s" in result.text
    # the dmesg excerpt, sysrq-l's backtraces after the reported line among it
    assert "lab-guest: " in result.text.split("CPU backtraces follow", 1)[1]


def test_a_run_the_guest_kernel_locked_up_is_run_once_more_and_reported(run_in_guest):
    code = ("open('/dev/kmsg', 'w').write('<0>watchdog: BUG: soft lockup - CPU#1 stuck for "
            "125s! [lab-test:1]\\n'); import time; time.sleep(600)")
    with pytest.warns(labvm.LabGuestLockup, match="running it once more") as caught:
        result = run_in_guest(code, timeout=300, luns=0)
    lockups = [str(w.message) for w in caught if issubclass(w.category, labvm.LabGuestLockup)]
    assert len(lockups) == 1, lockups           # once more, not again and again
    assert "stuck in the kernel for 125 s" in lockups[0]
    assert result.status == labvm.LOCKUP_STATUS       # the second run locked up as well
