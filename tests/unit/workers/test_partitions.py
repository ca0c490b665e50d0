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
