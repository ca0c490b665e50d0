"""witnessd configuration: the example file, quick mode, errors that name the key."""

import ipaddress
from pathlib import Path

import pytest
import yaml

from smbca.config import ConfigError, ListenAddress
from witnessd import cli
from witnessd.config import (
    DEFAULT_EPM_PORT,
    QuickArgs,
    from_mapping,
    for_reload,
    from_quick_args,
    load_yaml,
)
from witnessd.daemon import build_service
from witnessd.swn import InterfaceFlags, ResourceNameStyle, Win32Error

EXAMPLE = Path(__file__).parents[3] / "config" / "witnessd-example.yaml"


def test_example_file_loads_with_every_key() -> None:
    cfg = load_yaml(str(EXAMPLE))
    assert cfg.server.listen == (ListenAddress("0.0.0.0", 5004),)
    assert cfg.server.epm_listen == (ListenAddress("0.0.0.0", 135),)
    assert cfg.witness.net_name == "CLUSTER" and cfg.witness.local_node == "NODEA"
    assert cfg.witness.nodes == ("NODEA", "NODEB")
    assert cfg.witness.resource_name is ResourceNameStyle.IP
    assert cfg.witness.unregister_unknown_handle_error == Win32Error.INVALID_PARAMETER
    assert cfg.principal == "cifs/CLUSTER"
    assert [i.node for i in cfg.interfaces] == ["NODEA", "NODEB"]
    assert cfg.interfaces[0].ipv6 == ipaddress.IPv6Address("2001:db8::10")
    service = build_service(cfg, clock=lambda: 0.0)
    assert [i.local for i in service.interfaces] == [True, False]


def test_quick_mode_defaults() -> None:
    cfg = cli.load(["--listen", "127.0.0.1:5004", "--user", "alice:pw", "--net-name", "C",
                    "--interface", "N1=127.0.0.1", "--interface", "N2=127.0.0.2,fd00::2"])
    assert cfg.server.epm_listen == (ListenAddress("127.0.0.1", DEFAULT_EPM_PORT),)
    assert cfg.witness.local_node == "N1"  # owns the --listen address
    assert cfg.server.control_socket is None
    assert cfg.interfaces[1].ipv6 == ipaddress.IPv6Address("fd00::2")
    info = build_service(cfg, clock=lambda: 0.0)._interface_list().interface_info
    assert [i.flags & InterfaceFlags.INTERFACE_WITNESS for i in info] == [0, 4]


def test_quick_mode_explicit_node_and_epm() -> None:
    cfg = from_quick_args(QuickArgs(listen=("127.0.0.1:0",), epm_listen=("127.0.0.1:1135",),
                                    users=("a:b",), net_name="C", interfaces=("N1=10.0.0.1",),
                                    node="N2", shares=("vm",), control_socket="/tmp/x.sock"))
    assert cfg.server.epm_listen == (ListenAddress("127.0.0.1", 1135),)
    assert (cfg.witness.local_node, cfg.witness.shares) == ("N2", ("vm",))


@pytest.mark.parametrize("argv,key", [
    (["--listen", "127.0.0.1:1"], "--listen"),
    (["--listen", "127.0.0.1:1", "--net-name", "C", "--user", "nopassword"], "--user[0]"),
    (["--listen", "127.0.0.1:x", "--net-name", "C", "--user", "a:b"], "--listen[0]"),
    (["--listen", "1.2.3.4:1", "--net-name", "C", "--user", "a:b", "--interface", "N"],
     "--interface[0]"),
    (["--config", "/x.yaml", "--listen", "1.2.3.4:1"], "--config"),
    (["--config", "/nonexistent.yaml"], "--config"),
])
def test_quick_mode_errors_name_the_flag(argv, key) -> None:
    with pytest.raises(ConfigError) as info:
        cli.load(argv)
    assert info.value.key == key


def _base() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


