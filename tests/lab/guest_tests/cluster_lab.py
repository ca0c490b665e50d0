"""The lab cluster harness, guest side (``tests/lab/lab.py cluster``; issue 11
item 7).  Runs in the LUN lab guest as root:

    python cluster_lab.py [--mode scsi2|pr] [--event EVENT@SECONDS]... --workdir DIR -- COMMAND...

1. ext4 on the data LUNs; nodes A and B and the client namespace
   (``cluster_nodes``); on each node witnessd, smbcad and clusdisk as their
   units start them; A's clusdisk first (it forms the cluster), then B's.
2. Waits until aggr1 is up on A and aggr2 on B (clusdisk status) and both
   smbcads have adopted them, then runs COMMAND in the client namespace with
   ``SMBCA_LIF1``, ``SMBCA_LIF2``, ``SMBCA_USER``, ``SMBCA_PASSWORD``,
   ``SMBCA_WORKDIR`` (and ``SMBCA_RUN_DIR``, ``SMBCA_MODE``,
   ``SMBCA_EVENTS`` (JSON lines, one per event start and end),
   ``SMBCA_<AGGR>_MOUNT_<A|B>``) in its environment.
3. Injects the events at their times (seconds after COMMAND started), one
   after the other (``cluster_events``), while a sampler asks both clusdisk
   control sockets every 250 ms.
4. Prints the timeline (JSON between ``==== cluster timeline`` lines; also
   ``timeline.json`` in the saved run directory), copies every daemon's log
   to ``DIR/cluster-MODE/``, prints the logs' tails when something failed,
   tears everything down (processes by PID, mounts, namespaces) and exits
   with COMMAND's status (125 when the cluster never came up).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))         # this checkout's smbca, as the daemons (cwd) use
import guestlab  # noqa: E402
from cluster_events import (UNPLANNED, EventRunner, log_steps, phases, serving,  # noqa: E402
                            smbcad_status)
from cluster_nodes import (AGGREGATES, DAEMONS, NODE_ADDRESS, PASSWORD, SIDES, USER,  # noqa: E402
                           Node, Topology, make_filesystems)
from clusdisk_pair import CLUSTER_KEY, detach  # noqa: E402
from smbca.control import ControlError, request_blocking  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/lab: labvm
from labvm.cluster import parse_event  # noqa: E402  (after the path set-up above)

RUN_ROOT = Path("/run/smbca-lab")          # guest tmpfs: sockets, state, mounts, logs
SAMPLE_PERIOD_S = 0.25
UP_S = 240                                 # every daemon up and both aggregates online
HEARTBEAT_S = 60
SETUP_FAILED = 125
# status fields the sampler always keeps (others are kept when they change)
KNOWN_STATUS = {"node", "mode", "state", "owns_quorum", "member", "partner", "aggregates"}


def say(text: str) -> None:
    print(f"cluster: {text}", file=sys.stderr, flush=True)


def summary(status: dict) -> dict:
    """smbcad's status in brief: per aggregate its phase and mirror role/sync."""
    if "error" in status:
        return status
    return {"mirror_link": status.get("mirror_link"),
            **{a["name"]: f"{a['phase']}, mirror {(a.get('mirror') or {}).get('role', '-')} "
                          f"in_sync={(a.get('mirror') or {}).get('in_sync')}"
               for a in status.get("aggregates", ())}}


class Heartbeat(threading.Thread):
    """A line every ``HEARTBEAT_S`` for as long as the harness runs: the host
    ends a run whose guest stays silent (``labvm.cluster.SILENCE_S``)."""

    def __init__(self, began: float) -> None:
        super().__init__(name="cluster-heartbeat", daemon=True)
        self.began = began
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(HEARTBEAT_S):
            say(f"alive, {time.monotonic() - self.began:.0f} s since the harness started")

    def stop(self) -> None:
        self._halt.set()


def clusdisk_status(node: Node, timeout_s: float = 2.0) -> dict | None:
    try:
        reply = request_blocking(node.sockets["clusdisk"], {"command": "status"}, timeout_s)
    except ControlError:
        return None
    return reply.get("status") if reply.get("ok") else None


