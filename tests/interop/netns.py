"""A private network namespace for interop tests that change packet filtering.

smbtorture's blocked-channel tests (``--option=torture:use_iptables=true``)
run iptables themselves to drop one channel's packets.  ``entered()`` makes
a namespace with only its loopback up, moves the calling thread into it
(setns changes only the caller's network namespace, so groups run in other
threads each have their own), and back out at the end: the servers and
smbtorture it starts meanwhile live there, and their iptables rules are that
namespace's own, never the host's.  The namespace goes when its last process does.
"""

import contextlib
import ctypes
import os
import shutil
import subprocess

CLONE_NEWNET = 0x40000000
IPTABLES = "/usr/sbin/iptables"        # smbtorture's torture:iptables_command default


def missing_tools() -> list[str]:
    """What ``entered`` and smbtorture's blocking need that is not installed."""
    missing = [tool for tool in ("ip",) if shutil.which(tool) is None]
    if not os.access(IPTABLES, os.X_OK):
        missing.append(IPTABLES + " (apt-get install iptables)")
    if os.geteuid() != 0:
        missing.append("root")
    return missing


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {path}: {os.strerror(errno)}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def entered(name: str):
    """Run the body inside a new namespace ``name`` (loopback up)."""
    subprocess.run(["ip", "netns", "add", name], check=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        _setns(f"/run/netns/{name}")
        try:
            yield
        finally:
            _setns(f"/proc/self/fd/{home}")
    finally:
        os.close(home)
        subprocess.run(["ip", "netns", "del", name], check=False)
