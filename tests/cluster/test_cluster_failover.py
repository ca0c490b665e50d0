"""Persistent handles move with their aggregate between two smbcad nodes
(issue 10, cluster tier), seen by smbprotocol from a client namespace.

The driver plays clusdisk: ``adopt``/``release`` on each node's control
socket and the LIF moved between the nodes' public links.  A client opens a
file on the ``ca`` share ``vms`` of aggregate ``aggr1`` through the LIF with
DH2Q (PERSISTENT), an RWH lease and a byte-range lock, and writes.  Then:

* **planned move**: ``release --planned`` on A, LIF to B, ``adopt`` on B;
  the client reconnects (same ClientGuid, PreviousSessionId, DH2C by the
  same persistent FileId) and finds its open, lease, lock and data; the
  pause (release + adopt) is printed;
* **kill -9 of the owner** with writes in flight: ``adopt`` on B from its
  mirrored replica; a second client gets STATUS_FILE_NOT_AVAILABLE until
  the owner is back; the owner's DH2C gets the same FileId, its lock still
  excludes others, every acknowledged byte is there, and a LOCK replayed
  with the same LockSequence is not applied twice;
* **mirror cut, then the owner killed**: A degrades (outdated marker and
  journal on the aggregate), B adopts replica + journal and loses nothing.

Server-side checks (not just "no error"): B's control socket lists the open
as adopted, and the DH2C answer carries the persistent FileId the first
CREATE returned (the kernel client would silently reopen instead).
"""

import os
import struct
import threading
import time
import uuid

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.connection import Capabilities, Connection, Request  # noqa: E402
from smbprotocol.create_contexts import (  # noqa: E402
    DurableHandleFlags, SMB2CreateDurableHandleResponseV2, SMB2CreateResponseLeaseV2)
from smbprotocol.exceptions import SMBConnectionClosed, SMBResponseException  # noqa: E402
from smbprotocol.header import Commands, SMB2HeaderRequest  # noqa: E402
from smbprotocol.file_info import FileRenameInformation  # noqa: E402
from smbprotocol.open import (  # noqa: E402
    CreateDisposition, FilePipePrinterAccessMask, LockFlags, SMB2LockElement, SMB2SetInfoRequest)
from smbprotocol.session import SMB2SessionSetupRequest, Session  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

from pair import CLIENT_ADDRESS, LIF, PASSWORD, USER  # noqa: E402
from persistent_client import (  # noqa: E402
    LEASE_RWH, READ_WRITE, WriteStream, create, dh2c_context, dh2q_context, lease_context, one)

WAIT_S = 15.0
DURABLE_TIMEOUT_MS = 60_000
CHUNK = 64 << 10
LOCK_OFFSET, LOCK_LENGTH = 1 << 40, 4096
STATUS_FILE_NOT_AVAILABLE = 0xC0000467
STATUS_LOCK_NOT_GRANTED = 0xC0000055
STATUS_RANGE_NOT_LOCKED = 0xC000007E
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
EXCLUSIVE_NOW = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY


