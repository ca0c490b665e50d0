"""COMMAND of tests/lab/test_lab_cluster.py, run by ``lab.py cluster`` in
the client namespace: the kernel cifs client writes through a node failure.

    python cluster_cifs_check.py EVENT[,EVENT...] [MODE,...] [DIRECT_MIB [PAUSE_S]]
                                 (MODE: direct, buffered; default both)

Several events (planned moves, a rolling restart) run while the writers
write: each must end ok, the handle is reopened with its same persistent
FileId after every reconnect, and the data is checked on the mount of the
node that holds aggr1 at the end.  DIRECT_MIB and PAUSE_S size and pace
the O_DIRECT writer (default 64 MiB, 0.5 s between writes: long enough for
one event).

1. Mounts ``//$SMBCA_LIF1/vms`` with ``vers=3.1.1,persistenthandles,hard``
   and enables the client's cifs trace events.
2. Two cifs_writer.py writers, each one open of its own file:
   - ``direct`` (O_DIRECT: every write an SMB2 WRITE on the wire) writes
     ``SIZES["direct"]`` bytes of a known pattern in 1 MiB writes ``PAUSE_S``
     apart, so that it is still writing when the harness injects EVENT
     (kill-a: node A dies, B takes aggr1 over); then fsync and close;
   - ``buffered`` writes its file into the page cache (a write-caching
     lease keeps it there) and waits; once EVENT started and the client saw
     its connection go, it fsyncs: the writeback waits for the reconnect.
3. Checks, each printed as a ``cluster-cifs:`` line: each writer exited 0
   with every write done; EVENT ran and ended ok (``$SMBCA_EVENTS``); each
   file is correct read through the mount (page cache dropped, and O_DIRECT)
   and straight from B's mount of aggr1; the client's trace shows the
   reconnect and each handle reopened with its *same persistent FileId*;
   B's smbcad log shows aggr1 adopted with the persistent opens and each
   open reconnected.
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

import guestlab
from cifs_client import (CHUNK, CifsTrace, Trace, check_trace, connection_down, first_mismatch,
                         mount_options, read_direct, read_progress, run, unmount)
from cifs_writer import pattern

MODES = ("direct", "buffered")               # opened in this order (check_trace's open_index)
FILE_NAMES = {"direct": "cluster-direct.bin", "buffered": "cluster-buffered.bin"}
SIZES = {"direct": 64 << 20, "buffered": 16 << 20}
PAUSE_S = {"direct": 0.5, "buffered": 0.0}
SEEDS = {"direct": 11, "buffered": 12}
WRITE_S = 420                    # the writers, the takeover stall included (TCG)
WAIT_S = 120
WRITER = Path(__file__).with_name("cifs_writer.py")


def say(text: str) -> None:
    print(f"cluster-cifs: {text}", flush=True)


def events_seen(path: str) -> list[dict]:
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    except FileNotFoundError:
        return []


def last_adopter(logs: dict) -> str:
    """The node whose smbcad adopted aggr1 last (by its log's time stamps; A
    if nobody did): its mount holds the file now.  A killed node's mount
    stays in the guest's one mount namespace, so "mounted" does not say."""
    last = {side: max((line[:23] for line in
                       (log.read_text(errors="replace") if log.exists() else "").splitlines()
                       if "adopted aggr1 from its" in line), default="")
            for side, log in logs.items()}
    side = max(last, key=last.get)
    return side.upper() if last[side] else "A"


def progress_keys(path: Path) -> list[str]:
    return [key for key, _ in read_progress(path)]


