"""Helpers for tests that run inside the lab guest (``labvm.run_in_guest``).

- ``LabMap`` / ``load_map``: the LUN map the guest's /init wrote
  (``$LAB_LUNS_JSON``): every LUN with its wwid (the VPD 0x83 NAA
  designator clusdisk names disks by) and its sg/sd device through
  initiator A and through initiator B.  Device names vary from boot to boot:
  never hard-code ``/dev/sgN``.
- ``reset_luns``: back to a clean slate between tests: no SCSI-2
  reservation, no persistent reservation or registration, no pending unit
  attention.  Issues SG_IO itself (``sg_command``, ``pr_out``,
  ``lun_reset``), independent of the project's SCSI code under test.
- ``NetnsPair``: two "nodes" (network namespaces ``nodeA`` and ``nodeB``)
  joined by veth links (by default two: 198.51.100.0/24 and 192.0.2.0/24), which tests
  cut, degrade (netem) and heal; it starts processes in a node and kills
  them by PID at teardown.
"""

import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT_S = 30


@dataclass(frozen=True)
class LunPath:
    sg: str                # /dev/sgN: SG_IO
    sd: str                # /dev/sdX: block I/O, file systems
    hctl: str              # H:C:T:L in /sys/bus/scsi/devices


@dataclass(frozen=True)
class Lun:
    lun: int
    name: str              # quorum, data, data2, ...
    wwid: str              # naa.60014055ca1ab1e..., the same through both initiators
    serial: str            # VPD 0x80
    size_bytes: int
    a: LunPath             # through initiator A (scsi host LabMap.host_a)
    b: LunPath             # through initiator B (scsi host LabMap.host_b)
    backstore: str         # LIO configfs directory of the backing device

    def path(self, side: str) -> LunPath:
        return {"A": self.a, "B": self.b}[side]


@dataclass(frozen=True)
class LabMap:
    luns: tuple[Lun, ...]
    host_a: int            # SCSI host number of initiator A: node A's "scsi_hosts"
    host_b: int
    tpg_a: str             # configfs TPG of target A: echo offline > $tpg/transport_status
    tpg_b: str

    def lun(self, name: str) -> Lun:
        for lun in self.luns:
            if lun.name == name:
                return lun
        raise KeyError(name)

    @property
    def quorum(self) -> Lun:
        return self.lun("quorum")

    @property
    def data(self) -> Lun:
        return self.lun("data")


def load_map(path: str | None = None) -> LabMap:
    raw = json.loads(Path(path or os.environ["LAB_LUNS_JSON"]).read_text())

    def lun_path(entry: dict) -> LunPath:
        return LunPath(sg=entry["sg"], sd=entry["sd"], hctl=entry["hctl"])

    luns = tuple(Lun(lun=e["lun"], name=e["name"], wwid=e["wwid"], serial=e["serial"],
                     size_bytes=e["size_bytes"], a=lun_path(e["paths"]["A"]),
                     b=lun_path(e["paths"]["B"]), backstore=e["backstore"])
                 for e in raw["luns"])
    initiators = raw["initiators"]
    return LabMap(luns=luns, host_a=initiators["A"]["scsi_host"],
                  host_b=initiators["B"]["scsi_host"], tpg_a=initiators["A"]["tpg"],
                  tpg_b=initiators["B"]["tpg"])


# ---------------------------------------------------------------- LUN state
# reset_luns runs before every test that asks for it, so it issues SG_IO
# itself (one ioctl, no sg3-utils process start-up: ~0.3 s each under TCG),
# and it stays independent of the project's SCSI code under test.

SG_IO = 0x2285
SG_SCSI_RESET, SG_SCSI_RESET_DEVICE = 0x2284, 1
SG_DXFER_NONE, SG_DXFER_TO_DEV = -1, -2
# struct sg_io_hdr (<scsi/sg.h>), native layout, 88 bytes on x86_64
SG_IO_HDR = struct.Struct("@iiBBHIPPPIIiPBBBBHHiII0P")
GOOD = 0x00
TEST_UNIT_READY = bytes(6)
PR_OUT_REGISTER_AND_IGNORE, PR_OUT_CLEAR = 0x06, 0x03
CLEANUP_KEY = 0x1ABC1EA4               # the PR key reset_luns registers in order to CLEAR


