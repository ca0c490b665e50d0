"""DH2C reconnect checks of [MS-SMB2] 3.3.5.9.12 and the FileId a reconnect
returns, seen by smbprotocol on a ``ca`` share (issue 16 item 3).

* A persistent open reconnected with a DH2C that lacks
  SMB2_DHANDLE_FLAG_PERSISTENT: STATUS_OBJECT_NAME_NOT_FOUND, and the open
  is still there for the DH2C that carries the flag.
* A durable (not persistent) open reconnected with the flag:
  STATUS_INVALID_PARAMETER (<352>), open kept.
* Another CreateGuid: STATUS_OBJECT_NAME_NOT_FOUND.
* A reconnect returns the same FileId.Persistent and a new FileId.Volatile,
  as Windows does (the volatile part is per session, 3.3.5.9.12 "allocate a
  new FileId.Volatile"); the old volatile id no longer names the open.

Always smbcad: smbd grants persistent handles only in a ctdb cluster.
"""

import os
import uuid

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.create_contexts import (  # noqa: E402
    CreateContextName, DurableHandleFlags, SMB2CreateDurableHandleReconnectV2,
    SMB2CreateDurableHandleRequestV2, SMB2CreateDurableHandleResponseV2)
from smbprotocol.open import CreateDisposition  # noqa: E402

from persistent_client import create, create_context, lease_context, one  # noqa: E402
from test_persistent_handles import (  # noqa: E402,F401 - ca_server, clients are fixtures
    STATUS_OBJECT_NAME_NOT_FOUND, ca_server, clients, status_of)

STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_FILE_CLOSED = 0xC0000128
TIMEOUT_MS = 60_000


def dh2q(create_guid: uuid.UUID, persistent: bool):
    request = SMB2CreateDurableHandleRequestV2()
    request["timeout"] = TIMEOUT_MS
    request["flags"] = DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT if persistent else 0
    request["create_guid"] = create_guid
    return create_context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2, request)


def dh2c(file_id: bytes, create_guid: uuid.UUID, persistent: bool):
    request = SMB2CreateDurableHandleReconnectV2()
    request["file_id"] = file_id
    request["create_guid"] = create_guid
    request["flags"] = DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT if persistent else 0
    return create_context(CreateContextName.SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2, request)


class Owner:
    """A client that opened ``name`` with DH2Q and an RWH lease, then lost its connection."""

    def __init__(self, server, clients, name: str, persistent: bool) -> None:
        self.server, self.clients, self.name = server, clients, name
        self.client_guid, self.create_guid = uuid.uuid4(), uuid.uuid4()
        self.lease_key = os.urandom(16)
        client = clients(server, self.client_guid)
        handle, contexts = create(client.tree, name, [dh2q(self.create_guid, persistent),
                                                      lease_context(self.lease_key)],
                                  CreateDisposition.FILE_OVERWRITE_IF, lease=True)
        granted = one(contexts, SMB2CreateDurableHandleResponseV2)["flags"]
        assert granted.has_flag(DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT) == persistent
        self.file_id = handle.file_id
        client.close()                  # the TCP connection drops; the open stays

    def reconnect(self, *, persistent: bool, create_guid: uuid.UUID | None = None):
        client = self.clients(self.server, self.client_guid)
        handle, _ = create(client.tree, self.name,
                           [dh2c(self.file_id, create_guid or self.create_guid, persistent),
                            lease_context(self.lease_key)], lease=True)
        return client, handle


def test_persistent_open_needs_the_persistent_flag(ca_server, clients):
    owner = Owner(ca_server, clients, "p.bin", persistent=True)
    assert status_of(lambda: owner.reconnect(persistent=False)) == STATUS_OBJECT_NAME_NOT_FOUND
    assert status_of(lambda: owner.reconnect(persistent=True,
                                             create_guid=uuid.uuid4())) == STATUS_OBJECT_NAME_NOT_FOUND
    client, handle = owner.reconnect(persistent=True)
    handle.write(b"back", 0)
    assert (ca_server.path("p.bin")).read_bytes() == b"back"


def test_durable_open_refuses_the_persistent_flag(ca_server, clients):
    owner = Owner(ca_server, clients, "d.bin", persistent=False)
    assert status_of(lambda: owner.reconnect(persistent=True)) == STATUS_INVALID_PARAMETER
    client, handle = owner.reconnect(persistent=False)
    handle.write(b"durable", 0)
    assert (ca_server.path("d.bin")).read_bytes() == b"durable"


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "durable"])
def test_reconnect_keeps_the_persistent_id_and_gets_a_new_volatile_id(ca_server, clients,
                                                                       persistent):
    owner = Owner(ca_server, clients, "v.bin", persistent=persistent)
    client, handle = owner.reconnect(persistent=persistent)
    old, new = owner.file_id, handle.file_id
    assert new[:8] == old[:8]
    assert new[8:] != old[8:]
    # The old volatile half no longer names the open on the new session.
    stale = type(handle)(client.tree, owner.name)
    stale.file_id = old
    assert status_of(lambda: stale.write(b"x", 0)) == STATUS_FILE_CLOSED
    handle.write(b"ok", 0)


def test_persistent_open_needs_the_flag_after_a_restart(ca_server, clients):
    owner = Owner(ca_server, clients, "r.bin", persistent=True)
    ca_server.kill()
    ca_server.restart()
    assert status_of(lambda: owner.reconnect(persistent=False)) == STATUS_OBJECT_NAME_NOT_FOUND
    client, handle = owner.reconnect(persistent=True)
    assert handle.file_id[:8] == owner.file_id[:8]
    handle.write(b"restarted", 0)
