"""smbcad configuration: a frozen dataclass tree, loaded once, validated with
errors that name the offending key (shared/STYLE.md rule 15).

Sources: a YAML file (``--config``) or the quick-mode flags of ``smbcad.cli``.
Units are in key names (``_ms``, ``_bytes``).  This is the only module that
reads the environment or the filesystem for settings.
"""

import ipaddress
import os
import uuid
from dataclasses import dataclass, field

import yaml

DEFAULT_PORT = 445
DEFAULT_CA_TIMEOUT_MS = 60_000


class ConfigError(Exception):
    """A bad setting: ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ShareConfig:
    """One disk share ([MS-SMB2] 3.3.1.6 Share)."""

    name: str
    path: str
    comment: str = ""
    ca: bool = False
    encrypt: bool = False
    read_only: bool = False
    ca_timeout_ms: int = DEFAULT_CA_TIMEOUT_MS
    aggregate: str = ""                # follows this aggregate (cluster.aggregates); "": local
    volume_id: str | None = None       # file identity's volume id (hex); default: the filesystem's


@dataclass(frozen=True)
class UserConfig:
    """A user: a clear password or an NT hash (hex), never both."""

    name: str
    password: str | None = None
    nt_hash_hex: str | None = None


@dataclass(frozen=True)
class ServerConfig:
    listen: tuple[ListenAddress, ...]
    server_name: str = "SMBCA"
    domain: str = "WORKGROUP"
    state_dir: str = "/var/lib/smbca"
    signing_required: bool = True
    encryption: str = "off"            # off | desired | required
    guest_ok: bool = False
    anonymous_ok: bool = False
    metrics_listen: ListenAddress | None = None
    max_connections: int = 1024
    max_credits: int = 8192
    max_io_bytes: int = 8 * 1024 * 1024
    max_outstanding_requests: int = 8192
    idle_timeout_s: int = 0            # 0: never drop idle connections
    drain_timeout_s: int = 20
    log_level: str = "info"


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    shares: tuple[ShareConfig, ...]
    users: tuple[UserConfig, ...] = ()
    smbpasswd_files: tuple[str, ...] = ()
    source_path: str | None = None     # where it came from, for SIGHUP reloads
    cluster: object = None             # config_cluster.ClusterConfig on a cluster node


# --- validation helpers ----------------------------------------------------------

_SHARE_NAME_BAD = set('"/\\[]:|<>+=;,*?')


def parse_listen(text: str, key: str, default_port: int = DEFAULT_PORT) -> ListenAddress:
    """``HOST:PORT``, ``[V6]:PORT`` or a bare host."""
    text = str(text).strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(key, f"bad address {text!r}")
        host = text[1:end]
        if text[end + 1:].startswith(":"):
            port = _port(text[end + 2:], key)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, key)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host not in ("localhost", ""):
            raise ConfigError(key, f"{host!r} is not an IP address") from None
    return ListenAddress(host or "0.0.0.0", port)


def _port(text: str, key: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(key, f"bad port {text!r}")
    return int(text)


def _check_share(share: ShareConfig, key: str) -> None:
    if not share.name or len(share.name) > 80 or set(share.name) & _SHARE_NAME_BAD:
        raise ConfigError(f"{key}.name", f"invalid share name {share.name!r}")
    if share.name.upper() == "IPC$":
        raise ConfigError(f"{key}.name", "IPC$ is built in")
    if not os.path.isabs(share.path):
        raise ConfigError(f"{key}.path", f"{share.path!r} must be an absolute path")
    # A share on an aggregate is checked when the aggregate is adopted: until
    # then its filesystem is not mounted here.
    if not share.aggregate and not os.path.isdir(share.path):
        raise ConfigError(f"{key}.path", f"{share.path!r} is not a directory")
    if share.volume_id is not None:
        try:
            if not 0 < len(share.volume_id.replace("-", "")) <= 32:
                raise ValueError
            int(share.volume_id.replace("-", ""), 16)
        except ValueError:
            raise ConfigError(f"{key}.volume_id", "must be hex (an id or a UUID)") from None
    if share.ca_timeout_ms < 0 or share.ca_timeout_ms > 3_600_000:
        raise ConfigError(f"{key}.ca_timeout_ms", "must be 0..3600000")


def validate(config: Config) -> Config:
    names = set()
    for index, share in enumerate(config.shares):
        key = f"shares[{index}]"
        _check_share(share, key)
        if share.name.lower() in names:
            raise ConfigError(f"{key}.name", f"duplicate share {share.name!r}")
        names.add(share.name.lower())
    if not config.shares:
        raise ConfigError("shares", "at least one share is needed")
    from smbcad.config_cluster import check_cluster   # it builds on this module's helpers
    check_cluster(config.cluster, config.shares)
    for index, user in enumerate(config.users):
        key = f"users[{index}]"
        if not user.name or ":" in user.name:
            raise ConfigError(f"{key}.name", f"invalid user name {user.name!r}")
        if (user.password is None) == (user.nt_hash_hex is None):
            raise ConfigError(key, "give exactly one of password or nt_hash")
        if user.nt_hash_hex is not None:
            try:
                if len(bytes.fromhex(user.nt_hash_hex)) != 16:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"{key}.nt_hash", "must be 32 hex digits") from None
    for index, path in enumerate(config.smbpasswd_files):
        if not os.path.isfile(path):
            raise ConfigError(f"smbpasswd_file[{index}]", f"{path!r} does not exist")
    server = config.server
    if server.encryption not in ("off", "desired", "required"):
        raise ConfigError("server.encryption", "must be off, desired or required")
    if not config.users and not config.smbpasswd_files and not server.guest_ok:
        raise ConfigError("users", "no users and guest access is off: nobody could connect")
    if server.max_io_bytes < 65536 or server.max_io_bytes > 8 * 1024 * 1024:
        raise ConfigError("server.max_io_bytes", "must be 64 KiB..8 MiB")
    if not 1 <= server.max_credits <= 65535:
        raise ConfigError("server.max_credits", "must be 1..65535")
    if server.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("server.log_level", "must be debug, info, warning or error")
    return config


# --- YAML -------------------------------------------------------------------------

def _typed(section: dict, key: str, kind, prefix: str, default=None):
    value = section.get(key, default)
    if value is None:
        return default
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{prefix}{key}", "must be true or false")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{prefix}{key}", "must be an integer")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{prefix}{key}", "must be a string")
    return value


def _reject_unknown(section: dict, allowed: set, prefix: str) -> None:
    for key in section:
        if key not in allowed:
            raise ConfigError(f"{prefix}{key}", "unknown key")


_SERVER_KEYS = {"listen", "server_name", "domain", "state_dir", "signing", "encryption",
                "guest_ok", "anonymous_ok", "metrics_listen", "max_connections",
                "max_credits", "max_io_bytes", "max_outstanding_requests",
                "idle_timeout_s", "drain_timeout_s", "log_level"}
_SHARE_KEYS = {"name", "path", "comment", "ca", "encrypt", "read_only", "ca_timeout_ms",
               "aggregate", "volume_id"}


def _server_from_yaml(raw: dict) -> ServerConfig:
    if not isinstance(raw, dict):
        raise ConfigError("server", "must be a mapping")
    _reject_unknown(raw, _SERVER_KEYS, "server.")
    listen_raw = raw.get("listen", [f"0.0.0.0:{DEFAULT_PORT}"])
    if isinstance(listen_raw, str):
        listen_raw = [listen_raw]
    if not isinstance(listen_raw, list) or not listen_raw:
        raise ConfigError("server.listen", "must be a list of HOST:PORT")
    listen = tuple(parse_listen(v, f"server.listen[{i}]") for i, v in enumerate(listen_raw))
    signing = raw.get("signing", "required")
    if signing not in ("required", "enabled"):
        raise ConfigError("server.signing", "must be required or enabled")
    metrics = raw.get("metrics_listen")
    p = "server."
    return ServerConfig(
        listen=listen,
        server_name=_typed(raw, "server_name", str, p, "SMBCA"),
        domain=_typed(raw, "domain", str, p, "WORKGROUP"),
        state_dir=_typed(raw, "state_dir", str, p, "/var/lib/smbca"),
        signing_required=signing == "required",
        # YAML reads a bare `off` as false; take it as meant.
        encryption="off" if raw.get("encryption") is False else _typed(raw, "encryption", str, p, "off"),
        guest_ok=_typed(raw, "guest_ok", bool, p, False),
        anonymous_ok=_typed(raw, "anonymous_ok", bool, p, False),
        metrics_listen=parse_listen(metrics, "server.metrics_listen", 9445) if metrics else None,
        max_connections=_typed(raw, "max_connections", int, p, 1024),
        max_credits=_typed(raw, "max_credits", int, p, 8192),
        max_io_bytes=_typed(raw, "max_io_bytes", int, p, 8 * 1024 * 1024),
        max_outstanding_requests=_typed(raw, "max_outstanding_requests", int, p, 8192),
        idle_timeout_s=_typed(raw, "idle_timeout_s", int, p, 0),
        drain_timeout_s=_typed(raw, "drain_timeout_s", int, p, 20),
        log_level=_typed(raw, "log_level", str, p, "info"),
    )


def _share_from_yaml(raw, index: int) -> ShareConfig:
    prefix = f"shares[{index}]."
    if not isinstance(raw, dict):
        raise ConfigError(f"shares[{index}]", "must be a mapping")
    _reject_unknown(raw, _SHARE_KEYS, prefix)
    for key in ("name", "path"):
        if not isinstance(raw.get(key), str):
            raise ConfigError(prefix + key, "is required (a string)")
    return ShareConfig(
        name=raw["name"], path=raw["path"],
        comment=_typed(raw, "comment", str, prefix, ""),
        ca=_typed(raw, "ca", bool, prefix, False),
        encrypt=_typed(raw, "encrypt", bool, prefix, False),
        read_only=_typed(raw, "read_only", bool, prefix, False),
        ca_timeout_ms=_typed(raw, "ca_timeout_ms", int, prefix, DEFAULT_CA_TIMEOUT_MS),
        aggregate=_typed(raw, "aggregate", str, prefix, ""),
        volume_id=_typed(raw, "volume_id", str, prefix),
    )


def _user_from_yaml(raw, index: int) -> UserConfig:
    prefix = f"users[{index}]."
    if not isinstance(raw, dict):
        raise ConfigError(f"users[{index}]", "must be a mapping")
    _reject_unknown(raw, {"name", "password", "nt_hash"}, prefix)
    if not isinstance(raw.get("name"), str):
        raise ConfigError(prefix + "name", "is required (a string)")
    return UserConfig(name=raw["name"], password=_typed(raw, "password", str, prefix),
                      nt_hash_hex=_typed(raw, "nt_hash", str, prefix))


def load_yaml(path: str) -> Config:
    """Read and validate a YAML config file."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("--config", f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError("--config", f"{path} must hold a mapping")
    _reject_unknown(raw, {"server", "shares", "users", "smbpasswd_file", "cluster"}, "")
    from smbcad.config_cluster import cluster_from_yaml   # it builds on this module's helpers
    shares_raw = raw.get("shares") or []
    users_raw = raw.get("users") or []
    if not isinstance(shares_raw, list):
        raise ConfigError("shares", "must be a list")
    if not isinstance(users_raw, list):
        raise ConfigError("users", "must be a list")
    smbpasswd = raw.get("smbpasswd_file")
    files = (smbpasswd,) if isinstance(smbpasswd, str) else tuple(smbpasswd or ())
    return validate(Config(
        server=_server_from_yaml(raw.get("server") or {}),
        shares=tuple(_share_from_yaml(s, i) for i, s in enumerate(shares_raw)),
        users=tuple(_user_from_yaml(u, i) for i, u in enumerate(users_raw)),
        smbpasswd_files=files,
        source_path=os.path.abspath(path),
        cluster=cluster_from_yaml(raw.get("cluster")),
    ))


