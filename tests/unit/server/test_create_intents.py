"""Create intents (smbcad/server/intents.py): a persistent CREATE that creates
or overwrites, interrupted after it touched the file and before its open's
record was stored, is answered as it would have been when its client
replays it after a restart (or, the same path, a takeover).

The decision is tested as a table; the rest against the real server, the
real log-engine store and a real share directory.  The crash is a real
SIGKILL of a child process, reached deterministically inside the engine's
write of the open's record (tests/unit/server/intent_crash_child.py)."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from smbcad.proto.constants import Command, CreateAction, CreateDisposition as Disp, CreateOptions
from smbcad.proto.fileinfo import FileInfo
from smbcad.proto.status import NtStatus
from smbcad.server import intents
from smbcad.server.intents import Outcome
from smbcad.store import CreateIntent, LocalHandleStore, LogEngine, PersistentOpen
from smbcad.vfs import ShareFs
from smbcad.vfs.model import Resolved
from tests.unit.server import harness
from tests.unit.server.ca_client import (
    CLIENT_GUID, CREATE_GUID, FILE_CREATE, FILE_OVERWRITE_IF, CaClient, create_action,
    durable_file_id, make_ca_server, persistent_create)

CHILD = Path(__file__).with_name("intent_crash_child.py")
ROOT = Path(__file__).resolve().parents[3]


# --- the decision, as a table -------------------------------------------------------

def info(inode: int = 5, size: int = 0, change: int = 100, directory: bool = False):
    return FileInfo(creation_time=1, last_access_time=1, last_write_time=1,
                    change_time=change, allocation_size=0, end_of_file=size,
                    attributes=0x10 if directory else 0x20, file_id=inode, device_id=9, number_of_links=1,
                    is_directory=directory)


def intent_record(inode: int = 0, disposition: int = Disp.CREATE, size: int = 0,
                  change: int = 0, options: int = 0) -> PersistentOpen:
    return PersistentOpen(1, CREATE_GUID, CLIENT_GUID, "alice", "WORKGROUP", "ca", "f",
                          file_dev=9 if inode else 0, file_ino=inode, create_options=options,
                          create_intent=CreateIntent(disposition, change, size))


def same_volume(a: int, b: int) -> bool:
    return a == b


ABSENT = Resolved("f", False)


@pytest.mark.parametrize("record, resolved, expected", [
    # a create: the name still free, or the file it made
    (intent_record(), ABSENT, Outcome.RUN),
    (intent_record(), Resolved("f", True, info()), Outcome.CREATED),
    (intent_record(), Resolved("f", True, info(directory=True)), Outcome.STALE),
    (intent_record(options=CreateOptions.DIRECTORY_FILE),
     Resolved("f", True, info(directory=True)), Outcome.CREATED),
    # an overwrite: its file untouched, truncated already, replaced or gone
    (intent_record(5, Disp.OVERWRITE_IF, 4096, 100), Resolved("f", True, info(5, 4096, 100)),
     Outcome.RUN),
    (intent_record(5, Disp.OVERWRITE_IF, 4096, 100), Resolved("f", True, info(5, 0, 101)),
     Outcome.OVERWRITTEN),
    (intent_record(5, Disp.OVERWRITE_IF, 0, 100), Resolved("f", True, info(5, 0, 101)),
     Outcome.OVERWRITTEN),
    (intent_record(5, Disp.OVERWRITE_IF, 4096, 100), Resolved("f", True, info(6, 4096, 100)),
     Outcome.STALE),
    (intent_record(5, Disp.SUPERSEDE, 4096, 100), ABSENT, Outcome.STALE),
])
def test_outcome(record, resolved, expected):
    assert intents.outcome(record, resolved, same_volume) is expected


def test_a_file_on_another_volume_is_another_file():
    record = intent_record(5, Disp.OVERWRITE, 4096, 100)
    assert intents.outcome(record, Resolved("f", True, info(5, 0, 101)),
                           lambda a, b: False) is Outcome.STALE


@pytest.mark.parametrize("found, disposition, action", [
    (Outcome.CREATED, Disp.OPEN_IF, CreateAction.CREATED),
    (Outcome.OVERWRITTEN, Disp.OVERWRITE_IF, CreateAction.OVERWRITTEN),
    (Outcome.OVERWRITTEN, Disp.SUPERSEDE, CreateAction.SUPERSEDED),
    (Outcome.RUN, Disp.CREATE, None), (Outcome.STALE, Disp.CREATE, None),
])
def test_the_answer_of_a_create_that_ran(found, disposition, action):
    assert intents.answer_of(found, disposition) == action


class Request:
    def __init__(self, disposition):
        self.create_disposition = disposition


@pytest.mark.parametrize("disposition, exists, wanted", [
    (Disp.CREATE, False, True), (Disp.OPEN_IF, False, True), (Disp.OVERWRITE_IF, False, True),
    (Disp.SUPERSEDE, False, True), (Disp.OPEN, False, False), (Disp.OVERWRITE, False, False),
    (Disp.OPEN, True, False), (Disp.OPEN_IF, True, False), (Disp.CREATE, True, False),
    (Disp.OVERWRITE, True, True), (Disp.OVERWRITE_IF, True, True), (Disp.SUPERSEDE, True, True),
])
def test_which_creates_need_an_intent(disposition, exists, wanted):
    resolved = Resolved("f", True, info(5, 77, 100)) if exists else ABSENT
    described = intents.describe(Request(disposition), resolved)
    assert (described is not None) == wanted
    if described is not None and exists:
        assert described == (CreateIntent(disposition, 100, 77), 9, 5)


# --- against the real server and store ------------------------------------------------

def dirs(tmp_path):
    share, state = tmp_path / "share", tmp_path / "state"
    share.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    return share, state


async def start(share, state):
    """A server starting on the share and store as a crash left them."""
    server = make_ca_server(str(share), str(state))
    server.adopt_result = await server.start_local_shares(
        await LocalHandleStore.open(LogEngine(str(state / "handles"))))
    return server


async def stop(server):
    await server.settle()
    await server.handle_store.shutdown()


def status(reply: bytes) -> int:
    return harness.status_of(reply)


def test_a_persistent_create_commits_its_intent_then_the_open_replaces_it(tmp_path):
    share, state = dirs(tmp_path)
    (share / "old").write_bytes(b"x")

    async def main():
        server = await start(share, state)
        client = await CaClient(server).login()
        reply = await client.create("new", FILE_CREATE)
        assert status(reply) == 0 and create_action(reply) == CreateAction.CREATED
        (stored,) = await server.handle_store.traverse()
        assert stored.is_persistent and stored.create_intent is None
        assert stored.durable_file_id == durable_file_id(reply)
        assert server.handle_store.stats().commits == 2       # the intent, then the open
        # a plain open of an existing file needs no intent: one commit
        reply = await client.create("old", 1, create_guid=bytes(16 * [3]))
        assert status(reply) == 0 and create_action(reply) == CreateAction.OPENED
        assert server.handle_store.stats().commits == 3
        await stop(server)
    asyncio.run(main())


def crash_in_create(share, state, name: str, disposition: int, *login: str) -> int:
    """Run the CREATE in a child that is SIGKILLed after its intent and its
    file operation, before its open's record; returns the intent's id.
    ``login``: the user and password it creates as (default harness.USER)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    proc = subprocess.run([sys.executable, str(CHILD), str(share), str(state), name,
                           str(disposition), *login], capture_output=True, text=True, env=env,
                          timeout=60, cwd=str(ROOT))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "ANSWERED" not in proc.stdout
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("INTENT")]
    return int(line.split()[1])


