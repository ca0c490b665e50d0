"""Operating the daemons (issue 15 items 2 and 3, and the admin command's
plumbing of item 1): ``--version`` and ``--check-config`` of the three
daemons and ``smbca``, range errors and "did you mean" for mistyped keys,
SIGHUP reloads that apply what can change live and log what needs a
restart, quick mode's own state directory, and where ``smbca`` finds smbcad.
"""

import logging
import socket
from pathlib import Path

import pytest
import yaml

from clusdisk import cli as clusdisk_cli
from clusdisk import config as clusdisk_config
from clusdisk.daemon import Daemon as ClusdiskDaemon
from smbca import admin, admin_node
from smbca.config import ConfigError
from smbca.version import version
from smbcad import cli as smbcad_cli
from smbcad import config as smbcad_config
from witnessd import cli as witnessd_cli

CONFIG = Path(__file__).resolve().parents[2] / "config"


# --- files the tests write -------------------------------------------------------------


def smbcad_yaml(tmp_path: Path, **server) -> Path:
    share = tmp_path / "data"
    share.mkdir(exist_ok=True)
    document = yaml.safe_load((CONFIG / "smbcad.yaml").read_text())
    document["shares"][0]["path"] = str(share)
    document["server"].update(state_dir=str(tmp_path / "state"),
                              control_socket=str(tmp_path / "smbcad.sock"),
                              metrics_listen=None, **server)
    path = tmp_path / "smbcad.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def clusdisk_yaml(tmp_path: Path, edit=None) -> Path:
    key = tmp_path / "cluster.key"
    key.write_text("00" * 32)
    document = yaml.safe_load((CONFIG / "clusdisk-example.yaml").read_text())
    document["cluster"]["key_file"] = str(key)
    if edit is not None:
        edit(document)
    path = tmp_path / "clusdisk.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def witnessd_yaml(tmp_path: Path, edit=None) -> Path:
    document = yaml.safe_load((CONFIG / "witnessd-example.yaml").read_text())
    if edit is not None:
        edit(document)
    path = tmp_path / "witnessd.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


# --- --version ---------------------------------------------------------------------------


@pytest.mark.parametrize("main, prog", [(smbcad_cli.main, "smbcad"),
                                        (witnessd_cli.main, "witnessd"),
                                        (clusdisk_cli.main, "clusdisk"), (admin.main, "smbca")])
def test_every_command_and_daemon_says_its_version(main, prog, capsys):
    assert version() != "unknown"
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"{prog} (smbca) {version()}\n"


# --- --check-config ---------------------------------------------------------------------


