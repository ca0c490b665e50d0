"""The shared configuration primitives: errors name the key in every daemon."""

import os

import pytest

from smbca.auth.legacy_crypto import nt_hash
from smbca.config import (
    ConfigError,
    ListenAddress,
    Section,
    SystemdEnv,
    UserConfig,
    build_user_database,
    parse_listen,
    parse_users,
    read_yaml,
    systemd_environment,
)


@pytest.mark.parametrize("text,default,address", [
    ("10.0.0.1:445", None, ListenAddress("10.0.0.1", 445)),
    ("[fd00::1]:99", None, ListenAddress("fd00::1", 99)),
    ("[fd00::1]", 135, ListenAddress("fd00::1", 135)),
    ("10.0.0.1", 135, ListenAddress("10.0.0.1", 135)),
    ("::1", 445, ListenAddress("::1", 445)),
    ("localhost:9", None, ListenAddress("localhost", 9)),
    (":445", None, ListenAddress("0.0.0.0", 445)),
])
def test_parse_listen_forms(text, default, address):
    assert parse_listen(text, "k", default) == address


@pytest.mark.parametrize("text,default", [
    ("10.0.0.1", None), ("10.0.0.1:70000", None), ("10.0.0.1:0", None), ("host:1", None),
    ("[fd00::1", None), ("[fd00::1]x", None), ("", 1), (None, 1), (5, 1),
])
def test_parse_listen_errors_name_the_key(text, default):
    with pytest.raises(ConfigError) as info:
        parse_listen(text, "server.listen[0]", default)
    assert info.value.key == "server.listen[0]"


def test_port_zero_only_where_asked():
    assert parse_listen("127.0.0.1:0", "k", ephemeral_ok=True).port == 0
    assert str(ListenAddress("fd00::1", 5)) == "[fd00::1]:5"


def test_section_walks_keys():
    root = Section({"a": {"n": 5, "flag": True, "list": [{"x": 1}, 2]}}, "")
    a = root.sub("a")
    assert a.get("n", int, minimum=1, maximum=9) == 5 and a.get("missing", int, 7) == 7
    for name, kind, kwargs, key in [("n", int, {"maximum": 4}, "a.n"),
                                    ("flag", int, {}, "a.flag"),
                                    ("n", str, {}, "a.n"),
                                    ("missing", int, {}, "a.missing")]:
        with pytest.raises(ConfigError) as info:
            a.get(name, kind, **kwargs)
        assert info.value.key == key
    with pytest.raises(ConfigError) as info:
        a.items("list")
    assert info.value.key == "a.list[1]"
    with pytest.raises(ConfigError) as info:
        a.check_keys("n", "flag")
    assert info.value.key == "a.list"
    assert Section(None, "x").data == {}


def test_unknown_key_suggests_the_close_one():
    section = Section({"lcoal_node": "A", "zzz": 1}, "witness")
    with pytest.raises(ConfigError) as info:
        section.check_keys("local_node", "zzz")
    assert str(info.value) == "witness.lcoal_node: unknown key (did you mean witness.local_node?)"
    with pytest.raises(ConfigError) as info:
        Section({"qqqq": 1}, "").check_keys("local_node")
    assert str(info.value) == "qqqq: unknown key"


@pytest.mark.parametrize("users,key", [
    ([{"name": "u"}], "auth.users[0]"),
    ([{"name": "u", "password": "p", "nt_hash": "00" * 16}], "auth.users[0]"),
    ([{"name": "u", "nt_hash": "zz"}], "auth.users[0].nt_hash"),
    ([{"name": "a:b", "password": "p"}], "auth.users[0].name"),
    ([{"password": "p"}], "auth.users[0].name"),
    ([{"name": "u", "password": "p", "pin": 1}], "auth.users[0].pin"),
    (["u"], "auth.users[0]"),
    ({"name": "u"}, "auth.users"),
])
def test_users_errors_name_the_key(users, key):
    with pytest.raises(ConfigError) as info:
        parse_users(Section({"users": users}, "auth"), "users")
    assert info.value.key == key


def test_users_and_the_database(tmp_path):
    users = parse_users(Section({"users": [{"name": "alice", "password": 1234},
                                           {"name": "bob", "nt_hash": "88" * 16}]}, ""), "users")
    assert users == (UserConfig("alice", "1234"), UserConfig("bob", None, "88" * 16))
    passwd = tmp_path / "smbpasswd"
    passwd.write_text("carol:1000:XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:"
                      "8846F7EAEE8FB117AD06BDD830B7586C:[U          ]:LCT-00000000:\n")
    database = build_user_database(users, [str(passwd)], "smbpasswd_file")
    assert database.lookup("alice").nt_hash == nt_hash("1234")
    assert database.lookup("carol") is not None
    with pytest.raises(ConfigError) as info:
        build_user_database(users, [str(passwd), str(tmp_path / "absent")], "auth.smbpasswd_files")
    assert info.value.key == "auth.smbpasswd_files[1]"


def test_read_yaml(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("a: [1, 2]\n")
    assert read_yaml(str(good)) == {"a": [1, 2]}
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        read_yaml(str(bad))
    assert info.value.key == "--config"
    with pytest.raises(ConfigError, match="cannot read"):
        read_yaml(str(tmp_path / "absent.yaml"))


def test_systemd_environment():
    env = systemd_environment({"NOTIFY_SOCKET": "/run/systemd/notify",
                               "WATCHDOG_USEC": "10000000"})
    assert env.notify_socket == "/run/systemd/notify" and env.watchdog_usec == 10_000_000
    assert systemd_environment({"WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}).watchdog_usec is None
    assert systemd_environment({"WATCHDOG_USEC": "5", "WATCHDOG_PID": str(os.getpid())}
                               ).watchdog_usec == 5
    assert systemd_environment({}) == SystemdEnv()
