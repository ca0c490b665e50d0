"""The AppInstanceId takeover ([MS-SMB2] 3.3.5.9.13) when the stale open
is another worker's (``server.workers: 2``, smbcad/server/app_instance.py).

A VM moves from one Hyper-V host to another: the new host opens the VHDX
with the VM's AppInstanceId, and the old host's open must close at once,
with no break to the old host (its lease cannot be kept by an open that is
going away).  The hosts have their own ClientGuids, so here they land on
different workers (smbprotocol, ClientGuids chosen by the routing hash).

* a newer AppInstanceVersion takes over: the new CREATE succeeds although
  the stale open shares nothing, no break reaches the old host, its handle
  is closed (STATUS_FILE_CLOSED) and only the new open is listed;
* a version that is not newer is refused with STATUS_FILE_FORCED_CLOSED,
  and the old host's open goes on working.
"""

import os
import uuid

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.create_contexts import (  # noqa: E402
    CreateContextName, SMB2CreateAppInstanceId, SMB2CreateAppInstanceVersion)
from smbprotocol.open import RequestedOplockLevel  # noqa: E402

from persistent_client import create_context, dh2q_context, lease_context  # noqa: E402
from test_workers import (  # noqa: E402
    Client, ca_server, control, guid_for, listen_for_breaks, persistent_open, status_of)

STATUS_FILE_CLOSED = 0xC0000128
STATUS_FILE_FORCED_CLOSED = 0xC00000B6
APP_INSTANCE = uuid.UUID("6aa6bc45-a7ef-4af7-9008-fa462e144d74").bytes_le

__all__ = ["ca_server"]          # the fixture, used by name


def app_instance(version_high: int) -> list:
    """AppInstanceId APP_INSTANCE with AppInstanceVersion (version_high, 0)."""
    app_id = SMB2CreateAppInstanceId()
    app_id["app_instance_id"] = APP_INSTANCE
    version = SMB2CreateAppInstanceVersion()
    version["app_instance_version_high"] = version_high
    version["app_instance_version_low"] = 0
    return [create_context(CreateContextName.SMB2_CREATE_APP_INSTANCE_ID, app_id),
            create_context(CreateContextName.SMB2_CREATE_APP_INSTANCE_VERSION, version)]


def open_as_host(host: Client, name: str, version_high: int):
    """The host's persistent open of ``name`` with an RWH lease, sharing nothing."""
    return persistent_open(host, name, [dh2q_context(uuid.uuid4(), 60_000),
                                        lease_context(os.urandom(16)), *app_instance(version_high)],
                           oplock=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE)


def test_a_newer_app_instance_on_another_worker_closes_the_stale_open(ca_server):
    old_host, new_host = Client(ca_server, guid_for(0)), Client(ca_server, guid_for(1))
    try:
        stale = open_as_host(old_host, "vm-a.vhdx", 1)
        stale.write(b"written by the old host", 0)
        breaks = listen_for_breaks(old_host)
        taken = open_as_host(new_host, "vm-a.vhdx", 2)
        assert taken.read(0, 23) == b"written by the old host"
        assert breaks.response is None, "the old host's lease was broken, not closed"
        assert status_of(lambda: stale.read(0, 1)) == STATUS_FILE_CLOSED
        opens = [o for o in control(ca_server, "opens")["opens"]
                 if o["path"].lstrip("\\/") == "vm-a.vhdx"]
        assert [o["worker"] for o in opens] == [1], opens
    finally:
        old_host.close()
        new_host.close()


def test_an_app_instance_that_is_not_newer_is_refused_across_workers(ca_server):
    old_host, new_host = Client(ca_server, guid_for(0)), Client(ca_server, guid_for(1))
    try:
        kept = open_as_host(old_host, "vm-b.vhdx", 5)
        assert status_of(lambda: open_as_host(new_host, "vm-b.vhdx", 5)) \
            == STATUS_FILE_FORCED_CLOSED
        kept.write(b"still the old host's", 0)
        assert kept.read(0, 20) == b"still the old host's"
    finally:
        old_host.close()
        new_host.close()
