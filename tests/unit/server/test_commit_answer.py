"""A persistent CREATE or CLOSE waits for its handle-store commit without a
task (``context.Answer``, ``Connection._go_async``): the commit starts in the
handler's own turn of the loop and the response goes out from the commit's
callback (issue 14 item 6).  Against the real server, the log-engine store
and a share directory; the store's writer is held or failed on purpose."""

import asyncio
import struct
import threading

import pytest

from smbcad.proto.constants import Command, HeaderFlags
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server.context import Answer, Pending, answer_after
from smbcad.store import LocalHandleStore, LogEngine
from tests.unit.proto import wire
from tests.unit.server import harness
from tests.unit.server.ca_client import (
    FILE_OVERWRITE_IF, CaClient, durable_file_id, make_ca_server, persistent_create)

OPEN = 1


async def start(tmp_path):
    share, state = tmp_path / "share", tmp_path / "state"
    share.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    server = make_ca_server(str(share), str(state))
    await server.start_local_shares(
        await LocalHandleStore.open(LogEngine(str(state / "handles"))))
    return server


async def stop(server):
    await server.settle()
    await server.handle_store.shutdown()


async def logged_in(tmp_path, existing: str | None = None):
    """A CA server, a logged-in client, and ``existing`` made in the share."""
    server = await start(tmp_path)
    if existing is not None:
        (tmp_path / "share" / existing).write_bytes(b"x")
    return server, await CaClient(server).login()


def signed_request(client, command: int, body: bytes) -> tuple[int, bytearray]:
    """A request to hand to ``receive_frame_now`` (the transport's read callback)."""
    mid = client.message_id
    client.message_id += 1
    frame = bytearray(harness.header(command, mid, client.session_id, client.tree_id,
                                     HeaderFlags.SIGNED) + body)
    client.signer.sign(frame)
    return mid, frame


def cancel_of(client, mid: int) -> bytearray:
    return bytearray(harness.header(Command.CANCEL, mid, client.session_id, client.tree_id, 0)
                     + struct.pack("<HH", 4, 0))


def held_writes(store: LocalHandleStore) -> threading.Event:
    """Hold the store's writer thread in its next write until the event is set."""
    release = threading.Event()
    write = store._engine.write

    def held(batch):
        release.wait(10)
        return write(batch)
    store._engine.write = held
    return release


def frames_for(client, mid: int) -> list[bytes]:
    return [frame for frame in client.sink.frames if struct.unpack_from("<Q", frame, 24)[0] == mid]


def test_a_persistent_create_and_close_run_no_task(tmp_path):
    async def main():
        server, client = await logged_in(tmp_path, "vm.vhdx")
        tasks_before = asyncio.all_tasks()
        mid, create = signed_request(client, Command.CREATE, persistent_create("vm.vhdx", OPEN))
        assert client.conn.receive_frame_now(create) is None   # async in the read callback
        assert len(client.conn.pending) == 1
        assert asyncio.all_tasks() == tasks_before              # ... and no task for it
        reply = await client.answer(mid)
        assert harness.status_of(reply) == NtStatus.SUCCESS
        assert len(frames_for(client, mid)) == 1                # no interim: the commit was quick
        (stored,) = await server.handle_store.traverse()
        assert stored.durable_file_id == durable_file_id(reply) and stored.is_persistent
        assert client.conn.pending == {} and server.sessions[client.session_id].async_requests == 0

        file_id = reply[64 + 64:64 + 80]
        persistent, volatile = struct.unpack("<QQ", file_id)
        mid = await client.send(Command.CLOSE, wire.close_request(persistent, volatile))
        assert asyncio.all_tasks() == tasks_before
        assert harness.status_of(await client.answer(mid)) == NtStatus.SUCCESS
        assert await server.handle_store.traverse() == ()
        assert server.handle_store.stats().commits == 2
        await stop(server)
    asyncio.run(main())


