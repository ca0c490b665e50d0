"""witnessd configuration: a frozen dataclass tree, loaded once (shared/STYLE.md rule 15).

Sources: a YAML file (``witnessd --config FILE``; every key is described in
config/witnessd-example.yaml) or the quick-mode flags of ``witnessd.cli``.
Units are in key names.  Errors name the key, and a key that is not one of
ours is an error too (``witness.lcoal_node: unknown key (did you mean
witness.local_node?)``); the primitives (errors, key checks, addresses,
users, the YAML reader) are the shared ``smbca.config``.

Both nodes of a pair run witnessd with the same ``interfaces`` list (every
LIF of the pair, under the node that hosts it at start-up) and the same
``witness.nodes``; only ``witness.local_node`` differs ([MS-SWN] 3.1.4.1:
the local node's interfaces are listed without INTERFACE_WITNESS).  The
node names are the InterfaceGroupNames clients see and the group names
clusdisk's events use, i.e. clusdisk's ``cluster.nodes[].name``.

A SIGHUP reload applies a new file through ``for_reload``, which keeps the
``server`` keys of ``RESTART_ONLY`` (the sockets) as they are.
"""

import ipaddress
import os
from dataclasses import dataclass, field, replace

from smbca.config import (
    ConfigError,
    ListenAddress,
    Section,
    UserConfig,
    parse_listen,
    parse_users,
    read_yaml,
)
from smbca.control import WITNESSD_SOCKET
from witnessd.swn import ResourceNameStyle, Win32Error

DEFAULT_EPM_PORT = 135

_ROOT_KEYS = ("server", "auth", "witness", "interfaces")
_SERVER_KEYS = ("listen", "epm_listen", "control_socket", "metrics_listen", "max_connections",
                "max_frag_bytes", "idle_timeout_s", "drain_timeout_s", "tick_interval_ms",
                "log_level")
_AUTH_KEYS = ("server_name", "domain", "users", "smbpasswd_files", "principal", "keytab")
_WITNESS_KEYS = ("net_name", "aliases", "nodes", "local_node", "shares",
                 "unused_registration_timeout_s", "forced_unregister_after_s",
                 "unregister_unknown_handle_error", "resource_name", "max_registrations")
_INTERFACE_KEYS = ("node", "ipv4", "ipv6", "addresses", "state")

# Keys bound to sockets opened at start-up: a reload keeps their old value.
RESTART_ONLY = ("listen", "epm_listen", "control_socket", "metrics_listen")


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
    control_socket: str | None = WITNESSD_SOCKET
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
    # The domain member's keytab (``smbca domain join``, shared with smbcad):
    # Kerberos binds, as Windows witness clients make in a domain.
    keytab: str | None = None


@dataclass(frozen=True)
class WitnessConfig:
    """``nodes``: the pair's node names, as configured or, when the key is
    absent, as the interfaces name them (in order of appearance)."""

    net_name: str
    aliases: tuple[str, ...] = ()
    local_node: str | None = None
    nodes: tuple[str, ...] = ()
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


# -- validation helpers ------------------------------------------------------------

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
    item = Section(raw, key)
    item.check_keys(*_INTERFACE_KEYS)
    node = _name(raw.get("node"), f"{key}.node", 259)
    texts = [(item.key(f"addresses[{i}]"), text) for i, text in enumerate(item.list("addresses"))]
    texts += [(item.key(k), raw[k]) for k in ("ipv4", "ipv6") if raw.get(k) is not None]
    ipv4 = ipv6 = None
    for text_key, text in texts:
        try:
            address = ipaddress.ip_address(str(text).strip())
        except ValueError:
            raise ConfigError(text_key, f"{text!r} is not an IP address") from None
        if text_key.endswith((".ipv4", ".ipv6")) and not text_key.endswith(f"v{address.version}"):
            raise ConfigError(text_key, f"{text!r} is not an IPv{text_key[-1]} address")
        if address.version == 4 and ipv4 is None:
            ipv4 = address
        elif address.version == 6 and ipv6 is None:
            ipv6 = address
        else:
            raise ConfigError(key, "at most one IPv4 and one IPv6 address per interface")
    if ipv4 is None and ipv6 is None:
        raise ConfigError(key, "needs an ipv4 or ipv6 address")
    state = item.get("state", str, "available").lower()
    if state not in ("available", "unavailable", "unknown"):
        raise ConfigError(f"{key}.state", "must be available, unavailable or unknown")
    return InterfaceConfig(node, ipv4, ipv6, state)


