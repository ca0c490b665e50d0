"""The clusdisk lab tier (issue 5, "How it is shown"): two clusdisk daemons,
one per initiator, on the lab's shared quorum and data LUNs, heartbeating
between two network namespaces, in SCSI-2 and in PR mode.  One guest boot
per mode runs the whole scenario (guest_tests/test_clusdisk_lab.py); its
``clusdisk-lab[MODE]:`` result lines, the measured failover times among
them, are shown even when the test passes.
"""

import pytest

pytestmark = pytest.mark.lab

GUEST_TEST = "tests/lab/guest_tests/test_clusdisk_lab.py::test_two_nodes"


@pytest.mark.parametrize("mode, timeout_s", [pytest.param("scsi2", 300, id="scsi2"),
                                             pytest.param("pr", 240, id="pr")])
def test_clusdisk_failover_on_shared_luns(mode, timeout_s, run_in_guest, capsys,
                                          record_property):
    result = run_in_guest([f"{GUEST_TEST}[{mode}]", "-s", f"--timeout={timeout_s - 60}"],
                          timeout=timeout_s)
    lines = [line for line in result.text.splitlines() if line.startswith("clusdisk-lab[")]
    with capsys.disabled():
        print(f"\nclusdisk-lab[{mode}]: guest boot {result.boot_s:.1f} s, command "
              f"{result.command_s:.1f} s, total {result.total_s:.1f} s")
        for line in lines:
            print(line)
    record_property("clusdisk_lab_results", "\n".join(lines))
    assert result.status == 0, result.describe()
    assert " passed" in result.text
