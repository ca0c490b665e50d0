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
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import guestlab
from cifs_client import (CHUNK, CifsTrace, Trace, check_trace, connection_down, dmesg_lines,
                         first_mismatch, mount_options, read_direct, read_progress, run, unmount)
from cifs_writer import pattern

PORT = 4455                      # the guest's own loopback: no other test listens here
SHARE, USER, PASSWORD = "share", "labuser", "Lab-Pass-1"
FILE_NAME = "cifs-persistent.bin"
SIZE = 32 << 20
SEED = 4
KILL_AT = SIZE // 4               # direct: kill smbcad with this much on the server
FREEZE_TRIES = 5
START_S = 120                    # smbcad start-up under TCG: ~11 s, up to ~20 s loaded
WRITE_S = 180                    # the writer, the restart stall included
WRITER = Path(__file__).with_name("cifs_writer.py")
# a dmesg line about the mount that would mean the client gave up on something
DMESG_ERRORS = re.compile(r"I/O error|\bEIO\b|rc\s*=\s*-5\b|error -5\b|reopen|"
                          r"persistent|durable|invalid|fail", re.IGNORECASE)
# error replies the kernel client provokes on every mount: the NTLMSSP round
# trip, its DFS referral probe, the read past the end of a file
EXPECTED_STATUSES = ("STATUS_MORE_PROCESSING_REQUIRED", "STATUS_FS_DRIVER_REQUIRED",
                     "STATUS_END_OF_FILE")


def say(text: str) -> None:
    print(f"cifs-persistent: {text}", flush=True)


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


def client_queues() -> list[tuple[int, int]]:
    """(Recv-Q, Send-Q) of the kernel client's sockets to smbcad."""
    out = run("ss", "-tnH", "state", "established", f"( dport = :{PORT} )").stdout
    return [(int(fields[0]), int(fields[1])) for fields in map(str.split, out.splitlines())
            if len(fields) >= 4]


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

