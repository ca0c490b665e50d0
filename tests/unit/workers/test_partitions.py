"""Each worker's partition of the handle store (smbcad/workers/partitions.py):
where it is, and the refusal to start over another layout's records."""

from smbcad.store import LogEngine, PersistentOpen, encode
from smbcad.workers import partitions


def a_record(durable_file_id: int) -> PersistentOpen:
    return PersistentOpen(durable_file_id, bytes(range(16)), bytes(16), "u", "D", "ca", "f")


def write_records(path: str, ids) -> None:
    engine = LogEngine(path)
    try:
        list(engine.load())
        engine.write({key: encode(a_record(key)) for key in ids})
    finally:
        engine.close()


def test_paths_by_worker_count(tmp_path):
    state = str(tmp_path)
    assert partitions.partition_path(state, 0, 1) == f"{state}/handles"
    assert partitions.partition_path(state, 3, 4) == f"{state}/handles-worker-3"


def test_other_layouts_with_records_stop_the_start(tmp_path):
    state = str(tmp_path)
    assert partitions.stranded_error(state, 2) is None           # nothing there yet
    write_records(f"{state}/handles", [0x101, 0x102])
    write_records(f"{state}/handles-worker-0", [])
    write_records(f"{state}/handles-worker-2", [0x301])
    assert partitions.other_layouts(state, 1) == [f"{state}/handles-worker-0",
                                                  f"{state}/handles-worker-2"]
    assert partitions.stranded(state, 1) == [(f"{state}/handles-worker-2", 1)]
    assert partitions.stranded(state, 3) == [(f"{state}/handles", 2)]
    error = partitions.stranded_error(state, 2)
    assert error.startswith("server.workers: 2 worker(s) do not use")
    assert f"{state}/handles (2 records)" in error and "handles-worker-2 (1 records)" in error
    assert partitions.persistent_ids(f"{state}/handles") == {0x101, 0x102}


def test_a_partition_held_by_a_running_process_is_named(tmp_path):
    state = str(tmp_path)
    write_records(f"{state}/handles", [0x101])
    holder = LogEngine(f"{state}/handles")
    list(holder.load())
    try:
        error = partitions.stranded_error(state, 2)
        assert error.startswith("server.workers: cannot read an earlier partition"), error
    finally:
        holder.close()


def write_copy(path: str, ids) -> None:
    """An aggregate copy as the mirror keeps it: keyed records and the
    position record (key 0), which is no open."""
    from smbcad.cluster.aggregate_state import KeyedLogEngine
    from smbcad.cluster.mirror_core import META_KEY, encode_position
    engine = KeyedLogEngine(path)
    try:
        engine.load_keyed()
        engine.write({META_KEY: encode_position(1, 1, 1),
                      **{key: encode(a_record(key)) for key in ids}})
    finally:
        engine.close()


def test_a_dead_workers_aggregate_opens_keep_their_entries(tmp_path):
    state = str(tmp_path)
    write_records(f"{state}/handles-worker-1", [0x11])
    write_copy(f"{state}/worker-1/handles/aggr1", [0x12, 0x13])
    write_copy(f"{state}/worker-0/handles/aggr1", [0x02])
    copies = partitions.cluster_copies(state, 1, 2)
    assert copies == (f"{state}/worker-1/handles/aggr1",)
    assert partitions.persistent_ids(f"{state}/handles-worker-1", copies) == {0x11, 0x12, 0x13}
    assert partitions.cluster_copies(state, 0, 1) == ()


def test_aggregate_copies_of_another_layout_stop_the_start(tmp_path):
    state = str(tmp_path)
    write_copy(f"{state}/handles/aggr1", [0x1])             # one process's copy
    write_copy(f"{state}/worker-1/handles/aggr1", [0x2])
    write_copy(f"{state}/worker-2/handles/aggr1", [])        # only a position: no opens
    assert partitions.stranded(state, 1) == [(f"{state}/worker-1/handles/aggr1", 1)]
    assert partitions.stranded(state, 2) == [(f"{state}/handles/aggr1", 1)]
    error = partitions.stranded_error(state, 3)
    assert f"{state}/handles/aggr1 (1 records)" in error
    assert "worker-1" not in error
