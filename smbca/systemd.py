"""systemd's notification datagrams for Type=notify units (sd_notify(3)):
READY=1, STOPPING=1, WATCHDOG=1."""

import logging
import socket

log = logging.getLogger("smbca.systemd")


def sd_notify(path: str | None, message: str) -> bool:
    """Send one datagram to systemd's NOTIFY_SOCKET without ever blocking the
    event loop; False if there is no socket or the message could not go.

    Non-blocking because a watchdog ping from the loop must not stall it when
    systemd is slow to read; a lost datagram is logged, never raised."""
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path   # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                           | socket.SOCK_NONBLOCK) as sock:
            sock.connect(address)
            sock.send(message.encode())
    except OSError as exc:
        log.warning("sd_notify %s: %s", message, exc)
        return False
    return True
