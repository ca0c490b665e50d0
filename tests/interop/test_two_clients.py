"""Two ``smbprotocol`` clients against one smbcad: lease breaks, blocking locks, server-side copy.

* A second client opening a file for write breaks the first client's RWH
  lease to RH, and the second CREATE completes only after the first client
  acknowledges the break.
* A blocking byte-range lock stays pending while another client holds the
  range and is granted when that client unlocks.
* ``smbclient.copyfile`` (FSCTL_SRV_REQUEST_RESUME_KEY +
  FSCTL_SRV_COPYCHUNK_WRITE) copies 256 MiB without moving file data over the
  connection, as the server's Prometheus byte counters show.

Every wait is bounded; helper threads are daemons joined with a timeout, and
connections are torn down before the module's server is stopped by PID.
"""

import hashlib
import os
import re
import struct
import threading
import time
import urllib.request
import uuid

import pytest

smbclient = pytest.importorskip("smbclient", reason="smbprotocol is not installed")
from smbprotocol.connection import Connection, Request  # noqa: E402
from smbprotocol.create_contexts import (  # noqa: E402
    CreateContextName,
    SMB2CreateContextRequest,
    SMB2CreateRequestLeaseV2,
)
from smbprotocol.exceptions import SMBResponseException  # noqa: E402
from smbprotocol.header import Commands, NtStatus, SMB2HeaderRequest  # noqa: E402
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

from persistent_client import RawBody  # noqa: E402
from servers import ServerStartError, free_port, start_smbcad  # noqa: E402

# Not marked interop: the clients are a Python package, not binaries (as in test_smbprotocol.py).

USERS = {"alice": "secret-A1", "bob": "secret-B2"}
WAIT_S = 10.0                      # upper bound for anything that should happen "now"
PENDING_S = 1.0                    # how long a request must stay unanswered to count as pending
UNSOLICITED_ID = 0xFFFFFFFFFFFFFFFF   # MessageId of server-initiated messages (break notifications)

LEASE_R, LEASE_H, LEASE_W = 0x1, 0x2, 0x4
RWH, RH = LEASE_R | LEASE_W | LEASE_H, LEASE_R | LEASE_H
STATUS_LOCK_NOT_GRANTED = 0xC0000055   # not in smbprotocol's NtStatus
BREAK_ACK_REQUIRED = 0x1           # SMB2_NOTIFY_BREAK_LEASE_FLAG_ACK_REQUIRED
READ_WRITE = FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE
SHARE_RW = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE

COPY_BYTES = 256 << 20
COPY_CHUNK = 8 << 20
COUNTERS = ("smbcad_read_bytes_total", "smbcad_written_bytes_total",
            "smbcad_server_side_copy_bytes_total")
# Reads/writes the copy may account for besides file data (none expected); far below one chunk.
COUNTER_SLACK = 64 << 10


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """smbcad with users alice and bob and a metrics listener, stopped by PID at teardown."""
    metrics = f"127.0.0.1:{free_port()}"
    try:
        running = start_smbcad(tmp_path_factory.mktemp("smbcad"), users=USERS,
                               extra_args=["--metrics-listen", metrics])
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    running.metrics = metrics
    yield running
    running.stop()


@pytest.fixture
def connect(server):
    """``connect(user)`` → ``(connection, session, tree)``; every connection is closed at teardown."""
    connections = []

    def _connect(user):
        conn = Connection(uuid.uuid4(), server.host, server.port)
        conn.connect(timeout=WAIT_S)
        connections.append(conn)
        session = Session(conn, user, USERS[user], require_encryption=False)
        session.connect()
        tree = TreeConnect(session, rf"\\{server.host}\{server.share.name}")
        tree.connect()
        return conn, session, tree

    yield _connect
    for conn in reversed(connections):
        conn.disconnect(close=False)


class InBackground:
    """Run ``fn`` in a daemon thread, recording when it finished and what it returned or raised."""

    def __init__(self, fn) -> None:
        self.result = self.error = self.finished_at = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn) -> None:
        try:
            self.result = fn()
        except BaseException as exc:   # re-raised in the test thread by join()
            self.error = exc
        self.finished_at = time.monotonic()

    def is_done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float = WAIT_S):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"still waiting after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


def lease_context(key: bytes, state: int) -> SMB2CreateContextRequest:
    lease = SMB2CreateRequestLeaseV2()
    lease["lease_key"] = key
    lease["lease_state"] = state
    lease["parent_lease_key"] = bytes(16)
    lease["epoch"] = 0
    context = SMB2CreateContextRequest()
    context["buffer_name"] = CreateContextName.SMB2_CREATE_REQUEST_LEASE_V2
    context["buffer_data"] = lease
    return context


def open_file(tree, name, access, disposition=CreateDisposition.FILE_OPEN_IF, **kwargs):
    handle = Open(tree, name)
    response = handle.create(ImpersonationLevel.Impersonation, access, 0x80, SHARE_RW,
                             disposition, CreateOptions.FILE_NON_DIRECTORY_FILE, **kwargs)
    return handle, response


