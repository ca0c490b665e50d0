"""smbcad with ``--workers 2`` (docs/multicore.md, step 3): a supervisor,
two worker processes over one set of open-state records, and connections
routed to their ClientGuid's worker.

Real clients: ``smbprotocol`` connections whose ClientGuids are chosen so
that one lands on each worker (the routing hash is fixed: ``owner_of``),
and smbclient, whose ClientGuid is random.  What is checked on the server
side, through the control socket the admin uses: which worker (pid) holds
each session, and that a killed worker is replaced.

* a share mode taken through one worker refuses an open through the other
  (STATUS_SHARING_VIOLATION), and the close releases it;
* a file made delete-pending by a close on one worker refuses opens on the
  other (STATUS_DELETE_PENDING) and is removed when the other worker's
  last open closes;
* a worker killed with SIGKILL is replaced under its index; the share
  modes of its opens go with it, and its clients come back to it;
* a lease held through one worker is broken for the other worker's
  client's CREATE, which waits for the acknowledgment; no caching while
  both workers have the file open.
"""

import contextlib
import os
import signal
import struct
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.connection import Capabilities, Connection, Request  # noqa: E402
from smbprotocol.create_contexts import (  # noqa: E402
    DurableHandleFlags,
    SMB2CreateDurableHandleResponseV2,
)
from smbprotocol.header import Commands, SMB2HeaderRequest  # noqa: E402
from smbprotocol.exceptions import SMBException, SMBResponseException  # noqa: E402
from smbprotocol.open import (  # noqa: E402
    CreateDisposition,
    CreateOptions,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    LockFlags,
    Open,
    RequestedOplockLevel,
    ShareAccess,
    SMB2LockElement,
)
from smbprotocol.session import Session  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

from persistent_client import RawBody, dh2c_context, dh2q_context, lease_context  # noqa: E402
from servers import Share, free_port, start_smbcad  # noqa: E402
from smbca.control import request_blocking  # noqa: E402
from smbcad.workers.routing import owner_of  # noqa: E402

STATUS_SHARING_VIOLATION = 0xC0000043
STATUS_DELETE_PENDING = 0xC0000056
STATUS_FILE_NOT_AVAILABLE = 0xC0000467
STATUS_LOCK_NOT_GRANTED = 0xC0000055
UNSOLICITED_ID = 0xFFFFFFFFFFFFFFFF   # MessageId of server-initiated messages (breaks)
RWH = 0x7
STATUS_FILE_LOCK_CONFLICT = 0xC0000054
WAIT_S = 30.0
SHARE_ALL = (ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE
             | ShareAccess.FILE_SHARE_DELETE)
READ_WRITE = FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE


def guid_for(worker: int, workers: int = 2, nth: int = 0) -> uuid.UUID:
    """A ClientGuid that the routing hash gives to ``worker`` (the ``nth``
    such: another client host of the same worker)."""
    found = 0
    for number in range(1, 1000):
        guid = uuid.UUID(int=number * 0x1000193)
        if owner_of(guid.bytes_le, workers) == worker:
            if found == nth:
                return guid
            found += 1
    raise AssertionError("no GUID found")


METRICS = f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_smbcad(tmp_path_factory.mktemp("workers"),
                           extra_args=["--workers", "2", "--metrics-listen", METRICS])
    yield running
    running.stop()


def control(server, command: str, **fields) -> dict:
    path = str(server.log_path.parent / "state" / "smbcad.sock")
    answer = request_blocking(path, {"command": command, **fields})
    assert answer["ok"], answer
    return answer


def worker_pids(server) -> list:
    return [w.get("pid") for w in control(server, "status")["smb"]["workers"]]


def wait_for_successor(server, index: int, killed_pid: int) -> None:
    """Until the supervisor has replaced the killed worker ``index``."""
    deadline = time.monotonic() + WAIT_S
    while worker_pids(server)[index] in (None, killed_pid):
        assert time.monotonic() < deadline, server.log_tail(60)
        time.sleep(0.2)


