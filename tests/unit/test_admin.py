"""The smbca admin command: it reaches the daemons over their control sockets only."""

import asyncio
import json
import threading

import pytest

from smbca import admin, admin_node
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
    shown = capsys.readouterr()
    assert "/nonexistent/" in shown.err + shown.out
    assert "Errno" not in shown.err + shown.out


@pytest.fixture
def daemon(tmp_path):
    """A control socket in a thread that records requests; answers ok unless told not to."""
    seen = []

    def handle(message: dict) -> dict:
        seen.append(message)
        return {"status": {"node": {"id": 1, "name": "A"}}} if "command" in message else {"registrations": 0}

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


def test_status_asks_every_daemon_and_says_which_is_not_running(daemon, capsys, tmp_path):
    path, seen = daemon
    argv = ["status", "--socket", path, "--smbcad-socket", str(tmp_path / "smbcad.sock"),
            "--witnessd-socket", str(tmp_path / "witnessd.sock"), "--config-dir", str(tmp_path)]
    assert admin.main([*argv, "--json"]) == 1          # smbcad is not running
    assert seen == [{"command": "status"}]
    shown = json.loads(capsys.readouterr().out)
    assert shown["clusdisk"]["status"] == {"node": {"id": 1, "name": "A"}}
    assert shown["smbcad"]["running"] is False
    assert f"no control socket at {tmp_path}/smbcad.sock" in shown["smbcad"]["error"]
    assert admin.main(argv) == 1
    text = capsys.readouterr().out
    assert f"smbcad is not running here: no control socket at {tmp_path}/smbcad.sock" in text
    assert f"witnessd is not running here: no control socket at {tmp_path}/witnessd.sock" in text
    assert f"clusdisk: running ({path})" in text and "node A (id 1, this node)" in text


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


# --- the failover verbs (issue 11 item 6) -------------------------------------------

@pytest.mark.parametrize("argv, request_", [
    (["failover", "show"], {"command": "status"}),
    (["takeover"], {"command": "takeover", "force": False}),
    (["takeover", "--force"], {"command": "takeover", "force": True}),
    (["giveback"], {"command": "giveback"}),
    (["aggregate", "relocate", "aggr1", "--to", "b"],
     {"command": "relocate", "aggregate": "aggr1", "to": "b", "force": False}),
    (["aggregate", "relocate", "aggr1", "--to", "2", "--force"],
     {"command": "relocate", "aggregate": "aggr1", "to": 2, "force": True}),
    (["lif", "migrate", "lif-a1", "--to", "a"], {"command": "lif-migrate", "lif": "lif-a1", "to": "a"}),
])
def test_failover_verbs_are_clusdisk_requests(argv, request_):
    from smbca import admin_failover
    assert admin_failover.request_of(admin._parser().parse_args(argv)) == request_


@pytest.fixture
def clusdisk(tmp_path):
    """A clusdisk control socket answering from ``answers[command]``."""
    seen, answers = [], {}

    def handle(message: dict) -> dict:
        seen.append(message)
        reply = answers[message["command"]]
        if "error" in reply:
            from smbca.control import ControlError
            raise ControlError(reply["error"])
        return reply

    loop = asyncio.new_event_loop()
    server = ControlServer(str(tmp_path / "clusdisk.sock"), handle)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.path, seen, answers
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(server.close())
    loop.close()


STEPS = [{"node": "b", "aggregate": "aggr1", "step": "smbcad release --planned",
          "seconds": 0.412, "ok": True, "detail": ""},
         {"node": "a", "aggregate": "aggr1", "step": "reserve data LUN", "seconds": 0.05,
          "ok": True, "detail": ""}]


def test_relocate_prints_every_step_with_its_duration(clusdisk, capsys):
    path, seen, answers = clusdisk
    answers["relocate"] = {"operation": "relocate", "steps": STEPS, "seconds": 1.5}
    assert admin.main(["aggregate", "relocate", "aggr1", "--to", "a", "--socket", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert seen == [{"command": "relocate", "aggregate": "aggr1", "to": "a", "force": False}]
    assert out[1].split() == ["b", "aggr1", "smbcad", "release", "--planned", "0.412", "ok"]
    assert out[2].split() == ["a", "aggr1", "reserve", "data", "LUN", "0.050", "ok"]
    assert out[-1] == "relocate aggr1 to a: done in 1.500 s"


def test_a_refusal_is_exit_1_with_the_reason(clusdisk, capsys):
    path, _, answers = clusdisk
    answers["giveback"] = {"error": "aggr1: b's copy of the handle store is not in sync"}
    assert admin.main(["giveback", "--socket", path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == ("smbca: giveback: refused or failed: aggr1: b's copy of "
                                    "the handle store is not in sync")


def test_failover_show_reads_clusdisk_status(clusdisk, capsys):
    path, _, answers = clusdisk
    answers["status"] = {"status": {
        "node": {"id": 1, "name": "a"}, "mode": "pr", "state": "online", "member": True,
        "owns_quorum": True, "partner_reachable": True, "peer_protocol": "v1",
        "partner": {"id": 2, "name": "b", "alive": True,
                    "status": {"state": "standby", "member": True}},
        "takeover_possible": False,
        "takeover_veto": "b owns no aggregate", "giveback_possible": True,
        "aggregates": [{"name": "aggr1", "home": 1, "owner": "a", "up": True,
                        "in_sync": True, "error": ""},
                       {"name": "aggr2", "home": 2, "owner": "b", "up": False,
                        "in_sync": None, "error": "", "why": "placed on b (...): waiting for b"}],
        "lifs": {"lif-a1": "a"}}}
    assert admin.main(["failover", "show", "--socket", path]) == 0
    out = capsys.readouterr().out
    assert "node b (id 2, partner): standby, member yes, heartbeat alive, control channel up" in out
    assert "takeover possible: no (b owns no aggregate)" in out
    assert "giveback possible: yes" in out
    assert "aggr1      a     a      yes      yes" in out
    assert "aggr2: placed on b (...): waiting for b" in out
    assert admin.main(["failover", "show", "--json", "--socket", path]) == 0
    assert json.loads(capsys.readouterr().out)["status"]["mode"] == "pr"


def test_status_shows_each_workers_partition_of_an_aggregate():
    """A cluster node with workers: the node's line per aggregate, then
    each worker's partition (smbcad.workers.fanout's ``partitions``)."""
    smbcad = {"socket": "/run/smbca/smbcad.sock", "ok": True, "smb": {"pid": 7}, "status": {
        "aggregates": [{"name": "aggr1", "phase": "partial",
                        "mirror": {"role": "primary", "in_sync": False},
                        "partitions": [
                            {"worker": 0, "phase": "online",
                             "mirror": {"role": "primary", "in_sync": True}, "detail": ""},
                            {"worker": 1, "phase": "unknown", "mirror": None,
                             "detail": "no answer within 30 s"}]}]}}
    lines = admin_node.show({"smbcad": smbcad}, {"witnessd": "-", "clusdisk": "-"})
    assert "  aggregate aggr1: partial, mirror primary, in sync no" in lines
    assert ("    worker 0: online, mirror primary in sync; "
            "worker 1: unknown (no answer within 30 s)") in lines
