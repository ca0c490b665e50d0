"""A client that reconnects through an aggregate's LIF while the aggregate is
not online on that node (being released: clusdisk releases smbcad before it
takes the LIFs down, so the last answers and the FIN reach the clients; or
not adopted yet) gets no answer to its TREE_CONNECT instead of
BAD_NETWORK_NAME, on which clients give up: the tree connect completes if
the aggregate comes online here, and otherwise the LIF's new owner tickles
the client, which reconnects there (issue 11, cluster tier)."""

import threading
import uuid

from smbprotocol.connection import Connection
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from pair import LIF, PASSWORD, USER


def test_a_tree_connect_through_the_lif_waits_for_the_aggregate(pair):
    pair.aggregate.mount("A")
    pair.topology.lif_up("A")                   # the LIF here, the aggregate not adopted

    def session():
        conn = Connection(uuid.uuid4(), LIF, 445)
        conn.connect(timeout=15)
        auth = Session(conn, USER, PASSWORD, require_encryption=False)
        auth.connect()
        return conn, auth
    conn, auth = pair.client.call(session)
    tree = TreeConnect(auth, rf"\\{LIF}\vms")
    done = threading.Event()
    errors = []

    def connect_tree():
        try:
            pair.client.call(tree.connect)
        except Exception as exc:                 # noqa: BLE001 - reported below
            errors.append(exc)
        done.set()
    threading.Thread(target=connect_tree, daemon=True).start()
    assert not done.wait(3), errors              # held: no BAD_NETWORK_NAME
    assert pair.a.request(command="adopt", aggregate="aggr1")["ok"]
    assert done.wait(20) and not errors, errors  # answered once online
    pair.client.call(conn.disconnect, False)
