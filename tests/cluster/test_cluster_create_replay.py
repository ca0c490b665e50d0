"""A CREATE that ran on the owner which then died before answering is
replayed by the client on the partner and gets the answer it would have got
(issue 10 item 5, last point; cluster tier).

Node A runs smbcad through ``crash_smbcad.py``: for a file named ``crash*``
it dies (SIGKILL) after the CREATE's intent was committed on both nodes and
the file was made, at the start of the commit of the open's own record.  B
adopts the aggregate from its replica, which holds the intent only.  The
client reconnects through the LIF (same ClientGuid, PreviousSessionId) and
sends the same CREATE again with SMB2_FLAGS_REPLAY_OPERATION and the same
CreateGuid ([MS-SMB2] 3.3.5.9.10): FILE_CREATED, not
OBJECT_NAME_COLLISION, on the very file A made (same inode), persistent;
a second client is kept out with STATUS_FILE_NOT_AVAILABLE meanwhile.
"""

import os
import signal
import uuid
from pathlib import Path

import pytest

from smbprotocol.create_contexts import (
    DurableHandleFlags, SMB2CreateDurableHandleResponseV2)
from smbprotocol.open import CreateAction, CreateDisposition

from persistent_client import create, dh2q_context, one, replay_flag
from test_cluster_failover import (
    STATUS_FILE_NOT_AVAILABLE, Client, status_of, wait_in_sync)

CRASH_SMBCAD = Path(__file__).with_name("crash_smbcad.py")
NAME = "crash-vm.vhdx"



def test_a_create_that_ran_on_the_dead_owner_is_replayed_on_the_partner(pair):
    pair.a.stop()
    pair.a.program = [str(CRASH_SMBCAD)]
    pair.a.start()
    assert pair.adopt("A")["ok"]
    wait_in_sync(pair.a)
    client_guid, create_guid = uuid.uuid4(), uuid.uuid4()
    client = pair.client.call(Client, client_guid)
    with pytest.raises(Exception):                   # A dies before it answers
        pair.client.call(create, client.tree, NAME, [dh2q_context(create_guid, 60_000)],
                         CreateDisposition.FILE_CREATE, wait_s=10)
    assert pair.a.proc.wait(10) == -signal.SIGKILL, pair.a.log_tail()
    made = pair.share_dir("A") / NAME
    inode = os.stat(made).st_ino                    # the CREATE did run on A

    pair.lost("A")
    adopted = pair.adopt("B")
    assert adopted["ok"] and adopted["source"] == "replica" and adopted["intents"] == 1, \
        (adopted, pair.b.log_tail())

    other = pair.client.call(Client, uuid.uuid4())
    try:
        assert status_of(lambda: pair.client.call(create, other.tree, NAME)) \
            == STATUS_FILE_NOT_AVAILABLE              # held for the replay
    finally:
        pair.client.call(other.close)

    previous = client.session.session_id
    pair.client.call(client.close)
    owner = pair.client.call(Client, client_guid, previous)
    try:
        with replay_flag():
            handle, contexts = pair.client.call(
                create, owner.tree, NAME, [dh2q_context(create_guid, 60_000)],
                CreateDisposition.FILE_CREATE)
        assert handle.create_action == CreateAction.FILE_CREATED
        assert one(contexts, SMB2CreateDurableHandleResponseV2)["flags"].has_flag(
            DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT)
        pair.client.call(handle.write, b"after the replay", 0)
        pair.client.call(handle.close)
    finally:
        pair.client.call(owner.close)
    on_b = pair.share_dir("B") / NAME
    assert os.stat(on_b).st_ino == inode and on_b.read_bytes() == b"after the replay"