class ReconnectSession(Session):
    """smbprotocol's Session with PreviousSessionId set in its SESSION_SETUP
    (3.2.4.2.3), which smbprotocol has no parameter for."""

    def __init__(self, *args, previous_session_id: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.previous_session_id = previous_session_id

    def connect(self):
        connection = self.connection
        send = connection.send

        def send_with_previous(message, *args, **kwargs):
            if isinstance(message, SMB2SessionSetupRequest):
                message["previous_session_id"] = self.previous_session_id
            return send(message, *args, **kwargs)
        connection.send = send_with_previous
        try:
            return super().connect()
        finally:
            del connection.send


class Client:
    """A connection, session and tree on ``vms`` through the LIF (runs in the
    client namespace: build it with ``client_thread.call(Client, ...)``)."""

    def __init__(self, client_guid: uuid.UUID, previous_session_id: int = 0) -> None:
        self.conn = Connection(client_guid, LIF, 445)
        self.conn.client_capabilities |= Capabilities.SMB2_GLOBAL_CAP_PERSISTENT_HANDLES
        self.conn.connect(timeout=WAIT_S)
        try:
            self.session = ReconnectSession(self.conn, USER, PASSWORD, require_encryption=False,
                                            previous_session_id=previous_session_id)
            self.session.connect()
            self.tree = TreeConnect(self.session, rf"\\{LIF}\vms")
            self.tree.connect()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.conn.disconnect(close=False)


def lock_element(flags) -> SMB2LockElement:
    element = SMB2LockElement()
    element["offset"] = LOCK_OFFSET
    element["length"] = LOCK_LENGTH
    element["flags"] = flags
    return element


def status_of(fn) -> int | None:
    try:
        fn()
    except SMBResponseException as exc:
        return exc.status
    return None


class Owner:
    """The client that owns the persistent open, and what it needs to reconnect."""

    def __init__(self, client_thread, name: str, timeout_ms: int = DURABLE_TIMEOUT_MS,
                 access: int = READ_WRITE, client_guid: uuid.UUID | None = None) -> None:
        self.thread = client_thread
        self.name = name
        self.client_guid = client_guid or uuid.uuid4()
        self.create_guid = uuid.uuid4()
        self.lease_key = os.urandom(16)
        self.client = client_thread.call(Client, self.client_guid)
        self.handle, contexts = client_thread.call(
            create, self.client.tree, name,
            [dh2q_context(self.create_guid, timeout_ms), lease_context(self.lease_key)],
            CreateDisposition.FILE_OVERWRITE_IF, True, access=access)
        durable = one(contexts, SMB2CreateDurableHandleResponseV2)
        assert durable["flags"].has_flag(DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT)
        assert one(contexts, SMB2CreateResponseLeaseV2)["lease_state"].get_value() == LEASE_RWH
        self.file_id = self.handle.file_id
        self.written: dict[int, bytes] = {}

    def write(self, index: int) -> None:
        data = os.urandom(CHUNK)
        self.thread.call(self.handle.write, data, index * CHUNK)
        self.written[index] = data

    def lock(self, sequence_number: int = 0, sequence_index: int = 0, flags=EXCLUSIVE_NOW) -> None:
        # LockSequenceNumber is the low 4 bits of the field, LockSequenceIndex
        # the high 28 (2.2.26; Samba: in_lock_sequence & 0xF); smbprotocol's
        # lock(lsn, lsi) puts lsn in the top bits, so pass the whole field as lsi.
        self.thread.call(self.handle.lock, [lock_element(flags)], 0,
                         (sequence_index << 4) | sequence_number)

    def reconnect(self, before_create=None) -> list:
        previous = self.client.session.session_id
        self.client.close()
        self.client = self.thread.call(Client, self.client_guid, previous)
        if before_create is not None:
            before_create(self.client)
        self.handle, contexts = self.thread.call(
            create, self.client.tree, self.name,
            [dh2c_context(self.file_id, self.create_guid), lease_context(self.lease_key)],
            CreateDisposition.FILE_OPEN, True)
        return contexts

    def read_back(self) -> None:
        for index, data in sorted(self.written.items()):
            got = self.thread.call(self.handle.read, index * CHUNK, CHUNK)
            assert got == data, f"chunk {index} differs after the move"


def adopted_opens(node) -> list:
    answer = node.request(command="opens")
    assert answer["ok"], answer
    return answer["opens"]


def test_planned_move_keeps_the_open_lease_lock_and_data(pair):
    assert pair.adopt("A")["ok"]
    owner = Owner(pair.client, "vm.vhdx")
    for index in range(8):
        owner.write(index)
    owner.lock(sequence_number=1, sequence_index=1)

    started = time.monotonic()
    released = pair.release("A", planned=True)
    adopted = pair.adopt("B")
    pause = time.monotonic() - started
    assert released["ok"] and released["handed_over"] == 1, released
    assert adopted["ok"] and adopted["restored"] == 1, (adopted, pair.b.log_tail())
    print(f"planned move of aggr1 ({pair.aggregate.kind}): release {released['seconds']:.3f} s, "
          f"adopt {adopted['seconds']:.3f} s, pause with remount {pause:.3f} s")

    [entry] = pair.b.admin("opens", "--disconnected")["opens"]    # smbca smbcad opens
    assert entry["state"] == "disconnected" and entry["persistent"]
    assert int(entry["durable_file_id"], 16) == int.from_bytes(owner.file_id[:8], "little")
    assert 55_000 < entry["expires_in_ms"] <= DURABLE_TIMEOUT_MS    # restarted at adoption

    contexts = owner.reconnect()
    assert owner.handle.file_id[:8] == owner.file_id[:8], "another persistent FileId"
    assert one(contexts, SMB2CreateResponseLeaseV2)["lease_state"].get_value() == LEASE_RWH
    owner.read_back()
    check_lock_came_along(owner)
    [entry] = adopted_opens(pair.b)
    assert entry["state"] == "connected"


def check_lock_came_along(owner, sequence_index: int = 1) -> None:
    """The byte-range lock (taken with LockSequence 1 of ``sequence_index``)
    is on the new owner node exactly once: its LOCK replayed with the same
    LockSequence succeeds without taking it again (3.3.5.14), a new exclusive
    LOCK of the range conflicts with it, and one unlock frees it (a second
    finds nothing)."""
    owner.lock(sequence_number=1, sequence_index=sequence_index)   # replay: not applied twice
    assert status_of(lambda: owner.lock(sequence_number=2, sequence_index=sequence_index)) \
        == STATUS_LOCK_NOT_GRANTED
    owner.lock(3, sequence_index, LockFlags.SMB2_LOCKFLAG_UNLOCK)
    assert status_of(lambda: owner.lock(4, sequence_index, LockFlags.SMB2_LOCKFLAG_UNLOCK)) \
        == STATUS_RANGE_NOT_LOCKED


def wait_in_sync(node, aggregate: str = "aggr1", past_mseq: int = -1) -> dict:
    """The owner's mirror of ``aggregate`` is caught up with the partner
    (and has committed beyond ``past_mseq``)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        status = node.request(command="status")["status"]
        [entry] = [a for a in status["aggregates"] if a["name"] == aggregate]
        mirror = entry["mirror"]
        if (mirror is not None and mirror["role"] == "primary" and mirror["in_sync"]
                and mirror["acked_mseq"] > past_mseq):
            return mirror
        assert time.monotonic() < deadline, f"mirror never in sync: {mirror}\n{node.log_tail()}"
        time.sleep(0.05)


def test_owner_killed_mid_stream_partner_adopts_from_its_replica(pair):
    assert pair.adopt("A")["ok"]
    wait_in_sync(pair.a)
    owner = Owner(pair.client, "vm.vhdx")
    owner.lock(sequence_number=1, sequence_index=1)
    data = {}
    acked: set[int] = set()
    stream = pair.client.call(
        WriteStream, owner.handle, owner.client.session,
        lambda index: data.setdefault(index, os.urandom(CHUNK)), acked, 8, WAIT_S)
    stream.wait_acked(24)
    # B holds A's tickle list already (clusdisk asks for it when a LIF moves alone).
    listed = pair.b.request(command="tickles", aggregate="aggr1")["tickles"]
    assert [[client, server] for client, _, *server in listed] == [[CLIENT_ADDRESS, [LIF, 445]]]

    pair.a.kill()                                    # kill -9, WRITEs in flight
    stream.join()
    assert stream.error is not None and len(stream.in_flight) >= 1
    owner.written.update({index: data[index] for index in acked})
    pair.lost("A")
    adopted = pair.adopt("B")
    assert adopted["ok"] and adopted["source"] == "replica" and adopted["restored"] == 1, \
        (adopted, pair.b.log_tail())
    # The dead owner's tickle list came over the mirror: clusdisk tickles the
    # client's connection(s) to the LIF when it comes up on B.
    assert adopted["tickles"] and all(
        client == CLIENT_ADDRESS and 0 < port < 65536 and server == [LIF, 445]
        for client, port, *server in adopted["tickles"]), adopted["tickles"]

    # Until its owner is back, nobody else gets the file.
    other = pair.client.call(Client, uuid.uuid4())
    try:
        assert status_of(lambda: pair.client.call(create, other.tree, "vm.vhdx")) \
            == STATUS_FILE_NOT_AVAILABLE
    finally:
        pair.client.call(other.close)

    contexts = owner.reconnect()
    assert owner.handle.file_id[:8] == owner.file_id[:8], "another persistent FileId"
    assert one(contexts, SMB2CreateResponseLeaseV2)["lease_state"].get_value() == LEASE_RWH
    owner.read_back()                                # every acknowledged WRITE
    check_lock_came_along(owner)
    [entry] = adopted_opens(pair.b)
    assert entry["state"] == "connected" and entry["persistent"]


def test_mirror_cut_then_owner_killed_partner_adopts_replica_and_journal(pair):
    assert pair.adopt("A")["ok"]
    wait_in_sync(pair.a)
    owner = Owner(pair.client, "db.mdf")
    pair.topology.cut_interconnect()
    # Each of these commits waits out the ACK timeout once, degrades (journal
    # and outdated marker on the aggregate), and is answered.
    owner.lock(sequence_number=1, sequence_index=1)
    owner.write(0)
    mirror = pair.a.request(command="status")["status"]["aggregates"][0]["mirror"]
    assert not mirror["in_sync"] and mirror["degrade_count"] >= 1, mirror
    assert (pair.mount_point("A") / ".smbca").is_dir()

    pair.a.kill()
    pair.lost("A")
    adopted = pair.adopt("B")
    assert adopted["ok"] and adopted["source"] == "journal" and adopted["restored"] == 1, \
        (adopted, pair.b.log_tail())
    owner.reconnect()
    assert owner.handle.file_id[:8] == owner.file_id[:8]
    owner.read_back()
    check_lock_came_along(owner)                     # taken while the mirror was cut


def test_partner_back_after_a_cut_resyncs(pair):
    assert pair.adopt("A")["ok"]
    wait_in_sync(pair.a)
    owner = Owner(pair.client, "log.ldf")
    pair.topology.cut_interconnect()
    owner.lock(sequence_number=1, sequence_index=1)
    degraded = pair.a.request(command="status")["status"]["aggregates"][0]["mirror"]
    assert not degraded["in_sync"]
    pair.topology.heal_interconnect()
    mirror = wait_in_sync(pair.a)
    assert mirror["resyncs"], mirror
    # and the partner now has everything: a planned move finds the lock there
    assert pair.release("A", planned=True)["ok"]
    adopted = pair.adopt("B")
    assert adopted["ok"] and adopted["restored"] == 1, adopted
    owner.reconnect()
    check_lock_came_along(owner)


UNSOLICITED_ID = 0xFFFFFFFFFFFFFFFF
LEASE_RH = 0x3


def park_for_breaks(client: Client) -> Request:
    """smbprotocol has no handler for server-initiated messages: a Request
    parked under the unsolicited MessageId receives the break notification."""
    breaks = Request(SMB2HeaderRequest(), None, client.conn, 0)
    client.conn.outstanding_requests[UNSOLICITED_ID] = breaks
    return breaks


def lease_break_of(breaks: Request) -> tuple[bytes, int, int, int]:
    """(lease key, flags, current state, new state) of a LEASE_BREAK (2.2.23.2)."""
    header = breaks.response
    assert header["command"].get_value() == Commands.SMB2_OPLOCK_BREAK
    _, _, flags, key, current, new = struct.unpack_from("<HHI16sII", header["data"].get_value())
    return key, flags, current, new


def test_a_break_pending_at_the_kill_is_delivered_after_the_reconnect(pair):
    """A second client's open breaks the owner's RWH lease; the owner has not
    acknowledged when its node dies.  The break is in the mirrored record:
    after adoption on B and the owner's DH2C, B sends it again (3.3.5.9.12,
    last step) and the owner's acknowledgment completes it."""
    assert pair.adopt("A")["ok"]
    wait_in_sync(pair.a)
    owner = Owner(pair.client, "vm.vhdx")
    breaks = pair.client.call(park_for_breaks, owner.client)
    before = wait_in_sync(pair.a)["acked_mseq"]
    other = pair.client.call(Client, uuid.uuid4())
    blocked_ended = []

    def open_blocked_by_the_break():
        try:
            blocked_ended.append(status_of(lambda: create(other.tree, "vm.vhdx")))
        except SMBConnectionClosed:
            blocked_ended.append("connection closed")

    blocked = threading.Thread(target=open_blocked_by_the_break, daemon=True)
    blocked.start()                                  # waits for the owner's acknowledgment
    assert breaks.response_event.wait(WAIT_S), "no lease break before the kill"
    assert lease_break_of(breaks)[2:] == (LEASE_RWH, LEASE_RH)
    wait_in_sync(pair.a, past_mseq=before)           # the break is in the partner's copy

    pair.a.kill()
    blocked.join(WAIT_S)
    assert blocked_ended == ["connection closed"]   # still waiting when its node died
    pair.lost("A")
    adopted = pair.adopt("B")
    assert adopted["ok"] and adopted["restored"] == 1, (adopted, pair.b.log_tail())

    parked = {}
    contexts = owner.reconnect(
        before_create=lambda client: parked.setdefault("breaks", park_for_breaks(client)))
    lease = one(contexts, SMB2CreateResponseLeaseV2)
    assert lease["lease_state"].get_value() == LEASE_RWH       # still breaking, not yet RH
    again = parked["breaks"]
    assert again.response_event.wait(WAIT_S), "the parked break was not delivered after DH2C"
    key, flags, current, new = lease_break_of(again)
    assert (key, flags & 0x01, current, new) == (owner.lease_key, 0x01, LEASE_RWH, LEASE_RH)


