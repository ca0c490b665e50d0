"""The ``smbca`` admin command against a running smbcad (issue 15 item 1).

smbcad runs in quick mode on loopback (``servers.start_smbcad``), with one
``ca`` share; its control socket is in its state directory.  Real clients
(smbprotocol, and smbclient kept connected on a pipe) make sessions, opens,
a lease and a byte-range lock, and ``python -m smbca.admin`` (the ``smbca``
command) is run as a subprocess to list them and to close them:

* ``sessions``, ``opens``, ``shares``, ``locks`` show what the clients hold,
  in tables and with ``--json``; ``status`` says what runs and what does not;
* a persistent open whose client dropped its connection is listed as
  disconnected (time left, lease, locks); another client's CREATE meets
  STATUS_FILE_NOT_AVAILABLE; ``release-disconnected`` asks first (``n``
  does nothing), then releases it; the other client opens the file, smbcad
  logs the release, and after a restart of smbcad on the same state
  directory the open does not come back (its record left the handle store);
* ``close-open`` closes a connected open (the client's next READ gets
  STATUS_FILE_CLOSED) and ``close-session`` ends a session and drops its
  connection.

Always smbcad: the command speaks to smbcad's control socket.  Every server
is stopped by PID at teardown.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.connection import Capabilities, Connection  # noqa: E402
from smbprotocol.exceptions import SMBException, SMBResponseException  # noqa: E402
from smbprotocol.open import CreateDisposition, LockFlags, SMB2LockElement  # noqa: E402
from smbprotocol.session import Session  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

from clients import smbclient_argv  # noqa: E402
from persistent_client import create, dh2q_context, lease_context  # noqa: E402
from servers import REPO, Share, start_smbcad  # noqa: E402

WAIT_S = 10.0
STATUS_FILE_NOT_AVAILABLE = 0xC0000467
STATUS_FILE_CLOSED = 0xC0000128
PERSISTENT_TIMEOUT_MS = 120_000       # far longer than the test: only a release frees the file


class CaServer:
    """Quick-mode smbcad with a ``ca`` share, restartable on its state directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        (base / "ca").mkdir()
        self.share = Share("ca", base / "ca", ca=True)
        self.runs = []
        self.start()

    def start(self) -> None:
        self.running = start_smbcad(self.base, shares=[self.share])
        self.runs.append(self.running)

    @property
    def socket(self) -> str:
        return str(self.base / "smbcad" / "state" / "smbcad.sock")

    def log(self) -> str:
        return self.running.log_path.read_text(errors="replace")

    def restart(self) -> None:
        assert self.running.stop() == 0, self.running.log_tail()
        self.running.log_path.rename(self.running.log_path.with_suffix(f".{len(self.runs)}.log"))
        self.start()

    def close(self) -> None:
        for run in self.runs:
            run.stop()


@pytest.fixture
def ca_server(tmp_path):
    server = CaServer(tmp_path)
    yield server
    server.close()


class Client:
    """One connection, session and tree connect to the ``ca`` share."""

    def __init__(self, server: CaServer) -> None:
        running = server.running
        self.conn = Connection(uuid.uuid4(), running.host, running.port)
        self.conn.client_capabilities |= Capabilities.SMB2_GLOBAL_CAP_PERSISTENT_HANDLES
        self.conn.connect(timeout=WAIT_S)
        self.session = Session(self.conn, running.user, running.password,
                               require_encryption=False)
        self.session.connect()
        self.tree = TreeConnect(self.session, rf"\\{running.host}\ca")
        self.tree.connect()

    def drop(self) -> None:
        """Lose the connection without closing anything (a client that died)."""
        self.conn.disconnect(close=False)


@pytest.fixture
def clients():
    made = []

    def connect(server):
        client = Client(server)
        made.append(client)
        return client
    yield connect
    for client in made:
        try:
            client.drop()
        except (SMBException, OSError):
            pass