class Sampler(threading.Thread):
    """Both clusdisk status sockets every ``SAMPLE_PERIOD_S``; keeps each
    change of a node's state, quorum, partner view or aggregates up."""

    def __init__(self, nodes: dict, clock) -> None:
        super().__init__(name="cluster-sampler", daemon=True)
        self.nodes = nodes
        self.clock = clock
        self.changes: list[dict] = []
        self.latest: dict[str, dict | None] = {side: None for side in SIDES}
        self._last: dict[str, object] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for side, node in self.nodes.items():
                status = clusdisk_status(node)
                self.latest[side] = status
                self._note(side, status)
            self._halt.wait(SAMPLE_PERIOD_S)

    def _note(self, side: str, status: dict | None) -> None:
        if status is None:
            view = {"answering": False}
        else:
            view = {"answering": True, "state": status.get("state"),
                    "owns_quorum": status.get("owns_quorum"),
                    "partner_alive": (status.get("partner") or {}).get("alive"),
                    "aggregates_up": sorted(a["name"] for a in status.get("aggregates", ())
                                            if a.get("up")),
                    "errors": {a["name"]: a["error"] for a in status.get("aggregates", ())
                               if a.get("error")}}
            view.update({key: value for key, value in status.items() if key not in KNOWN_STATUS})
        if self._last.get(side) != view:
            self._last[side] = view
            self.changes.append({"t": round(self.clock(), 3), "node": side.lower(), **view})

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class Cluster:
    def __init__(self, mode: str, workdir: Path | None) -> None:
        self.mode = mode
        self.root = RUN_ROOT / mode
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self.save_dir = (workdir / f"cluster-{mode}") if workdir else None
        if self.save_dir is not None:
            if self.save_dir.exists():
                shutil.rmtree(self.save_dir)
            self.save_dir.mkdir(parents=True)
        self.lab = guestlab.load_map()
        self.topology: Topology | None = None
        self.nodes: dict[str, Node] = {}
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.setup: dict[str, float] = {}
        self.events_file = self.root / "events.jsonl"
        self.ready_file = self.root / "command-ready"

    def clock(self) -> float:
        """Seconds since COMMAND started (negative during the set-up)."""
        return time.monotonic() - self.t0

    def up(self) -> None:
        began = time.monotonic()
        guestlab.reset_luns(self.lab)
        make_filesystems(self.lab, self.root / "mkfs")
        self.setup["mkfs_s"] = round(time.monotonic() - began, 2)
        say(f"ext4 on the data LUNs in {self.setup['mkfs_s']} s; starting witnessd and smbcad")
        key_file = self.root / "cluster.key"
        key_file.write_text(CLUSTER_KEY + "\n")
        key_file.chmod(0o600)
        self.topology = Topology()
        self.nodes = {side: Node(side, self.root, self.topology, self.lab, self.mode, key_file,
                                 self.save_dir) for side in SIDES}
        for node in self.nodes.values():
            node.start(("witnessd", "smbcad"))
        for node in self.nodes.values():
            node.wait_sockets(("witnessd", "smbcad"))
        self.setup["smbcad_witnessd_s"] = round(time.monotonic() - began, 2)
        say(f"witnessd and smbcad answer on both nodes ({self.setup['smbcad_witnessd_s']} s); "
            f"starting clusdisk A, then B")
        # both at once; B's join window is long (cluster_nodes.JOIN_WINDOW_MS), so
        # A forms and B joins it as standby: A owns the quorum, a kill of A is
        # the challenge path
        for side in SIDES:
            self.nodes[side].start(("clusdisk",))
        for side in SIDES:
            self.nodes[side].wait_sockets(("clusdisk",))
        self.setup["clusdisk_s"] = round(time.monotonic() - began, 2)
        home = {side: [name for name, spec in AGGREGATES.items() if spec[0] == side]
                for side in SIDES}
        try:
            guestlab.wait_for(lambda: all(serving(self.nodes[side], home[side])
                                          for side in SIDES),
                              UP_S, interval_s=0.5, what="aggr1 online on A and aggr2 on B")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; clusdisk: {[clusdisk_status(n) for n in self.nodes.values()]}"
                                 f"; smbcad: {[smbcad_status(n) for n in self.nodes.values()]}") from None
        self.setup["cluster_up_s"] = round(time.monotonic() - began, 2)
        self.setup["smbcad"] = {side: summary(smbcad_status(node)) for side, node in self.nodes.items()}

    def environment(self, workdir: Path | None) -> dict:
        env = dict(os.environ, SMBCA_LIF1=AGGREGATES["aggr1"][4], SMBCA_LIF2=AGGREGATES["aggr2"][4],
                   SMBCA_USER=USER, SMBCA_PASSWORD=PASSWORD,
                   SMBCA_WORKDIR=str(workdir or self.root), SMBCA_RUN_DIR=str(self.root),
                   SMBCA_MODE=self.mode, SMBCA_EVENTS=str(self.events_file),
                   SMBCA_READY=str(self.ready_file),
                   SMBCA_CLOCK0=f"{self.t0:.6f}",
                   **{f"SMBCA_NODE_{side}": NODE_ADDRESS[side] for side in SIDES})
        for side, node in self.nodes.items():
            for aggregate, point in node.mount_points.items():
                env[f"SMBCA_{aggregate.upper()}_MOUNT_{side}"] = point
        return env

    def teardown(self) -> None:
        for node in self.nodes.values():
            for daemon in DAEMONS:
                proc = node.procs.get(daemon)
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(30)
        for node in self.nodes.values():
            for point in node.mount_points.values():
                if os.path.ismount(point):
                    detach(point)
        if self.topology is not None:
            self.topology.close()

    def save(self, timeline: dict) -> None:
        (self.root / "timeline.json").write_text(json.dumps(timeline, indent=1))
        if self.save_dir is None:
            return
        for path in [self.root / "timeline.json", self.events_file, *self.root.glob("*/*.yaml")]:
            if path.exists():
                target = self.save_dir / path.relative_to(self.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)

    def log_tails(self) -> None:
        for side, node in self.nodes.items():
            for daemon in DAEMONS:
                print(f"---- node {side} {daemon} log (tail) ----\n{node.log_tail(daemon, 60)}",
                      flush=True)


