"""witnessd configuration: a frozen dataclass tree, loaded once (shared/STYLE.md rule 15).

Sources: a YAML file (``witnessd --config FILE``; every key is described in
config/witnessd-example.yaml) or the quick-mode flags of ``witnessd.cli``.
Units are in key names.  This is the only module of witnessd that reads the
environment (NOTIFY_SOCKET) or files for settings.  Errors name the key.
"""

import ipaddress
import os
from dataclasses import dataclass, field

import yaml

# The same primitives as smbcad's config: one definition for every daemon.
from smbcad.config import ConfigError, ListenAddress, UserConfig  # noqa: F401
from witnessd.swn import ResourceNameStyle, Win32Error

DEFAULT_EPM_PORT = 135
DEFAULT_CONTROL_SOCKET = "/run/witnessd/control.sock"


@dataclass(frozen=True)
class InterfaceConfig:
    """One entry of InterfaceList ([MS-SWN] 3.1.1.2): a node's address(es)."""

    node: str
    ipv4: ipaddress.IPv4Address | None = None
    ipv6: ipaddress.IPv6Address | None = None
    state: str = "available"


@dataclass(frozen=True)
class ServerConfig:
    listen: tuple[ListenAddress, ...]
    epm_listen: tuple[ListenAddress, ...]
    control_socket: str | None = DEFAULT_CONTROL_SOCKET
    metrics_listen: ListenAddress | None = None
    max_connections: int = 1024
    max_frag_bytes: int = 5840
    idle_timeout_s: int = 900
    drain_timeout_s: int = 5
    tick_interval_ms: int = 250
    log_level: str = "info"


@dataclass(frozen=True)
class AuthConfig:
    server_name: str = "WITNESS"
    domain: str = "WORKGROUP"
    users: tuple[UserConfig, ...] = ()
    smbpasswd_files: tuple[str, ...] = ()
    principal: str = ""


@dataclass(frozen=True)
class WitnessConfig:
    net_name: str
    aliases: tuple[str, ...] = ()
    local_node: str | None = None
    shares: tuple[str, ...] = ()
    unused_registration_timeout_s: int = 30
    forced_unregister_after_s: int = 5
    unregister_unknown_handle_error: int = Win32Error.INVALID_PARAMETER
    resource_name: ResourceNameStyle = ResourceNameStyle.IP
    max_registrations: int = 10_000


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    auth: AuthConfig
    witness: WitnessConfig
    interfaces: tuple[InterfaceConfig, ...] = field(default=())
    source_path: str | None = None

    @property
    def principal(self) -> str:
        return self.auth.principal or f"cifs/{self.witness.net_name}"


def notify_socket_path() -> str | None:
    """systemd's NOTIFY_SOCKET for Type=notify, if set."""
    return os.environ.get("NOTIFY_SOCKET") or None


# -- validation helpers ------------------------------------------------------------

