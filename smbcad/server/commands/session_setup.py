"""SESSION_SETUP ([MS-SMB2] 3.3.5.5): SPNEGO rounds, key derivation, the 3.1.1
preauth hash chain, re-authentication, and binding a new channel to an
existing session (3.3.5.5.2; the rules in smbcad.server.channels)."""

import logging

from smbca.auth import AuthError
from smbcad import crypto
from smbcad.proto.constants import Dialect, SecurityMode, SessionFlags
from smbcad.proto.errors import SmbError
from smbcad.proto.session_setup import SessionSetupRequest, SessionSetupResponse
from smbcad.proto.status import NtStatus
from smbcad.server import channels
from smbcad.server.adm import Channel, ChannelBinding, Session, SessionState
from smbcad.server.context import Offloaded, Pending, Reply

log = logging.getLogger("smbcad.session")
# Longer than a wait for the other workers can take (workers.peers.ASK_TIMEOUT_S):
# a SESSION_SETUP that waits for them gets no interim response.
_NO_INTERIM_S = 10.0


def _new_session(ctx) -> Session:
    conn, server = ctx.connection, ctx.server
    session = Session(session_id=server.new_session_id(), connection=conn,
                      dialect=conn.dialect, preauth_hash=conn.preauth_hash)
    server.add_session(session)
    conn.sessions[session.session_id] = session
    return session


def _finish(ctx, session: Session, exchange, request: SessionSetupRequest, identity) -> int:
    """Authentication done: derive keys and decide signing/encryption (3.3.5.5.3)."""
    conn, server = ctx.connection, ctx.server
    reauth = session.state == SessionState.VALID
    # A re-authentication may carry another identity (even anonymous); the
    # session keeps its keys and its opens (3.3.5.5.3, smb2.session.reauth*).
    session.identity = identity
    if not reauth:
        session.is_guest_or_anonymous = identity.is_guest or identity.is_anonymous
    flags = 0
    if identity.is_anonymous:
        flags |= SessionFlags.IS_NULL
    elif identity.is_guest:
        flags |= SessionFlags.IS_GUEST
    if not reauth:
        session.client_guid = conn.client_guid
        session.cipher_id = conn.cipher_id
        session.signing_algorithm = conn.signing_algorithm
    if not reauth and not session.is_guest_or_anonymous:
        session.session_key = exchange.session_key
        keys = crypto.derive_session_keys(
            conn.dialect, exchange.session_key,
            session.preauth_hash if conn.dialect == Dialect.SMB_3_1_1 else None,
            conn.cipher_id or None)
        session.signer = crypto.make_signer(conn.signing_algorithm, keys.signing)
        session.application_key = keys.application
        if conn.cipher_id:
            session.encryptor = crypto.Encryptor(conn.cipher_id, keys.encrypt_s2c)
            session.decryptor = crypto.Decryptor(conn.cipher_id, keys.encrypt_c2s)
        session.signing_required = bool(
            server.config.server.signing_required
            or request.security_mode & SecurityMode.SIGNING_REQUIRED)
        mode = server.config.server.encryption
        if conn.cipher_id and mode in ("required", "desired"):
            session.encrypt_data = True
        elif mode == "required":
            raise SmbError(NtStatus.ACCESS_DENIED, "server requires encryption")
    if session.encrypt_data:
        flags |= SessionFlags.ENCRYPT_DATA
    # The final response is signed with the new key: always in 3.1.1, and in
    # earlier dialects whenever signing is in force (3.3.5.5.3).  It is sent
    # in the clear unless the request came encrypted (a re-authentication):
    # 3.3.4.1.4 encrypts responses to encrypted requests, and the first
    # SESSION_SETUP of a session that must encrypt is not one (smbd signs it
    # and does not encrypt it either).
    if session.signer is not None and not ctx.encrypted:
        ctx.plaintext = True
        if conn.dialect == Dialect.SMB_3_1_1 or session.signing_required:
            ctx.sign_with = session.signer_for(conn)
    session.state = SessionState.VALID
    session.auth_exchange = None
    # The first channel signs with Session.SigningKey (3.3.5.5.3).
    session.channels.setdefault(conn, Channel(conn, session.signer))
    log.info("%s: session %016x set up for %s\\%s%s%s%s", conn.peer, session.session_id,
             identity.domain, identity.user, " (guest)" if identity.is_guest else "",
             " (anonymous)" if identity.is_anonymous else "", _ids(identity))
    server.metrics.session_setups.labels(result="ok").inc()
    return flags


def _ids(identity) -> str:
    """The log's note of a domain user's POSIX ids (or that it has none)."""
    if not identity.sid:
        return ""
    if identity.uid is None:
        return f", SID {identity.sid}: no idmap range, acts as the server's own uid"
    return f", uid {identity.uid} gid {identity.gid}"


