"""``smbca sessions|opens|...`` on a node of a pair (issue 15 item 1): both
nodes' rows with a NODE column (``"node"`` in --json), the partner's through
this node's clusdisk (``partner-smb``); a partner that cannot be asked is
said so, with this node's rows and exit status 3; an action goes to the node
that has the id.  Real control sockets stand for smbcad and clusdisk."""

import asyncio
import json
import threading

import pytest

from smbca import admin
from smbca.control import ControlError, ControlServer

A_SESSION = {"session_id": "0x0000000000000001", "user": "alice", "client": "192.0.2.100",
             "dialect": "0x0311", "signed": True, "encrypted": False, "shares": ["vms"],
             "opens": 1}
B_SESSION = {**A_SESSION, "session_id": "0x0000000000000002", "user": "bob"}


@pytest.fixture
def node(tmp_path):
    """This node's smbcad and clusdisk; ``partner`` says how the partner answers:
    "up" (its smbcad has B_SESSION), "down" (unreachable) or "old" (clusdisk
    of a release without partner-smb)."""
    state = {"partner": "up", "relayed": [], "local": []}

    def smbcad(message):
        state["local"].append(message)
        if message["command"] == "close-session":
            return {"closed_session": message["id"], "closed": []}
        return {"sessions": [A_SESSION]}

    def clusdisk(message):
        if message["command"] == "status":
            return {"status": {"node": {"name": "a"}, "partner": {"name": "b"}}}
        if state["partner"] == "old":
            raise ControlError(f"unknown command {message['command']!r}")
        names = {"node": "a", "partner": "b"}
        if state["partner"] == "down":
            return {"ok": False, **names, "unreachable": True,
                    "error": "partner unreachable on every link (198.51.100.2:7401: "
                             "Connect call failed)"}
        request = message["request"]
        state["relayed"].append(request)
        if request["command"] == "close-session":
            return {**names, "reply": {"ok": True, "closed_session": request["id"],
                                       "closed": []}}
        return {**names, "reply": {"ok": True, "sessions": [B_SESSION]}}

    loop = asyncio.new_event_loop()
    servers = [ControlServer(str(tmp_path / "smbcad.sock"), smbcad),
               ControlServer(str(tmp_path / "clusdisk.sock"), clusdisk)]
    for server in servers:
        loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    argv = ["--socket", str(tmp_path / "smbcad.sock"),
            "--clusdisk-socket", str(tmp_path / "clusdisk.sock"),
            "--config-dir", str(tmp_path / "none")]
    yield state, argv
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    for server in servers:
        loop.run_until_complete(server.close())
    loop.close()


def test_sessions_lists_both_nodes_with_a_node_column(node, capsys):
    state, argv = node
    assert admin.main(["sessions", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["node", "session", "id"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["a", "0x0000000000000001"], ["b", "0x0000000000000002"]]
    assert admin.main(["sessions", "--json", *argv]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [(s["node"], s["user"]) for s in answer["sessions"]] == [("a", "alice"), ("b", "bob")]
    assert answer["ok"] is True and answer["unreachable"] == []


@pytest.mark.parametrize("partner, says", [
    ("down", "smbca: partner b unreachable: partner unreachable on every link "
             "(198.51.100.2:7401: Connect call failed)"),
    ("old", "smbca: partner b not asked: clusdisk on this node does not relay SMB "
            "requests (an older release: unknown command 'partner-smb')")])
def test_a_partner_that_cannot_be_asked_is_said_so_with_exit_3(node, capsys, partner, says):
    state, argv = node
    state["partner"] = partner
    assert admin.main(["sessions", *argv]) == 3
    captured = capsys.readouterr()
    assert [line.split()[0] for line in captured.out.splitlines()[1:]] == ["a"]
    assert captured.err.strip() == says
    assert admin.main(["sessions", "--json", *argv]) == 3
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False and [s["node"] for s in answer["sessions"]] == ["a"]
    assert answer["unreachable"] == [says.removeprefix("smbca: ")]


def test_close_session_goes_to_the_node_that_has_it(node, capsys):
    state, argv = node
    assert admin.main(["close-session", "2", "--yes", *argv]) == 0
    assert state["relayed"][-1] == {"command": "close-session", "id": "2"}
    assert {"command": "close-session", "id": "2"} not in state["local"]
    assert capsys.readouterr().out.strip() == "b: ended session 2"
    assert admin.main(["close-session", "0x1", "--yes", *argv]) == 0
    assert state["local"][-1] == {"command": "close-session", "id": "0x1"}


def test_an_id_on_neither_node_with_the_partner_down_is_exit_3(node, capsys):
    state, argv = node
    state["partner"] = "down"
    assert admin.main(["close-session", "0x2", "--yes", *argv]) == 3
    assert "0x2 is not on this node, and partner b unreachable" in capsys.readouterr().err


def test_an_unknown_node_is_refused(node, capsys):
    _, argv = node
    assert admin.main(["close-session", "0x2", "--node", "c", "--yes", *argv]) == 1
    assert "no node 'c' here (nodes: a, b)" in capsys.readouterr().err
