"""How much of what we sent a TCP peer has acknowledged, and closing with a
reset: the socket calls behind break delivery ([MS-SMB2] 3.3.4.6, 3.3.4.7;
smbcad.server.channels.BreakDelivery).  Used by smbcad/transport.py only.

Samba's smbd counts the same way (smb2_server.c): bytes still in the
kernel's send queue unacknowledged (SIOCOUTQ, which is TIOCOUTQ), against
the retransmission timeout from TCP_INFO.
"""

import fcntl
import socket
import struct
import termios

# struct tcp_info (linux/tcp.h): seven one-byte fields and a bitfield byte,
# then tcpi_rto in microseconds.
_TCP_INFO_RTO = struct.Struct("<8xI")
_OUTQ = struct.Struct("<i")
_LINGER_RESET = struct.pack("ii", 1, 0)     # SO_LINGER on, 0 s: close() sends RST


def unacknowledged_bytes(sock) -> int | None:
    """Bytes in ``sock``'s send queue the peer has not acknowledged."""
    try:
        return _OUTQ.unpack(fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                        bytes(_OUTQ.size)))[0]
    except (OSError, ValueError):        # ValueError: closed (fileno -1)
        return None


def retransmission_timeout_s(sock) -> float | None:
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_RTO.size)
    except OSError:
        return None
    if len(info) < _TCP_INFO_RTO.size:
        return None
    return _TCP_INFO_RTO.unpack_from(info)[0] / 1e6


def reset_on_close(sock) -> None:
    """Make the coming close() send a RST (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass                          # already closed: nothing left to reset
