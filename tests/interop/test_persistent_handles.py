"""Persistent handles on a ``ca`` share survive a restart of smbcad (issue 4 item 8), seen by smbprotocol.

A client that negotiates SMB2_GLOBAL_CAP_PERSISTENT_HANDLES opens a file
with DH2Q (PERSISTENT), an RWH lease and a byte-range lock, and streams
writes of a pattern, several in flight at a time.  Then smbcad dies:

* ``kill -9`` in the middle of the stream, or a SIGTERM (the non-disruptive
  upgrade: stop, start) while it streams.  smbcad starts again on the same
  ``--state-dir`` and share.  Before the owner is back, another client's
  CREATE of the file gets exactly STATUS_FILE_NOT_AVAILABLE.  The owner
  reconnects on a new TCP connection and session with DH2C (same ClientGuid,
  CreateGuid and user): it gets the same persistent FileId, lease and lock,
  READs back every write that had been acknowledged, rewrites the ones that
  were in flight, carries on, closes, and the file on disk is the whole
  pattern.  A DH2C with another CreateGuid is refused and steals nothing.
* ``kill -9`` and no reconnect: the file stays held (FILE_NOT_AVAILABLE)
  until the 3 s timeout the DH2Q asked for has run, then another client opens
  it, the owner's DH2C finds nothing, and a further restart brings no ghost
  of the open back.
* SIGTERM and a restart after the timeout: the clean stop recorded when the
  open lost its connection, so nothing is restored and the file is free at
  once.

Always smbcad, whatever SMBCA_INTEROP_TARGET says: smbd grants persistent
handles only in a ctdb cluster.  ``kill -9`` ends the process, not the
machine: what the kernel already has survives it, so this shows that the
server writes before it answers and commits its handle store before the
CREATE and LOCK responses; it cannot show the fdatasync
(tests/unit/server/test_write_sync.py and the store's tests do).  Every
server this module starts is stopped by PID at teardown; each run's log is
kept (``smbcad.N.log``) and their tails are in the failure messages.
"""

import os
import random
import signal
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.connection import Capabilities, Connection  # noqa: E402
from smbprotocol.create_contexts import (  # noqa: E402
    DurableHandleFlags,
    SMB2CreateDurableHandleResponseV2,
    SMB2CreateResponseLeaseV2,
)
from smbprotocol.exceptions import SMBException, SMBResponseException  # noqa: E402
from smbprotocol.open import (  # noqa: E402
    CreateDisposition,
    LockFlags,
    SMB2LockElement,
)
from smbprotocol.session import Session  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

from persistent_client import (  # noqa: E402
    LEASE_RWH, WriteStream, create, dh2c_context, dh2q_context, lease_context, one)
from servers import Share, ServerStartError, start_smbcad  # noqa: E402

# Not marked interop: the client is a Python package, not a binary (as in test_smbprotocol.py).

WAIT_S = 10.0                       # bound for anything that should happen "now"
CHUNK = 64 << 10                    # one credit per WRITE
WINDOW = 8                          # WRITEs in flight at once
ACKED_BEFORE_STOP = 48              # chunks acknowledged before smbcad is stopped
MORE_AFTER_RECONNECT = 32           # chunks written after the reconnect
MAX_CHUNKS = 1 << 14                # the stream never gets there: it is cut by the stop
DURABLE_TIMEOUT_MS = 60_000         # long enough not to matter while the test runs
SHORT_TIMEOUT_MS = 3_000            # the scavenger test's DH2Q timeout
SCAVENGE_SLACK_S = 10.0             # how late after its timeout the file may come free

STATUS_FILE_NOT_AVAILABLE = 0xC0000467
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_LOCK_NOT_GRANTED = 0xC0000055
STATUS_RANGE_NOT_LOCKED = 0xC000007E

LOCK_OFFSET, LOCK_LENGTH = 1 << 40, 4096    # far past the data: the lock never blocks a WRITE


# --- smbcad, restartable on the same state directory and share ---------------------------