def test_a_write_through_write_waits_for_its_sync_without_a_task(tmp_path):
    async def main():
        server, client = await logged_in(tmp_path)
        reply = await client.create("vm.vhdx", FILE_OVERWRITE_IF)
        persistent, volatile = struct.unpack_from("<QQ", reply, 64 + 64)
        tasks_before = asyncio.all_tasks()
        syncs = []
        sync_data = server.shares["ca"].fs.sync_data

        def counted(handle):
            syncs.append(handle)
            sync_data(handle)
        server.shares["ca"].fs.sync_data = counted
        mid, write = signed_request(client, Command.WRITE,
                                    wire.write_request(persistent, volatile, 0, b"y" * 4096))
        assert client.conn.receive_frame_now(write) is None    # async: a CA share's write-through
        assert asyncio.all_tasks() == tasks_before
        reply = await client.answer(mid)
        assert harness.status_of(reply) == NtStatus.SUCCESS
        assert len(syncs) == 1                  # stable before the answer
        assert (tmp_path / "share" / "vm.vhdx").read_bytes() == b"y" * 4096
        await stop(server)
    asyncio.run(main())


def test_a_create_whose_commit_fails_is_refused_and_its_open_closed(tmp_path):
    async def main():
        server, client = await logged_in(tmp_path)

        def broken(batch):
            raise OSError(5, "Input/output error")
        server.handle_store._engine.write = broken
        reply = await client.create("vm.vhdx", FILE_OVERWRITE_IF)
        assert harness.status_of(reply) == NtStatus.INSUFFICIENT_RESOURCES
        assert server.sessions[client.session_id].opens == {}
        assert not server.opens.by_file                 # nothing holds the file
        assert client.conn.pending == {} and server.sessions[client.session_id].async_requests == 0
        await server.settle()
    asyncio.run(main())


def test_a_cancel_leaves_a_committing_create_to_finish(tmp_path):
    """CANCEL cannot stop a commit ([MS-SMB2] 3.3.5.16: only what can be
    cancelled is): the open is made, stored and answered, so the client
    does not lose an open the server keeps."""
    async def main():
        server, client = await logged_in(tmp_path, "vm.vhdx")
        release = held_writes(server.handle_store)
        mid = await client.send(Command.CREATE, persistent_create("vm.vhdx", OPEN))
        assert len(client.conn.pending) == 1
        await client.conn.receive_frame(cancel_of(client, mid))
        release.set()
        reply = await client.answer(mid)
        assert harness.status_of(reply) == NtStatus.SUCCESS
        (stored,) = await server.handle_store.traverse()
        assert stored.durable_file_id == durable_file_id(reply)
        assert len(server.sessions[client.session_id].opens) == 1
        await stop(server)
    asyncio.run(main())


def test_a_cancel_before_a_waiting_create_started_is_answered(tmp_path):
    """A creating persistent CREATE waits for its intent's commit in a task.
    A CANCEL handled before that task's first step (the two frames in one
    read) cancelled the task before run() ran: no response ever came, and
    the client waited for it forever.  Now it gets STATUS_CANCELLED."""
    async def main():
        server, client = await logged_in(tmp_path)
        release = held_writes(server.handle_store)
        mid, create = signed_request(client, Command.CREATE,
                                     persistent_create("vm.vhdx", FILE_OVERWRITE_IF))
        assert client.conn.receive_frame_now(create) is None
        assert client.conn.receive_frame_now(cancel_of(client, mid)) is None
        release.set()
        reply = await client.answer(mid)
        assert harness.status_of(reply) == NtStatus.CANCELLED
        assert client.conn.pending == {}
        assert server.sessions[client.session_id].async_requests == 0
        assert not (tmp_path / "share" / "vm.vhdx").exists()    # nothing was done
        await stop(server)
    asyncio.run(main())


