"""smbcad configuration: every bad setting is one error naming its key."""

import subprocess
import sys
from pathlib import Path

import pytest

from smbca.config import ConfigError, ListenAddress
from smbcad import config
from smbcad.cli import load


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "smbcad.yaml"
    path.write_text(text)
    return str(path)


def test_good_yaml(tmp_path):
    share = tmp_path / "s"
    share.mkdir()
    cfg = config.load_yaml(_write(tmp_path, f"""
server:
  listen: ["127.0.0.1:4455", "[::1]:4456"]
  signing: enabled
  encryption: off
shares:
  - {{name: data, path: {share}, ca: true, ca_timeout_ms: 120000}}
users:
  - {{name: alice, password: secret}}
"""))
    assert cfg.server.listen[1] == ListenAddress("::1", 4456)
    assert cfg.server.encryption == "off" and not cfg.server.signing_required
    assert cfg.shares[0].ca and cfg.shares[0].ca_timeout_ms == 120000
    assert cfg.shares[0].case_sensitive is False         # Windows' default


def test_case_sensitive_share(tmp_path):
    share = tmp_path / "s"
    share.mkdir()
    cfg = config.load_yaml(_write(tmp_path, f"""
shares:
  - {{name: data, path: {share}, case_sensitive: true}}
users:
  - {{name: alice, password: secret}}
"""))
    assert cfg.shares[0].case_sensitive
    cfg, _ = load(["--share", f"data={tmp_path},case_sensitive", "--user", "u:p"])
    assert cfg.shares[0].case_sensitive


@pytest.mark.parametrize("yaml_text, key", [
    ("server: {signing: maybe}\nshares: []", "server.signing"),
    ("server: {listen: ['1.2.3.4:99999']}\nshares: []", "server.listen[0]"),
    ("server: {bogus: 1}", "server.bogus"),
    ("shares: [{name: a}]", "shares[0].path"),
    ("shares: [{name: a, path: relative}]\nusers: [{name: u, password: p}]", "shares[0].path"),
    ("shares: [{name: 'a/b', path: /tmp}]\nusers: [{name: u, password: p}]", "shares[0].name"),
    ("shares: [{name: a, path: /tmp}]\nusers: [{name: u}]", "users[0]"),
    ("shares: [{name: a, path: /tmp}]\nusers: [{name: u, nt_hash: zz}]", "users[0].nt_hash"),
    ("shares: [{name: a, path: /tmp}]", "users"),
    ("shares: [{name: a, path: /tmp}, {name: A, path: /tmp}]\nusers: [{name: u, password: p}]",
     "shares[1].name"),
    ("server: {max_io_bytes: 12}\nshares: [{name: a, path: /tmp}]\nusers: [{name: u, password: p}]",
     "server.max_io_bytes"),
    (": : :", "--config"),
    ("server: {max_connections_per_client: 0}\nshares: [{name: a, path: /tmp}]\n"
     "users: [{name: u, password: p}]", "server.max_connections_per_client"),
    ("server: {auth_timeout_s: 0}\nshares: [{name: a, path: /tmp}]\n"
     "users: [{name: u, password: p}]", "server.auth_timeout_s"),
    ("server: {idle_timeout_s: -1}\nshares: [{name: a, path: /tmp}]\n"
     "users: [{name: u, password: p}]", "server.idle_timeout_s"),
    ("server: {max_async_requests: 1}\nshares: [{name: a, path: /tmp}]\n"
     "users: [{name: u, password: p}]", "server.max_async_requests"),
    ("server: {max_async_requests_per_session: 1}\nshares: [{name: a, path: /tmp}]\n"
     "users: [{name: u, password: p}]", "server.max_async_requests_per_session"),
    ("server: {send_timeout_s: 0}\nshares: [{name: a, path: /tmp}]\n"
     "users: [{name: u, password: p}]", "server.send_timeout_s"),
    ("server: {max_outstanding_requests: 70000}\nshares: [{name: a, path: /tmp}]\n"
     "users: [{name: u, password: p}]", "server.max_outstanding_requests"),
    ("server: {max_connections: yes}\nshares: [{name: a, path: /tmp}]\n"
     "users: [{name: u, password: p}]", "server.max_connections"),
    ("shares: [{name: a, path: /tmp, case_sensitive: sometimes}]\n"
     "users: [{name: u, password: p}]", "shares[0].case_sensitive"),
    ("server: {workers: 0}\nshares: [{name: a, path: /tmp}]\n"
     "users: [{name: u, password: p}]", "server.workers"),
    ("server: {workers: 257}\nshares: [{name: a, path: /tmp}]\n"
     "users: [{name: u, password: p}]", "server.workers"),
    ("server: {worker_routing_seed: -1}\nshares: [{name: a, path: /tmp}]\n"
     "users: [{name: u, password: p}]", "server.worker_routing_seed"),
])
def test_bad_yaml_names_the_key(tmp_path, yaml_text, key):
    with pytest.raises(ConfigError) as err:
        config.load_yaml(_write(tmp_path, yaml_text))
    assert err.value.key == key


def test_quick_mode(tmp_path):
    cfg, reload = load(["--listen", "127.0.0.1:4455", "--share", f"data={tmp_path},ca,encrypt",
                        "--user", "alice:se:cret", "--state-dir", str(tmp_path)])
    assert cfg.shares[0].ca and cfg.shares[0].encrypt
    assert cfg.users[0].password == "se:cret"
    assert reload() == cfg