class CaServer:
    """smbcad with one ``ca`` share; ``restart()`` starts it again on the same
    ``--state-dir`` and share (on a new port: the clients follow it).  Each
    run's log is kept as ``smbcad.N.log``."""

    def __init__(self, tmp_path: Path) -> None:
        self.base = tmp_path
        share_dir = tmp_path / "ca"
        share_dir.mkdir()
        self.share = Share("ca", share_dir, ca=True)
        self.running = None
        self.runs = []
        self.start()

    def start(self) -> None:
        assert self.running is None or self.running.stopped
        try:
            self.running = start_smbcad(self.base, shares=[self.share])
        except ServerStartError as exc:
            pytest.fail(f"{exc}\n{self.logs()}", pytrace=False)
        self.runs.append(self.running)

    def kill(self) -> None:
        """SIGKILL smbcad by its PID, then reap it."""
        os.kill(self.running.pid, signal.SIGKILL)
        self.running.proc.wait(WAIT_S)
        self.running.stop()
        self._keep_log()

    def terminate(self) -> int:
        """SIGTERM (the ordered drain) and wait; returns the exit status."""
        status = self.running.stop()
        self._keep_log()
        return status

    def restart(self) -> None:
        self.start()

    def _keep_log(self) -> None:
        log = self.running.log_path
        kept = log.with_name(f"smbcad.{len(self.runs)}.log")
        log.rename(kept)
        self.running.log_path = kept

    def path(self, name: str) -> Path:
        return self.share.path / name

    def logs(self, lines: int = 25) -> str:
        return "\n".join(f"--- smbcad run {n} log ({run.log_path}):\n{run.log_tail(lines)}"
                         for n, run in enumerate(self.runs, 1))

    def close(self) -> None:
        for run in self.runs:
            run.stop()


@pytest.fixture
def ca_server(tmp_path):
    server = CaServer(tmp_path)
    yield server
    server.close()


# --- clients -------------------------------------------------------------------------------

class Client:
    """One TCP connection, session and tree connect to the ``ca`` share under ``client_guid``."""

    def __init__(self, server: CaServer, client_guid: uuid.UUID) -> None:
        running = server.running
        self.conn = Connection(client_guid, running.host, running.port)
        self.conn.client_capabilities |= Capabilities.SMB2_GLOBAL_CAP_PERSISTENT_HANDLES
        self.conn.connect(timeout=WAIT_S)
        try:
            self.session = Session(self.conn, running.user, running.password,
                                   require_encryption=False)
            self.session.connect()
            self.tree = TreeConnect(self.session, rf"\\{running.host}\{server.share.name}")
            self.tree.connect()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Drop the connection without logging off (its server may be gone already)."""
        self.conn.disconnect(close=False)


@pytest.fixture
def clients():
    """``clients(server, guid)`` → a connected Client; all are disconnected at teardown."""
    made = []

    def connect(server, client_guid=None):
        client = Client(server, client_guid or uuid.uuid4())
        made.append(client)
        return client

    yield connect
    for client in reversed(made):
        client.close()


def status_of(fn) -> int | None:
    """The NTSTATUS an SMB call failed with, or None if it succeeded."""
    try:
        fn()
    except SMBResponseException as exc:
        return exc.status
    return None


def expect(server: CaServer, status: int | None, fn, what: str) -> None:
    """``fn`` ends with exactly ``status`` (None: succeeds); else fail with both logs."""
    got = status_of(fn)
    if got != status:
        def text(value):
            return "success" if value is None else f"{value:#010x}"
        pytest.fail(f"{what}: expected {text(status)}, got {text(got)}\n{server.logs()}",
                    pytrace=False)


def lock(handle, flags) -> None:
    element = SMB2LockElement()
    element["offset"] = LOCK_OFFSET
    element["length"] = LOCK_LENGTH
    element["flags"] = flags
    handle.lock([element])


EXCLUSIVE_NOW = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY


def chunk(seed: int, index: int) -> bytes:
    """Chunk ``index`` of the pattern: distinct from every other chunk and from zeros."""
    return random.Random(seed * 1_000_003 + index).randbytes(CHUNK)


class PersistentWriter:
    """The owner of a persistent open: keeps what it needs to reconnect
    (ClientGuid, CreateGuid, lease key, FileId) and which WRITEs were answered."""

    def __init__(self, server: CaServer, clients, name: str, timeout_ms: int) -> None:
        self.server = server
        self.clients = clients
        self.name = name
        self.client_guid = uuid.uuid4()
        self.create_guid = uuid.uuid4()
        self.lease_key = os.urandom(16)
        self.seed = random.randrange(1 << 30)
        self.acked: set[int] = set()        # chunk indexes whose WRITE got a success response
        self.client = clients(server, self.client_guid)
        assert self.client.conn.server_capabilities.has_flag(
            Capabilities.SMB2_GLOBAL_CAP_PERSISTENT_HANDLES), "no PERSISTENT_HANDLES capability"
        self.handle, contexts = create(
            self.client.tree, name, [dh2q_context(self.create_guid, timeout_ms),
                                     lease_context(self.lease_key)],
            CreateDisposition.FILE_OVERWRITE_IF, lease=True)
        durable = one(contexts, SMB2CreateDurableHandleResponseV2)
        assert durable["flags"].has_flag(DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT), \
            "the open is not persistent"
        assert durable["timeout"].get_value() == timeout_ms
        assert one(contexts, SMB2CreateResponseLeaseV2)["lease_state"].get_value() == LEASE_RWH
        self.file_id = self.handle.file_id

    def reconnect(self, create_guid: uuid.UUID | None = None):
        """DH2C on a new connection and session; returns the CREATE's response contexts."""
        client = self.clients(self.server, self.client_guid)
        try:
            handle, contexts = create(
                client.tree, self.name,
                [dh2c_context(self.file_id, create_guid or self.create_guid),
                 lease_context(self.lease_key)], lease=True)
        except BaseException:
            client.close()
            raise
        self.client, self.handle = client, handle
        return contexts

    def write_all(self, indexes) -> None:
        """Synchronous WRITEs of the given chunks."""
        for index in indexes:
            assert self.handle.write(chunk(self.seed, index), index * CHUNK) == CHUNK
            self.acked.add(index)

    def read_back(self, indexes) -> list[int]:
        """The chunks among ``indexes`` whose READ through the handle differs from the pattern."""
        return [index for index in sorted(indexes)
                if self.handle.read(index * CHUNK, CHUNK) != chunk(self.seed, index)]