class Client:
    def __init__(self, server, guid: uuid.UUID) -> None:
        self.connection = Connection(guid, server.host, server.port)
        self.connection.client_capabilities |= (Capabilities.SMB2_GLOBAL_CAP_PERSISTENT_HANDLES
                                                | Capabilities.SMB2_GLOBAL_CAP_DIRECTORY_LEASING)
        self.connection.connect(timeout=WAIT_S)
        self.session = Session(self.connection, server.user, server.password)
        self.session.connect()
        self.tree = TreeConnect(self.session, rf"\\{server.host}\{server.share.name}")
        self.tree.connect()

    def open(self, name: str, share=SHARE_ALL, disposition=CreateDisposition.FILE_OPEN_IF,
             options=0, access=READ_WRITE | FilePipePrinterAccessMask.DELETE,
             oplock=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE) -> Open:
        handle = Open(self.tree, name)
        handle.create(ImpersonationLevel.Impersonation, access, 0, share, disposition,
                      options, oplock_level=oplock)
        return handle

    def close(self) -> None:
        self.connection.disconnect(True)

    def close_after_kill(self) -> None:
        """Its worker was killed under it: the logoff may find no server."""
        with contextlib.suppress(SMBException, OSError):
            self.connection.disconnect(True)


def status_of(call) -> int:
    with pytest.raises(SMBResponseException) as failure:
        call()
    return failure.value.status


def sessions_by_worker(server) -> dict:
    found: dict[int, int] = {}
    for session in control(server, "sessions")["sessions"]:
        found[session["worker"]] = found.get(session["worker"], 0) + 1
    return found


def test_two_workers_serve_and_route_by_client_guid(server):
    pids = worker_pids(server)
    assert len(pids) == 2 and len(set(pids)) == 2 and os.getpid() not in pids
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    try:
        assert sessions_by_worker(server) == {0: 1, 1: 1}
        again = Client(server, guid_for(1))           # a second channel of the same host
        try:
            assert sessions_by_worker(server) == {0: 1, 1: 2}
        finally:
            again.close()
    finally:
        first.close()
        second.close()


def test_the_metrics_endpoint_serves_every_workers_metrics(server):
    """The supervisor's /metrics: each worker's samples labelled with it."""
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    try:
        with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=WAIT_S) as response:
            text = response.read().decode()
    finally:
        first.close()
        second.close()
    for worker in ("0", "1"):
        assert f'smbcad_worker_up{{worker="{worker}"}} 1.0' in text, text[:2000]
        assert f'smbcad_connections{{worker="{worker}"}} 1.0' in text, text[:2000]
    assert text.count("# TYPE smbcad_connections gauge") == 1


def test_smbca_status_shows_the_workers(server, capsys):
    from smbca import admin
    state = server.log_path.parent / "state"
    admin.main(["status", "--smbcad-socket", str(state / "smbcad.sock"),
                "--socket", str(state / "no-clusdisk.sock"),
                "--witnessd-socket", str(state / "no-witnessd.sock"), "--config-dir", str(state)])
    shown = capsys.readouterr().out
    pids = worker_pids(server)
    assert f"smbcad: running, pid {server.pid}," in shown, shown
    assert f"workers: 0: pid {pids[0]}, " in shown and f"; 1: pid {pids[1]}, " in shown, shown


def test_share_modes_and_delete_pending_cross_workers(server):
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    try:
        exclusive = first.open("exclusive.bin", share=0)
        exclusive.write(b"held by worker 0", 0)
        assert status_of(lambda: second.open("exclusive.bin")) == STATUS_SHARING_VIOLATION
        exclusive.close()
        second.open("exclusive.bin").close()

        # Delete-on-close through worker 0 while worker 1 also holds it open:
        # the close leaves the file delete-pending for everybody.
        kept = second.open("doomed.bin")
        doomed = first.open("doomed.bin", options=CreateOptions.FILE_DELETE_ON_CLOSE)
        doomed.close()
        assert status_of(lambda: first.open("doomed.bin")) == STATUS_DELETE_PENDING
        assert status_of(lambda: second.open("doomed.bin")) == STATUS_DELETE_PENDING
        assert (server.share.path / "doomed.bin").exists()
        kept.close()                                 # the last open, on the other worker
        assert not (server.share.path / "doomed.bin").exists()
    finally:
        first.close()
        second.close()