def test_quick_mode_smbpasswd_file(tmp_path):
    passwd = tmp_path / "smbpasswd"
    passwd.write_text("bob:1000:XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:"
                      "8846F7EAEE8FB117AD06BDD830B7586C:[U          ]:LCT-00000000:\n")
    cfg, _ = load(["--share", f"data={tmp_path}", "--user", str(passwd)])
    assert cfg.smbpasswd_files == (str(passwd),)


@pytest.mark.parametrize("argv, key", [
    (["--share", "nopath"], "--share[0]"),
    (["--share", "a=/tmp,bogus", "--user", "u:p"], "--share[0]"),
    (["--share", "a=/tmp", "--user", "nocolon"], "--user[0]"),
    (["--user", "u:p"], "--share"),
])
def test_bad_flags_name_the_key(argv, key):
    with pytest.raises(ConfigError) as err:
        load(argv)
    assert err.value.key == key


def test_cli_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "smbcad", "--share", "x=/nonexistent",
                           "--user", "u:p"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "--share[0]" not in proc.stderr or "shares[0].path" in proc.stderr or "path" in proc.stderr
    assert proc.stderr.startswith("smbcad: ")


def test_limit_defaults_are_the_documented_ones(tmp_path):
    """config/smbcad.yaml shows the defaults; loading it gives the same limits."""
    share = tmp_path / "s"
    share.mkdir()
    cfg = config.load_yaml(_write(tmp_path, f"""
shares: [{{name: data, path: {share}}}]
users: [{{name: alice, password: secret}}]
"""))
    example = Path(__file__).resolve().parents[3] / "config" / "smbcad.yaml"
    text = example.read_text()
    for key in ("max_connections", "max_connections_per_client", "max_outstanding_requests",
                "max_async_requests", "max_async_requests_per_session", "auth_timeout_s",
                "idle_timeout_s", "send_timeout_s"):
        assert f"  {key}: {getattr(cfg.server, key)} " in text, key


def test_keytab_enables_kerberos_and_must_exist(tmp_path):
    """``server.keytab`` (smbca domain join): domain users can log on with
    no local user configured; a keytab that is not there names its key."""
    share = tmp_path / "s"
    share.mkdir()
    keytab = tmp_path / "krb5.keytab"
    text = f"server: {{keytab: {keytab}}}\nshares:\n  - {{name: data, path: {share}}}\n"
    with pytest.raises(ConfigError) as caught:
        config.load_yaml(_write(tmp_path, text))
    assert caught.value.key == "server.keytab"
    keytab.write_bytes(b"\x05\x02")
    assert config.load_yaml(_write(tmp_path, text)).server.keytab == str(keytab)


def test_the_share_s_case_sensitive_key_reaches_its_file_system(tmp_path):
    """Set by a reload: a change of the key opens the share afresh."""
    import dataclasses
    from tests.unit.server import harness
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "Name").write_bytes(b"")
    server = harness.make_server(str(tmp_path / "share"), str(tmp_path / "state"))
    fs = server.shares["share"].fs
    assert not fs.case_sensitive and fs.lookup(("NAME",)).exists
    cfg = server.config
    server._apply_shares(dataclasses.replace(cfg, shares=(dataclasses.replace(
        cfg.shares[0], case_sensitive=True),)))
    fs = server.shares["share"].fs
    assert fs.case_sensitive and not fs.lookup(("NAME",)).exists


def test_workers(tmp_path):
    cfg = config.load_yaml(_write(tmp_path, "server: {workers: 4, worker_routing_seed: 7}\n"
                                  "shares: [{name: a, path: /tmp}]\n"
                                  "users: [{name: u, password: p}]"))
    assert (cfg.server.workers, cfg.server.worker_routing_seed) == (4, 7)
    quick, _ = load(["--share", f"data={tmp_path}", "--user", "u:p", "--workers", "3"])
    assert quick.server.workers == 3
    assert "workers" in config.RESTART_ONLY


def test_a_cluster_node_runs_workers_on_consecutive_mirror_ports(tmp_path):
    """Each worker mirrors on the mirror ports plus its index
    (smbcad.cluster.partition): the cluster example with ``workers: 2``
    loads; a port range past 65535 is refused, naming the key."""
    import yaml
    example = Path(__file__).resolve().parents[3] / "config" / "smbcad-cluster-example.yaml"
    raw = yaml.safe_load(example.read_text())
    key = tmp_path / "cluster.key"
    key.write_text(bytes(range(32)).hex())
    raw["cluster"]["key_file"] = str(key)
    raw["server"]["workers"] = 2
    cfg = config.load_yaml(_write(tmp_path, yaml.safe_dump(raw)))
    assert cfg.server.workers == 2 and cfg.cluster is not None
    raw["cluster"]["mirror_peer"] = raw["cluster"]["mirror_peer"].rsplit(":", 1)[0] + ":65535"
    with pytest.raises(ConfigError) as err:
        config.load_yaml(_write(tmp_path, yaml.safe_dump(raw)))
    assert err.value.key == "cluster.mirror_peer"
    assert "65535" in str(err.value)
