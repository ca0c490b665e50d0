"""Oplocks and leases end to end through real Connections (smbcad/server/
leases.py, commands/oplock_break.py; [MS-SMB2] 3.3.4.6, 3.3.4.7, 3.3.5.9.8,
3.3.5.22).

Two clients on one SmbServer and one event loop: the break notification
reaches the first client when the second opens the file for writing, the
second client's CREATE pends (interim STATUS_PENDING) until the first
acknowledges or the 35-second timer fires.  The timer is a fake: the test
fires it, nothing sleeps.
"""

import asyncio
import struct
import uuid

import pytest

from smbcad.proto.constants import Command, HeaderFlags
from smbcad.proto.create_contexts import split_create_contexts
from smbcad.proto.status import NtStatus
from smbcad.server.leases import Leasing
from tests.unit.proto import wire
from tests.unit.server import harness

R, H, W = 1, 2, 4
RH, RW, RWH = R | H, R | W, R | W | H
LEVEL_II, BATCH, LEASE = 0x01, 0x09, 0xFF
OPEN_IF, OVERWRITE_IF = 3, 5
READ_WRITE = 0x0012019F
KEY1, KEY2 = uuid.uuid4().bytes, uuid.uuid4().bytes


class FakeTimers:
    """Stands in for loop.call_later: the test decides when timers fire."""

    def __init__(self):
        self.pending = []

    def call_later(self, delay, callback):
        timer = _Timer(delay, callback)
        self.pending.append(timer)
        return timer

    def fire_all(self):
        due, self.pending = self.pending, []
        for timer in due:
            if not timer.cancelled:
                timer.callback()


class _Timer:
    def __init__(self, delay, callback):
        self.delay, self.callback, self.cancelled = delay, callback, False

    def cancel(self):
        self.cancelled = True


class LoopClient(harness.Client):
    """harness.Client on a shared event loop, keeping every frame it receives
    (responses, interim responses and break notifications) for inspection."""

    def __init__(self, server, loop):
        super().__init__(server)
        self.loop = loop
        server.connections.add(self.conn)

    def exchange(self, frame: bytes) -> list[bytes]:
        before = len(self.sink.frames)
        self.loop.run_until_complete(self.conn.receive_frame(bytearray(frame)))
        settle(self.loop)
        return self.sink.frames[before:]

    def send(self, command: int, body: bytes) -> int:
        """Send a signed request; returns its MessageId (replies land in sink)."""
        mid = self.message_id
        self.message_id += 1
        msg = bytearray(harness.header(command, mid, self.session_id, self.tree_id,
                                       HeaderFlags.SIGNED) + body)
        self.signer.sign(msg)
        self.exchange(bytes(msg))
        return mid

    def final(self, mid: int):
        """The final (non-interim) response to ``mid``, or None if still pending."""
        for frame in self.sink.frames:
            if _mid(frame) == mid and _status(frame) != NtStatus.PENDING:
                return frame
        return None

    def interim(self, mid: int) -> bool:
        return any(_mid(f) == mid and _status(f) == NtStatus.PENDING for f in self.sink.frames)

    def breaks(self) -> list[bytes]:
        return [f for f in self.sink.frames
                if _command(f) == Command.OPLOCK_BREAK and _mid(f) == 0xFFFFFFFFFFFFFFFF]


def settle(loop):
    for _ in range(5):
        loop.run_until_complete(asyncio.sleep(0))


def _mid(frame):
    return struct.unpack_from("<Q", frame, 24)[0]


def _status(frame):
    return struct.unpack_from("<I", frame, 8)[0]


def _command(frame):
    return struct.unpack_from("<H", frame, 12)[0]


def lease_context(key: bytes, state: int, version: int = 2, epoch: int = 0) -> bytes:
    if version == 1:
        data = struct.pack("<16sIIQ", key, state, 0, 0)
    else:
        data = struct.pack("<16sIIQ16sHH", key, state, 0, 0, bytes(16), epoch, 0)
    return wire.context_chain((b"RqLs", data))


