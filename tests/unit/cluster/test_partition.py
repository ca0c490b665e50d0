"""Each worker's partition of the pair's handle state
(smbcad/cluster/partition.py, docs/multicore.md step 4): its paths, its
mirror link's name and port, and the adoption rule applied to each
partition on its own (aggregate_state with ``partition``)."""

import asyncio

from smbcad.cluster import aggregate_state as ags
from smbcad.cluster.mirror_core import META_KEY, encode_position
from smbcad.cluster.mirror_link import MirrorLink
from smbcad.cluster.partition import SINGLE, Partition
from tests.unit.cluster.mirror_node_child import KEY
from tests.unit.cluster.test_mirror_loopback import until

AGG = "aggr1"


def test_one_process_is_the_unnamed_partition():
    assert SINGLE.name == "" and SINGLE.state_dir("/s") == "/s"
    assert SINGLE.link_name(1) == "1" and SINGLE.port(7445) == 7445
    assert ags.smbca_dir("/m") == "/m/.smbca"


def test_a_workers_partition_has_its_own_paths_name_and_port():
    part = Partition(1, 2)
    assert part.name == "worker-1"
    assert part.state_dir("/s") == "/s/worker-1"
    assert ags.smbca_dir("/m", part.name) == "/m/.smbca/worker-1"
    assert ags.copy_dir(part.state_dir("/s"), AGG) == "/s/worker-1/handles/aggr1"
    assert part.port(7445) == 7446
    # Both nodes must route a ClientGuid to the same index: count and seed
    # are in the names, so another layout is another node to the link.
    assert part.link_name(1) == "1:worker-1-of-2"
    assert Partition(1, 2, routing_seed=0xAB).link_name(2) == "2:worker-1-of-2-seed-ab"
    assert part.link_name(1) < part.link_name(2)          # node 1 still dials


def adopt(state: str, mount: str, partition: str) -> ags.Adoption:
    adoption = ags.load_for_adoption(state, AGG, mount, partition)
    ags.commit_adoption(state, mount, adoption, partition=partition)
    return adoption


def test_each_partition_is_adopted_by_its_own_marker_and_journal(tmp_path):
    """Worker 1's partition degraded (outdated marker and journal on the
    aggregate) while worker 0's is in sync: the next owner adopts each from
    where its own marker says, and neither partition's files touch the other's."""
    mount = str(tmp_path / "mount")
    old = {k: Partition(k, 2) for k in (0, 1)}
    state_a = str(tmp_path / "a")
    for part in old.values():
        assert adopt(part.state_dir(state_a), mount, part.name).source == "empty"
    assert ags.read_marker(mount) is None                      # not the unnamed partition's
    markers = {k: ags.read_marker(mount, part.name) for k, part in old.items()}
    assert markers[0] == markers[1] == ags.Marker(1, 0, False)

    # The partner (node B) holds an in-sync replica of worker 0's partition ...
    state_b = str(tmp_path / "b")
    replica = ags.KeyedLogEngine(ags.copy_dir(old[0].state_dir(state_b), AGG))
    replica.load_keyed()
    replica.write({META_KEY: encode_position(1, 5, 3), 0x10: b"open-of-worker-0"})
    replica.close()
    ags.write_marker(mount, ags.Marker(1, 5, True), partition=old[0].name)
    # ... while worker 1's partition degraded: its journal holds its opens.
    journal = ags.Journal(mount, partition=old[1].name)
    journal.reset({META_KEY: encode_position(1, 7, 9), 0x20: b"open-of-worker-1"})
    journal.close()

    got = {k: adopt(part.state_dir(state_b), mount, part.name) for k, part in old.items()}
    assert (got[0].source, got[0].records) == ("replica", {0x10: b"open-of-worker-0"})
    assert (got[1].source, got[1].records) == ("journal", {0x20: b"open-of-worker-1"})
    assert ags.read_journal(mount, old[0].name) == {META_KEY: encode_position(2, 5, 3),
                                                    0x10: b"open-of-worker-0"}
    assert ags.read_journal(mount) is None
    assert ags.read_state(old[1].state_dir(state_b), AGG).role == "primary"


def test_the_link_refuses_a_partner_running_another_worker_layout():
    """Worker 0 of a node with two workers and worker 0 of a partner with
    three: each refuses the other's HELLO (their clients route differently)."""
    async def run():
        mine, theirs = Partition(0, 2), Partition(0, 3)
        b = MirrorLink(node_id=theirs.link_name(2), cluster_key=KEY, incarnation=1,
                       listen=("127.0.0.1", 0), peer=("127.0.0.1", 9),
                       peer_node_id=theirs.link_name(1))
        await b.start()
        a = MirrorLink(node_id=mine.link_name(1), cluster_key=KEY, incarnation=1,
                       listen=("127.0.0.1", 0), peer=("127.0.0.1", b.listen[1]),
                       peer_node_id=mine.link_name(2), backoff_s=(0.01, 0.02))
        await a.start()
        try:
            await until(lambda: a.refused_peers >= 2)
            assert a.connects == 0 and not a.is_open and not b.is_open
        finally:
            await a.stop()
            await b.stop()
    asyncio.run(run())
