"""Connection limits of a node with two worker processes (``server.workers:
2``): ``server.max_connections`` and ``server.max_connections_per_client``
count every worker's connections together (the open-state database's
``connections`` counts, checked and counted in one transaction at accept),
not each worker's own.

Clients are smbprotocol connections whose ClientGuids the routing hash puts
on worker 0 and worker 1 (``guid_for``), so the connections that fill the
node are spread over both workers, and a worker alone is under the limit.
"""

import os
import sys
import time
import uuid

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.connection import Connection  # noqa: E402
from smbprotocol.exceptions import SMBException  # noqa: E402

from servers import (  # noqa: E402
    READY_LINE, REPO, RunningServer, Share, _launch, _wait_ready, free_port)
from test_workers import WAIT_S, guid_for  # noqa: E402

USER, PASSWORD = "limits", "Limits-Pw-1"


def start(tmp_path, **limits) -> RunningServer:
    share = Share("share", tmp_path / "share")
    share.path.mkdir()
    port = free_port()
    config = tmp_path / "smbcad.yaml"
    config.write_text("\n".join([
        "server:", f"  listen: ['127.0.0.1:{port}']", f"  state_dir: {tmp_path / 'state'}",
        f"  control_socket: {tmp_path / 'smbcad.sock'}", "  workers: 2",
        *(f"  {name}: {value}" for name, value in limits.items()),
        "shares:", f"  - {{name: share, path: '{share.path}'}}",
        "users:", f"  - {{name: {USER}, password: '{PASSWORD}'}}", ""]))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    proc = _launch([sys.executable, "-m", "smbcad", "--config", str(config)],
                   tmp_path / "smbcad.log", env=env, cwd=REPO)
    server = RunningServer("smbcad", "127.0.0.1", port, proc, tmp_path / "smbcad.log",
                           (share,), {USER: PASSWORD})
    _wait_ready(server, READY_LINE, accepting_is_ready=False)
    return server


def connect(server, guid: uuid.UUID) -> Connection:
    connection = Connection(guid, server.host, server.port)
    connection.connect(timeout=WAIT_S)           # NEGOTIATE: routed to the guid's worker
    return connection


def refused(server, guid: uuid.UUID) -> bool:
    try:
        connect(server, guid).disconnect(True)
    except (SMBException, OSError, ValueError):
        return True
    return False


def hits(server, text: str) -> int:
    return server.log_path.read_text().count(text)


def test_max_connections_counts_both_workers(tmp_path):
    server = start(tmp_path, max_connections=3)
    held = []
    try:
        held = [connect(server, guid) for guid in (guid_for(0), guid_for(1), guid_for(0, nth=1))]
        assert refused(server, guid_for(1, nth=1))
        assert hits(server, "(server.max_connections); refused") == 1, server.log_tail(20)
        held.pop().disconnect(True)                 # a slot freed on worker 0 ...
        deadline = time.monotonic() + WAIT_S
        while refused(server, guid_for(1, nth=1)):  # ... is the node's: worker 1 gets it
            assert time.monotonic() < deadline, server.log_tail(20)
            time.sleep(0.2)
    finally:
        for connection in held:
            connection.disconnect(True)
        server.stop()


def test_max_connections_per_client_counts_both_workers(tmp_path):
    server = start(tmp_path, max_connections_per_client=2)
    held = []
    try:
        held = [connect(server, guid) for guid in (guid_for(0), guid_for(1))]
        assert refused(server, guid_for(0, nth=1))
        assert hits(server, "(server.max_connections_per_client); refused") == 1, \
            server.log_tail(20)
    finally:
        for connection in held:
            connection.disconnect(True)
        server.stop()
