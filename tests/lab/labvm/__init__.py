"""The smbca LUN lab: a throwaway QEMU guest with shared SCSI LUNs.

The guest boots the Debian kernel from the host's ``/boot`` under QEMU
(TCG, no KVM needed), mounts the host root read-only over 9p, and serves
N LUNs through LIO with two ``tcm_loop`` initiators (A and B), so every
LUN is one logical unit reachable through two I_T nexuses: real SG_IO,
SCSI-2 RESERVE/RELEASE, persistent reservations, resets and unit
attentions.  See ``tests/lab/README.md``.

    from labvm import LabOptions, run, run_in_guest
    result = run(["sg_turs", "/dev/sg0"], LabOptions(luns=2, timeout_s=300))
    result = run_in_guest(["tests/lab/guest_tests"], timeout=600)
"""

from labvm.guest import GUEST_TESTS, guest_command, run_in_guest
from labvm.image import Host, Image, LabUnavailable, ensure_image, find_host
from labvm.vm import (LAB_FAILED_STATUS, LOCKUP_STATUS, REPO_ROOT, TIMEOUT_STATUS,
                      LabGuestLockup, LabOptions, RunResult, run, shell)

__all__ = [
    "GUEST_TESTS", "Host", "Image", "LAB_FAILED_STATUS", "LOCKUP_STATUS", "LabGuestLockup",
    "LabOptions", "LabUnavailable",
    "REPO_ROOT", "RunResult", "TIMEOUT_STATUS", "ensure_image", "find_host", "guest_command",
    "run", "run_in_guest", "shell",
]
