"""The Linux kernel SMB client seen from the lab guest: its own trace events
(tracefs ``events/cifs``), its mounts, and reading a file back past the page
cache.  Shared by test_cifs_persistent.py (smbcad restarted under the
client) and cluster_cifs_check.py (a node of the pair killed under it).

``check_trace`` is the proof that matters: the cifs client silently opens a
file again when its DH2C reconnect fails, so "no error" proves nothing; the
trace must show the handle reopened with its old persistent FileId.
"""

import mmap
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

CHUNK = 1 << 20
GENERIC_WRITE = 0x40000000
TRACEFS = Path("/sys/kernel/tracing")
COMMAND_TIMEOUT_S = 60
# cifs trace events of a data request or an open that failed; a WRITE cut
# off by the reconnect is smb3_write_err rc=-11 (EAGAIN), and the kernel sends
# it again (check_trace checks that it did); so is a reopen cut off by the
# next reconnect (a planned move followed at once by a cut: the reopen waits
# on the dead connection until the tickle ACK resets it), and the kernel
# reopens the handle on the new connection (check_trace checks that too)
FAILURE_EVENTS = ("smb3_write_err", "smb3_read_err", "smb3_open_err", "smb3_close_err",
                  "smb3_flush_err")
RETRIED_EVENTS = ("smb3_write_err", "smb3_open_err")
# NT statuses the kernel client provokes on every mount: the NTLMSSP round
# trip, its DFS referral probe, a read at the end of a file
EXPECTED_CMD_STATUSES = ("0xc0000016", "0xc000019c", "0xc0000011")
EAGAIN = "-11"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check,
                          timeout=COMMAND_TIMEOUT_S)


class CifsTrace:
    """The kernel client's own trace events (events/cifs: one per SMB
    command done or failed, reconnects, opens), in the ftrace ring buffer."""

    def __init__(self) -> None:
        self.enabled = False

    def start(self) -> None:
        if not (TRACEFS / "events").exists():
            run("mount", "-t", "tracefs", "tracefs", str(TRACEFS), check=False)
        events = TRACEFS / "events" / "cifs"
        if not events.exists():
            print("cifs trace: no cifs trace events in this kernel", flush=True)
            return
        # CLOCK_MONOTONIC time stamps: comparable with the writers' progress,
        # the witness client's records and the harness's clock
        (TRACEFS / "trace_clock").write_text("mono\n")
        (TRACEFS / "buffer_size_kb").write_text("8192\n")
        (TRACEFS / "trace").write_text("")
        (events / "enable").write_text("1\n")
        (TRACEFS / "tracing_on").write_text("1\n")
        self.enabled = True

    def lines(self) -> list[str]:
        if not self.enabled:
            return []
        return [line for line in (TRACEFS / "trace").read_text().splitlines()
                if line and not line.startswith("#")]

    def stop(self) -> None:
        if self.enabled:
            (TRACEFS / "events" / "cifs" / "enable").write_text("0\n")
            self.enabled = False


def dmesg_lines() -> list[str]:
    return run("dmesg").stdout.splitlines()


def is_mounted(point: Path) -> bool:
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == str(point) for line in mounts)


def mount_options(point: Path) -> set[str]:
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[1] == str(point):
                return set(fields[3].split(","))
    raise AssertionError(f"{point} is not mounted")