def test_an_unclaimed_open_holds_the_file_for_its_timeout_from_adoption(pair):
    """The reconnect timer restarts at adoption: a second client is refused
    until then, gets the file after it, and the owner's late DH2C finds nothing."""
    assert pair.adopt("A")["ok"]
    wait_in_sync(pair.a)
    owner = Owner(pair.client, "vm.vhdx", timeout_ms=3_000)
    owner.write(0)
    pair.a.kill()
    time.sleep(3.5)                  # longer than the timeout: it must count from adoption
    pair.lost("A")
    adopted_at = time.monotonic()
    assert pair.adopt("B")["restored"] == 1
    other = pair.client.call(Client, uuid.uuid4())
    try:
        assert status_of(lambda: pair.client.call(create, other.tree, "vm.vhdx")) \
            == STATUS_FILE_NOT_AVAILABLE
        while time.monotonic() < adopted_at + 3.0 + WAIT_S:
            if status_of(lambda: pair.client.call(create, other.tree, "vm.vhdx")) is None:
                break
            time.sleep(0.2)
        freed_after = time.monotonic() - adopted_at
    finally:
        pair.client.call(other.close)
    assert 2.5 <= freed_after < 3.0 + WAIT_S, freed_after
    assert status_of(owner.reconnect) == STATUS_OBJECT_NAME_NOT_FOUND
    assert adopted_opens(pair.b) == []


