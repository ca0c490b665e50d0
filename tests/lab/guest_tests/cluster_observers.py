"""What cluster_cifs_check.py watches besides its writers, in the client
namespace (issue 11, "How it is shown"):

- ``WitnessWatch``: cluster_witness.py registered for the LIF with the
  other node's witnessd; ``check`` wants RESOURCE_CHANGE UNAVAILABLE, then
  AVAILABLE, for every move of the LIF;
- ``IdleClient``: a second cifs mount (``nosharesock``: its own TCP
  connection and session) with one file open and no I/O across the events;
  ``check`` finds, in the client's trace, its handle reopened with its same
  persistent FileId, and how long after the LIF came up (the partner's
  clusdisk log) it was reconnected: the tickle ACK's doing when nothing
  else would wake the connection (a cut leaves it silent);
- ``write_gaps``: the longest pause between acknowledged writes of a writer.

Every time here is CLOCK_MONOTONIC (the cifs trace is switched to it, see
cifs_client.CifsTrace), or converted to it (``wall_to_mono``).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from cifs_client import Trace, read_progress, run, unmount

GENERIC_READ = 0x80000000
GENERIC_WRITE = 0x40000000
WITNESS = Path(__file__).with_name("cluster_witness.py")
IDLE_SIZE = 256 << 10
LOG_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def wall_to_mono(wall: float) -> float:
    return wall - (time.time() - time.monotonic())


def log_times(path: Path, pattern: str, since_wall: float = 0.0) -> list[float]:
    """CLOCK_MONOTONIC times of the lines of a daemon's log matching ``pattern``."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        stamp = LOG_STAMP.match(line)
        if stamp and re.search(pattern, line):
            wall = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")) \
                + int(stamp.group(2)) / 1000
            if wall >= since_wall:
                out.append(wall_to_mono(wall))
    return out


def write_gaps(progress: Path) -> tuple[float, float | None]:
    """(longest gap between two acknowledged writes, when it ended) from a
    writer's progress file: ``open``, then one line per write."""
    times = [at for key, at in read_progress(progress) if key.isdigit()]
    if len(times) < 2:
        return 0.0, None
    gap, end = max((b - a, b) for a, b in zip(times, times[1:]))
    return round(gap, 3), end


def gap_within(progress: Path, start: float, end: float) -> float:
    """The longest pause between acknowledged writes overlapping [start, end]."""
    times = [at for key, at in read_progress(progress) if key.isdigit()]
    return round(max((b - a for a, b in zip(times, times[1:]) if b >= start and a <= end),
                     default=0.0), 3)


class WitnessWatch:
    """cluster_witness.py in the background, registered for ``lif``."""

    def __init__(self, nodes: list[str], lif: str, out: Path) -> None:
        self.lif = lif
        self.out = out
        out.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, str(WITNESS), ",".join(nodes), lif,
                                      str(out)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def records(self) -> list[dict]:
        try:
            return [json.loads(line) for line in self.out.read_text().splitlines() if line]
        except FileNotFoundError:
            return []

    def registered(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the witness client exited {self.proc.returncode}:\n"
                                 f"{self.proc.stdout.read().decode(errors='replace')}")
        return any(r["what"] == "registered" for r in self.records())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def changes(self) -> list[tuple[float, str]]:
        """(time, state) of the RESOURCE_CHANGEs naming the LIF, and of its
        state in the interface list fetched after each registration (a
        change while the client re-registered after witnessd's forced
        unregistration reaches it only that way), repeats left out."""
        out: list[tuple[float, str]] = []
        for record in self.records():
            if record["what"] == "change" and record["name"] == self.lif:
                state = record["state"]
            elif record["what"] == "interfaces" and out:
                state = next((e["state"] for e in record["list"] if e["ipv4"] == self.lif),
                             None)
            else:
                continue
            if state is not None and (not out or out[-1][1] != state):
                out.append((record["t"], state))
        return out

    def from_list(self) -> int:
        """How many of the LIF's states came from an interface list."""
        seen, count = None, 0
        for record in self.records():
            if record["what"] == "change" and record["name"] == self.lif:
                seen = record["state"]
            elif record["what"] == "interfaces" and seen is not None:
                state = next((e["state"] for e in record["list"] if e["ipv4"] == self.lif),
                             None)
                if state is not None and state != seen:
                    count, seen = count + 1, state
        return count

    def check(self, moves: int, windows: list[tuple[str, float, float]]) -> str:
        """At least ``moves`` UNAVAILABLE -> AVAILABLE pairs, the last state
        AVAILABLE; ``windows``: (event, start, end) with no change expected."""
        changes = self.changes()
        pairs = self.pairs()
        registrations = [r for r in self.records() if r["what"] == "registered"]
        assert (not changes and moves == 0) or (
            changes and changes[-1][1] == "AVAILABLE" and len(pairs) >= moves), \
            f"witness: {len(pairs)} UNAVAILABLE -> AVAILABLE for {self.lif}, want >= {moves}; " \
            f"records: {self.records()}"
        for event, start, end in windows:
            inside = [c for c in changes if start <= c[0] <= end]
            assert not inside, f"witness: {event} (refused) changed {self.lif}: {inside}"
        nodes = sorted({r["node"] for r in registrations})
        return (f"witness client (registered {len(registrations)} time(s) with {nodes}) saw "
                f"{self.lif} UNAVAILABLE -> AVAILABLE {len(pairs)} time(s) ({self.from_list()} "
                f"state(s) read from the interface list after a re-registration); "
                f"unavailable for {', '.join(f'{b - a:.1f}' for a, b in pairs)} s")

    def pairs(self) -> list[tuple[float, float]]:
        changes = self.changes()
        return [(a[0], b[0]) for a, b in zip(changes, changes[1:])
                if a[1] == "UNAVAILABLE" and b[1] == "AVAILABLE"]


