"""A cold start of both nodes after a takeover (issue 11): B took over and
holds aggr1 and aggr2, both nodes stop, A starts first and forms the
cluster with its own placement file still saying aggr1 is A's.  Two real
daemons in one event loop (real heartbeat and peer channel over loopback,
the fake LUNs behind SgDevice, the placement record on the quorum LUN)."""

import asyncio

import pytest

from clusdisk import config as config_mod
from clusdisk.daemon import Daemon
from clusdisk.disks import LunPath
from fake_lun import FakeLun
from smbca.config import SystemdEnv
from smbca.control import request
from test_clusdisk_aggregates import FakeHost, FakeLifs, FakeNotifier
from test_clusdisk_daemon import KEY, free_ports, wait_for

NAA = {"quorum": "naa.6001405abcdef0123456789abcdef012",
       "aggr1": "naa.6001405abcdef0123456789abcdef013",
       "aggr2": "naa.6001405abcdef0123456789abcdef014"}
TAKEOVER_DELAY_MS = 2500


class PairRig:
    def __init__(self, tmp_path, mode):
        self.tmp_path, self.mode = tmp_path, mode
        self.luns = {name: FakeLun(serial=f"lun-{name}", naa=bytes.fromhex(naa[4:]))
                     for name, naa in NAA.items()}
        names = list(NAA)
        self.paths = [(host, name) for host in (0, 1) for name in names]
        self.lun_paths = [LunPath(f"/dev/sg{i}", f"{host}:0:1:{names.index(name)}",
                                  f"/dev/sd{'abcdef'[i]}", designators=(NAA[name],))
                          for i, (host, name) in enumerate(self.paths)]
        self.ports = free_ports(3)
        self.journals = {1: [], 2: []}

    def config(self, node_id):
        ports = self.ports
        mine, theirs = (ports[0], ports[1]) if node_id == 1 else (ports[1], ports[0])
        me, partner = ("127.0.0.1", "127.0.0.2") if node_id == 1 else ("127.0.0.2", "127.0.0.1")
        return config_mod.from_dict({
            "cluster": {"node_id": node_id, "key_file": "unused",
                        "nodes": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]},
            "heartbeat": {"interval_ms": 50, "miss_count": 4, "peer_port": ports[2],
                          "links": [{"local": f"{me}:{mine}", "peer": f"{partner}:{theirs}"}]},
            "arbitration": {"mode": self.mode, "renew_ms": 200, "join_window_ms": 400,
                            "challenge_wait_ms": 500, "settle_ms": 300,
                            "pr_challenge_delay_ms": 100, "pr_settle_ms": 300,
                            "takeover_delay_ms": TAKEOVER_DELAY_MS},
            "scsi": {"scsi_hosts": [node_id - 1], "timeout_ms": 1000},
            "quorum": {"disk": NAA["quorum"]},
            "aggregates": [{"name": name, "home": home, "disk": NAA[name], "filesystem": "xfs",
                            "mount_point": f"/srv/{name}"}
                           for name, home in (("aggr1", "a"), ("aggr2", "b"))],
            "control": {"socket": str(self.tmp_path / f"node{node_id}.sock")},
            "state_dir": str(self.tmp_path / f"state{node_id}"),
        }, key_loader=lambda path, key: KEY)

    def device_factory(self, path, **kwargs):
        host, name = self.paths[int(path[len("/dev/sg"):])]
        return self.luns[name].device(host, **kwargs)

    def daemon(self, node_id, incarnation):
        journal = self.journals[node_id]
        return Daemon(self.config(node_id), SystemdEnv(), luns=self.lun_paths,
                      device_factory=self.device_factory, host=FakeHost(journal),
                      lifs=FakeLifs(journal), notifier=FakeNotifier(journal),
                      mounted=lambda block: (), incarnation=incarnation)


def up(daemon) -> set:
    return set(daemon.manager.current) if daemon.manager is not None else set()


async def status(rig, node_id):
    reply = await request(str(rig.tmp_path / f"node{node_id}.sock"), {"command": "status"})
    return reply["status"]


@pytest.mark.parametrize("mode", ["scsi2", "pr"])
def test_first_node_up_waits_for_the_partner_holding_the_newer_placement(tmp_path, mode):
    rig = PairRig(tmp_path, mode)

    async def scenario():
        a, b = rig.daemon(1, 10), rig.daemon(2, 20)
        run_a = asyncio.create_task(a.run())
        await wait_for(lambda: up(a) == {"aggr1"})
        run_b = asyncio.create_task(b.run())
        await wait_for(lambda: up(b) == {"aggr2"})
        # A leaves (its placement file stays at aggr1 on A); B takes everything
        a.request_shutdown()
        assert await asyncio.wait_for(run_a, 10) == 0
        await wait_for(lambda: up(b) == {"aggr1", "aggr2"})
        await b.operations.keeper.flush()
        taken = b.operations.placement
        assert taken.owned_by(2) == {"aggr1", "aggr2"}
        assert a.operations.placement.owner["aggr1"] == 1
        assert a.operations.placement.generation < taken.generation
        b.request_shutdown()
        assert await asyncio.wait_for(run_b, 10) == 0

        # cold start: A first, alone
        a = rig.daemon(1, 30)
        run_a = asyncio.create_task(a.run())
        await wait_for(lambda: a.arbiter.owns_quorum and a.operations is not None
                       and a.operations.keeper.claimed)
        assert a.operations.placement == taken
        await asyncio.sleep(0.5)                     # a few renew periods of apply
        assert a.manager.current == set(), "A brought up an aggregate B holds"
        seen = await status(rig, 1)
        assert seen["state"] == "online-partner-lost"
        assert seen["placement"] == {"aggr1": "b", "aggr2": "b"}
        assert seen["placement_source"] == "the quorum LUN (written by b)"
        why = {e["name"]: e.get("why") for e in seen["aggregates"]}
        assert why["aggr1"].startswith("placed on b (placement generation "
                                       f"{taken.generation} from the quorum LUN")
        assert why["aggr1"].endswith("which holds its newest copy: waiting for b")
        # B comes back before the takeover delay: it serves both
        b = rig.daemon(2, 40)
        run_b = asyncio.create_task(b.run())
        await wait_for(lambda: up(b) == {"aggr1", "aggr2"})
        assert a.manager.current == set()
        assert a.arbiter.state.value == "online" and b.arbiter.state.value == "standby"
        assert a.operations.placement.same_places(b.operations.placement)
        assert not [e for e in rig.journals[1][-20:] if e[0] == "take"]
        for daemon, task in ((b, run_b), (a, run_a)):
            daemon.request_shutdown()
            assert await asyncio.wait_for(task, 10) == 0
    asyncio.run(scenario())
