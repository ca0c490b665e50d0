"""Two nodes that each run two worker processes (``server.workers: 2``,
docs/multicore.md step 4), seen by smbprotocol from a client namespace.

Each worker is a member of the pair for its partition of aggregate
``aggr1``: the persistent opens of the ClientGuids routed to it, with its
own mirror link to the partner's worker of the same index.  Two clients
whose ClientGuids route to worker 0 and worker 1 each hold a persistent
open with a lease and a byte-range lock, and write.  Then:

* **planned move** A to B and **kill -9 of the owner** B back to A: both
  partitions are handed over (summed in the node's answer, one per worker
  in its ``workers`` list), each client's DH2C gets its persistent FileId
  on the worker its ClientGuid routes to, and every byte and lock is there;
* **one worker killed** on the owner: its successor takes its partition
  back from its own copy (no adopt from clusdisk: the node still owns the
  aggregate), the other worker's client is untouched, nobody else can open
  the file meanwhile (its share modes are kept through the restart), and
  the partner's replica of that partition is back in sync.
"""

import os
import signal
import threading
import time
import uuid

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")

from persistent_client import LEASE_RWH, create, one  # noqa: E402
from smbprotocol.create_contexts import SMB2CreateResponseLeaseV2  # noqa: E402
from test_cluster_failover import (  # noqa: E402
    STATUS_FILE_NOT_AVAILABLE, Client, Owner, check_lock_came_along, status_of, wait_in_sync)

from smbcad.workers.routing import owner_of  # noqa: E402

WORKERS = 2
WAIT_S = 30.0


@pytest.fixture
def pair_workers() -> int:
    return WORKERS


def guid_for(worker: int) -> uuid.UUID:
    """A ClientGuid that both nodes route to ``worker`` (seed 0)."""
    for number in range(1, 1000):
        guid = uuid.UUID(int=number * 0x1000193 + 7)
        if owner_of(guid.bytes_le, WORKERS) == worker:
            return guid
    raise AssertionError(f"no ClientGuid for worker {worker}")


def owners(pair) -> list[Owner]:
    made = []
    for worker in range(WORKERS):
        owner = Owner(pair.client, f"vm{worker}.vhdx", client_guid=guid_for(worker))
        for index in range(4):
            owner.write(index)
        owner.lock(sequence_number=1, sequence_index=1)
        made.append(owner)
    return made


def opens_by_worker(node) -> dict[int, int]:
    """DurableFileId → the worker that holds it, from the node's merged listing."""
    answer = node.request(command="opens")
    assert answer["ok"], answer
    return {int(entry["durable_file_id"], 16): entry["worker"] for entry in answer["opens"]}


def durable_id(owner: Owner) -> int:
    return int.from_bytes(owner.file_id[:8], "little")


def reconnect_all(made: list[Owner], node, only: tuple[int, ...] | None = None) -> None:
    """Reconnect the owners (those of the workers in ``only``); each open is
    then held by the worker its ClientGuid routes to."""
    for worker, owner in enumerate(made):
        if only is not None and worker not in only:
            continue
        contexts = owner.reconnect()
        assert owner.handle.file_id[:8] == owner.file_id[:8], "another persistent FileId"
        assert one(contexts, SMB2CreateResponseLeaseV2)["lease_state"].get_value() == LEASE_RWH
        owner.read_back()
    held = opens_by_worker(node)
    assert {durable_id(owner): worker for worker, owner in enumerate(made)} == held


def test_both_partitions_move_with_the_aggregate(pair):
    adopted = pair.adopt("A")
    assert adopted["ok"] and len(adopted["workers"]) == WORKERS, adopted
    wait_in_sync(pair.a)
    made = owners(pair)
    assert opens_by_worker(pair.a) == {durable_id(owner): worker
                                       for worker, owner in enumerate(made)}
    wait_in_sync(pair.a, past_mseq=0)

    released = pair.release("A", planned=True)
    assert released["ok"] and released["handed_over"] == WORKERS, released
    adopted = pair.adopt("B")
    assert adopted["ok"] and adopted["restored"] == WORKERS, (adopted, pair.b.log_tail())
    assert [entry["restored"] for entry in adopted["workers"]] == [1] * WORKERS
    reconnect_all(made, pair.b)
    for owner in made:
        check_lock_came_along(owner)
        owner.lock(sequence_number=1, sequence_index=2)     # held again, for the crash

    # The owner dies: A adopts each partition from its own replica.
    wait_in_sync(pair.b, past_mseq=0)
    pair.b.kill()
    pair.lost("B")
    adopted = pair.adopt("A")
    assert adopted["ok"] and adopted["restored"] == WORKERS, (adopted, pair.a.log_tail())
    assert [entry["source"] for entry in adopted["workers"]] == ["replica"] * WORKERS
    reconnect_all(made, pair.a)
    for owner in made:
        check_lock_came_along(owner, sequence_index=2)