def parse_share_flag(text: str, index: int) -> ShareConfig:
    """``NAME=PATH[,ca][,encrypt][,ro]`` from ``--share``."""
    key = f"--share[{index}]"
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise ConfigError(key, f"{text!r} is not NAME=PATH[,ca][,encrypt][,ro]")
    path, *options = rest.split(",")
    flags = {"ca": False, "encrypt": False, "ro": False}
    for option in options:
        if option not in flags:
            raise ConfigError(key, f"unknown option {option!r} (ca, encrypt, ro)")
        flags[option] = True
    return ShareConfig(name=name, path=os.path.abspath(path), ca=flags["ca"],
                       encrypt=flags["encrypt"], read_only=flags["ro"])


def new_server_guid() -> bytes:
    """A fresh ServerGuid; the caller persists it in the state dir."""
    return uuid.uuid4().bytes_le


@dataclass(frozen=True)
class QuickArgs:
    """The quick-mode flags, before validation."""

    listen: tuple[str, ...]
    shares: tuple[str, ...]
    users: tuple[str, ...]
    signing: str = "required"
    encryption: str = "off"
    state_dir: str | None = None
    metrics_listen: str | None = None
    server_name: str = "SMBCA"
    guest_ok: bool = False
    anonymous_ok: bool = False
    log_level: str = "info"
    extra: dict = field(default_factory=dict)


