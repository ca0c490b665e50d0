"""The shared JSON-line control protocol: framing (sans-IO), the asyncio
server, and both clients, over real Unix sockets in a temporary directory."""

import asyncio
import json
import os
import stat
import threading
from pathlib import Path

import pytest
import yaml

from smbca import control
from smbca.control import (
    MAX_LINE_BYTES,
    ControlError,
    ControlServer,
    answer,
    decode_request,
    request,
    request_blocking,
)


def echo(message: dict) -> dict:
    if message.get("command") == "fail":
        raise ControlError("refused on purpose")
    return {"echo": message}


def test_default_paths_are_one_directory():
    paths = {control.SMBCAD_SOCKET, control.WITNESSD_SOCKET, control.CLUSDISK_SOCKET}
    assert len(paths) == 3 and {os.path.dirname(p) for p in paths} == {"/run/smbca"}


@pytest.mark.parametrize("line,message", [
    (b'{"event": "status"}', {"event": "status"}),
    (b"status", {"command": "status"}),
    (b"  status \r", {"command": "status"}),
    (b'{"command": "status", "version": 1}', {"command": "status"}),
])
def test_decode_request(line, message):
    assert decode_request(line) == message


@pytest.mark.parametrize("line,error", [
    (b"{nope", "bad request"),
    (b"[1, 2]", "JSON object"),
    (b"rm -rf /", "neither JSON nor a command"),
    (b'{"command": "release", "version": 2}',
     r"unsupported control protocol version 2 \(this daemon speaks 1\)"),
    (b'{"command": "status", "version": "1"}', "unsupported control protocol version '1'"),
])
def test_decode_request_errors(line, error):
    with pytest.raises(ControlError, match=error):
        decode_request(line)


def test_answers_carry_ok_and_errors_go_back():
    assert json.loads(asyncio.run(answer(echo, b"ping"))) == {"ok": True,
                                                             "echo": {"command": "ping"}}
    assert json.loads(asyncio.run(answer(echo, b"fail"))) == {"ok": False,
                                                             "error": "refused on purpose"}


def test_a_handler_may_be_a_coroutine():
    async def later(message: dict) -> dict:
        await asyncio.sleep(0)
        if message.get("command") == "fail":
            raise ControlError("not now")
        return {"done": True}
    assert json.loads(asyncio.run(answer(later, b"go"))) == {"ok": True, "done": True}
    assert json.loads(asyncio.run(answer(later, b"fail"))) == {"ok": False, "error": "not now"}


def test_lines_are_framed_and_answered_in_order(tmp_path):
    async def scenario():
        server = ControlServer(str(tmp_path / "daemon.sock"), echo)
        await server.start()
        reader, writer = await asyncio.open_unix_connection(server.path)
        writer.write(b'{"a": ')
        await writer.drain()
        writer.write(b'1}\n\nfail\n')
        first, second = await reader.readline(), await reader.readline()
        assert json.loads(first) == {"ok": True, "echo": {"a": 1}}
        assert json.loads(second)["ok"] is False
        writer.write(b"x" * (MAX_LINE_BYTES + 1))
        assert json.loads(await reader.readline())["error"] == "request line too long"
        assert await reader.read() == b""                  # and the server hung up
        writer.close()
        await server.close()
    asyncio.run(scenario())


def test_server_and_both_clients(tmp_path):
    path = str(tmp_path / "run" / "daemon.sock")
    loop = asyncio.new_event_loop()
    server = ControlServer(path, echo)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "daemon.sock").write_text("stale")
    loop.run_until_complete(server.start())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert loop.run_until_complete(request(path, {"x": 1})) == {"ok": True, "echo": {"x": 1}}
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        assert request_blocking(path, {"command": "fail"}) == {"ok": False,
                                                               "error": "refused on purpose"}
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
    loop.run_until_complete(server.close())
    assert not os.path.exists(path)
    with pytest.raises(ControlError, match="daemon.sock"):
        request_blocking(path, {"x": 1})
    with pytest.raises(ControlError):
        loop.run_until_complete(request(path, {"x": 1}, 1.0))
    loop.close()