def _interfaces(root: Section) -> tuple[InterfaceConfig, ...]:
    """The ``interfaces`` list; an address belongs to one entry only (an
    event naming it moves that entry between nodes)."""
    interfaces, owners = [], {}
    for i, raw in enumerate(root.list("interfaces")):
        interface = _interface(raw, f"interfaces[{i}]")
        for address in filter(None, (interface.ipv4, interface.ipv6)):
            if address in owners:
                raise ConfigError(f"interfaces[{i}]", f"{address} is also the address of "
                                  f"interfaces[{owners[address]}]: one entry per address")
            owners[address] = i
        interfaces.append(interface)
    return tuple(interfaces)


def _check_pair(witness: WitnessConfig, interfaces: tuple[InterfaceConfig, ...],
                nodes_given: bool) -> WitnessConfig:
    """Every interface on a node of the pair, and ``local_node`` one of them;
    ``nodes`` filled in from the interfaces when the key is absent."""
    if not nodes_given:
        nodes: list[str] = []
        for interface in interfaces:
            if interface.node.casefold() not in (n.casefold() for n in nodes):
                nodes.append(interface.node)
        local = witness.local_node
        if local is not None and nodes and local.casefold() not in (n.casefold() for n in nodes):
            raise ConfigError("witness.local_node", f"{local!r} is the node of no interface "
                              f"({', '.join(nodes)}); name the pair in witness.nodes if this "
                              "node has no interface of its own")
        return replace(witness, nodes=tuple(nodes))
    folded = [n.casefold() for n in witness.nodes]
    if len(witness.nodes) != 2 or folded[0] == folded[1]:
        raise ConfigError("witness.nodes", "must name the two nodes of the pair")
    if witness.local_node is None:
        raise ConfigError("witness.local_node", f"required: which of {', '.join(witness.nodes)}"
                          " this node is")
    if witness.local_node.casefold() not in folded:
        raise ConfigError("witness.local_node",
                          f"{witness.local_node!r} is not one of witness.nodes "
                          f"({', '.join(witness.nodes)})")
    for i, interface in enumerate(interfaces):
        if interface.node.casefold() not in folded:
            raise ConfigError(f"interfaces[{i}].node", f"{interface.node!r} is not one of "
                              f"witness.nodes ({', '.join(witness.nodes)})")
    return witness


_UNKNOWN_HANDLE_ERRORS = {"invalid_parameter": Win32Error.INVALID_PARAMETER,
                          "not_found": Win32Error.NOT_FOUND}


def _witness(section: Section) -> WitnessConfig:
    section.check_keys(*_WITNESS_KEYS)
    error = section.get("unregister_unknown_handle_error", str, "invalid_parameter")
    if error not in _UNKNOWN_HANDLE_ERRORS:
        raise ConfigError(section.key("unregister_unknown_handle_error"),
                          "must be invalid_parameter or not_found")
    try:
        style = ResourceNameStyle(section.get("resource_name", str, "ip"))
    except ValueError:
        raise ConfigError(section.key("resource_name"), "must be ip, net_name or group") from None
    raw = section.data
    local = raw.get("local_node")
    return WitnessConfig(
        net_name=_name(raw.get("net_name"), section.key("net_name")),
        aliases=_names(raw.get("aliases"), section.key("aliases")),
        local_node=None if local is None else _name(local, section.key("local_node"), 259),
        nodes=tuple(_name(item, f"{section.key('nodes')}[{i}]", 259)
                    for i, item in enumerate(section.list("nodes"))),
        shares=_names(raw.get("shares"), section.key("shares")),
        unused_registration_timeout_s=section.get("unused_registration_timeout_s", int, 30,
                                                  minimum=1),
        forced_unregister_after_s=section.get("forced_unregister_after_s", int, 5, minimum=0),
        unregister_unknown_handle_error=_UNKNOWN_HANDLE_ERRORS[error],
        resource_name=style,
        max_registrations=section.get("max_registrations", int, 10_000, minimum=1))


