"""The LUN lab tier: tests that boot a QEMU guest with shared SCSI LUNs.

``@pytest.mark.lab`` marks them.  Without QEMU, a kernel image in /boot or
the other host tools (``labvm.find_host`` lists them) they skip with the
reason, except under ``CI=true``, where that is a failure: CI installs
everything through scripts/test.sh, so a skip would hide a broken install.

``guest_tests/`` holds the tests that run *inside* the guest; the host's
pytest does not collect them (the guest sets LAB_GUEST=1).  Host tests start
them with the ``run_in_guest`` fixture (``labvm.run_in_guest``).
"""

import os
import warnings

import pytest

collect_ignore = [] if os.environ.get("LAB_GUEST") == "1" else ["guest_tests"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab: boots the QEMU LUN lab guest (tests/lab/README.md); "
                   "skips without qemu/kernel, fails under CI=true")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def lab_host():
    """The host's kernel/QEMU/busybox for the lab, with its image cache
    built (timed: the first build of a fresh machine shows in the report)."""
    import labvm

    try:
        host = labvm.find_host()
    except labvm.LabUnavailable as exc:
        reason = "lab unavailable: " + "; ".join(exc.problems)
        if _in_ci():
            pytest.fail(f"{reason} (CI=true: scripts/test.sh must install the lab's packages)",
                        pytrace=False)
        pytest.skip(reason)
    image = labvm.ensure_image(host)
    if image.built_s is not None:
        print(f"lab: image built in {image.built_s:.1f} s ({image.initrd})")
    return host


@pytest.fixture(autouse=True)
def _lab_gate(request):
    if request.node.get_closest_marker("lab") is not None:
        request.getfixturevalue("lab_host")


@pytest.fixture
def run_in_guest(lab_host, record_property):
    """``labvm.run_in_guest`` (same arguments), recording the run's timings
    as test properties (JUnit XML) and printing them (shown on failure).

    A run the guest kernel ended with a soft lockup (``LOCKUP_STATUS``: a CPU
    stuck in Debian's kernel under TCG, not a result of the command) is run
    once more in a fresh guest; the lockup and its backtraces stay visible
    as a warning in the summary whatever the second run does."""
    import labvm

    def run(code_or_args, timeout, **kwargs):
        result = labvm.run_in_guest(code_or_args, timeout, **kwargs)
        if result.status == labvm.LOCKUP_STATUS:
            backtrace = "\n".join(line for line in result.text.splitlines()
                                  if line.startswith("lab-guest: "))
            warnings.warn(f"lab: the guest kernel locked up after {result.command_s:.0f} s "
                          f"of the command; running it once more in a fresh guest\n{backtrace}",
                          labvm.LabGuestLockup, stacklevel=2)
            record_property("lab_lockup", backtrace)
            result = labvm.run_in_guest(code_or_args, timeout, **kwargs)
        record_property("lab_boot_s", round(result.boot_s, 1))
        record_property("lab_command_s", round(result.command_s, 1))
        print(f"lab: status {result.status}, boot {result.boot_s:.1f} s, "
              f"command {result.command_s:.1f} s, total {result.total_s:.1f} s")
        return result

    return run
