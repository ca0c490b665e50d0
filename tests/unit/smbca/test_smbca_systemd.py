"""sd_notify over a real datagram socket: delivered, skipped, never blocking."""

import asyncio
import socket

from smbca.systemd import feed_watchdog, sd_notify


def test_sd_notify(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        assert sd_notify(path, "READY=1")
        assert listener.recv(100) == b"READY=1"
    assert sd_notify(None, "READY=1") is False


def test_sd_notify_never_blocks(tmp_path):
    path = str(tmp_path / "full")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        results = [sd_notify(path, "WATCHDOG=1") for _ in range(5000)]   # nobody reads
    assert results[0] is True and results[-1] is False
    assert sd_notify(str(tmp_path / "absent"), "READY=1") is False


def test_feed_watchdog_pings_while_healthy(tmp_path):
    path = str(tmp_path / "notify")
    health = {"ok": True}

    async def run():
        task = asyncio.create_task(feed_watchdog(path, 20_000, lambda: health["ok"]))
        await asyncio.sleep(0.1)                    # about 10 periods of 10 ms
        health["ok"] = False
        await asyncio.sleep(0.05)
        task.cancel()

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.setblocking(False)
        asyncio.run(run())
        pings = []
        while True:
            try:
                pings.append(listener.recv(100))
            except BlockingIOError:
                break
    assert len(pings) >= 3 and set(pings) == {b"WATCHDOG=1"}


def test_feed_watchdog_without_watchdog_returns():
    asyncio.run(asyncio.wait_for(feed_watchdog("/nonexistent", None), 1.0))
