"""The smbca admin command: it reaches the daemons over their control sockets only."""

import asyncio
import json
import threading

import pytest

from smbca import admin
from smbca.control import ControlServer


def test_help_lists_the_commands(capsys):
    assert admin.main(["--help"]) == 0
    assert "smbca witness notify" in capsys.readouterr().out


def test_unknown_command_is_exit_2(capsys):
    assert admin.main(["takeover-now"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["status", "--socket", "/nonexistent/clusdisk.sock"],
    ["witness", "status", "--socket", "/nonexistent/witnessd.sock"],
    ["witness", "notify", "--socket", "/nonexistent/witnessd.sock", "node", "N1", "down"],
])
def test_an_unreachable_daemon_is_exit_2(argv, capsys):
    assert admin.main(argv) == 2
    assert "/nonexistent/" in capsys.readouterr().err


@pytest.fixture
def daemon(tmp_path):
    """A control socket in a thread that records requests; answers ok unless told not to."""
    seen = []

    def handle(message: dict) -> dict:
        seen.append(message)
        return {"status": {"node": 1}} if "command" in message else {"registrations": 0}

    loop = asyncio.new_event_loop()
    server = ControlServer(str(tmp_path / "daemon.sock"), handle)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.path, seen
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(server.close())
    loop.close()


def test_status_asks_clusdisk_and_prints_its_view(daemon, capsys):
    path, seen = daemon
    assert admin.main(["status", "--socket", path]) == 0
    assert seen == [{"command": "status"}]
    assert json.loads(capsys.readouterr().out) == {"node": 1}


def test_witness_notify_posts_the_event(daemon, capsys):
    path, seen = daemon
    assert admin.main(["witness", "notify", "--socket", path, "client-move", "--client", "hv1",
                       "NODE2"]) == 0
    assert seen == [{"event": "client-move", "client": "hv1", "destination": "NODE2"}]
    assert json.loads(capsys.readouterr().out) == {"ok": True, "registrations": 0}


@pytest.mark.parametrize("argv, request_", [
    (["smbcad", "status"], {"command": "status"}),
    (["smbcad", "opens", "--disconnected"], {"command": "opens", "disconnected": True}),
    (["smbcad", "opens"], {"command": "opens"}),
    (["smbcad", "sessions"], {"command": "sessions"}),
    (["smbcad", "adopt", "aggr1"], {"command": "adopt", "aggregate": "aggr1"}),
    (["smbcad", "release", "aggr1", "--planned"],
     {"command": "release", "aggregate": "aggr1", "planned": True}),
])
def test_smbcad_verbs_are_smbcad_control_requests(argv, request_):
    assert admin.request_of(admin._parser().parse_args(argv)) == request_
