"""Directory leases, rename checks and named-stream leases end to end through
real Connections (smbcad/server/dirleases.py, renames.py, streams.py;
[MS-SMB2] 3.3.5.9.11, [MS-FSA] 2.1.4.13, 2.1.5.15.12).

Expected behaviour is Windows' as smbtorture records it: smb2.lease.v2_request
and Samba master's smb2.dirlease suite (setinfo, rename, rename_dst_parent),
smb2.oplock.batch19/exclusive6 and smb2.oplock.stream1.
"""

import struct
import uuid

import pytest

from smbcad.proto.constants import Command
from smbcad.proto.status import NtStatus
from tests.unit.proto import wire
from tests.unit.server.test_leases import (  # noqa: F401 - world is a fixture
    BATCH, LEASE, OPEN_IF, READ_WRITE, RH, RW, RWH, R, _status, create, created, lease_ack,
    lease_break, lease_context, oplock_ack, rename_request, world)

DIR_KEY, CHILD_KEY, OTHER_KEY = uuid.uuid4().bytes, uuid.uuid4().bytes, uuid.uuid4().bytes
DIRECTORY_FILE, NON_DIRECTORY_FILE = 0x01, 0x40
DELETE = 0x10000
ACK_REQUIRED, PARENT_LEASE_KEY_SET = 0x01, 0x04
OPEN, CREATE = 1, 2


def child_lease(key: bytes, state: int, parent: bytes | None) -> bytes:
    """A v2 lease context (2.2.13.2.10), with a ParentLeaseKey when given."""
    flags = PARENT_LEASE_KEY_SET if parent is not None else 0
    data = struct.pack("<16sIIQ16sHH", key, state, flags, 0, parent or bytes(16), 0, 0)
    return wire.context_chain((b"RqLs", data))


def open_dir(client, name, *, lease=(DIR_KEY, RWH), version=2, access=0x00120089, share=7):
    contexts = lease_context(*lease, version=version) if lease is not None else b""
    return client.final(client.send(Command.CREATE, wire.create_request(
        name, contexts, oplock=LEASE if lease is not None else 0, access=access, share=share,
        disposition=OPEN_IF, options=DIRECTORY_FILE)))


def create_child(client, name, *, key=CHILD_KEY, parent=None, disposition=CREATE,
                 access=READ_WRITE | DELETE):
    return client.final(client.send(Command.CREATE, wire.create_request(
        name, child_lease(key, RWH, parent), oplock=LEASE, access=access,
        disposition=disposition, options=NON_DIRECTORY_FILE)))


def close(client, file_id):
    assert _status(client.final(client.send(Command.CLOSE, wire.close_request(*file_id)))) == 0


def test_directories_get_r_or_rh_and_only_from_a_v2_request(world):
    server, one, two, timers = world
    assert created(open_dir(one, "d"))[::2] == (LEASE, RH)
    assert created(open_dir(one, "d", lease=(OTHER_KEY, RW)))[::2] == (LEASE, R)
    level, _, state = created(open_dir(two, "d", lease=(DIR_KEY, RWH), version=1))
    assert (level, state) == (0, None)
    assert one.breaks() == [] and two.breaks() == []


def test_a_child_created_without_the_parent_key_breaks_the_directory_to_none(world):
    server, one, two, timers = world
    created(open_dir(one, "d"))
    # With the directory's key as ParentLeaseKey: no break (smb2.lease.v2_request).
    created(create_child(one, "d\\a", parent=DIR_KEY))
    assert one.breaks() == []
    # Another client, no parent key: RH → none, acknowledgment required; the
    # CREATE does not wait for it ([MS-FSA] 2.1.4.13).
    level, _, state = created(create_child(two, "d\\b", key=OTHER_KEY))
    assert (level, state) == (LEASE, RWH)
    (notification,) = one.breaks()
    flags, key, current, new, epoch = lease_break(notification)
    assert (flags, key, current, new, epoch) == (ACK_REQUIRED, DIR_KEY, RH, 0, 2)
    assert _status(one.final(lease_ack(one, DIR_KEY, 0))) == 0
    # Asking again re-arms it with a new epoch.
    assert created(open_dir(one, "d"))[2] == RH
    assert server.leasing.lease(one.conn.client_guid, DIR_KEY).epoch == 3


def test_the_parent_key_spares_its_lease_whoever_holds_it(world):
    """smb2.dirlease.setinfo "second client, correct parent key": no break."""
    server, one, two, timers = world
    created(open_dir(one, "d"))
    created(create_child(two, "d\\a", key=OTHER_KEY, parent=DIR_KEY))
    assert one.breaks() == []