def lock(handle: Open, flags, offset: int = 0, length: int = 100) -> None:
    element = SMB2LockElement()
    element["offset"], element["length"], element["flags"] = offset, length, flags
    handle.lock([element])


def test_byte_range_locks_cross_workers(server):
    """A lock taken through one worker stops the other worker's client's
    LOCK, READ and WRITE of the range; a blocking LOCK there waits and is
    granted when the holder unlocks (LocksChanged between the workers)."""
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    exclusive = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK
    try_once = exclusive | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
    shared_once = LockFlags.SMB2_LOCKFLAG_SHARED_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
    try:
        holder, other = first.open("locked.bin"), second.open("locked.bin")
        holder.write(bytes(200), 0)
        lock(holder, exclusive)
        assert status_of(lambda: lock(other, try_once)) == STATUS_LOCK_NOT_GRANTED
        assert status_of(lambda: lock(other, shared_once, 50, 10)) == STATUS_LOCK_NOT_GRANTED
        assert status_of(lambda: other.read(10, 10)) == STATUS_FILE_LOCK_CONFLICT
        assert status_of(lambda: other.write(b"x", 99)) == STATUS_FILE_LOCK_CONFLICT
        other.write(b"y", 100)                        # past the range
        lock(other, try_once, 100, 50)                # a range nobody holds

        outcome: list = []
        waiting = threading.Thread(target=lambda: outcome.append(
            status_or_none(lambda: lock(other, exclusive, 0, 10))), daemon=True)
        waiting.start()
        time.sleep(1.0)
        assert waiting.is_alive(), f"the blocking LOCK returned while the range was held: {outcome}"
        lock(holder, LockFlags.SMB2_LOCKFLAG_UNLOCK)
        waiting.join(WAIT_S)
        assert outcome == [None], outcome
        assert status_of(lambda: lock(holder, try_once, 5, 1)) == STATUS_LOCK_NOT_GRANTED
        holder.read(50, 10)                          # 10..99 is free again
        other.close()                                # the close releases its locks
        lock(holder, try_once, 0, 200)
        holder.close()
    finally:
        first.close()
        second.close()


def status_or_none(call):
    try:
        call()
    except SMBResponseException as exc:
        return exc.status
    return None


def listen_for_breaks(client: Client) -> Request:
    """A request that the client's next unsolicited message (a break) answers."""
    breaks = Request(SMB2HeaderRequest(), None, client.connection, 0)
    client.connection.outstanding_requests[UNSOLICITED_ID] = breaks
    return breaks


def hold_rwh_lease(client: Client, name: str, key: bytes, state: int = RWH,
                   share=SHARE_ALL) -> Open:
    holder = Open(client.tree, name)
    answered = holder.create(
        ImpersonationLevel.Impersonation, READ_WRITE, 0x80, share,
        CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
        oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE,
        create_contexts=[lease_context(key, state)])
    assert lease_state(answered) == state
    return holder


def acknowledge_break_to_none(client: Client, key: bytes, state: int = 0) -> None:
    ack = client.connection.send(RawBody(Commands.SMB2_OPLOCK_BREAK,
                                         struct.pack("<HHI16sIQ", 36, 0, 0, key, state, 0)),
                                 sid=client.session.session_id,
                                 tid=client.tree.tree_connect_id)
    assert client.connection.receive(ack, timeout=WAIT_S)["status"].get_value() == 0


def break_payload(breaks: Request) -> bytes:
    header = breaks.response
    assert header["command"].get_value() == Commands.SMB2_OPLOCK_BREAK
    return header["data"].get_value()