def test_a_create_killed_before_its_open_record_is_answered_created_on_replay(tmp_path):
    share, state = dirs(tmp_path)
    intent_id = crash_in_create(share, state, "vm.vhdx", FILE_CREATE)
    inode = os.stat(share / "vm.vhdx").st_ino          # the child made it, then died

    async def main():
        server = await start(share, state)
        assert server.adopt_result.intents == 1 and server.adopt_result.restored == 0
        # the name is the replay's: anybody else waits, as for a persistent open
        other = await CaClient(server, client_guid=bytes(16 * [1])).login()
        reply = await other.create("vm.vhdx", 1, create_guid=bytes(16 * [2]))
        assert status(reply) == NtStatus.FILE_NOT_AVAILABLE
        client = await CaClient(server).login()
        reply = await client.create("vm.vhdx", FILE_CREATE, replay=True)
        assert status(reply) == 0, hex(status(reply))
        assert create_action(reply) == CreateAction.CREATED
        assert durable_file_id(reply) == intent_id
        (stored,) = await server.handle_store.traverse()
        assert stored.durable_file_id == intent_id and stored.is_persistent
        assert stored.create_intent is None
        assert server.opens.intents == {}
        await stop(server)
    asyncio.run(main())
    assert os.stat(share / "vm.vhdx").st_ino == inode and os.listdir(share) == ["vm.vhdx"]


