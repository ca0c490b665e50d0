"""Multichannel ([MS-SMB2] 3.3.5.5.2, 3.3.7.1): which binds are refused, and
what losing one channel of a session does.

``bind_refusal`` is the rule, pure: the session, the new connection and the
request's signed flag → the status a SESSION_SETUP with
SMB2_SESSION_FLAG_BINDING gets before any authentication, or None.  The order
follows Samba's smbd (smb2_sesssetup.c), which smbtorture's
``smb2.session.bind_negative_*`` tests pin: the signing algorithm, the
dialect family, multichannel being on, the signed flag, the dialect, the
cipher, the session's state and user, the ClientGuid, the channel limit.

A session that lives on another node is not here at all: sessions are not
mirrored, so after a failover a bind for one finds no session and gets
STATUS_USER_SESSION_DELETED, and the client sets up a new session and
reconnects its handles (DH2C) as after any failover.
"""

from smbcad.proto.constants import Dialect, SigningAlgorithmId
from smbcad.proto.status import NtStatus
from smbcad.server.adm import SessionState


def bind_refusal(session, conn, *, signed: bool, multichannel: bool,
                 max_channels: int) -> tuple[int, str] | None:
    """3.3.5.5.2: (NTSTATUS, reason) refusing ``conn``'s bind to ``session``,
    or None when the authentication may start."""
    gmac = SigningAlgorithmId.AES_GMAC
    if session.signing_algorithm >= gmac and conn.signing_algorithm != session.signing_algorithm:
        return NtStatus.REQUEST_OUT_OF_SEQUENCE, "the session signs with AES-GMAC, this connection not"
    if conn.signing_algorithm >= gmac and session.signing_algorithm != conn.signing_algorithm:
        return NtStatus.NOT_SUPPORTED, "this connection signs with AES-GMAC, the session not"
    if conn.dialect < Dialect.SMB_3_0 or conn.dialect == Dialect.WILDCARD:
        return NtStatus.REQUEST_NOT_ACCEPTED, "binding needs SMB 3"
    if not multichannel:
        return NtStatus.REQUEST_NOT_ACCEPTED, "multichannel is off (server.multichannel)"
    if not signed:
        return NtStatus.INVALID_PARAMETER, "a bind must be signed"
    if session.dialect != conn.dialect:
        return NtStatus.INVALID_PARAMETER, "the session was set up with another dialect"
    if session.cipher_id != conn.cipher_id:
        return NtStatus.INVALID_PARAMETER, "the session uses another cipher"
    if session.state == SessionState.EXPIRED:
        return NtStatus.NETWORK_SESSION_EXPIRED, "the session has expired"
    if session.state != SessionState.VALID:
        return NtStatus.REQUEST_NOT_ACCEPTED, "the session is still being set up"
    if session.is_guest_or_anonymous:
        return NtStatus.NOT_SUPPORTED, "a guest or anonymous session cannot be bound"
    if session.client_guid != conn.client_guid:
        return NtStatus.USER_SESSION_DELETED, "another ClientGuid"
    if len(session.channels) >= max_channels:
        return (NtStatus.INSUFFICIENT_RESOURCES,
                f"{len(session.channels)} channels already (server.max_channels_per_session)")
    return None


def same_user(bound, new) -> bool:
    """The binding authenticated the session's user (3.3.5.5.3)."""
    if bound is None or new is None:
        return False
    bound_sid = getattr(bound, "sid", None)
    new_sid = getattr(new, "sid", None)
    if bound_sid and new_sid:
        return bound_sid == new_sid
    return (bound.user.lower(), bound.domain.lower()) == (new.user.lower(), new.domain.lower())


def leave(session, conn) -> bool:
    """``conn`` is gone: it stops being a channel of ``session``.  True when
    another channel is alive, so the session and its opens carry on there
    (3.3.7.1 applies only when the last one goes)."""
    session.channels.pop(conn, None)
    live = [other for other in session.channels if not other.closed]
    if not live:
        return False
    if session.connection is conn:
        session.connection = live[0]
    return True
