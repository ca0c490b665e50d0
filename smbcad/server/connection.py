"""One client connection ([MS-SMB2] 3.3.1.7 Connection): frames in, responses out.

The transport hands over whole frames (the 4-byte direct-TCP length already
stripped) and gives a ``sink`` with ``send(parts)`` and ``close()``.  Here we
decrypt (3.3.5.2.1), take SMB1 negotiates (3.3.5.3), split compounds
(3.3.5.2.7), check credits (3.3.5.2.3/.5), session, signature and tree
(3.3.5.2.4, .9, .11), dispatch, and sign or encrypt the responses (3.3.4.1).
No socket or file is touched here.
"""

import asyncio
import logging
import struct
import time

from smbcad import crypto
from smbcad.proto.constants import (
    COMPRESSION_PROTOCOL_ID, HEADER_SIZE, PROTOCOL_ID, SMB1_PROTOCOL_ID,
    TRANSFORM_PROTOCOL_ID, Command, Dialect, HeaderFlags)
from smbcad.proto.errors import ProtocolViolation, SmbError
from smbcad.proto.header import (
    HEADER, INTERIM_RESPONSE_BODY, NEXT_COMMAND_OFFSET,
    ZERO_SIGNATURE, Smb2Header, encode_error_body)
from smbcad.proto.status import NtStatus, name_of
from smbcad.server import channels
from smbcad.server.adm import SessionState
from smbcad.server.context import (
    READ_FRAME_AT, Answer, CompoundState, Offloaded, Pending, Reply, RequestContext)
from smbcad.server.credits import CreditError, CreditWindow
from smbcad.server.dispatch import DISPATCH, credit_charge_needed
from smbcad.server.fairness import BYTES_PER_UNIT, Turn
from smbcad.server.preconditions import check_preconditions

log = logging.getLogger("smbcad.connection")

_HEADER_STATUS = struct.Struct("<I")
_ASYNC_ID_FLAGS = HeaderFlags.SERVER_TO_REDIR | HeaderFlags.ASYNC_COMMAND
# Request flags a response carries back (3.3.4.1).
_ECHOED_FLAGS = (HeaderFlags.RELATED_OPERATIONS | HeaderFlags.REPLAY_OPERATION
                 | HeaderFlags.PRIORITY_MASK)
_ERROR_NO_DATA = encode_error_body()
# Direct TCP carries a 24-bit length (MS-SMB2 2.1); an encrypted compound
# also carries the transform header in it.
MAX_COMPOUND_RESPONSE = 0xFFFFFF - crypto.TRANSFORM_HEADER_SIZE