def create(client, name, *, oplock=0, lease=None, access=READ_WRITE, disposition=OPEN_IF):
    contexts = lease_context(*lease) if lease is not None else b""
    return client.send(Command.CREATE, wire.create_request(
        name, contexts, oplock=oplock, access=access, disposition=disposition))


def created(frame):
    """(oplock level, file id, lease state or None) of a CREATE response."""
    assert _status(frame) == 0, hex(_status(frame))
    level = frame[64 + 2]
    file_id = struct.unpack_from("<QQ", frame, 64 + 64)
    offset, length = struct.unpack_from("<II", frame, 64 + 80)
    state = None
    for context in split_create_contexts(frame[offset:offset + length]) if length else ():
        if context.name == b"RqLs":
            state = struct.unpack_from("<I", context.data, 16)[0]
    return level, file_id, state


def lease_break(frame):
    """(flags, key, current, new, epoch) of a Lease Break Notification (2.2.23.2)."""
    size, epoch, flags, key, current, new = struct.unpack_from("<HHI16sII", frame, 64)
    assert size == 44
    return flags, key, current, new, epoch


def lease_ack(client, key: bytes, state: int) -> int:
    return client.send(Command.OPLOCK_BREAK, struct.pack("<HHI16sIQ", 36, 0, 0, key, state, 0))


def oplock_ack(client, file_id, level: int) -> int:
    return client.send(Command.OPLOCK_BREAK, struct.pack("<HBBIQQ", 24, level, 0, 0, *file_id))


def leasing_server(tmp_path, loop):
    """A server on ``loop`` whose caching timers are FakeTimers: (server, timers)."""
    share, state = tmp_path / "share", tmp_path / "state"
    share.mkdir()
    state.mkdir()
    server = harness.make_server(str(share), str(state))
    timers = FakeTimers()
    server.leasing = server.opens.leasing = Leasing(call_later=timers.call_later,
                                                    call_soon=loop.call_soon)
    return server, timers


@pytest.fixture
def world(tmp_path):
    loop = asyncio.new_event_loop()
    server, timers = leasing_server(tmp_path, loop)
    clients = []
    for _ in range(2):
        client = LoopClient(server, loop)
        client.negotiate()
        client.session_setup()
        assert client.tree_connect() == 0
        clients.append(client)
    yield server, clients[0], clients[1], timers
    loop.close()


def test_a_lease_break_reaches_the_first_client_when_the_second_opens_for_write(world):
    server, one, two, timers = world
    level, _, state = created(one.final(create(one, "f", oplock=LEASE, lease=(KEY1, RWH))))
    assert (level, state) == (LEASE, RWH)

    mid = create(two, "f")                        # no lease: takes W and waits
    assert two.final(mid) is None and two.interim(mid)
    (notification,) = one.breaks()
    flags, key, current, new, epoch = lease_break(notification)
    assert (flags, key, current, new, epoch) == (1, KEY1, RWH, RH, 2)
    assert two.breaks() == []

    ack = lease_ack(one, KEY1, RH)
    assert _status(one.final(ack)) == 0
    assert struct.unpack_from("<I", one.final(ack), 64 + 24)[0] == RH
    level, _, _ = created(two.final(mid))         # the CREATE went on after the ack
    assert level == 0
    assert server.leasing.lease(one.conn.client_guid, KEY1).state.held == RH


def test_an_unacknowledged_break_times_out_after_35_seconds(world):
    server, one, two, timers = world
    created(one.final(create(one, "f", oplock=LEASE, lease=(KEY1, RWH))))
    mid = create(two, "f", oplock=LEASE, lease=(KEY2, RWH))
    assert two.final(mid) is None
    assert [timer.delay for timer in timers.pending] == [35.0]
    timers.fire_all()
    settle(one.loop)
    level, _, state = created(two.final(mid))
    assert (level, state) == (LEASE, RH)          # another open: no W
    assert server.leasing.lease(one.conn.client_guid, KEY1).state.held == 0
    # The late acknowledgment finds no break in progress (3.3.5.22.2).
    assert _status(one.final(lease_ack(one, KEY1, RH))) == NtStatus.UNSUCCESSFUL


