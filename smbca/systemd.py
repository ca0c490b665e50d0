"""systemd's notification datagrams for Type=notify units (sd_notify(3)):
READY=1, STOPPING=1, WATCHDOG=1; and the watchdog pinger every daemon runs
on its event loop (sd_watchdog_enabled(3))."""

import asyncio
import logging
import socket
from collections.abc import Callable

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


async def feed_watchdog(notify_socket: str | None, watchdog_usec: int | None,
                        healthy: Callable[[], bool] = lambda: True) -> None:
    """WATCHDOG=1 every half ``watchdog_usec`` while ``healthy()``; returns at
    once when systemd set no watchdog.  Run as a task on the daemon's own
    loop, so a loop that hangs stops the pings and systemd restarts it."""
    if not watchdog_usec:
        return
    period = watchdog_usec / 2e6
    while True:
        await asyncio.sleep(period)
        if healthy():
            sd_notify(notify_socket, "WATCHDOG=1")