def test_a_silent_peer_is_a_timeout(tmp_path):
    async def scenario():
        async def mute(reader, writer):
            await reader.readline()
            await asyncio.sleep(5)
        server = await asyncio.start_unix_server(mute, str(tmp_path / "mute.sock"))
        with pytest.raises(ControlError, match="no answer"):
            await request(str(tmp_path / "mute.sock"), {"x": 1}, 0.2)
        server.close()
    asyncio.run(scenario())


def test_a_peer_that_hangs_up_is_an_error(tmp_path):
    async def scenario():
        async def rude(reader, writer):
            await reader.readline()
            writer.close()
        server = await asyncio.start_unix_server(rude, str(tmp_path / "rude.sock"))
        with pytest.raises(ControlError, match="without an answer"):
            await request(str(tmp_path / "rude.sock"), {"x": 1})
        server.close()
    asyncio.run(scenario())


def test_the_example_configs_agree_on_every_socket():
    config_dir = Path(__file__).resolve().parents[3] / "config"
    clusdisk = yaml.safe_load((config_dir / "clusdisk-example.yaml").read_text())["control"]
    witnessd = yaml.safe_load((config_dir / "witnessd-example.yaml").read_text())["server"]
    smbcad = (config_dir / "smbcad.yaml").read_text()
    assert clusdisk["socket"] == control.CLUSDISK_SOCKET
    assert clusdisk["witnessd_socket"] == witnessd["control_socket"] == control.WITNESSD_SOCKET
    assert clusdisk["smbcad_socket"] == control.SMBCAD_SOCKET
    assert f"control_socket: {control.SMBCAD_SOCKET}" in smbcad


def test_the_cluster_example_loads_and_matches_clusdisk(tmp_path):
    """config/smbcad-cluster-example.yaml is a valid smbcad config (its key
    file pointed at a test key) and names clusdisk's smbcad socket and the
    same aggregates and mount points as clusdisk-example.yaml."""
    from smbcad.config import load_yaml
    config_dir = Path(__file__).resolve().parents[3] / "config"
    raw = yaml.safe_load((config_dir / "smbcad-cluster-example.yaml").read_text())
    key = tmp_path / "cluster.key"
    key.write_text(bytes(range(32)).hex())
    raw["cluster"]["key_file"] = str(key)
    path = tmp_path / "smbcad.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_yaml(str(path))
    clusdisk = yaml.safe_load((config_dir / "clusdisk-example.yaml").read_text())
    assert cfg.cluster.control_socket == clusdisk["control"]["smbcad_socket"]
    assert cfg.cluster.cluster_key == bytes(range(32))
    assert {(a.name, a.mount_point) for a in cfg.cluster.aggregates} == {
        (a["name"], a["mount_point"]) for a in clusdisk["aggregates"]}
    addresses = {lif["address"].split("/")[0] for a in clusdisk["aggregates"] for lif in a["lifs"]}
    assert {address for a in cfg.cluster.aggregates for address in a.addresses} == addresses


def test_the_three_examples_name_the_same_nodes_and_lifs():
    """clusdisk's events carry its node names as witness interface groups and
    its LIF addresses; witnessd's example must list the same (and smbcad's
    the same aggregate addresses, checked above)."""
    config_dir = Path(__file__).resolve().parents[3] / "config"
    clusdisk = yaml.safe_load((config_dir / "clusdisk-example.yaml").read_text())
    witness = yaml.safe_load((config_dir / "witnessd-example.yaml").read_text())
    names = {node["id"]: node["name"] for node in clusdisk["cluster"]["nodes"]}
    assert set(witness["witness"]["nodes"]) == set(names.values())
    assert witness["witness"]["local_node"] == names[clusdisk["cluster"]["node_id"]]
    lifs = {(a["home"], lif["address"].split("/")[0])
            for a in clusdisk["aggregates"] for lif in a["lifs"]}
    assert {(i["node"], i["ipv4"]) for i in witness["interfaces"]} == lifs
