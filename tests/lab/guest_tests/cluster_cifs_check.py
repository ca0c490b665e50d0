"""COMMAND of tests/lab/test_lab_cluster.py, run by ``lab.py cluster`` in
the client namespace: the kernel cifs client writes through node failures,
planned moves and rolling restarts.

    python cluster_cifs_check.py [--target aggr1[,aggr2]] EVENT[,EVENT...] [MODE,...]
                                 [DIRECT_WRITES [PAUSE_S]]
                                 (MODE: direct, buffered; default both)

``--target`` (default aggr1): the aggregates written to, each through its
own LIF and share (aggr1: lif1, ``vms``, home A; aggr2: lif2, ``sql``, home
B).  An EVENT written ``!EVENT`` is expected to be refused (a LIF migration
in the normal state): it must fail with clusdisk's reason, change nothing
the witness clients see and cause no reconnect of the client.

Several events run while the writers write: each must end ok, every handle
is reopened with its same persistent FileId after every reconnect of its
connection, and the data is checked on the mount of the node that holds
the aggregate at the end.  An aggregate that no event moves must see no
reconnect at all (its writer undisturbed by the partner's fate).
DIRECT_WRITES and PAUSE_S size and pace the O_DIRECT writers (default 256
writes of WRITE_SIZE, 0.5 s apart: long enough for one event).

1. Per target: mounts ``//LIF/SHARE`` with ``vers=3.1.1,persistenthandles,hard``
   (the client's cifs trace events on); an idle client: a second mount
   (``nosharesock``: its own connection) with a file open and no I/O; a
   witness client (cluster_witness.py) registered for the LIF with the other
   node's witnessd (cluster_observers.py).
2. Per target, cifs_writer.py writers, each one open of its own file:
   - ``direct`` (O_DIRECT: every write an SMB2 WRITE on the wire) writes
     ``SIZES["direct"]`` bytes of a known pattern in ``WRITE_SIZE`` writes ``PAUSE_S``
     apart, so that it is still writing through the events; then fsync and
     close;
   - ``buffered`` writes its file into the page cache (a write-caching
     lease keeps it there) and waits; once the first event killed a node
     and the client saw its connection go, it fsyncs: the writeback waits
     for the reconnect.
3. Checks, each printed as a ``cluster-cifs:`` line: each writer exited 0
   with every write done; every event ended ok (``$SMBCA_EVENTS``), or was
   refused when expected; each file is correct read through the mount (page
   cache dropped, and O_DIRECT) and straight from the holder's mount of its
   aggregate; the client's trace shows each handle reopened with its *same
   persistent FileId* after each reconnect; the adopting smbcad logged the
   aggregate adopted with the persistent opens and each open reconnected;
   the witness client saw the LIF UNAVAILABLE, then AVAILABLE, at every
   move; the idle handle was reopened with its same FileId, seconds after
   the LIF came up.  A ``cluster-cifs-json:`` line carries the figures.
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
from cifs_client import (CifsTrace, Trace, check_trace, connection_down, connection_ids,
                         first_mismatch, mount_options, read_direct, read_progress, run, unmount)
from cifs_writer import pattern
from cluster_observers import IdleClient, WitnessWatch, gap_within, log_times, write_gaps

MODES = ("direct", "buffered")               # opened in this order (check_trace's open_index)
# 256 KiB: each O_DIRECT write one SMB2 WRITE, as 1 MiB was, at a quarter of
# the bytes to write and to read back three times under TCG (the pauses and
# the events set the writers' length, not the bytes).
WRITE_SIZE = 256 << 10
SIZES = {"direct": 256 * WRITE_SIZE, "buffered": 16 << 20}
PAUSE_S = {"direct": 0.5, "buffered": 0.0}
SEEDS = {"direct": 11, "buffered": 12}
WRITE_S = 900                    # the writers, every event's stall included (TCG)
WAIT_S = 120
WRITER = Path(__file__).with_name("cifs_writer.py")
# aggregate -> (its LIF's variable, LIF name, share, home node)
TARGETS = {"aggr1": ("SMBCA_LIF1", "lif1", "vms", "A"), "aggr2": ("SMBCA_LIF2", "lif2", "sql", "B")}
# the events that surely move the aggregate (a giveback or a restart may or may not)
SURE_MOVES = {"aggr1": ("kill-a", "cut-a", "takeover-b", "relocate-aggr1"),
              "aggr2": ("kill-b", "cut-b", "takeover-a")}
UNPLANNED = ("kill-a", "kill-b", "cut-a", "cut-b")
OTHER = {"A": "B", "B": "A"}
IDLE_SEED = 13


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


class Target:
    """One aggregate written to: its mount, writers, idle and witness clients."""

    def __init__(self, name: str, index: int, env, run_dir: Path, modes: tuple,
                 options: str) -> None:
        variable, self.lif_name, self.share, self.home = TARGETS[name]
        self.name = name
        self.lif = env[variable]
        self.modes = modes
        self.point = run_dir / f"client-{name}"
        self.progress = {mode: run_dir / f"writer-{name}-{mode}.progress" for mode in modes}
        self.files = {mode: f"cluster-{mode}-{name}.bin" for mode in modes}
        self.seeds = {mode: SEEDS[mode] + 10 * index for mode in modes}
        self.idle_name = f"cluster-idle-{name}.bin"
        self.idle_content = pattern(256 << 10, IDLE_SEED + index)
        self.idle = IdleClient(self.lif, self.share, run_dir / f"client-idle-{name}", options)
        self.witness = WitnessWatch([env[f"SMBCA_NODE_{OTHER[self.home]}"],
                                     env[f"SMBCA_NODE_{self.home}"]], self.lif,
                                    run_dir / f"witness-{name}.jsonl")
        self.writers: dict[str, subprocess.Popen] = {}
        self.figures: dict = {}

    def mount(self, options: str) -> None:
        self.point.mkdir(exist_ok=True)
        run("mount", "-t", "cifs", f"//{self.lif}/{self.share}", str(self.point), "-o", options)
        got = mount_options(self.point)
        assert {"vers=3.1.1", "persistenthandles", "hard"} <= got, got
        say(f"mounted //{self.lif}/{self.share} with vers=3.1.1,persistenthandles,hard")

    def start_writer(self, mode: str) -> None:
        self.writers[mode] = subprocess.Popen(
            [sys.executable, str(WRITER), mode, str(self.point / self.files[mode]),
             str(SIZES[mode]), str(WRITE_SIZE), str(self.seeds[mode]), str(self.progress[mode]),
             str(PAUSE_S[mode])],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        guestlab.wait_for(lambda: self.writers[mode].poll() is not None
                          or "open" in progress_keys(self.progress[mode]), WAIT_S,
                          what=f"the {self.name} {mode} writer to open its file")

    def wait_writers(self, began: float) -> None:
        for mode in self.modes:
            out, _ = self.writers[mode].communicate(timeout=WRITE_S)
            assert self.writers[mode].returncode == 0, \
                f"{self.name} {mode} writer exit {self.writers[mode].returncode}:\n{out.decode()}"
            keys = [key for key in progress_keys(self.progress[mode]) if key != "written"]
            assert keys == ["open", *map(str, range(SIZES[mode] // WRITE_SIZE)), "fsync",
                            "closed"], \
                (self.name, mode, keys)
            say(f"[{self.name} {mode}] writer (one open, {SIZES[mode] // WRITE_SIZE} x "
                f"{WRITE_SIZE >> 10} KiB, fsync, "
                f"close) exited 0 after {time.monotonic() - began:.1f} s")

    def check_data(self, env, logs: dict) -> None:
        holder = last_adopter(logs, self.name, self.home)
        for mode in self.modes:
            want = pattern(SIZES[mode], self.seeds[mode])
            on_disk = Path(env[f"SMBCA_{self.name.upper()}_MOUNT_{holder}"]) / self.share \
                / self.files[mode]
            path = self.point / self.files[mode]
            results = {name: first_mismatch(read(), want) for name, read in
                       (("mount", path.read_bytes), ("mount O_DIRECT", lambda: read_direct(path)),
                        (f"{holder}'s mount", on_disk.read_bytes))}
            assert set(results.values()) == {"identical"}, (self.name, mode, results)
            say(f"data [{self.name} {mode}]: {SIZES[mode] / (1 << 20):g} MiB correct through the mount "
                f"(page cache dropped, and O_DIRECT) and in {holder}'s mount of {self.name} "
                f"({on_disk})")

    def stop(self) -> None:
        self.witness.stop()
        self.idle.stop()
        for mode, writer in self.writers.items():
            if writer.poll() is None:
                Path(str(self.progress[mode]) + ".go").touch()
                writer.kill()
                writer.wait(30)
        unmount(self.point)


def main(argv: list[str]) -> int:
    target_names = ["aggr1"]
    if argv[:1] == ["--target"]:
        target_names, argv = argv[1].split(","), argv[2:]
    refused = {name[1:] for name in argv[0].split(",") if name.startswith("!")}
    names = [name.lstrip("!") for name in argv[0].split(",")]
    first = names[0]
    modes = tuple(m for m in MODES if m in (argv[1].split(",") if len(argv) > 1 else MODES))
    if len(argv) > 2:
        SIZES["direct"] = int(argv[2]) * WRITE_SIZE
    if len(argv) > 3:
        PAUSE_S["direct"] = float(argv[3])
    env = os.environ
    clock0 = float(env["SMBCA_CLOCK0"])
    run_dir = Path(env["SMBCA_RUN_DIR"])
    options = (f"vers=3.1.1,persistenthandles,hard,username={env['SMBCA_USER']},"
               f"password={env['SMBCA_PASSWORD']}")
    logs = {side: Path(env["SMBCA_WORKDIR"]) / f"cluster-{env['SMBCA_MODE']}" / side
            / "smbcad.log" for side in ("a", "b")}
    offsets = {side: log.stat().st_size if log.exists() else 0 for side, log in logs.items()}
    clusdisk_logs = [log.with_name("clusdisk.log") for log in logs.values()]
    targets = [Target(name, index, env, run_dir, modes, options)
               for index, name in enumerate(target_names)]
    figures: dict = {"events": names, "targets": {t.name: t.figures for t in targets}}
    trace = CifsTrace()
    since_wall = time.time()
    try:
        trace.start()
        for target in targets:
            # the idle file is made on the server's file system: no open of it in the trace
            (Path(env[f"SMBCA_{target.name.upper()}_MOUNT_{target.home}"]) / target.share
             / target.idle_name).write_bytes(target.idle_content)
        run("sync")
        for target in targets:         # connections: main, idle, main, idle (connection_ids)
            target.mount(options)
            target.idle.start(target.idle_name, target.idle_content)
        began = time.monotonic()
        for target in targets:
            for mode in modes:
                target.start_writer(mode)
        for target in targets:
            if "buffered" in modes:
                guestlab.wait_for(lambda: target.writers["buffered"].poll() is not None
                                  or "written" in progress_keys(target.progress["buffered"]),
                                  WAIT_S, what="the buffered writer to fill the page cache")
            guestlab.wait_for(target.witness.registered, WAIT_S,
                              what="the witness client to register with the other node")
            say(f"idle client: //{target.lif}/{target.share} mounted again with nosharesock, "
                f"'{target.idle_name}' open; witness client registered for {target.lif} with "
                f"node {OTHER[target.home]}")
        early = [r for r in events_seen(env["SMBCA_EVENTS"]) if r["event"] == first]
        assert not early, f"{first} started {early[0]['start_s']} s after COMMAND, before the " \
            f"writers were ready ({time.monotonic() - began:.1f} s after the mount): inject it later"
        say(f"writers {', '.join(modes)} on {', '.join(target_names)} ready "
            f"{time.monotonic() - began:.1f} s after the mount")
        if env.get("SMBCA_READY"):
            Path(env["SMBCA_READY"]).touch()     # lab.py cluster --after-ready: events go
        if "buffered" in modes:
            # fsync only once the node is gone: a FLUSH in flight at the kill comes
            # back EAGAIN to the application (Debian 6.1 does not resend it)
            guestlab.wait_for(lambda: any(r["event"] == first and r["phase"] in ("killed", "end")
                                          for r in events_seen(env["SMBCA_EVENTS"])),
                              WRITE_S, what=f"{first} to kill the node")
            guestlab.wait_for(connection_down, WAIT_S, what="the client to see its connection go")
            for target in targets:
                Path(str(target.progress["buffered"]) + ".go").touch()
            say(f"{first} killed the node; the client saw the connection go; the buffered "
                f"writers' fsync issued")
        for target in targets:
            target.wait_writers(began)

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
        for target in targets:
            for mode in modes:
                gap, gap_end = write_gaps(target.progress[mode])
                target.figures[f"{mode}_longest_gap_s"] = gap
                target.figures[f"{mode}_longest_gap_end_s"] = None if gap_end is None \
                    else round(gap_end - clock0, 3)
                say(f"[{target.name} {mode}] longest pause between acknowledged writes: "
                    f"{gap:.2f} s (ended {target.figures[f'{mode}_longest_gap_end_s']} s after "
                    f"COMMAND started)")

        run("sync")
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        for target in targets:
            target.check_data(env, logs)

        parsed = Trace(trace.lines()) if trace.enabled else None
        connections = connection_ids(parsed) if parsed else []
        if parsed is None:
            say("no cifs trace events in this kernel: FileIds not checked")
        for event_name, start, end in refused_windows:
            if parsed is not None:
                during = [e for e in parsed.named("smb3_reconnect") if start <= e[0] <= end + 1]
                assert not during, f"{event_name} (refused) reconnected the client: {during}"
            gaps = {f"{t.name} {mode}": gap_within(t.progress[mode], start, end)
                    for t in targets for mode in modes}
            figures.setdefault("refused", []).append({"event": event_name, "gaps_s": gaps})
            say(f"{event_name} refused; no reconnect of the client during it "
                f"({end - start:.1f} s); longest pause between acknowledged writes across it: "
                f"{gaps} s")
        text = {side: log.read_text(errors="replace")[offsets[side]:] if log.exists() else ""
                for side, log in logs.items()}
        open_index = 0
        for index, target in enumerate(targets):
            moves = sum(1 for name in names if name in SURE_MOVES[target.name])
            killed = any(name in UNPLANNED for name in names if name in SURE_MOVES[target.name])
            lif_up = sorted(t for log in clusdisk_logs
                            for t in log_times(log, rf"LIF {target.lif_name} up:", since_wall))
            target.figures["lif_up_s"] = [round(t - clock0, 3) for t in lif_up]
            target.witness.stop()
            say(f"[{target.name}] " + target.witness.check(moves, refused_windows))
            target.figures["witness_unavailable_s"] = [
                [round(a - clock0, 3), round(b - clock0, 3)] for a, b in target.witness.pairs()]
            main_conn = connections[2 * index] if len(connections) > 2 * index else None
            reconnects = [e for e in parsed.named("smb3_reconnect")
                          if e[2].get("conn_id") == main_conn] if parsed else []
            adoptions = {side: re.findall(rf"adopted {target.name} from its \w+ copy: (\d+) "
                                          r"persistent opens in ([0-9.]+) s", log)
                         for side, log in text.items()}
            target.figures["adopt_s"] = [float(took) for found in adoptions.values()
                                         for _, took in found]
            adopted = sum(len(found) for found in adoptions.values())
            if parsed is not None and not reconnects and adopted == 0:
                assert moves == 0, f"{target.name}: moved {moves} time(s), no reconnect traced"
                say(f"[{target.name}] not moved: no reconnect of its connection, its writer "
                    f"undisturbed")
                open_index += len(modes)
                continue
            if parsed is not None:
                for mode in modes:
                    say(f"[{target.name} {mode}] " + check_trace(
                        parsed, mode, one_reconnect=False, open_index=open_index,
                        cut_off_expected=killed, conn_id=main_conn))
                    open_index += 1
                text_idle, delays = target.idle.check(parsed, lif_up, began)
                target.figures["idle_reopen_after_lif_up_s"] = delays
                say(f"[{target.name}] {text_idle}")
                idle_conn = connections[2 * index + 1] if len(connections) > 2 * index + 1 \
                    else None
                noticed = [round(e[0] - clock0, 3) for e in parsed.named("smb3_reconnect")
                           if e[2].get("conn_id") == idle_conn]
                target.figures["idle_reconnect_s"] = noticed
                say(f"[{target.name}] idle client's connection {idle_conn}: reconnect began at "
                    f"{noticed} s after COMMAND started; LIF {target.lif_name} up at "
                    f"{target.figures['lif_up_s']} s")
            # every move adopted the opens on the node it went to, which reconnected them
            assert adopted >= moves and all(
                int(count) >= len(modes) for found in adoptions.values() for count, _ in found), \
                f"{target.name} not adopted with the persistent opens at every move: {adoptions}"
            # the node holding it now reconnected every open (a node that adopted
            # it in between may not have: a cut right after a giveback leaves
            # the reopen on the dead connection, and it reaches the next node)
            holder = last_adopter(logs, target.name, target.home).lower()
            for mode in modes:
                reconnected = re.search(rf"reconnected persistent open 0x[0-9a-f]+ on "
                                        rf"'{target.files[mode]}'", text[holder])
                assert reconnected, f"{holder}'s smbcad did not reconnect the {target.name} " \
                    f"{mode} open:\n{text[holder][-3000:]}"
                say(f"[{target.name}] {holder.upper()}'s smbcad [{mode}]: "
                    f"'{reconnected.group(0)}'")
            idle_server = [t for log in logs.values()
                           for t in log_times(log, rf"reconnected persistent open 0x[0-9a-f]+ on "
                                              rf"'{target.idle_name}'", since_wall)]
            assert idle_server, f"no smbcad logged the {target.name} idle open reconnected"
            target.figures["idle_server_reconnect_s"] = sorted(round(t - clock0, 3)
                                                               for t in idle_server)
            say(f"[{target.name}] smbcad reconnected the idle open at "
                f"{target.figures['idle_server_reconnect_s']} s (LIF {target.lif_name} up at "
                f"{target.figures['lif_up_s']} s)")
            say(f"[{target.name}] adoptions with its persistent opens (count, seconds): "
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
        for target in targets:
            for mode in modes:
                path = target.progress[mode]
                content = path.read_text() if path.exists() else ""
                print(f"---- {target.name} {mode} writer progress (tail) ----\n"
                      + "\n".join(content.splitlines()[-10:]))
        return 1
    finally:
        for target in targets:
            target.stop()
        trace.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
