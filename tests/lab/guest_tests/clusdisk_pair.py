"""Two clusdisk daemons on the lab's shared LUNs (test_clusdisk_lab.py).

- ``Pair``: one config per node (node A sees the LUNs through initiator A's
  SCSI host only, node B through B's), heartbeating over both veth links of
  ``guestlab.NetnsPair``; starts, kills and stops the daemons by PID and asks
  their control sockets.  Each node has its own mount point: in the one guest
  kernel the two nodes share a mount namespace, where on real hardware each
  node has its own.
- ``Sampler``: a thread that asks both control sockets every 100 ms.  It keeps
  the timeline (the failover times are read from it) and every sample in
  which both daemons owned the same disk at one moment (``overlapping``: one
  side's view bracketed by two of the other's).
- LUN truth, independent of clusdisk's SCSI code (SG_IO through
  ``guestlab.sg_command`` and ``_sg_in``): ``write_status`` (one WRITE(16)
  past the end of the file system), ``pr_keys``/``pr_holder`` (PERSISTENT
  RESERVE IN), ``tur_status``, ``lun_resets`` (LIO's own count of LUN resets).
"""

import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import guestlab

AGGREGATE = "aggr1"
HB_INTERVAL_MS = 500
HB_MISS_COUNT = 6
HB_PORT = 5405
CLUSTER_KEY = "5ca1ab1e" * 8                      # 32 bytes, hex
PR_KEYS = {"A": 0x736D626300000001, "B": 0x736D626300000002}   # config.py's defaults
NODE_IDS = {"A": 1, "B": 2}
OWNER_STATES = frozenset({"online", "online-partner-lost", "online-taken-over"})
CLAIM_STATES = OWNER_STATES | {"settle-form", "settle-takeover"}

GOOD, CHECK_CONDITION, RESERVATION_CONFLICT = 0x00, 0x02, 0x18
PR_TYPE_WRITE_EXCLUSIVE, PR_TYPE_WE_REGISTRANTS_ONLY = 1, 5
BLOCK_SIZE = 512
FS_SLACK_BYTES = 4 << 20          # the file system leaves the last 4 MiB of the data LUN free

OTHER = {"A": "B", "B": "A"}


def say(mode: str, text: str) -> None:
    """A result line; the host test (tests/lab/test_clusdisk.py) shows them."""
    print(f"clusdisk-lab[{mode}]: {text}", flush=True)


# ------------------------------------------------------------------ LUN truth

def _sg_in(sg: str, cdb: bytes, length: int) -> tuple[int, bytes]:
    """One data-in CDB through SG_IO: (status, data)."""
    cdb_buf = ctypes.create_string_buffer(cdb, len(cdb))
    sense = ctypes.create_string_buffer(64)
    data = ctypes.create_string_buffer(length)
    header = bytearray(guestlab.SG_IO_HDR.pack(
        ord("S"), -3, len(cdb), len(sense), 0, length, ctypes.addressof(data),
        ctypes.addressof(cdb_buf), ctypes.addressof(sense), 30000, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0))                   # -3: SG_DXFER_FROM_DEV
    fd = os.open(sg, os.O_RDWR)
    try:
        fcntl.ioctl(fd, guestlab.SG_IO, header)
    finally:
        os.close(fd)
    fields = guestlab.SG_IO_HDR.unpack(header)
    status, host_status, resid = fields[13], fields[17], fields[19]
    if host_status:
        raise OSError(f"{sg}: SG_IO host_status {host_status:#x}")
    return status, data.raw[:length - max(resid, 0)]


def _past_unit_attentions(issue):
    """Retry CHECK CONDITION (the daemons' resets and preempts leave unit
    attentions on both nexuses) a few times; the last answer."""
    for _ in range(4):
        answer = issue()
        status = answer[0] if isinstance(answer, tuple) else answer
        if status != CHECK_CONDITION:
            break
    return answer


