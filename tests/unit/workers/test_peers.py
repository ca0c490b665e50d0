"""Reaching the other workers (smbcad/workers/peers.py) over real Unix
datagram mailboxes in a temp directory: answers gathered, a worker that is
not running left out, one that does not answer bounded by the timeout and
its late reply dropped."""

import asyncio
import logging
import time

from smbcad.proto.status import NtStatus
from smbcad.workers.mailbox import Mailbox
from smbcad.workers.messages import OpensBelow, PeerStatus, ReleaseDurableReply, Renamed
from smbcad.workers.peers import ASK_TIMEOUT_S, RELEASE_MARGIN_S, Peers


def answering(mailbox: Mailbox, loop, status_of, seen: list) -> None:
    """``mailbox``'s worker answers every request with ``status_of(message)``."""
    def on_message(header, message):
        seen.append(message)
        status = status_of(message)
        if status is not None:
            mailbox.send(header.sender, PeerStatus(message.request_id, status))
    mailbox.attach(loop, on_message)


def asker(tmp_path, loop, count: int) -> tuple[Peers, Mailbox]:
    mailbox = Mailbox(str(tmp_path), 0, 1)
    peers = Peers(mailbox, 0, count)
    mailbox.attach(loop, lambda header, message: peers.replied(message))
    return peers, mailbox


def test_answers_are_gathered_and_a_worker_not_running_is_left_out(tmp_path):
    async def scenario():
        loop = asyncio.get_running_loop()
        peers, own = asker(tmp_path, loop, 4)          # worker 3 has no mailbox
        seen1, seen2 = [], []
        with Mailbox(str(tmp_path), 1, 1) as one, Mailbox(str(tmp_path), 2, 1) as two:
            answering(one, loop, lambda m: NtStatus.SUCCESS, seen1)
            answering(two, loop, lambda m: NtStatus.ACCESS_DENIED, seen2)
            found = await peers.anything_open_below("data", "vm")
            assert found
            assert seen1 == [OpensBelow(seen1[0].request_id, "data", "vm")]
            assert seen2[0].directory == "vm" and seen2[0].request_id != seen1[0].request_id
        own.close()
    asyncio.run(scenario())


def test_nothing_open_below_when_every_worker_says_so(tmp_path):
    async def scenario():
        loop = asyncio.get_running_loop()
        peers, own = asker(tmp_path, loop, 3)
        with Mailbox(str(tmp_path), 1, 1) as one, Mailbox(str(tmp_path), 2, 1) as two:
            answering(one, loop, lambda m: NtStatus.SUCCESS, [])
            answering(two, loop, lambda m: NtStatus.SUCCESS, [])
            assert not await peers.anything_open_below("data", "vm")
        own.close()
    asyncio.run(scenario())


def test_a_silent_worker_costs_the_timeout_and_its_late_reply_is_dropped(tmp_path, caplog):
    async def scenario():
        loop = asyncio.get_running_loop()
        peers, own = asker(tmp_path, loop, 2)
        seen = []
        with Mailbox(str(tmp_path), 1, 1) as silent:
            answering(silent, loop, lambda m: None, seen)
            with caplog.at_level(logging.WARNING, "smbcad.workers"):
                answers = await peers.ask(lambda request_id: Renamed(
                    request_id, (1, 2), "data", "a", "b"), timeout_s=0.2)
            assert answers == [None]
            assert "worker 1 did not answer" in caplog.text
            # the late answer resolves nothing and raises nothing
            silent.send(0, PeerStatus(seen[0].request_id, NtStatus.SUCCESS))
            await asyncio.sleep(0.05)
            assert len(peers._waiting) == 0
        own.close()
    asyncio.run(scenario())


def test_a_rename_too_long_for_a_datagram_is_logged_not_raised(tmp_path, caplog):
    async def scenario():
        loop = asyncio.get_running_loop()
        peers, own = asker(tmp_path, loop, 2)
        with Mailbox(str(tmp_path), 1, 1):
            with caplog.at_level(logging.WARNING, "smbcad.workers"):
                await peers.renamed((1, 2), "data", "a" * 70_000, "b")
        assert "not told to the other workers" in caplog.text
        assert len(peers._waiting) == 0
        own.close()
    asyncio.run(scenario())


def test_a_durable_open_is_asked_for_with_a_deadline_inside_the_wait(tmp_path):
    """The holder lets the open go only before ReleaseDurable's deadline,
    which ends RELEASE_MARGIN_S before the asker stops waiting (smbcad/daemon.py):
    an open let go after that would be nobody's."""
    async def scenario():
        loop = asyncio.get_running_loop()
        peers, own = asker(tmp_path, loop, 2)
        seen = []
        with Mailbox(str(tmp_path), 1, 1) as holder:
            def on_message(header, message):
                seen.append(message)
                holder.send(header.sender, ReleaseDurableReply(
                    message.request_id, message.open_id, NtStatus.SUCCESS, b"record"))
            holder.attach(loop, on_message)
            before = time.monotonic_ns()
            assert await peers.release_durable(7) == b"record"
        (asked,) = seen
        assert asked.open_id == 7
        wait_ns = int(ASK_TIMEOUT_S * 1e9)
        assert before + wait_ns - int(RELEASE_MARGIN_S * 1e9) <= asked.deadline_ns < before + wait_ns
        own.close()
    asyncio.run(scenario())