def test_a_lease_held_through_one_worker_is_broken_as_for_a_local_open(server):
    """Worker 0's client holds RWH alone; worker 1's client opens the file:
    its CREATE waits while worker 0 breaks the lease to RH ([MS-FSA] 2.1.4.12:
    a second opener takes write caching, the read and handle caching stay)
    and completes after the acknowledgment, with no oplock (it would sit
    beside a handle-caching lease).  A new lease through worker 0 then gets
    RH, and a write through worker 1 breaks worker 0's read caching."""
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    breaks = listen_for_breaks(first)
    key = uuid.uuid4().bytes
    try:
        holder = hold_rwh_lease(first, "leased.bin", key)
        holder.write(b"cached", 0)

        outcome: list = []
        opening = threading.Thread(target=lambda: outcome.append(second.open(
            "leased.bin", oplock=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)), daemon=True)
        opening.start()
        assert breaks.response_event.wait(WAIT_S), "worker 0's client got no lease break"
        _size, _epoch, flags, break_key, current, new = struct.unpack_from(
            "<HHI16sII", break_payload(breaks))
        assert (break_key, current, new) == (key, RWH, 0x3) and flags & 0x1
        time.sleep(0.5)
        assert opening.is_alive(), "worker 1's CREATE completed before the acknowledgment"
        acknowledge_break_to_none(first, key, state=0x3)
        opening.join(WAIT_S)
        assert len(outcome) == 1, "worker 1's CREATE did not complete after the ack"
        other = outcome[0]
        assert other.oplock_level == RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE
        assert other.read(0, 6) == b"cached"
        # Both workers have it open: a new lease is granted read and handle caching.
        again = Open(first.tree, "leased.bin")
        answered = again.create(
            ImpersonationLevel.Impersonation, READ_WRITE, 0x80, SHARE_ALL,
            CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE,
            oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE,
            create_contexts=[lease_context(uuid.uuid4().bytes, RWH)])
        assert lease_state(answered) == 0x3
        breaks = listen_for_breaks(first)
        other.write(b"new", 0)                # worker 1 changes the data
        assert breaks.response_event.wait(WAIT_S), "a write elsewhere broke no read caching"
        _size, _epoch, _flags, _key, current, new = struct.unpack_from(
            "<HHI16sII", break_payload(breaks))
        assert (current, new) == (0x3, 0)
        for handle in (again, other, holder):
            handle.close()
    finally:
        first.close()
        second.close()


def test_level_ii_oplocks_are_shared_across_workers(server):
    """smb2.oplock.batch5 and exclusive2 with the two clients on different
    workers: a batch oplock breaks to level II for a second opener elsewhere,
    which gets level II too; a write through one worker breaks the other
    worker's level II to none, without waiting, as it does the writer's own
    ([MS-FSA] 2.1.4.12 case WRITE)."""
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    try:
        breaks = listen_for_breaks(first)
        holder = first.open("level2.bin", disposition=CreateDisposition.FILE_OVERWRITE_IF,
                            oplock=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)
        assert holder.oplock_level == RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH
        outcome: list = []
        opening = threading.Thread(target=lambda: outcome.append(second.open(
            "level2.bin", oplock=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH)), daemon=True)
        opening.start()
        assert breaks.response_event.wait(WAIT_S), "the batch holder was not broken"
        level, _reserved, _reserved2, file_id = struct.unpack_from(
            "<xxBBI16s", break_payload(breaks))
        assert level == 0x01 and file_id == holder.file_id     # to level II
        acknowledge_oplock(first, holder, 0x01)
        opening.join(WAIT_S)
        assert len(outcome) == 1, "worker 1's CREATE did not complete after the ack"
        other = outcome[0]
        assert other.oplock_level == RequestedOplockLevel.SMB2_OPLOCK_LEVEL_II

        breaks, own = listen_for_breaks(first), listen_for_breaks(second)
        other.write(b"changed", 0)            # every level II breaks, the writer's too
        for heard, who in ((breaks, "worker 0's"), (own, "the writer's")):
            assert heard.response_event.wait(WAIT_S), f"{who} level II was not broken"
            assert struct.unpack_from("<xxB", break_payload(heard))[0] == 0x00
        for handle in (other, holder):
            handle.close()
    finally:
        first.close()
        second.close()


def set_delete_disposition(client: Client, handle: Open) -> int:
    """SET_INFO FileDispositionInformation (class 13), DeletePending 1: its status."""
    body = struct.pack("<HBBIHHI16s", 33, 1, 13, 1, 96, 0, 0, handle.file_id) + b"\x01"
    request = client.connection.send(RawBody(Commands.SMB2_SET_INFO, body),
                                     sid=client.session.session_id,
                                     tid=client.tree.tree_connect_id)
    return client.connection.receive(request, timeout=WAIT_S)["status"].get_value()