# --- the tests -----------------------------------------------------------------------------

@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM"])
def test_persistent_open_survives_restart_mid_stream(ca_server, clients, stop):
    writer = PersistentWriter(ca_server, clients, "vm-disk.vhdx", DURABLE_TIMEOUT_MS)
    lock(writer.handle, EXCLUSIVE_NOW)

    stream = WriteStream(writer.handle, writer.client.session,
                         lambda index: chunk(writer.seed, index), writer.acked, WINDOW, WAIT_S,
                         MAX_CHUNKS)
    stream.wait_acked(ACKED_BEFORE_STOP)
    assert stream.running(), "the stream must still be running when smbcad stops"
    if stop == "kill -9":
        ca_server.kill()
    else:
        assert ca_server.terminate() == 0, f"smbcad's SIGTERM exit status\n{ca_server.logs()}"
    stream.join()
    assert isinstance(stream.error, (SMBException, OSError)), \
        f"the stream ended with {stream.error!r}, not a lost connection"
    acked, in_flight = set(writer.acked), set(stream.in_flight)
    # The stream refills its window before it waits: the stop found WRITEs unanswered.
    assert len(in_flight) >= WINDOW - 1, f"only {len(in_flight)} WRITEs in flight at the stop"
    writer.client.close()

    ca_server.restart()
    # Meanwhile, another client (same user) cannot open the file at all.
    other = clients(ca_server)
    expect(ca_server, STATUS_FILE_NOT_AVAILABLE, lambda: create(other.tree, writer.name),
           "another client's CREATE of the disconnected persistent open's file")
    # A DH2C under another CreateGuid is refused and leaves the open where it is.
    expect(ca_server, STATUS_OBJECT_NAME_NOT_FOUND, lambda: writer.reconnect(uuid.uuid4()),
           "DH2C with the right FileId and another CreateGuid")
    expect(ca_server, STATUS_FILE_NOT_AVAILABLE, lambda: create(other.tree, writer.name),
           "another client's CREATE after the refused DH2C")

    contexts = writer.reconnect()
    assert writer.handle.file_id[:8] == writer.file_id[:8], "the persistent FileId changed"
    lease = one(contexts, SMB2CreateResponseLeaseV2)
    assert (lease["lease_key"].get_value(), lease["lease_state"].get_value()) == \
        (writer.lease_key, LEASE_RWH), "the lease did not come back"
    assert writer.handle.end_of_file >= (max(acked) + 1) * CHUNK, \
        f"EndOfFile {writer.handle.end_of_file} is short of the {len(acked)} chunks acknowledged"

    # Every acknowledged WRITE is there, read through the reconnected handle.
    assert writer.read_back(acked) == [], f"acknowledged chunks lost (of {len(acked)})"
    # The lock came back, owned by this open: it conflicts, and it unlocks once.
    expect(ca_server, STATUS_LOCK_NOT_GRANTED, lambda: lock(writer.handle, EXCLUSIVE_NOW),
           "the restored lock taken again")
    expect(ca_server, None, lambda: lock(writer.handle, LockFlags.SMB2_LOCKFLAG_UNLOCK),
           "unlock of the restored lock")
    expect(ca_server, STATUS_RANGE_NOT_LOCKED,
           lambda: lock(writer.handle, LockFlags.SMB2_LOCKFLAG_UNLOCK), "a second unlock")

    # Carry on: redo the WRITEs that were in flight, then some more.
    end = max(acked | in_flight) + 1
    writer.write_all(sorted(in_flight))
    writer.write_all(range(end, end + MORE_AFTER_RECONNECT))
    total = end + MORE_AFTER_RECONNECT
    assert writer.acked == set(range(total))
    assert writer.read_back(range(total)) == []
    writer.handle.close()

    on_disk = ca_server.path(writer.name).read_bytes()
    assert len(on_disk) == total * CHUNK
    bad = [i for i in range(total) if on_disk[i * CHUNK:(i + 1) * CHUNK] != chunk(writer.seed, i)]
    assert bad == [], f"chunks wrong on disk after CLOSE: {bad[:10]}"
    # Closed for good: the file is free again.
    handle, _ = create(other.tree, writer.name)
    handle.close()