def handle(ctx):
    conn, server = ctx.connection, ctx.server
    request = SessionSetupRequest.decode(ctx.message)
    if request.flags & SessionFlags.BINDING:
        return _bind(ctx, request)
    session = ctx.session
    if ctx.header.session_id == 0:
        session = _new_session(ctx)
        ctx.session = session
    elif session is None:
        raise SmbError(NtStatus.USER_SESSION_DELETED)
    if request.previous_session_id and request.previous_session_id != session.session_id:
        old = server.sessions.get(request.previous_session_id)
        if old is not None and old.identity is not None and session.identity is None:
            ctx.after_send.append(lambda: _expire_previous(server, old, session))
    if session.auth_exchange is None:
        session.auth_exchange = server.authenticator.new_exchange()
        if session.state == SessionState.VALID:
            session.preauth_hash = conn.preauth_hash
    if conn.dialect == Dialect.SMB_3_1_1 and session.state != SessionState.VALID:
        session.preauth_hash = crypto.preauth_next(session.preauth_hash, ctx.message)
    exchange = session.auth_exchange
    return _step(ctx, exchange, request.security_buffer,
                 lambda outcome: _stepped(ctx, session, exchange, request, outcome))


def _step(ctx, exchange, token, then):
    """``exchange.step(token)``, then ``then(the AuthStep or the AuthError)``:
    off the event loop (``Offloaded``, the connection waits) when the
    authenticator may call a domain controller (NTLM pass-through)."""
    authenticator = ctx.server.authenticator
    if authenticator.may_block:
        token = bytes(token)

        async def off_the_loop():
            return then(await authenticator.step_off_loop(exchange, token))
        return Offloaded(off_the_loop())
    try:
        outcome = exchange.step(token)
    except AuthError as exc:
        outcome = exc
    return then(outcome)


def _stepped(ctx, session: Session, exchange, request: SessionSetupRequest, step):
    conn, server = ctx.connection, ctx.server
    if server.sessions.get(session.session_id) is not session:
        # Logged off (another channel) or gone with its connection while a DC answered.
        raise SmbError(NtStatus.USER_SESSION_DELETED)
    identity = None
    if not isinstance(step, AuthError) and step.complete:
        # A domain user's uid, gids and privileges (smbca.auth.idmap); an
        # account past its idmap range is refused here, with the reason logged.
        try:
            identity = server.config.identity.apply(exchange.identity)
        except AuthError as exc:
            step = exc
    if isinstance(step, AuthError):
        exc = step
        log.info("%s: session setup failed: %s", conn.peer, exc)
        server.metrics.session_setups.labels(result="failed").inc()
        session.auth_exchange = None
        # A failed re-authentication ends the session too, as Windows does
        # (smb2.session.reauth6); the refusal itself still goes out signed.
        if session.state == SessionState.VALID:
            ctx.after_send.append(lambda: server.drop_session(session))
        else:
            server.drop_session(session)
            ctx.session = None
        raise SmbError(exc.status) from None
    if not step.complete:
        if conn.dialect == Dialect.SMB_3_1_1 and session.state != SessionState.VALID:
            ctx.response_hooks.append(
                lambda data: setattr(session, "preauth_hash",
                                     crypto.preauth_next(session.preauth_hash, data)))
        return Reply(SessionSetupResponse(0, step.out_token).encode(),
                     NtStatus.MORE_PROCESSING_REQUIRED)
    previous_elsewhere = (request.previous_session_id and session.identity is None
                          and request.previous_session_id != session.session_id
                          and server.peers is not None
                          and request.previous_session_id not in server.sessions)
    flags = _finish(ctx, session, exchange, request, identity)
    body = SessionSetupResponse(flags, step.out_token).encode()
    if previous_elsewhere and identity is not None:
        return _end_previous_elsewhere(ctx, request.previous_session_id, identity.user, body)
    return body


def _expire_previous(server, old, new) -> None:
    """PreviousSessionId (3.3.5.5.3): the same user's old session goes away."""
    if (new.identity is not None and old.identity is not None
            and old.identity.user.lower() == new.identity.user.lower()):
        server.drop_session(old, keep_durable=True)


def _end_previous_elsewhere(ctx, previous_id: int, user: str, body: bytes) -> Pending:
    """PreviousSessionId (3.3.5.5.3) naming a session this worker does not
    hold: with workers, the old connection's ClientGuid may have routed it
    to another.  That one ends it before this response goes, so the client
    finds it gone on its old connection as with one process
    (smb2.durable-open.reopen1a), and its durable opens are disconnected
    for the reconnect that follows."""
    async def ended():
        await ctx.server.peers.log_off_session(previous_id, user)
        return body
    return Pending(ended(), _NO_INTERIM_S)


