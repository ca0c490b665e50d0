"""A persistent CREATE killed after it made the file and before its open's
record was stored, replayed by smbprotocol on smbcad started again: the
answer the client would have got (CREATED, not OBJECT_NAME_COLLISION; for
an overwrite, no second truncation) [smbcad/server/intents.py].

The crash is race-free: tests/unit/server/intent_crash_child.py runs
smbcad's server and handle store and SIGKILLs itself inside the log
engine's write of the open's record, which it reaches deterministically
(the intent is on disk, the file is made, nothing is answered).  It writes
the same ``--state-dir``/handles and share the daemon uses.  Then the real
daemon starts on them, and smbprotocol replays the CREATE over TCP: same
ClientGuid, CreateGuid, user and request, with SMB2_FLAGS_REPLAY_OPERATION
(which smbprotocol has no option for: ``replay_flag`` sets it on the
headers it builds meanwhile; the signature covers it).

Always smbcad: the crash child is smbcad's own server.  Every server this
module starts is stopped by PID at teardown.
"""

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.connection import Capabilities, Connection  # noqa: E402
from smbprotocol.create_contexts import (  # noqa: E402
    CreateContextName, DurableHandleFlags, SMB2CreateContextRequest,
    SMB2CreateDurableHandleRequestV2)
from smbprotocol.exceptions import SMBResponseException  # noqa: E402
from smbprotocol.open import (  # noqa: E402
    CreateAction, CreateDisposition, ImpersonationLevel, Open, RequestedOplockLevel)
from smbprotocol.session import Session  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

from persistent_client import replay_flag  # noqa: E402
from servers import TEST_PASSWORD, TEST_USER, Share, start_smbcad  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHILD = REPO / "tests" / "unit" / "server" / "intent_crash_child.py"
# What the child's CREATE carried (tests/unit/server/ca_client.py): the replay repeats it.
CLIENT_GUID = uuid.UUID(bytes=bytes(range(100, 116)))   # smbprotocol packs .bytes
CREATE_GUID = uuid.UUID(bytes=bytes(range(200, 216)))
ACCESS, SHARE_READ, NON_DIRECTORY, ATTRIBUTES = 0x0012019F, 1, 0x40, 0x80
WAIT_S = 10.0
STATUS_FILE_NOT_AVAILABLE = 0xC0000467


def crash_in_create(base: Path, share_dir: Path, name: str, disposition: int) -> None:
    state = base / "smbcad" / "state"
    state.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(CHILD), str(share_dir), str(state), name,
                           str(disposition), TEST_USER, TEST_PASSWORD], capture_output=True,
                          text=True, env=env, timeout=60, cwd=str(REPO))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "INTENT" in proc.stdout and "ANSWERED" not in proc.stdout



class Client:
    def __init__(self, running, share: str, client_guid: uuid.UUID) -> None:
        self.conn = Connection(client_guid, running.host, running.port)
        self.conn.client_capabilities |= Capabilities.SMB2_GLOBAL_CAP_PERSISTENT_HANDLES
        self.conn.connect(timeout=WAIT_S)
        self.session = Session(self.conn, running.user, running.password,
                               require_encryption=False)
        self.session.connect()
        self.tree = TreeConnect(self.session, rf"\\{running.host}\{share}")
        self.tree.connect()

    def create(self, name: str, disposition: int, create_guid: uuid.UUID = CREATE_GUID):
        """The child's CREATE again: returns the Open (its create_action set)."""
        dh2q = SMB2CreateDurableHandleRequestV2()
        dh2q["timeout"] = 0
        dh2q["flags"] = DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT
        dh2q["create_guid"] = create_guid
        context = SMB2CreateContextRequest()
        context["buffer_name"] = CreateContextName.SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2
        context["buffer_data"] = dh2q
        handle = Open(self.tree, name)
        message, parse = handle.create(
            ImpersonationLevel.Impersonation, ACCESS, ATTRIBUTES, SHARE_READ, disposition,
            NON_DIRECTORY, create_contexts=[context],
            oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE, send=False)
        request = self.conn.send(message, sid=self.session.session_id,
                                 tid=self.tree.tree_connect_id)
        self.conn.receive(request, timeout=WAIT_S)
        parse(request)
        return handle

    def close(self) -> None:
        self.conn.disconnect(close=False)


@pytest.fixture
def setup(tmp_path):
    share_dir = tmp_path / "ca"
    share_dir.mkdir()
    started, clients = [], []

    def start():
        running = start_smbcad(tmp_path, shares=[Share("ca", share_dir, ca=True)])
        started.append(running)
        return running

    def connect(running, client_guid=CLIENT_GUID):
        client = Client(running, "ca", client_guid)
        clients.append(client)
        return client

    yield tmp_path, share_dir, start, connect
    for client in clients:
        client.close()
    for running in started:
        running.stop()


def test_a_create_killed_before_its_answer_is_replayed_as_created(setup):
    base, share_dir, start, connect = setup
    crash_in_create(base, share_dir, "vm.vhdx", CreateDisposition.FILE_CREATE)
    inode = os.stat(share_dir / "vm.vhdx").st_ino
    running = start()
    other = connect(running, uuid.uuid4())
    with pytest.raises(SMBResponseException) as refused:
        other.create("vm.vhdx", CreateDisposition.FILE_OPEN, uuid.uuid4())
    assert refused.value.status == STATUS_FILE_NOT_AVAILABLE     # reserved for the replay
    owner = connect(running)
    with replay_flag():
        handle = owner.create("vm.vhdx", CreateDisposition.FILE_CREATE)
    assert handle.create_action == CreateAction.FILE_CREATED
    handle.write(b"after the replay", 0)
    handle.close()
    assert os.stat(share_dir / "vm.vhdx").st_ino == inode
    assert (share_dir / "vm.vhdx").read_bytes() == b"after the replay"


def test_an_overwrite_killed_before_its_answer_is_not_truncated_twice(setup):
    base, share_dir, start, connect = setup
    (share_dir / "db.mdf").write_bytes(b"old contents")
    crash_in_create(base, share_dir, "db.mdf", CreateDisposition.FILE_OVERWRITE_IF)
    (share_dir / "db.mdf").write_bytes(b"written since")
    running = start()
    owner = connect(running)
    with replay_flag():
        handle = owner.create("db.mdf", CreateDisposition.FILE_OVERWRITE_IF)
    assert handle.create_action == CreateAction.FILE_OVERWRITTEN
    handle.close()
    assert (share_dir / "db.mdf").read_bytes() == b"written since"
