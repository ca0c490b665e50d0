"""The open-state stores (smbcad/openstate/table.py, db.py): both run the
same operations, one transaction per change; LMDB's records are seen by
every process of the node (docs/multicore.md)."""

import copy
import multiprocessing
import os

import pytest

from smbcad.openstate import record
from smbcad.openstate.db import OpenStateDb
from smbcad.openstate.table import (
    CachingElsewhere, MemoryOpenState, OpenStateConflict, OpenStateError)
from smbcad.proto.constants import AccessMask as A, ShareAccess as S
from smbcad.proto.status import NtStatus

READ, WRITE, DELETE = A.FILE_READ_DATA, A.FILE_WRITE_DATA, A.DELETE
ALL = S.READ | S.WRITE | S.DELETE
KEY = (0xABCD, 42)


@pytest.fixture(params=["memory", "lmdb"])
def store(request, tmp_path):
    if request.param == "memory":
        return MemoryOpenState()
    return OpenStateDb(str(tmp_path / "os"), create_empty=True)


def test_the_last_open_out_learns_the_file_is_delete_pending(store):
    db = store
    db.add_open(KEY, 1, READ | DELETE, ALL)
    db.add_open(KEY, 2, READ, ALL)
    assert db.remove_open(KEY, 1, mark_delete_pending=True) == (1, True)
    assert db.sharing_conflict(KEY, 0, ALL) == NtStatus.DELETE_PENDING
    assert db.remove_open(KEY, 2) == (0, True)
    assert not db.is_open(KEY) and not db.delete_pending(KEY)
    assert db.remove_open(KEY, 2) == (0, False)          # nothing left to remove


def test_streams_move_and_rename(store):
    db = store
    stream = KEY + ("s1",)
    db.add_open(stream, 1, READ, S.READ)
    db.rekey(stream, KEY + ("s2",))
    assert not db.is_open(stream) and [e.open_id for e in db.entries(KEY + ("s2",))] == [1]
    db.add_open(KEY, 2, READ, ALL)
    db.move_open(KEY + ("s2",), KEY, 1)
    assert [e.open_id for e in db.entries(KEY)] == [2, 1]
    assert db.count() == 1


def test_a_gone_owner_is_swept_from_every_file(store):
    store.add_open(KEY, 1, READ, ALL)
    store.add_open(KEY + ("s",), 2, READ, ALL)
    store.add_open((1, 1), 3, READ, ALL)
    other = copy.copy(store)        # another process of the node, on the same records
    other.owner = 777
    other.add_open(KEY, 4, READ, ALL)
    assert store.forget_owner(store.owner) == 3
    assert [e.open_id for e in store.entries(KEY)] == [4] and store.count() == 1


def test_a_dead_owners_persistent_opens_stay_for_its_successor(store):
    """The sweep keeps the entries of the opens its successor restores; the
    successor adopts them (its own now, still held, still disconnected until
    the client is back) and then sweeps what else the dead owner left."""
    dead = copy.copy(store)
    dead.owner = 4242
    dead.add_open(KEY, 10, READ | WRITE, 0)             # persistent, exclusive
    dead.add_open(KEY + ("s",), 11, READ, ALL)          # persistent too
    dead.add_open((1, 1), 12, READ, ALL)                # not persistent
    dead.set_disconnected(KEY, 10, True)
    # (1, 1) goes; the stream's open, connected when its process died, is now
    # held disconnected too (its connection went with the process).
    assert store.forget_owner(4242, keep=frozenset({10, 11})) == 2
    assert store.count() == 2 and store.held_disconnected(KEY)
    assert store.held_disconnected(KEY + ("s",))
    assert store.sharing_conflict(KEY, READ, ALL) == NtStatus.SHARING_VIOLATION
    successor = copy.copy(store)
    successor.owner = 5151
    successor.adopt_open(KEY, 10, READ | WRITE, 0, disconnected=True)
    assert [(e.owner, e.open_id) for e in store.entries(KEY)] == [(5151, 10)]
    assert store.held_disconnected(KEY)
    successor.set_disconnected(KEY, 10, False)           # its client reconnected
    assert not store.held_disconnected(KEY)
    assert [e.share for e in store.entries(KEY)] == [0]
    assert store.sharing_conflict(KEY, READ, ALL) == NtStatus.SHARING_VIOLATION
    assert store.forget_owner(4242) == 1                 # the stream's entry was not restored
    assert store.count() == 1