def test_a_write_breaks_the_directory_at_close_not_before(world):
    server, one, two, timers = world
    created(open_dir(one, "d"))
    _, file_id, _ = created(create_child(one, "d\\a", parent=DIR_KEY))
    _, other_id, _ = created(create_child(two, "d\\b", key=OTHER_KEY, parent=DIR_KEY))
    write = two.send(Command.WRITE, wire.write_request(*other_id, 0, b"data"))
    assert _status(two.final(write)) == 0
    assert one.breaks() == []
    close(two, other_id)
    assert one.breaks() == []               # the writer named the directory's lease
    write = one.send(Command.WRITE, wire.write_request(*file_id, 0, b"data"))
    assert _status(one.final(write)) == 0
    server.leasing.lease(one.conn.client_guid, CHILD_KEY).parent_lease_key = OTHER_KEY
    assert one.breaks() == []
    close(one, file_id)
    assert [lease_break(b)[2:4] for b in one.breaks()] == [(RH, 0)]


def test_set_info_and_delete_break_the_directory(world):
    server, one, two, timers = world
    created(open_dir(one, "d"))
    _, file_id, _ = created(create_child(two, "d\\a", key=OTHER_KEY, parent=DIR_KEY))
    eof = struct.pack("<HBBIHHI", 33, 1, 20, 8, 96, 0, 0) + struct.pack(
        "<QQ", *file_id) + struct.pack("<q", 10)
    assert _status(two.final(two.send(Command.SET_INFO, eof))) == 0
    assert one.breaks() == []               # the parent's own key
    server.leasing.lease(two.conn.client_guid, OTHER_KEY).parent_lease_key = bytes(16)
    assert _status(two.final(two.send(Command.SET_INFO, eof))) == 0
    assert [lease_break(b)[2:4] for b in one.breaks()] == [(RH, 0)]
    lease_ack(one, DIR_KEY, 0)
    created(open_dir(one, "d"))             # re-armed: RH again
    disposition = struct.pack("<HBBIHHI", 33, 1, 13, 1, 96, 0, 0) + struct.pack(
        "<QQ", *file_id) + b"\x01"
    assert _status(two.final(two.send(Command.SET_INFO, disposition))) == 0
    assert len(one.breaks()) == 1           # delete pending: nothing left the listing yet
    close(two, file_id)
    assert [lease_break(b)[2:4] for b in one.breaks()[1:]] == [(RH, 0)]


def test_a_rename_breaks_source_and_target_directories(world):
    """Samba master smb2.dirlease.rename, otherdir-correct-srcparent-leaskey."""
    server, one, two, timers = world
    created(open_dir(one, "src"))
    created(open_dir(one, "dst", lease=(OTHER_KEY, RH)))
    _, file_id, _ = created(create_child(two, "src\\f", key=CHILD_KEY, parent=DIR_KEY))
    assert _status(two.final(two.send(Command.SET_INFO, rename_request(file_id, "dst\\f")))) == 0
    assert [lease_break(b)[1:4] for b in one.breaks()] == [(OTHER_KEY, RH, 0)]


def test_a_rename_into_a_directory_open_for_delete_is_a_sharing_violation(world):
    """smb2.oplock.batch19 / exclusive6: no break of the file's own batch
    oplock; once the directory is open without DELETE the rename goes."""
    server, one, two, timers = world
    _, dir_id, _ = created(open_dir(one, "d", lease=None, access=0x1F01FF))
    level, file_id, _ = created(one.final(create(one, "d\\a", oplock=BATCH,
                                                 access=READ_WRITE | DELETE)))
    assert level == BATCH
    rename = one.send(Command.SET_INFO, rename_request(file_id, "d\\b"))
    assert _status(one.final(rename)) == NtStatus.SHARING_VIOLATION
    assert one.breaks() == []
    close(one, dir_id)
    created(open_dir(one, "d", lease=None, access=0x1F01FF & ~DELETE))
    assert _status(one.final(one.send(Command.SET_INFO, rename_request(file_id, "d\\b")))) == 0