class Connection:
    """Per-connection state and the request pipeline."""

    def __init__(self, server, sink, peer: str, local_address: str = "",
                 local_port: int = 0) -> None:
        self.server = server
        self.sink = sink
        self.peer = peer
        self.local_address = local_address     # the server address it came to (a LIF?)
        self.local_port = local_port
        self.dialect = 0                      # 0: no NEGOTIATE yet
        self.client_guid = b""
        self.client_capabilities = 0
        self.client_security_mode = 0
        self.client_dialects: tuple[int, ...] = ()
        self.server_capabilities = 0
        self.server_security_mode = 0
        self.cipher_id = 0
        self.signing_algorithm = 0
        self.preauth_hash = b""
        self.max_transact_size = 65536
        self.max_read_size = 65536
        self.max_write_size = 65536
        self.supports_multi_credit = False
        limits = server.config.server
        # Credits bound what a client may have in flight (3.3.1.2); the async
        # requests it has pending count against the same maximum.
        self.credits = CreditWindow(min(limits.max_credits, limits.max_outstanding_requests))
        self.max_async_requests = limits.max_async_requests
        self.turn = Turn()                        # bounded work per turn (server/fairness.py)
        self.sessions: dict[int, object] = {}     # sessions bound to this connection
        self.bindings: dict[int, object] = {}     # SessionId → ChannelBinding in progress (3.3.5.5.2)
        self.pending: dict[int, "_AsyncRequest"] = {}
        self.closed = False
        self.created = time.monotonic()
        self._read_buffer = bytearray(0)

    # --- entry point --------------------------------------------------------------

    async def receive_frame(self, frame: bytearray) -> None:
        """Handle one transport frame, as the frame loop does: what
        ``receive_frame_now`` leaves is awaited here."""
        rest = self.receive_frame_now(frame)
        # A used-up turn lets the others run before this connection goes on.
        await (rest if rest is not None else self.turn.spend(0))

    def receive_frame_now(self, frame: bytearray):
        """Handle one transport frame without the event loop when it can be
        answered at once (the transport calls this in its read callback):
        returns None when it is done, its answer handed to the sink, or a
        coroutine that finishes it (a request that waits for a break, a
        commit or a worker thread, or a compound), which the caller awaits
        before it runs this connection's next frame.  The request's own wait
        never starts here: it starts in that coroutine, inside the caller's
        task.  Any ProtocolViolation closes the connection."""
        try:
            return self._receive_frame_now(frame)
        except (CreditError, ProtocolViolation) as exc:
            self._violation(exc)
            return None

    def _violation(self, exc: Exception) -> None:
        if isinstance(exc, CreditError):
            # A client beyond what it was granted is closed (3.3.5.2.3).
            self.server.limits.hit("credits", self.peer, f"{exc}; closing the connection")
        else:
            log.info("%s: dropping connection: %s", self.peer, exc)
        self.server.metrics.protocol_errors.inc()
        self.close()

    def _receive_frame_now(self, frame: bytearray):
        # Once answered, the request and the frame's bytes (a large frame
        # costs more) count against this connection's turn.
        units = 1 + len(frame) // BYTES_PER_UNIT
        magic = bytes(frame[0:4])
        if magic == TRANSFORM_PROTOCOL_ID:
            session, plain = self._decrypt(frame)
            message = memoryview(plain)
        elif magic == PROTOCOL_ID:
            session, message = None, memoryview(frame)
        elif magic == SMB1_PROTOCOL_ID:
            self._smb1_negotiate(frame)
            self.turn.charge(units)
            return None
        elif magic == COMPRESSION_PROTOCOL_ID:
            raise ProtocolViolation("compression was not negotiated")
        else:
            raise ProtocolViolation("not an SMB2 frame")
        header = Smb2Header.decode(message, 0)
        if header.next_command:
            return self._guarded(self._process_compound(message, encrypted_by=session), units)
        step = self._start_message(header, message, session, CompoundState(), True, True)
        if step is not None and step.result is not None:
            if not self._goes_async_now(step):
                return self._guarded(self._finish_waiting(step, session), units)
            step = None
        if step is not None:
            self._send_responses([self._finish_message(step)], session)
        self.turn.charge(units)
        return None

    def _goes_async_now(self, step: "_Step") -> bool:
        """A lone request whose handler handed back a wait that may go async
        (a commit, a break) goes async here, in the read callback, as
        ``_await_result`` would do it: the frame loop need not wake for it
        (one pass of the event loop less per persistent CREATE and CLOSE)."""
        result = step.result
        if type(result) is not Pending or self._async_refusal(step.ctx, result) is not None:
            return False
        step.result = None
        self._go_async(step.ctx, step.spec, result, step.charge, step.started)
        return True

    async def _guarded(self, work, units: int) -> None:
        """The rest of a frame, then its ``units`` of the turn."""
        try:
            await work
        except (CreditError, ProtocolViolation) as exc:
            self._violation(exc)
        await self.turn.spend(units)

    async def _finish_waiting(self, step: "_Step", session) -> None:
        if await self._await_result(step):
            self._send_responses([self._finish_message(step)], session)

    @property
    def authenticated(self) -> bool:
        """A session on this connection finished SESSION_SETUP (3.3.5.5.3)."""
        return any(session.state == SessionState.VALID for session in self.sessions.values())

    @property
    def busy(self) -> bool:
        """Requests pending or files open: not idle ([MS-CIFS] 3.3.2.2, as
        Windows' autodisconnect, never closes a connection with open files)."""
        return bool(self.pending) or any(session.opens for session in self.sessions.values())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sink.close()

    def close_gracefully(self) -> None:
        """FIN after the answers; the client closes (see SmbProtocol.half_close)."""
        if not self.closed:
            self.closed = True
            self.sink.half_close()

    # --- transform (3.3.5.2.1) ------------------------------------------------------

    def _decrypt(self, frame: bytearray):
        if self.dialect < Dialect.SMB_3_0:
            raise ProtocolViolation("encrypted frame before SMB 3 negotiation")
        session_id = crypto.transform_session_id(frame)
        session = self.server.sessions.get(session_id)
        if session is None or session.decryptor is None:
            raise ProtocolViolation("encrypted frame for unknown session")
        try:
            # A large WRITE is decrypted where it was received: no copy
            # between the socket and pwrite but the kernel's.
            plain = session.decryptor.decrypt_in_place(frame)
        except crypto.DecryptionError as exc:
            raise ProtocolViolation(f"decryption failed: {exc}") from None
        if len(plain) < HEADER_SIZE or bytes(plain[0:4]) != PROTOCOL_ID:
            raise ProtocolViolation("decrypted payload is not SMB2")
        if not isinstance(plain, memoryview):
            plain = bytearray(plain)        # handlers may write into the message
        return session, plain

    # --- SMB1 negotiate (3.3.5.3) -------------------------------------------------

    def _smb1_negotiate(self, frame) -> None:
        from smbcad.server.commands import negotiate
        if self.dialect:
            raise ProtocolViolation("SMB1 after negotiation")
        try:
            body = negotiate.handle_smb1(self, frame)
        except SmbError as exc:
            raise ProtocolViolation(f"SMB1 negotiate: {exc}") from None
        self.credits.consume(0, 1)
        header = Smb2Header(command=Command.NEGOTIATE, message_id=0,
                            flags=HeaderFlags.SERVER_TO_REDIR,
                            credits=self.credits.grant(1, 1))
        self.sink.send([header.encode() + body])

    # --- compounds (3.3.5.2.7) ------------------------------------------------------

    async def _process_compound(self, frame: memoryview, encrypted_by) -> None:
        state = CompoundState()
        responses: list = []
        offset = 0
        total = len(frame)
        while True:
            header = Smb2Header.decode(frame, offset)
            end = total if header.next_command == 0 else offset + header.next_command
            if header.next_command and (header.next_command % 8 or end > total
                                        or header.next_command < HEADER_SIZE):
                raise ProtocolViolation("bad NextCommand")
            message = frame[offset:end]
            is_last = header.next_command == 0
            out = await self._process_message(header, message, encrypted_by, state,
                                              offset == 0, is_last)
            if out is not None:
                if isinstance(out[0], memoryview) and not (offset == 0 and is_last):
                    # A READ lent us the connection's reusable buffer; a later
                    # READ in the same compound would overwrite it.
                    out = (bytearray(out[0]), out[1], out[2])
                responses.append(out)
            if is_last:
                break
            await self.turn.spend()
            offset = end
        if responses:
            self._send_responses(responses, encrypted_by)

    def _send_responses(self, responses: list, encrypted_by) -> None:
        """Chain responses (8-byte aligned NextCommand), sign, encrypt, send.

        Each response is a frame: 4 spare bytes for the direct-TCP length, then
        the SMB2 message.  A lone unencrypted response goes out without a copy.
        """
        if len(responses) == 1:
            frame, signer, session = responses[0]
            message = memoryview(frame)[4:]
            if signer is not None:
                signer.sign(message)
        else:
            frame = bytearray(4)
            for index, (part, signer, session) in enumerate(responses):
                start = len(frame)
                frame += memoryview(part)[4:]
                # Every member, the last too, is padded to 8 bytes as Windows
                # sends them (smb2.compound.compound-padding).
                frame += b"\x00" * ((-(len(frame) - 4)) % 8)
                if index < len(responses) - 1:
                    struct.pack_into("<I", frame, start + NEXT_COMMAND_OFFSET, len(frame) - start)
                if signer is not None:
                    signer.sign(frame, start, len(frame) - start)
            message = memoryview(frame)[4:]
        encrypt_session = encrypted_by or self._encrypting_session(responses)
        if encrypt_session is None or encrypt_session.encryptor is None:
            self.sink.send_frame(frame)
            return
        encryptor = encrypt_session.encryptor
        if (isinstance(frame, memoryview) and frame.obj is self._read_buffer
                and encryptor.encrypts_in_place(len(message))):
            # A large READ: encrypted in the buffer it was read into.
            whole = memoryview(self._read_buffer)[:READ_FRAME_AT + len(frame)]
            encryptor.encrypt_in_place(whole, READ_FRAME_AT + 4, encrypt_session.session_id)
            self.sink.send_frame(whole)
        else:
            self.sink.send([encryptor.encrypt(message, encrypt_session.session_id)])

    def read_buffer(self, size: int) -> bytearray:
        """A reusable buffer for READ responses: a fresh multi-MiB bytearray
        costs more to zero-fill than the read itself.  It is reused only while
        the transport holds nothing unsent: asyncio before Python 3.12 copies
        what the socket does not take, but 3.12's (and uvloop) keeps a view of
        it, which the next READ would overwrite before it is sent.  The
        response frame starts at ``READ_FRAME_AT``, so an encrypted one is
        encrypted where it is, its TRANSFORM_HEADER in the bytes before it."""
        if len(self._read_buffer) < size or self.sink.unsent():
            self._read_buffer = bytearray(size)
        return self._read_buffer

    @staticmethod
    def _encrypting_session(responses):
        for _, _, session in responses:
            if session is not None and session.encrypt_data and session.encryptor:
                return session
        return None

    # --- one message ------------------------------------------------------------------

    async def _process_message(self, header: Smb2Header, message: memoryview,
                               encrypted_by, state: CompoundState, is_first: bool,
                               is_last: bool):
        """Run one request; returns (response bytes, signer, session) or None."""
        step = self._start_message(header, message, encrypted_by, state, is_first, is_last)
        if step is None:
            return None
        if step.result is not None and not await self._await_result(step):
            return None
        return self._finish_message(step)

    def _start_message(self, header: Smb2Header, message: memoryview, encrypted_by,
                       state: CompoundState, is_first: bool, is_last: bool):
        """Checks and the handler, up to what it returns: a ``_Step`` whose
        ``result`` is a wait (``Offloaded``/``Pending``) still to be awaited,
        or None, with its status and body set; None for a CANCEL."""
        started = time.perf_counter()
        command = header.command
        if header.flags & HeaderFlags.SERVER_TO_REDIR:
            raise ProtocolViolation("response flag in a request")
        if command == Command.CANCEL:
            self._cancel(header)
            return None
        spec = DISPATCH.get(command)
        charge = header.credit_charge if self.supports_multi_credit else 1
        self.credits.consume(header.message_id, charge)
        if header.is_async:
            raise ProtocolViolation("async flag in a request")
        if self.dialect == 0 and command != Command.NEGOTIATE:
            raise ProtocolViolation("request before NEGOTIATE")
        if not header.is_related or is_first:
            # An unrelated request starts a new chain (3.3.5.2.7.2).
            state.file_id = None
            state.create_error = 0
            state.session_id = header.session_id
            state.tree_id = header.tree_id
        if header.is_related and is_first:
            # The first request of a compound cannot be related (3.3.5.2.7.2).
            state.create_error = NtStatus.INVALID_PARAMETER
        ctx = RequestContext(self, self.server, header, message, encrypted_by is not None, state)
        if spec is None:
            spec = _unknown_command(command)
        step = _Step(ctx, spec, charge, started, is_first, is_last)
        try:
            check_preconditions(self, ctx, spec, encrypted_by)
            if self.supports_multi_credit and max(header.credit_charge, 1) < credit_charge_needed(command, message):
                raise SmbError(NtStatus.INVALID_PARAMETER, "credit charge too small")
            step.take(spec.handler(ctx))
        except ProtocolViolation:
            raise
        except Exception as exc:    # noqa: BLE001 - a handler bug must not take the connection down
            self._failed(step, exc)
        return step

    async def _await_result(self, step: "_Step") -> bool:
        """Wait for what the handler handed back; False when the request went
        async (its answer comes later, from ``_go_async``)."""
        result, step.result = step.result, None
        ctx = step.ctx
        try:
            if isinstance(result, Offloaded):
                result = await result.work
            if isinstance(result, Pending):
                refusal = self._async_refusal(ctx, result) if step.is_last else None
                if step.is_last and refusal is None:
                    self._go_async(ctx, step.spec, result, step.charge, step.started)
                    return False
                result = await (self._refuse_async(result, *refusal) if refusal else result.work)
            step.take(result)
        except ProtocolViolation:
            raise
        except Exception as exc:    # noqa: BLE001 - a handler bug must not take the connection down
            self._failed(step, exc)
        return True

    def _failed(self, step: "_Step", exc: Exception) -> None:
        """A request's SmbError is its status; any other exception is a bug,
        logged, and STATUS_INTERNAL_ERROR for the client."""
        if isinstance(exc, SmbError):
            step.fail(exc)
            return
        log.error("%s: internal error in %s", self.peer, step.spec.name, exc_info=exc)
        step.status, step.body = NtStatus.INTERNAL_ERROR, _ERROR_NO_DATA

    def _finish_message(self, step: "_Step"):
        """The response of a request that has its status and body."""
        ctx, state = step.ctx, step.ctx.compound
        status, body, preframed = step.status, step.body, step.preframed
        if not (step.is_first and step.is_last):
            status, body, preframed = self._fit_compound(state, status, body, preframed)
        state.last_status = status
        header = ctx.header
        if header.command == Command.CREATE and (status >> 30) == 3:
            state.create_error = status
        response = self._build_response(ctx, status, body, preframed, step.charge)
        self.server.metrics.observe(step.spec.name, status, time.perf_counter() - step.started)
        if ctx.tree is not None:
            ctx.tree.share.counters.operations.inc()
        if status and log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s mid %d → %s (%s)", self.peer, step.spec.name, header.message_id,
                      name_of(status), step.reason)
        for hook in ctx.after_send:
            hook()
        return response

    @staticmethod
    def _fit_compound(state: CompoundState, status: int, body, preframed: bool):
        """A compound's responses go out as one frame, whose direct-TCP length
        has 24 bits (2.1); a response that would overflow it (two 8 MiB READs)
        is STATUS_INSUFFICIENT_RESOURCES instead, and the members after it
        still run: the client learns which of its requests got no data."""
        size = len(body) - 4 - HEADER_SIZE if preframed else len(body)
        member = (HEADER_SIZE + size + 7) & ~7
        if state.response_bytes + member > MAX_COMPOUND_RESPONSE:
            status, body, preframed = NtStatus.INSUFFICIENT_RESOURCES, _ERROR_NO_DATA, False
            member = (HEADER_SIZE + len(body) + 7) & ~7
        state.response_bytes += member
        return status, body, preframed

    @staticmethod
    def _pack_response_header(frame, ctx: RequestContext, status: int, credits: int,
                              async_id: int = 0, signed: bool = False) -> None:
        """The response's SMB2 header (2.2.1), packed at offset 4 of ``frame``."""
        header = ctx.header
        flags = HeaderFlags.SERVER_TO_REDIR | (header.flags & _ECHOED_FLAGS)
        if signed:
            flags |= HeaderFlags.SIGNED
        session_id = ctx.session.session_id if ctx.session is not None else header.session_id
        if async_id:
            flags |= HeaderFlags.ASYNC_COMMAND
            low, high = async_id & 0xFFFFFFFF, async_id >> 32
        else:
            low = header.process_id
            if ctx.tree is not None:
                high = ctx.tree.tree_id
            elif header.flags & HeaderFlags.RELATED_OPERATIONS:
                high = ctx.compound.tree_id      # the chain's, not a placeholder (3.3.5.2.7.2)
            else:
                high = header.tree_id
        HEADER.pack_into(frame, 4, PROTOCOL_ID, HEADER_SIZE, header.credit_charge, status,
                         header.command, credits, flags, 0, header.message_id, low, high,
                         session_id, ZERO_SIGNATURE)

    def _build_response(self, ctx: RequestContext, status: int, body, preframed: bool,
                        charge: int, async_id: int = 0, credits: int | None = None):
        if credits is None:
            credits = self.credits.grant(ctx.header.credits, charge, len(self.pending))
        if status == NtStatus.PENDING:
            # "The server SHOULD NOT sign an interim response" (3.3.4.2), and
            # Windows does not: a client that checks the SIGNED flag against
            # a zero signature drops the interim and, with it, the credits it
            # grants.
            signer, signed = None, False
        else:
            signer = self._response_signer(ctx, status)
            # A signed request whose session is unknown still gets the SIGNED
            # flag, with a zero signature: clients that require signing accept
            # that for the statuses that precede signing checks
            # (USER_SESSION_DELETED, FILE_CLOSED, ...), as Windows and Samba
            # answer.
            signed = signer is not None or (ctx.header.is_signed and not ctx.encrypted)
        if preframed:
            frame = body                    # [4 spare][header][body], from read_buffer
        else:
            frame = bytearray(4 + HEADER_SIZE + len(body))
            frame[4 + HEADER_SIZE:] = body
        self._pack_response_header(frame, ctx, status, credits, async_id, signed)
        if ctx.response_hooks:
            if signer is not None:
                # The preauth hash covers the response as sent, signature
                # included (a bind's interim responses are signed; 3.3.5.5.3).
                signer.sign(memoryview(frame)[4:])
                signer = None
            for hook in ctx.response_hooks:
                hook(memoryview(frame)[4:])
        return frame, signer, (None if ctx.plaintext else ctx.session)

    def _response_signer(self, ctx: RequestContext, status: int):
        """Sign if the request was signed or the session requires it, unless the
        response will be encrypted (3.3.4.1.1)."""
        session = ctx.session
        if ctx.sign_with is not None:
            return ctx.sign_with
        if session is None or session.signer is None:
            return None
        if session.state != SessionState.VALID:
            return None
        if ctx.encrypted or (session.encrypt_data and not ctx.plaintext):
            return None
        if ctx.header.is_signed or session.signing_required or ctx.force_sign:
            return session.signer_for(self)
        return None

    # --- async (3.3.4.2) and CANCEL (3.3.5.16) -----------------------------------------

    def _async_refusal(self, ctx: RequestContext, pending: Pending):
        """Waits with no end of their own (CHANGE_NOTIFY, blocking locks: the
        ones that can be cancelled) may hold ``max_async_requests - 1`` async
        ids per connection, one being kept for the rest, as Windows'
        AsynchronousCredits and Samba's "smb2 max async credits" (512: 511
        pending, smb2.credits), and as many per session over all its channels
        (``max_async_requests_per_session``).  Waits that end by themselves
        (commits, lease breaks) always go.  Returns (limit, detail) of the
        limit that refuses, or None."""
        if pending.on_cancel is None:
            return None
        if len(self.pending) >= self.max_async_requests - 1:
            return ("async_requests", f"{len(self.pending)} requests pending on the connection "
                    f"(server.max_async_requests {self.max_async_requests})")
        session = ctx.session
        per_session = self.server.config.server.max_async_requests_per_session
        if session is not None and session.async_requests >= per_session - 1:
            return ("async_requests_per_session",
                    f"{session.async_requests} requests pending on session "
                    f"{session.session_id:016x} (server.max_async_requests_per_session "
                    f"{per_session})")
        return None

    async def _refuse_async(self, pending: Pending, limit: str, detail: str):
        """Over a limit: the wait is cancelled before it started and the
        request fails with STATUS_INSUFFICIENT_RESOURCES (3.3.4.2) unless it
        completed anyway."""
        self.server.limits.hit(limit, self.peer, f"{detail}: STATUS_INSUFFICIENT_RESOURCES")
        pending.on_cancel()
        try:
            return await pending.work
        except SmbError as exc:
            if exc.status != NtStatus.CANCELLED:
                raise
        raise SmbError(NtStatus.INSUFFICIENT_RESOURCES, "too many async requests")

    def _go_async(self, ctx: RequestContext, spec, pending: Pending, charge: int,
                  started: float) -> None:
        async_id = self.server.next_async_id()
        request = _AsyncRequest(ctx, async_id, pending)
        self.pending[async_id] = request
        credits = self.credits.grant(ctx.header.credits, charge, len(self.pending))
        encrypted_by = ctx.session if ctx.encrypted else None

        def send_interim() -> None:
            if request.done or request.interim_sent or self.closed:
                return
            request.interim_sent = True
            interim = self._build_response(ctx, NtStatus.PENDING, INTERIM_RESPONSE_BODY, False,
                                           charge, async_id, credits)
            self._send_responses([interim], encrypted_by)

        def start_interim_timer() -> None:
            if pending.interim_after_s <= 0:
                send_interim()
            else:
                request.timer = asyncio.get_running_loop().call_later(
                    pending.interim_after_s, send_interim)

        async def run() -> None:
            start_interim_timer()
            status, body, preframed = NtStatus.SUCCESS, None, False
            try:
                result = await pending.work
                if isinstance(result, Reply):
                    body, status, preframed = result.body, result.status, result.preframed
                else:
                    body = result
            except SmbError as exc:
                status, body = exc.status, encode_error_body(exc.data)
            except asyncio.CancelledError:
                status, body = NtStatus.CANCELLED, _ERROR_NO_DATA
            except Exception:
                log.exception("%s: internal error in async %s", self.peer, spec.name)
                status, body = NtStatus.INTERNAL_ERROR, _ERROR_NO_DATA
            finish(status, body, preframed)

        def answered(_commit) -> None:
            # An Answer's commit is done: finish from its callback, no task.
            try:
                status, body = NtStatus.SUCCESS, pending.work.outcome()
            except SmbError as exc:
                status, body = exc.status, encode_error_body(exc.data)
            except Exception:
                log.exception("%s: internal error in async %s", self.peer, spec.name)
                status, body = NtStatus.INTERNAL_ERROR, _ERROR_NO_DATA
            try:
                finish(status, body, False)
            finally:
                if session is not None:
                    _count_down(session)

        def finish(status: int, body, preframed: bool) -> None:
            request.done = True
            if request.timer is not None:
                request.timer.cancel()
            self.pending.pop(async_id, None)
            if self.closed:
                if request.session_survives:
                    for hook in ctx.after_send:
                        hook()
                return
            # All credits go out with the interim response and the final one
            # grants 0 (3.3.1.2, 3.3.4.3; Samba's smb2_set_operation_credit
            # zeroes them once SMB2_HDR_FLAG_ASYNC is set, as Windows does);
            # without an interim the final response is an ordinary one.
            final_credits = 0 if request.interim_sent else credits
            response = self._build_response(
                ctx, status, body, preframed, charge,
                async_id if request.interim_sent else 0, final_credits)
            self.server.metrics.observe(spec.name, status, time.perf_counter() - started)
            if ctx.tree is not None:
                ctx.tree.share.counters.operations.inc()
            self._send_responses([response], encrypted_by)
            for hook in ctx.after_send:
                hook()

        session = ctx.session
        if type(pending.work) is Answer:
            # A commit cannot be called back, and ends by itself: a CANCEL or
            # a lost connection leaves it to answer (or not) when it is done.
            start_interim_timer()
            if session is not None:
                session.async_requests += 1
            pending.work.commit.add_done_callback(answered)
            return

        def ended(_task) -> None:
            # Counted until the task ends, however it ends.  A task cancelled
            # before it ran (a CANCEL or a lost connection in the same read
            # callback) never reached run(): the request is answered here.
            try:
                if not request.done:
                    if asyncio.iscoroutine(pending.work):
                        pending.work.close()
                    finish(NtStatus.CANCELLED, _ERROR_NO_DATA, False)
            finally:
                if session is not None:
                    _count_down(session)

        request.task = asyncio.get_running_loop().create_task(run())
        if session is not None:
            session.async_requests += 1
        request.task.add_done_callback(ended)

    def _cancel(self, header: Smb2Header) -> None:
        """CANCEL consumes no credit and gets no response of its own (3.3.5.16)."""
        for request in list(self.pending.values()):
            matches = (request.async_id == header.async_id if header.is_async
                       else request.ctx.header.message_id == header.message_id)
            if matches and not request.done:
                if request.pending.on_cancel is not None:
                    request.pending.on_cancel()
                elif request.task is not None:      # an Answer's commit runs to its end
                    request.task.cancel()

    def send_unsolicited(self, command: int, body: bytes, session=None) -> None:
        """A server-initiated message such as an oplock or lease break (3.3.4.6,
        3.3.4.7): MessageId all ones, no credits, unsigned, encrypted when the
        session it concerns encrypts."""
        if self.closed:
            return
        # Break notifications are never signed (3.3.4.1.1: MessageId all ones);
        # clients drop a signed one.  They are encrypted when the session is.
        signer = None
        header = Smb2Header(command=command, message_id=0xFFFFFFFFFFFFFFFF,
                            flags=HeaderFlags.SERVER_TO_REDIR,
                            session_id=session.session_id if session is not None else 0)
        frame = bytearray(4 + HEADER_SIZE + len(body))
        header.pack_into(frame, 4)
        frame[4 + HEADER_SIZE:] = body
        encrypt = session if session is not None and session.encrypt_data else None
        self._send_responses([(frame, signer, None)], encrypt)

    def connection_lost(self) -> None:
        """Tear down: sessions, then pending requests (3.3.7.1).

        A session with another live channel carries on there with its opens
        (3.3.7.1 applies when the last channel goes).  Its requests that were
        waiting here for something that ends by itself (a CREATE waiting for
        a break) run to their end, their responses dropped, so that what they
        do is done once and a replay on another channel finds it in progress
        or done (3.3.5.9.10; smb2.replay dhv2-pending2/3); waits without an
        end of their own (CHANGE_NOTIFY, blocking locks) are cancelled as by
        a CANCEL.  Either way run() settles them, ChannelSequence counts
        included, with no response to send."""
        self.closed = True
        surviving = set()
        for session in list(self.sessions.values()):
            if channels.leave(session, self):
                surviving.add(session)
            else:
                self.server.drop_session(session, keep_durable=True)
        self.sessions.clear()
        self.bindings.clear()
        for request in list(self.pending.values()):
            # Either way the session's bookkeeping (ChannelSequence counts)
            # is settled when the request ends.
            request.session_survives = request.ctx.session in surviving
            if request.session_survives:
                if request.pending.on_cancel is not None:
                    request.pending.on_cancel()     # ends the wait as a CANCEL would
                continue
            if request.task is not None:
                request.task.cancel()
        self.pending.clear()
        self.server.connections.discard(self)


