"""An open-state database with no room left (smbcad/openstate/db.py): the
CREATE that finds it full gets STATUS_INSUFFICIENT_RESOURCES and keeps no
file descriptor, and a CLOSE still goes through (adds stop short of the
map's end, because LMDB needs free pages even to remove a record)."""

import os
import struct

import pytest

from smbcad.openstate.db import OpenStateDb
from smbcad.openstate.table import OpenStateFull
from smbcad.proto.constants import Command
from smbcad.proto.status import NtStatus
from tests.unit.proto import wire
from tests.unit.server import harness

READ_DATA, SHARE_ALL, OPEN_IF = 0x1, 0x7, 3


def _create(client, name: str) -> bytes:
    return client.request(Command.CREATE, wire.create_request(
        name, access=READ_DATA, share=SHARE_ALL, disposition=OPEN_IF))


def test_a_full_database_refuses_the_create_and_still_closes(tmp_path):
    (tmp_path / "share").mkdir()
    db = OpenStateDb(str(tmp_path / "openstate"), create_empty=True, map_size=2 << 20)
    server = harness.make_server(str(tmp_path / "share"), str(tmp_path / "state"), open_state=db)
    client = harness.connected_client(server)
    held = _create(client, "held")
    assert harness.status_of(held) == NtStatus.SUCCESS
    with pytest.raises(OpenStateFull):          # other processes' opens fill the map
        for index in range(1_000_000):
            db.add_open((0xFEED, index), index, READ_DATA, SHARE_ALL)
    fds = len(os.listdir("/proc/self/fd"))
    opens = len(server.opens.by_persistent_id)
    refused = _create(client, "refused")
    assert harness.status_of(refused) == NtStatus.INSUFFICIENT_RESOURCES
    assert len(os.listdir("/proc/self/fd")) == fds            # its handle was closed
    assert len(server.opens.by_persistent_id) == opens        # and it was never registered
    persistent, volatile = struct.unpack_from("<QQ", held, 64 + 64)
    close = client.request(Command.CLOSE, wire.close_request(persistent, volatile))
    assert harness.status_of(close) == NtStatus.SUCCESS
    volume = server.find_share("share").fs.volume
    key = volume.key_of(os.stat(tmp_path / "share" / "held"))
    assert not db.is_open(key)