def test_batch_oplock_breaks_to_level_ii(world):
    server, one, two, timers = world
    level, file_id, _ = created(one.final(create(one, "f", oplock=BATCH)))
    assert level == BATCH
    mid = create(two, "f", oplock=BATCH)
    (notification,) = one.breaks()
    assert notification[64 + 2] == LEVEL_II
    assert struct.unpack_from("<QQ", notification, 64 + 8) == file_id
    assert struct.unpack_from("<Q", notification, 40)[0] == 0      # unsigned, no session
    ack = oplock_ack(one, file_id, LEVEL_II)
    assert one.final(ack)[64 + 2] == LEVEL_II
    level, _, _ = created(two.final(mid))
    assert level == LEVEL_II


def test_a_write_breaks_level_ii_to_none_without_waiting(world):
    server, one, two, timers = world
    _, id1, _ = created(one.final(create(one, "f", oplock=LEVEL_II)))
    level, id2, _ = created(two.final(create(two, "f", oplock=LEVEL_II)))
    assert level == LEVEL_II and one.breaks() == []
    write = two.send(Command.WRITE, wire.write_request(*id2, 0, b"data"))
    assert _status(two.final(write)) == 0
    # Both level II holders hear of it, the writer too ([MS-FSA] 2.1.4.12 WRITE).
    assert [b[64 + 2] for b in one.breaks()] == [0]
    assert [b[64 + 2] for b in two.breaks()] == [0]
    assert timers.pending == []
    # A level II break needs no acknowledgment (3.3.5.22.1).
    assert _status(one.final(oplock_ack(one, id1, 0))) == NtStatus.INVALID_OPLOCK_PROTOCOL


def test_a_read_lease_breaks_to_none_on_write_without_ack(world):
    server, one, two, timers = world
    created(one.final(create(one, "f", oplock=LEASE, lease=(KEY1, R))))
    _, id2, _ = created(two.final(create(two, "f")))
    two.final(two.send(Command.WRITE, wire.write_request(*id2, 0, b"x")))
    (notification,) = one.breaks()
    flags, key, current, new, _ = lease_break(notification)
    assert (flags, current, new) == (0, R, 0)


def test_lease_acknowledgment_errors(world):
    server, one, two, timers = world
    created(one.final(create(one, "f", oplock=LEASE, lease=(KEY1, RWH))))
    assert _status(one.final(lease_ack(one, KEY2, 0))) == NtStatus.OBJECT_NAME_NOT_FOUND
    assert _status(one.final(lease_ack(one, KEY1, 0))) == NtStatus.UNSUCCESSFUL
    mid = create(two, "f", disposition=OVERWRITE_IF)          # breaks to none
    assert lease_break(one.breaks()[0])[3] == 0
    for state in (RWH, RW, RH, R, W, H):
        assert _status(one.final(lease_ack(one, KEY1, state))) == NtStatus.REQUEST_NOT_ACCEPTED
    assert _status(one.final(lease_ack(one, KEY1, 0))) == 0
    assert created(two.final(mid))[0] == 0


def test_same_lease_key_shares_the_lease_and_never_breaks_itself(world):
    server, one, two, timers = world
    created(one.final(create(one, "f", oplock=LEASE, lease=(KEY1, RWH))))
    level, _, state = created(one.final(create(one, "f", oplock=LEASE, lease=(KEY1, RWH))))
    assert (level, state) == (LEASE, RWH) and one.breaks() == []
    lease = server.leasing.lease(one.conn.client_guid, KEY1)
    assert len(lease.opens) == 2


