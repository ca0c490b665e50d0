"""The admin's release of a disconnected persistent open on a pair (issue 15
item 1): ``smbca release-disconnected`` on the owner goes through its
OpenTable and handle store, whose mirror takes the record out of the
partner's replica too.  So when the owner is then killed (kill -9) and the
partner adopts the aggregate from its replica, the released open does not
come back: the file opens for another client at once and the old owner's
DH2C finds nothing.  The driver plays clusdisk as in test_cluster_failover.
"""

import os
import subprocess
import sys
import time
import uuid

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")

from pair import REPO  # noqa: E402
from persistent_client import create  # noqa: E402
from test_cluster_failover import (  # noqa: E402
    STATUS_OBJECT_NAME_NOT_FOUND, WAIT_S, Client, Owner, adopted_opens, status_of,
    wait_in_sync)


def test_a_released_disconnected_open_leaves_the_partner_replica_too(pair):
    assert pair.adopt("A")["ok"]
    wait_in_sync(pair.a)
    owner = Owner(pair.client, "vm.vhdx")
    owner.write(0)
    pair.client.call(owner.client.close)                # the client is gone
    deadline = time.monotonic() + WAIT_S
    while not pair.a.request(command="opens", disconnected=True)["opens"]:
        assert time.monotonic() < deadline, pair.a.log_tail()
        time.sleep(0.05)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "smbca.admin", "release-disconnected", "--all",
                           "--yes", "--socket", pair.a.control_socket],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vms/vm.vhdx" in done.stdout
    assert adopted_opens(pair.a) == []

    pair.a.kill()
    pair.lost("A")
    adopted = pair.adopt("B")
    assert adopted["ok"] and adopted["source"] == "replica" and adopted["restored"] == 0, \
        (adopted, pair.b.log_tail())
    other = pair.client.call(Client, uuid.uuid4())
    try:
        handle, _ = pair.client.call(create, other.tree, "vm.vhdx")
        pair.client.call(handle.close)
    finally:
        pair.client.call(other.close)
    assert status_of(owner.reconnect) == STATUS_OBJECT_NAME_NOT_FOUND