def worker_pid(node, index: int) -> int | None:
    answer = node.request(command="status")
    workers = answer.get("smb", {}).get("workers", [])
    return next((entry.get("pid") for entry in workers if entry["index"] == index), None)


def assert_held_disconnected(pair, name: str) -> None:
    """Another client (on worker 0) cannot open ``name``: a disconnected
    persistent open holds it ([MS-SMB2] 3.3.5.9)."""
    other = pair.client.call(Client, guid_for(0))
    try:
        assert status_of(lambda: pair.client.call(create, other.tree, name)) \
            == STATUS_FILE_NOT_AVAILABLE
    finally:
        pair.client.call(other.close)


def test_a_killed_worker_takes_its_partition_back(pair):
    assert pair.adopt("A")["ok"]
    wait_in_sync(pair.a)
    made = owners(pair)
    wait_in_sync(pair.a, past_mseq=0)
    victim = worker_pid(pair.a, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    pair.client.call(made[1].client.close)
    # Dead, swept, not yet replaced (the supervisor waits 0.5 s before it
    # restarts a worker): its partition's open holds the file, disconnected.
    time.sleep(0.3)
    assert_held_disconnected(pair, "vm1.vhdx")
    deadline = time.monotonic() + WAIT_S
    while worker_pid(pair.a, 1) in (None, victim):
        assert time.monotonic() < deadline, pair.a.log_tail(80)
        time.sleep(0.1)
    assert_held_disconnected(pair, "vm1.vhdx")          # restored by the successor
    # Worker 0's client never noticed.
    made[0].read_back()
    reconnect_all(made, pair.a, only=(1,))
    check_lock_came_along(made[1])
    wait_in_sync(pair.a)
    [aggregate] = pair.a.request(command="status")["status"]["aggregates"]
    assert aggregate["phase"] == "online"
    assert [p["mirror"]["role"] for p in aggregate["partitions"]] == ["primary"] * WORKERS


def test_a_worker_down_at_the_move_adopts_its_partition_when_back(pair):
    """B's worker 1 is stopped when the aggregate moves to B and dies with
    the adopt request unread: B answers that worker 1 failed (clusdisk sees
    it), worker 0's partition is online, and worker 1's successor adopts its
    partition as soon as it is ready (the supervisor remembers what the node
    adopted), so its client gets its open back on B."""
    assert pair.adopt("A")["ok"]
    wait_in_sync(pair.a)
    made = owners(pair)
    wait_in_sync(pair.a, past_mseq=0)
    stopped = worker_pid(pair.b, 1)
    os.kill(stopped, signal.SIGSTOP)
    try:
        released = pair.release("A", planned=True)
        assert released["ok"] and released["handed_over"] == WORKERS, released
        pair.aggregate.mount("B")
        answer = {}
        adopting = threading.Thread(
            target=lambda: answer.update(pair.b.request(command="adopt", aggregate="aggr1")))
        adopting.start()
        time.sleep(1.0)                    # the request waits in the stopped worker's socket
    finally:
        os.kill(stopped, signal.SIGKILL)
    adopting.join(WAIT_S)
    assert not answer.get("ok") and "worker 1" in answer.get("error", ""), answer
    pair.topology.lif_up("B")

    deadline = time.monotonic() + WAIT_S
    while True:
        status = pair.b.request(command="status")["status"]
        [aggregate] = status["aggregates"]
        if aggregate["phase"] == "online":
            break
        assert time.monotonic() < deadline, (aggregate, pair.b.log_tail(60))
        time.sleep(0.1)
    assert [p["adopted"]["restored"] for p in aggregate["partitions"]] == [1, 1]
    reconnect_all(made, pair.b)
    for owner in made:
        check_lock_came_along(owner)