def test_a_delete_through_another_worker_takes_handle_caching_first(server):
    """[MS-FSA] 2.1.4.12 SET_INFORMATION FileDispositionInformation: an RH
    lease held through worker 0 beside worker 1's open loses H before the
    delete disposition set through worker 1 goes on, which waits for the
    acknowledgment, so the holder can close its cached handle."""
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    breaks = listen_for_breaks(first)
    key = uuid.uuid4().bytes
    try:
        holder = hold_rwh_lease(first, "doomed.bin", key, state=0x3)
        deleter = second.open("doomed.bin")                 # RH stays: no break for it
        assert not breaks.response_event.wait(0.5), "an open beside RH broke the lease"
        outcome: list = []
        deleting = threading.Thread(target=lambda: outcome.append(
            set_delete_disposition(second, deleter)), daemon=True)
        deleting.start()
        assert breaks.response_event.wait(WAIT_S), "the RH lease was not broken first"
        _size, _epoch, flags, _key, current, new = struct.unpack_from(
            "<HHI16sII", break_payload(breaks))
        assert (current, new) == (0x3, 0x1) and flags & 0x1
        time.sleep(0.5)
        assert deleting.is_alive(), "the delete went on before the acknowledgment"
        acknowledge_break_to_none(first, key, state=0x1)
        deleting.join(WAIT_S)
        assert outcome == [0], outcome
        holder.close()
        deleter.close()
        assert status_of(lambda: second.open("doomed.bin", disposition=CreateDisposition.FILE_OPEN)) \
            == 0xC0000034                                    # OBJECT_NAME_NOT_FOUND: deleted
    finally:
        first.close()
        second.close()


def test_a_directory_lease_is_broken_by_a_change_through_another_worker(server):
    """[MS-FSA] 2.1.4.13: a directory lease (RH, v2) held through worker 0 is
    broken to none when worker 1's client creates a file in the directory,
    and again, once granted anew, when that file is deleted; a file created
    elsewhere breaks nothing."""
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    key = uuid.uuid4().bytes
    try:
        second.open("listed", disposition=CreateDisposition.FILE_OPEN_IF,
                    options=CreateOptions.FILE_DIRECTORY_FILE).close()

        def lease_directory() -> Open:
            handle = Open(first.tree, "listed")
            answered = handle.create(
                ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.GENERIC_READ,
                0x10, SHARE_ALL, CreateDisposition.FILE_OPEN, CreateOptions.FILE_DIRECTORY_FILE,
                oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE,
                create_contexts=[lease_context(key, 0x3)])
            assert lease_state(answered) == 0x3, "no directory lease through worker 0"
            return handle

        directory = lease_directory()
        breaks = listen_for_breaks(first)
        second.open("elsewhere.txt").close()                 # another directory: nothing
        assert not breaks.response_event.wait(1.0), "a change elsewhere broke the lease"
        created = second.open("listed\\new.txt", access=FilePipePrinterAccessMask.GENERIC_READ
                              | FilePipePrinterAccessMask.DELETE)
        assert breaks.response_event.wait(WAIT_S), "a file created through worker 1 broke nothing"
        _size, _epoch, _flags, break_key, current, new = struct.unpack_from(
            "<HHI16sII", break_payload(breaks))
        assert (break_key, current, new) == (key, 0x3, 0)
        acknowledge_break_to_none(first, key)
        directory.close()

        directory = lease_directory()                        # granted anew
        breaks = listen_for_breaks(first)
        assert set_delete_disposition(second, created) == 0
        created.close()                                      # the entry leaves the listing
        assert breaks.response_event.wait(WAIT_S), "a deletion through worker 1 broke nothing"
        acknowledge_break_to_none(first, key)
        directory.close()
    finally:
        first.close()
        second.close()


def acknowledge_oplock(client: Client, handle: Open, level: int) -> None:
    ack = client.connection.send(RawBody(Commands.SMB2_OPLOCK_BREAK,
                                         struct.pack("<HBxI16s", 24, level, 0, handle.file_id)),
                                 sid=client.session.session_id,
                                 tid=client.tree.tree_connect_id)
    assert client.connection.receive(ack, timeout=WAIT_S)["status"].get_value() == 0