def from_quick_args(args: QuickArgs) -> Config:
    """Build a Config from quick-mode flags; ``--user`` may name an smbpasswd file."""
    users, files = [], []
    for index, spec in enumerate(args.users):
        if os.path.isfile(spec):
            files.append(os.path.abspath(spec))
            continue
        name, sep, password = spec.partition(":")
        if not sep:
            raise ConfigError(f"--user[{index}]",
                              f"{spec!r} is neither NAME:PASSWORD nor an smbpasswd file")
        users.append(UserConfig(name=name, password=password))
    if args.signing not in ("required", "enabled"):
        raise ConfigError("--signing", "must be required or enabled")
    state_dir = args.state_dir or "/var/lib/smbca"
    server = ServerConfig(
        listen=tuple(parse_listen(v, f"--listen[{i}]") for i, v in enumerate(args.listen))
        or (ListenAddress("0.0.0.0", DEFAULT_PORT),),
        server_name=args.server_name,
        state_dir=state_dir,
        signing_required=args.signing == "required",
        encryption=args.encryption,
        guest_ok=args.guest_ok,
        anonymous_ok=args.anonymous_ok,
        metrics_listen=(parse_listen(args.metrics_listen, "--metrics-listen", 9445)
                        if args.metrics_listen else None),
        log_level=args.log_level,
    )
    return validate(Config(
        server=server,
        shares=tuple(parse_share_flag(s, i) for i, s in enumerate(args.shares)),
        users=tuple(users),
        smbpasswd_files=tuple(files),
    ))


def notify_socket_path() -> str | None:
    """systemd's NOTIFY_SOCKET, the one environment setting smbcad reads."""
    return os.environ.get("NOTIFY_SOCKET") or None
