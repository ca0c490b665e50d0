"""SESSION_SETUP ([MS-SMB2] 3.3.5.5): SPNEGO rounds, key derivation, the 3.1.1
preauth hash chain, re-authentication."""

import logging

from smbca.auth import AuthError
from smbcad import crypto
from smbcad.proto.constants import Dialect, SecurityMode, SessionFlags
from smbcad.proto.errors import SmbError
from smbcad.proto.session_setup import SessionSetupRequest, SessionSetupResponse
from smbcad.proto.status import NtStatus
from smbcad.server.adm import Session, SessionState
from smbcad.server.context import Reply

log = logging.getLogger("smbcad.session")


def _new_session(ctx) -> Session:
    conn, server = ctx.connection, ctx.server
    session = Session(session_id=server.new_session_id(), connection=conn,
                      dialect=conn.dialect, preauth_hash=conn.preauth_hash)
    server.add_session(session)
    conn.sessions[session.session_id] = session
    return session


def _finish(ctx, session: Session, exchange, request: SessionSetupRequest) -> int:
    """Authentication done: derive keys and decide signing/encryption (3.3.5.5.3)."""
    conn, server = ctx.connection, ctx.server
    identity = exchange.identity
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
    # earlier dialects whenever signing is in force (3.3.5.5.3).
    if session.signer is not None and not session.encrypt_data:
        if conn.dialect == Dialect.SMB_3_1_1 or session.signing_required:
            ctx.sign_with = session.signer
    session.state = SessionState.VALID
    session.auth_exchange = None
    log.info("%s: session %016x set up for %s\\%s%s%s", conn.peer, session.session_id,
             identity.domain, identity.user, " (guest)" if identity.is_guest else "",
             " (anonymous)" if identity.is_anonymous else "")
    server.metrics.session_setups.labels(result="ok").inc()
    return flags


def handle(ctx):
    conn, server = ctx.connection, ctx.server
    request = SessionSetupRequest.decode(ctx.message)
    if request.flags & SessionFlags.BINDING:
        # Multichannel is not advertised, so no binding (3.3.5.5).
        raise SmbError(NtStatus.REQUEST_NOT_ACCEPTED, "channel binding not supported")
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
    try:
        step = exchange.step(request.security_buffer)
    except AuthError as exc:
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
    flags = _finish(ctx, session, exchange, request)
    return SessionSetupResponse(flags, step.out_token).encode()


def _expire_previous(server, old, new) -> None:
    """PreviousSessionId (3.3.5.5.3): the same user's old session goes away."""
    if (new.identity is not None and old.identity is not None
            and old.identity.user.lower() == new.identity.user.lower()):
        server.drop_session(old, keep_durable=True)
