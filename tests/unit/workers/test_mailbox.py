"""The worker mailbox (smbcad/workers/mailbox.py): real Unix datagram
sockets in a tmp_path directory, a real asyncio loop, and one test with a
second process."""

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import stat
import time

import pytest

from smbcad.proto.status import NtStatus
from smbcad.workers.mailbox import Mailbox, MailboxError, socket_path
from smbcad.workers.messages import (
    AdminQuery, AdminReply, BreakDone, BreakRequest, LocksChanged, LogoffSession,
    LogoffSessionReply, MessageType, ReleaseDurable, ReleaseDurableReply)

KEY = (0xABCD, 42)
EVERY_TYPE = [
    BreakRequest(KEY + ("ads",), 7, 1, True, bytes(range(16))),
    BreakRequest(KEY, 8, 0, False),
    BreakDone(KEY),
    LocksChanged(KEY + ("s",)),
    ReleaseDurable(7, 1),
    ReleaseDurableReply(1, 7, NtStatus.OBJECT_NAME_NOT_FOUND),
    LogoffSession(0x4000000000000001, 2),
    LogoffSessionReply(2, NtStatus.SUCCESS),
    AdminQuery(3, "opens"),
    AdminReply(3, {"opens": [{"id": 7, "path": "a\\b"}]}),
]


async def receive(mailbox: Mailbox, count: int) -> tuple[list, asyncio.Future]:
    """Attach ``mailbox`` and collect ``count`` (header, message) pairs."""
    loop = asyncio.get_running_loop()
    received, enough = [], loop.create_future()

    def on_message(header, message):
        received.append((header, message))
        if len(received) == count and not enough.done():
            enough.set_result(None)

    mailbox.attach(loop, on_message)
    return received, enough


def test_two_mailboxes_exchange_every_message_type(tmp_path):
    async def main():
        with Mailbox(str(tmp_path), 0, 11) as sender, Mailbox(str(tmp_path), 1, 12) as peer:
            received, enough = await receive(peer, len(EVERY_TYPE))
            sequences = [sender.send(1, message) for message in EVERY_TYPE]
            await asyncio.wait_for(enough, 10)
            assert [message for _, message in received] == EVERY_TYPE
            assert [h.sequence for h, _ in received] == sequences == list(range(len(EVERY_TYPE)))
            assert {(h.sender, h.generation) for h, _ in received} == {(0, 11)}
            # and back the other way
            back, arrived = await receive(sender, 1)
            peer.send(0, BreakDone(KEY))
            await asyncio.wait_for(arrived, 10)
            assert back[0][0].message_type is MessageType.BREAK_DONE
            assert (back[0][0].sender, back[0][0].generation) == (1, 12)

    asyncio.run(main())


def test_the_directory_is_private_and_close_unlinks_the_socket(tmp_path):
    directory = tmp_path / "workers"
    mailbox = Mailbox(str(directory), 3, 1)
    assert stat.S_IMODE(os.stat(directory).st_mode) & 0o077 == 0
    assert stat.S_ISSOCK(os.lstat(directory / "worker-3.sock").st_mode)
    assert mailbox.path == socket_path(str(directory), 3)
    mailbox.close()
    mailbox.close()                                   # twice is harmless
    assert not os.path.exists(directory / "worker-3.sock")


def test_a_stale_socket_is_replaced_and_close_leaves_a_successors(tmp_path):
    first = Mailbox(str(tmp_path), 0, 1)
    second = Mailbox(str(tmp_path), 0, 2)             # the restarted worker 0
    first.close()                                     # the old one's close must not unbind it
    assert os.path.exists(second.path)
    second.close()
    assert not os.path.exists(second.path)


def test_something_else_at_the_path_is_not_removed(tmp_path):
    (tmp_path / "worker-0.sock").write_text("not a socket")
    with pytest.raises(MailboxError, match="not a socket"):
        Mailbox(str(tmp_path), 0, 1)
    assert (tmp_path / "worker-0.sock").read_text() == "not a socket"