def sg_command(sg: str, cdb: bytes, data_out: bytes = b"", timeout_ms: int = 30000) -> int:
    """Issue one CDB through SG_IO; the SCSI status byte (GOOD = 0).
    Raises OSError when the command did not reach the device."""
    cdb_buf = ctypes.create_string_buffer(cdb, len(cdb))
    sense = ctypes.create_string_buffer(64)
    data = ctypes.create_string_buffer(data_out, len(data_out)) if data_out else None
    header = bytearray(SG_IO_HDR.pack(
        ord("S"), SG_DXFER_TO_DEV if data_out else SG_DXFER_NONE, len(cdb), len(sense), 0,
        len(data_out), ctypes.addressof(data) if data else 0, ctypes.addressof(cdb_buf),
        ctypes.addressof(sense), timeout_ms, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    fd = os.open(sg, os.O_RDWR)
    try:
        fcntl.ioctl(fd, SG_IO, header)
    finally:
        os.close(fd)
    fields = SG_IO_HDR.unpack(header)
    status, host_status, driver_status = fields[13], fields[17], fields[18]
    if host_status or (driver_status & 0x0F and status == GOOD):
        raise OSError(f"{sg}: SG_IO host_status {host_status:#x} driver_status {driver_status:#x}")
    return status


def pr_out(sg: str, service_action: int, key: int = 0, sa_key: int = 0, pr_type: int = 0) -> int:
    """PERSISTENT RESERVE OUT (SPC-4 6.16) with a basic 24-byte parameter list."""
    cdb = struct.pack(">BBBxxIx", 0x5F, service_action, pr_type & 0x0F, 24)
    return sg_command(sg, cdb, struct.pack(">QQ8x", key, sa_key))


def clear_unit_attentions(sg: str, tries: int = 5) -> None:
    """TEST UNIT READY until GOOD: consumes the pending unit attentions."""
    for _ in range(tries):
        if sg_command(sg, TEST_UNIT_READY) == GOOD:
            return
    raise AssertionError(f"{sg}: TEST UNIT READY still fails after {tries} tries")


def lun_reset(sg: str) -> None:
    """SG_SCSI_RESET(SG_SCSI_RESET_DEVICE): a logical unit reset, which drops
    a SCSI-2 reservation and raises UNIT ATTENTION 29/03 on every nexus."""
    fd = os.open(sg, os.O_RDWR)
    try:
        fcntl.ioctl(fd, SG_SCSI_RESET, struct.pack("i", SG_SCSI_RESET_DEVICE))
    finally:
        os.close(fd)


def reset_luns(lab: LabMap) -> None:
    """No reservations, registrations or unit attentions left on any LUN.

    A LUN reset drops a SCSI-2 reservation (not persistent ones); then
    REGISTER AND IGNORE EXISTING KEY + CLEAR drops every registration and
    persistent reservation.  Both leave unit attentions, consumed last.
    """
    for lun in lab.luns:
        paths = (lun.a.sg, lun.b.sg)
        lun_reset(lun.a.sg)
        for sg in paths:
            clear_unit_attentions(sg)
        for action, key, sa_key in ((PR_OUT_REGISTER_AND_IGNORE, 0, CLEANUP_KEY),
                                    (PR_OUT_CLEAR, CLEANUP_KEY, 0)):
            status = pr_out(lun.a.sg, action, key, sa_key)
            if status != GOOD:
                raise AssertionError(f"PR OUT {action:#x} on {lun.name} via {lun.a.sg}: "
                                     f"status {status:#x}")
        for sg in paths:
            clear_unit_attentions(sg)


# ---------------------------------------------------------------- two nodes

@dataclass(frozen=True)
class Link:
    """One veth pair between the nodes: ``dev_a`` in nodeA, ``dev_b`` in nodeB."""

    name: str
    dev_a: str
    dev_b: str
    addr_a: str
    addr_b: str
    prefix: int = 24


LINKS = (Link("link0", "hb0a", "hb0b", "198.51.100.1", "198.51.100.2"),
         Link("link1", "hb1a", "hb1b", "192.0.2.1", "192.0.2.2"))


def _ip_batch(lines: list[str], netns: str | None = None) -> None:
    """Run ``ip`` commands in one process (``ip -batch``): every ``ip`` start
    costs ~0.15 s under TCG."""
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    result = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True,
                            text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise OSError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


class NetnsPair:
    """Network namespaces ``nodeA`` and ``nodeB`` joined by ``LINKS``.

    ``popen("A", argv)`` runs a process in nodeA's network namespace (only:
    it shares the guest's mount namespace, so its mounts stay visible);
    ``close()`` kills every such process by PID and deletes the namespaces.
    """

    def __init__(self, prefix: str = "node", links: tuple[Link, ...] = LINKS) -> None:
        self.names = {"A": f"{prefix}A", "B": f"{prefix}B"}
        self.links = links
        self._procs: list[subprocess.Popen] = []
        for ns in self.names.values():
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=COMMAND_TIMEOUT_S)
        _ip_batch([f"link add {link.dev_a} netns {self.names['A']} type veth "
                   f"peer name {link.dev_b} netns {self.names['B']}" for link in self.links])
        for side in ("A", "B"):
            lines = ["link set lo up"]
            for link in self.links:
                dev, addr = (link.dev_a, link.addr_a) if side == "A" else (link.dev_b, link.addr_b)
                lines += [f"addr add {addr}/{link.prefix} dev {dev}", f"link set {dev} up"]
            _ip_batch(lines, self.names[side])

    def netns_path(self, side: str) -> str:
        return f"/run/netns/{self.names[side]}"

    def address(self, side: str, link: int = 0) -> str:
        return self.links[link].addr_a if side == "A" else self.links[link].addr_b

    def argv(self, side: str, *command: str) -> list[str]:
        """``command`` prefixed to run in ``side``'s network namespace."""
        return ["nsenter", f"--net={self.netns_path(side)}", "--", *command]

    def popen(self, side: str, command: list[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.argv(side, *command), **kwargs)
        self._procs.append(proc)
        return proc

    def socket(self, side: str, family: int = socket.AF_INET,
               kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket in ``side``'s namespace, made in this process (no python
        start-up, seconds under TCG): a thread enters the namespace with
        setns(2), creates it and ends; the socket stays in that namespace."""
        made: list = []

        def enter_and_create() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(self.netns_path(side), os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    made.append(OSError(ctypes.get_errno(), "setns"))
                else:
                    made.append(socket.socket(family, kind))
            finally:
                os.close(fd)

        thread = threading.Thread(target=enter_and_create)
        thread.start()
        thread.join()
        if isinstance(made[0], Exception):
            raise made[0]
        return made[0]

    def _set_link(self, state: str, links) -> None:
        chosen = [self.links[i] for i in (links if links is not None else range(len(self.links)))]
        _ip_batch([f"link set {link.dev_a} {state}" for link in chosen], self.names["A"])
        _ip_batch([f"link set {link.dev_b} {state}" for link in chosen], self.names["B"])

    def cut(self, links=None) -> None:
        """Take links down on both ends (all of them by default)."""
        self._set_link("down", links)

    def heal(self, links=None) -> None:
        self._set_link("up", links)

    def netem(self, link: int, *spec: str) -> None:
        """``tc qdisc replace ... netem SPEC`` on nodeA's end of ``link``,
        e.g. ``netem(0, "loss", "100%")`` or ``netem(0, "delay", "200ms")``."""
        subprocess.run(["tc", "-n", self.names["A"], "qdisc", "replace", "dev",
                        self.links[link].dev_a, "root", "netem", *spec],
                       check=True, timeout=COMMAND_TIMEOUT_S)

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL, wait_s: float = 10) -> None:
        """Signal one started process (by PID) and reap it."""
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self) -> None:
        for proc in self._procs:
            self.kill(proc, signal.SIGTERM)
        self._procs.clear()
        for ns in self.names.values():
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=COMMAND_TIMEOUT_S,
                           stderr=subprocess.DEVNULL)


def wait_for(predicate, timeout_s: float, interval_s: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns a true value; that value, or
    AssertionError after ``timeout_s`` (scale timeouts: TCG is ~17x slower)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