def test_a_stat_open_through_another_worker_breaks_no_lease(server):
    """[MS-FSA] 2.1.4.12: an open for attributes only breaks nothing, whichever
    worker it comes through; the lease is still held, as the next data open
    through that worker shows by breaking it."""
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    breaks = listen_for_breaks(first)
    key = uuid.uuid4().bytes
    try:
        holder = hold_rwh_lease(first, "stat-opened.bin", key)
        stat = second.open("stat-opened.bin", access=FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES
                           | FilePipePrinterAccessMask.SYNCHRONIZE)
        assert not breaks.response_event.wait(1.0), "a stat open broke the lease"
        stat.close()

        outcome: list = []
        opening = threading.Thread(target=lambda: outcome.append(
            second.open("stat-opened.bin")), daemon=True)
        opening.start()
        assert breaks.response_event.wait(WAIT_S), "a data open broke no lease"
        acknowledge_break_to_none(first, key)
        opening.join(WAIT_S)
        assert len(outcome) == 1, "worker 1's data open did not complete after the ack"
        outcome[0].close()
        holder.close()
    finally:
        first.close()
        second.close()


def test_share_modes_before_breaks_across_workers_unless_handle_caching(server):
    """[MS-FSA] 2.1.5.1.2: an open the share modes refuse fails at once, with no
    break, when the holder on the other worker has no handle caching (RW); a
    holder with H (RWH) is broken first, since it might close, and the open
    fails after the acknowledgment when it did not."""
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    breaks = listen_for_breaks(first)
    try:
        key = uuid.uuid4().bytes
        holder = hold_rwh_lease(first, "share-first.bin", key, state=0x5,
                                share=ShareAccess.FILE_SHARE_READ)
        assert status_of(lambda: second.open("share-first.bin")) == STATUS_SHARING_VIOLATION
        assert not breaks.response_event.wait(1.0), "a refused open broke an RW lease"
        holder.close()

        key = uuid.uuid4().bytes
        holder = hold_rwh_lease(first, "break-first.bin", key,
                                share=ShareAccess.FILE_SHARE_READ)
        outcome: list = []
        opening = threading.Thread(target=lambda: outcome.append(
            status_or_none(lambda: second.open("break-first.bin"))), daemon=True)
        opening.start()
        assert breaks.response_event.wait(WAIT_S), "the RWH holder was not broken first"
        acknowledge_break_to_none(first, key)
        opening.join(WAIT_S)
        assert outcome == [STATUS_SHARING_VIOLATION], outcome
        holder.close()
    finally:
        first.close()
        second.close()


def test_handle_caching_broken_on_its_own_worker_no_longer_delays_the_others(server):
    """The mark of handle caching follows the holder: once a client of the
    same worker had H broken (RWH to RW: its open was refused, [MS-FSA]
    2.1.5.1.2), an open through the other worker that the share modes refuse
    fails at once, with no break."""
    holder_client = Client(server, guid_for(0))
    neighbour, other = Client(server, guid_for(0, nth=1)), Client(server, guid_for(1))
    key = uuid.uuid4().bytes
    delete = READ_WRITE | FilePipePrinterAccessMask.DELETE
    try:
        breaks = listen_for_breaks(holder_client)
        holder = hold_rwh_lease(holder_client, "h-dropped.bin", key,
                                share=ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE)
        outcome: list = []
        opening = threading.Thread(target=lambda: outcome.append(status_or_none(
            lambda: neighbour.open("h-dropped.bin", access=delete))), daemon=True)
        opening.start()
        assert breaks.response_event.wait(WAIT_S), "no break of H for a refused open"
        _size, _epoch, _flags, _key, current, new = struct.unpack_from(
            "<HHI16sII", breaks.response["data"].get_value())
        assert (current, new) == (RWH, 0x5)
        acknowledge_break_to_none(holder_client, key, state=0x5)
        opening.join(WAIT_S)
        assert outcome == [STATUS_SHARING_VIOLATION], outcome

        breaks = listen_for_breaks(holder_client)
        assert status_of(lambda: other.open("h-dropped.bin", access=delete)) == \
            STATUS_SHARING_VIOLATION
        assert not breaks.response_event.wait(1.0), "the RW holder was broken for a refused open"
        holder.close()
    finally:
        for client in (holder_client, neighbour, other):
            client.close()


