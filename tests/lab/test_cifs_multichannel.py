"""The kernel SMB client with several channels (issue 13, "How it is shown",
second bullet): the guest's Linux cifs client mounts a share from smbcad with
``multichannel,max_channels=4`` across the pair's two links, writes while one
link is cut and restored, and finishes with correct data; DebugData shows
several channels (guest_tests/test_cifs_multichannel.py).  Its
``cifs-multichannel:`` result lines are shown even when the test passes.
"""

import pytest

pytestmark = pytest.mark.lab

GUEST_TEST = "tests/lab/guest_tests/test_cifs_multichannel.py"
TIMEOUT_S = 600     # boot, pytest and smbcad start-up under TCG, the paced 24 MiB writer


def test_cifs_multichannel_through_a_cut_link(run_in_guest, capsys, record_property):
    result = run_in_guest([GUEST_TEST, "-s", f"--timeout={TIMEOUT_S - 60}"], timeout=TIMEOUT_S)
    lines = [line for line in result.text.splitlines() if line.startswith("cifs-multichannel:")]
    with capsys.disabled():
        print(f"\ncifs-multichannel: guest boot {result.boot_s:.1f} s, command "
              f"{result.command_s:.1f} s, total {result.total_s:.1f} s")
        for line in lines:
            print(line)
    record_property("cifs_multichannel_results", "\n".join(lines))
    assert result.status == 0, result.describe()
    assert " passed" in result.text