def test_locks_are_claimed_against_other_processes_in_one_transaction(store):
    other = copy.copy(store)
    other.owner = 4242
    assert other.claim_locks(KEY, [(0, 10, True)], [(1, 0, 10, True)])
    assert store.foreign_lock_conflict(KEY, 5, 1, False)
    assert not other.foreign_lock_conflict(KEY, 5, 1, True)          # its own
    assert not store.claim_locks(KEY, [(20, 5, False), (9, 2, False)], [(2, 20, 5, False)])
    assert store.locks_of(KEY) == [(4242, 1, 0, 10, True)]            # all or nothing
    assert store.claim_locks(KEY, [(20, 5, False)], [(2, 20, 5, False)])
    other.publish_locks(KEY, [])                                      # unlocked
    assert not store.foreign_lock_conflict(KEY, 5, 1, True)
    assert store.forget_owner(store.owner) == 0 and store.locks_of(KEY) == []
    assert store.count() == 0


def test_a_new_start_begins_empty_and_a_joining_process_keeps_what_is_there(tmp_path):
    path = str(tmp_path / "os")
    first = OpenStateDb(path, create_empty=True)
    first.add_open(KEY, 1, READ, 0)
    first.close()
    joined = OpenStateDb(path, create_empty=False, owner=12345)
    assert [e.owner for e in joined.entries(KEY)] == [os.getpid()]
    joined.close()
    assert OpenStateDb(path, create_empty=True).count() == 0


def test_a_path_that_cannot_be_made_names_itself(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OpenStateError, match="file/os"):
        OpenStateDb(str(tmp_path / "file" / "os"), create_empty=True)


def test_a_private_database_goes_with_its_object():
    db = OpenStateDb.private()
    path = db.path
    assert os.path.isdir(path)
    del db
    assert not os.path.exists(path)


def _worker(path, ready, go, results):
    """Another process of the node: it opens the file for write, then reports
    what it sees of the parent's open."""
    db = OpenStateDb(path, create_empty=False)
    db.add_open(KEY, 2, WRITE, S.WRITE)
    ready.set()
    go.wait(30)
    results.put((db.sharing_conflict(KEY, READ, ALL), [e.open_id for e in db.entries(KEY)]))


def test_two_processes_see_each_others_share_modes(tmp_path):
    path = str(tmp_path / "os")
    db = OpenStateDb(path, create_empty=True)
    db.add_open(KEY, 1, READ, S.READ | S.WRITE)
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Event(), context.Event(), context.Queue()
    child = context.Process(target=_worker, args=(path, ready, go, results))
    child.start()
    try:
        assert ready.wait(60)
        # its write open shares only write: a read open here is refused
        assert db.sharing_conflict(KEY, READ, ALL) == NtStatus.SHARING_VIOLATION
        db.remove_open(KEY, 1)
        go.set()
        conflict, open_ids = results.get(timeout=60)
        assert open_ids == [2]
        assert conflict == NtStatus.SHARING_VIOLATION     # its own write open still excludes
        child.join(60)
        # the worker is gone without closing: the sweep takes its entries out
        assert db.forget_owner(child.pid) == 1
        assert not db.is_open(KEY)
    finally:
        if child.is_alive():
            child.kill()
            child.join()


def test_a_checked_add_refuses_what_another_process_added_since(store):
    other = copy.copy(store)
    other.owner = 4242
    other.add_open(KEY, 1, READ | WRITE, 0)             # after this CREATE's own check
    with pytest.raises(OpenStateConflict) as conflict:
        store.add_open(KEY, 2, READ, ALL, checked=True)
    assert conflict.value.status == NtStatus.SHARING_VIOLATION
    assert [e.open_id for e in store.entries(KEY)] == [1]
    store.add_open(KEY, 3, 0, ALL, checked=True)        # no data access: no conflict
    other.remove_open(KEY, 1, mark_delete_pending=True)
    with pytest.raises(OpenStateConflict) as conflict:
        store.add_open(KEY, 4, READ, ALL, checked=True)
    assert conflict.value.status == NtStatus.DELETE_PENDING


RW_OPLOCK = record.CACHING | record.CACHING_WRITE | record.CACHING_OPLOCK
LEVEL_II = record.CACHING | record.CACHING_OPLOCK


