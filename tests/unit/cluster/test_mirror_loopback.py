"""The mirror end to end on 127.0.0.1: node A's LocalHandleStore on a
MirroredEngine, node B a separate process holding the replica.  A commit
whose await returned on A is on B's disk even if B is SIGKILLed right then;
B killed → A degrades (marker outdated, journal) and keeps answering; B back
→ resync by frames, or by snapshot past the window → in_sync, marker
cleared, journal gone."""

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smbcad.cluster import aggregate_state as ags
from smbcad.cluster.mirror_core import META_KEY, encode_position
from smbcad.cluster.mirror_link import MirrorLink, ReplicaEndpoint
from smbcad.cluster.mirror_proto import Ack, AggregatePosition, Append, Role
from smbcad.cluster.mirrored_engine import MirroredEngine
from smbcad.store import LocalHandleStore, PersistentOpen, StoreFailed, decode, encode
from tests.unit.cluster.mirror_node_child import KEY

CHILD = Path(__file__).with_name("mirror_node_child.py")
ROOT = Path(__file__).resolve().parents[3]
AGG = "aggr1"


def record(key: int, path: str = "f") -> PersistentOpen:
    return PersistentOpen(key, key.to_bytes(16, "little"), b"C" * 16, "u", "d", "s", path,
                          is_durable=True, is_persistent=True, durable_timeout_ms=60000)


class NodeB:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, str(CHILD), str(self.state_dir),
                                      str(self.port)], stdout=subprocess.PIPE, text=True,
                                     env=env)
        line = self.proc.stdout.readline()
        assert line.startswith("PORT "), line
        self.port = int(line.split()[1])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc.stdout.close()

    def records(self) -> dict[int, bytes]:
        engine = ags.KeyedLogEngine(ags.copy_dir(str(self.state_dir), AGG))
        try:
            found = engine.load_keyed()
        finally:
            engine.close()
        found.pop(META_KEY, None)
        return found


async def until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_mirror_loopback(tmp_path):
    node_b = NodeB(tmp_path / "b-state")
    node_b.start()
    a_state, a_mount = str(tmp_path / "a-state"), str(tmp_path / "a-mount")
    try:
        asyncio.run(scenario(node_b, a_state, a_mount))
    finally:
        if node_b.proc.poll() is None:
            node_b.kill()


async def scenario(node_b: NodeB, a_state: str, a_mount: str) -> None:
    loop = asyncio.get_running_loop()
    ags.commit_adoption(a_state, a_mount, ags.load_for_adoption(a_state, AGG, a_mount))
    link = MirrorLink(node_id="a", cluster_key=KEY, incarnation=1, listen=("127.0.0.1", 0),
                      peer=("127.0.0.1", node_b.port), peer_node_id="b",
                      backoff_s=(0.02, 0.1))
    engine = MirroredEngine(state_dir=a_state, aggregate=AGG, mount_point=a_mount, link=link,
                            loop=loop, ack_timeout_s=0.3, window_frames=8,
                            preallocate_bytes=1 << 16)
    await link.start()
    store = await LocalHandleStore.open(engine)
    try:
        # 1. First contact: a snapshot, then in sync; the adoption's marker is cleared.
        await until(lambda: engine.status().in_sync)
        assert engine.status().resyncs["snapshot"] == 1
        await until(lambda: ags.read_marker(a_mount).in_sync)
        await until(lambda: not os.path.exists(os.path.join(a_mount, ".smbca",
                                                            ags.JOURNAL_NAME)))

        # 2. Acknowledged means on B's disk: SIGKILL B the moment the await returns.
        for key in range(1, 6):
            await store.create(record(key))
        node_b.kill()
        assert set(node_b.records()) == set(range(1, 6))
        assert engine.status().last_ack_latency_s < 0.3

        # 3. B down: the next commit degrades (marker, journal) and still completes.
        started = time.monotonic()
        await store.create(record(6))
        assert time.monotonic() - started >= 0.3
        status = engine.status()
        assert status.marker == "outdated" and status.degrade_count == 1
        assert ags.read_marker(a_mount).in_sync is False
        await store.create(record(7))           # degraded: journal append, no timeout
        assert engine.status().degrade_count == 1

        # 4. B back: frames 6, 7 are in the window: incremental resync, then in sync.
        node_b.start()
        await until(lambda: engine.status().in_sync)
        assert engine.status().resyncs["frames"] >= 1
        assert engine.status().resync_duration_s is not None
        await until(lambda: ags.read_marker(a_mount).in_sync)
        await store.update(dataclasses.replace(await store.lookup(7), path="renamed"))
        await store.create(record(8))
        node_b.kill()
        assert set(node_b.records()) == set(range(1, 9))

        # 5. B down past the window: a snapshot on its return.
        for key in range(9, 20):
            await store.create(record(key))
        node_b.start()
        await until(lambda: engine.status().in_sync)
        assert engine.status().resyncs["snapshot"] == 2
        await store.close(1)
        await store.commit_barrier()
        node_b.kill()
        replica = node_b.records()
        assert set(replica) == set(range(2, 20))
        paths = {key: decode(blob).path for key, blob in replica.items()}
        assert paths[7] == "renamed" and paths[19] == "f"
    finally:
        await store.shutdown()
        await link.stop()
    # A's own copy agrees with B's.
    local = ags.KeyedLogEngine(ags.copy_dir(a_state, AGG))
    mine = local.load_keyed()
    local.close()
    mine.pop(META_KEY)
    assert mine == replica


