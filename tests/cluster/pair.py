"""Two smbcad nodes and a client in network namespaces, and a driver that plays
clusdisk (shared/reference/cluster.md 7(e), cluster tier).

Topology (names carry the test run's PID, so parallel runs never meet)::

    client ns  ── br0 (192.0.2.100/24) ──┬── veth ── node A ns: pub0 192.0.2.1/24
                                         └── veth ── node B ns: pub0 192.0.2.2/24
    node A ns: ic0 198.51.100.1/24 ── veth ── node B ns: ic0 198.51.100.2/24  (interconnect)

The aggregate is a directory on this machine (or a filesystem mounted there),
seen by both nodes; its LIF ``192.0.2.10/24`` is an address the driver moves
between the nodes' ``pub0`` as clusdisk's LIF mover would (then it flushes the
client's neighbour entry, which a gratuitous ARP does in the field).  Each
smbcad runs as ``python -m smbcad --config`` in its node's namespace, with its
own state directory and control socket; the driver sends ``adopt`` and
``release`` there, as clusdisk does.  The client side (smbprotocol) runs in a
worker thread that has entered the client namespace with setns(2), so its
sockets live there while the test's code stays in this process.

Everything is torn down by PID and by name: processes, namespaces, mounts.
"""

import concurrent.futures
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
READY_LINE = "smbcad: listening on"

NODE_ADDRESS = {"A": "192.0.2.1", "B": "192.0.2.2"}
INTERCONNECT = {"A": "198.51.100.1", "B": "198.51.100.2"}
CLIENT_ADDRESS = "192.0.2.100"
LIF = "192.0.2.10"
PREFIX = 24
MIRROR_PORT = 7445
USER, PASSWORD = "smbcatest", "Cluster-Test-Pw1"
CLUSTER_KEY = bytes(range(32)).hex()


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    kwargs.setdefault("timeout", COMMAND_TIMEOUT_S)
    kwargs.setdefault("capture_output", True)
    return subprocess.run(argv, **kwargs)


def code_env(code: Path = REPO) -> dict:
    """The environment that runs the daemons of the source tree ``code``: this
    checkout (before whatever PYTHONPATH the test run has), or another
    release's tree alone (tests/cluster/previous_release.py)."""
    paths = [str(code)] + ([os.environ.get("PYTHONPATH")] if code == REPO else [])
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(filter(None, paths)))


def control(socket_path: str, request: dict, timeout_s: float = 60.0) -> dict:
    """One JSON-line request to an smbcad control socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(socket_path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


class Topology:
    """The three namespaces and their links; ``close()`` deletes them."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns = {"A": f"sca{tag}", "B": f"scb{tag}", "C": f"scc{tag}"}
        made = []
        try:
            for name in self.ns.values():
                run(["ip", "netns", "add", name])
                made.append(name)
            self._batch(None, [
                f"link add pa netns {self.ns['A']} type veth peer name va netns {self.ns['C']}",
                f"link add pb netns {self.ns['B']} type veth peer name vb netns {self.ns['C']}",
                f"link add ic netns {self.ns['A']} type veth peer name ic netns {self.ns['B']}",
            ])
            self._batch(self.ns["C"], [
                "link set lo up", "link add br0 type bridge", "link set br0 up",
                "link set va master br0", "link set vb master br0",
                "link set va up", "link set vb up",
                f"addr add {CLIENT_ADDRESS}/{PREFIX} dev br0",
            ])
            for side, dev in (("A", "pa"), ("B", "pb")):
                self._batch(self.ns[side], [
                    "link set lo up", f"link set {dev} name pub0", "link set pub0 up",
                    f"addr add {NODE_ADDRESS[side]}/{PREFIX} dev pub0",
                    "link set ic name ic0", "link set ic0 up",
                    f"addr add {INTERCONNECT[side]}/{PREFIX} dev ic0",
                ])
        except BaseException:
            for name in made:
                run(["ip", "netns", "del", name], check=False)
            raise

    @staticmethod
    def _batch(ns: str | None, lines: list[str]) -> None:
        argv = ["ip"] + (["-n", ns] if ns else []) + ["-batch", "-"]
        run(argv, input="\n".join(lines).encode())

    def path(self, side: str) -> str:
        return f"/run/netns/{self.ns[side]}"

    def lif_up(self, side: str) -> None:
        """The LIF on ``side``'s public link, and the client forgets the old MAC
        (what the gratuitous ARP rounds of clusdisk's lif.py achieve)."""
        run(["ip", "-n", self.ns[side], "addr", "add", f"{LIF}/{PREFIX}", "dev", "pub0"])
        run(["ip", "-n", self.ns["C"], "neigh", "flush", "to", LIF], check=False)

    def lif_down(self, side: str) -> None:
        run(["ip", "-n", self.ns[side], "addr", "del", f"{LIF}/{PREFIX}", "dev", "pub0"],
            check=False)

    def cut_interconnect(self) -> None:
        run(["ip", "-n", self.ns["A"], "link", "set", "ic0", "down"])

    def heal_interconnect(self) -> None:
        run(["ip", "-n", self.ns["A"], "link", "set", "ic0", "up"])

    def isolate(self, side: str) -> None:
        """Take ``side`` off the public network (no RST from its kernel)."""
        run(["ip", "-n", self.ns[side], "link", "set", "pub0", "down"])

    def close(self) -> None:
        for name in self.ns.values():
            run(["ip", "netns", "del", name], check=False)