class IdleClient:
    """A second mount of the share with its own connection, one file open
    read-only and left alone."""

    def __init__(self, lif: str, share: str, point: Path, options: str) -> None:
        self.point = point
        self.spec = f"//{lif}/{share}"
        self.options = options
        self.fd: int | None = None
        self.opened_at = 0.0

    def start(self, name: str, content: bytes) -> None:
        self.point.mkdir(exist_ok=True)
        before = self.connections()
        run("mount", "-t", "cifs", self.spec, str(self.point), "-o",
            self.options + ",nosharesock")
        # 6.1 does not list nosharesock in /proc/mounts: count the connections
        assert self.connections() == before + 1, (before, self.connections())
        self.name = name
        self.content = content
        self.opened_at = time.monotonic()
        self.fd = os.open(self.point / name, os.O_RDONLY)
        assert os.pread(self.fd, len(content), 0) == content, "idle file reads wrong"

    def connections(self) -> int:
        """Established TCP connections to the LIF's port 445."""
        lif = self.spec.split("/")[2]
        out = run("ss", "-tnH", "state", "established").stdout
        return sum(1 for fields in map(str.split, out.splitlines())
                   if len(fields) >= 4 and fields[3] == f"{lif}:445")

    def fid(self, trace: Trace) -> str:
        opens = [e for e in trace.named("smb3_open_done") if e[0] >= self.opened_at
                 and int(e[2].get("des_access", "0"), 16) & GENERIC_READ
                 and not int(e[2].get("des_access", "0"), 16) & GENERIC_WRITE]
        assert opens, "the idle client's open is not in the trace"
        return opens[0][2]["fid"]

    def reopens(self, trace: Trace) -> list[float]:
        """Times of the idle handle's reopens (same persistent FileId)."""
        fid = self.fid(trace)
        first = next(e[0] for e in trace.named("smb3_open_done") if e[2]["fid"] == fid)
        return [e[0] for e in trace.named("smb3_open_done") if e[2]["fid"] == fid
                and e[0] > first]

    def check(self, trace: Trace, lif_up: list[float], since: float) -> tuple[str, list[float]]:
        """Each reopen after ``since`` against the last LIF-up before it;
        reads the file through the old handle."""
        reopens = [t for t in self.reopens(trace) if t > since]
        assert reopens, f"the idle handle {self.fid(trace)} was never reopened"
        delays = []
        for at in reopens:
            ups = [u for u in lif_up if u <= at + 0.001]
            assert ups, f"idle handle reopened at {at:.2f} before any LIF came up ({lif_up})"
            delays.append(round(at - ups[-1], 3))
        assert os.pread(self.fd, len(self.content), 0) == self.content, \
            "the idle handle reads wrong after the reconnect"
        return (f"idle client ({self.spec}, nosharesock, '{self.name}' open, no I/O): handle "
                f"fid={self.fid(trace)} reopened with its same persistent FileId "
                f"{len(reopens)} time(s), {', '.join(f'{d:.2f}' for d in delays)} s after the "
                f"LIF came up; the file reads back right through it", delays)

    def stop(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        unmount(self.point)