@pytest.mark.parametrize("path,value,key", [
    (("server", "listen"), None, "server.listen"),
    (("server", "listen"), ["host:1"], "server.listen[0]"),
    (("server", "max_frag_bytes"), 100, "server.max_frag_bytes"),
    (("server", "log_level"), "loud", "server.log_level"),
    (("auth", "users"), [], "auth.users"),
    (("auth", "users"), [{"name": "a"}], "auth.users[0]"),
    (("auth", "users"), [{"name": "a", "nt_hash": "12"}], "auth.users[0].nt_hash"),
    (("auth", "server_name"), "A" * 16, "auth.server_name"),
    (("witness", "net_name"), "", "witness.net_name"),
    (("witness", "resource_name"), "fqdn", "witness.resource_name"),
    (("witness", "unregister_unknown_handle_error"), "x",
     "witness.unregister_unknown_handle_error"),
    (("witness", "unused_registration_timeout_s"), 0, "witness.unused_registration_timeout_s"),
    (("interfaces",), [{"node": "A"}], "interfaces[0]"),
    (("interfaces",), [{"node": "A", "ipv4": "1.2.3.4", "state": "on"}], "interfaces[0].state"),
    (("interfaces",), [{"node": "A", "addresses": ["1.1.1.1", "2.2.2.2"]}], "interfaces[0]"),
    # unknown keys, in every section and list entry
    (("witness", "lcoal_node"), "NODEA", "witness.lcoal_node"),
    (("server", "listne"), "1.2.3.4:5", "server.listne"),
    (("auth", "user"), [], "auth.user"),
    (("auth", "users"), [{"name": "a", "passwd": "x"}], "auth.users[0].passwd"),
    (("interfaces",), [{"node": "NODEA", "ipv4": "192.0.2.10", "stat": "up"}],
     "interfaces[0].stat"),
    (("witnes",), {}, "witnes"),
    # malformed values
    (("interfaces",), [{"node": "NODEA", "ipv4": "2001:db8::1"}], "interfaces[0].ipv4"),
    (("interfaces",), [{"node": "NODEA", "addresses": ["x"]}], "interfaces[0].addresses[0]"),
    (("interfaces",), "NODEA=1.2.3.4", "interfaces"),
    (("server", "control_socket"), 5, "server.control_socket"),
    (("auth", "principal"), ["cifs/x"], "auth.principal"),
    (("witness", "nodes"), "NODEA", "witness.nodes"),
    # the pair
    (("witness", "nodes"), ["NODEA"], "witness.nodes"),
    (("witness", "nodes"), ["NODEA", "nodea"], "witness.nodes"),
    (("witness", "local_node"), "NODEC", "witness.local_node"),
    (("witness", "local_node"), None, "witness.local_node"),
    (("interfaces",), [{"node": "NODEC", "ipv4": "192.0.2.30"}], "interfaces[0].node"),
    (("interfaces",), [{"node": "NODEA", "ipv4": "192.0.2.10"},
                       {"node": "NODEB", "ipv4": "192.0.2.10"}], "interfaces[1]"),
])
def test_yaml_errors_name_the_key(path, value, key) -> None:
    raw = _base()
    target = raw
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ConfigError) as info:
        from_mapping(raw)
    assert info.value.key == key


def test_unknown_key_error_says_what_was_meant() -> None:
    raw = _base()
    raw["witness"]["lcoal_node"] = raw["witness"].pop("local_node")
    with pytest.raises(ConfigError) as info:
        from_mapping(raw)
    assert str(info.value) == \
        "witness.lcoal_node: unknown key (did you mean witness.local_node?)"


def test_without_nodes_they_come_from_the_interfaces() -> None:
    raw = _base()
    del raw["witness"]["nodes"]
    cfg = from_mapping(raw)
    assert cfg.witness.nodes == ("NODEA", "NODEB")
    raw["witness"]["local_node"] = "NODEX"        # a typo no longer makes every IP a witness
    with pytest.raises(ConfigError) as info:
        from_mapping(raw)
    assert info.value.key == "witness.local_node" and "witness.nodes" in info.value.problem


def test_quick_mode_lists_the_interface_nodes() -> None:
    cfg = cli.load(["--listen", "127.0.0.1:5004", "--user", "a:b", "--net-name", "C",
                    "--interface", "N1=127.0.0.1", "--interface", "N2=127.0.0.2"])
    assert cfg.witness.nodes == ("N1", "N2")


def test_bad_config_exits_2_naming_the_key(tmp_path, capsys) -> None:
    raw = _base()
    raw["witness"]["lcoal_node"] = "NODEA"
    path = tmp_path / "witnessd.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["--config", str(path)]) == 2
    assert capsys.readouterr().err == ("witnessd: witness.lcoal_node: unknown key "
                                       "(did you mean witness.local_node?)\n")


def test_for_reload_keeps_the_sockets() -> None:
    running = load_yaml(str(EXAMPLE))
    raw = _base()
    raw["server"]["listen"] = ["127.0.0.1:6000"]
    raw["server"]["log_level"] = "debug"
    merged, changed = for_reload(running, from_mapping(raw))
    assert changed == ("server.listen",)
    assert merged.server.listen == running.server.listen
    assert merged.server.log_level == "debug"


def test_a_keytab_is_enough_to_authenticate_and_must_exist(tmp_path) -> None:
    raw = _base()
    raw["auth"]["users"] = []
    keytab = tmp_path / "krb5.keytab"
    raw["auth"]["keytab"] = str(keytab)
    with pytest.raises(ConfigError) as info:
        from_mapping(raw)
    assert info.value.key == "auth.keytab"
    keytab.write_bytes(b"\x05\x02")
    assert from_mapping(raw).auth.keytab == str(keytab)
