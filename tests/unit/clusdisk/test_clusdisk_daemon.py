"""Two clusdisk daemons in one event loop: real heartbeat over loopback UDP,
real control socket and sd_notify, the fake LUN behind SgDevice, fake host
operations.  Timings are shrunk (renew 200 ms) so the test takes seconds."""

import asyncio
import random
import socket

import pytest

from clusdisk import config as config_mod
from clusdisk.daemon import Daemon
from clusdisk.disks import LunPath
from clusdisk.scsi import cdb
from clusdisk.scsi.sense import OutcomeKind
from smbca.config import SystemdEnv
from smbca.control import request
from fake_lun import FakeLun
from test_clusdisk_aggregates import FakeHost, FakeLifs, FakeNotifier

KEY = b"0123456789abcdef0123456789abcdef"
QUORUM_NAA = "naa.6001405abcdef0123456789abcdef012"
DATA_NAA = "naa.6001405abcdef0123456789abcdef013"


def free_ports(count: int) -> list[int]:
    """Ports that both nodes can bind for UDP (heartbeat) and TCP (the peer
    channel), taken below the kernel's ephemeral range: a port the kernel
    just handed out as free is also what it hands to the next outgoing
    connection, and the peer channel's listener then found it in use."""
    low, _ = (int(v) for v in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(max(1024, low - 12000), low)
        if port not in ports and _bindable(port):
            ports.append(port)
    return ports


def _bindable(port: int) -> bool:
    held = []
    try:
        for address in ("127.0.0.1", "127.0.0.2"):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                sock = socket.socket(socket.AF_INET, kind)
                held.append(sock)
                sock.bind((address, port))
        return True
    except OSError:
        return False
    finally:
        for sock in held:
            sock.close()


def make_config(node_id: int, ports, tmp_path, mode: str):
    """Node 1 on 127.0.0.1, node 2 on 127.0.0.2 (the peer channel's TCP port
    is the same on both nodes, as in production)."""
    mine, theirs = (ports[0], ports[1]) if node_id == 1 else (ports[1], ports[0])
    me, partner = ("127.0.0.1", "127.0.0.2") if node_id == 1 else ("127.0.0.2", "127.0.0.1")
    data = {
        "cluster": {"node_id": node_id, "key_file": "unused",
                    "nodes": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]},
        "heartbeat": {"interval_ms": 50, "miss_count": 4, "peer_port": ports[2],
                      "links": [{"local": f"{me}:{mine}", "peer": f"{partner}:{theirs}"}]},
        "arbitration": {"mode": mode, "renew_ms": 200, "join_window_ms": 400,
                        "challenge_wait_ms": 500, "settle_ms": 300, "pr_challenge_delay_ms": 100,
                        "pr_settle_ms": 300},
        "scsi": {"scsi_hosts": [node_id - 1], "timeout_ms": 1000},
        "quorum": {"disk": QUORUM_NAA},
        "aggregates": [{"name": "aggr1", "home": "a", "disk": DATA_NAA, "filesystem": "xfs",
                        "mount_point": "/srv/aggr1"}],
        "control": {"socket": str(tmp_path / f"node{node_id}.sock")},
        "state_dir": str(tmp_path / f"state{node_id}"),
    }
    return config_mod.from_dict(data, key_loader=lambda path, key: KEY)


