"""``smbca sessions`` and ``smbca close-session`` on a pair (issue 15 item 1:
"works on a single node and on a pair: then it shows both nodes, or says
clearly that the partner is unreachable"), in the cluster tier's namespaces:
two smbcad and two clusdisk daemons (clusdisk_node.py, LUNs from
lun_server.py; aggr1 on a, its LIF moved by clusdisk's own LIF mover), and
real smbprotocol sessions from the client namespace on both nodes.

* ``smbca sessions`` on a lists a's session and b's, each with its node
  (the NODE column, ``"node"`` in --json); b's come over the clusdisk peer
  channel from b's smbcad.
* ``smbca close-session`` of b's session, run on a, ends it on b (b's smbcad
  lists no session any more, the client's next request fails).
* With b's clusdisk stopped, ``smbca sessions`` on a shows a's session, says
  ``partner b unreachable: REASON`` and exits 3.
"""

import json
import subprocess
import sys
import uuid

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.connection import Connection  # noqa: E402
from smbprotocol.exceptions import SMBException  # noqa: E402
from smbprotocol.session import Session  # noqa: E402

from clusdisk_pair import ClusdiskNode, LunServer  # noqa: E402
from pair import (  # noqa: E402
    LIF, NODE_ADDRESS, PASSWORD, REPO, USER, ClientThread, Node, code_env)

WAIT_S = 30.0


def clusdisk_with_smbcad(topology, side, tmp_path, luns, smbcad, mount) -> ClusdiskNode:
    """clusdisk_pair's node, with aggr1 only (mounted where smbcad serves it)
    and this node's smbcad to adopt it and to answer the partner's admin."""
    node = ClusdiskNode(topology, side, tmp_path, luns, "scsi2", 20000)
    config = json.loads(node.config_path.read_text())
    aggr1 = next(a for a in config["aggregates"] if a["name"] == "aggr1")
    aggr1["mount_point"] = str(mount)
    aggr1["lifs"][0]["address"] = f"{LIF}/24"
    config["aggregates"] = [aggr1]
    config["control"]["smbcad_socket"] = smbcad.control_socket
    node.config_path.write_text(json.dumps(config, indent=1))
    return node


class SmbSession:
    """A session (no tree) on ``address``, made in the client namespace."""

    def __init__(self, address: str) -> None:
        self.conn = Connection(uuid.uuid4(), address, 445)
        self.conn.connect(timeout=WAIT_S)
        self.session = Session(self.conn, USER, PASSWORD, require_encryption=False)
        self.session.connect()

    def echo(self) -> None:
        self.conn.echo(sid=self.session.session_id, timeout=10)

    def close(self) -> None:
        self.conn.disconnect(close=False)


def smbca(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smbca.admin", *argv], capture_output=True,
                          text=True, env=code_env(REPO), timeout=120)


def test_sessions_of_both_nodes_close_on_the_partner_and_partner_unreachable(
        topology, tmp_path):
    share = tmp_path / "aggr1" / "vms"
    share.mkdir(parents=True)
    smbcads = {side: Node(topology, side, tmp_path, share.parent, share) for side in "AB"}
    luns, clusdisks, client, sessions = None, {}, None, []
    try:
        for node in smbcads.values():
            node.start()
        luns = LunServer(tmp_path)
        for side in "AB":
            clusdisks[side] = clusdisk_with_smbcad(topology, side, tmp_path, luns,
                                                   smbcads[side], share.parent)
        a, b = clusdisks["A"], clusdisks["B"]
        a.start()
        a.wait_for(lambda s: s["owns_quorum"] and a.up(s) == {"aggr1"}, "aggr1 up on a")
        b.start()
        b.wait_for(lambda s: s["state"] == "standby" and s["partner_reachable"], "b standby")

        client = ClientThread(topology.path("C"))
        sessions = [client.call(SmbSession, LIF), client.call(SmbSession, NODE_ADDRESS["B"])]
        a_id, b_id = (f"{s.session.session_id:#018x}" for s in sessions)
        where = ["--socket", smbcads["A"].control_socket, "--clusdisk-socket", a.socket,
                 "--config-dir", str(tmp_path / "no-config")]

        listed = smbca("sessions", "--json", *where)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        rows = {(s["node"], s["session_id"]) for s in json.loads(listed.stdout)["sessions"]}
        assert rows == {("a", a_id), ("b", b_id)}, (rows, a_id, b_id)
        table = smbca("sessions", *where)
        assert table.returncode == 0 and table.stdout.splitlines()[0].startswith("node"), \
            table.stdout + table.stderr
        assert any(line.split()[:2] == ["b", b_id] for line in table.stdout.splitlines())

        closed = smbca("close-session", b_id, "--yes", *where)
        assert closed.returncode == 0, closed.stdout + closed.stderr
        assert f"b: ended session {b_id}" in closed.stdout
        assert smbcads["B"].request(command="sessions")["sessions"] == []
        assert [s["session_id"] for s in smbcads["A"].request(command="sessions")["sessions"]] \
            == [a_id]
        assert "closing session" in smbcads["B"].log_text()      # b's smbcad logs the close
        with pytest.raises(SMBException):                         # b dropped the connection
            client.call(sessions[1].echo)

        assert b.stop() == 0, b.log_tail()
        alone = smbca("sessions", *where)
        assert alone.returncode == 3, alone.stdout + alone.stderr
        assert [line.split()[:2] for line in alone.stdout.splitlines()[1:]] == [["a", a_id]]
        assert alone.stderr.startswith("smbca: partner b unreachable: partner unreachable on "
                                       "every link (198.51.100.2:"), alone.stderr
    finally:
        for session in sessions:
            try:
                client.call(session.close)
            except (SMBException, OSError):       # the closed one is gone already
                pass
        if client is not None:
            client.close()
        for node in list(clusdisks.values()) + list(smbcads.values()):
            node.kill()
        if luns is not None:
            luns.close()
