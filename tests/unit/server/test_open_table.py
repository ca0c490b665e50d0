"""The open table (smbcad.server.opens): persistent opens coming back after a
restart or a takeover (adopt), leaving with a share (release), the open
lifecycle table and DurableFileIds, against the real log-engine store and a
real share directory."""

import asyncio
import os
import shutil

import pytest

from smbcad.openstate.db import OpenStateDb
from smbcad.server import durable, files, open_records, opens
from smbcad.store import LeaseRecord, LocalHandleStore, LockRecord, LogEngine, PersistentOpen
from smbcad.vfs import ShareFs
from tests.unit.server.harness import make_server

CLIENT = bytes(range(16))
CREATE_GUID = bytes(range(16, 32))
LEASE_KEY = bytes(range(32, 48))


def record_for(stat_path: str, share_dir, **overrides) -> PersistentOpen:
    """A record of the file at ``stat_path``, identified as the server does:
    (volume id, inode) (smbcad/vfs/volume_id.py)."""
    path = stat_path
    with ShareFs(str(share_dir)) as fs:
        info = fs.stat_path((stat_path,))
    fields = dict(durable_file_id=0x1234, create_guid=CREATE_GUID, client_guid=CLIENT,
                  owner_user="alice", owner_domain="WORKGROUP", share_name="share", path=path,
                  file_dev=info.device_id, file_ino=info.file_id, granted_access=0x0012019F,
                  desired_access=0x0012019F, share_access=0, is_persistent=True,
                  is_durable=True, durable_timeout_ms=60_000, disconnected_at_ms=None)
    fields.update(overrides)
    return PersistentOpen(**fields)


def run_restore(tmp_path, records, clock=None):
    """Store ``records`` as a crashed server left them, then start a new
    server on the same store; returns (server, (restored, dropped), remaining,
    timers) and, as ``server.adopt_result``, the whole AdoptResult."""
    share_dir = tmp_path / "share"
    store_dir = tmp_path / "state" / "handles"

    async def main():
        store = await LocalHandleStore.open(LogEngine(str(store_dir)))
        for record in records:
            await store.create(record)
        await store.shutdown()
        server = make_server(str(share_dir), str(tmp_path / "state"))
        if clock is not None:
            server.clock = server.opens.clock = clock
        result = await server.start_local_shares(
            await LocalHandleStore.open(LogEngine(str(store_dir))))
        server.adopt_result = result
        remaining = await server.handle_store.traverse()
        timers = {open_.persistent_id: open_.scavenger.when() - asyncio.get_running_loop().time()
                  for open_ in server.opens.by_persistent_id.values()}
        for open_ in list(server.opens.by_persistent_id.values()):
            server.opens.stop_scavenger(open_)
        await server.handle_store.shutdown()
        return server, (result.restored, result.dropped), remaining, timers
    return asyncio.run(main())


def make_share(tmp_path, name="vm.vhdx", data=b"disk"):
    share_dir = tmp_path / "share"
    share_dir.mkdir(exist_ok=True)
    (share_dir / name).write_bytes(data)
    (tmp_path / "state").mkdir(exist_ok=True)
    return share_dir


def test_open_comes_back_disconnected_with_its_lease_locks_and_sequences(tmp_path):
    share_dir = make_share(tmp_path)
    sequences = bytearray(64)
    sequences[4] = 0x10 | 7
    record = record_for("vm.vhdx", share_dir, lease=LeaseRecord(LEASE_KEY, 2, 0x07, epoch=3),
                        locks=(LockRecord(0, 4096, True),), lock_sequences=bytes(sequences),
                        disconnected_at_ms=None)
    server, (restored, dropped), remaining, timers = run_restore(tmp_path, [record])
    assert (restored, dropped) == (1, 0)
    open_ = server.opens.by_persistent_id[0x1234]
    assert open_.session is None and open_.persistent
    assert open_.durable_owner == ("alice", "WORKGROUP")
    assert server.opens.by_create_guid[CREATE_GUID] is open_
    state = server.opens.by_file[open_.file_key]
    assert state.opens == [open_]
    assert [(lock.offset, lock.length, lock.exclusive, lock.owner) for lock in state.locks.locks] \
        == [(0, 4096, True, open_)]
    lease = server.leasing.lease(CLIENT, LEASE_KEY)
    assert lease.opens == [open_] and lease.state.held == 0x07 and lease.epoch == 3
    assert open_.lock_sequences[4] == 0x17
    # it was connected when the server died: now it is marked disconnected,
    # in the store too, and its timer runs for the whole timeout
    assert remaining[0].disconnected_at_ms is not None
    assert 59 < timers[0x1234] <= 60
    # smbcad_handles counts it, by kind and state, when Prometheus scrapes
    server.metrics.watch_handles(server.opens, lambda: {})
    handles = {(kind, state): server.metrics.registry.get_sample_value(
        "smbcad_handles", {"kind": kind, "state": state})
        for kind in ("persistent", "durable") for state in ("connected", "disconnected")}
    assert handles == {("persistent", "connected"): 0, ("persistent", "disconnected"): 1,
                       ("durable", "connected"): 0, ("durable", "disconnected"): 0}


