"""Control socket, notifications and sd_notify over real Unix sockets in a
temporary directory (no root needed)."""

import asyncio
import json
import socket

import pytest

from clusdisk.control import ControlServer, Notifier, NotifyError, request, sd_notify
from clusdisk.resources import Aggregate, Lif

A1 = Aggregate("aggr1", 1, "naa.01", "xfs", "/srv/aggr1", lifs=(Lif("l", "192.0.2.10/24", "eth0"),))


def test_sd_notify(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        assert sd_notify(path, "READY=1")
        assert listener.recv(100) == b"READY=1"
    assert sd_notify(None, "READY=1") is False


def test_control_status_round_trip(tmp_path):
    async def scenario():
        server = ControlServer(str(tmp_path / "run" / "clusdisk.sock"), lambda: {"state": "online"})
        await server.start()
        reply = await request(server.path, {"command": "status"})
        assert reply == {"ok": True, "status": {"state": "online"}}
        reader, writer = await asyncio.open_unix_connection(server.path)
        writer.write(b"status\n")
        assert json.loads(await reader.readline())["ok"] is True
        writer.close()
        assert (await request(server.path, {"command": "reboot"}))["ok"] is False
        reader, writer = await asyncio.open_unix_connection(server.path)
        writer.write(b"{not json\n")
        assert "bad request" in json.loads(await reader.readline())["error"]
        writer.close()
        await server.close()
        with pytest.raises(NotifyError):
            await request(server.path, {"command": "status"}, 1.0)
    asyncio.run(scenario())


def test_notifier(tmp_path):
    received = []

    async def peer(reader, writer):
        message = json.loads(await reader.readline())
        received.append(message)
        ok = message.get("event") != "release"
        writer.write(json.dumps({"ok": ok, "error": "busy"}).encode() + b"\n")
        await writer.drain()
        writer.close()

    async def scenario():
        smbcad = await asyncio.start_unix_server(peer, str(tmp_path / "smbcad.sock"))
        witnessd = await asyncio.start_unix_server(peer, str(tmp_path / "witnessd.sock"))
        notifier = Notifier(1, str(tmp_path / "smbcad.sock"), str(tmp_path / "witnessd.sock"),
                            node_name="a")
        await notifier.smbcad("adopt", A1)
        await notifier.witness("online", A1)
        with pytest.raises(NotifyError, match="smbcad refused .*release.*: busy"):
            await notifier.smbcad("release", A1)
        await Notifier(1).smbcad("adopt", A1)                      # no socket: skipped
        with pytest.raises(NotifyError):
            await Notifier(1, str(tmp_path / "absent.sock")).smbcad("adopt", A1)
        smbcad.close()
        witnessd.close()
    asyncio.run(scenario())
    assert received[0] == {"type": "aggregate", "event": "adopt", "aggregate": "aggr1",
                           "mount_point": "/srv/aggr1", "node": 1}
    assert received[1] == {"event": "interface", "group": "a", "state": "available",
                           "ipv4": "192.0.2.10"}


def test_sd_notify_never_blocks(tmp_path):
    path = str(tmp_path / "full")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        results = [sd_notify(path, "WATCHDOG=1") for _ in range(5000)]   # nobody reads
    assert results[0] is True and results[-1] is False
    assert sd_notify(str(tmp_path / "absent"), "READY=1") is False
