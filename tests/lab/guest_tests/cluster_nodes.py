"""Two smbca nodes in the lab guest, each running clusdisk, smbcad and
witnessd as their systemd units would (``python -m DAEMON --config FILE``),
and a client namespace (``cluster_lab.py`` drives them).

Topology (one guest kernel, so one mount namespace: each node has its own
mount points, sockets and state directories under ``root``)::

    client ns: br0 192.0.2.100/24 ──┬── vpa ── nodeA: pub0 192.0.2.1/24  (+ LIF 192.0.2.10)
                                    └── vpb ── nodeB: pub0 192.0.2.2/24  (+ LIF 192.0.2.20)
    nodeA ic0a 198.51.100.1/25   ── nodeB ic0b 198.51.100.2/25     heartbeat, handle mirror
    nodeA ic1a 198.51.100.129/25 ── nodeB ic1b 198.51.100.130/25   heartbeat

Aggregates: ``aggr1`` (home A, LUN ``data``, CA share ``vms``, LIF ``lif1``
192.0.2.10/24) and ``aggr2`` (home B, LUN ``data2``, CA share ``sql``, LIF
``lif2`` 192.0.2.20/24), ext4.  Each node's clusdisk sees the LUNs through
its own initiator's SCSI host only (``scsi_hosts``), as in clusdisk_pair.py.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import guestlab
from clusdisk_pair import (HB_INTERVAL_MS, HB_MISS_COUNT, HB_PORT, NODE_IDS, PR_KEYS, detach,
                           mount_points)
from smbca.control import ControlError, request_blocking

REPO = Path(__file__).resolve().parents[3]
SIDES = ("A", "B")
OTHER = {"A": "B", "B": "A"}
CLIENT_NS = "client"
CLIENT_ADDRESS = "192.0.2.100"
NODE_ADDRESS = {"A": "192.0.2.1", "B": "192.0.2.2"}
PUBLIC_PREFIX = 24
INTERCONNECT = (guestlab.Link("ic0", "ic0a", "ic0b", "198.51.100.1", "198.51.100.2", 25),
                guestlab.Link("ic1", "ic1a", "ic1b", "198.51.100.129", "198.51.100.130", 25))
MIRROR_PORT = 7445
USER, PASSWORD = "labuser", "Lab-Pass-1"
# aggregate -> (home, LUN name, share, LIF name, LIF address)
AGGREGATES = {"aggr1": ("A", "data", "vms", "lif1", "192.0.2.10"),
              "aggr2": ("B", "data2", "sql", "lif2", "192.0.2.20")}
DAEMONS = ("witnessd", "smbcad", "clusdisk")          # start order; stop in reverse
# each control socket's own status request (witnessd's requests are events)
STATUS_REQUEST = {"witnessd": {"event": "status"}, "smbcad": {"command": "status"},
                  "clusdisk": {"command": "status"}}
START_S = 180                    # one daemon's start-up under TCG, the host loaded
# short lab timings (seconds under TCG are long): SCSI-2 and PR
ARBITRATION = {
    "scsi2": {"renew_ms": 2000, "challenge_wait_ms": 5000, "settle_ms": 4000},
    "pr": {"renew_ms": 2000, "pr_challenge_delay_ms": 1500, "pr_settle_ms": 3000},
}
# A forms after 3 s alone; B, started with it, waits for A's heartbeat (~10 s of
# Python start-up under TCG) and joins as standby
JOIN_WINDOW_MS = {"A": 3000, "B": 60000}
FS_SLACK_BYTES = 4 << 20


def make_filesystems(lab: guestlab.LabMap, scratch: Path) -> None:
    """ext4 on each data LUN (through initiator A), with the share's
    directory in it; inode tables and journal written now, no lazy init."""
    for aggregate, (_, lun_name, share, _, _) in AGGREGATES.items():
        lun = lab.lun(lun_name)
        size_k = (lun.size_bytes - FS_SLACK_BYTES) // 1024
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", aggregate, "-b", "4096",
                        "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
                        lun.a.sd, f"{size_k}k"], check=True, capture_output=True, timeout=300)
        point = scratch / aggregate
        point.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "ext4", lun.a.sd, str(point)], check=True, timeout=60)
        try:
            (point / share).mkdir()
        finally:
            subprocess.run(["umount", str(point)], check=True, timeout=60)


class Topology:
    """nodeA/nodeB (``guestlab.NetnsPair`` over the interconnect links) and
    the client namespace with the public bridge."""

    def __init__(self) -> None:
        self.pair = guestlab.NetnsPair(links=INTERCONNECT)
        try:
            subprocess.run(["ip", "netns", "add", CLIENT_NS], check=True, timeout=30)
            guestlab._ip_batch([f"link add pub0 netns {self.pair.names[side]} type veth peer "
                                f"name vp{side.lower()} netns {CLIENT_NS}" for side in SIDES])
            guestlab._ip_batch(["link set lo up", "link add br0 type bridge",
                                "link set br0 type bridge forward_delay 0", "link set br0 up",
                                "link set vpa master br0", "link set vpb master br0",
                                "link set vpa up", "link set vpb up",
                                f"addr add {CLIENT_ADDRESS}/{PUBLIC_PREFIX} dev br0"], CLIENT_NS)
            for side in SIDES:
                guestlab._ip_batch([f"addr add {NODE_ADDRESS[side]}/{PUBLIC_PREFIX} dev pub0",
                                    "link set pub0 up"], self.pair.names[side])
        except BaseException:
            self.close()
            raise

    def argv(self, where: str, *command: str) -> list[str]:
        """``command`` in node ``where`` ("A"/"B") or the client namespace."""
        ns = CLIENT_NS if where == "client" else self.pair.names[where]
        return ["nsenter", f"--net=/run/netns/{ns}", "--", *command]

    def ip(self, where: str, *lines: str) -> None:
        guestlab._ip_batch(list(lines), CLIENT_NS if where == "client" else self.pair.names[where])

    def links_down(self, side: str) -> None:
        """Every link of ``side`` down (the node vanishes from both networks;
        its kernel sends nothing, no RST)."""
        devices = ["pub0", *(link.dev_a if side == "A" else link.dev_b for link in INTERCONNECT)]
        self.ip(side, *(f"link set {device} down" for device in devices))

    def drop_lifs(self, side: str) -> list[str]:
        """Remove the LIF addresses ``side`` holds on pub0; the ones removed."""
        out = subprocess.run(["ip", "-n", self.pair.names[side], "-j", "addr", "show", "pub0"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        held = {a["local"] for link in json.loads(out) for a in link.get("addr_info", ())}
        lifs = [address for *_, address in AGGREGATES.values() if address in held]
        if lifs:
            self.ip(side, *(f"addr del {address}/{PUBLIC_PREFIX} dev pub0" for address in lifs))
        return lifs

    def close(self) -> None:
        self.pair.close()
        subprocess.run(["ip", "netns", "del", CLIENT_NS], check=False, timeout=30,
                       stderr=subprocess.DEVNULL)


class Node:
    """One node's three daemons: configs, start (by the units' commands),
    SIGKILL / SIGTERM by PID, logs appended across restarts."""

    def __init__(self, side: str, root: Path, topology: Topology, lab: guestlab.LabMap,
                 mode: str, key_file: Path, log_root: Path | None = None) -> None:
        self.side = side
        self.name = side.lower()
        self.dir = root / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = (log_root or root) / self.name       # the host sees them as they grow
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.topology = topology
        self.lab = lab
        self.mode = mode
        self.key_file = key_file
        self.sockets = {daemon: str(self.dir / f"{daemon}.sock") for daemon in DAEMONS}
        self.mount_points = {aggregate: str(self.dir / "mnt" / aggregate)
                             for aggregate in AGGREGATES}
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts = {daemon: 0 for daemon in DAEMONS}
        for daemon, config in (("clusdisk", self.clusdisk_config()),
                               ("smbcad", self.smbcad_config()),
                               ("witnessd", self.witnessd_config())):
            self.config_path(daemon).write_text(json.dumps(config, indent=1))   # JSON is YAML

    def config_path(self, daemon: str) -> Path:
        return self.dir / f"{daemon}.yaml"

    def log_path(self, daemon: str) -> Path:
        return self.log_dir / f"{daemon}.log"

    # -- configuration -------------------------------------------------------------

    def clusdisk_config(self) -> dict:
        other = OTHER[self.side]
        links = [{"local": f"{self.topology.pair.address(self.side, i)}:{HB_PORT}",
                  "peer": f"{self.topology.pair.address(other, i)}:{HB_PORT}"}
                 for i in range(len(INTERCONNECT))]
        host = self.lab.host_a if self.side == "A" else self.lab.host_b
        return {
            "cluster": {"name": "smbca-lab", "node_id": NODE_IDS[self.side],
                        "key_file": str(self.key_file),
                        "nodes": [{"id": NODE_IDS[s], "name": s.lower(),
                                   "pr_key": f"{PR_KEYS[s]:#018x}"} for s in SIDES]},
            "heartbeat": {"interval_ms": HB_INTERVAL_MS, "miss_count": HB_MISS_COUNT,
                          "links": links},
            "arbitration": {"mode": self.mode, **ARBITRATION[self.mode],
                            "join_window_ms": JOIN_WINDOW_MS[self.side]},
            "scsi": {"scsi_hosts": [host], "reset": "device"},
            "quorum": {"disk": self.lab.quorum.wwid},
            "aggregates": [{"name": name, "home": home.lower(),
                            "disk": self.lab.lun(lun).wwid, "filesystem": "ext4",
                            "mount_point": self.mount_points[name], "mount_options": "noatime",
                            "lifs": [{"name": lif, "address": f"{address}/{PUBLIC_PREFIX}",
                                      "interface": "pub0"}]}
                           for name, (home, lun, _, lif, address) in AGGREGATES.items()],
            "control": {"socket": self.sockets["clusdisk"],
                        "smbcad_socket": self.sockets["smbcad"],
                        "witnessd_socket": self.sockets["witnessd"]},
            "state_dir": str(self.dir / "clusdisk-state"),
            "log_level": "info",
        }

    def smbcad_config(self) -> dict:
        other = OTHER[self.side]
        return {
            "server": {"listen": ["0.0.0.0:445"], "state_dir": str(self.dir / "smbcad-state"),
                       "server_name": "SMBCA", "log_level": "info"},
            "users": [{"name": USER, "password": PASSWORD}],
            "shares": [{"name": share, "path": f"{self.mount_points[name]}/{share}",
                        "aggregate": name, "ca": True, "ca_timeout_ms": 60000}
                       for name, (_, _, share, _, _) in AGGREGATES.items()],
            "cluster": {
                "node_id": NODE_IDS[self.side], "name": "smbca-lab",
                "control_socket": self.sockets["smbcad"], "key_file": str(self.key_file),
                "mirror_listen": f"{self.topology.pair.address(self.side, 0)}:{MIRROR_PORT}",
                "mirror_peer": f"{self.topology.pair.address(other, 0)}:{MIRROR_PORT}",
                "aggregates": [{"name": name, "mount_point": self.mount_points[name],
                                "addresses": [address]}
                               for name, (*_, address) in AGGREGATES.items()]},
        }

    def witnessd_config(self) -> dict:
        return {
            "server": {"listen": ["0.0.0.0:5004"], "epm_listen": ["0.0.0.0:135"],
                       "control_socket": self.sockets["witnessd"], "metrics_listen": None,
                       "log_level": "info"},
            "auth": {"server_name": f"NODE{self.side}", "users": [{"name": USER,
                                                                   "password": PASSWORD}]},
            "witness": {"net_name": "SMBCA", "local_node": self.name,
                        "shares": [share for _, _, share, _, _ in AGGREGATES.values()]},
            "interfaces": [{"node": s.lower(), "ipv4": NODE_ADDRESS[s]} for s in SIDES],
        }

    # -- processes -------------------------------------------------------------------

    def start(self, daemons=DAEMONS) -> None:
        """Start ``daemons`` in this node's network namespace (not waiting)."""
        for daemon in daemons:
            self.starts[daemon] += 1
            with open(self.log_path(daemon), "ab") as log:
                log.write(f"==== lab: start {self.starts[daemon]} of {daemon} on node {self.side} at "
                          f"{time.strftime('%H:%M:%S')} ====\n".encode())
                log.flush()
                self.procs[daemon] = subprocess.Popen(
                    self.topology.argv(self.side, sys.executable, "-m", daemon, "--config",
                                       str(self.config_path(daemon))),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=REPO, start_new_session=True,
                    env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO)))

    def wait_sockets(self, daemons, timeout_s: float = START_S) -> None:
        """Until each daemon's control socket answers ``status``."""
        for daemon in daemons:
            def answering(daemon=daemon):
                proc = self.procs[daemon]
                if proc.poll() is not None:
                    raise RuntimeError(f"{daemon} on node {self.side} exited with "
                                       f"{proc.returncode}:\n{self.log_tail(daemon)}")
                try:
                    request_blocking(self.sockets[daemon], STATUS_REQUEST[daemon], 5)
                except ControlError:
                    return False
                return True
            guestlab.wait_for(answering, timeout_s, interval_s=0.25,
                              what=f"{daemon} on node {self.side} to answer")

    def pids(self) -> dict[str, int]:
        return {daemon: proc.pid for daemon, proc in self.procs.items() if proc.poll() is None}

    def signal(self, daemon: str, sig: int) -> None:
        proc = self.procs.get(daemon)
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, sig)

    def kill(self) -> dict[str, int]:
        """SIGKILL every daemon, by PID; the PIDs killed."""
        pids = self.pids()
        for daemon in DAEMONS:
            self.signal(daemon, signal.SIGKILL)
        for daemon in pids:
            self.procs[daemon].wait(30)
        return pids

    def stop(self, timeout_s: float = 90) -> dict[str, int | None]:
        """SIGTERM in reverse start order (clusdisk first: it releases the
        aggregates through smbcad), each waited for; their exit statuses."""
        statuses = {}
        for daemon in reversed(DAEMONS):
            proc = self.procs.get(daemon)
            if proc is None:
                continue
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(30)
            statuses[daemon] = proc.returncode
        return statuses

    def unmount_stale(self) -> None:
        """What a killed node left mounted (its kernel would have gone with it)."""
        for point in self.mount_points.values():
            if os.path.ismount(point):
                detach(point)

    def log_tail(self, daemon: str, lines: int = 40) -> str:
        try:
            text = self.log_path(daemon).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def lun_mounts(lab: guestlab.LabMap) -> dict[str, list[str]]:
    """Where each data LUN is mounted, through either initiator (clean-up)."""
    out = {}
    for _, lun_name, *_ in AGGREGATES.values():
        lun = lab.lun(lun_name)
        out[lun_name] = mount_points(lun.a.sd) + mount_points(lun.b.sd)
    return out
