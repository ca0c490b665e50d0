"""A durable reconnect that lands on another worker than the one holding
the open (``server.workers: 2``, smbcad/server/durable_handover.py).

The node routes a connection by its ClientGuid.  A client that reconnects
an oplock open with DHnC from another ClientGuid (allowed: [MS-SMB2]
3.3.5.9.7 checks no ClientGuid for an oplock; smbtorture's
durable-open.reopen1a does it) meets the other worker half the time.  Here
the ClientGuids are chosen so that it always does (smbprotocol).

* the reconnect gets the open back: same persistent FileId, its data, its
  batch oplock, and the open is listed on the new worker only, with its
  byte-range lock, which held for a third client throughout and goes with
  the open's close;
* a lease open does not move (its lease is its ClientGuid's): the reconnect
  from another ClientGuid fails with STATUS_OBJECT_NAME_NOT_FOUND and the
  open stays where it was, still reconnectable by its own client.
"""

import os
import threading
import time

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.open import (  # noqa: E402
    CreateDisposition, CreateOptions, ImpersonationLevel, LockFlags, Open,
    RequestedOplockLevel, ShareAccess)

from persistent_client import dhnc_context, dhnq_context, lease_context  # noqa: E402
from test_workers import (  # noqa: E402
    READ_WRITE, WAIT_S, Client, acknowledge_oplock, control, guid_for, listen_for_breaks, lock,
    server, status_of)

STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_FILE_LOCK_CONFLICT = 0xC0000054
BATCH = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH
LEVEL_II = 0x01
SHARE_READ_WRITE = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE

__all__ = ["server"]             # the fixture, used by name


def durable_open(client: Client, name: str, contexts, oplock=BATCH) -> Open:
    handle = Open(client.tree, name)
    handle.create(ImpersonationLevel.Impersonation, READ_WRITE, 0x80, SHARE_READ_WRITE,
                  CreateDisposition.FILE_OPEN_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
                  oplock_level=oplock, create_contexts=contexts)
    return handle


def opens_of(server, name: str) -> list:
    return [o for o in control(server, "opens")["opens"] if o["path"].lstrip("\\/") == name]


def lose_connection(server, client: Client, name: str) -> None:
    """Drop the client's TCP connection (no LOGOFF), and wait until its
    worker holds the open disconnected."""
    client.connection.disconnect(False)
    deadline = time.monotonic() + WAIT_S
    while [o["state"] for o in opens_of(server, name)] != ["disconnected"]:
        assert time.monotonic() < deadline, opens_of(server, name)
        time.sleep(0.05)


def test_a_durable_reconnect_from_another_client_guid_takes_the_open_to_its_worker(server):
    holder = Client(server, guid_for(0))
    third = Client(server, guid_for(0, nth=1))
    back = None
    try:
        handle = durable_open(holder, "dur-moves.bin", [dhnq_context()])
        assert handle.oplock_level == BATCH
        file_id = handle.file_id
        handle.write(b"before the connection was lost", 0)
        lock(handle, LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK, 0, 10)
        (held,) = opens_of(server, "dur-moves.bin")
        assert (held["worker"], held["locks"]) == (0, 1), held
        lose_connection(server, holder, "dur-moves.bin")

        back = Client(server, guid_for(1))
        again = durable_open(back, "dur-moves.bin", [dhnc_context(file_id)])
        assert again.file_id[:8] == file_id[:8]
        assert again.oplock_level == BATCH
        assert again.read(0, 30) == b"before the connection was lost"
        (moved,) = opens_of(server, "dur-moves.bin")
        assert (moved["worker"], moved["state"], moved["durable_file_id"], moved["locks"]) \
            == (1, "connected", held["durable_file_id"], 1), moved

        # Worker 0's client opens the file: the batch oplock, held on worker
        # 1 now, is broken to level II there and acknowledged.
        breaks = listen_for_breaks(back)
        opened: list = []
        opening = threading.Thread(target=lambda: opened.append(third.open(
            "dur-moves.bin", access=READ_WRITE)),
            daemon=True)
        opening.start()
        assert breaks.response_event.wait(WAIT_S), "no break reached the reconnected client"
        acknowledge_oplock(back, again, LEVEL_II)
        opening.join(WAIT_S)
        (other,) = opened
        # The lock is the reconnected open's, on worker 1: worker 0's client meets it.
        assert status_of(lambda: other.write(b"x", 5)) == STATUS_FILE_LOCK_CONFLICT
        other.write(b"!", 10)
        lock(again, LockFlags.SMB2_LOCKFLAG_UNLOCK, 0, 10)
        other.write(b"x", 5)
        lock(again, LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK, 20, 5)
        again.close()
        other.write(b"y", 21)                       # its close took the lock with it
        other.close()
        assert opens_of(server, "dur-moves.bin") == []
    finally:
        holder.close_after_kill()
        third.close()
        if back is not None:
            back.close()


def test_a_lease_open_stays_with_its_client_guid(server):
    owner_guid, key = guid_for(0), os.urandom(16)
    holder = Client(server, owner_guid)
    stranger = reconnected = None
    try:
        handle = durable_open(holder, "dur-lease.bin", [dhnq_context(), lease_context(key)],
                              oplock=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE)
        file_id = handle.file_id
        lose_connection(server, holder, "dur-lease.bin")

        stranger = Client(server, guid_for(1))
        assert status_of(lambda: durable_open(
            stranger, "dur-lease.bin", [dhnc_context(file_id), lease_context(key)],
            oplock=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE)) == STATUS_OBJECT_NAME_NOT_FOUND
        (kept,) = opens_of(server, "dur-lease.bin")
        assert (kept["worker"], kept["state"]) == (0, "disconnected"), kept

        reconnected = Client(server, owner_guid)
        again = durable_open(reconnected, "dur-lease.bin", [dhnc_context(file_id), lease_context(key)],
                             oplock=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE)
        assert again.file_id[:8] == file_id[:8]
        again.close()
    finally:
        holder.close_after_kill()
        for client in (stranger, reconnected):
            if client is not None:
                client.close()