def test_a_fenced_marker_write_fails_the_store(tmp_path):
    """The degrade path cannot write its marker (the LUN is gone): the commit
    fails with StoreFailed instead of being answered."""
    node_b = NodeB(tmp_path / "b-state")
    node_b.start()
    a_state, a_mount = str(tmp_path / "a-state"), str(tmp_path / "a-mount")

    async def run():
        loop = asyncio.get_running_loop()
        ags.commit_adoption(a_state, a_mount, ags.load_for_adoption(a_state, AGG, a_mount))
        link = MirrorLink(node_id="a", cluster_key=KEY, incarnation=1,
                          listen=("127.0.0.1", 0), peer=("127.0.0.1", node_b.port),
                          peer_node_id="b", backoff_s=(0.02, 0.1))
        engine = MirroredEngine(state_dir=a_state, aggregate=AGG, mount_point=a_mount,
                                link=link, loop=loop, ack_timeout_s=0.2,
                                preallocate_bytes=1 << 16)
        await link.start()
        store = await LocalHandleStore.open(engine)
        try:
            await until(lambda: engine.status().in_sync)
            await store.create(record(1))
            node_b.kill()
            # The marker cannot be written (even by root): its tmp name is a directory.
            os.mkdir(os.path.join(a_mount, ".smbca", ags.MARKER_NAME + ".tmp"))
            with pytest.raises(StoreFailed):
                await store.create(record(2))
            with pytest.raises(StoreFailed):
                await store.create(record(3))          # poisoned until restart
            assert ags.read_marker(a_mount).in_sync is True
        finally:
            await store.shutdown()
            await link.stop()

    try:
        asyncio.run(run())
    finally:
        if node_b.proc.poll() is None:
            node_b.kill()


def test_each_start_mirrors_in_a_generation_never_used(tmp_path):
    """A restarted primary must not reuse a generation a replica may hold
    frames of (frames sent but never durable locally): each start takes a
    fresh block, recorded in state.json before use."""
    state, mount = str(tmp_path / "state"), str(tmp_path / "mount")
    ags.commit_adoption(state, mount, ags.load_for_adoption(state, AGG, mount))
    loop = asyncio.new_event_loop()
    link = MirrorLink(node_id="a", cluster_key=KEY, incarnation=1, listen=("127.0.0.1", 0),
                      peer=("127.0.0.1", 9), peer_node_id="b")
    seen = []
    try:
        for _ in range(3):
            engine = MirroredEngine(state_dir=state, aggregate=AGG, mount_point=mount,
                                    link=link, loop=loop, preallocate_bytes=0)
            engine.load()
            seen.append(engine.status().generation)
            assert ags.read_state(state, AGG).generation == seen[-1]
            engine.close()
    finally:
        loop.close()
    assert seen[0] >= 1 << 32 and seen[0] < seen[1] < seen[2]
    assert ags.read_marker(mount).in_sync is False          # still outdated: no partner