def main(argv: list[str]) -> int:
    names = argv[0].split(",")
    event = names[0]
    modes = tuple(m for m in MODES if m in (argv[1].split(",") if len(argv) > 1 else MODES))
    if len(argv) > 2:
        SIZES["direct"] = int(argv[2]) << 20
    if len(argv) > 3:
        PAUSE_S["direct"] = float(argv[3])
    killed = any(name.startswith(("kill-", "cut-")) for name in names)
    env = os.environ
    lif, user, password = env["SMBCA_LIF1"], env["SMBCA_USER"], env["SMBCA_PASSWORD"]
    run_dir = Path(env["SMBCA_RUN_DIR"])
    point = run_dir / "client-mnt"
    point.mkdir(exist_ok=True)
    progress = {mode: run_dir / f"writer-{mode}.progress" for mode in modes}
    logs = {side: Path(env["SMBCA_WORKDIR"]) / f"cluster-{env['SMBCA_MODE']}" / side
            / "smbcad.log" for side in ("a", "b")}
    offsets = {side: log.stat().st_size if log.exists() else 0 for side, log in logs.items()}
    trace = CifsTrace()
    writers: dict[str, subprocess.Popen] = {}
    try:
        trace.start()
        run("mount", "-t", "cifs", f"//{lif}/vms", str(point), "-o",
            f"vers=3.1.1,persistenthandles,hard,username={user},password={password}")
        options = mount_options(point)
        assert {"vers=3.1.1", "persistenthandles", "hard"} <= options, options
        say(f"mounted //{lif}/vms with vers=3.1.1,persistenthandles,hard")
        began = time.monotonic()
        for mode in modes:
            writers[mode] = subprocess.Popen(
                [sys.executable, str(WRITER), mode, str(point / FILE_NAMES[mode]),
                 str(SIZES[mode]), str(CHUNK), str(SEEDS[mode]), str(progress[mode]),
                 str(PAUSE_S[mode])],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            guestlab.wait_for(lambda mode=mode: writers[mode].poll() is not None
                              or "open" in progress_keys(progress[mode]), WAIT_S,
                              what=f"the {mode} writer to open its file")
        if "buffered" in modes:
            guestlab.wait_for(lambda: writers["buffered"].poll() is not None
                              or "written" in progress_keys(progress["buffered"]), WAIT_S,
                              what="the buffered writer to fill the page cache")
        early = [r for r in events_seen(env["SMBCA_EVENTS"]) if r["event"] == event]
        assert not early, f"{event} started {early[0]['start_s']} s after COMMAND, before the " \
            f"writers were ready ({time.monotonic() - began:.1f} s after the mount): inject it later"
        say(f"writers {', '.join(modes)} ready {time.monotonic() - began:.1f} s after the mount")
        if "buffered" in modes:
            # fsync only once the node is gone: a FLUSH in flight at the kill comes
            # back EAGAIN to the application (Debian 6.1 does not resend it)
            guestlab.wait_for(lambda: any(r["event"] == event and r["phase"] in ("killed", "end")
                                          for r in events_seen(env["SMBCA_EVENTS"])),
                              WRITE_S, what=f"{event} to kill the node")
            guestlab.wait_for(connection_down, WAIT_S, what="the client to see its connection go")
            Path(str(progress["buffered"]) + ".go").touch()   # fsync: writeback waits to reconnect
            say(f"{event} killed the node; the client saw the connection go; the buffered "
                f"writer's fsync issued")
        for mode in modes:
            out, _ = writers[mode].communicate(timeout=WRITE_S)
            assert writers[mode].returncode == 0, \
                f"{mode} writer exit {writers[mode].returncode}:\n{out.decode()}"
            keys = [key for key in progress_keys(progress[mode]) if key != "written"]
            assert keys == ["open", *map(str, range(SIZES[mode] // CHUNK)), "fsync", "closed"], \
                (mode, keys)
            say(f"{mode} writer (one open, {SIZES[mode] // CHUNK} x 1 MiB, fsync, close) "
                f"exited 0 after {time.monotonic() - began:.1f} s")

        ended = [r for r in events_seen(env["SMBCA_EVENTS"]) if r["phase"] == "end"]
        assert [r["event"] for r in ended] == names, \
            f"not every event ended while the writers ran: {ended}"
        for record in ended:
            assert record["outcome"] == "ok", record
            say(f"{record['event']}: {record['detail']}")

        run("sync")
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        holder = last_adopter(logs)
        for mode in modes:
            want = pattern(SIZES[mode], SEEDS[mode])
            on_disk = Path(env[f"SMBCA_AGGR1_MOUNT_{holder}"]) / "vms" / FILE_NAMES[mode]
            path = point / FILE_NAMES[mode]
            results = {name: first_mismatch(read(), want) for name, read in
                       (("mount", path.read_bytes), ("mount O_DIRECT", lambda: read_direct(path)),
                        (f"{holder}'s mount of aggr1", on_disk.read_bytes))}
            assert set(results.values()) == {"identical"}, (mode, results)
            say(f"data [{mode}]: {SIZES[mode] >> 20} MiB correct through the mount (page cache "
                f"dropped, and O_DIRECT) and in {holder}'s mount of aggr1 ({on_disk})")

        if trace.enabled:
            for index, mode in enumerate(modes):
                say(f"[{mode}] " + check_trace(Trace(trace.lines()), mode, one_reconnect=False,
                                               open_index=index, cut_off_expected=killed))
        else:
            say("no cifs trace events in this kernel: FileIds not checked")

        # every move adopted the open on the node it went to, which reconnected it
        text = {side: log.read_text(errors="replace")[offsets[side]:] if log.exists() else ""
                for side, log in logs.items()}
        adoptions = {side: re.findall(r"adopted aggr1 from its \w+ copy: (\d+) persistent opens "
                                      r"in [0-9.]+ s", log) for side, log in text.items()}
        # restart-a moves nothing when A holds nothing (the rolling upgrade's
        # restart after a relocation), a LIF migration moves no aggregate
        moves = sum(1 for name in names if name not in ("lif-migrate-lif1", "restart-a"))
        assert sum(len(found) for found in adoptions.values()) >= moves and all(
            int(count) >= len(modes) for found in adoptions.values() for count in found), \
            f"aggr1 not adopted with the persistent opens at every move: {adoptions}"
        for mode in modes:
            for side in (s for s, found in adoptions.items() if found):
                reconnected = re.search(rf"reconnected persistent open 0x[0-9a-f]+ on "
                                        rf"'{FILE_NAMES[mode]}'", text[side])
                assert reconnected, f"{side}'s smbcad did not reconnect the {mode} open:\n" \
                    f"{text[side][-3000:]}"
                say(f"{side.upper()}'s smbcad [{mode}]: '{reconnected.group(0)}'")
        say(f"adoptions of aggr1 with its persistent opens: "
            f"{ {side.upper(): found for side, found in adoptions.items()} }")
        return 0
    except (AssertionError, OSError, subprocess.SubprocessError):
        traceback.print_exc()
        if trace.enabled:
            all_lines = trace.lines()
            (Path(env["SMBCA_WORKDIR"]) / "cifs-trace.txt").write_text("\n".join(all_lines))
            lines = [line for line in all_lines if not re.search(
                r"smb3_(\w+_credits|cmd_enter|cmd_done|enter|exit_done)\b", line)]
            print("---- cifs trace (credits, cmd_enter/done left out; tail) ----\n"
                  + "\n".join(lines[-80:]))
        for mode in modes:
            text = progress[mode].read_text() if progress[mode].exists() else ""
            print(f"---- {mode} writer progress (tail) ----\n"
                  + "\n".join(text.splitlines()[-10:]))
        return 1
    finally:
        trace.stop()
        for mode, writer in writers.items():
            if writer.poll() is None:
                Path(str(progress[mode]) + ".go").touch()
                writer.kill()
                writer.wait(30)
        unmount(point)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
