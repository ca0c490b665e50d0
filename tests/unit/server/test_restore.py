"""Persistent opens coming back after a restart (smbcad.server.restore),
against the real log-engine store and a real share directory."""

import asyncio
import os
import shutil

import pytest

from smbcad.server import durable, files, restore
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
    server on the same store and restore; returns (server, result, remaining)."""
    share_dir = tmp_path / "share"
    store_dir = tmp_path / "state" / "handles"

    async def main():
        store = await LocalHandleStore.open(LogEngine(str(store_dir)))
        for record in records:
            await store.create(record)
        await store.shutdown()
        server = make_server(str(share_dir), str(tmp_path / "state"))
        if clock is not None:
            server.clock = clock
        server.handle_store = await LocalHandleStore.open(LogEngine(str(store_dir)))
        result = await restore.restore_persistent_opens(server)
        remaining = await server.handle_store.traverse()
        timers = {open_.persistent_id: open_.scavenger.when() - asyncio.get_running_loop().time()
                  for open_ in server.opens_by_persistent_id.values()}
        for open_ in list(server.opens_by_persistent_id.values()):
            durable.stop_scavenger(open_)
        await server.handle_store.shutdown()
        return server, result, remaining, timers
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
    open_ = server.opens_by_persistent_id[0x1234]
    assert open_.session is None and open_.persistent
    assert open_.durable_owner == ("alice", "WORKGROUP")
    assert server.opens_by_create_guid[CREATE_GUID] is open_
    state = server.opens_by_file[open_.file_key]
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


def test_open_blocks_a_sharing_violation_until_reconnected(tmp_path):
    share_dir = make_share(tmp_path)
    server, *_ = run_restore(tmp_path, [record_for("vm.vhdx", share_dir)])
    open_ = server.opens_by_persistent_id[0x1234]
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
    no_share = record_for("other", share_dir, durable_file_id=4, share_name="nosuch")
    server, result, remaining, _ = run_restore(tmp_path, [expired, replaced, gone, no_share],
                                               clock=lambda: now_s)
    assert result == (0, 4)
    assert remaining == ()
    assert server.opens_by_persistent_id == {} and server.opens_by_file == {}


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
    open_ = server.opens_by_persistent_id[0x1234]
    share_fs = server.find_share("share").fs
    assert open_.file_key == (share_fs.volume.volume_id, st.st_ino)   # the new identity
    assert durable.to_record(server, open_, 1).file_dev == share_fs.volume.volume_id


def test_a_delete_disposition_is_carried_in_the_record_and_comes_back(tmp_path):
    share_dir = make_share(tmp_path)
    server, *_ = run_restore(tmp_path, [record_for("vm.vhdx", share_dir)])
    open_ = server.opens_by_persistent_id[0x1234]
    assert not durable.to_record(server, open_, 1).delete_on_close
    server.opens_by_file[open_.file_key].delete_pending = True    # SET_INFO disposition
    record = durable.to_record(server, open_, 1)
    assert record.delete_on_close
    shutil.rmtree(tmp_path / "state" / "handles")             # a fresh store holding just it
    restored, *_ = run_restore(tmp_path, [record])
    assert restored.opens_by_persistent_id[0x1234].delete_on_close