def test_write_caching_is_claimed_only_while_no_other_process_has_the_file_open(store):
    other = copy.copy(store)
    other.owner = 4242
    store.add_open(KEY, 1, READ, ALL)
    assert store.claim_caching(KEY, RW_OPLOCK) and not store.caching_elsewhere(KEY)
    assert other.foreign_caching(KEY) == RW_OPLOCK
    with pytest.raises(CachingElsewhere):                 # its CREATE waits for the break
        other.add_open(KEY, 2, READ, ALL, checked=True)
    store.set_caching(KEY, LEVEL_II)                      # broken to level II
    other.add_open(KEY, 2, READ, ALL, checked=True)       # read caching is shared
    assert not store.claim_caching(KEY, RW_OPLOCK)        # nobody writes alone now
    assert store.foreign_caching(KEY) == 0 and other.foreign_caching(KEY) == LEVEL_II
    assert other.claim_caching(KEY, LEVEL_II)             # level II beside level II
    assert not other.claim_caching(KEY, RW_OPLOCK)
    store.set_caching(KEY, 0)
    other.set_caching(KEY, 0)
    assert [e.share for e in store.entries(KEY)] == [ALL, ALL]
    assert not store.claim_caching((9, 9), LEVEL_II)      # no open at all: nothing to mark


def test_a_claim_fails_when_the_foreign_state_changed_since_it_was_read(store):
    other = copy.copy(store)
    other.owner = 4242
    store.add_open(KEY, 1, READ, ALL)
    seen = store.foreign_state(KEY)
    assert seen == (0, False)
    other.add_open(KEY, 2, READ, ALL)                     # meanwhile, through another worker
    assert not store.claim_caching(KEY, RW_OPLOCK, expected=seen)
    seen = store.foreign_state(KEY)
    assert seen == (0, True)
    assert other.claim_caching(KEY, LEVEL_II)             # meanwhile, a level II there
    assert not store.claim_caching(KEY, LEVEL_II, expected=seen)
    assert store.claim_caching(KEY, LEVEL_II, expected=store.foreign_state(KEY))
    assert other.foreign_caching(KEY) == LEVEL_II


def test_a_stat_open_elsewhere_neither_waits_for_caching_nor_stops_it(store):
    """[MS-FSA] 2.1.4.12: an open of attributes (and SYNCHRONIZE) only breaks
    no oplock or lease, through whichever worker it comes."""
    other = copy.copy(store)
    other.owner = 4242
    stat = int(A.FILE_READ_ATTRIBUTES | A.SYNCHRONIZE)
    store.add_open(KEY, 1, READ, ALL)
    assert store.claim_caching(KEY, RW_OPLOCK)
    other.add_open(KEY, 2, stat, ALL, checked=True, stat_open=True)
    assert store.caching_elsewhere(KEY) is False and other.caching_elsewhere(KEY)
    store.set_caching(KEY, 0)
    assert store.claim_caching(KEY, RW_OPLOCK)            # the stat open does not count
    with pytest.raises(CachingElsewhere):                  # READ_CONTROL is no stat open
        other.add_open(KEY, 3, stat | int(A.READ_CONTROL), ALL, checked=True)
    other.remove_open(KEY, 2)
    other.add_open(KEY, 4, int(A.FILE_WRITE_ATTRIBUTES), ALL)
    store.set_caching(KEY, 0)
    assert store.claim_caching(KEY, RW_OPLOCK)


def test_a_share_violation_waits_for_a_break_only_when_handle_caching_is_held_elsewhere(store):
    """[MS-FSA] 2.1.5.1.2: a holder with handle caching may close, so it is
    broken before the share check; any other caching is not broken for an
    open the share modes refuse."""
    other = copy.copy(store)
    other.owner = 4242
    store.add_open(KEY, 1, READ, int(S.READ))
    assert store.claim_caching(KEY, LEVEL_II)
    assert other.foreign_caching(KEY) == LEVEL_II
    with pytest.raises(OpenStateConflict) as conflict:         # no break for this one
        other.add_open(KEY, 2, int(A.FILE_WRITE_DATA), ALL, checked=True)
    assert conflict.value.status == NtStatus.SHARING_VIOLATION
    other.add_open(KEY, 3, READ, ALL, checked=True)            # a reader beside level II
    other.remove_open(KEY, 3)
    handle = LEVEL_II | record.CACHING_HANDLE
    store.set_caching(KEY, handle)
    assert other.foreign_caching(KEY) == handle
    with pytest.raises(CachingElsewhere) as caching:           # H: the break comes first
        other.add_open(KEY, 4, int(A.FILE_WRITE_DATA), ALL, checked=True)
    assert caching.value.sharing_violation
    store.set_caching(KEY, RW_OPLOCK)
    with pytest.raises(CachingElsewhere) as caching:           # W: a reader breaks it
        other.add_open(KEY, 5, READ, ALL, checked=True)
    assert not caching.value.sharing_violation
    store.set_caching(KEY, 0)
    assert other.foreign_caching(KEY) == 0