def lease_state(contexts) -> int | None:
    found = [c for c in contexts or () if "lease_state" in getattr(c, "fields", {})]
    return found[0]["lease_state"].get_value() if found else None


def test_smbclient_through_the_workers(server, tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(300_000))
    for round_ in range(4):                          # random ClientGuids: either worker
        result = subprocess.run(
            ["smbclient", server.unc(), "-U", f"{server.user}%{server.password}",
             "-p", str(server.port), "-m", "SMB3", "-c",
             f"put {payload} r{round_}.bin; get r{round_}.bin {tmp_path}/back{round_}.bin"],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (tmp_path / f"back{round_}.bin").read_bytes() == payload.read_bytes()


def test_a_killed_worker_is_replaced_and_its_share_modes_and_locks_released(server):
    """The supervisor sweeps a dead worker's entries; nobody tells the other
    workers, whose waiting LOCKs look again every second (LOCK_RECHECK_S)."""
    before = worker_pids(server)
    first, second = Client(server, guid_for(0)), Client(server, guid_for(1))
    try:
        first.open("orphan.bin", share=0).write(b"x", 0)
        assert status_of(lambda: second.open("orphan.bin")) == STATUS_SHARING_VIOLATION
        lock(first.open("orphan-locked.bin"), LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK)
        blocked = second.open("orphan-locked.bin")
        outcome: list = []
        waiting = threading.Thread(target=lambda: outcome.append(status_or_none(
            lambda: lock(blocked, LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK))), daemon=True)
        waiting.start()
        time.sleep(1.5)
        assert waiting.is_alive(), f"the blocking LOCK returned while the range was held: {outcome}"
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            pids = worker_pids(server)
            if pids[0] not in (None, before[0]) and pids[1] == before[1]:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"worker 0 not replaced: {pids}; log:\n{server.log_tail(60)}")
        second.open("orphan.bin").close()             # the dead worker's share mode went
        waiting.join(WAIT_S)
        assert outcome == [None], f"the waiting LOCK after the holder's worker died: {outcome}"
        back = Client(server, guid_for(0))
        try:
            assert sessions_by_worker(server).get(0) == 1
        finally:
            back.close()
    finally:
        second.close()
        first.close_after_kill()


@pytest.fixture(scope="module")
def ca_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("workers-ca")
    (base / "ca").mkdir()
    running = start_smbcad(base, shares=[Share("ca", base / "ca", ca=True)],
                           extra_args=["--workers", "2"])
    yield running
    running.stop()


def persistent_open(client: Client, name: str, contexts, share: int = 0,
                    oplock=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE) -> Open:
    """A CREATE with DH2Q or DH2C (sharing nothing unless ``share`` says),
    which must come back persistent."""
    handle = Open(client.tree, name)
    answered = handle.create(ImpersonationLevel.Impersonation, READ_WRITE, 0x80, share,
                             CreateDisposition.FILE_OPEN_IF,
                             CreateOptions.FILE_NON_DIRECTORY_FILE, oplock_level=oplock,
                             create_contexts=contexts)
    durable = [c for c in answered or () if isinstance(c, SMB2CreateDurableHandleResponseV2)]
    if durable:                                  # DH2Q; a DH2C answers with no context
        assert durable[0]["flags"].has_flag(DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT)
    return handle


