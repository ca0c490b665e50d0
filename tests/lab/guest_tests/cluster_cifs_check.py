"""COMMAND of tests/lab/test_cluster_failover.py, run by ``lab.py cluster`` in
the client namespace: the kernel cifs client writes through a node failure.

    python cluster_cifs_check.py EVENT

1. Mounts ``//$SMBCA_LIF1/vms`` with ``vers=3.1.1,persistenthandles,hard``
   and enables the client's cifs trace events.
2. cifs_writer.py (O_DIRECT: every write an SMB2 WRITE on the wire) writes
   ``SIZE`` bytes of a known pattern in 1 MiB writes ``PAUSE_S`` apart, so
   that it is still writing when the harness injects EVENT (kill-a: node A
   dies, B takes aggr1 over); then fsync and close.
3. Checks, each printed as a ``cluster-cifs:`` line: the writer exited 0
   with every write done; EVENT ran and ended ok (``$SMBCA_EVENTS``); the
   file is correct read through the mount (page cache dropped, and O_DIRECT)
   and straight from B's mount of aggr1; the client's trace shows the
   reconnect and the handle reopened with its *same persistent FileId*;
   B's smbcad log shows aggr1 adopted with persistent opens and this open
   reconnected.
Exit 0 when everything holds, 1 (with the reason) otherwise.
"""

import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

from cifs_client import (CHUNK, CifsTrace, Trace, check_trace, first_mismatch, mount_options,
                         read_direct, read_progress, run, unmount)
from cifs_writer import pattern

FILE_NAME = "cluster-failover.bin"
SIZE = 40 << 20
PAUSE_S = 0.5
SEED = 11
WRITE_S = 420                    # the writer, the takeover stall included (TCG)
WRITER = Path(__file__).with_name("cifs_writer.py")


def say(text: str) -> None:
    print(f"cluster-cifs: {text}", flush=True)


def events_seen(path: str) -> list[dict]:
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    except FileNotFoundError:
        return []


def main(argv: list[str]) -> int:
    event = argv[0]
    env = os.environ
    lif, user, password = env["SMBCA_LIF1"], env["SMBCA_USER"], env["SMBCA_PASSWORD"]
    run_dir = Path(env["SMBCA_RUN_DIR"])
    point = run_dir / "client-mnt"
    point.mkdir(exist_ok=True)
    progress = run_dir / "writer.progress"
    b_log = Path(env["SMBCA_WORKDIR"]) / f"cluster-{env['SMBCA_MODE']}" / "b" / "smbcad.log"
    b_log_offset = b_log.stat().st_size if b_log.exists() else 0
    trace = CifsTrace()
    writer = None
    try:
        trace.start()
        run("mount", "-t", "cifs", f"//{lif}/vms", str(point), "-o",
            f"vers=3.1.1,persistenthandles,hard,username={user},password={password}")
        options = mount_options(point)
        assert {"vers=3.1.1", "persistenthandles", "hard"} <= options, options
        say(f"mounted //{lif}/vms with vers=3.1.1,persistenthandles,hard")
        began = time.monotonic()
        writer = subprocess.Popen(
            [sys.executable, str(WRITER), "direct", str(point / FILE_NAME), str(SIZE),
             str(CHUNK), str(SEED), str(progress), str(PAUSE_S)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = writer.communicate(timeout=WRITE_S)
        assert writer.returncode == 0, f"writer exit {writer.returncode}:\n{out.decode()}"
        keys = [key for key, _ in read_progress(progress)]
        assert keys == ["open", *map(str, range(SIZE // CHUNK)), "fsync", "closed"], keys
        say(f"writer (one open, {SIZE // CHUNK} x 1 MiB O_DIRECT, fsync, close) exited 0 "
            f"after {time.monotonic() - began:.1f} s")

        records = {r["event"]: r for r in events_seen(env["SMBCA_EVENTS"]) if r["phase"] == "end"}
        assert event in records, f"{event} did not end while the writer ran: {records}"
        assert records[event]["outcome"] == "ok", records[event]
        say(f"{event}: {records[event]['detail']}")

        run("sync")
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        want = pattern(SIZE, SEED)
        on_b = Path(env["SMBCA_AGGR1_MOUNT_B"]) / "vms" / FILE_NAME
        results = {name: first_mismatch(read(), want) for name, read in
                   (("mount", (point / FILE_NAME).read_bytes),
                    ("mount O_DIRECT", lambda: read_direct(point / FILE_NAME)),
                    ("B's mount of aggr1", on_b.read_bytes))}
        assert set(results.values()) == {"identical"}, results
        say(f"data: {SIZE >> 20} MiB correct through the mount (page cache dropped, and "
            f"O_DIRECT) and in B's mount of aggr1 ({on_b})")

        if trace.enabled:
            say(check_trace(Trace(trace.lines()), "direct", one_reconnect=False))
        else:
            say("no cifs trace events in this kernel: FileId not checked")

        log = b_log.read_text(errors="replace")[b_log_offset:]
        adopted = re.search(r"adopted aggr1 from its (\w+) copy: (\d+) persistent opens in "
                            r"[0-9.]+ s", log)
        assert adopted and int(adopted.group(2)) >= 1, \
            f"B's smbcad did not adopt aggr1 with its persistent open:\n{log[-3000:]}"
        reconnected = re.search(rf"reconnected persistent open 0x[0-9a-f]+ on '{FILE_NAME}'", log)
        assert reconnected, f"B's smbcad did not reconnect the open:\n{log[-3000:]}"
        say(f"B's smbcad: '{adopted.group(0)}', '{reconnected.group(0)}'")
        return 0
    except (AssertionError, OSError, subprocess.SubprocessError):
        traceback.print_exc()
        if trace.enabled:
            lines = [line for line in trace.lines() if not re.search(
                r"smb3_(\w+_credits|cmd_enter|cmd_done|enter|exit_done)\b", line)]
            print("---- cifs trace (credits, cmd_enter/done left out; tail) ----\n"
                  + "\n".join(lines[-80:]))
        print("---- writer progress (tail) ----\n"
              + "\n".join((progress.read_text() if progress.exists() else "").splitlines()[-15:]))
        return 1
    finally:
        trace.stop()
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait(30)
        unmount(point)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