def _listen_list(value: object, key: str, default_port: int | None) -> tuple[ListenAddress, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or items == [None]:
        raise ConfigError(key, "needs at least one ADDR:PORT")
    return tuple(parse_listen(item, f"{key}[{i}]", default_port, ephemeral_ok=True)
                 for i, item in enumerate(items))


def _server(section: Section) -> ServerConfig:
    section.check_keys(*_SERVER_KEYS)
    raw = section.data
    listen = _listen_list(raw.get("listen"), section.key("listen"), None)
    epm_raw = raw.get("epm_listen")
    epm = (_listen_list(epm_raw, section.key("epm_listen"), DEFAULT_EPM_PORT)
           if epm_raw is not None
           else tuple(ListenAddress(a.host, DEFAULT_EPM_PORT) for a in listen))
    metrics = raw.get("metrics_listen")
    control = raw.get("control_socket", WITNESSD_SOCKET)      # null or "": no control socket
    if control is not None and not isinstance(control, str):
        raise ConfigError(section.key("control_socket"), "must be a path (or null)")
    level = section.get("log_level", str, "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(section.key("log_level"), "must be debug, info, warning or error")
    return ServerConfig(
        listen=listen, epm_listen=epm,
        control_socket=None if control in (None, "") else str(control),
        metrics_listen=None if metrics is None else parse_listen(
            metrics, section.key("metrics_listen"), ephemeral_ok=True),
        max_connections=section.get("max_connections", int, 1024, minimum=1),
        max_frag_bytes=section.get("max_frag_bytes", int, 5840, minimum=2048, maximum=65535),
        idle_timeout_s=section.get("idle_timeout_s", int, 900, minimum=0),
        drain_timeout_s=section.get("drain_timeout_s", int, 5, minimum=0),
        tick_interval_ms=section.get("tick_interval_ms", int, 250, minimum=10, maximum=5000),
        log_level=level)


def _auth(section: Section) -> AuthConfig:
    section.check_keys(*_AUTH_KEYS)
    raw = section.data
    auth = AuthConfig(
        server_name=_name(raw.get("server_name", "WITNESS"), section.key("server_name"), 15),
        domain=_name(raw.get("domain", "WORKGROUP"), section.key("domain"), 15),
        users=parse_users(section, "users"),
        smbpasswd_files=_names(raw.get("smbpasswd_files"), section.key("smbpasswd_files")),
        principal=section.get("principal", str, ""),
        keytab=section.get("keytab", str, None))
    if not auth.principal.isascii():
        raise ConfigError(section.key("principal"), "must be ASCII")
    if auth.keytab is not None and not os.path.isfile(auth.keytab):
        raise ConfigError(section.key("keytab"), f"{auth.keytab!r} does not exist "
                          "(smbca domain join writes it)")
    if not auth.users and not auth.smbpasswd_files and auth.keytab is None:
        raise ConfigError(section.key("users"), "no users and no keytab: nobody could "
                          "authenticate")
    return auth


def from_mapping(raw: object, source_path: str | None = None) -> Config:
    """Validate a parsed YAML document."""
    root = Section(raw, "")
    root.check_keys(*_ROOT_KEYS)
    interfaces = _interfaces(root)
    witness_section = root.sub("witness")
    witness = _check_pair(_witness(witness_section), interfaces,
                          witness_section.data.get("nodes") is not None)
    return Config(_server(root.sub("server")), _auth(root.sub("auth")), witness, interfaces,
                  source_path)


def load_yaml(path: str) -> Config:
    return from_mapping(read_yaml(path), path)


def for_reload(running: Config, loaded: Config) -> tuple[Config, tuple[str, ...]]:
    """``loaded`` with the running values of the keys only a restart can
    change, and the dotted names of those the file changed."""
    changed = tuple(f"server.{name}" for name in RESTART_ONLY
                    if getattr(running.server, name) != getattr(loaded.server, name))
    kept = {name: getattr(running.server, name) for name in RESTART_ONLY}
    return replace(loaded, server=replace(loaded.server, **kept)), changed


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
    names = tuple(dict.fromkeys(i.node for i in interfaces))
    return Config(config.server, config.auth, replace(config.witness, nodes=names),
                  tuple(interfaces))