def test_lease_break_waits_for_ack_before_second_open(connect):
    conn1, session1, tree1 = connect("alice")
    # smbprotocol has no handler for server-initiated messages: a parked Request under
    # the unsolicited MessageId receives the break notification.
    breaks = Request(SMB2HeaderRequest(), None, conn1, 0)
    conn1.outstanding_requests[UNSOLICITED_ID] = breaks

    key = uuid.uuid4().bytes
    first, contexts = open_file(tree1, "leased.txt", READ_WRITE, CreateDisposition.FILE_OVERWRITE_IF,
                                oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE,
                                create_contexts=[lease_context(key, RWH)])
    assert first.oplock_level == RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE
    granted = [c for c in contexts or [] if "lease_state" in getattr(c, "fields", {})]
    assert granted and granted[0]["lease_state"].get_value() == RWH

    _, _, tree2 = connect("bob")
    second = InBackground(lambda: open_file(tree2, "leased.txt",
                                            FilePipePrinterAccessMask.GENERIC_WRITE,
                                            CreateDisposition.FILE_OPEN)[0])

    assert breaks.response_event.wait(WAIT_S), "client 1 got no lease break"
    header = breaks.response
    assert header["command"].get_value() == Commands.SMB2_OPLOCK_BREAK
    size, epoch, flags, break_key, current, new = struct.unpack_from(
        "<HHI16sII", header["data"].get_value())
    assert (size, break_key) == (44, key)
    assert flags & BREAK_ACK_REQUIRED
    assert (current, new) == (RWH, RH)

    time.sleep(PENDING_S)
    assert not second.is_done(), "client 2's CREATE completed before client 1 acknowledged"

    acked_at = time.monotonic()
    ack = conn1.send(RawBody(Commands.SMB2_OPLOCK_BREAK, struct.pack("<HHI16sIQ", 36, 0, 0, key, new, 0)),
                     sid=session1.session_id, tid=tree1.tree_connect_id)
    reply = conn1.receive(ack, timeout=WAIT_S)
    assert reply["status"].get_value() == NtStatus.STATUS_SUCCESS
    ack_state = struct.unpack_from("<HHI16sI", reply["data"].get_value())[4]
    assert ack_state == RH

    opened = second.join()
    assert second.finished_at >= acked_at
    opened.close()
    first.close()


def _lock(handle, flags):
    element = SMB2LockElement()
    element["offset"] = 0
    element["length"] = 100
    element["flags"] = flags
    handle.lock([element])


def test_blocking_lock_granted_when_holder_unlocks(connect):
    _, _, tree_a = connect("alice")
    _, _, tree_b = connect("bob")
    holder, _ = open_file(tree_a, "locked.dat", READ_WRITE)
    waiter, _ = open_file(tree_b, "locked.dat", READ_WRITE)
    exclusive = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK
    try_once = exclusive | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY

    _lock(holder, exclusive)
    blocked = InBackground(lambda: _lock(waiter, exclusive))   # no FAIL_IMMEDIATELY: pends
    time.sleep(PENDING_S)
    assert not blocked.is_done(), "the blocking lock returned while the range was held"

    unlocked_at = time.monotonic()
    _lock(holder, LockFlags.SMB2_LOCKFLAG_UNLOCK)
    blocked.join()
    assert blocked.finished_at >= unlocked_at

    with pytest.raises(SMBResponseException) as info:      # the waiter now holds it
        _lock(holder, try_once)
    assert info.value.status == STATUS_LOCK_NOT_GRANTED
    _lock(waiter, LockFlags.SMB2_LOCKFLAG_UNLOCK)
    _lock(holder, try_once)
    _lock(holder, LockFlags.SMB2_LOCKFLAG_UNLOCK)
    waiter.close()
    holder.close()


def _counters(metrics: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=WAIT_S) as response:
        text = response.read().decode()
    values = {}
    for name in COUNTERS:
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        assert match, f"{name} missing from /metrics"
        values[name] = float(match.group(1))
    return values


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_server_side_copy_moves_no_data_over_the_wire(server):
    share = server.share.path
    digest = hashlib.sha256()
    with open(share / "big.bin", "wb") as handle:          # on disk directly: no SMB WRITE
        for _ in range(COPY_BYTES // COPY_CHUNK):
            chunk = os.urandom(COPY_CHUNK)
            digest.update(chunk)
            handle.write(chunk)
    cache = {}
    kwargs = {"port": server.port, "connection_cache": cache}
    unc = rf"\\{server.host}\{server.share.name}"
    smbclient.register_session(server.host, username="alice", password=USERS["alice"],
                               connection_timeout=WAIT_S, **kwargs)
    try:
        before = _counters(server.metrics)
        smbclient.copyfile(rf"{unc}\big.bin", rf"{unc}\big.copy", **kwargs)
        after = _counters(server.metrics)
        assert smbclient.stat(rf"{unc}\big.copy", **kwargs).st_size == COPY_BYTES
    finally:
        smbclient.reset_connection_cache(connection_cache=cache)

    delta = {name: after[name] - before[name] for name in COUNTERS}
    assert delta["smbcad_server_side_copy_bytes_total"] == COPY_BYTES, delta
    assert delta["smbcad_read_bytes_total"] <= COUNTER_SLACK, delta
    assert delta["smbcad_written_bytes_total"] <= COUNTER_SLACK, delta
    assert _sha256(share / "big.copy") == digest.hexdigest()
    (share / "big.bin").unlink()
    (share / "big.copy").unlink()