def test_directory_leases_are_published_per_directory_and_swept_with_their_owner(store):
    """dirleaserecord: another worker's change to a listing asks this one
    record whether someone else holds a directory lease there."""
    other = copy.copy(store)
    other.owner = 4242
    assert not store.dir_leases_elsewhere("Data", "a/b")
    other.publish_dir_leases("data", "a/b", 2)
    assert store.dir_leases_elsewhere("DATA", "a/b")          # share names fold case
    assert not other.dir_leases_elsewhere("data", "a/b")      # its own do not count
    assert not store.dir_leases_elsewhere("data", "a/B") and not store.dir_leases_elsewhere(
        "other", "a/b")
    store.publish_dir_leases("data", "a/b", 1)
    other.publish_dir_leases("data", "a/b", 0)
    assert other.dir_leases_elsewhere("data", "a/b") and not store.dir_leases_elsewhere(
        "data", "a/b")
    long_path = "/".join(["d" * 200] * 5)                      # past LMDB's key limit
    other.publish_dir_leases("data", long_path, 1)
    assert store.dir_leases_elsewhere("data", long_path)
    store.forget_owner(4242)                                   # that worker died
    assert not store.dir_leases_elsewhere("data", long_path)
    store.publish_dir_leases("data", "a/b", 0)
    assert not other.dir_leases_elsewhere("data", "a/b")


def test_connection_limits_count_every_process_of_the_node(store):
    """server.max_connections and max_connections_per_client across workers:
    the check and the count are one transaction over every process's counts."""
    other = copy.copy(store)
    other.owner = 4242
    assert other.admit_connection("192.0.2.1", 3, 2) is None
    assert other.admit_connection("192.0.2.1", 3, 2) is None
    # this process has none from there, yet the node has two: the third is refused
    assert store.admit_connection("192.0.2.1", 3, 2) == ("connections_per_client", 2)
    assert store.admit_connection("192.0.2.2", 3, 2) is None
    assert store.node_connections() == 3
    assert store.admit_connection("192.0.2.3", 3, 2) == ("connections", 3)
    # a connection another worker admitted and passed here is counted without a check
    assert store.admit_connection("192.0.2.1") is None
    assert store.node_connections() == 4
    store.connection_closed("192.0.2.1")
    other.connection_closed("192.0.2.1")
    assert store.admit_connection("192.0.2.1", 4, 2) is None    # room again, both counts
    store.forget_owner(4242)                                     # that worker died
    assert store.node_connections() == 2
    for host in ("192.0.2.1", "192.0.2.2"):
        store.connection_closed(host)
    assert store.node_connections() == 0
    store.connection_closed("192.0.2.9")                         # never counted: no effect
    assert store.node_connections() == 0


def test_a_durable_open_handed_to_another_process_keeps_its_entry_and_locks(store):
    """smbcad/server/durable_handover.py: the holder lets the open go without
    touching the records; the adopter takes its entry and locks in place, so
    another process's conflicting open or lock is refused throughout."""
    adopter = copy.copy(store)
    adopter.owner = 4242
    store.add_open(KEY, 7, READ | WRITE, S.READ)
    assert store.claim_locks(KEY, [(0, 10, True)], [(7, 0, 10, True)])
    adopter.adopt_open(KEY, 7, READ | WRITE, S.READ)
    assert [(e.owner, e.open_id) for e in store.entries(KEY)] == [(4242, 7)]
    assert store.sharing_conflict(KEY, WRITE, ALL) == NtStatus.SHARING_VIOLATION
    adopter.adopt_locks(KEY, 7)
    assert store.locks_of(KEY) == [(4242, 7, 0, 10, True)]
    assert store.foreign_lock_conflict(KEY, 5, 1, False)
    store.publish_locks(KEY, [])                 # the old holder's later publish keeps them
    assert store.locks_of(KEY) == [(4242, 7, 0, 10, True)]
    adopter.adopt_locks(KEY, 7, keep=False)      # an adoption that failed drops them
    assert store.locks_of(KEY) == []