def end_previous_for_peer(server, session_id: int, user: str) -> bool:
    """Another worker's SESSION_SETUP named ``session_id`` as its
    PreviousSessionId: end it here if it is ``user``'s (``_expire_previous``)."""
    old = server.sessions.get(session_id)
    if old is None or old.identity is None or old.identity.user.lower() != user.lower():
        return False
    server.drop_session(old, keep_durable=True)
    return True


# --- binding a channel (3.3.5.5.2, 3.3.5.5.3) ----------------------------------------


def _bind(ctx, request: SessionSetupRequest):
    """One round of a bind on ``ctx.connection``: checks before the first
    round, the binding's own SPNEGO exchange and preauth hash, then the
    channel and its signing key.  A refused or failed bind leaves the
    session and its other channels as they were."""
    conn, server, header = ctx.connection, ctx.server, ctx.header
    ctx.plaintext = True
    if header.session_id == 0:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bind without a SessionId")
    session = ctx.session
    if session is None:
        raise SmbError(NtStatus.USER_SESSION_DELETED, "bind to an unknown session")
    binding = conn.bindings.get(session.session_id)
    if binding is not None and binding.session is not session:
        binding = None                  # a stale bind to a session that has since ended
    if binding is None:
        if conn in session.channels:
            # Already a channel: it signs with its own key now (3.3.5.2.4).
            _verify(ctx, session.signer_for(conn))
            raise SmbError(NtStatus.REQUEST_NOT_ACCEPTED, "already bound on this connection")
        config = server.config.server
        refusal = channels.bind_refusal(session, conn, signed=header.is_signed,
                                        multichannel=config.multichannel,
                                        max_channels=config.max_channels_per_session)
        if refusal is not None:
            if refusal[0] == NtStatus.INSUFFICIENT_RESOURCES:
                server.limits.hit("channels_per_session", conn.peer, refusal[1])
            raise SmbError(*refusal)
        # The bind itself is signed with Session.SigningKey (3.3.5.2.4).
        _verify(ctx, session.signer)
        binding = ChannelBinding(session, server.authenticator.new_exchange(), conn.preauth_hash)
        conn.bindings[session.session_id] = binding
    else:
        _verify(ctx, session.signer)
    if conn.dialect == Dialect.SMB_3_1_1:
        binding.preauth_hash = crypto.preauth_next(binding.preauth_hash, ctx.message)
    return _step(ctx, binding.exchange, request.security_buffer,
                 lambda outcome: _bind_stepped(ctx, session, binding, outcome))


def _bind_stepped(ctx, session: Session, binding: ChannelBinding, step):
    conn, server = ctx.connection, ctx.server
    if server.sessions.get(session.session_id) is not session:
        raise SmbError(NtStatus.USER_SESSION_DELETED)
    if isinstance(step, AuthError):
        exc = step
        conn.bindings.pop(session.session_id, None)
        log.info("%s: bind to session %016x failed: %s", conn.peer, session.session_id, exc)
        server.metrics.session_setups.labels(result="failed").inc()
        raise SmbError(exc.status) from None
    if not step.complete:
        if conn.dialect == Dialect.SMB_3_1_1:
            ctx.response_hooks.append(
                lambda data: setattr(binding, "preauth_hash",
                                     crypto.preauth_next(binding.preauth_hash, data)))
        return Reply(SessionSetupResponse(0, step.out_token).encode(),
                     NtStatus.MORE_PROCESSING_REQUIRED)
    conn.bindings.pop(session.session_id, None)
    exchange = binding.exchange
    if not channels.same_user(session.identity, exchange.identity):
        server.metrics.session_setups.labels(result="failed").inc()
        raise SmbError(NtStatus.ACCESS_DENIED, "bind as another user")
    if not exchange.session_key:
        raise SmbError(NtStatus.NOT_SUPPORTED, "bind without a session key")
    key = crypto.derive_signing_key(
        conn.dialect, exchange.session_key,
        binding.preauth_hash if conn.dialect == Dialect.SMB_3_1_1 else None)
    channel = Channel(conn, crypto.make_signer(conn.signing_algorithm, key))
    session.channels[conn] = channel
    conn.sessions[session.session_id] = session
    # The final response is signed with Channel.SigningKey (3.3.5.5.3, 3.3.4.1.1).
    ctx.sign_with = channel.signer
    log.info("%s: channel %d of session %016x bound", conn.peer, len(session.channels),
             session.session_id)
    server.metrics.session_setups.labels(result="ok").inc()
    return SessionSetupResponse(0, step.out_token).encode()


def _verify(ctx, signer) -> None:
    """3.3.5.2.4 for a bind: signed, and with the key that applies."""
    if not ctx.header.is_signed or signer is None or not signer.verify(ctx.message):
        ctx.server.metrics.signature_failures.inc()
        raise SmbError(NtStatus.ACCESS_DENIED, "bad signature on a bind")