def test_smbcad_check_config_validates_and_touches_nothing(tmp_path, capsys):
    path = smbcad_yaml(tmp_path)
    assert smbcad_cli.main(["--config", str(path), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert f"config: {path}: valid" in out and f"share data: {tmp_path}/data" in out
    assert f"control socket: {tmp_path}/smbcad.sock" in out
    assert not (tmp_path / "state").exists() and not (tmp_path / "smbcad.sock").exists()


def test_witnessd_and_clusdisk_check_config(tmp_path, capsys):
    assert witnessd_cli.main(["--config", str(witnessd_yaml(tmp_path)), "--check-config"]) == 0
    assert "net name: CLUSTER" in capsys.readouterr().out
    assert clusdisk_cli.main(["--config", str(clusdisk_yaml(tmp_path)), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "cluster smbca: this node NODEA (id 1), partner NODEB (id 2)" in out
    assert "aggregate aggr1: home NODEA" in out


def _typo(section: str, good: str, bad: str):
    def edit(document):
        document[section][bad] = document[section].pop(good)
    return edit


@pytest.mark.parametrize("daemon", ["smbcad", "witnessd", "clusdisk"])
def test_a_mistyped_key_is_exit_2_with_a_suggestion(daemon, tmp_path, capsys):
    if daemon == "smbcad":
        path = smbcad_yaml(tmp_path)
        path.write_text(path.read_text().replace("shares:", "sahres:"))
        main, wanted = smbcad_cli.main, "sahres: unknown key (did you mean shares?)"
    elif daemon == "witnessd":
        path = witnessd_yaml(tmp_path, _typo("witness", "local_node", "lcoal_node"))
        main = witnessd_cli.main
        wanted = "witness.lcoal_node: unknown key (did you mean witness.local_node?)"
    else:
        path = clusdisk_yaml(tmp_path, _typo("heartbeat", "miss_count", "mis_count"))
        main = clusdisk_cli.main
        wanted = "heartbeat.mis_count: unknown key (did you mean heartbeat.miss_count?)"
    assert main(["--config", str(path), "--check-config"]) == 2
    assert wanted in capsys.readouterr().err


def _set(section: str, key: str, value):
    def edit(document):
        target = document
        for part in section.split("."):
            target = target[part] if not part.isdigit() else target[int(part)]
        target[key] = value
    return edit


@pytest.mark.parametrize("where, key", [("server", "drain_timeout_s"),
                                        ("server", "idle_timeout_s"),
                                        ("server", "auth_timeout_s"),
                                        ("server", "max_connections"),
                                        ("shares.0", "ca_timeout_ms")])
def test_smbcad_negative_timeouts_and_limits_are_range_errors(where, key, tmp_path, capsys):
    path = smbcad_yaml(tmp_path)
    document = yaml.safe_load(path.read_text())
    _set(where, key, -1)(document)
    path.write_text(yaml.safe_dump(document))
    assert smbcad_cli.main(["--config", str(path), "--check-config"]) == 2
    dotted = "shares[0]" if where == "shares.0" else where
    assert f"{dotted}.{key}: must be" in capsys.readouterr().err


@pytest.mark.parametrize("where, key", [("server", "idle_timeout_s"),
                                        ("server", "drain_timeout_s"),
                                        ("witness", "forced_unregister_after_s"),
                                        ("witness", "max_registrations")])
def test_witnessd_negative_timeouts_and_limits_are_range_errors(where, key, tmp_path, capsys):
    path = witnessd_yaml(tmp_path, _set(where, key, -1))
    assert witnessd_cli.main(["--config", str(path), "--check-config"]) == 2
    assert f"{where}.{key}: must be at least" in capsys.readouterr().err


@pytest.mark.parametrize("where, key", [("heartbeat", "interval_ms"), ("scsi", "timeout_ms"),
                                        ("scsi", "retries"), ("arbitration", "settle_ms"),
                                        ("failover", "auto_giveback_s")])
def test_clusdisk_negative_timeouts_and_limits_are_range_errors(where, key, tmp_path, capsys):
    path = clusdisk_yaml(tmp_path, _set(where, key, -1))
    assert clusdisk_cli.main(["--config", str(path), "--check-config"]) == 2
    assert f"{where}.{key}: must be at least" in capsys.readouterr().err


# --- the control socket's config --------------------------------------------------------


def test_quick_mode_has_its_own_state_directory_and_control_socket(tmp_path):
    (tmp_path / "d").mkdir()
    cfg = smbcad_config.from_quick_args(smbcad_config.QuickArgs(
        listen=("127.0.0.1:4455",), shares=(f"d={tmp_path / 'd'}",), users=("u:p",)))
    assert cfg.server.state_dir == f"{smbcad_config.QUICK_STATE_ROOT}/127.0.0.1-4455"
    assert cfg.server.state_dir != smbcad_config.DEFAULT_STATE_DIR
    assert cfg.server.control_socket == f"{cfg.server.state_dir}/smbcad.sock"
    chosen = smbcad_config.from_quick_args(smbcad_config.QuickArgs(
        listen=("127.0.0.1:4455",), shares=(f"d={tmp_path / 'd'}",), users=("u:p",),
        state_dir=str(tmp_path / "s")))
    assert chosen.server.control_socket == f"{tmp_path}/s/smbcad.sock"


def test_cluster_control_socket_is_the_same_key_as_server_control_socket(tmp_path):
    path = smbcad_yaml(tmp_path)
    document = yaml.safe_load(path.read_text())
    del document["server"]["control_socket"]
    document["cluster"] = {"node_id": 1, "name": "pair",
                           "control_socket": str(tmp_path / "c.sock")}
    path.write_text(yaml.safe_dump(document))
    cfg = smbcad_config.load_yaml(str(path))
    assert cfg.server.control_socket == cfg.cluster.control_socket == str(tmp_path / "c.sock")
    document["server"]["control_socket"] = str(tmp_path / "other.sock")
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match="cluster.control_socket: differs"):
        smbcad_config.load_yaml(str(path))


# --- SIGHUP -----------------------------------------------------------------------------


def test_smbcad_reload_applies_users_and_logs_what_needs_a_restart(tmp_path, caplog):
    from smbcad.daemon import Daemon
    path = smbcad_yaml(tmp_path)
    cfg, reload = smbcad_cli.load(["--config", str(path)])
    daemon = Daemon(cfg, reload)
    document = yaml.safe_load(path.read_text())
    document["users"] = [{"name": "carol", "password": "pw"}]
    document["server"]["listen"] = ["127.0.0.1:4456"]
    document["server"]["max_credits"] = 512
    path.write_text(yaml.safe_dump(document))
    with caplog.at_level(logging.INFO):
        assert daemon.reload()
    assert [u.name for u in daemon.cfg.users] == ["carol"]           # live
    assert daemon.server.config.server.max_credits == 512             # live
    assert [str(a) for a in daemon.cfg.server.listen] == ["0.0.0.0:445"]   # kept
    assert ("reload: server.listen changed; it takes effect at the next restart"
            in caplog.text)
    path.write_text(path.read_text().replace("shares:", "sahres:"))
    with caplog.at_level(logging.INFO):
        assert not daemon.reload()
    assert "reload refused, keeping the running configuration: sahres" in caplog.text
    assert [u.name for u in daemon.cfg.users] == ["carol"]


def test_smbcad_reload_keeps_shares_on_aggregates_until_a_restart(tmp_path):
    share = smbcad_config.ShareConfig("vm", "/srv/aggr1/vm", ca=True, aggregate="aggr1")
    local = smbcad_config.ShareConfig("data", str(tmp_path))
    server = smbcad_config.ServerConfig(listen=())
    running = smbcad_config.Config(server, (share, local))
    moved = smbcad_config.ShareConfig("vm", "/srv/aggr1/vm2", ca=True, aggregate="aggr1")
    added = smbcad_config.ShareConfig("new", str(tmp_path))
    cfg, changed = smbcad_config.for_reload(running, smbcad_config.Config(server, (moved, added)))
    assert changed == ("shares[vm]",)
    assert [s.name for s in cfg.shares] == ["vm", "new"] and cfg.shares[0] is share


def test_clusdisk_reload_applies_failover_and_logs_what_needs_a_restart(tmp_path, caplog):
    path = clusdisk_yaml(tmp_path)
    daemon = ClusdiskDaemon(clusdisk_config.load_yaml(str(path)))
    clusdisk_yaml(tmp_path, lambda d: (d["failover"].update(auto_giveback_s=30),
                                       d["heartbeat"].update(miss_count=7)))
    with caplog.at_level(logging.INFO):
        assert daemon.reload()
    assert daemon.cfg.failover.auto_giveback_s == 30                     # live
    assert daemon.cfg.heartbeat.miss_count == 5                          # kept
    assert "reload: heartbeat changed; it takes effect at the next restart" in caplog.text
    clusdisk_yaml(tmp_path, _typo("heartbeat", "miss_count", "mis_count"))
    with caplog.at_level(logging.INFO):
        assert not daemon.reload()
    assert "reload refused" in caplog.text and daemon.cfg.failover.auto_giveback_s == 30


# --- where smbca finds smbcad -----------------------------------------------------------


def _listening(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    return sock


def test_smbca_finds_a_quick_mode_smbcad_or_the_configured_socket(tmp_path, monkeypatch):
    monkeypatch.setattr(admin_node, "SMBCAD_QUICK_STATE_ROOT", str(tmp_path / "quick"))
    monkeypatch.setattr(admin_node, "_DEFAULT_SOCKETS",
                        {**admin_node._DEFAULT_SOCKETS, "smbcad": str(tmp_path / "none.sock")})
    configs = tmp_path / "etc"
    configs.mkdir()
    assert admin_node.locate("smbcad", None, str(configs)).source == "default"
    with _listening(tmp_path / "quick" / "127.0.0.1-4455" / "smbcad.sock"):
        where = admin_node.locate("smbcad", None, str(configs))
        assert (where.path, where.source) == (
            str(tmp_path / "quick" / "127.0.0.1-4455" / "smbcad.sock"), "quick mode")
        with _listening(tmp_path / "quick" / "127.0.0.1-4456" / "smbcad.sock"):
            with pytest.raises(admin_node.NotRunning, match="choose one with --socket"):
                admin_node.locate("smbcad", None, str(configs))
    (configs / "smbcad.yaml").write_text("server:\n  control_socket: /run/x/smbcad.sock\n")
    assert admin_node.locate("smbcad", None, str(configs)) == admin_node.Where(
        "smbcad", "/run/x/smbcad.sock", str(configs / "smbcad.yaml"))
    assert admin_node.locate("smbcad", "/given.sock", str(configs)).source == "--socket"


def test_a_daemon_that_is_not_there_is_named_with_where_we_looked(tmp_path):
    where = admin_node.Where("witnessd", str(tmp_path / "w.sock"), "default")
    with pytest.raises(admin_node.NotRunning) as caught:
        admin_node.ask(where, {"event": "status"})
    assert str(caught.value) == (f"witnessd is not running here: no control socket at "
                                 f"{tmp_path}/w.sock (the default path)")
    with _listening(tmp_path / "w.sock"):      # bound, never listening: refused
        with pytest.raises(admin_node.NotRunning, match="does not answer on"):
            admin_node.ask(where, {"event": "status"})


def test_release_disconnected_asks_unless_yes():
    parsed = admin._parser().parse_args(["release-disconnected", "--all"])
    assert admin.admin_smb.request_of(parsed) == {"command": "release-disconnected",
                                                  "all": True}
    parsed = admin._parser().parse_args(["close-open", "0x10", "--yes"])
    assert parsed.yes and admin.admin_smb.request_of(parsed) == {"command": "close-open",
                                                                 "id": "0x10"}
    with pytest.raises(SystemExit):
        admin._parser().parse_args(["release-disconnected"])      # an id or --all


def test_a_control_socket_in_use_is_not_taken_over(tmp_path):
    """A second smbcad (a test, a quick-mode run) never unlinks the socket of a
    running one; a stale socket file is replaced."""
    import asyncio
    import errno

    from smbca.control import ControlServer, request

    async def main():
        path = str(tmp_path / "smbcad.sock")
        first = ControlServer(path, lambda message: {"who": "first"})
        await first.start()
        with pytest.raises(OSError) as refused:
            await ControlServer(path, lambda message: {"who": "second"}).start()
        answer = await request(path, {"command": "status"})
        await first.close()
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()                               # the file stays, nobody listens
        second = ControlServer(path, lambda message: {"who": "second"})
        await second.start()
        again = await request(path, {"command": "status"})
        await second.close()
        return refused.value.errno, answer["who"], again["who"]
    assert asyncio.run(main()) == (errno.EADDRINUSE, "first", "second")


@pytest.mark.parametrize("request_, error", [
    ({"command": "close-open"}, "close-open needs id"),
    ({"command": "close-open", "id": "vm.vhdx"}, "id must be a number"),
    ({"command": "close-session", "id": True}, "id must be a number"),
    ({"command": "release-disconnected"}, "needs an id or all: true, not both"),
    ({"command": "release-disconnected", "id": "0x1", "all": True}, "not both"),
    ({"command": "opens", "disconnected": "yes"}, "disconnected must be true or false"),
    ({"command": "shares", "verbose": True}, "shares takes no verbose"),
])
def test_admin_requests_that_are_malformed_are_refused_before_anything_is_done(request_, error):
    """Refused while parsing: the server (None here) is never reached."""
    import asyncio

    from smbcad.admin_control import AdminControl
    reply = asyncio.run(AdminControl(None, None).handle(request_))
    assert reply["ok"] is False and error in reply["error"]