def parse_listen(text: object, key: str, default_port: int | None = None) -> ListenAddress:
    """``HOST:PORT``, ``[V6]:PORT`` or, with a default port, a bare host."""
    text = str(text).strip()
    host, port_text = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(key, f"bad address {text!r}")
        host, rest = text[1:end], text[end + 1:]
        if rest.startswith(":"):
            port_text = rest[1:]
        elif rest:
            raise ConfigError(key, f"bad address {text!r}")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if port_text is None:
        if default_port is None:
            raise ConfigError(key, f"{text!r} has no port")
        port = default_port
    elif port_text.isdigit() and 0 <= int(port_text) < 65536:
        port = int(port_text)
    else:
        raise ConfigError(key, f"bad port {port_text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(key, f"{host!r} is not an IP address") from None
    return ListenAddress(host, port)


def _int(value: object, key: str, minimum: int = 0, maximum: int = 2**31) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(key, f"must be an integer in [{minimum}, {maximum}]")
    return value


def _name(value: object, key: str, max_chars: int = 255) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_chars:
        raise ConfigError(key, f"must be a non-empty string of at most {max_chars} characters")
    if any(ord(ch) < 0x20 for ch in value):
        raise ConfigError(key, "contains a control character")
    return value.strip()


def _names(value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(key, "must be a list")
    return tuple(_name(item, f"{key}[{i}]") for i, item in enumerate(value))


def parse_interface(spec: str, key: str) -> InterfaceConfig:
    """Quick mode ``NODE=IPV4[,IPV6]`` (either address may be IPv6 alone)."""
    node, sep, addresses = spec.partition("=")
    if not sep or not addresses:
        raise ConfigError(key, f"{spec!r}: expected NODE=IPV4[,IPV6]")
    return _interface({"node": node, "addresses": addresses.split(",")}, key)


def _interface(raw: object, key: str) -> InterfaceConfig:
    if not isinstance(raw, dict):
        raise ConfigError(key, "must be a mapping with node, ipv4 and/or ipv6")
    node = _name(raw.get("node"), f"{key}.node", 259)
    texts = list(raw.get("addresses") or []) + [raw[k] for k in ("ipv4", "ipv6") if raw.get(k)]
    ipv4 = ipv6 = None
    for text in texts:
        try:
            address = ipaddress.ip_address(str(text).strip())
        except ValueError:
            raise ConfigError(key, f"{text!r} is not an IP address") from None
        if address.version == 4 and ipv4 is None:
            ipv4 = address
        elif address.version == 6 and ipv6 is None:
            ipv6 = address
        else:
            raise ConfigError(key, "at most one IPv4 and one IPv6 address per interface")
    if ipv4 is None and ipv6 is None:
        raise ConfigError(key, "needs an ipv4 or ipv6 address")
    state = str(raw.get("state", "available")).lower()
    if state not in ("available", "unavailable", "unknown"):
        raise ConfigError(f"{key}.state", "must be available, unavailable or unknown")
    return InterfaceConfig(node, ipv4, ipv6, state)


def _users(raw: object, key: str) -> tuple[UserConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(key, "must be a list")
    users = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ConfigError(f"{key}[{i}]", "must be a mapping with name and password")
        name = _name(item.get("name"), f"{key}[{i}].name")
        password, nt_hash = item.get("password"), item.get("nt_hash")
        if (password is None) == (nt_hash is None):
            raise ConfigError(f"{key}[{i}]", "give exactly one of password and nt_hash")
        if nt_hash is not None and (not isinstance(nt_hash, str) or len(nt_hash) != 32):
            raise ConfigError(f"{key}[{i}].nt_hash", "must be 32 hex digits")
        users.append(UserConfig(name, None if password is None else str(password), nt_hash))
    return tuple(users)


_UNKNOWN_HANDLE_ERRORS = {"invalid_parameter": Win32Error.INVALID_PARAMETER,
                          "not_found": Win32Error.NOT_FOUND}


def _witness(raw: dict) -> WitnessConfig:
    key = "witness"
    error = str(raw.get("unregister_unknown_handle_error", "invalid_parameter"))
    if error not in _UNKNOWN_HANDLE_ERRORS:
        raise ConfigError(f"{key}.unregister_unknown_handle_error",
                          "must be invalid_parameter or not_found")
    try:
        style = ResourceNameStyle(str(raw.get("resource_name", "ip")))
    except ValueError:
        raise ConfigError(f"{key}.resource_name", "must be ip, net_name or group") from None
    local = raw.get("local_node")
    return WitnessConfig(
        net_name=_name(raw.get("net_name"), f"{key}.net_name"),
        aliases=_names(raw.get("aliases"), f"{key}.aliases"),
        local_node=None if local is None else _name(local, f"{key}.local_node"),
        shares=_names(raw.get("shares"), f"{key}.shares"),
        unused_registration_timeout_s=_int(raw.get("unused_registration_timeout_s", 30),
                                           f"{key}.unused_registration_timeout_s", 1),
        forced_unregister_after_s=_int(raw.get("forced_unregister_after_s", 5),
                                       f"{key}.forced_unregister_after_s"),
        unregister_unknown_handle_error=_UNKNOWN_HANDLE_ERRORS[error],
        resource_name=style,
        max_registrations=_int(raw.get("max_registrations", 10_000),
                               f"{key}.max_registrations", 1))


def _section(raw: dict, key: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a mapping")
    return value


def _listen_list(value: object, key: str, default_port: int | None) -> tuple[ListenAddress, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or items == [None]:
        raise ConfigError(key, "needs at least one ADDR:PORT")
    return tuple(parse_listen(item, f"{key}[{i}]", default_port) for i, item in enumerate(items))


def from_mapping(raw: object, source_path: str | None = None) -> Config:
    """Validate a parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError("(top)", "the configuration must be a mapping")
    server_raw, auth_raw = _section(raw, "server"), _section(raw, "auth")
    listen = _listen_list(server_raw.get("listen"), "server.listen", None)
    epm_raw = server_raw.get("epm_listen")
    epm = (_listen_list(epm_raw, "server.epm_listen", DEFAULT_EPM_PORT) if epm_raw is not None
           else tuple(ListenAddress(a.host, DEFAULT_EPM_PORT) for a in listen))
    metrics = server_raw.get("metrics_listen")
    control = server_raw.get("control_socket", DEFAULT_CONTROL_SOCKET)
    level = str(server_raw.get("log_level", "info")).lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError("server.log_level", "must be debug, info, warning or error")
    server = ServerConfig(
        listen=listen, epm_listen=epm,
        control_socket=None if control in (None, "") else str(control),
        metrics_listen=None if metrics is None else parse_listen(metrics, "server.metrics_listen"),
        max_connections=_int(server_raw.get("max_connections", 1024),
                             "server.max_connections", 1),
        max_frag_bytes=_int(server_raw.get("max_frag_bytes", 5840),
                            "server.max_frag_bytes", 2048, 65535),
        idle_timeout_s=_int(server_raw.get("idle_timeout_s", 900), "server.idle_timeout_s"),
        drain_timeout_s=_int(server_raw.get("drain_timeout_s", 5), "server.drain_timeout_s"),
        tick_interval_ms=_int(server_raw.get("tick_interval_ms", 250),
                              "server.tick_interval_ms", 10, 5000),
        log_level=level)
    auth = AuthConfig(
        server_name=_name(auth_raw.get("server_name", "WITNESS"), "auth.server_name", 15),
        domain=_name(auth_raw.get("domain", "WORKGROUP"), "auth.domain", 15),
        users=_users(auth_raw.get("users"), "auth.users"),
        smbpasswd_files=_names(auth_raw.get("smbpasswd_files"), "auth.smbpasswd_files"),
        principal=str(auth_raw.get("principal") or ""))
    if not auth.principal.isascii():
        raise ConfigError("auth.principal", "must be ASCII")
    if not auth.users and not auth.smbpasswd_files:
        raise ConfigError("auth.users", "no users: nobody could authenticate")
    witness = _witness(_section(raw, "witness"))
    raw_interfaces = raw.get("interfaces") or []
    if not isinstance(raw_interfaces, list):
        raise ConfigError("interfaces", "must be a list")
    interfaces = tuple(_interface(item, f"interfaces[{i}]")
                       for i, item in enumerate(raw_interfaces))
    return Config(server, auth, witness, interfaces, source_path)


def load_yaml(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("--config", f"{path} is not valid YAML: {exc}") from None
    return from_mapping(raw, path)


@dataclass(frozen=True)
class QuickArgs:
    """The quick-mode flags, as ``witnessd.cli`` parsed them."""

    listen: tuple[str, ...]
    epm_listen: tuple[str, ...]
    users: tuple[str, ...]
    net_name: str
    interfaces: tuple[str, ...]
    node: str | None = None
    shares: tuple[str, ...] = ()
    control_socket: str | None = None
    metrics_listen: str | None = None
    server_name: str = "WITNESS"
    log_level: str = "info"


def from_quick_args(args: QuickArgs) -> Config:
    """Build the same tree as a YAML file would from the quick-mode flags."""
    users = []
    for i, spec in enumerate(args.users):
        name, sep, password = spec.partition(":")
        if not sep or not name:
            raise ConfigError(f"--user[{i}]", "expected NAME:PASSWORD")
        users.append({"name": name, "password": password})
    interfaces = [parse_interface(spec, f"--interface[{i}]")
                  for i, spec in enumerate(args.interfaces)]
    listen = _listen_list(list(args.listen), "--listen", None)
    node = args.node
    if node is None:  # the node owning the address we listen on is the local one
        hosts = {ipaddress.ip_address(a.host) for a in listen}
        node = next((i.node for i in interfaces if {i.ipv4, i.ipv6} & hosts), None)
    raw = {
        "server": {"listen": [str(a) for a in listen],
                   "epm_listen": list(args.epm_listen) or None,  # default: port 135
                   "control_socket": args.control_socket,
                   "metrics_listen": args.metrics_listen, "log_level": args.log_level},
        "auth": {"server_name": args.server_name, "users": users},
        "witness": {"net_name": args.net_name, "local_node": node,
                    "shares": list(args.shares)},
    }
    config = from_mapping(raw)
    return Config(config.server, config.auth, config.witness, tuple(interfaces))