def tur_status(sg: str) -> int:
    return _past_unit_attentions(lambda: guestlab.sg_command(sg, guestlab.TEST_UNIT_READY))


def write_status(lun: guestlab.Lun, side: str) -> int:
    """WRITE(16) of one zero block at the data LUN's last LBA (outside the
    file system) through ``side``'s nexus: GOOD or RESERVATION CONFLICT."""
    lba = lun.size_bytes // BLOCK_SIZE - 1
    cdb = struct.pack(">BBQIBB", 0x8A, 0, lba, 1, 0, 0)
    return _past_unit_attentions(
        lambda: guestlab.sg_command(lun.path(side).sg, cdb, bytes(BLOCK_SIZE)))


def _pr_in(sg: str, action: int) -> bytes:
    cdb = struct.pack(">BB5xHB", 0x5E, action, 8192, 0)
    status, data = _past_unit_attentions(lambda: _sg_in(sg, cdb, 8192))
    if status != GOOD:
        raise AssertionError(f"PERSISTENT RESERVE IN {action} on {sg}: status {status:#x}")
    return data


def pr_keys(sg: str) -> set[int]:
    """READ KEYS (SPC-4 6.15.2)."""
    data = _pr_in(sg, 0)
    length = struct.unpack_from(">I", data, 4)[0]
    return {struct.unpack_from(">Q", data, 8 + i)[0] for i in range(0, length, 8)}


def pr_holder(sg: str) -> tuple[int, int] | None:
    """READ RESERVATION (SPC-4 6.15.3): (key, type) or None."""
    data = _pr_in(sg, 1)
    if struct.unpack_from(">I", data, 4)[0] < 16:
        return None
    return struct.unpack_from(">Q", data, 8)[0], data[21] & 0x0F


def lun_resets(lun: guestlab.Lun) -> int:
    """LUN resets the target has seen (LIO statistics/scsi_lu/resets)."""
    return int((Path(lun.backstore) / "statistics" / "scsi_lu" / "resets").read_text())


def make_filesystem(lun: guestlab.Lun) -> None:
    """ext4 on the data LUN through initiator A, leaving its last blocks out
    of the file system for ``write_status``.  Inode tables and journal
    written now: no lazy-init thread writes the disk later."""
    size_k = (lun.size_bytes - FS_SLACK_BYTES) // 1024
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", AGGREGATE, "-b", "4096",
                    "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
                    lun.a.sd, f"{size_k}k"], check=True, capture_output=True, timeout=120)


def mount_points(block: str) -> list[str]:
    """Where ``block`` is mounted (/proc/self/mountinfo)."""
    rdev = os.stat(block).st_rdev
    want = f"{os.major(rdev)}:{os.minor(rdev)}"
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return [line.split()[4] for line in handle if line.split()[2] == want]


def read_only(block: str) -> bool:
    return Path("/sys/block", Path(block).name, "ro").read_text().strip() == "1"


def detach(point: str) -> None:
    """umount2(MNT_DETACH): test clean-up only."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(point.encode(), 2)


# ------------------------------------------------------------------ the daemons

@dataclass(frozen=True)
class ModeSetup:
    mode: str
    arbitration: dict             # the config's arbitration section (milliseconds)

    def ms(self, key: str, default: int) -> float:
        return self.arbitration.get(key, default) / 1000

    @property
    def renew_s(self) -> float:
        return self.ms("renew_ms", 3000)

    @property
    def challenge_s(self) -> float:
        """Partner loss -> quorum online on the challenger: SCSI-2 wait +
        settle, PR preempt delay + settle."""
        if self.mode == "pr":
            return self.ms("pr_challenge_delay_ms", 2000) + self.ms("pr_settle_ms", 4000)
        return self.ms("challenge_wait_ms", 7000) + self.ms("settle_ms", 10000)

    @property
    def takeover_bound_s(self) -> float:
        """The issue's bound from partner loss to quorum and data disk owned:
        the challenge plus one renew period."""
        return self.challenge_s + self.renew_s

    @staticmethod
    def heartbeat_timeout_s() -> float:
        return HB_INTERVAL_MS * HB_MISS_COUNT / 1000


@dataclass(frozen=True)
class View:
    """One daemon's answer on its control socket."""

    t: float
    state: str
    owns_quorum: bool
    up: frozenset

    def owns(self) -> set[str]:
        return ({"quorum"} if self.owns_quorum else set()) | set(self.up)


