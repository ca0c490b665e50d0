"""smbcad takes connections to an aggregate's LIF only while the aggregate
is online (or being adopted) here: during a release (clusdisk now releases
smbcad before it takes the LIFs down, so the last answers and the FIN reach
the clients) a reconnecting client is turned away at once and retries until
the LIF answers on the new owner, instead of reaching a share that is about
to go offline under it (issue 11, cluster tier)."""

import socket


from pair import LIF


def connect_to_lif() -> bytes | None:
    """Connect to the LIF's SMB port and say nothing: b"" if the server closes
    (or resets) the connection at once, None if it keeps it open."""
    with socket.create_connection((LIF, 445), timeout=5) as sock:
        sock.settimeout(2)
        try:
            return sock.recv(1)
        except ConnectionResetError:
            return b""
        except socket.timeout:
            return None


def test_a_lif_of_an_aggregate_not_online_here_is_refused(pair):
    pair.aggregate.mount("A")
    pair.topology.lif_up("A")                   # the LIF here, the aggregate not adopted
    assert pair.client.call(connect_to_lif) == b""
    assert pair.a.request(command="adopt", aggregate="aggr1")["ok"]
    assert pair.client.call(connect_to_lif) is None      # online: the connection stays
    assert pair.a.request(command="release", aggregate="aggr1", planned=True)["ok"]
    assert pair.client.call(connect_to_lif) == b""
    assert "its aggregate is not online here" in pair.a.log_tail()
