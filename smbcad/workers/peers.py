"""The other workers of this node as one worker reaches them through its
mailbox (docs/multicore.md, "Messages between workers"): a hint to every
other worker (``tell``), or a question to every other worker whose answers
the caller waits for (``ask``), bounded so that a worker that is gone or
stuck delays a request by at most ``ASK_TIMEOUT_S``.

A worker that cannot be reached (restarting: its mailbox is gone) holds no
opens and answers nothing; ``ask`` leaves it out.  Replies that come after
the caller stopped waiting are dropped (``ReplyWaiters``).
"""

import asyncio
import logging
import time
from typing import Callable

from smbcad.workers.mailbox import Mailbox, MailboxError
from smbcad.proto.status import NtStatus
from smbcad.workers.messages import (AppInstanceClose, LogoffSession, Message, MessageError,
                                     OpensBelow, ReleaseDurable, Renamed, Reply, ReplyWaiters,
                                     Request)

log = logging.getLogger("smbcad.workers")

# Long enough for a busy worker's loop to come round to its mailbox, short
# enough that a client's request stays well inside its 60 s timeout.
ASK_TIMEOUT_S = 5.0
# How long before the end of that wait a holder stops letting a durable open
# go (ReleaseDurable's deadline): room for its answer to come back.
RELEASE_MARGIN_S = 1.0


class Peers:
    """Worker ``index`` of ``count``, reaching the others through ``mailbox``."""

    def __init__(self, mailbox: Mailbox, index: int, count: int) -> None:
        self.mailbox, self.index, self.count = mailbox, index, count
        self._waiting = ReplyWaiters()

    def others(self) -> list[int]:
        return [index for index in range(self.count) if index != self.index]

    def tell(self, message: Message) -> None:
        """``message`` to every other worker, without waiting (a hint)."""
        for index in self.others():
            try:
                self.mailbox.send(index, message)
            except MailboxError as exc:          # restarting: it holds nothing
                log.debug("%s", exc)
            except MessageError as exc:          # a path past a datagram's size
                log.warning("not sent to worker %d: %s", index, exc)
                return

    async def ask(self, build: Callable[[int], Request],
                  timeout_s: float = ASK_TIMEOUT_S) -> list[Reply | None]:
        """``build(request_id)`` to every other worker; their replies, None
        for a worker that did not answer within ``timeout_s``.  MessageError
        when the request cannot be encoded (nothing was sent)."""
        loop = asyncio.get_running_loop()
        asked: list[tuple[int, int, asyncio.Future]] = []
        try:
            for index in self.others():
                request = build(self._waiting.new_request_id())
                try:
                    self.mailbox.send(index, request)
                except MailboxError as exc:
                    log.debug("%s", exc)
                    continue
                # registered after the send: the reply comes through this loop, later
                future = loop.create_future()
                self._waiting.register(request.request_id, future, expects=type(request).REPLY)
                asked.append((index, request.request_id, future))
            if asked:
                await asyncio.wait([future for _, _, future in asked], timeout=timeout_s)
        finally:
            for index, request_id, future in asked:
                if not future.done():
                    self._waiting.discard(request_id)
                    future.cancel()
                    log.warning("worker %d did not answer request %d within %.0f s",
                                index, request_id, timeout_s)
        return [future.result() if not future.cancelled() else None
                for _, _, future in asked]

    async def anything_open_below(self, share: str, directory: str) -> bool:
        """Whether another worker has an open below ``directory`` (one that
        does not answer is taken to have none: a rename it misses is still
        followed, ``renamed``)."""
        answers = await self.ask(lambda request_id: OpensBelow(request_id, share, directory))
        return any(answer is not None and answer.status != NtStatus.SUCCESS
                   for answer in answers)

    async def renamed(self, file_key: tuple, share: str, old: str, new: str) -> None:
        """Every other worker's opens of ``file_key``, and of anything below
        ``old``, follow it to ``new`` (their records stored) before this returns."""
        try:
            await self.ask(lambda request_id: Renamed(request_id, file_key, share, old, new))
        except MessageError as exc:           # a path past a datagram's size
            log.warning("rename of %r not told to the other workers: %s", old, exc)

    async def close_app_instance(self, file_key: tuple, share: str, app_instance_id: bytes,
                                 client_guid: bytes, version: tuple[int, int] | None,
                                 dialect_311: bool, may_close: bool) -> int:
        """Every other worker closes its stale opens of ``file_key`` with
        ``app_instance_id`` ([MS-SMB2] 3.3.5.9.13); FILE_FORCED_CLOSED when
        one refuses (a stale open's version is not older), else SUCCESS."""
        answers = await self.ask(lambda request_id: AppInstanceClose(
            request_id, file_key, share, app_instance_id, client_guid, version, dialect_311,
            may_close))
        refused = [answer.status for answer in answers
                   if answer is not None and answer.status != NtStatus.SUCCESS]
        return refused[0] if refused else NtStatus.SUCCESS

    async def release_durable(self, open_id: int) -> bytes | None:
        """The record of disconnected durable open ``open_id``, which the
        worker that held it has let go of for this one to adopt; None when no
        other worker holds it (or would let it go)."""
        # The holder lets go only while this side still waits: an open it
        # gave up after the wait ended would be nobody's.
        deadline_ns = time.monotonic_ns() + int((ASK_TIMEOUT_S - RELEASE_MARGIN_S) * 1e9)
        answers = await self.ask(lambda request_id: ReleaseDurable(open_id, request_id,
                                                                   deadline_ns))
        for answer in answers:
            if answer is not None and answer.status == NtStatus.SUCCESS and answer.record:
                return answer.record
        return None

    async def log_off_session(self, session_id: int, user: str) -> bool:
        """The worker holding session ``session_id`` of ``user`` ends it,
        keeping its durable opens (PreviousSessionId, [MS-SMB2] 3.3.5.5.3);
        whether one did, before this returns."""
        try:
            answers = await self.ask(lambda request_id: LogoffSession(session_id, request_id,
                                                                      user))
        except MessageError as exc:           # a user name past a datagram's size
            log.warning("previous session %#x not ended elsewhere: %s", session_id, exc)
            return False
        return any(answer is not None and answer.status == NtStatus.SUCCESS
                   for answer in answers)

    def answer(self, to_index: int, reply: Reply) -> None:
        """``reply`` to the worker that asked."""
        try:
            self.mailbox.send(to_index, reply)
        except (MailboxError, MessageError) as exc:   # it asked and died: nobody waits
            log.debug("reply to worker %d not sent: %s", to_index, exc)

    def replied(self, reply: Reply) -> None:
        """A reply arrived: the request waiting for it has its answer."""
        future = self._waiting.resolve(reply)
        if future is not None and not future.done():
            future.set_result(reply)