@dataclass(frozen=True)
class Sample:
    a: View | None
    b: View | None

    def side(self, side: str) -> View | None:
        return self.a if side == "A" else self.b


def ask_status(path: str, timeout_s: float = 1.0) -> dict | None:
    """The control socket's status, or None (not running, not answering)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(b'{"command": "status"}\n')
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        answer = json.loads(reply)
    except (OSError, ValueError):
        return None
    return answer.get("status") if answer.get("ok") else None


class Daemon:
    def __init__(self, side: str, root: Path) -> None:
        self.side = side
        self.dir = root / side
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "clusdisk.yaml"
        self.socket = str(self.dir / "clusdisk.sock")
        self.log = self.dir / "clusdisk.log"
        self.mount_point = str(self.dir / AGGREGATE)
        self.proc: subprocess.Popen | None = None

    def view(self) -> View | None:
        status = ask_status(self.socket)
        if status is None:
            return None
        return View(time.monotonic(), status["state"], bool(status["owns_quorum"]),
                    frozenset(a["name"] for a in status["aggregates"] if a["up"]))

    def log_text(self, offset: int = 0) -> str:
        try:
            return self.log.read_text(errors="replace")[offset:]
        except OSError:
            return ""

    def log_size(self) -> int:
        return len(self.log_text())


class Pair:
    def __init__(self, nodes: guestlab.NetnsPair, lab: guestlab.LabMap, root: Path,
                 setup: ModeSetup) -> None:
        self.nodes = nodes
        self.lab = lab
        self.setup = setup
        self.key_file = root / "cluster.key"
        self.key_file.write_text(CLUSTER_KEY + "\n")
        self.key_file.chmod(0o600)
        self.daemons = {side: Daemon(side, root) for side in ("A", "B")}
        for side, daemon in self.daemons.items():
            # YAML is a superset of JSON
            daemon.config.write_text(json.dumps(self.config(side), indent=2))

    def __getitem__(self, side: str) -> Daemon:
        return self.daemons[side]

    def config(self, side: str) -> dict:
        daemon, other = self.daemons[side], OTHER[side]
        links = [{"local": f"{self.nodes.address(side, i)}:{HB_PORT}",
                  "peer": f"{self.nodes.address(other, i)}:{HB_PORT}"}
                 for i in range(len(self.nodes.links))]
        return {
            "cluster": {"name": "lab", "node_id": NODE_IDS[side], "key_file": str(self.key_file),
                        "nodes": [{"id": NODE_IDS[s], "name": s.lower(),
                                   "pr_key": f"{PR_KEYS[s]:#018x}"} for s in ("A", "B")]},
            "heartbeat": {"interval_ms": HB_INTERVAL_MS, "miss_count": HB_MISS_COUNT,
                          "links": links},
            "arbitration": {"mode": self.setup.mode, **self.setup.arbitration},
            "scsi": {"scsi_hosts": [self.lab.host_a if side == "A" else self.lab.host_b],
                     "reset": "device"},
            "quorum": {"disk": self.lab.quorum.wwid},
            "aggregates": [{"name": AGGREGATE, "home": "a", "disk": self.lab.data.wwid,
                            "filesystem": "ext4", "mount_point": daemon.mount_point,
                            "mount_options": "noatime"}],
            "control": {"socket": daemon.socket},
            "state_dir": str(daemon.dir / "state"),
            "log_level": "info",
        }

    def start(self, side: str) -> None:
        daemon = self.daemons[side]
        with open(daemon.log, "ab") as log:
            log.write(f"---- test: starting node {side}\n".encode())
            log.flush()
            daemon.proc = self.nodes.popen(
                side, [sys.executable, "-m", "clusdisk", "--config", str(daemon.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, side: str) -> None:
        """kill -9, by PID."""
        self.nodes.kill(self.daemons[side].proc, signal.SIGKILL)

    def stop(self, side: str, timeout_s: float = 60) -> int:
        """SIGTERM by PID (SIGKILL after ``timeout_s``); the exit status."""
        proc = self.daemons[side].proc
        self.nodes.kill(proc, signal.SIGTERM, wait_s=timeout_s)
        return proc.returncode

    def wait_exit(self, side: str, timeout_s: float) -> int | None:
        try:
            return self.daemons[side].proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None


def _owns(view: View | None) -> set[str]:
    return view.owns() if view is not None else set()


def overlapping(previous: Sample, sample: Sample) -> set[str]:
    """What both daemons owned at one moment, from two consecutive samples.
    A sample asks A, then B, so "both own" in one sample proves nothing by
    itself: A may have released between its answer and B's (a clean stop's
    handover does just that).  A view bracketed by two of the other side's
    that own the same disk does: A (previous), B (previous), A (this one), or
    B (previous), A (this one), B (this one)."""
    a_throughout = _owns(previous.a) & _owns(sample.a)
    b_throughout = _owns(previous.b) & _owns(sample.b)
    return (a_throughout & _owns(previous.b)) | (b_throughout & _owns(sample.a))


class Sampler(threading.Thread):
    """Both daemons' views every ``period_s``, and the samples in which both
    believed they owned the same disk (the quorum or the aggregate)."""

    def __init__(self, pair: Pair, period_s: float = 0.1) -> None:
        super().__init__(name="ownership-sampler", daemon=True)
        self.pair = pair
        self.period_s = period_s
        self.samples: list[Sample] = []
        self.conflicts: list[Sample] = []
        self.started_at = time.monotonic()
        self.longest_gap_s = 0.0        # between the starts of two samples
        self._halt = threading.Event()

    def run(self) -> None:
        due = last = time.monotonic()
        previous = Sample(None, None)
        while not self._halt.is_set():
            now = time.monotonic()
            self.longest_gap_s, last = max(self.longest_gap_s, now - last), now
            sample = Sample(self.pair["A"].view(), self.pair["B"].view())
            self.samples.append(sample)
            if overlapping(previous, sample):
                self.conflicts.append(previous)
            previous = sample
            due += self.period_s
            now = time.monotonic()
            if due < now:
                due = now                    # late: never burst to catch up
            self._halt.wait(due - now)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def latest(self) -> Sample:
        return self.samples[-1] if self.samples else Sample(None, None)

    def views(self, side: str, since: float, until: float | None = None) -> list[View]:
        out = []
        for sample in list(self.samples):
            view = sample.side(side)
            if view is not None and view.t >= since and (until is None or view.t <= until):
                out.append(view)
        return out

    def first(self, side: str, predicate, since: float) -> View | None:
        return next((v for v in self.views(side, since) if predicate(v)), None)

    def transitions(self, side: str, since: float) -> list[tuple[float, str]]:
        """(seconds after ``since``, state) at each state change seen."""
        out: list[tuple[float, str]] = []
        for view in self.views(side, since):
            if not out or out[-1][1] != view.state:
                out.append((view.t - since, view.state))
        return out


def wait_view(sampler: Sampler, predicate, timeout_s: float, what: str) -> Sample:
    """Poll the sampler until ``predicate(sample)``."""
    return guestlab.wait_for(lambda: (lambda s: s if predicate(s) else None)(sampler.latest()),
                             timeout_s, what=what)
