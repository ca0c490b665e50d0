"""Multichannel ([MS-SMB2] 3.3.5.5.2, 3.3.7.1): which binds are refused, and
what losing one channel of a session does.

``bind_refusal`` is the rule, pure: the session, the new connection and the
request's signed flag → the status a SESSION_SETUP with
SMB2_SESSION_FLAG_BINDING gets before any authentication, or None.  The order
follows Samba's smbd (smb2_sesssetup.c), which smbtorture's
``smb2.session.bind_negative_*`` tests pin: the signing algorithm, the
dialect family, multichannel being on, the signed flag, the dialect, the
cipher, the session's state and user, the ClientGuid, the channel limit.

Breaks go to a live channel (3.3.4.6, 3.3.4.7): ``oplock_break_channel``
and ``lease_break_channel`` choose it, and ``BreakDelivery`` watches that the
client's TCP took the notification in; a channel that leaves it
unacknowledged for six retransmission timeouts has stopped responding: it is
closed and a lease break goes again on the next channel.

A session that lives on another node is not here at all: sessions are not
mirrored, so after a failover a bind for one finds no session and gets
STATUS_USER_SESSION_DELETED, and the client sets up a new session and
reconnects its handles (DH2C) as after any failover.
"""

import logging
from typing import Callable

from smbcad.proto.constants import Dialect, SigningAlgorithmId
from smbcad.proto.status import NtStatus
from smbcad.server.adm import SessionState

log = logging.getLogger("smbcad.channels")

# Samba's smbd bounds the retransmission timeout to 0.2..1 s and gives a
# break six of them to be acknowledged by TCP (smb2_server.c, smbd_smb2_break_send).
_RTO_BOUNDS_S = (0.2, 1.0)
_UNACKED_RTOS = 6


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


def oplock_break_channel(session):
    """3.3.4.6 as Windows does it: an oplock break goes to the session's
    newest live channel, once (smbtorture's smb2.multichannel.oplocks.test2
    and test3_windows; Samba with ``smb2 disable oplock break retry``)."""
    live = [conn for conn in session.channels if not conn.closed]
    if live:
        return live[-1]
    conn = session.connection
    return conn if conn is not None and not conn.closed else None


def lease_break_channel(lease, connections):
    """3.3.4.7: a lease break goes to the oldest live connection of the
    lease's ClientGuid (smb2.lease.v2_complex1), and after that one stopped
    responding to the next (smb2.multichannel.leases.test2, test4), else to a
    live channel of a session of one of its opens."""
    candidates = [conn for conn in connections
                  if conn.client_guid == lease.client_guid and not conn.closed
                  and conn.dialect >= Dialect.SMB_2_1]
    if candidates:
        return min(candidates, key=lambda conn: conn.created)
    for open_ in lease.opens:
        session = open_.session
        conn = oplock_break_channel(session) if session is not None else None
        if conn is not None:
            return conn
    return None


class _Watch:
    __slots__ = ("timer", "on_lost")

    def __init__(self, on_lost) -> None:
        self.timer = None
        self.on_lost = on_lost


class BreakDelivery:
    """Whether a break reached the client (3.3.4.6, 3.3.4.7: "if the server
    is unable to send the notification on that channel"): after six
    retransmission timeouts the client's TCP must have acknowledged every
    byte up to the notification.  If not, the channel has stopped
    responding: it is reset (the client reconnects it) and ``on_lost``
    runs, for a lease break to go again on another channel; a channel that
    closes before that runs it at once.  The counts come from the
    connection's sink (smbcad.transport, smbcad.tcp_acks).  A
    ``ConnectionWatcher`` of ``SmbServer.connections``."""

    def __init__(self, call_later: Callable) -> None:
        self.call_later = call_later
        self._watches: dict = {}        # Connection → [(timer, on_lost)]

    def watch(self, connection, on_lost: Callable[[], None] | None) -> None:
        sink = connection.sink
        rto = sink.retransmission_timeout_s()
        if rto is None:
            return                     # not TCP (a unit test's sink): nothing to watch
        mark = sink.bytes_sent()
        low, high = _RTO_BOUNDS_S
        timeout = _UNACKED_RTOS * min(max(rto, low), high)
        watch = _Watch(on_lost)
        watch.timer = self.call_later(timeout,
                                      lambda: self._check(connection, mark, timeout, watch))
        self._watches.setdefault(connection, []).append(watch)

    def _check(self, connection, mark: int, timeout: float, watch: "_Watch") -> None:
        watches = self._watches.get(connection, [])
        if watch in watches:
            watches.remove(watch)
        if not watches:
            self._watches.pop(connection, None)
        acked = connection.sink.bytes_acked()
        if not connection.closed and (acked is None or acked >= mark):
            return
        if not connection.closed:
            log.warning("%s: a break was not acknowledged by TCP within %.1f s "
                        "(%d bytes outstanding); resetting the channel",
                        connection.peer, timeout, mark - acked)
            connection.sink.reset()
            connection.close()
        if watch.on_lost is not None:
            watch.on_lost()

    def connection_added(self, connection) -> None:
        pass

    def connection_removed(self, connection) -> None:
        """The channel is gone with breaks still unconfirmed: they go again
        elsewhere now."""
        for watch in self._watches.pop(connection, ()):
            watch.timer.cancel()
            if watch.on_lost is not None:
                watch.on_lost()

    def tracked(self) -> int:
        return sum(len(watches) for watches in self._watches.values())