def test_a_cancel_during_an_intent_commit_leaves_no_intent_behind(tmp_path):
    """A creating persistent CREATE cancelled while its intent commits: the
    commit completes, the CREATE does not, and the intent is removed (a
    leftover would be restored after a restart and hold the name)."""
    async def main():
        server, client = await logged_in(tmp_path)
        release = held_writes(server.handle_store)
        mid = await client.send(Command.CREATE, persistent_create("vm.vhdx", FILE_OVERWRITE_IF))
        await asyncio.sleep(0.05)              # the task waits on the intent's commit now
        await client.conn.receive_frame(cancel_of(client, mid))
        release.set()
        reply = await client.answer(mid)
        assert harness.status_of(reply) == NtStatus.CANCELLED
        await server.settle()
        await server.handle_store.commit_barrier()
        assert await server.handle_store.traverse() == ()
        assert not (tmp_path / "share" / "vm.vhdx").exists()
        await stop(server)
    asyncio.run(main())


def test_a_slow_commit_gets_an_interim_response_then_the_answer(tmp_path, monkeypatch):
    monkeypatch.setattr("smbcad.server.context.COMMIT_INTERIM_S", 0.05)

    async def main():
        server, client = await logged_in(tmp_path)
        release = held_writes(server.handle_store)
        mid = await client.send(Command.CREATE, persistent_create("vm.vhdx", FILE_OVERWRITE_IF))
        for _ in range(200):
            if frames_for(client, mid):
                break
            await asyncio.sleep(0.005)
        (interim,) = frames_for(client, mid)
        assert harness.status_of(interim) == NtStatus.PENDING
        release.set()
        final = await client.answer(mid)
        assert harness.status_of(final) == NtStatus.SUCCESS
        async_id = struct.unpack_from("<Q", interim, 32)[0]
        assert async_id and struct.unpack_from("<Q", final, 32)[0] == async_id
        await stop(server)
    asyncio.run(main())


def test_a_lost_connection_leaves_the_committed_open_disconnected(tmp_path):
    async def main():
        server, client = await logged_in(tmp_path, "vm.vhdx")
        release = held_writes(server.handle_store)
        mid = await client.send(Command.CREATE, persistent_create("vm.vhdx", OPEN))
        client.conn.connection_lost()
        release.set()
        await server.settle()
        await server.handle_store.commit_barrier()
        await asyncio.sleep(0.01)
        assert frames_for(client, mid) == []            # nobody to answer
        (stored,) = await server.handle_store.traverse()
        assert stored.is_persistent                     # its client reconnects to it
        (open_,) = server.opens.by_persistent_id.values()
        assert open_.session is None and not open_.closed
        await stop(server)
    asyncio.run(main())


# --- Answer on its own ----------------------------------------------------------------

def test_an_answer_awaited_gives_its_body_or_the_mapped_failure():
    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        done.set_result(None)
        assert await Answer(done, b"body") == b"body"
        failed = loop.create_future()
        failed.set_exception(OSError(5, "EIO"))
        with pytest.raises(SmbError) as refused:
            await Answer(failed, b"body", lambda exc: SmbError(NtStatus.INSUFFICIENT_RESOURCES))
        assert refused.value.status == NtStatus.INSUFFICIENT_RESOURCES
        with pytest.raises(OSError):
            Answer(failed, b"body").outcome()
        assert Answer(done, b"x").outcome() == b"x"
        cancelled = loop.create_future()
        cancelled.cancel()
        with pytest.raises(SmbError) as refused:
            Answer(cancelled, b"x").outcome()       # answered, not left hanging
        assert refused.value.status == NtStatus.CANCELLED
    asyncio.run(main())


def test_answer_after_a_coroutine_keeps_the_awaitable_form():
    async def main():
        async def commit():
            raise OSError(5, "EIO")
        pending = answer_after(commit(), b"body",
                               lambda exc: SmbError(NtStatus.INSUFFICIENT_RESOURCES))
        assert isinstance(pending, Pending) and not isinstance(pending.work, Answer)
        with pytest.raises(SmbError):
            await pending.work
        future = asyncio.get_running_loop().create_future()
        assert isinstance(answer_after(future, b"").work, Answer)
        future.cancel()
    asyncio.run(main())