def test_an_overwrite_killed_before_its_open_record_does_not_truncate_again(tmp_path):
    share, state = dirs(tmp_path)
    (share / "db.mdf").write_bytes(b"old contents")
    intent_id = crash_in_create(share, state, "db.mdf", FILE_OVERWRITE_IF)
    assert os.path.getsize(share / "db.mdf") == 0      # the child truncated it
    (share / "db.mdf").write_bytes(b"written since")    # and data came after

    async def main():
        server = await start(share, state)
        client = await CaClient(server).login()
        reply = await client.create("db.mdf", FILE_OVERWRITE_IF, replay=True)
        assert status(reply) == 0 and create_action(reply) == CreateAction.OVERWRITTEN
        assert durable_file_id(reply) == intent_id
        await stop(server)
    asyncio.run(main())
    assert (share / "db.mdf").read_bytes() == b"written since"


async def seed(state, *records):
    store = await LocalHandleStore.open(LogEngine(str(state / "handles")))
    for record in records:
        await store.create(record)
    await store.shutdown()


def seeded_intent(share, name="vm.vhdx", disposition=Disp.CREATE, **overrides):
    fields = dict(durable_file_id=0x77, create_guid=CREATE_GUID, client_guid=CLIENT_GUID,
                  owner_user=harness.USER, owner_domain="", share_name="ca",
                  path=name, desired_access=0x0012019F, share_access=1,
                  create_options=0x40, durable_timeout_ms=60_000, disconnected_at_ms=1,
                  create_intent=CreateIntent(disposition))
    if (share / name).exists():
        with ShareFs(str(share)) as fs:
            found = fs.stat_path((name,))
        fields.update(file_dev=found.device_id, file_ino=found.file_id,
                      create_intent=CreateIntent(disposition, found.change_time,
                                                 found.end_of_file))
    fields.update(overrides)
    return PersistentOpen(**fields)


def test_an_intent_whose_create_never_ran_runs_it_on_replay(tmp_path):
    share, state = dirs(tmp_path)

    async def main():
        await seed(state, seeded_intent(share))
        server = await start(share, state)
        client = await CaClient(server).login()
        reply = await client.create("vm.vhdx", FILE_CREATE, replay=True)
        assert status(reply) == 0 and create_action(reply) == CreateAction.CREATED
        assert durable_file_id(reply) == 0x77
        assert server.handle_store.stats().commits == 1      # the open replaced the intent
        await stop(server)
    asyncio.run(main())
    assert (share / "vm.vhdx").exists()


def test_a_directory_the_create_made_is_answered_created_on_replay(tmp_path):
    """mkdir done, record not: the replay gets the directory, CREATED."""
    share, state = dirs(tmp_path)
    (share / "logs").mkdir()

    async def main():
        await seed(state, seeded_intent(share, "logs", create_options=0x01, file_dev=0,
                                        file_ino=0, create_intent=CreateIntent(Disp.CREATE)))
        server = await start(share, state)
        client = await CaClient(server).login()
        reply = await client.create("logs", FILE_CREATE, replay=True, options=0x01)
        assert status(reply) == 0, hex(status(reply))
        assert create_action(reply) == CreateAction.CREATED
        await stop(server)
    asyncio.run(main())