def test_persistent_open_survives_the_kill_of_its_worker(ca_server):
    """The partition of the killed worker comes back with its successor: the
    owner's DH2C (its ClientGuid routes it to the same index) gets the same
    FileId and its data; meanwhile the open's share mode held for the other
    worker's client, before and after the successor restored it."""
    owner_guid, create_guid = guid_for(1), uuid.uuid4()
    owner, other = Client(ca_server, owner_guid), Client(ca_server, guid_for(0))
    try:
        handle = persistent_open(owner, "vm.vhdx", [dh2q_context(create_guid, 60_000)])
        file_id = handle.file_id
        handle.write(b"written before the kill", 0)
        before = worker_pids(ca_server)
        os.kill(before[1], signal.SIGKILL)
        assert status_of(lambda: other.open("vm.vhdx")) in (STATUS_SHARING_VIOLATION,
                                                             STATUS_FILE_NOT_AVAILABLE)
        wait_for_successor(ca_server, 1, before[1])
        assert status_of(lambda: other.open("vm.vhdx")) == STATUS_FILE_NOT_AVAILABLE
        opens = control(ca_server, "opens")["opens"]
        assert [(o["worker"], o["path"].lstrip("\\/")) for o in opens] == [(1, "vm.vhdx")], opens

        back = Client(ca_server, owner_guid)
        try:
            again = persistent_open(back, "vm.vhdx", [dh2c_context(file_id, create_guid)])
            assert again.file_id[:8] == file_id[:8]
            assert again.read(0, 23) == b"written before the kill"
            again.close()
        finally:
            back.close()
        other.open("vm.vhdx").close()                # closed for good: free again
        assert "took over from pid" in ca_server.log_path.read_text()
    finally:
        other.close()
        owner.close_after_kill()


def test_a_persistent_opens_lock_is_its_own_again_after_its_worker_is_killed(ca_server):
    """The killed worker's lock entry is kept for its successor, which takes
    it over: the reconnected open writes inside its own locked range, and the
    other worker's client still meets the lock."""
    owner_guid, create_guid = guid_for(1), uuid.uuid4()
    owner, other = Client(ca_server, owner_guid), Client(ca_server, guid_for(0))
    try:
        handle = persistent_open(owner, "locked-vm.vhdx", [dh2q_context(create_guid, 60_000)],
                                 share=SHARE_ALL)
        file_id = handle.file_id
        handle.write(bytes(100), 0)
        lock(handle, LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK, 0, 10)
        before = worker_pids(ca_server)
        os.kill(before[1], signal.SIGKILL)
        wait_for_successor(ca_server, 1, before[1])
        back = Client(ca_server, owner_guid)
        try:
            again = persistent_open(back, "locked-vm.vhdx",
                                    [dh2c_context(file_id, create_guid)], share=SHARE_ALL)
            again.write(b"mine", 2)
            assert again.read(0, 8) == b"\0\0mine\0\0"
            third = other.open("locked-vm.vhdx")
            assert status_of(lambda: third.write(b"x", 5)) == STATUS_FILE_LOCK_CONFLICT
            third.close()
            again.close()
        finally:
            back.close()
    finally:
        other.close()
        owner.close_after_kill()


def test_sighup_and_sigterm_reach_every_worker(tmp_path):
    running = start_smbcad(tmp_path, extra_args=["--workers", "2"])
    try:
        pids = worker_pids(running)
        os.kill(running.pid, signal.SIGHUP)
        deadline = time.monotonic() + WAIT_S
        while running.log_path.read_text().count("configuration reloaded") < 2:
            assert time.monotonic() < deadline, running.log_tail(40)
            time.sleep(0.1)
        log = running.log_path.read_text()
        assert "smbcad[0]: configuration reloaded" in log
        assert "smbcad[1]: configuration reloaded" in log
        os.kill(running.pid, signal.SIGTERM)          # the supervisor alone: it drains them
        assert running.proc.wait(WAIT_S) == 0, running.log_tail(40)
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}") or \
                open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    finally:
        running.stop()


def test_persistent_opens_of_another_worker_count_stop_the_start(tmp_path):
    """A single-process run left a persistent open in ``handles``: two
    workers would neither restore nor release it, so they refuse to start,
    naming the key and the partition."""
    from smbcad.store import LogEngine, PersistentOpen, encode
    state = tmp_path / "smbcad" / "state"
    engine = LogEngine(str(state / "handles"))
    list(engine.load())
    engine.write({0x77: encode(PersistentOpen(0x77, bytes(16), bytes(16), "u", "D", "share",
                                              "vm.vhdx"))})
    engine.close()
    with pytest.raises(Exception) as failure:
        start_smbcad(tmp_path, extra_args=["--workers", "2"])
    text = str(failure.value)
    assert "exited with status 2" in text, text
    assert "server.workers: 2 worker(s) do not use" in text and "handles (1 records)" in text