def test_open_blocks_a_sharing_violation_until_reconnected(tmp_path):
    share_dir = make_share(tmp_path)
    server, *_ = run_restore(tmp_path, [record_for("vm.vhdx", share_dir)])
    open_ = server.opens.by_persistent_id[0x1234]
    from smbcad.proto.errors import SmbError
    try:
        files.check_share_access(server, open_.file_key, 0x2, 0)
    except SmbError as exc:
        assert exc.status == 0xC0000043          # SHARING_VIOLATION: share mode kept
    else:
        raise AssertionError("restored open lost its share mode")


def test_remaining_time_counts_from_the_disconnect(tmp_path):
    share_dir = make_share(tmp_path)
    now_s = 1_000_000.0
    record = record_for("vm.vhdx", share_dir, disconnected_at_ms=int(now_s * 1000) - 45_000)
    server, result, _, timers = run_restore(tmp_path, [record], clock=lambda: now_s)
    assert result == (1, 0)
    assert 14 < timers[0x1234] <= 15



def test_records_that_cannot_come_back_are_dropped_and_the_file_is_free(tmp_path):
    share_dir = make_share(tmp_path)
    (share_dir / "other").write_bytes(b"x")
    now_s = 2_000_000.0
    expired = record_for("vm.vhdx", share_dir, durable_file_id=1,
                         disconnected_at_ms=int(now_s * 1000) - 61_000)
    replaced = record_for("other", share_dir, durable_file_id=2, file_ino=1)
    gone = record_for("other", share_dir, durable_file_id=3, path="missing.vhdx")
    server, result, remaining, _ = run_restore(tmp_path, [expired, replaced, gone],
                                               clock=lambda: now_s)
    assert result == (0, 3)
    assert remaining == ()
    assert server.opens.by_persistent_id == {} and server.opens.by_file == {}


def test_records_of_a_share_not_online_here_are_kept_untouched(tmp_path):
    """A node never drops the records of an aggregate it does not serve (yet):
    the share may be mounted later, or be the partner's."""
    share_dir = make_share(tmp_path)
    elsewhere = record_for("vm.vhdx", share_dir, durable_file_id=4, share_name="nosuch",
                           disconnected_at_ms=None)
    server, result, remaining, _ = run_restore(tmp_path, [elsewhere])
    assert result == (0, 0) and server.adopt_result.kept == 1
    assert len(remaining) == 1
    assert remaining[0].durable_file_id == 4 and remaining[0].disconnected_at_ms is None
    assert server.opens.by_persistent_id == {}


def test_a_record_of_another_volume_is_another_file(tmp_path):
    share_dir = make_share(tmp_path)
    record = record_for("vm.vhdx", share_dir)
    record = record_for("vm.vhdx", share_dir, file_dev=record.file_dev ^ 0x5A5A)
    server, result, remaining, _ = run_restore(tmp_path, [record])
    assert result == (0, 1) and remaining == ()


def test_a_record_written_with_st_dev_before_volume_ids_still_comes_back(tmp_path):
    share_dir = make_share(tmp_path)
    st = os.stat(share_dir / "vm.vhdx")
    with ShareFs(str(share_dir)) as fs:
        if fs.volume.volume_id == st.st_dev:
            pytest.skip(f"tmp_path's file system has no volume id ({fs.volume.fs_type})")
    record = record_for("vm.vhdx", share_dir, file_dev=st.st_dev)
    server, result, *_ = run_restore(tmp_path, [record])
    assert result == (1, 0)
    open_ = server.opens.by_persistent_id[0x1234]
    share_fs = server.find_share("share").fs
    assert open_.file_key == (share_fs.volume.volume_id, st.st_ino)   # the new identity
    state = server.opens.by_file[open_.file_key]
    assert open_records.to_record(open_, state, 1, delete_pending=False).file_dev \
        == share_fs.volume.volume_id