def test_an_untouched_file_is_overwritten_on_replay(tmp_path):
    share, state = dirs(tmp_path)
    (share / "db.mdf").write_bytes(b"old contents")

    async def main():
        await seed(state, seeded_intent(share, "db.mdf", Disp.OVERWRITE_IF))
        server = await start(share, state)
        client = await CaClient(server).login()
        reply = await client.create("db.mdf", FILE_OVERWRITE_IF, replay=True)
        assert status(reply) == 0 and create_action(reply) == CreateAction.OVERWRITTEN
        await stop(server)
    asyncio.run(main())
    assert (share / "db.mdf").read_bytes() == b""


@pytest.mark.parametrize("change, replay, expected", [
    ({"owner_user": "bob"}, True, NtStatus.ACCESS_DENIED),                  # another user's
    ({"desired_access": 0x00120089}, True, NtStatus.CONTEXT_MISMATCH),      # another request
    ({"path": "other.vhdx"}, True, NtStatus.CONTEXT_MISMATCH),
    ({"client_guid": bytes(16 * [9])}, True, NtStatus.FILE_NOT_AVAILABLE),  # another client's
    ({}, False, NtStatus.FILE_NOT_AVAILABLE),       # no replay flag: the name stays reserved
])
def test_a_replay_must_be_the_same_client_user_and_request(tmp_path, change, replay, expected):
    share, state = dirs(tmp_path)
    (share / "vm.vhdx").write_bytes(b"")

    async def main():
        await seed(state, seeded_intent(share, **{"path": "vm.vhdx", **change}))
        server = await start(share, state)
        client = await CaClient(server).login()
        reply = await client.create("vm.vhdx", FILE_CREATE, replay=replay)
        assert status(reply) == expected, hex(status(reply))
        assert len(server.opens.intents) == 1 and await server.handle_store.traverse()
        await stop(server)
    asyncio.run(main())


def test_an_intent_nobody_replays_expires_with_the_durable_timeout(tmp_path):
    share, state = dirs(tmp_path)
    (share / "vm.vhdx").write_bytes(b"")

    async def main():
        await seed(state, seeded_intent(share, durable_timeout_ms=50))
        server = await start(share, state)
        assert server.opens.intents
        await asyncio.sleep(0.2)
        await server.settle()
        assert server.opens.intents == {} and await server.handle_store.traverse() == ()
        client = await CaClient(server, client_guid=bytes(16 * [1])).login()
        reply = await client.create("vm.vhdx", 1, create_guid=bytes(16 * [2]))
        assert status(reply) == 0                          # the name is free again
        await stop(server)
    asyncio.run(main())


def test_two_creates_of_one_name_leave_one_open_and_no_intent(tmp_path):
    """Both commit an intent; the loser's CREATE fails with a collision and
    its intent goes, so a crash now cannot answer it CREATED on replay."""
    share, state = dirs(tmp_path)

    async def main():
        server = await start(share, state)
        first = await CaClient(server).login()
        second = await CaClient(server, client_guid=bytes(16 * [1])).login()
        mids = [await first.send(Command.CREATE,
                                 persistent_create("vm.vhdx", FILE_CREATE, CREATE_GUID)),
                await second.send(Command.CREATE,
                                  persistent_create("vm.vhdx", FILE_CREATE, bytes(16 * [2])))]
        replies = [await first.answer(mids[0]), await second.answer(mids[1])]
        assert sorted(status(reply) for reply in replies) == sorted(
            [0, NtStatus.OBJECT_NAME_COLLISION])
        await server.settle()
        (stored,) = await server.handle_store.traverse()
        assert stored.is_persistent and stored.create_intent is None
        await stop(server)
    asyncio.run(main())


def test_a_share_leaving_the_node_takes_its_intents_with_their_records(tmp_path):
    """release: the intent's record stays for the partner that adopts next."""
    share, state = dirs(tmp_path)

    async def main():
        await seed(state, seeded_intent(share))
        server = await start(share, state)
        assert server.opens.intents
        assert server.opens.release(server.find_share("ca")) == []
        assert server.opens.intents == {}
        (kept,) = await server.handle_store.traverse()
        assert kept.create_intent == CreateIntent(Disp.CREATE)
        await stop(server)
    asyncio.run(main())