def test_smbcad_restarted_on_the_owner_takes_its_aggregate_back(pair):
    """kill -9 of smbcad alone (clusdisk keeps the aggregate on A and will not
    say adopt again): at start it finds itself the last adopter (its epoch is
    the one on the aggregate's marker) and adopts again; the client's DH2C
    finds its open.  After a planned release it does not."""
    assert pair.adopt("A")["ok"]
    wait_in_sync(pair.a)
    owner = Owner(pair.client, "vm.vhdx")
    owner.write(0)
    owner.lock(sequence_number=1, sequence_index=1)
    pair.a.kill()
    pair.a.start()
    status = pair.a.request(command="status")["status"]
    assert status["aggregates"][0]["phase"] == "online", (status, pair.a.log_tail())
    owner.reconnect()
    assert owner.handle.file_id[:8] == owner.file_id[:8]
    owner.read_back()
    check_lock_came_along(owner)

    assert pair.release("A", planned=True)["ok"]
    pair.a.kill()
    pair.a.start()
    status = pair.a.request(command="status")["status"]
    assert status["aggregates"][0]["phase"] == "offline", status


def rename(handle, new_name: str) -> None:
    """SET_INFO FileRenameInformation ([MS-FSCC] 2.4.37.2) through ``handle``."""
    info = FileRenameInformation()
    info["replace_if_exists"] = False
    info["file_name"] = new_name.encode("utf-16-le")
    request = SMB2SetInfoRequest()
    request["info_type"] = info.INFO_TYPE
    request["file_info_class"] = info.INFO_CLASS
    request["file_id"] = handle.file_id
    request["buffer"] = info
    conn, tree = handle.connection, handle.tree_connect
    sent = conn.send(request, sid=tree.session.session_id, tid=tree.tree_connect_id)
    conn.receive(sent, timeout=WAIT_S)


def test_an_open_renamed_before_the_kill_is_adopted_under_its_new_name(pair):
    """The record names the file as it is now: a persistent open renamed
    through SET_INFO, then its node killed, is adopted on the partner (not
    dropped as "gone") and the owner's DH2C naming the new name finds it."""
    assert pair.adopt("A")["ok"]
    wait_in_sync(pair.a)
    owner = Owner(pair.client, "old.vhdx", access=READ_WRITE | FilePipePrinterAccessMask.DELETE)
    owner.write(0)
    pair.client.call(rename, owner.handle, "new.vhdx")
    owner.name = "new.vhdx"
    pair.a.kill()
    pair.lost("A")
    adopted = pair.adopt("B")
    assert adopted["ok"] and adopted["restored"] == 1 and adopted["dropped"] == 0, \
        (adopted, pair.b.log_tail())
    [entry] = adopted_opens(pair.b)
    assert entry["path"] == "new.vhdx"
    owner.reconnect()
    assert owner.handle.file_id[:8] == owner.file_id[:8]
    owner.read_back()
    assert not (pair.share_dir("B") / "old.vhdx").exists()
