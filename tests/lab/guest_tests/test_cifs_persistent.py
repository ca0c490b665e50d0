"""The Linux kernel SMB client keeps writing through an smbcad restart
(issue 4, "How it is shown", third bullet).  Run from the host by
tests/lab/test_cifs_persistent.py; both modes in one guest boot.

  1. smbcad on 127.0.0.1 with a ``ca`` share, a user and a state dir (the
     handle store); the guest kernel mounts the share with
     ``vers=3.0,persistenthandles,hard``.  The kernel refuses that mount
     unless the server advertises persistent handles; /proc/mounts keeps the
     option and DebugData shows the share's CONTINUOUS AVAILABILITY.
  2. cifs_writer.py opens one file on the mount and writes 32 MiB of a
     known pattern in 1 MiB writes, then fsyncs and closes it:
     - ``direct``: O_DIRECT, every write an SMB2 WRITE on the wire.  With a
       quarter of the file on the server, smbcad is frozen (SIGSTOP) until
       the client's socket has nothing left to send, then killed (SIGKILL):
       the WRITE in flight was wholly sent and never answered.
     - ``buffered``: the 32 MiB sit dirty in the client's page cache when
       smbcad is killed; once the client has seen the connection go, the
       writer calls fsync, whose writeback waits for the reconnect.
  3. smbcad starts again on the same state dir and port and restores the
     persistent open from the store; the kernel reconnects (session, tree,
     the handle with DH2C) and sends what was cut off again.
  4. The writer exits 0; the file is correct read through the mount (page
     cache dropped, and O_DIRECT) and straight from the share directory;
     smbcad's log has the open restored and reconnected as persistent; the
     kernel's cifs trace events show the reconnect, the cut-off WRITE
     resent, the handle reopened with its old persistent FileId and no
     failed read, write, open, close or flush; dmesg has no cifs error.

Why freeze before the kill: Debian's 6.1 client turns a send that fails
because the peer died into ECONNABORTED (the stable backport of "cifs:
translate network errors on send to -ECONNABORTED") and gives it to the
application: a write() or fsync() that was *sending* when smbcad died fails
("Error -32 sending data on socket to server", smb3_write_err rc=-103), on
any server.  Only a request already sent is resent after the reconnect
(rc=-11, EAGAIN).  Newer kernels count ECONNABORTED as replayable too
(is_replayable_error, 6.8).

Results come out as ``cifs-persistent: [MODE] ...`` lines, the stall
across the restart among them.  ``mount -t cifs`` needs no mount.cifs
helper with a numeric address and ``password=`` (Debian's kernel, no
cifs-utils on the host).
"""

import hashlib
import mmap
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import guestlab
from cifs_writer import pattern

PORT = 4455                      # the guest's own loopback: no other test listens here
SHARE, USER, PASSWORD = "share", "labuser", "Lab-Pass-1"
FILE_NAME = "cifs-persistent.bin"
SIZE = 32 << 20
CHUNK = 1 << 20
SEED = 4
KILL_AT = SIZE // 4               # direct: kill smbcad with this much on the server
FREEZE_TRIES = 5
GENERIC_WRITE = 0x40000000
START_S = 120                    # smbcad start-up under TCG: ~11 s, up to ~20 s loaded
WRITE_S = 180                    # the writer, the restart stall included
WRITER = Path(__file__).with_name("cifs_writer.py")
TRACEFS = Path("/sys/kernel/tracing")
COMMAND_TIMEOUT_S = 60
# a dmesg line about the mount that would mean the client gave up on something
DMESG_ERRORS = re.compile(r"I/O error|\bEIO\b|rc\s*=\s*-5\b|error -5\b|reopen|"
                          r"persistent|durable|invalid|fail", re.IGNORECASE)
# cifs trace events of a data request or an open that failed; a WRITE cut
# off by the reconnect is smb3_write_err rc=-11 (EAGAIN), and the kernel sends
# it again (the test checks that it did)
FAILURE_EVENTS = ("smb3_write_err", "smb3_read_err", "smb3_open_err", "smb3_close_err",
                  "smb3_flush_err")
# NT statuses the kernel client provokes on every mount: the NTLMSSP round
# trip, its DFS referral probe, a read at the end of a file
EXPECTED_CMD_STATUSES = ("0xc0000016", "0xc000019c", "0xc0000011")
EAGAIN = "-11"
# error replies the kernel client provokes on every mount: the NTLMSSP round
# trip, its DFS referral probe, the read past the end of a file
EXPECTED_STATUSES = ("STATUS_MORE_PROCESSING_REQUIRED", "STATUS_FS_DRIVER_REQUIRED",
                     "STATUS_END_OF_FILE")


