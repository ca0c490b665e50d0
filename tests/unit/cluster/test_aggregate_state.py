"""aggregate_state and replica in-process: the adoption table row by row,
and a ReplicaStore driven by a real ReplicaMirror."""

import pytest

from smbcad.cluster import aggregate_state as ags
from smbcad.cluster import mirror_core as mc
from smbcad.cluster import replica_core as rc
from smbcad.cluster import mirror_proto as mp
from smbcad.cluster.replica import ReplicaStore

AGG = "aggr1"


@pytest.fixture
def dirs(tmp_path):
    return str(tmp_path / "state"), str(tmp_path / "mount")


def write_copy(state, records, position):
    store = ReplicaStore(state, AGG, preallocate_bytes=0)
    store.open()
    store.write((*records.items(), (mc.META_KEY, mc.encode_position(*position))))
    store.close()


def write_journal(mount, records, position):
    journal = ags.Journal(mount, preallocate_bytes=0)
    journal.reset({**records, mc.META_KEY: mc.encode_position(*position)})
    journal.close()


def refused(dirs) -> str:
    with pytest.raises(ags.AdoptionRefused) as info:
        ags.load_for_adoption(*dirs[:1], AGG, dirs[1])
    return info.value.reason


def test_first_bring_up_adopts_an_empty_store(dirs):
    found = ags.load_for_adoption(dirs[0], AGG, dirs[1])
    assert (found.source, found.records, found.epoch) == ("empty", {}, 1)


def test_no_marker_but_records_is_refused(dirs):
    write_copy(dirs[0], {5: b"x"}, (1, 1, 1))
    assert "no marker" in refused(dirs)


def test_unreadable_marker_is_refused(dirs):
    ags.ensure_dir(ags.smbca_dir(dirs[1]))
    with open(f"{ags.smbca_dir(dirs[1])}/{ags.MARKER_NAME}", "w") as file:
        file.write("{not json")
    assert "unreadable" in refused(dirs)


def test_outdated_marker_without_journal_is_refused(dirs):
    write_copy(dirs[0], {5: b"x"}, (1, 1, 1))
    ags.write_marker(dirs[1], ags.Marker(1, 1, False))
    assert refused(dirs) == "marker says outdated and there is no journal"


def test_outdated_marker_with_an_older_journal_is_refused(dirs):
    write_journal(dirs[1], {5: b"x"}, (1, 1, 9))
    ags.write_marker(dirs[1], ags.Marker(2, 1, False))
    assert "older than the marker" in refused(dirs)


def test_outdated_marker_adopts_the_journal(dirs):
    write_copy(dirs[0], {5: b"old"}, (2, 3, 4))
    write_journal(dirs[1], {5: b"new", 6: b"y"}, (2, 3, 9))
    ags.write_marker(dirs[1], ags.Marker(2, 3, False))
    found = ags.load_for_adoption(dirs[0], AGG, dirs[1])
    assert (found.source, found.records, found.epoch, found.mseq) == (
        "journal", {5: b"new", 6: b"y"}, 3, 9)


@pytest.mark.parametrize("position,reason", [
    ((1, 3, 4), "replica is of epoch 1, the marker says 2"),
    ((2, 2, 4), "generation mismatch: replica has 2, the marker 3"),
])
def test_in_sync_marker_checks_the_replica(dirs, position, reason):
    write_copy(dirs[0], {5: b"x"}, position)
    ags.write_marker(dirs[1], ags.Marker(2, 3, True))
    assert refused(dirs) == reason


def test_in_sync_marker_adopts_the_replica(dirs):
    write_copy(dirs[0], {5: b"x"}, (2, 4, 7))
    write_journal(dirs[1], {5: b"stale"}, (2, 3, 2))     # left over: ignored
    ags.write_marker(dirs[1], ags.Marker(2, 3, True))
    found = ags.load_for_adoption(dirs[0], AGG, dirs[1])
    assert (found.source, found.records, found.epoch) == ("replica", {5: b"x"}, 3)


def test_commit_adoption_then_adopt_again(dirs):
    write_copy(dirs[0], {5: b"x"}, (2, 4, 7))
    ags.write_marker(dirs[1], ags.Marker(2, 4, True))
    first = ags.load_for_adoption(dirs[0], AGG, dirs[1])
    ags.commit_adoption(dirs[0], dirs[1], first)
    assert ags.read_marker(dirs[1]) == ags.Marker(3, 4, False)
    assert ags.read_state(dirs[0], AGG).role == "primary"
    second = ags.load_for_adoption(dirs[0], AGG, dirs[1])
    assert (second.source, second.records, second.epoch) == ("journal", {5: b"x"}, 4)


def test_journal_delete(dirs):
    write_journal(dirs[1], {5: b"x"}, (1, 1, 1))
    journal = ags.Journal(dirs[1])
    journal.delete()
    assert ags.read_journal(dirs[1]) is None


def test_replica_store_follows_a_replica_mirror(dirs):
    """Snapshot, then frames, then a crash and reopen: the position and the
    records are those the mirror acknowledged."""
    store = ReplicaStore(dirs[0], AGG, preallocate_bytes=0)
    replica = rc.ReplicaMirror(AGG, epoch=0, generation=0, mseq=0)
    store.open()
    records = {1: b"a", 2: b"b", mc.META_KEY: mc.encode_position(1, 2, 5)}
    acks = []
    messages = [*mp.snapshot_messages(AGG, 1, 2, 5, records, chunk_bytes=16),
                mp.Append(AGG, 1, 6, ((2, None), (3, b"c"),
                                      (mc.META_KEY, mc.encode_position(1, 2, 6))))]
    for message in messages:
        for action in replica.received_message(message):
            if store.apply(action):
                done = (replica.snapshot_installed() if isinstance(action, mc.SnapshotInstall)
                        else replica.write_done(action.mseq))
                acks += [a.message.mseq for a in done]
    assert acks == [5, 6]
    store.close()
    again = ReplicaStore(dirs[0], AGG)
    assert again.open() == (1, 2, 6)
    assert again.highest_epoch == 1
    again.close()
    copy = ags.KeyedLogEngine(ags.copy_dir(dirs[0], AGG))
    found = copy.load_keyed()
    copy.close()
    found.pop(mc.META_KEY)
    assert found == {1: b"a", 3: b"c"}
