"""Per-request state handed to command handlers ([MS-SMB2] 3.3.1.13 Request)."""

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from smbcad.crypto import TRANSFORM_HEADER_SIZE
from smbcad.proto.constants import Command
from smbcad.proto.errors import SmbError
from smbcad.proto.header import Smb2Header
from smbcad.proto.status import NtStatus
from smbcad.server import channel_sequence

# A FileId of all ones in a related compound means "the previous CREATE's" (3.3.5.2.7.2).
RELATED_FILE_ID = (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
# Where a READ response's frame starts in Connection.read_buffer: the bytes
# before it hold a TRANSFORM_HEADER when the response is encrypted in place.
READ_FRAME_AT = TRANSFORM_HEADER_SIZE
# CLOSE names an open without "using" it: IsReplayEligible is cleared by FLUSH,
# READ, WRITE, LOCK, IOCTL, QUERY_DIRECTORY, CHANGE_NOTIFY, QUERY_INFO,
# SET_INFO and OPLOCK_BREAK (3.3.5.11-3.3.5.22), not by CLOSE (3.3.5.10).
_NOT_A_USE = frozenset({Command.CREATE, Command.CLOSE})


@dataclass
class CompoundState:
    """What related operations inherit from the one before (3.3.5.2.7.2)."""

    session_id: int = 0
    tree_id: int = 0
    file_id: tuple[int, int] | None = None
    last_status: int = NtStatus.SUCCESS
    # A failed CREATE fails the related requests after it with its status (3.3.5.2.7.2).
    create_error: int = 0
    # Bytes of the compound's responses so far (padded members), which must
    # fit one direct-TCP frame.
    response_bytes: int = 0


@dataclass
class Reply:
    """A handler's answer: a response body and, rarely, a non-success status
    that still carries a body (STATUS_BUFFER_OVERFLOW, MORE_PROCESSING_REQUIRED)."""

    body: Any
    status: int = NtStatus.SUCCESS
    # READ responses are built with 64 spare bytes in front so the header can be
    # packed in place and the data is never copied again.
    preframed: bool = False


@dataclass
class Pending:
    """The request waits (lock, notify, flush, lease break): the dispatcher sends
    an interim STATUS_PENDING response after ``interim_after_s`` and the final
    response when ``work`` finishes (3.3.4.2).  ``on_cancel`` runs on CANCEL."""

    work: Awaitable
    interim_after_s: float = 0.0
    on_cancel: Callable[[], None] | None = None


@dataclass
class Offloaded:
    """The rest of the request is ``work``, a coroutine whose expensive step
    (a scan of a large directory) runs in a worker thread (``asyncio.to_thread``)
    on data it was handed, its result applied on the loop afterwards (issue 17,
    fairness).  Unlike ``Pending`` it never goes async: the connection waits
    for it before its next request, so its requests keep their order and it
    has at most one job in the pool, while the loop serves the others.
    ``work`` returns what a handler returns (bytes, Reply or Pending)."""

    work: Awaitable


# A handle-store commit rarely takes this long; past it the client gets an
# interim response (3.3.4.2), as for a slow write-through sync.
COMMIT_INTERIM_S = 0.5


class Answer:
    """The response ``body`` once ``commit``, an asyncio future, is done.

    A handle-store change the response depends on (issue 4 item 7).  It is
    awaitable like any wait, and the connection finishes a request that went
    async on one from the future's own callback, with no task: a persistent
    CREATE and CLOSE each took six passes of the event loop through tasks,
    and take four this way (issue 14 item 6).  ``on_error`` turns the
    commit's failure into the request's exception (it may undo the change)."""

    __slots__ = ("commit", "body", "on_error")

    def __init__(self, commit: asyncio.Future, body,
                 on_error: Callable[[Exception], Exception] | None = None) -> None:
        self.commit, self.body, self.on_error = commit, body, on_error

    def __await__(self):
        try:
            yield from self.commit.__await__()
        except Exception as exc:    # noqa: BLE001 - handed to on_error, as outcome() does
            raise self._failure(exc) from exc
        return self.body

    def outcome(self):
        """The body, or raises what the request fails with (``commit`` is done)."""
        if self.commit.cancelled():     # by another of its waiters: not durable, as far as known
            raise self._failure(SmbError(NtStatus.CANCELLED, "commit wait cancelled"))
        exc = self.commit.exception()
        if exc is not None:
            raise self._failure(exc) from exc
        return self.body

    def _failure(self, exc: Exception) -> Exception:
        return exc if self.on_error is None else self.on_error(exc)


def answer_after(commit: Awaitable, body, on_error=None) -> Pending:
    """The response ``body`` once ``commit`` (a handle-store change the
    response depends on, issue 4 item 7) is durable."""
    if isinstance(commit, asyncio.Future):
        return Pending(Answer(commit, body, on_error), COMMIT_INTERIM_S)

    async def answer():
        try:
            await commit
        except Exception as exc:    # noqa: BLE001 - handed to on_error
            if on_error is None:
                raise
            raise on_error(exc) from exc
        return body
    return Pending(answer(), COMMIT_INTERIM_S)


@dataclass
class RequestContext:
    """One request as the handler sees it."""

    connection: Any
    server: Any
    header: Smb2Header
    message: memoryview                  # the whole SMB2 message, header first
    encrypted: bool
    compound: CompoundState
    session: Any = None
    tree: Any = None
    # Hooks the connection runs with the exact response bytes (preauth hashing).
    response_hooks: list = field(default_factory=list)
    # Work to do once the response is on its way (LOGOFF tears down the session).
    after_send: list = field(default_factory=list)
    sign_with: Any = None                # a Signer overriding the session's (final SESSION_SETUP)
    force_sign: bool = False
    # Signed, never encrypted unless the request was: a bind's responses on
    # the new channel (Samba's smbd does the same for SESSION_SETUP).
    plaintext: bool = False
    create_intent: Any = None            # a CREATE's intent across its retries (server/intents.py)
    # a directory rename asked the other workers about opens below it (server/renamed_opens.py)
    asked_workers: bool = False

    def lookup_open(self, file_id: tuple[int, int]):
        """The Open for a FileId in this session (3.3.5.2.x), or in a related
        operation the previous operation's.  STATUS_FILE_CLOSED if unknown.  Then
        the ChannelSequence check (3.3.5.2.10; STATUS_FILE_NOT_AVAILABLE for
        a stale WRITE, SET_INFO or IOCTL), and a use of the open ends its
        replay eligibility."""
        if self.header.is_related and self.compound.file_id is not None:
            # A related operation uses the FileId of the one before whatever
            # its own field holds (3.3.5.2.7.2), as Samba's file_fsp_smb2
            # returns compat_chain_fsp and Windows does.
            file_id = self.compound.file_id
        elif file_id == RELATED_FILE_ID:
            raise SmbError(NtStatus.FILE_CLOSED)
        open_ = self.session.opens.get(file_id[1]) if self.session else None
        if open_ is None or open_.persistent_id != file_id[0] or open_.closed:
            raise SmbError(NtStatus.FILE_CLOSED)
        if self.tree is not None and open_.tree is not self.tree:
            raise SmbError(NtStatus.FILE_CLOSED)
        # The open this operation named is the one a related operation after
        # it inherits, whatever the command (Samba sets compat_chain_fsp on
        # every successful lookup).
        self.compound.file_id = open_.file_id
        channel_sequence.check(self, open_)
        if self.header.command not in _NOT_A_USE:
            # Using the open ends its replay eligibility (3.3.5.11-3.3.5.22):
            # a later replayed DH2Q CREATE makes a new open, or for a
            # persistent open meets the v84 CreateGuid rule of 3.3.5.9.
            open_.is_replay_eligible = False
        return open_
