"""COMMAND of tests/lab/test_lab_cluster.py, run by ``lab.py cluster`` in
the client namespace: the kernel cifs client writes through a node failure.

    python cluster_cifs_check.py [--target aggr1|aggr2] EVENT[,EVENT...] [MODE,...]
                                 [DIRECT_MIB [PAUSE_S]]
                                 (MODE: direct, buffered; default both)

``--target`` (default aggr1): the aggregate written to, through its LIF and
share (aggr1: lif1, ``vms``, home A; aggr2: lif2, ``sql``, home B).  An
EVENT written ``!EVENT`` is expected to be refused (a LIF migration in the
normal state): it must fail with clusdisk's reason, change nothing the
witness client sees and cause no reconnect of the client.

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
   Beside them a witness client (cluster_witness.py) registered for the LIF
   with the other node's witnessd, and an idle client: a second mount
   (``nosharesock``) with a file open and no I/O (cluster_observers.py).
3. Checks, each printed as a ``cluster-cifs:`` line: each writer exited 0
   with every write done; EVENT ran and ended ok (``$SMBCA_EVENTS``); each
   file is correct read through the mount (page cache dropped, and O_DIRECT)
   and straight from B's mount of aggr1; the client's trace shows the
   reconnect and each handle reopened with its *same persistent FileId*;
   B's smbcad log shows aggr1 adopted with the persistent opens and each
   open reconnected; the witness client saw the LIF UNAVAILABLE, then
   AVAILABLE, at every move; the idle handle was reopened with its same
   FileId, seconds after the LIF came up.  A ``cluster-cifs-json:`` line
   carries the figures (bench/failover_bench.py reads it).
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
from cifs_client import (CHUNK, CifsTrace, Trace, check_trace, connection_down, connection_ids,
                         first_mismatch, mount_options, read_direct, read_progress, run, unmount)
from cifs_writer import pattern
from cluster_observers import IdleClient, WitnessWatch, log_times, write_gaps

MODES = ("direct", "buffered")               # opened in this order (check_trace's open_index)
FILE_NAMES = {"direct": "cluster-direct.bin", "buffered": "cluster-buffered.bin"}
SIZES = {"direct": 64 << 20, "buffered": 16 << 20}
PAUSE_S = {"direct": 0.5, "buffered": 0.0}
SEEDS = {"direct": 11, "buffered": 12}
WRITE_S = 420                    # the writers, the takeover stall included (TCG)
WAIT_S = 120
WRITER = Path(__file__).with_name("cifs_writer.py")
# aggregate -> (its LIF's variable, LIF name, share, home node)
TARGETS = {"aggr1": ("SMBCA_LIF1", "lif1", "vms", "A"), "aggr2": ("SMBCA_LIF2", "lif2", "sql", "B")}
# the events that surely move the aggregate (a giveback or a restart may or may not)
SURE_MOVES = {"aggr1": ("kill-a", "cut-a", "takeover-b", "relocate-aggr1"),
              "aggr2": ("kill-b", "takeover-a")}
OTHER = {"A": "B", "B": "A"}
IDLE_NAME, IDLE_SEED = "cluster-idle.bin", 13


def say(text: str) -> None:
    print(f"cluster-cifs: {text}", flush=True)


def events_seen(path: str) -> list[dict]:
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    except FileNotFoundError:
        return []


def last_adopter(logs: dict, aggregate: str, home: str) -> str:
    """The node whose smbcad adopted ``aggregate`` last (by its log's time
    stamps; ``home`` if nobody did): its mount holds the file now.  A killed
    node's mount stays in the guest's one mount namespace, so "mounted" does
    not say."""
    last = {side: max((line[:23] for line in
                       (log.read_text(errors="replace") if log.exists() else "").splitlines()
                       if f"adopted {aggregate} from its" in line), default="")
            for side, log in logs.items()}
    side = max(last, key=last.get)
    return side.upper() if last[side] else home


def progress_keys(path: Path) -> list[str]:
    return [key for key, _ in read_progress(path)]


def main(argv: list[str]) -> int:
    target = "aggr1"
    if argv[:1] == ["--target"]:
        target, argv = argv[1], argv[2:]
    lif_variable, lif_name, share, home = TARGETS[target]
    refused = {name[1:] for name in argv[0].split(",") if name.startswith("!")}
    names = [name.lstrip("!") for name in argv[0].split(",")]
    event = names[0]
    modes = tuple(m for m in MODES if m in (argv[1].split(",") if len(argv) > 1 else MODES))
    if len(argv) > 2:
        SIZES["direct"] = int(argv[2]) << 20
    if len(argv) > 3:
        PAUSE_S["direct"] = float(argv[3])
    killed = any(name.startswith(("kill-", "cut-")) for name in names)
    env = os.environ
    lif, user, password = env[lif_variable], env["SMBCA_USER"], env["SMBCA_PASSWORD"]
    clock0 = float(env["SMBCA_CLOCK0"])
    figures: dict = {"target": target, "events": names}
    run_dir = Path(env["SMBCA_RUN_DIR"])
    point = run_dir / "client-mnt"
    point.mkdir(exist_ok=True)
    progress = {mode: run_dir / f"writer-{mode}.progress" for mode in modes}
    logs = {side: Path(env["SMBCA_WORKDIR"]) / f"cluster-{env['SMBCA_MODE']}" / side
            / "smbcad.log" for side in ("a", "b")}
    offsets = {side: log.stat().st_size if log.exists() else 0 for side, log in logs.items()}
    clusdisk_logs = [log.with_name("clusdisk.log") for log in logs.values()]
    trace = CifsTrace()
    writers: dict[str, subprocess.Popen] = {}
    options_text = f"vers=3.1.1,persistenthandles,hard,username={user},password={password}"
    idle = IdleClient(lif, share, run_dir / "client-idle-mnt", options_text)
    idle_content = pattern(256 << 10, IDLE_SEED)
    witness = WitnessWatch([env[f"SMBCA_NODE_{OTHER[home]}"], env[f"SMBCA_NODE_{home}"]], lif,
                           run_dir / "witness.jsonl")
    checked_since_wall = time.time()
    try:
        trace.start()
        # the idle file is made on the server's file system: no open of it in the trace
        (Path(env[f"SMBCA_{target.upper()}_MOUNT_{home}"]) / share / IDLE_NAME).write_bytes(
            idle_content)
        run("sync")
        run("mount", "-t", "cifs", f"//{lif}/{share}", str(point), "-o", options_text)
        options = mount_options(point)
        assert {"vers=3.1.1", "persistenthandles", "hard"} <= options, options
        say(f"mounted //{lif}/{share} with vers=3.1.1,persistenthandles,hard")
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
        idle.start(IDLE_NAME, idle_content)
        guestlab.wait_for(witness.registered, WAIT_S,
                          what="the witness client to register with the other node")
        say(f"idle client: //{lif}/{share} mounted again with nosharesock, '{IDLE_NAME}' open; "
            f"witness client registered for {lif} with node {OTHER[home]}")
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
        refused_windows = []
        for record in ended:
            if record["event"] in refused:
                assert record["outcome"] == "failed" and "refused" in record["detail"], record
                refused_windows.append((record["event"], clock0 + record["start_s"],
                                        clock0 + record["end_s"]))
            else:
                assert record["outcome"] == "ok", record
            say(f"{record['event']}: {record['outcome']}: {record['detail']}")
        figures["event_records"] = [{k: r.get(k) for k in ("event", "outcome", "start_s",
                                                           "killed_s", "served_s", "end_s")}
                                    for r in ended]
        for mode in modes:
            gap, gap_end = write_gaps(progress[mode])
            figures[f"{mode}_longest_gap_s"] = gap
            figures[f"{mode}_longest_gap_end_s"] = None if gap_end is None \
                else round(gap_end - clock0, 3)
            say(f"[{mode}] longest pause between acknowledged writes: {gap:.2f} s (ended "
                f"{figures[f'{mode}_longest_gap_end_s']} s after COMMAND started)")

        run("sync")
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        holder = last_adopter(logs, target, home)
        for mode in modes:
            want = pattern(SIZES[mode], SEEDS[mode])
            on_disk = Path(env[f"SMBCA_{target.upper()}_MOUNT_{holder}"]) / share / FILE_NAMES[mode]
            path = point / FILE_NAMES[mode]
            results = {name: first_mismatch(read(), want) for name, read in
                       (("mount", path.read_bytes), ("mount O_DIRECT", lambda: read_direct(path)),
                        (f"{holder}'s mount of aggr1", on_disk.read_bytes))}
            assert set(results.values()) == {"identical"}, (mode, results)
            say(f"data [{mode}]: {SIZES[mode] >> 20} MiB correct through the mount (page cache "
                f"dropped, and O_DIRECT) and in {holder}'s mount of {target} ({on_disk})")

        moves = sum(1 for name in names if name in SURE_MOVES[target])
        lif_up = sorted(t for log in clusdisk_logs
                        for t in log_times(log, rf"LIF {lif_name} up:", checked_since_wall))
        witness.stop()
        say(witness.check(moves, refused_windows))
        figures["witness_unavailable_s"] = [[round(a - clock0, 3), round(b - clock0, 3)]
                                            for a, b in witness.pairs()]
        figures["lif_up_s"] = [round(t - clock0, 3) for t in lif_up]
        if trace.enabled:
            parsed = Trace(trace.lines())
            connections = connection_ids(parsed)      # the writers' mount's first, the idle one's
            for index, mode in enumerate(modes):
                say(f"[{mode}] " + check_trace(parsed, mode, one_reconnect=False,
                                               open_index=index, cut_off_expected=killed,
                                               conn_id=connections[0] if connections else None))
            for event_name, start, end in refused_windows:
                during = [e for e in parsed.named("smb3_reconnect") if start <= e[0] <= end + 1]
                assert not during, f"{event_name} (refused) reconnected the client: {during}"
                say(f"{event_name} refused; no reconnect of the client during it "
                    f"({end - start:.1f} s)")
            if moves:
                text_idle, delays = idle.check(parsed, lif_up, began)
                figures["idle_reopen_after_lif_up_s"] = delays
                say(text_idle)
                if len(connections) > 1:
                    noticed = [round(e[0] - clock0, 3) for e in parsed.named("smb3_reconnect")
                               if e[2].get("conn_id") == connections[1]]
                    figures["idle_reconnect_s"] = noticed
                    say(f"idle client's connection {connections[1]}: reconnect began at "
                        f"{noticed} s after COMMAND started; LIF {lif_name} up at "
                        f"{figures['lif_up_s']} s")
        else:
            say("no cifs trace events in this kernel: FileIds not checked")

        # every move adopted the open on the node it went to, which reconnected it
        text = {side: log.read_text(errors="replace")[offsets[side]:] if log.exists() else ""
                for side, log in logs.items()}
        adoptions = {side: re.findall(rf"adopted {target} from its \w+ copy: (\d+) persistent "
                                      r"opens in ([0-9.]+) s", log) for side, log in text.items()}
        figures["adopt_s"] = [float(took) for found in adoptions.values() for _, took in found]
        assert sum(len(found) for found in adoptions.values()) >= moves and all(
            int(count) >= len(modes) for found in adoptions.values() for count, _ in found), \
            f"{target} not adopted with the persistent opens at every move: {adoptions}"
        for mode in modes:
            for side in (s for s, found in adoptions.items() if found):
                reconnected = re.search(rf"reconnected persistent open 0x[0-9a-f]+ on "
                                        rf"'{FILE_NAMES[mode]}'", text[side])
                assert reconnected, f"{side}'s smbcad did not reconnect the {mode} open:\n" \
                    f"{text[side][-3000:]}"
                say(f"{side.upper()}'s smbcad [{mode}]: '{reconnected.group(0)}'")
        if moves:
            idle_server = [t for log in logs.values()
                           for t in log_times(log, rf"reconnected persistent open 0x[0-9a-f]+ on "
                                              rf"'{IDLE_NAME}'", checked_since_wall)]
            assert idle_server, "no smbcad logged the idle open reconnected"
            figures["idle_server_reconnect_s"] = sorted(round(t - clock0, 3) for t in idle_server)
            say(f"smbcad reconnected the idle open at {figures['idle_server_reconnect_s']} s "
                f"(LIF {lif_name} up at {figures['lif_up_s']} s)")
        say(f"adoptions of {target} with its persistent opens (count, seconds): "
            f"{ {side.upper(): found for side, found in adoptions.items()} }")
        print("cluster-cifs-json: " + json.dumps(figures), flush=True)
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
        witness.stop()
        idle.stop()
        trace.stop()
        for mode, writer in writers.items():
            if writer.poll() is None:
                Path(str(progress[mode]) + ".go").touch()
                writer.kill()
                writer.wait(30)
        unmount(point)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
