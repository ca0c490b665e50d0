"""The smbcad process as an admin sees it: --config, SIGHUP reload of shares
and users, the Prometheus endpoint, and SIGTERM draining to exit 0."""

import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.interop.clients import run_smbclient
from tests.interop.servers import (
    READY_LINE, REPO, RunningServer, Share, _launch, _wait_ready, free_port)

pytestmark = pytest.mark.interop("smbclient")


def _config(path: Path, port: int, metrics_port: int, state: Path, shares, users) -> None:
    lines = ["server:", f"  listen: ['127.0.0.1:{port}']", f"  state_dir: {state}",
             f"  control_socket: {state.parent / 'smbcad.sock'}",
             f"  metrics_listen: '127.0.0.1:{metrics_port}'", "shares:"]
    lines += [f"  - {{name: {s.name}, path: '{s.path}'}}" for s in shares]
    lines += ["users:"] + [f"  - {{name: {n}, password: '{p}'}}" for n, p in users.items()]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def config_server(tmp_path):
    shares = [Share("first", tmp_path / "first")]
    shares[0].path.mkdir()
    users = {"admin1": "Pw-one-1"}
    port, metrics_port = free_port(), free_port()
    cfg = tmp_path / "smbcad.yaml"
    _config(cfg, port, metrics_port, tmp_path / "state", shares, users)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = _launch([sys.executable, "-m", "smbcad", "--config", str(cfg)], tmp_path / "log",
                   env=env, cwd=REPO)
    server = RunningServer("smbcad", "127.0.0.1", port, proc, tmp_path / "log", tuple(shares), users)
    _wait_ready(server, READY_LINE)
    server.config_path = cfg
    server.metrics_port = metrics_port
    server.write_config = lambda s, u: _config(cfg, port, metrics_port, tmp_path / "state", s, u)
    yield server
    server.stop()


def _shares_listed(server) -> str:
    proc = run_smbclient(server, list_shares=True)
    return proc.stdout


def test_sighup_reloads_shares_and_users(config_server, tmp_path):
    assert "first" in _shares_listed(config_server)
    second = Share("second", tmp_path / "second")
    second.path.mkdir()
    config_server.write_config([config_server.share, second],
                               {"admin1": "Pw-one-1", "admin2": "Pw-two-2"})
    os.kill(config_server.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "second" not in _shares_listed(config_server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "second" in _shares_listed(config_server)
    config_server.users = {"admin2": "Pw-two-2"}
    proc = run_smbclient(config_server, "ls", share="second")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bad_reload_keeps_running_config(config_server):
    config_server.config_path.write_text("server: {signing: sometimes}\n")
    os.kill(config_server.pid, signal.SIGHUP)
    time.sleep(1)
    assert "first" in _shares_listed(config_server)
    assert "server.signing" in config_server.log_tail()


def test_metrics_endpoint_counts_requests(config_server):
    run_smbclient(config_server, "ls", share="first")
    url = f"http://127.0.0.1:{config_server.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    assert 'smbcad_requests_total{command="create",status="STATUS_SUCCESS"}' in text
    assert "smbcad_session_setups_total" in text
    assert "smbcad_request_duration_seconds_bucket" in text
    assert "Pw-one-1" not in config_server.log_path.read_text()


def test_sigterm_drains_and_exits_zero(config_server):
    os.kill(config_server.pid, signal.SIGTERM)
    assert config_server.proc.wait(30) == 0
