"""Fixtures of the cluster tier: a pair of smbcad nodes and a client in
network namespaces (tests/cluster/pair.py).  Needs root (namespaces, veth);
without it the tier is skipped outside CI and fails in CI."""

import os
import shutil

import pytest

from pair import ClientThread, Node, Topology


@pytest.fixture
def pair(tmp_path):
    """(topology, node A, node B, client thread, aggregate share dir), all
    stopped and deleted at teardown; A and B are started, nothing adopted."""
    if os.geteuid() != 0:
        pytest.skip("the cluster tier needs root (network namespaces)")
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    topology = Topology()
    nodes = []
    client = None
    try:
        mount = tmp_path / "aggr1"
        share_dir = mount / "vms"
        share_dir.mkdir(parents=True)
        for side in ("A", "B"):
            nodes.append(Node(topology, side, tmp_path, mount, share_dir))
        for node in nodes:
            node.start()
        client = ClientThread(topology.path("C"))
        yield topology, nodes[0], nodes[1], client, share_dir
    finally:
        if client is not None:
            client.close()
        for node in nodes:
            node.kill()
        topology.close()