def say(text: str) -> None:
    print(f"cifs-persistent: {text}", flush=True)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check,
                          timeout=COMMAND_TIMEOUT_S)


class Smbcad:
    """smbcad started and killed by PID, its log appended to one file."""

    def __init__(self, tmp: Path) -> None:
        self.share = tmp / "share"
        self.state = tmp / "state"
        self.log = tmp / "smbcad.log"
        self.share.mkdir()
        self.state.mkdir()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> float:
        """Start smbcad; the seconds until it listens."""
        offset = self.log_size()
        began = time.monotonic()
        with open(self.log, "ab") as log:
            log.write(f"==== start {self.starts + 1} ====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smbcad", "--listen", f"127.0.0.1:{PORT}",
                 "--share", f"{SHARE}={self.share},ca", "--state-dir", str(self.state),
                 "--user", f"{USER}:{PASSWORD}", "--log-level", "debug"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        proc = self.proc

        def listening():
            if proc.poll() is not None:
                raise AssertionError(f"smbcad exited with {proc.returncode}:\n"
                                     f"{self.log_text(offset)[-4000:]}")
            return "smbcad: listening on" in self.log_text(offset)

        guestlab.wait_for(listening, START_S, interval_s=0.2, what="smbcad to listen")
        return time.monotonic() - began

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig != signal.SIGKILL:
                self.proc.send_signal(signal.SIGCONT)      # in case it was frozen
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_text(self, offset: int = 0) -> str:
        if not self.log.exists():
            return ""
        with open(self.log, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


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
            say("no cifs trace events in this kernel: checking dmesg only")
            return
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


def first_mismatch(got: bytes, want: bytes) -> str:
    if len(got) != len(want):
        return f"size {len(got)}, want {len(want)}"
    for offset in range(0, len(want), CHUNK):
        if got[offset:offset + CHUNK] != want[offset:offset + CHUNK]:
            return f"chunk {offset // CHUNK} (offset {offset:#x}) differs"
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


def client_queues() -> list[tuple[int, int]]:
    """(Recv-Q, Send-Q) of the kernel client's sockets to smbcad."""
    out = run("ss", "-tnH", "state", "established", f"( dport = :{PORT} )").stdout
    return [(int(fields[0]), int(fields[1])) for fields in map(str.split, out.splitlines())
            if len(fields) >= 4]


def connection_down() -> bool:
    """The client has seen its connection go: DebugData's TCP status is no
    longer 1 (CifsGood)."""
    return "TCP status: 1\n" not in Path("/proc/fs/cifs/DebugData").read_text()


def freeze_then_kill(server: Smbcad) -> str:
    """SIGSTOP smbcad, wait until the client's socket has sent everything
    (its next WRITE lies whole in smbcad's receive queue or was read), then
    SIGKILL.  When the queue does not drain (more in flight than the socket
    buffers hold), let smbcad run a moment and try again."""
    for attempt in range(1, FREEZE_TRIES + 1):
        server.proc.send_signal(signal.SIGSTOP)
        time.sleep(1)                    # the writer issues its next WRITE meanwhile
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            queues = client_queues()
            assert queues, "no client socket to smbcad in ss"
            if all(send == 0 for _, send in queues):
                server.kill()
                return f"frozen (SIGSTOP) until the client's send queue was empty " \
                       f"(attempt {attempt}), then SIGKILL"
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGCONT)
        time.sleep(0.5)
    raise AssertionError(f"the client's send queue to smbcad never drained: {client_queues()}")


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


def check_trace(trace: Trace, mode: str) -> str:
    """What the kernel client did across the restart, from its own trace
    events; AssertionError for a request that failed for good."""
    failed = [event for event in trace.named(*FAILURE_EVENTS)
              if not (event[1] == "smb3_write_err" and event[2].get("rc") == EAGAIN)]
    failed += [event for event in trace.named("smb3_cmd_err")
               if event[2].get("status") not in EXPECTED_CMD_STATUSES]
    assert not failed, failed
    opens = [event for event in trace.named("smb3_open_done")
             if int(event[2].get("des_access", "0"), 16) & GENERIC_WRITE]
    assert opens, "no open for writing in the trace"
    fid = opens[0][2]["fid"]
    reconnects = trace.named("smb3_reconnect")
    assert len(reconnects) == 1, reconnects
    reconnected_at = reconnects[0][0]
    done = [event for event in trace.named("smb3_write_done") if event[2]["fid"] == fid]
    resent = trace.named("smb3_write_err")
    for at, _, fields in resent:          # each cut-off WRITE done again later
        assert any(later > at and f["offset"] == fields["offset"] for later, _, f in done), \
            f"the WRITE at {fields['offset']} cut off at {at} was never done again"
    if mode == "direct":
        assert resent, "no WRITE was in flight at the kill"
    reopens = [event for event in trace.named("smb3_open_done")
               if event[0] > reconnected_at and event[2]["fid"] == fid]
    assert reopens, f"the handle {fid} was not reopened after the reconnect"
    times = [at for at, _, _ in done]
    first_after = min((at for at in times if at > reconnected_at), default=None)
    assert first_after is not None, "no WRITE done after the reconnect"
    before = [at for at in times if at < reconnected_at]
    stall = first_after - (max(before) if before else reconnected_at)
    other = Counter(f"{fields.get('cmd', '?')}:{fields.get('status', '?')}"
                    for _, _, fields in trace.named("smb3_cmd_err"))
    return (f"kernel trace: 1 reconnect; {len(resent)} WRITE(s) cut off (rc=-11) and sent "
            f"again; handle fid={fid} reopened {reopens[0][0] - reconnected_at:.1f} s after "
            f"the connection went, with its old persistent FileId; {len(done)} WRITEs on it, "
            f"{len(before)} before the kill; no WRITE completed for {stall:.1f} s across the "
            f"restart; failed commands (cmd:status), all expected: {dict(other)}")


@pytest.mark.parametrize("mode", ["direct", "buffered"])
def test_kernel_client_writes_through_smbcad_restart(mode, tmp_path):
    began = time.monotonic()

    def say_(text: str) -> None:
        say(f"[{mode}] {text}")

    server = Smbcad(tmp_path)
    point = tmp_path / "mnt"
    point.mkdir()
    progress = tmp_path / "progress"
    on_disk_path = server.share / FILE_NAME
    trace = CifsTrace()
    writer = None
    dmesg_before = len(dmesg_lines())

    def on_server() -> int:
        try:
            return on_disk_path.stat().st_size
        except FileNotFoundError:
            return 0

    def progress_keys() -> list[str]:
        return [key for key, _ in read_progress(progress)]

    try:
        first_start_s = server.start()
        trace.start()
        run("mount", "-t", "cifs", f"//127.0.0.1/{SHARE}", str(point), "-o",
            f"vers=3.0,persistenthandles,hard,username={USER},password={PASSWORD},"
            f"port={PORT}")
        options = mount_options(point)
        assert {"vers=3.0", "persistenthandles", "hard"} <= options, options
        debug_data = Path("/proc/fs/cifs/DebugData").read_text()
        assert "CONTINUOUS AVAILABILITY" in debug_data, debug_data
        say_(f"smbcad listening {first_start_s:.1f} s after start; mounted "
             f"//127.0.0.1/{SHARE} with vers=3.0,persistenthandles,hard (DebugData: share "
             f"capability CONTINUOUS AVAILABILITY)")

        writer = subprocess.Popen(
            [sys.executable, str(WRITER), mode, str(point / FILE_NAME), str(SIZE), str(CHUNK),
             str(SEED), str(progress)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if mode == "direct":
            guestlab.wait_for(lambda: writer.poll() is not None or on_server() >= KILL_AT,
                              WRITE_S, interval_s=0.02,
                              what=f"{KILL_AT >> 20} MiB written on the server")
        else:
            guestlab.wait_for(lambda: writer.poll() is not None or "written" in progress_keys(),
                              WRITE_S, what="the writer to fill the page cache")
        assert writer.poll() is None, \
            f"the writer ended before the kill: {writer.returncode} {writer.stdout.read()}"
        killed_pid = server.proc.pid
        log_offset = server.log_size()
        if mode == "direct":
            how = freeze_then_kill(server)
        else:
            queues = client_queues()
            server.kill()
            how = f"SIGKILL with no request in flight (client socket queues {queues})"
        killed_at = time.monotonic()
        size_at_kill = on_server()
        writes_done = sum(key.isdigit() for key in progress_keys())
        say_(f"smbcad (pid {killed_pid}) {how}: {size_at_kill / (1 << 20):.1f} of "
             f"{SIZE >> 20} MiB in the share directory, {writes_done} of {SIZE // CHUNK} "
             f"write() calls returned")
        if mode == "buffered":
            guestlab.wait_for(connection_down, 30, what="the client to see the connection go")
            (tmp_path / "progress.go").touch()      # fsync now: writeback waits to reconnect
            say_(f"the client saw the connection go {time.monotonic() - killed_at:.1f} s "
                 f"after the kill; fsync issued")
        second_start_s = server.start()
        listening_at = time.monotonic()
        out, _ = writer.communicate(timeout=WRITE_S)
        finished_at = time.monotonic()
        assert writer.returncode == 0, f"writer exit {writer.returncode}:\n{out.decode()}"
        keys = progress_keys()
        assert [key for key in keys if key != "written"] == \
            ["open", *map(str, range(SIZE // CHUNK)), "fsync", "closed"], keys
        say_(f"smbcad started again, listening {listening_at - killed_at:.1f} s after the kill "
             f"(start-up {second_start_s:.1f} s); the writer (one open, {SIZE // CHUNK} x 1 MiB, "
             f"fsync, close) exited 0 {finished_at - killed_at:.1f} s after the kill, "
             f"{finished_at - listening_at:.1f} s after smbcad listened again")

        new_log = server.log_text(log_offset)
        restored = re.search(r"handle store: (\d+) persistent opens restored, (\d+) dropped",
                             new_log)
        assert restored and int(restored.group(1)) >= 1, new_log[-4000:]
        reconnected = re.search(rf"reconnected persistent open 0x[0-9a-f]+ on '{FILE_NAME}'",
                                new_log)
        assert reconnected, new_log[-4000:]
        failures = [line for line in new_log.splitlines() if " → STATUS_" in line
                    and not any(status in line for status in EXPECTED_STATUSES)]
        say_(f"smbcad after the restart: '{restored.group(0)}', "
             f"'{reconnected.group(0)}'; {len(failures)} unexpected error replies in its log")
        for line in failures:
            say_(f"    {line}")

        run("sync")
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        want = pattern(SIZE, SEED)
        results = {name: first_mismatch(read(), want) for name, read in
                   (("mount", (point / FILE_NAME).read_bytes),
                    ("mount O_DIRECT", lambda: read_direct(point / FILE_NAME)),
                    ("share directory", on_disk_path.read_bytes))}
        assert set(results.values()) == {"identical"}, results
        say_(f"data: {SIZE >> 20} MiB (sha256 {hashlib.sha256(want).hexdigest()[:16]}...) "
             f"correct read through the mount (page cache dropped, and O_DIRECT) and from "
             f"the share directory")

        if trace.enabled:
            say_(check_trace(Trace(trace.lines()), mode))
        new_dmesg = dmesg_lines()[dmesg_before:]
        cifs_dmesg = [line for line in new_dmesg if re.search(r"cifs|smb", line, re.I)]
        bad_dmesg = [line for line in cifs_dmesg if DMESG_ERRORS.search(line)]
        assert not bad_dmesg, bad_dmesg
        say_(f"dmesg: {len(cifs_dmesg)} cifs line(s), no error: "
             + " | ".join(line.split("] ", 1)[-1] for line in cifs_dmesg))
        say_(f"scenario took {time.monotonic() - began:.1f} s")
    except BaseException:
        print(f"---- smbcad log (tail) ----\n{server.log_text()[-8000:]}")
        print("---- dmesg ----\n" + "\n".join(dmesg_lines()[dmesg_before:][-60:]))
        if trace.enabled:
            lines = [line for line in trace.lines() if not re.search(
                r"smb3_(\w+_credits|cmd_enter|cmd_done|enter|exit_done)\b", line)]
            print("---- cifs trace (credits, cmd_enter/done left out; tail) ----\n"
                  + "\n".join(lines[-120:]))
        print(f"---- writer progress ----\n{progress.read_text() if progress.exists() else ''}")
        raise
    finally:
        trace.stop()
        if writer is not None and writer.poll() is None:
            (tmp_path / "progress.go").touch()
            writer.kill()
            try:
                writer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        unmount(point)
        server.kill(signal.SIGTERM)


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
