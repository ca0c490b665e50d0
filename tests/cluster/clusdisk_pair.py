"""Two clusdisk processes in the cluster tier's namespaces (pair.py's
Topology), on LUNs that lun_server.py serves (clusdisk_node.py runs each).

Aggregates: ``aggr1`` (home a, LIF 192.0.2.10 on pub0) and ``aggr2`` (home b,
LIF 192.0.2.20); the heartbeat and the peer channel run on the interconnect
(198.51.100.0/24).  No smbcad and no witnessd: clusdisk skips them.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lun_server import naa
from pair import INTERCONNECT, REPO, ManagedProcess, code_env, control, run

LUNS = ("quorum", "aggr1", "aggr2")
LIFS = {"aggr1": "192.0.2.10", "aggr2": "192.0.2.20"}
HEARTBEAT_PORT, PEER_PORT = 7400, 7401
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
CLEAN_SHUTDOWN_LOGGED = "leaving the cluster: clean shutdown"
KEY = bytes(range(32)).hex()


class LunServer:
    def __init__(self, base: Path) -> None:
        self.socket = str(base / "luns.sock")
        self.log = base / "luns.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("lun_server.py")), self.socket,
                 *LUNS], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=code_env(), start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "ready" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"LUN server did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)


class ClusdiskNode(ManagedProcess):
    """clusdisk of node ``side`` ("A" is node 1 "a", "B" node 2 "b")."""

    def __init__(self, topology, side: str, base: Path, luns: LunServer, mode: str,
                 takeover_delay_ms: int, code: Path = REPO) -> None:
        self.topology, self.side, self.luns = topology, side, luns
        self.code = code                    # the source tree its clusdisk comes from
        self.node_id = 1 if side == "A" else 2
        self.base = base / f"clusdisk{side}"
        self.state_dir = self.base / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.base / "clusdisk.sock")
        key_file = self.base / "cluster.key"
        key_file.write_text(KEY)
        os.chmod(key_file, 0o600)
        other = "B" if side == "A" else "A"
        self.config_path = self.base / "clusdisk.yaml"
        self.config_path.write_text(json.dumps({
            "cluster": {"name": "smbca-test", "node_id": self.node_id, "key_file": str(key_file),
                        "nodes": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]},
            "heartbeat": {"interval_ms": 100, "miss_count": 5, "peer_port": PEER_PORT,
                          "links": [{"local": f"{INTERCONNECT[side]}:{HEARTBEAT_PORT}",
                                     "peer": f"{INTERCONNECT[other]}:{HEARTBEAT_PORT}"}]},
            "arbitration": {"mode": mode, "renew_ms": 500, "join_window_ms": 1500,
                            "challenge_wait_ms": 1500, "settle_ms": 1200,
                            "pr_challenge_delay_ms": 300, "pr_settle_ms": 600,
                            "takeover_delay_ms": takeover_delay_ms},
            "scsi": {"scsi_hosts": [self.node_id - 1], "timeout_ms": 2000},
            "quorum": {"disk": naa(LUNS, "quorum")},
            "aggregates": [{"name": name, "home": home, "disk": naa(LUNS, name),
                            "filesystem": "xfs", "mount_point": f"/srv/smbca-test/{name}",
                            "lifs": [{"name": f"lif-{name}", "address": f"{LIFS[name]}/24",
                                      "interface": "pub0"}]}
                           for name, home in (("aggr1", "a"), ("aggr2", "b"))],
            "control": {"socket": self.socket},
            "state_dir": str(self.state_dir), "log_level": "info",
        }, indent=1))
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.base / f"clusdisk.{self.runs}.log"

    def stop(self) -> int:
        """SIGTERM; the exit status.  A previous release's clusdisk that
        completed its clean shutdown (the partner took over: what these tests
        look at) and then hung in its exit counts as 0: those releases await
        answers with Python 3.11's asyncio.wait_for, which can swallow the
        stop's cancellation of the status loop (fixed in 79b24db; this
        checkout's clusdisk must exit, and its tests say so)."""
        status = super().stop()
        if status == -9 and self.code != REPO and CLEAN_SHUTDOWN_LOGGED in self.log_text():
            print(f"clusdisk {self.side} (previous release, {self.code}): completed its clean "
                  "shutdown, then hung in its exit (its asyncio.wait_for bug): killed")
            return 0
        return status

    def log_text(self) -> str:
        return "\n".join((self.base / f"clusdisk.{n}.log").read_text(errors="replace")
                         for n in range(1, self.runs + 1)
                         if (self.base / f"clusdisk.{n}.log").exists())

    def start(self) -> None:
        self.runs += 1
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net={self.topology.path(self.side)}", "--", sys.executable,
                 str(Path(__file__).with_name("clusdisk_node.py")), str(self.config_path),
                 self.luns.socket], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=code_env(self.code), cwd=self.code,
                start_new_session=True)
        self.wait_for(lambda s: True, "its control socket")

    def status(self) -> dict | None:
        if not os.path.exists(self.socket):
            return None
        try:
            reply = control(self.socket, {"command": "status"}, timeout_s=10.0)
        except OSError:
            return None
        return reply.get("status")

    def request(self, message: dict, timeout_s: float = 120.0) -> dict:
        return control(self.socket, message, timeout_s)

    def wait_for(self, predicate, what: str, timeout_s: float = START_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"clusdisk {self.side} exited: {self.log_tail()}")
            status = self.status()
            if status is not None and predicate(status):
                return status
            time.sleep(0.1)
        raise AssertionError(f"clusdisk {self.side}: no {what} within {timeout_s} s; "
                             f"status {self.status()}\n{self.log_tail()}")

    def up(self, status: dict) -> set:
        return {a["name"] for a in status["aggregates"] if a["up"]}

    def addresses(self) -> str:
        return run(["ip", "-n", self.topology.ns[self.side], "-4", "addr", "show", "pub0"]
                   ).stdout.decode()

    def host_log(self) -> str:
        path = self.state_dir / "host.log"
        return path.read_text() if path.exists() else ""