def test_a_worker_without_a_socket_is_an_error_at_once(tmp_path):
    with Mailbox(str(tmp_path), 0, 1) as mailbox:
        started = time.monotonic()
        with pytest.raises(MailboxError, match="worker 5 has no mailbox") as raised:
            mailbox.send(5, BreakDone(KEY))
        assert time.monotonic() - started < 1
        assert "worker-5.sock" in str(raised.value)


def test_a_stale_socket_file_is_refused(tmp_path):
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(socket_path(str(tmp_path), 2))
    dead.close()                                      # its file stays, nobody reads
    with Mailbox(str(tmp_path), 0, 1) as mailbox:
        with pytest.raises(MailboxError, match="worker 2 is not reading"):
            mailbox.send(2, BreakDone(KEY))


def test_a_full_peer_queue_fails_instead_of_blocking(tmp_path):
    with Mailbox(str(tmp_path), 0, 1) as mailbox, Mailbox(str(tmp_path), 1, 1):
        started = time.monotonic()
        with pytest.raises(MailboxError, match="worker 1 has a full queue") as raised:
            for _ in range(100_000):                  # the peer never reads
                mailbox.send(1, AdminReply(1, "x" * 1000))
        assert raised.value.errno is not None
        assert time.monotonic() - started < 10


def test_a_malformed_datagram_is_dropped_and_the_next_arrives(tmp_path, caplog):
    async def main():
        with Mailbox(str(tmp_path), 0, 1) as sender, Mailbox(str(tmp_path), 1, 1) as peer:
            received, arrived = await receive(peer, 1)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
                raw.sendto(b"garbage", peer.path)
            sender.send(1, LocksChanged(KEY))
            await asyncio.wait_for(arrived, 10)
            assert [message for _, message in received] == [LocksChanged(KEY)]

    with caplog.at_level(logging.WARNING, logger="smbcad.workers"):
        asyncio.run(main())
    assert "dropped a malformed message of 7 bytes" in caplog.text


def test_attach_twice_or_after_close_is_refused(tmp_path):
    async def main():
        mailbox = Mailbox(str(tmp_path), 0, 1)
        loop = asyncio.get_running_loop()
        mailbox.attach(loop, lambda header, message: None)
        with pytest.raises(RuntimeError):
            mailbox.attach(loop, lambda header, message: None)
        mailbox.close()
        with pytest.raises(RuntimeError):
            mailbox.attach(loop, lambda header, message: None)

    asyncio.run(main())


def _echo_worker(directory: str, ready) -> None:
    """Worker 1 in another process: answers one BreakRequest with a BreakDone."""
    async def main():
        loop = asyncio.get_running_loop()
        answered = loop.create_future()
        with Mailbox(directory, 1, 2) as mailbox:
            def on_message(header, message):
                if isinstance(message, BreakRequest) and not answered.done():
                    mailbox.send(header.sender, BreakDone(message.file_key))
                    answered.set_result(None)

            mailbox.attach(loop, on_message)
            ready.set()
            await asyncio.wait_for(answered, 60)

    asyncio.run(main())


def test_a_break_crosses_to_another_process_and_back(tmp_path):
    directory = str(tmp_path / "workers")
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_echo_worker, args=(directory, ready))
    child.start()
    try:
        assert ready.wait(60)

        async def main():
            with Mailbox(directory, 0, 1) as mailbox:
                received, arrived = await receive(mailbox, 1)
                mailbox.send(1, BreakRequest(KEY + ("s",), 9, 0, True, b"k" * 16))
                await asyncio.wait_for(arrived, 30)
                return received

        [(header, message)] = asyncio.run(main())
        assert message == BreakDone(KEY + ("s",))
        assert (header.sender, header.generation) == (1, 2)
        child.join(30)
        assert child.exitcode == 0
        assert not os.path.exists(socket_path(directory, 1))
    finally:
        if child.exitcode is None:
            os.kill(child.pid, signal.SIGKILL)
            child.join()