def read_progress(path: Path) -> list[tuple[str, float]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        key, _, at = line.partition(" ")
        if at:
            entries.append((key, float(at)))
    return entries


def first_mismatch(got: bytes, want: bytes, chunk: int = CHUNK) -> str:
    if len(got) != len(want):
        return f"size {len(got)}, want {len(want)}"
    for offset in range(0, len(want), chunk):
        if got[offset:offset + chunk] != want[offset:offset + chunk]:
            return f"chunk {offset // chunk} (offset {offset:#x}) differs"
    return "identical"


def read_direct(path: Path) -> bytes:
    """The file read with O_DIRECT: from the server, not the page cache."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        data = bytearray()
        buffer = mmap.mmap(-1, CHUNK)
        while True:
            got = os.readv(fd, [buffer])
            data += buffer[:got]
            if got < CHUNK:
                return bytes(data)
    finally:
        os.close(fd)


class Trace:
    """The parsed cifs trace events: (time, name, fields)."""

    def __init__(self, lines: list[str]) -> None:
        self.events = []
        for line in lines:
            match = re.search(r"\s(\d+\.\d+): (smb3_\w+):(.*)", line)
            if match:
                fields = dict(re.findall(r"(\w+)=(\S+)", match.group(3)))
                self.events.append((float(match.group(1)), match.group(2), fields))

    def named(self, *names: str) -> list[tuple[float, str, dict]]:
        return [event for event in self.events if event[1] in names]


def connection_down() -> bool:
    """The client has seen its connection go: a DebugData "TCP status: N"
    (6.1 writes "TCP status: N Instance: M") is no longer 1 (CifsGood)."""
    statuses = re.findall(r"TCP status: (\d+)", Path("/proc/fs/cifs/DebugData").read_text())
    return any(status != "1" for status in statuses)


def connection_ids(trace: Trace) -> list[str]:
    """The client's TCP connections (``conn_id``), in the order they were
    first made (``smb3_connect_done``; a reconnect keeps its id)."""
    return list(dict.fromkeys(fields["conn_id"] for _, _, fields
                              in trace.named("smb3_connect_done") if "conn_id" in fields))


def check_trace(trace: Trace, mode: str, one_reconnect: bool = True, open_index: int = 0,
                cut_off_expected: bool = True, conn_id: str | None = None) -> str:
    """What the kernel client did across the restart, from its own trace
    events; AssertionError for a request that failed for good.  ``conn_id``:
    only that connection's reconnects count (another mount's are not this
    handle's)."""
    failed = [event for event in trace.named(*FAILURE_EVENTS)
              if not (event[1] in RETRIED_EVENTS and event[2].get("rc") == EAGAIN)]
    failed += [event for event in trace.named("smb3_cmd_err")
               if event[2].get("status") not in EXPECTED_CMD_STATUSES]
    assert not failed, failed
    opens = [event for event in trace.named("smb3_open_done")
             if int(event[2].get("des_access", "0"), 16) & GENERIC_WRITE]
    assert opens, "no open for writing in the trace"
    fid = opens[open_index][2]["fid"]      # the open_index-th file opened for writing
    reconnects = [event for event in trace.named("smb3_reconnect")
                  if conn_id is None or event[2].get("conn_id") == conn_id]
    assert len(reconnects) == 1 if one_reconnect else reconnects, reconnects
    reconnected_at = reconnects[0][0]
    done = [event for event in trace.named("smb3_write_done") if event[2]["fid"] == fid]
    resent = [event for event in trace.named("smb3_write_err") if event[2].get("fid") == fid]
    for at, _, fields in resent:          # each cut-off WRITE done again later
        assert any(later > at and f["offset"] == fields["offset"] for later, _, f in done), \
            f"the WRITE at {fields['offset']} cut off at {at} was never done again"
    if mode == "direct" and cut_off_expected:
        assert resent, "no WRITE was in flight at the kill"
    reopens = [event for event in trace.named("smb3_open_done")
               if event[0] > reconnected_at and event[2]["fid"] == fid]
    assert reopens, f"the handle {fid} was not reopened after the reconnect"
    for at, _, _ in reconnects[1:]:       # every move: the same persistent FileId again
        assert any(event[0] > at and event[2]["fid"] == fid
                   for event in trace.named("smb3_open_done")), \
            f"the handle {fid} was not reopened after the reconnect at {at}"
    times = [at for at, _, _ in done]
    first_after = min((at for at in times if at > reconnected_at), default=None)
    assert first_after is not None, "no WRITE done after the reconnect"
    before = [at for at in times if at < reconnected_at]
    stall = first_after - (max(before) if before else reconnected_at)
    other = Counter(f"{fields.get('cmd', '?')}:{fields.get('status', '?')}"
                    for _, _, fields in trace.named("smb3_cmd_err"))
    return (f"kernel trace: {len(reconnects)} reconnect(s); {len(resent)} WRITE(s) cut off (rc=-11) and sent "
            f"again; handle fid={fid} reopened {reopens[0][0] - reconnected_at:.1f} s after "
            f"the connection went, with its old persistent FileId; {len(done)} WRITEs on it, "
            f"{len(before)} before the kill; no WRITE completed for {stall:.1f} s across the "
            f"restart; failed commands (cmd:status), all expected: {dict(other)}")


def unmount(point: Path) -> None:
    """umount, then forced, then lazy: a hard mount whose server is gone
    would otherwise block the clean-up."""
    for flags in ((), ("-f",), ("-l",)):
        if not is_mounted(point):
            return
        try:
            run("umount", *flags, str(point), check=False)
        except subprocess.TimeoutExpired:
            pass