class Rig:
    def __init__(self, tmp_path, mode):
        self.quorum = FakeLun()
        self.data = FakeLun(serial="lab-lun1-data", naa=bytes.fromhex(DATA_NAA[4:]))
        self.luns = [LunPath(f"/dev/sg{i}", f"{h}:0:1:{lun}", f"/dev/sd{'abcd'[i]}",
                             designators=(naa,))
                     for i, (h, lun, naa) in enumerate([(0, 0, QUORUM_NAA), (0, 1, DATA_NAA),
                                                         (1, 0, QUORUM_NAA), (1, 1, DATA_NAA)])]
        self.ports = free_ports(3)
        self.tmp_path = tmp_path
        self.mode = mode
        self.notify_path = str(tmp_path / "notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.setblocking(False)
        self.journals = {1: [], 2: []}
        self.messages: list[bytes] = []

    def listen(self) -> None:
        asyncio.get_running_loop().add_reader(self.notify.fileno(), self._drain)

    def _drain(self) -> None:
        self.messages.extend(self.notifications())

    def device_factory(self, path, **kwargs):
        index = int(path[len("/dev/sg"):])
        lun = (self.quorum, self.data, self.quorum, self.data)[index]
        return lun.device(index // 2, **kwargs)

    def daemon(self, node_id: int, incarnation: int) -> Daemon:
        journal = self.journals[node_id]
        env = SystemdEnv(self.notify_path, 100_000)
        return Daemon(make_config(node_id, self.ports, self.tmp_path, self.mode), env,
                      luns=self.luns, device_factory=self.device_factory,
                      host=FakeHost(journal), lifs=FakeLifs(journal),
                      notifier=FakeNotifier(journal), mounted=lambda block: (),
                      incarnation=incarnation)

    def notifications(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.notify.recv(100))
            except BlockingIOError:
                return out


async def wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("mode", ["scsi2", "pr"])
def test_two_daemons_form_join_and_hand_over(tmp_path, mode):
    rig = Rig(tmp_path, mode)

    async def scenario():
        rig.listen()
        a, b = rig.daemon(1, 10), rig.daemon(2, 20)
        run_a = asyncio.create_task(a.run())
        await wait_for(lambda: a.arbiter.owns_quorum)
        await wait_for(lambda: a.manager.current == {"aggr1"})
        run_b = asyncio.create_task(b.run())
        # ... and B's peer channel has made its first exchange with A
        # (reachable is None until then: on a slow machine that comes after).
        await wait_for(lambda: b.arbiter.state.value == "standby"
                       and a.arbiter.state.value == "online" and b.peer.reachable is True)
        status = (await request(str(tmp_path / "node2.sock"), {"command": "status"}))["status"]
        assert status["state"] == "standby" and status["partner"]["alive"] is True
        assert status["aggregates"] == [{"name": "aggr1", "home": 1, "up": False, "error": "",
                                         "owner": "a", "in_sync": None}]
        assert status["placement"] == {"aggr1": "a"} and status["partner_reachable"] is True
        assert status["peer_protocol"] == "v1" and status["operation"] is None
        assert b.operations.learned and b.manager.current == set()
        # the data LUN is fenced from B while A serves aggr1
        write = await rig.data.device(1).execute(cdb.write_16(0, bytes(512), 512))
        assert write.outcome.kind is OutcomeKind.RESERVATION_CONFLICT
        # clean handover: A stops, B takes the quorum and aggr1 without a reset
        a.request_shutdown()
        assert await asyncio.wait_for(run_a, 10) == 0
        await wait_for(lambda: b.arbiter.state.value == "online-taken-over"
                       and b.manager.current == {"aggr1"})
        assert not [j for j in rig.quorum.journal if j[1].startswith("reset")]
        metrics = b.metrics.registry
        assert metrics.get_sample_value("clusdisk_quorum_owner") == 1
        assert metrics.get_sample_value("clusdisk_disk_owned", {"disk": "aggr1"}) == 1
        assert metrics.get_sample_value("clusdisk_arbitration_outcomes_total",
                                        {"outcome": "handover"}) == 1
        b.request_shutdown()
        assert await asyncio.wait_for(run_b, 10) == 0
        assert rig.journals[2][-1] == ("readonly", "aggr1", "/dev/sdd")
        assert rig.data.scsi2_holder is None and rig.data.pr_holder is None
        assert rig.quorum.scsi2_holder is None and rig.quorum.pr_holder is None
        rig._drain()
    asyncio.run(scenario())
    messages = rig.messages
    assert messages.count(b"READY=1") == 2 and messages.count(b"STOPPING=1") == 2
    assert b"WATCHDOG=1" in messages


def test_missing_disk_exits_1_so_systemd_retries(tmp_path, caplog):
    rig = Rig(tmp_path, "scsi2")
    rig.luns = rig.luns[:1]
    code = asyncio.run(rig.daemon(1, 1).run())
    assert code == 1 and "disk aggr1: no LUN has designator" in caplog.text


def test_lost_challenge_exits_1(tmp_path):
    """B cannot hear A (wrong key): it challenges, A defends, B exits 1."""
    rig = Rig(tmp_path, "scsi2")

    async def scenario():
        a = rig.daemon(1, 10)
        run_a = asyncio.create_task(a.run())
        await wait_for(lambda: a.arbiter.owns_quorum)
        b = rig.daemon(2, 20)
        b.cfg = b.cfg.__class__(**{**b.cfg.__dict__, "key": b"x" * 32})
        code = await asyncio.wait_for(b.run(), 20)
        assert code == 1 and a.arbiter.owns_quorum
        assert b.metrics.registry.get_sample_value(
            "clusdisk_heartbeat_rejected_total", {"reason": "mac"}) > 0
        a.request_shutdown()
        assert await asyncio.wait_for(run_a, 10) == 0
    asyncio.run(scenario())


def test_incarnation_always_grows(tmp_path):
    from clusdisk.daemon import next_incarnation
    first = next_incarnation(str(tmp_path / "state"), 5_000)
    assert first == 5_000
    assert next_incarnation(str(tmp_path / "state"), 1_000) == 5_001     # clock stepped back
    assert next_incarnation(str(tmp_path / "state"), 9_000) == 9_000
    (tmp_path / "ro").write_text("not a directory")
    assert next_incarnation(str(tmp_path / "ro"), 42) == 42               # unwritable: logged
