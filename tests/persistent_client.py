"""smbprotocol helpers for persistent-handle tests (tests/interop and
tests/cluster): the DH2Q / DH2C / RqLs v2 create contexts smbprotocol builds
only field by field, a CREATE with a bounded wait, and picking one context of
a kind from a CREATE response, and the replay flag on a CREATE sent again."""

import collections
import contextlib
import threading
import time
import uuid

import smbprotocol.connection as smb_connection
from smbprotocol.create_contexts import (
    CreateContextName, DurableHandleFlags, SMB2CreateContextRequest,
    SMB2CreateDurableHandleReconnect, SMB2CreateDurableHandleReconnectV2,
    SMB2CreateDurableHandleRequest, SMB2CreateDurableHandleRequestV2,
    SMB2CreateRequestLeaseV2)
from smbprotocol.header import Smb2Flags
from smbprotocol.open import (
    CreateDisposition, CreateOptions, FilePipePrinterAccessMask, ImpersonationLevel, Open,
    RequestedOplockLevel, ShareAccess, SMB2WriteResponse)

LEASE_RWH = 0x7
READ_WRITE = FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE
SHARE_ALL = (ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE
             | ShareAccess.FILE_SHARE_DELETE)
CREATE_WAIT_S = 10.0


def create_context(name, data) -> SMB2CreateContextRequest:
    """A create context of any kind, from smbprotocol's structure for it."""
    context = SMB2CreateContextRequest()
    context["buffer_name"] = name
    context["buffer_data"] = data
    return context


class RawBody:
    """An SMB2 body smbprotocol does not model (the lease break
    acknowledgment, 2.2.24.2), for ``Connection.send``."""

    def __init__(self, command, body: bytes) -> None:
        self.COMMAND = command
        self.body = body

    def pack(self) -> bytes:
        return self.body

    def __len__(self) -> int:
        return len(self.body)


def lease_context(key: bytes, state: int = LEASE_RWH) -> SMB2CreateContextRequest:
    lease = SMB2CreateRequestLeaseV2()
    lease["lease_key"] = key
    lease["lease_state"] = state
    lease["parent_lease_key"] = bytes(16)
    lease["epoch"] = 0
    return create_context(CreateContextName.SMB2_CREATE_REQUEST_LEASE_V2, lease)


def dh2q_context(create_guid: uuid.UUID, timeout_ms: int) -> SMB2CreateContextRequest:
    """DH2Q asking for a persistent handle (2.2.13.2.11)."""
    request = SMB2CreateDurableHandleRequestV2()
    request["timeout"] = timeout_ms
    request["flags"] = DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT
    request["create_guid"] = create_guid
    return create_context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2, request)


def dh2c_context(file_id: bytes, create_guid: uuid.UUID) -> SMB2CreateContextRequest:
    """DH2C of a persistent handle (2.2.13.2.12)."""
    request = SMB2CreateDurableHandleReconnectV2()
    request["file_id"] = file_id
    request["create_guid"] = create_guid
    request["flags"] = DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT
    return create_context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2, request)


def dhnq_context() -> SMB2CreateContextRequest:
    """DHnQ: a durable (v1) handle, granted with a batch oplock (2.2.13.2.3)."""
    return create_context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_REQUEST,
                          SMB2CreateDurableHandleRequest())


def dhnc_context(file_id: bytes) -> SMB2CreateContextRequest:
    """DHnC of a durable (v1) handle (2.2.13.2.4)."""
    request = SMB2CreateDurableHandleReconnect()
    request["data"] = file_id
    return create_context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_RECONNECT, request)