def test_a_delete_disposition_is_carried_in_the_record_and_comes_back(tmp_path):
    share_dir = make_share(tmp_path)
    server, *_ = run_restore(tmp_path, [record_for("vm.vhdx", share_dir)])
    open_ = server.opens.by_persistent_id[0x1234]
    assert not durable._record(server.opens, open_, 1).delete_on_close
    server.opens.set_delete_pending(open_.file_key, True)    # SET_INFO disposition
    record = durable._record(server.opens, open_, 1)
    assert record.delete_on_close
    shutil.rmtree(tmp_path / "state" / "handles")             # a fresh store holding just it
    restored, *_ = run_restore(tmp_path, [record])
    assert restored.opens.by_persistent_id[0x1234].delete_on_close


def test_record_and_open_round_trip(tmp_path):
    """to_record and from_record are inverses for everything an open keeps."""
    share_dir = make_share(tmp_path)
    sequences = bytes([0x10 | 3] + [0] * 63)
    record = record_for("vm.vhdx", share_dir, lease=LeaseRecord(LEASE_KEY, 2, 0x07, epoch=3),
                        locks=(LockRecord(0, 4096, True), LockRecord(8192, 10, False)),
                        lock_sequences=sequences, disconnected_at_ms=123_000,
                        app_instance_id=bytes(range(48, 64)), position=77,
                        channel_sequence=5, is_replay_eligible=True, resiliency_timeout_ms=9,
                        record_version=4, oplock_level=0xFF)
    server, *_ = run_restore(tmp_path, [record], clock=lambda: 123.0)
    open_ = server.opens.by_persistent_id[0x1234]
    again = open_records.to_record(open_, server.opens.by_file[open_.file_key],
                                   record.record_version, delete_pending=False)
    assert again == record


def test_adoption_after_a_takeover_restarts_every_timer(tmp_path):
    """The old owner's disconnect time is from another clock, and its death was
    no disconnect: a takeover gives every client its whole timeout from now."""
    share_dir = make_share(tmp_path)
    now_s = 3_000_000.0
    long_gone = record_for("vm.vhdx", share_dir,
                           disconnected_at_ms=int(now_s * 1000) - 600_000)
    store_dir = tmp_path / "state" / "handles"

    async def main():
        store = await LocalHandleStore.open(LogEngine(str(store_dir)))
        await store.create(long_gone)
        server = make_server(str(share_dir), str(tmp_path / "state"))
        server.clock = server.opens.clock = lambda: now_s
        share = server.find_share("share")
        share.store = store
        result = await server.opens.adopt(await store.traverse(), {"share": share},
                                          restart_timers=True)
        open_ = server.opens.by_persistent_id[0x1234]
        left = open_.scavenger.when() - asyncio.get_running_loop().time()
        stored = await store.lookup(0x1234)
        server.opens.stop_scavenger(open_)
        await store.shutdown()
        return result, left, stored
    result, left, stored = asyncio.run(main())
    assert (result.restored, result.dropped) == (1, 0)
    assert 59 < left <= 60
    assert stored.disconnected_at_ms == int(now_s * 1000)


def test_release_hands_persistent_opens_over_and_keeps_their_records(tmp_path):
    share_dir = make_share(tmp_path)
    (share_dir / "plain").write_bytes(b"p")
    store_dir = tmp_path / "state" / "handles"

    async def main():
        store = await LocalHandleStore.open(LogEngine(str(store_dir)))
        await store.create(record_for("vm.vhdx", share_dir,
                                      lease=LeaseRecord(LEASE_KEY, 2, 0x07, epoch=3),
                                      locks=(LockRecord(0, 10, True),)))
        server = make_server(str(share_dir), str(tmp_path / "state"))
        await server.start_local_shares(store)
        share = server.find_share("share")
        open_ = server.opens.by_persistent_id[0x1234]
        commits = server.opens.release(share)
        for commit in commits:
            await commit
        await store.commit_barrier()
        left = await store.traverse()
        await store.shutdown()
        return server, open_, commits, left
    server, open_, commits, left = asyncio.run(main())
    assert commits == []
    assert opens.state_of(open_) is opens.OpenState.RELEASED
    assert server.opens.by_persistent_id == {} and server.opens.by_file == {}
    assert server.leasing.lease(CLIENT, LEASE_KEY) is None
    assert [record.durable_file_id for record in left] == [0x1234]
    assert left[0].locks == (LockRecord(0, 10, True),) and left[0].lease.state == 0x07


