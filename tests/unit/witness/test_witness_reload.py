"""A real witnessd process: start-up config errors and ``systemctl reload`` (SIGHUP).

The process listens on free loopback ports and is stopped by its PID at the
end.  A reload with a changed file applies users, names and interfaces while
a registration made before it keeps working; a broken file is logged with
its key and changes nothing.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from smbca.control import request_blocking
from smbca.rpc.ndr import encode
from witnessd.swn import (
    AsyncNotifyRequest,
    AsyncNotifyResponse,
    RegisterRequest,
    RegisterResponse,
    ResourceChange,
    ResourceState,
    Win32Error,
    WITNESS_V1,
    parse_messages,
)

from .client import PASSWORD, USER, DceClient, SocketConnection, register

REPO = Path(__file__).parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config(tmp_path: Path, port: int) -> dict:
    return {
        "server": {"listen": [f"127.0.0.1:{port}"], "epm_listen": [f"127.0.0.1:{free_port()}"],
                   "control_socket": str(tmp_path / "control.sock"), "metrics_listen": None},
        "auth": {"users": [{"name": USER, "password": PASSWORD}]},
        "witness": {"net_name": "CLUSTER", "nodes": ["NODE1", "NODE2"], "local_node": "NODE1",
                    "forced_unregister_after_s": 0},
        "interfaces": [{"node": "NODE1", "ipv4": "127.0.0.1"},
                       {"node": "NODE2", "ipv4": "127.0.0.2"}],
    }


class Witnessd:
    def __init__(self, tmp_path: Path, cfg: dict) -> None:
        self.path = tmp_path / "witnessd.yaml"
        self.log = tmp_path / "witnessd.log"
        self.control = str(tmp_path / "control.sock")
        self.write(cfg)
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "witnessd", "--config",
                                          str(self.path)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=REPO, start_new_session=True)

    def write(self, cfg: dict) -> None:
        self.path.write_text(yaml.safe_dump(cfg))

    def wait_log(self, text: str, count: int = 1, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log.read_text(errors="replace")
            if log.count(text) >= count:
                return log
            assert self.proc.poll() is None, f"witnessd exited:\n{log}"
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged:\n{self.log.read_text(errors='replace')}")

    def reload(self, cfg: dict | str, outcome: str, count: int = 1) -> str:
        if isinstance(cfg, str):
            self.path.write_text(cfg)
        else:
            self.write(cfg)
        self.proc.send_signal(signal.SIGHUP)
        return self.wait_log(outcome, count)

    def status(self) -> dict:
        return request_blocking(self.control, {"event": "status"})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def witnessd(tmp_path):
    port = free_port()
    daemon = Witnessd(tmp_path, config(tmp_path, port))
    daemon.port = port
    daemon.cfg = config(tmp_path, port)
    try:
        daemon.wait_log("witnessd: control listening on")
        yield daemon
    finally:
        daemon.stop()


def client_for(port: int, **kwargs) -> DceClient:
    client = DceClient(SocketConnection(port), **kwargs)
    client.bind()
    return client


def test_reload_applies_the_new_file_and_keeps_registrations(witnessd) -> None:
    old_client = client_for(witnessd.port)
    handle = register(old_client, ip="127.0.0.2")
    cfg = witnessd.cfg
    cfg["auth"]["users"] = [{"name": "bob", "password": "Bob-Pw2"}]
    cfg["witness"]["aliases"] = ["CLUSTER2"]
    cfg["interfaces"].append({"node": "NODE2", "ipv4": "127.0.0.3"})
    cfg["server"]["listen"] = [f"127.0.0.1:{free_port()}"]
    cfg["server"]["log_level"] = "debug"
    log = witnessd.reload(cfg, "configuration reloaded")
    assert "server.listen changed; it takes effect at the next restart" in log
    status = witnessd.status()
    assert [i["ipv4"] for i in status["interfaces"]] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert len(status["registrations"]) == 1

    # the old listener still serves; new connections authenticate as the new users
    with pytest.raises(AssertionError):
        client_for(witnessd.port)                                    # alice is gone
    bob = client_for(witnessd.port, user="bob", password="Bob-Pw2")
    response = bob.call(1, RegisterRequest(WITNESS_V1, "cluster2", "127.0.0.3", "hv2"),
                        RegisterResponse)
    assert response.return_value == Win32Error.SUCCESS

    # the registration made before the reload still hears its LIF
    old_client.conn.receive_data(old_client.request_pdu(
        3, encode(AsyncNotifyRequest.NDR, AsyncNotifyRequest(handle))))
    assert request_blocking(witnessd.control, {"event": "interface", "group": "NODE1",
                                               "state": "up", "ipv4": "127.0.0.2"})["ok"]
    answer = old_client.decode_answer(old_client.conn.pdus_to_send(), AsyncNotifyResponse)
    assert parse_messages(answer.response) == (
        ResourceChange(ResourceState.UNAVAILABLE, "127.0.0.2"),
        ResourceChange(ResourceState.AVAILABLE, "127.0.0.2"))


def test_reload_of_a_broken_file_keeps_the_running_config(witnessd) -> None:
    client = client_for(witnessd.port)
    register(client, ip="127.0.0.2")
    cfg = witnessd.cfg
    cfg["witness"]["lcoal_node"] = cfg["witness"].pop("local_node")
    cfg["interfaces"].append({"node": "NODE2", "ipv4": "127.0.0.3"})
    log = witnessd.reload(cfg, "reload refused")
    assert ("reload refused, keeping the running configuration: witness.lcoal_node: "
            "unknown key (did you mean witness.local_node?)") in log
    witnessd.reload("server: [not, a, mapping\n", "reload refused", count=2)
    assert witnessd.proc.poll() is None
    status = witnessd.status()
    assert [i["ipv4"] for i in status["interfaces"]] == ["127.0.0.1", "127.0.0.2"]
    assert len(status["registrations"]) == 1
    client_for(witnessd.port)                                        # alice still logs on
    assert "Traceback" not in witnessd.log.read_text()


def test_a_typo_at_start_up_exits_2_naming_the_key(tmp_path) -> None:
    cfg = config(tmp_path, free_port())
    cfg["witness"]["lcoal_node"] = cfg["witness"].pop("local_node")
    daemon = Witnessd(tmp_path, cfg)
    try:
        assert daemon.proc.wait(30) == 2
    finally:
        daemon.stop()
    assert daemon.log.read_text() == ("witnessd: witness.lcoal_node: unknown key "
                                      "(did you mean witness.local_node?)\n")
