"""The node's ServerGuid file (smbcad/daemon.py ``load_server_guid``): the
worker processes start together and must all answer NEGOTIATE with the one
GUID (a client compares it across channels, [MS-SMB2] 3.2.5.2); before
this test, the loser of the race between two starts exited."""

import multiprocessing
import os

from smbcad.daemon import load_server_guid


def _load(state_dir: str, start, results) -> None:
    start.wait()
    results.put(load_server_guid(state_dir))


def test_workers_starting_together_get_one_guid(tmp_path):
    state_dir = str(tmp_path / "state")
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(8), context.Queue()
    workers = [context.Process(target=_load, args=(state_dir, start, results))
               for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    guids = {results.get(timeout=5) for _ in workers}
    assert len(guids) == 1 and len(next(iter(guids))) == 16
    assert guids == {load_server_guid(state_dir)}
    assert sorted(os.listdir(state_dir)) == ["server_guid"]       # no candidates left


def test_a_damaged_guid_file_is_replaced(tmp_path):
    (tmp_path / "server_guid").write_bytes(b"short")
    guid = load_server_guid(str(tmp_path))
    assert len(guid) == 16 and (tmp_path / "server_guid").read_bytes() == guid
    assert load_server_guid(str(tmp_path)) == guid