def test_release_refuses_an_open_that_is_still_connected(tmp_path):
    share_dir = make_share(tmp_path)
    server, *_ = run_restore(tmp_path, [record_for("vm.vhdx", share_dir)])
    open_ = server.opens.by_persistent_id[0x1234]
    open_.session = object()          # as if a DH2C had attached it
    with pytest.raises(opens.InvalidTransition):
        server.opens.release(server.find_share("share"))


@pytest.mark.parametrize("state", list(opens.OpenState))
@pytest.mark.parametrize("event", list(opens.OpenInput))
def test_lifecycle_table_allows_exactly_its_rows(state, event):
    fake = type("FakeOpen", (), {})()
    fake.persistent_id = 1
    fake.closed = state in (opens.OpenState.CLOSED, opens.OpenState.RELEASED)
    fake.released = state is opens.OpenState.RELEASED
    fake.session = None if state is not opens.OpenState.CONNECTED else object()
    assert opens.state_of(fake) is state
    if (state, event) in opens.LIFECYCLE:
        assert opens._step(fake, event) is opens.LIFECYCLE[(state, event)]
    else:
        with pytest.raises(opens.InvalidTransition):
            opens._step(fake, event)


def test_durable_file_ids_carry_the_node_id_and_skip_foreign_ones(tmp_path):
    make_share(tmp_path)
    table = opens.OpenTable(metrics=None, clock=lambda: 0.0, leasing=None, spawn=None,
                            loop=None, open_state=OpenStateDb.private(), node_id=2)
    first, _ = table.next_file_ids()
    assert first >> opens.NODE_ID_SHIFT == 2
    table.foreign_ids = lambda durable_file_id: durable_file_id == first + 1
    second, _ = table.next_file_ids()
    assert second == first + 2
    with pytest.raises(ValueError):
        opens.OpenTable(metrics=None, clock=lambda: 0.0, leasing=None, spawn=None, loop=None,
                        open_state=OpenStateDb.private(), node_id=256)


def test_a_renamed_open_is_stored_and_comes_back_under_its_new_name(tmp_path):
    """The record carries the name the file has now: a persistent open renamed
    through SET_INFO (or through another open of the same file) is found again
    after a restart or takeover, not dropped as "gone"."""
    from smbcad.server import renamed_opens
    share_dir = make_share(tmp_path)
    server, *_ = run_restore(tmp_path, [record_for("vm.vhdx", share_dir)])
    open_ = server.opens.by_persistent_id[0x1234]
    share = server.find_share("share")
    old = open_.handle.path
    new = share.fs.rename(open_.handle, ("renamed.vhdx",)).path
    renamed_opens.follow(server, share, open_.file_key, old, new)
    state = server.opens.by_file[open_.file_key]
    record = open_records.to_record(open_, state, 1, delete_pending=False)
    assert record.path == "renamed.vhdx"
    shutil.rmtree(tmp_path / "state" / "handles")
    restored, result, *_ = run_restore(tmp_path, [record])
    assert result == (1, 0)
    assert restored.opens.by_persistent_id[0x1234].handle.path == "renamed.vhdx"


def test_the_owner_sid_comes_back_with_the_open_and_goes_back_to_the_store(tmp_path):
    share_dir = make_share(tmp_path)
    sid = "S-1-5-21-1004336348-1177238915-682003330-1105"
    server, (restored, _), remaining, _ = run_restore(
        tmp_path, [record_for("vm.vhdx", share_dir, owner_sid=sid)])
    assert restored == 1
    assert server.opens.by_persistent_id[0x1234].durable_owner_sid == sid
    assert remaining[0].owner_sid == sid


def test_a_restored_directory_lease_is_broken_by_a_change_to_its_listing(tmp_path):
    """A persistent open of a directory comes back with its directory lease
    known as one: a file created in the directory afterwards breaks it
    ([MS-FSA] 2.1.4.13), parked for the owner's reconnect."""
    from smbcad.server import dirleases
    share_dir = make_share(tmp_path)
    (share_dir / "vmdir").mkdir()
    record = record_for("vmdir", share_dir, is_directory=True, create_options=0x1,
                        lease=LeaseRecord(LEASE_KEY, 2, 0x3, epoch=1))
    server, (restored, dropped), *_ = run_restore(tmp_path, [record])
    assert (restored, dropped) == (1, 0)
    lease = server.leasing.lease(CLIENT, LEASE_KEY)
    assert lease in server.leasing.dir_leases

    async def create_in_the_directory():
        dirleases.break_parent(server.leasing, server.find_share("share"), "vmdir/new.txt",
                               None)
        assert lease.state.breaking_to == 0
    asyncio.run(create_in_the_directory())
