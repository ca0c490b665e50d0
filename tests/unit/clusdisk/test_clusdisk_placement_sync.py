"""The placement's generation, its record on the quorum LUN (over the fake
LUN behind a real SgDevice) and how a node's placement gives way to a newer
one: the quorum owner's claim after a cold start, a standby's learn, the
once-a-second reconcile, and the status's words for an aggregate left down."""

import asyncio
import struct
import zlib

import pytest

from clusdisk import placement as pl
from clusdisk import placement_record as record
from clusdisk.placement_sync import PlacementKeeper
from clusdisk.quorum_placement import QuorumPlacement
from clusdisk.resources import Aggregate, Lif
from clusdisk.scsi import cdb
from clusdisk.scsi.errors import ScsiError
from fake_lun import FakeLun

AGGRS = (Aggregate("aggr1", 1, "naa.01", "xfs", "/srv/aggr1",
                   lifs=(Lif("lif-a1", "192.0.2.10/24", "eth0"),)),
         Aggregate("aggr2", 2, "naa.02", "ext4", "/srv/aggr2",
                   lifs=(Lif("lif-b1", "192.0.2.20/24", "eth0"),)))
NAMES = {1: "a", 2: "b"}


def run(coro):
    return asyncio.run(coro)


class MemoryStore:
    def __init__(self, placement=None):
        self.saved = placement

    def load(self):
        return self.saved or pl.default(AGGRS)

    def save(self, placement):
        self.saved = placement


def keeper(node_id, lun=None, placement=None, owner=True):
    shared = QuorumPlacement(lun.device(node_id - 1)) if lun is not None else None
    return PlacementKeeper(node_id=node_id, node_names=NAMES, aggregates=AGGRS,
                           store=MemoryStore(placement), shared=shared,
                           owns_quorum=lambda: owner)


# -- the placement's generation ----------------------------------------------------


def test_generation_round_trips_and_an_old_peer_sends_none():
    placement = pl.Placement({"aggr1": 2, "aggr2": 2}, {"lif-a1": 2, "lif-b1": 2}, 7)
    message = placement.to_json()
    assert message["generation"] == 7
    assert pl.Placement.from_json(message, AGGRS, NAMES) == placement
    old = {"owner": message["owner"], "lif_node": message["lif_node"]}
    assert not pl.has_generation(old) and pl.has_generation(message)
    assert pl.Placement.from_json(old, AGGRS, NAMES).generation == 0
    with pytest.raises(pl.PlacementError, match="generation"):
        pl.Placement.from_json({**message, "generation": -1}, AGGRS, NAMES)


def test_supersedes_newer_generation_or_the_owners_on_a_tie():
    home = pl.default(AGGRS)
    moved = pl.Placement({"aggr1": 2, "aggr2": 2}, {"lif-a1": 2, "lif-b1": 2}, 3)
    assert pl.supersedes(moved, pl.Placement(home.owner, home.lif_node, 2), tie_to_theirs=False)
    assert not pl.supersedes(pl.Placement(home.owner, home.lif_node, 2), moved,
                             tie_to_theirs=True)
    same_gen = pl.Placement(home.owner, home.lif_node, 3)
    assert pl.supersedes(moved, same_gen, tie_to_theirs=True)
    assert not pl.supersedes(moved, same_gen, tie_to_theirs=False)
    assert not pl.supersedes(moved, moved, tie_to_theirs=True)


def test_every_change_made_here_gets_a_generation_above_all_seen():
    k = keeper(1)
    assert k.placement.generation == 0
    k.seen = 5                                 # e.g. the partner's, seen in a status
    k.set(pl.move(k.placement, AGGRS[0], 2))
    assert k.placement.generation == 6 and k.store.saved == k.placement
    k.take_over()
    assert k.placement.generation == 7 and k.placement.owned_by(1) == {"aggr1", "aggr2"}
    assert k.taken_from == {"aggr1": (2, 6), "aggr2": (2, 6)}


# -- the record on the quorum LUN ------------------------------------------------


