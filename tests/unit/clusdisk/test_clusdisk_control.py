"""clusdisk's control socket and its events to smbcad and witnessd, over real
Unix sockets in a temporary directory (no root needed)."""

import asyncio
import json

import pytest

from clusdisk.control import Notifier, status_handler
from clusdisk.resources import Aggregate, Lif
from smbca.control import ControlError, ControlServer, request

A1 = Aggregate("aggr1", 1, "naa.01", "xfs", "/srv/aggr1", lifs=(Lif("l", "192.0.2.10/24", "eth0"),))


def test_control_status_round_trip(tmp_path):
    async def scenario():
        server = ControlServer(str(tmp_path / "run" / "clusdisk.sock"),
                               status_handler(lambda: {"state": "online"}))
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
        with pytest.raises(ControlError):
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
        with pytest.raises(ControlError, match="smbcad refused .*release.*: busy"):
            await notifier.smbcad("release", A1, planned=True)
        await Notifier(1).smbcad("adopt", A1)                      # no socket: skipped
        with pytest.raises(ControlError):
            await Notifier(1, str(tmp_path / "absent.sock")).smbcad("adopt", A1)
        smbcad.close()
        witnessd.close()
    asyncio.run(scenario())
    # The wire form smbcad and witnessd were written against.
    assert received[0] == {"type": "aggregate", "event": "adopt", "aggregate": "aggr1",
                           "mount_point": "/srv/aggr1", "node": 1, "version": 1}
    assert received[1] == {"event": "interface", "group": "a", "state": "available",
                           "ipv4": "192.0.2.10", "version": 1}
    assert received[2] == {"type": "aggregate", "event": "release", "aggregate": "aggr1",
                           "mount_point": "/srv/aggr1", "node": 1, "planned": True,
                           "version": 1}