class ClientThread:
    """A worker thread inside the client namespace: ``call(fn, *args)`` runs
    ``fn`` there (smbprotocol's sockets are made in the calling thread)."""

    def __init__(self, netns_path: str) -> None:
        self._netns_path = netns_path
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, initializer=self._enter)

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(self._netns_path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)

    def submit(self, fn, *args, **kwargs) -> concurrent.futures.Future:
        """Run ``fn`` there without waiting for it."""
        return self._pool.submit(fn, *args, **kwargs)

    def call(self, fn, *args, timeout_s: float = 60.0, **kwargs):
        return self.submit(fn, *args, **kwargs).result(timeout_s)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class ManagedProcess:
    """A daemon started in its own session (``proc``, its log at
    ``log_path``), stopped with SIGTERM and killed by PID."""

    proc: subprocess.Popen | None = None
    log_path: Path

    def kill(self) -> None:
        """SIGKILL by PID (its session: nsenter and the daemon), then reap."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(STOP_TIMEOUT_S)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            # The daemons report what they wait on after 20 s (smbca.stall):
            # shown with the failing test's output.
            print(f"{type(self).__name__} did not stop within {STOP_TIMEOUT_S} s; its log:\n"
                  f"{self.log_tail(150)}")
            self.kill()
            return -9

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Node(ManagedProcess):
    """One smbcad in a node namespace, restartable on the same state."""

    def __init__(self, topology: Topology, side: str, base: Path, aggregate_mount: Path,
                 share_dir: Path, code: Path = REPO, workers: int = 1) -> None:
        self.topology = topology
        self.side = side
        self.code = code                    # the source tree it runs (another release's?)
        self.base = base / f"node{side}"
        self.base.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.base / "state"
        self.control_socket = str(self.base / "smbcad.sock")
        self.key_file = self.base / "cluster.key"
        self.key_file.write_text(CLUSTER_KEY)
        os.chmod(self.key_file, 0o600)
        self.config_path = self.base / "smbcad.yaml"
        other = "B" if side == "A" else "A"
        self.config_path.write_text(json.dumps({
            "server": {"listen": ["0.0.0.0:445"], "state_dir": str(self.state_dir),
                       "server_name": "SMBCA", "drain_timeout_s": 5, "log_level": "info",
                       **({"workers": workers} if workers != 1 else {})},
            "users": [{"name": USER, "password": PASSWORD}],
            "shares": [{"name": "vms", "path": str(share_dir), "ca": True,
                        "aggregate": "aggr1", "ca_timeout_ms": 60000}],
            "cluster": {
                "node_id": 1 if side == "A" else 2, "name": "smbca-test",
                "control_socket": self.control_socket, "key_file": str(self.key_file),
                "mirror_listen": f"{INTERCONNECT[side]}:{MIRROR_PORT}",
                "mirror_peer": f"{INTERCONNECT[other]}:{MIRROR_PORT}",
                "aggregates": [{"name": "aggr1", "mount_point": str(aggregate_mount),
                                "addresses": [LIF]}]},
        }, indent=1))          # JSON is YAML
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.program = ["-m", "smbcad"]     # or a wrapper script taking smbcad's arguments

    @property
    def log_path(self) -> Path:
        return self.base / f"smbcad.{self.runs}.log"

    def start(self) -> None:
        self.runs += 1
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net={self.topology.path(self.side)}", "--",
                 sys.executable, *self.program, "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=code_env(self.code), cwd=self.code, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"smbcad {self.side} exited: {self.log_tail()}")
            if READY_LINE in self.log_path.read_text(errors="replace") and os.path.exists(
                    self.control_socket):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"smbcad {self.side} did not start: {self.log_tail()}")

    def request(self, **request) -> dict:
        return control(self.control_socket, request)

    def admin(self, *argv: str) -> dict:
        """The ``smbca`` admin command against this node's smbcad."""
        done = run([sys.executable, "-m", "smbca.admin", "smbcad", *argv,
                    "--socket", self.control_socket], env=code_env(), check=False, timeout=30)
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)

    def log_text(self) -> str:
        return "\n".join((self.base / f"smbcad.{run}.log").read_text(errors="replace")
                         for run in range(1, self.runs + 1)
                         if (self.base / f"smbcad.{run}.log").exists())