def event_argument(text: str) -> tuple[str, float]:
    try:
        return parse_event(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cluster_lab.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("scsi2", "pr"), default="scsi2")
    parser.add_argument("--event", action="append", type=event_argument, default=[])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--after-ready", action="store_true")
    parser.add_argument("--settle", type=float, default=0.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no COMMAND")
    heartbeat = Heartbeat(time.monotonic())
    heartbeat.start()
    cluster = Cluster(args.mode, args.workdir)
    sampler = runner = None
    status = SETUP_FAILED
    failed = True
    timeline: dict = {"mode": args.mode, "command": command, "setup": cluster.setup}
    try:
        try:
            cluster.up()
        except (AssertionError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            say(f"the cluster did not come up: {exc}")
            timeline["error"] = str(exc)
            return SETUP_FAILED
        say(f"cluster up ({args.mode}): {cluster.setup}; running {' '.join(command)}")
        cluster.t0 = time.monotonic()
        cluster.wall0 = time.time()
        sampler = Sampler(cluster.nodes, cluster.clock)
        sampler.start()
        runner = EventRunner(cluster, sampler, sorted(args.event, key=lambda e: e[1]),
                             ready_file=cluster.ready_file if args.after_ready else None,
                             settle_s=args.settle)
        proc = subprocess.Popen(cluster.topology.argv("client", *command), stdin=subprocess.DEVNULL,
                                env=cluster.environment(args.workdir))
        runner.command = proc
        runner.start()
        status = proc.wait()
        timeline["command_s"] = round(cluster.clock(), 3)
        timeline["command_status"] = status
        runner.finish()
        failed = status != 0 or any(e["outcome"] != "ok" for e in runner.records)
        return status
    finally:
        heartbeat.stop()             # from here a stuck teardown shows as silence
        if sampler is not None:
            sampler.stop()
            timeline["ownership"] = sampler.changes
        if runner is not None:
            timeline["ready_s"] = runner.ready_s
            timeline["events"] = runner.records
            for record in runner.records:
                if "start_s" in record:
                    record["log"] = log_steps(cluster, record)
                    if record["event"] in UNPLANNED:
                        record["phases"] = phases(record)
        print("==== cluster timeline (JSON) ====\n" + json.dumps(timeline, indent=1)
              + "\n==== end of cluster timeline ====", flush=True)
        if failed:
            cluster.log_tails()
        cluster.teardown()
        cluster.save(timeline)
        if cluster.save_dir is not None:
            say(f"logs, configs and timeline.json in {cluster.save_dir}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
