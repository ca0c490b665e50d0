"""Before a request runs: its session, signature, encryption and tree
([MS-SMB2] 3.3.5.2.4, 3.3.5.2.9, 3.3.5.2.11), and what a compound's chain
passes on to its related requests (3.3.5.2.7.2)."""

import time

from smbcad.proto.constants import HEADER_SIZE, Command
from smbcad.proto.errors import SmbError
from smbcad.proto.header import Smb2Header
from smbcad.proto.status import NtStatus
from smbcad.server.adm import SessionState
from smbcad.server.context import RequestContext

# What an expired session may still do (MS-SMB2 3.3.5.2.9).
_ALLOWED_WHEN_EXPIRED = frozenset({Command.LOGOFF, Command.CLOSE, Command.LOCK})


def check_preconditions(conn, ctx: RequestContext, spec, encrypted_by) -> None:
    """Session, signature, encryption and tree checks (3.3.5.2.4, .9, .11)."""
    header = ctx.header
    if not spec.needs_session:
        if header.session_id:
            ctx.session = _session_for_setup(conn, header, ctx.message)
        _fail_after_failed_create(ctx)
        return
    # A related operation takes SessionId and TreeId from the one before
    # whatever its own fields hold: 0, all ones or a stale id
    # (3.3.5.2.7.2; Samba's smbd_smb2_request_check_session/_tcon use
    # last_session_id/last_tid for every chained request, as Windows does).
    inherited = header.is_related
    session_id = ctx.compound.session_id if inherited else header.session_id
    session = conn.server.sessions.get(session_id)
    if session is None or (not session.is_on(conn) and
                           header.command != Command.SESSION_SETUP):
        # Inheriting a session that did not exist breaks the chain (3.3.5.2.7.2).
        raise SmbError(NtStatus.INVALID_PARAMETER if inherited
                       else NtStatus.USER_SESSION_DELETED)
    ctx.session = session
    if session.state == SessionState.EXPIRED:
        raise SmbError(NtStatus.NETWORK_SESSION_EXPIRED)
    if session.state != SessionState.VALID and header.command != Command.SESSION_SETUP:
        raise SmbError(NtStatus.USER_SESSION_DELETED)
    if encrypted_by is not None:
        if encrypted_by is not session:
            raise SmbError(NtStatus.ACCESS_DENIED, "encrypted with another session's key")
    elif session.state == SessionState.VALID:
        if header.is_signed:
            signer = session.signer_for(conn)
            if signer is None or not signer.verify(ctx.message):
                conn.server.metrics.signature_failures.inc()
                raise SmbError(NtStatus.ACCESS_DENIED, "bad signature")
        elif session.signing_required and header.command != Command.SESSION_SETUP:
            raise SmbError(NtStatus.ACCESS_DENIED, "unsigned request")
        if session.encrypt_data and header.command != Command.SESSION_SETUP:
            raise SmbError(NtStatus.ACCESS_DENIED, "session requires encryption")
    if session.identity is not None and session.identity.expires_at is not None \
            and header.command not in _ALLOWED_WHEN_EXPIRED \
            and time.time() >= session.identity.expires_at:
        # The Kerberos ticket ran out: the client re-authenticates on this
        # status and retries (3.3.5.2.9, 3.2.5.1.9).
        raise SmbError(NtStatus.NETWORK_SESSION_EXPIRED)
    ctx.compound.session_id = session_id
    _fail_after_failed_create(ctx)
    if not spec.needs_tree:
        return
    tree_id = ctx.compound.tree_id if inherited else header.tree_id
    tree = session.trees.get(tree_id)
    if tree is None:
        raise SmbError(NtStatus.NETWORK_NAME_DELETED)
    if tree.encrypt_data and encrypted_by is None:
        raise SmbError(NtStatus.ACCESS_DENIED, "share requires encryption")
    ctx.tree = tree
    ctx.compound.tree_id = tree_id


def _fail_after_failed_create(ctx: RequestContext) -> None:
    """A failed CREATE fails the related operations after it with its own
    status (3.3.5.2.7.2); checked once the session is known, so the error
    is signed like the CREATE's, and before the tree, so no inherited
    TreeId can turn it into another status."""
    if ctx.header.is_related and ctx.compound.create_error:
        raise SmbError(ctx.compound.create_error)


def _session_for_setup(conn, header: Smb2Header, message):
    """SESSION_SETUP continuing or re-authenticating a session (3.3.5.5):
    it must live on this connection, and a signed re-auth must verify."""
    session = conn.server.sessions.get(header.session_id)
    if header.command != Command.SESSION_SETUP:
        return session
    if len(message) > HEADER_SIZE + 2 and message[HEADER_SIZE + 2] & 0x01:
        return session          # a channel bind: the handler answers it (3.3.5.5)
    if session is None or not session.is_on(conn):
        raise SmbError(NtStatus.USER_SESSION_DELETED)
    if session.state == SessionState.EXPIRED:
        raise SmbError(NtStatus.NETWORK_SESSION_EXPIRED)
    if session.state == SessionState.VALID:
        signer = session.signer_for(conn)
        if header.is_signed and (signer is None or not signer.verify(message)):
            raise SmbError(NtStatus.ACCESS_DENIED, "bad signature")
        if not header.is_signed and session.signing_required and signer is not None:
            # A re-authentication is signed like any request once signing
            # is required (3.3.5.2.4), on a bound channel too.
            raise SmbError(NtStatus.ACCESS_DENIED, "unsigned re-authentication")
    return session