def create(tree, name, contexts=(), disposition=CreateDisposition.FILE_OPEN, lease=False,
           wait_s: float = CREATE_WAIT_S, access: int = READ_WRITE):
    """CREATE ``name``, answered within ``wait_s`` (a CREATE that pends behind a
    lease break nobody can acknowledge fails instead of hanging); returns the
    Open, holding the FileId the server returned, and the response contexts."""
    handle = Open(tree, name)
    oplock = (RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE if lease
              else RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE)
    message, parse = handle.create(ImpersonationLevel.Impersonation, access, 0x80, SHARE_ALL,
                                   disposition, CreateOptions.FILE_NON_DIRECTORY_FILE,
                                   create_contexts=list(contexts), oplock_level=oplock, send=False)
    conn = tree.session.connection
    request = conn.send(message, sid=tree.session.session_id, tid=tree.tree_connect_id)
    conn.receive(request, timeout=wait_s)     # raises on a failure status
    return handle, parse(request) or []


@contextlib.contextmanager
def replay_flag():
    """SMB2_FLAGS_REPLAY_OPERATION on every request header smbprotocol builds
    meanwhile (a CREATE sent again after the connection was lost, 3.2.4.3)."""
    plain = smb_connection.SMB2HeaderRequest

    def with_flag():
        header = plain()
        header["flags"].set_flag(Smb2Flags.SMB2_FLAGS_REPLAY_OPERATIONS)
        return header
    smb_connection.SMB2HeaderRequest = with_flag
    try:
        yield
    finally:
        smb_connection.SMB2HeaderRequest = plain


def one(contexts, kind):
    """The one context of ``kind`` in a CREATE response."""
    found = [c for c in contexts if isinstance(c, kind)]
    assert len(found) == 1, f"expected one {kind.__name__} in the CREATE response, got {contexts!r}"
    return found[0]


class WriteStream:
    """WRITEs ``chunk(0)``, ``chunk(1)``, ... at ``index * len(chunk)`` through
    ``handle`` with up to ``window`` in flight, from a thread, until the
    connection fails (the kill or stop under test ends it); ``acked`` gets each
    chunk index as its WRITE is answered, ``in_flight`` holds those unanswered.
    The socket already exists, so any thread may use it (a namespace entered
    by the thread that connected does not matter here)."""

    def __init__(self, handle, session, chunk, acked: set, window: int = 8,
                 wait_s: float = CREATE_WAIT_S, max_chunks: int = 1 << 14) -> None:
        self.handle = handle
        self.chunk = chunk
        self.acked = acked
        self.window = window
        self.wait_s = wait_s
        self.max_chunks = max_chunks
        self.in_flight: dict[int, object] = {}
        self.error = None
        handle.connection.echo(sid=session.session_id, timeout=wait_s,
                               credit_request=2 * window)
        self._thread = threading.Thread(target=self._run, daemon=True, name="write-stream")
        self._thread.start()

    def _run(self) -> None:
        handle = self.handle
        conn, tree = handle.connection, handle.tree_connect
        queue = collections.deque()
        try:
            for index in range(self.max_chunks):
                data = self.chunk(index)
                message, _ = handle.write(data, index * len(data), send=False)
                request = conn.send(message, sid=tree.session.session_id,
                                    tid=tree.tree_connect_id)
                self.in_flight[index] = request
                queue.append(index)
                while len(queue) >= self.window:
                    oldest = queue.popleft()
                    response = conn.receive(self.in_flight[oldest], timeout=self.wait_s)
                    answer = SMB2WriteResponse()
                    answer.unpack(response["data"].get_value())
                    assert answer["count"].get_value() == len(data)
                    del self.in_flight[oldest]
                    self.acked.add(oldest)
        except BaseException as exc:    # the stop ends the stream; the test judges how
            self.error = exc

    def wait_acked(self, count: int) -> None:
        deadline = time.monotonic() + self.wait_s
        while len(self.acked) < count:
            assert self._thread.is_alive(), f"the write stream ended early: {self.error!r}"
            assert time.monotonic() < deadline, f"only {len(self.acked)} WRITEs answered"
            time.sleep(0.005)

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._thread.join(self.wait_s)
        assert not self._thread.is_alive(), "the write stream did not notice the server went"