def test_unclaimed_persistent_open_is_scavenged_after_restart(ca_server, clients):
    writer = PersistentWriter(ca_server, clients, "abandoned.vhdx", SHORT_TIMEOUT_MS)
    writer.write_all(range(4))
    ca_server.kill()
    writer.client.close()

    restarted_at = time.monotonic()
    ca_server.restart()
    other = clients(ca_server)
    # Held at first: the open really was restored, so its end below is the scavenger's doing.
    expect(ca_server, STATUS_FILE_NOT_AVAILABLE, lambda: create(other.tree, writer.name),
           "another client's CREATE right after the restart")

    deadline = restarted_at + SHORT_TIMEOUT_MS / 1000 + SCAVENGE_SLACK_S
    while True:
        status = status_of(lambda: create(other.tree, writer.name)[0].close())
        freed_at = time.monotonic()
        if status is None:
            break
        assert status == STATUS_FILE_NOT_AVAILABLE, f"{status:#x}\n{ca_server.logs()}"
        assert freed_at < deadline, \
            f"still held {freed_at - restarted_at:.1f} s after the restart\n{ca_server.logs()}"
        time.sleep(0.1)
    assert freed_at - restarted_at >= SHORT_TIMEOUT_MS / 1000 - 0.1, \
        f"freed {freed_at - restarted_at:.2f} s after the restart, before its timeout"
    assert ca_server.path(writer.name).read_bytes() == b"".join(chunk(writer.seed, i) for i in range(4))

    # Gone for good: the owner's DH2C finds nothing, and another restart brings no ghost back.
    expect(ca_server, STATUS_OBJECT_NAME_NOT_FOUND, writer.reconnect, "DH2C after the timeout")
    other.close()
    assert ca_server.terminate() == 0
    ca_server.restart()
    third = clients(ca_server)
    handle, _ = create(third.tree, writer.name)
    handle.close()


def test_timeout_runs_on_while_smbcad_is_stopped(ca_server, clients):
    """A clean stop records when the open lost its connection; a restart after its
    timeout has passed finds nothing to restore, so the file is free at once."""
    writer = PersistentWriter(ca_server, clients, "upgrade.vhdx", SHORT_TIMEOUT_MS)
    writer.write_all(range(2))
    assert ca_server.terminate() == 0
    writer.client.close()
    time.sleep(SHORT_TIMEOUT_MS / 1000 + 0.5)

    ca_server.restart()
    other = clients(ca_server)
    expect(ca_server, None, lambda: create(other.tree, writer.name)[0].close(),
           "another client's CREATE after a restart past the timeout")
    expect(ca_server, STATUS_OBJECT_NAME_NOT_FOUND, writer.reconnect, "DH2C after the timeout")