def test_record_layout():
    slot = record.encode({"owner": {"aggr1": 2}, "lif_node": {}, "generation": 5}, writer=2)
    assert len(slot) == record.SLOT_BYTES
    payload = b'{"generation":5,"lif_node":{},"owner":{"aggr1":2},"writer":2}'
    assert slot[:24] == (b"SCPL" + struct.pack("!HHQII", 1, 0, 5, len(payload),
                                               zlib.crc32(payload)))
    assert slot[24:24 + len(payload)] == payload and not any(slot[24 + len(payload):])
    assert record.decode(slot)["writer"] == 2
    for broken, reason in ((bytes(record.SLOT_BYTES), "blank"),
                           (slot[:30] + b"X" + slot[31:], "CRC"),
                           (slot[:4] + b"\x00\x09" + slot[6:], "version 9")):
        with pytest.raises(record.RecordError, match=reason):
            record.decode(broken)


def test_newest_valid_slot_wins_and_a_torn_one_leaves_the_previous():
    old = record.encode({"owner": {}, "lif_node": {}, "generation": 4}, 1)
    new = record.encode({"owner": {}, "lif_node": {}, "generation": 5}, 1)
    assert record.newest([old, new])["generation"] == 5
    torn = new[:40] + bytes(len(new) - 40)          # the payload cut short
    assert record.newest([old, torn])["generation"] == 4
    assert record.newest([bytes(8192), bytes(8192)]) is None


def test_quorum_record_round_trip_on_the_lun():
    lun = FakeLun()
    shared = QuorumPlacement(lun.device(0))

    async def scenario():
        assert await shared.read() is None
        for generation in (1, 2, 3):
            await shared.write({"owner": {"aggr1": 1}, "lif_node": {},
                                "generation": generation}, 1)
        return await shared.read()
    assert run(scenario())["generation"] == 3
    # two slots, 64 KiB into the LUN: blocks 128.. of 512 bytes
    assert sorted(lun.storage)[0] == record.RECORD_OFFSET_BYTES // 512
    assert record.decode(b"".join(lun.storage[128 + i] for i in range(16)))["generation"] == 2


def test_quorum_record_refused_when_the_lun_is_too_small_or_reserved():
    with pytest.raises(ScsiError, match="no room"):
        run(QuorumPlacement(FakeLun(blocks=64).device(0)).read())
    lun = FakeLun()
    shared = QuorumPlacement(lun.device(0))
    assert run(shared.read()) is None
    assert run(lun.device(1).execute(cdb.reserve_6())).outcome.ok    # the partner's
    with pytest.raises(ScsiError, match="writing the placement record: reservation conflict"):
        run(shared.write({"owner": {}, "lif_node": {}, "generation": 1}, 1))


# -- a cold start of both nodes after a takeover --------------------------------


def test_cold_start_owner_takes_the_newer_placement_from_the_quorum_lun():
    """B took over (generation 4 on B and on the quorum LUN); A's own file
    still says generation 3, aggr1 on A.  A forms the cluster first."""
    lun = FakeLun()
    stale = pl.Placement(pl.default(AGGRS).owner, pl.default(AGGRS).lif_node, 3)

    async def scenario():
        b = keeper(2, lun, stale)
        b.claimed = True
        b.take_over()                          # B owns the quorum and both aggregates
        await b.flush()
        a = keeper(1, lun, stale)
        assert a.owned(True) == frozenset()    # nothing before the claim
        await a.claim()
        await a.flush()
        return a, b, await QuorumPlacement(lun.device(0)).read()
    a, b, on_lun = run(scenario())
    assert on_lun["writer"] == 2                 # taken from the LUN, not written back
    assert a.placement == b.placement and a.placement.generation == 4
    assert a.owned(True) == frozenset() and a.store.saved == a.placement
    assert a.source == "the quorum LUN (written by b)"
    why = a.why("aggr1", up=False, error="", partner_alive=False, member=True)
    assert why == ("placed on b (placement generation 4 from the quorum LUN (written by b)), "
                   "which holds its newest copy: waiting for b")
    assert a.why("aggr1", up=False, error="", partner_alive=True, member=True) == ""


def test_claim_keeps_a_newer_own_placement_and_writes_it():
    lun = FakeLun()
    mine = pl.Placement({"aggr1": 2, "aggr2": 2}, {"lif-a1": 2, "lif-b1": 2}, 9)

    async def scenario():
        old = keeper(1, lun, pl.Placement(pl.default(AGGRS).owner,
                                          pl.default(AGGRS).lif_node, 2))
        await old.claim()
        await old.flush()
        b = keeper(2, lun, mine)
        await b.claim()
        await b.flush()
        return b, await QuorumPlacement(lun.device(0)).read()
    b, data = run(scenario())
    assert b.placement == mine and b.source == "this node's state file"
    assert data["generation"] == 9 and data["writer"] == 2 and data["owner"] == mine.owner


