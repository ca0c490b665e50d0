"""Fixtures of the cluster tier: a pair of smbcad nodes and a client in
network namespaces (tests/cluster/pair.py).  Needs root (namespaces, veth,
loop devices); without it the tier is skipped outside CI and fails in CI.

``pair`` runs each test twice: with the aggregate as one directory both
nodes see (``directory``), and as an ext4 filesystem reached through a
different loop device and mount point on each node (``two-devices``: a
different st_dev, as a shared LUN has on each node), mounted on one node at a
time and moved by the driver as clusdisk moves a LUN."""

import os
import shutil
from pathlib import Path

import pytest

from pair import REPO, ClientThread, Node, Topology, run


class Aggregate:
    """Where aggr1 lives for each node, and how the driver moves it."""

    def __init__(self, tmp_path: Path, kind: str) -> None:
        self.kind = kind
        self.loops: dict[str, str] = {}
        self.mounted: str | None = None
        if kind == "directory":
            self.mounts = {"A": tmp_path / "aggr1", "B": tmp_path / "aggr1"}
            self.mounts["A"].mkdir()
            (self.mounts["A"] / "vms").mkdir()
            return
        image = tmp_path / "aggr1.img"
        with open(image, "wb") as handle:
            handle.truncate(64 << 20)
        run(["mkfs.ext4", "-q", "-F", str(image)], timeout=60)
        self.mounts = {side: tmp_path / f"aggr1-{side}" for side in ("A", "B")}
        for side in ("A", "B"):
            self.mounts[side].mkdir()
            self.loops[side] = run(["losetup", "--find", "--show", str(image)]
                                   ).stdout.decode().strip()
        self.mount("A")
        (self.mounts["A"] / "vms").mkdir()

    def share_dir(self, side: str) -> Path:
        return self.mounts[side] / "vms"

    def mount(self, side: str) -> None:
        """The filesystem on ``side``'s device only (never two mounts at once)."""
        if self.kind == "directory" or self.mounted == side:
            return
        self.unmount()
        run(["mount", "-t", "ext4", self.loops[side], str(self.mounts[side])])
        self.mounted = side

    def unmount(self) -> None:
        if self.mounted is not None:
            path = str(self.mounts[self.mounted])
            if run(["umount", path], check=False).returncode != 0:
                run(["umount", "-l", path], check=False)
            self.mounted = None

    def close(self) -> None:
        self.unmount()
        for device in self.loops.values():
            run(["losetup", "-d", device], check=False)


class Pair:
    """The fixture's value: the topology, nodes A and B, the client thread,
    the aggregate, and the driver's verbs."""

    def __init__(self, topology, nodes, client, aggregate) -> None:
        self.topology = topology
        self.a, self.b = nodes
        self.nodes = {"A": self.a, "B": self.b}
        self.client = client
        self.aggregate = aggregate

    def adopt(self, side: str) -> dict:
        """clusdisk's bring-up on ``side``: mount, adopt, LIF up."""
        self.aggregate.mount(side)
        answer = self.nodes[side].request(command="adopt", aggregate="aggr1")
        if answer.get("ok"):
            self.topology.lif_up(side)
        return answer

    def release(self, side: str, planned: bool = True) -> dict:
        """clusdisk's tear-down on ``side``: release, LIF down (unmount comes
        with the next mount)."""
        answer = self.nodes[side].request(command="release", aggregate="aggr1", planned=planned)
        self.topology.lif_down(side)
        return answer

    def lost(self, side: str) -> None:
        """``side`` is dead: its LIF goes (the partner takes it over)."""
        self.topology.lif_down(side)

    def share_dir(self, side: str) -> Path:
        return self.aggregate.share_dir(side)

    def mount_point(self, side: str) -> Path:
        return self.aggregate.mounts[side]


@pytest.fixture
def pair_code() -> dict[str, Path]:
    """The source tree each side of ``pair`` runs: this checkout, unless a
    test module overrides this fixture (test_mixed_versions.py: B runs the
    previous release)."""
    return {}


@pytest.fixture
def pair_workers() -> int:
    """``server.workers`` of both nodes of ``pair``: one process, unless a
    test module overrides this fixture (test_cluster_workers.py)."""
    return 1


@pytest.fixture(params=["directory", "two-devices"])
def pair(request, tmp_path, pair_code, pair_workers):
    if os.geteuid() != 0:
        pytest.skip("the cluster tier needs root (network namespaces)")
    for tool in ("ip", "nsenter", "losetup", "mkfs.ext4"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    topology = Topology()
    nodes, client, aggregate = [], None, None
    try:
        aggregate = Aggregate(tmp_path, request.param)
        for side in ("A", "B"):
            nodes.append(Node(topology, side, tmp_path, aggregate.mounts[side],
                              aggregate.share_dir(side), pair_code.get(side, REPO),
                              workers=pair_workers))
        for node in nodes:
            node.start()
        client = ClientThread(topology.path("C"))
        yield Pair(topology, nodes, client, aggregate)
    finally:
        if client is not None:
            client.close()
        for node in nodes:
            node.kill()
        if aggregate is not None:
            aggregate.close()
        topology.close()


@pytest.fixture
def topology():
    """The namespaces alone, for tests that start their own daemons."""
    if os.geteuid() != 0:
        pytest.skip("the cluster tier needs root (network namespaces)")
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    made = Topology()
    try:
        yield made
    finally:
        made.close()
