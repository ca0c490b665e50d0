"""A lone request whose handler waits (a CHANGE_NOTIFY here; a persistent
CREATE's commit takes the same path) goes async in the read callback
(``Connection._goes_async_now``): ``receive_frame_now`` leaves nothing for
the frame loop, and the interim response and the final one come from the
async request's own task, as [MS-SMB2] 3.3.4.2 wants."""

import asyncio
import struct

from smbcad.proto.constants import Command
from smbcad.proto.status import NtStatus
from tests.unit.proto import wire
from tests.unit.server import harness

DIRECTORY_FILE = 0x1
LIST_DIRECTORY = 0x1
SHARE_ALL = 0x7
OPEN = 1
FILE_NOTIFY_CHANGE_FILE_NAME = 0x1


def test_a_waiting_request_goes_async_without_the_frame_loop(tmp_path):
    (tmp_path / "share").mkdir()
    server = harness.make_server(str(tmp_path / "share"), str(tmp_path / "state"))
    client = harness.connected_client(server)
    reply = client.request(Command.CREATE, wire.create_request(
        "", access=LIST_DIRECTORY, share=SHARE_ALL, disposition=OPEN, options=DIRECTORY_FILE))
    assert harness.status_of(reply) == NtStatus.SUCCESS
    file_id = reply[64 + 64:64 + 80]

    async def notify_then_change() -> list[bytes]:
        before = len(client.sink.frames)
        notify = client.message(Command.CHANGE_NOTIFY, struct.pack(
            "<HHI16sII", 32, 0, 4096, file_id, FILE_NOTIFY_CHANGE_FILE_NAME, 0))
        assert client.conn.receive_frame_now(notify) is None     # nothing left to await
        assert len(client.conn.pending) == 1
        for _ in range(100):        # the async request's task answers once a name appears
            await asyncio.sleep(0.01)
            if not client.conn.pending:
                break
            (tmp_path / "share" / "new.txt").touch()
        return client.sink.frames[before:]

    interim, final = asyncio.run(notify_then_change())
    assert harness.status_of(interim) == NtStatus.PENDING
    assert harness.status_of(final) == NtStatus.SUCCESS
    async_id = struct.unpack_from("<Q", interim, 32)[0]
    assert async_id and struct.unpack_from("<Q", final, 32)[0] == async_id