def test_claim_falls_back_to_its_own_placement_when_the_lun_cannot_say():
    lun = FakeLun(blocks=64)                   # too small for the record
    k = keeper(1, lun)
    run(k.claim())
    assert k.claimed and k.owned(True) == {"aggr1"}
    assert "no room" in k.shared_error


def test_taken_over_aggregate_down_says_whose_copy_may_be_newer():
    k = keeper(1, placement=pl.Placement({"aggr1": 2, "aggr2": 2},
                                         {"lif-a1": 2, "lif-b1": 2}, 4))
    k.claimed = True
    k.take_over()
    why = k.why("aggr1", up=False, error="smbcad refused adopt: replica is of epoch 3",
                partner_alive=False, member=True)
    assert why == ("taken over from b (placed there at generation 4): this node's copy may "
                   "be older than b's; start b, then relocate aggr1 to it (--force if its "
                   "replica is not in sync)")
    assert k.why("aggr1", up=True, error="", partner_alive=False, member=True) == ""


# -- learn and reconcile ----------------------------------------------------------


class PlacementPeer:
    def __init__(self, message):
        self.message = message

    async def call(self, op, args=None, timeout_s=10.0):
        assert op == "placement"
        return {"ok": True, "placement": self.message}


def test_standby_learns_the_owners_placement_unless_its_own_is_newer():
    newer = pl.Placement({"aggr1": 2, "aggr2": 2}, {"lif-a1": 2, "lif-b1": 2}, 6)
    older = pl.Placement({"aggr1": 1, "aggr2": 2}, {"lif-a1": 1, "lif-b1": 2}, 5)
    b = keeper(2, placement=newer, owner=False)
    run(b.learn(PlacementPeer(older.to_json())))
    assert b.learned and b.placement == newer and b.owned(False) == {"aggr1", "aggr2"}
    b = keeper(2, placement=older, owner=False)
    run(b.learn(PlacementPeer(newer.to_json())))
    assert b.placement == newer
    # a peer of the first version: learnt as it is, as before
    b = keeper(2, placement=newer, owner=False)
    run(b.learn(PlacementPeer({"owner": older.owner, "lif_node": older.lif_node})))
    assert b.placement.owner == older.owner


def test_reconcile_takes_a_superseding_placement_only_while_both_are_idle():
    mine = pl.Placement({"aggr1": 1, "aggr2": 2}, {"lif-a1": 1, "lif-b1": 2}, 5)
    theirs = pl.Placement({"aggr1": 2, "aggr2": 2}, {"lif-a1": 2, "lif-b1": 2}, 6)
    status = {"member": True, "owns_quorum": False, "operation": None,
              "placement_record": theirs.to_json()}
    k = keeper(1, placement=mine)
    assert not k.reconcile({**status, "operation": "relocate aggr1 to b"}, idle=True)
    assert not k.reconcile(status, idle=False)
    assert not k.reconcile({**status, "member": False}, idle=True)
    assert not k.reconcile({**status, "placement_record": {"owner": theirs.owner,
                                                           "lif_node": theirs.lif_node}},
                           idle=True)
    assert k.placement == mine
    assert k.reconcile(status, idle=True) and k.placement == theirs
    assert not k.reconcile(status, idle=True)            # nothing new
    # a tie: the quorum owner's placement wins, on both sides
    tie = pl.Placement(mine.owner, mine.lif_node, 6)
    assert not k.reconcile({**status, "placement_record": tie.to_json()}, idle=True)
    assert k.reconcile({**status, "owns_quorum": True, "placement_record": tie.to_json()},
                       idle=True)
    assert k.placement == tie


def test_quorum_record_written_without_fua_on_a_lun_that_refuses_it():
    """LIO with its write cache off answers a FUA WRITE with 24/00 (seen in
    the lab): the record is written plainly, and FUA is not tried again."""
    lun = FakeLun(refuses_fua=True)
    shared = QuorumPlacement(lun.device(0))
    run(shared.write({"owner": {"aggr1": 1}, "lif_node": {}, "generation": 1}, 1))
    run(shared.write({"owner": {"aggr1": 2}, "lif_node": {}, "generation": 2}, 1))
    assert run(shared.read())["generation"] == 2
    assert shared._fua is False
