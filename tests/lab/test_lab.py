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