def smbca(server: CaServer, *argv: str, stdin: str = "", expect: int = 0,
          socket_flag: str = "--socket") -> str:
    """``smbca ARGV --socket SOCKET``; checks the exit status, returns stdout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "smbca.admin", *argv, socket_flag,
                           server.socket], input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == expect, (f"smbca {' '.join(argv)}: exit {done.returncode}\n"
                                       f"{done.stdout}{done.stderr}\n{server.running.log_tail()}")
    assert "Errno" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    return done.stdout


def smbca_json(server: CaServer, *argv: str) -> dict:
    return json.loads(smbca(server, *argv, "--json"))


def persistent_open(client: Client, name: str, lock: bool = True):
    handle, _ = create(client.tree, name, [dh2q_context(uuid.uuid4(), PERSISTENT_TIMEOUT_MS),
                                           lease_context(os.urandom(16))],
                       CreateDisposition.FILE_OVERWRITE_IF, lease=True)
    if lock:
        element = SMB2LockElement()
        element["offset"], element["length"] = 0, 4096
        element["flags"] = (LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK
                            | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY)
        handle.lock([element])
    return handle


def status_of(fn) -> int | None:
    try:
        fn()
    except SMBResponseException as exc:
        return exc.status
    return None


def test_smbca_shows_the_sessions_opens_shares_and_locks_of_live_clients(ca_server, clients):
    if shutil.which("smbclient") is None:
        pytest.skip("smbclient is not installed")
    owner = clients(ca_server)
    persistent_open(owner, "vm.vhdx")
    # smbclient stays connected while it reads commands from the pipe.
    smbclient = subprocess.Popen(smbclient_argv(ca_server.running, share="ca"),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while len(smbca_json(ca_server, "sessions")["sessions"]) < 2:
            assert time.monotonic() < deadline, "smbclient's session never showed"
            time.sleep(0.1)
        sessions = smbca_json(ca_server, "sessions")["sessions"]
        table = smbca(ca_server, "sessions")
    finally:
        smbclient.communicate("quit\n", timeout=WAIT_S)
    assert {s["user"] for s in sessions} == {ca_server.running.user}
    assert all(s["client"].startswith("127.0.0.1") and s["shares"] == ["ca"] for s in sessions)
    assert sorted(s["opens"] for s in sessions) == [0, 1]
    assert table.splitlines()[0].split()[:3] == ["session", "id", "user"]
    assert sum(line.startswith("0x") for line in table.splitlines()) == 2

    [entry] = smbca_json(ca_server, "opens")["opens"]
    assert (entry["path"], entry["share"], entry["state"], entry["kind"]) == \
        ("vm.vhdx", "ca", "connected", "persistent")
    assert entry["lease"] == "RWH" and entry["locks"] == 1
    assert entry["client"].startswith("127.0.0.1:")
    assert "vm.vhdx" in smbca(ca_server, "opens")

    [share] = smbca_json(ca_server, "shares")["shares"]
    assert (share["name"], share["ca"], share["online"], share["opens"]) == ("ca", True, True, 1)
    assert share["path"] == str(ca_server.share.path)
    assert smbca(ca_server, "shares").splitlines()[1].startswith("ca ")

    [lock] = smbca_json(ca_server, "locks")["locks"]
    assert (lock["path"], lock["offset"], lock["length"], lock["exclusive"], lock["waiting"]) \
        == ("vm.vhdx", 0, 4096, True, False)
    assert lock["durable_file_id"] == entry["durable_file_id"]
    assert "exclusive" in smbca(ca_server, "locks")

    status = smbca(ca_server, "status", "--config-dir", str(ca_server.base),
                   "--socket", str(ca_server.base / "clusdisk.sock"),
                   "--witnessd-socket", str(ca_server.base / "witnessd.sock"),
                   socket_flag="--smbcad-socket")
    assert f"smbcad: running, pid {ca_server.running.pid}" in status
    assert ("clusdisk is not running here: no control socket at "
            f"{ca_server.base}/clusdisk.sock (given with --socket)") in status


def test_a_disconnected_persistent_open_is_listed_then_released(ca_server, clients):
    owner = clients(ca_server)
    persistent_open(owner, "db.mdf")
    owner.drop()
    deadline = time.monotonic() + WAIT_S
    while not smbca_json(ca_server, "opens", "--disconnected")["opens"]:
        assert time.monotonic() < deadline, "the open never showed as disconnected"
        time.sleep(0.1)
    [entry] = smbca_json(ca_server, "opens", "--disconnected")["opens"]
    assert (entry["path"], entry["state"], entry["kind"], entry["lease"], entry["locks"]) == \
        ("db.mdf", "disconnected", "persistent", "RWH", 1)
    assert 0 < entry["expires_in_ms"] <= PERSISTENT_TIMEOUT_MS
    assert entry["client_guid"] and entry["client"] == ""

    other = clients(ca_server)
    assert status_of(lambda: create(other.tree, "db.mdf")) == STATUS_FILE_NOT_AVAILABLE

    # The admin is asked first; "n" changes nothing.
    shown = smbca(ca_server, "release-disconnected", entry["durable_file_id"], stdin="n\n",
                  expect=1)
    assert "db.mdf" in shown and "release open" in shown
    assert smbca_json(ca_server, "opens", "--disconnected")["opens"]
    assert status_of(lambda: create(other.tree, "db.mdf")) == STATUS_FILE_NOT_AVAILABLE

    released = smbca(ca_server, "release-disconnected", "--all", stdin="y\n")
    assert f"released {entry['durable_file_id']} ca/db.mdf" in released
    assert smbca_json(ca_server, "opens")["opens"] == []
    handle, _ = create(other.tree, "db.mdf")          # the file is free
    handle.close()
    assert f"released disconnected persistent open {entry['durable_file_id']}" \
        in ca_server.log()

    # Its record left the handle store: a restart brings nothing back.
    ca_server.restart()
    assert smbca_json(ca_server, "opens")["opens"] == []
    assert "persistent opens restored" not in ca_server.log()


def test_close_open_and_close_session(ca_server, clients):
    client = clients(ca_server)
    handle = persistent_open(client, "file.txt", lock=False)
    [entry] = smbca_json(ca_server, "opens")["opens"]
    closed = smbca(ca_server, "close-open", entry["durable_file_id"], "--yes")
    assert f"closed {entry['durable_file_id']} ca/file.txt" in closed
    assert smbca_json(ca_server, "opens")["opens"] == []
    assert status_of(lambda: handle.read(0, 1)) == STATUS_FILE_CLOSED
    assert "admin: closed persistent open" in ca_server.log()

    persistent_open(client, "other.txt", lock=False)
    [session] = smbca_json(ca_server, "sessions")["sessions"]
    ended = smbca(ca_server, "close-session", session["session_id"], "--yes")
    assert f"ended session {session['session_id']}" in ended and "other.txt" in ended
    assert smbca_json(ca_server, "sessions")["sessions"] == []
    assert smbca_json(ca_server, "opens")["opens"] == []      # not kept for a reconnect
    unknown = subprocess.run([sys.executable, "-m", "smbca.admin", "close-open", "0x1234",
                              "--yes", "--socket", ca_server.socket], capture_output=True,
                             text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert unknown.returncode == 1 and "no open 0x0000000000001234" in unknown.stderr