@pytest.mark.parametrize("access, share, status", [
    (0x1F01FF, 3, NtStatus.SHARING_VIOLATION),            # DELETE, not shared: rename.*_delete_access2
    (0x1F01FF & ~DELETE, 7, NtStatus.SUCCESS),            # rename.no_delete_access
    (0x1F01FF & ~DELETE, 5, NtStatus.SHARING_VIOLATION),  # write not shared: no_delete_access2
    (0x00100080, 0, NtStatus.SUCCESS),                    # no data access: never conflicts
])
def test_the_target_directory_is_opened_for_add_file_sharing_read_and_write(
        world, access, share, status):
    """[MS-FSA] 2.1.5.15.12 <185>, as smb2.rename.* records it."""
    server, one, two, timers = world
    created(open_dir(one, "d", lease=None, access=access, share=share))
    _, file_id, _ = created(two.final(create(two, "x", access=READ_WRITE | DELETE)))
    assert _status(two.final(two.send(Command.SET_INFO, rename_request(file_id, "d\\x")))) \
        == status


def test_handle_leases_on_the_target_directory_are_broken_then_the_rename_fails(world):
    """Samba master smb2.dirlease.rename_dst_parent: RH → R, wait, then
    SHARING_VIOLATION while the DELETE open stays."""
    server, one, two, timers = world
    created(open_dir(one, "dst", lease=(DIR_KEY, RH), access=DELETE))
    _, file_id, _ = created(two.final(create(two, "f", access=READ_WRITE | DELETE)))
    rename = two.send(Command.SET_INFO, rename_request(file_id, "dst\\f"))
    assert two.final(rename) is None and two.interim(rename)
    (notification,) = one.breaks()
    assert lease_break(notification)[1:4] == (DIR_KEY, RH, R)
    lease_ack(one, DIR_KEY, R)
    assert _status(two.final(rename)) == NtStatus.SHARING_VIOLATION


def replace_request(file_id, new_name: str) -> bytes:
    """rename_request with ReplaceIfExists set."""
    body = bytearray(rename_request(file_id, new_name))
    body[32] = 1
    return bytes(body)


def test_replacing_an_open_target_takes_its_handle_caching_first(world):
    """Samba master smb2.lease.v2_rename_target_overwrite: RWH → RW, then
    ACCESS_DENIED while the target stays open."""
    server, one, two, timers = world
    _, src_id, _ = created(one.final(create(one, "src", access=READ_WRITE | DELETE)))
    created(two.final(create(two, "dst", oplock=LEASE, lease=(OTHER_KEY, RWH))))
    rename = one.send(Command.SET_INFO, replace_request(src_id, "dst"))
    assert one.final(rename) is None
    (notification,) = two.breaks()
    assert lease_break(notification)[1:4] == (OTHER_KEY, RWH, RW)
    lease_ack(two, OTHER_KEY, RW)
    assert _status(one.final(rename)) == NtStatus.ACCESS_DENIED
    assert _status(one.final(one.send(Command.SET_INFO, replace_request(src_id, "dst")))) \
        == NtStatus.ACCESS_DENIED
    assert len(two.breaks()) == 1           # no H left: no second break


def test_a_batch_oplock_on_a_replaced_target_goes_to_level_ii(world):
    server, one, two, timers = world
    _, src_id, _ = created(one.final(create(one, "src", access=READ_WRITE | DELETE)))
    _, dst_id, _ = created(two.final(create(two, "dst", oplock=BATCH)))
    rename = one.send(Command.SET_INFO, replace_request(src_id, "dst"))
    (notification,) = two.breaks()
    assert notification[64 + 2] == 0x01
    close(two, dst_id)                      # the client gives the handle up instead
    assert _status(one.final(rename)) == 0


def test_named_streams_have_their_own_oplocks(world):
    """smb2.oplock.stream1: the stream's batch oplock, the file's batch oplock,
    and neither breaks the other."""
    server, one, two, timers = world
    level, stream_id, _ = created(one.final(create(one, "f:s", oplock=BATCH)))
    assert level == BATCH
    level, _, _ = created(two.final(create(two, "f", oplock=BATCH)))
    assert level == BATCH and one.breaks() == []
    mid = create(two, "f:s", oplock=BATCH)
    (notification,) = one.breaks()
    oplock_ack(one, stream_id, 0x01)
    assert created(two.final(mid))[0] == 0x01


def test_named_streams_have_their_own_leases(world):
    """smb2.lease.request: a stream gets a lease under its own key."""
    server, one, two, timers = world
    assert created(one.final(create(one, "f", oplock=LEASE, lease=(CHILD_KEY, RWH))))[2] == RWH
    assert created(one.final(create(one, "f:s", oplock=LEASE, lease=(OTHER_KEY, RWH))))[2] == RWH
    mid = create(one, "f:t", oplock=LEASE, lease=(CHILD_KEY, RWH))
    assert _status(one.final(mid)) == NtStatus.INVALID_PARAMETER   # one key, one stream