def test_link_refuses_a_peer_with_another_node_id(tmp_path):
    async def run():
        b = MirrorLink(node_id="b", cluster_key=KEY, incarnation=1, listen=("127.0.0.1", 0),
                       peer=("127.0.0.1", 9), peer_node_id="a")
        await b.start()
        a = MirrorLink(node_id="a", cluster_key=KEY, incarnation=1, listen=("127.0.0.1", 0),
                       peer=("127.0.0.1", b.listen[1]), peer_node_id="c",
                       backoff_s=(0.01, 0.02))
        await a.start()
        try:
            await until(lambda: a.refused_peers >= 2)
            assert a.connects == 0 and not a.is_open
        finally:
            await a.stop()
            await b.stop()
    asyncio.run(run())


class AckLog:
    """A primary's Endpoint that only records the ACKs it gets."""

    aggregate = AGG

    def __init__(self) -> None:
        self.acks: list[Ack] = []

    def position(self) -> AggregatePosition:
        return AggregatePosition(AGG, Role.PRIMARY, 0, 0, 0)

    def on_connected(self, peer: AggregatePosition) -> None:
        pass

    def on_message(self, message) -> None:
        self.acks.append(message)

    def on_batch_end(self) -> None:
        pass

    def waits_for_acks(self) -> bool:
        return False

    def on_connection_lost(self) -> None:
        pass


def append(mseq: int) -> Append:
    return Append(AGG, 0, mseq, ((mseq, encode(record(mseq))),
                                 (META_KEY, encode_position(0, 0, mseq))))


@contextlib.asynccontextmanager
async def replica_and_primary(tmp_path, *also_on_b):
    """Node b keeps a replica of AGG (plus ``also_on_b`` endpoints); node a
    registers an AckLog for AGG and dials b.  Yields (a, replica, acks)."""
    b = MirrorLink(node_id="b", cluster_key=KEY, incarnation=1, listen=("127.0.0.1", 0),
                   peer=("127.0.0.1", 9), peer_node_id="a")
    replica = await ReplicaEndpoint.open(str(tmp_path), AGG, b)
    b.register(replica)
    for endpoint in also_on_b:
        b.register(endpoint)
    await b.start()
    a = MirrorLink(node_id="a", cluster_key=KEY, incarnation=1, listen=("127.0.0.1", 0),
                   peer=("127.0.0.1", b.listen[1]), peer_node_id="b")
    acks = AckLog()
    a.register(acks)
    await a.start()
    try:
        await until(lambda: a.is_open and b.is_open)
        yield a, b, replica, acks
    finally:
        await a.stop()
        await b.stop()
        await replica.close()


class WaitingOwner(AckLog):
    """An aggregate the replica's node owns, with commits waiting for ACKs."""

    aggregate = "aggr2"

    def waits_for_acks(self) -> bool:
        return True