def _count_down(session) -> None:
    session.async_requests -= 1


def _unknown_command(command: int):
    """A made-up command gets STATUS_INVALID_PARAMETER, not a disconnect (3.3.5.2)."""
    from smbcad.server.dispatch import CommandSpec

    def refuse(ctx):
        raise SmbError(NtStatus.INVALID_PARAMETER, f"unknown command 0x{command:04x}")
    return CommandSpec("unknown", refuse, needs_session=False, needs_tree=False)


class _AsyncRequest:
    __slots__ = ("ctx", "async_id", "pending", "task", "timer", "done", "interim_sent",
                 "session_survives")

    def __init__(self, ctx, async_id: int, pending: Pending) -> None:
        self.ctx = ctx
        self.async_id = async_id
        self.pending = pending
        self.task = None
        self.timer = None
        self.done = False
        self.interim_sent = False
        self.session_survives = False       # its channel went, its session lives on


class _Step:
    """One request between its handler and its response: what the handler
    returned (a wait still to be awaited, in ``result``) or the status and
    body it came to."""

    __slots__ = ("ctx", "spec", "charge", "started", "is_first", "is_last", "result",
                 "status", "body", "preframed", "reason")

    def __init__(self, ctx: RequestContext, spec, charge: int, started: float,
                 is_first: bool, is_last: bool) -> None:
        self.ctx, self.spec, self.charge, self.started = ctx, spec, charge, started
        self.is_first, self.is_last = is_first, is_last
        self.result = None
        self.status = NtStatus.SUCCESS
        self.body = None
        self.preframed = False
        self.reason = None

    def take(self, result) -> None:
        """What a handler, or the wait it handed back, came to."""
        if isinstance(result, (Offloaded, Pending)):
            self.result = result
        elif isinstance(result, Reply):
            self.body, self.status, self.preframed = result.body, result.status, result.preframed
        else:
            self.body = result

    def fail(self, exc: SmbError) -> None:
        self.status, self.body = exc.status, encode_error_body(exc.data)
        self.reason = exc