def test_a_lease_key_names_one_file(world):
    server, one, two, timers = world
    _, file_id, _ = created(one.final(create(one, "f", oplock=LEASE, lease=(KEY1, RWH))))
    mid = create(one, "g", oplock=LEASE, lease=(KEY1, RWH))
    assert _status(one.final(mid)) == NtStatus.INVALID_PARAMETER
    # Once its last open closes, the key is free for another file.
    one.final(one.send(Command.CLOSE, wire.close_request(*file_id)))
    assert server.leasing.lease(one.conn.client_guid, KEY1) is None
    assert created(one.final(create(one, "g", oplock=LEASE, lease=(KEY1, RWH))))[2] == RWH
    assert len(server.leasing.files) == 1          # "f" is forgotten


def test_closing_the_holder_lets_the_waiting_open_through(world):
    server, one, two, timers = world
    _, file_id, _ = created(one.final(create(one, "f", oplock=BATCH)))
    mid = create(two, "f", oplock=BATCH)
    assert two.final(mid) is None
    one.final(one.send(Command.CLOSE, wire.close_request(*file_id)))
    settle(one.loop)
    assert created(two.final(mid))[0] == BATCH           # alone now
    assert all(timer.cancelled for timer in timers.pending)


def test_cancel_ends_the_wait(world):
    server, one, two, timers = world
    created(one.final(create(one, "f", oplock=BATCH)))
    mid = create(two, "f")
    cancel = bytearray(harness.header(Command.CANCEL, mid, two.session_id, two.tree_id))
    two.exchange(bytes(cancel))
    assert _status(two.final(mid)) == NtStatus.CANCELLED
    assert all(not caching.waiters for caching in server.leasing.files.values())


def rename_request(file_id, new_name: str) -> bytes:
    """SET_INFO FileRenameInformation (2.2.39, [MS-FSCC] 2.4.42.2)."""
    raw = new_name.encode("utf-16-le")
    info = struct.pack("<B7xQI", 1, 0, len(raw)) + raw
    return struct.pack("<HBBIHHI", 33, 1, 10, len(info), 96, 0, 0) + struct.pack(
        "<QQ", *file_id) + info


def test_a_rename_waits_for_handle_caching_to_be_given_up(world):
    """smb2.lease.rename_wait: the other RH lease is broken to R and the
    rename completes only once that is acknowledged."""
    server, one, two, timers = world
    _, id1, _ = created(one.final(create(one, "src", oplock=LEASE, lease=(KEY1, RH),
                                         access=READ_WRITE | 0x10000)))
    created(two.final(create(two, "src", oplock=LEASE, lease=(KEY2, RH))))
    rename = one.send(Command.SET_INFO, rename_request(id1, "dst"))
    assert one.final(rename) is None and one.interim(rename)
    (notification,) = two.breaks()
    assert lease_break(notification)[:4] == (1, KEY2, RH, R)
    assert _status(two.final(lease_ack(two, KEY2, R))) == 0
    assert _status(one.final(rename)) == 0


def test_deleting_open_takes_handle_caching(world):
    """smb2.lease.unlink: an open with DELETE_ON_CLOSE breaks RH to R."""
    server, one, two, timers = world
    created(one.final(create(one, "f", oplock=LEASE, lease=(KEY1, RH))))
    mid = two.send(Command.CREATE, wire.create_request("f", access=0x10000 | 0x80,
                                                      disposition=1, options=0x1040))
    (notification,) = one.breaks()
    assert lease_break(notification)[2:4] == (RH, R)
    lease_ack(one, KEY1, R)
    assert _status(two.final(mid)) == 0


def test_persistent_opens_get_longer_break_timers(world):
    """<246>/<247>: 60 s for a persistent open's oplock, 180 s for a lease."""
    server, one, two, timers = world
    _, id1, _ = created(one.final(create(one, "f", oplock=BATCH)))
    server.opens.by_persistent_id[id1[0]].persistent = True
    create(two, "f")
    assert [timer.delay for timer in timers.pending] == [60.0]
    _, id2, _ = created(one.final(create(one, "g", oplock=LEASE, lease=(KEY1, RWH))))
    server.opens.by_persistent_id[id2[0]].persistent = True
    create(two, "g")
    assert [timer.delay for timer in timers.pending][1:] == [180.0]