@pytest.mark.parametrize("owner_waits", [False, True])
def test_replica_group_commits_a_burst_of_appends(tmp_path, monkeypatch, owner_waits):
    """APPENDs that arrive while the replica's log syncs are written next as
    one frame (a resync by frames resends up to the whole window), and only
    the last of their cumulative ACKs is sent; every record is on disk.  The
    connection thread writes them itself, unless the replica's node has
    commits of its own waiting for ACKs on that connection: then the
    replica's worker does (an fdatasync must not hold those ACKs up)."""
    from smbcad.cluster.replica import ReplicaStore
    writers = set()
    write = ReplicaStore.write
    monkeypatch.setattr(ReplicaStore, "write", lambda store, ops: (
        writers.add(threading.current_thread().name.split("_")[0]), write(store, ops))[1])

    async def run():
        async with replica_and_primary(tmp_path, *([WaitingOwner()] if owner_waits else [])
                                       ) as (a, _, _, acks):
            for mseq in range(1, 51):
                assert a.send(append(mseq))
            await until(lambda: acks.acks and acks.acks[-1].mseq == 50)
            assert len(acks.acks) < 25, f"{len(acks.acks)} ACKs for 50 APPENDs"
            assert [ack.mseq for ack in acks.acks] == sorted({ack.mseq for ack in acks.acks})
    asyncio.run(run())
    engine = ags.KeyedLogEngine(ags.copy_dir(str(tmp_path), AGG))
    try:
        found = engine.load_keyed()
    finally:
        engine.close()
    assert ags.position_of(found) == (0, 0, 50)
    assert {key for key in found if key != META_KEY} == set(range(1, 51))
    assert writers == ({"smbcad-replica-aggr1"} if owner_waits else {"smbcad-mirror-a"})


def test_a_replica_whose_write_fails_never_acks_again_and_drops_the_link(tmp_path, monkeypatch):
    """A failed replica write leaves the copy unknown: no ACK for that frame
    or any later one, the replica leaves the link and the connection is
    closed (the primary then degrades or resyncs elsewhere)."""
    from smbcad.cluster.replica import ReplicaStore
    write = ReplicaStore.write

    def write_or_fail(store, ops):
        if any(key == 3 for key, _ in ops):
            raise OSError(5, "Input/output error")
        write(store, ops)
    monkeypatch.setattr(ReplicaStore, "write", write_or_fail)

    async def run():
        async with replica_and_primary(tmp_path) as (a, b, replica, acks):
            for mseq in range(1, 3):
                assert a.send(append(mseq))
                await until(lambda: acks.acks and acks.acks[-1].mseq == mseq)
            for mseq in range(3, 6):
                a.send(append(mseq))
            await until(lambda: b.drops >= 1 and replica.failure is not None)
            await asyncio.sleep(0.1)
            assert max(ack.mseq for ack in acks.acks) == 2
            assert AGG not in b._endpoints
    asyncio.run(run())


def test_a_partner_that_vanished_without_fin_is_replaced_by_its_new_connection(tmp_path):
    """The partner lost power (or its link) with the connection up: no FIN
    reached b, whose connection lives on.  Restarted, the partner dials again:
    its authenticated HELLO replaces the dead connection at once, instead of
    being refused until TCP gives up (which never happens on an idle link)."""
    import secrets
    import socket

    from smbcad.cluster.mirror_proto import FEATURES, NONCE_BYTES, Hello, MirrorConnection

    async def run():
        b = MirrorLink(node_id="b", cluster_key=KEY, incarnation=1, listen=("127.0.0.1", 0),
                       peer=("127.0.0.1", 9), peer_node_id="a")
        await b.start()
        # The old a: handshakes, then goes silent with its socket open.
        dead = socket.create_connection(b.listen)
        conn = MirrorConnection(KEY, Hello("a", secrets.token_bytes(NONCE_BYTES), 1), FEATURES)
        dead.sendall(conn.data_to_send())
        await until(lambda: b.is_open)
        assert b.connects == 1
        # Something that is not the partner cannot push it out.
        intruder = socket.create_connection(b.listen)
        intruder.sendall(b"\x00" * 64)
        a = MirrorLink(node_id="a", cluster_key=KEY, incarnation=2, listen=("127.0.0.1", 0),
                       peer=("127.0.0.1", b.listen[1]), peer_node_id="b",
                       backoff_s=(0.05, 0.2))
        await a.start()
        try:
            await until(lambda: a.is_open and b.connects == 2)
            assert b.is_open and b.drops == 1
            assert b._peer_hello.incarnation == 2
        finally:
            await a.stop()
            await b.stop()
            dead.close()
            intruder.close()
    asyncio.run(run())
