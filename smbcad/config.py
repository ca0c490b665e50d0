"""smbcad configuration: a frozen dataclass tree, loaded once, validated with
errors that name the offending key (shared/STYLE.md rule 15).

Sources: a YAML file (``--config``) or the quick-mode flags of ``smbcad.cli``.
Units are in key names (``_ms``, ``_bytes``).  This is the only smbcad module
that reads the filesystem for settings; the primitives (errors, sections,
addresses, users, the YAML reader) are the shared ``smbca.config``.
"""

import os
import uuid
from dataclasses import dataclass, field

from smbca.config import (
    ConfigError,
    ListenAddress,
    Section,
    UserConfig,
    check_user,
    parse_listen,
    parse_users,
    read_yaml,
)
from smbcad.config_cluster import ClusterConfig, check_cluster, cluster_from_yaml

DEFAULT_PORT = 445
DEFAULT_CA_TIMEOUT_MS = 60_000


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
    max_connections_per_client: int = 64   # per client IP address
    max_credits: int = 8192
    max_io_bytes: int = 8 * 1024 * 1024
    max_outstanding_requests: int = 8192   # credits granted plus async requests pending
    max_async_requests: int = 512      # pending CHANGE_NOTIFY/lock/create waits per connection
    max_async_requests_per_session: int = 512   # the same, per session over all its channels
    auth_timeout_s: int = 30           # NEGOTIATE + SESSION_SETUP must finish within this
    idle_timeout_s: int = 0            # 0: never drop idle connections
    send_timeout_s: int = 60           # responses left unread this long close the connection
    drain_timeout_s: int = 20
    log_level: str = "info"


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    shares: tuple[ShareConfig, ...]
    users: tuple[UserConfig, ...] = ()
    smbpasswd_files: tuple[str, ...] = ()
    source_path: str | None = None     # where it came from, for SIGHUP reloads
    cluster: ClusterConfig | None = None   # on a cluster node


# --- validation helpers ----------------------------------------------------------

_SHARE_NAME_BAD = set('"/\\[]:|<>+=;,*?')


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
    check_cluster(config.cluster, config.shares)
    for index, user in enumerate(config.users):
        check_user(user, f"users[{index}]")
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
    _check_limits(server)
    if server.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("server.log_level", "must be debug, info, warning or error")
    return config


# (key, lowest, highest) of the integer limits; checked for the quick mode too.
_LIMITS = (("max_credits", 1, 65535), ("max_connections", 1, 1_000_000),
           ("max_connections_per_client", 1, 1_000_000),
           ("max_outstanding_requests", 1, 65535), ("max_async_requests", 2, 65535),
           ("max_async_requests_per_session", 2, 65535),
           ("auth_timeout_s", 1, 3600), ("idle_timeout_s", 0, 7 * 24 * 3600),
           ("send_timeout_s", 1, 3600))


def _check_limits(server: ServerConfig) -> None:
    for name, lowest, highest in _LIMITS:
        value = getattr(server, name)
        if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
            raise ConfigError(f"server.{name}", f"must be {lowest}..{highest}")


# --- YAML -------------------------------------------------------------------------

_SERVER_KEYS = ("listen", "server_name", "domain", "state_dir", "signing", "encryption",
                "guest_ok", "anonymous_ok", "metrics_listen", "max_connections",
                "max_connections_per_client", "max_credits", "max_io_bytes",
                "max_outstanding_requests", "max_async_requests",
                "max_async_requests_per_session", "auth_timeout_s",
                "idle_timeout_s", "send_timeout_s", "drain_timeout_s", "log_level")
_SHARE_KEYS = ("name", "path", "comment", "ca", "encrypt", "read_only", "ca_timeout_ms",
               "aggregate", "volume_id")


def _server_from_yaml(section: Section) -> ServerConfig:
    section.check_keys(*_SERVER_KEYS)
    raw = section.data
    listen_raw = raw.get("listen", [f"0.0.0.0:{DEFAULT_PORT}"])
    if isinstance(listen_raw, str):
        listen_raw = [listen_raw]
    if not isinstance(listen_raw, list) or not listen_raw:
        raise ConfigError("server.listen", "must be a list of HOST:PORT")
    listen = tuple(parse_listen(v, f"server.listen[{i}]", DEFAULT_PORT)
                   for i, v in enumerate(listen_raw))
    signing = raw.get("signing", "required")
    if signing not in ("required", "enabled"):
        raise ConfigError("server.signing", "must be required or enabled")
    metrics = raw.get("metrics_listen")
    return ServerConfig(
        listen=listen,
        server_name=section.get("server_name", str, "SMBCA"),
        domain=section.get("domain", str, "WORKGROUP"),
        state_dir=section.get("state_dir", str, "/var/lib/smbca"),
        signing_required=signing == "required",
        # YAML reads a bare `off` as false; take it as meant.
        encryption="off" if raw.get("encryption") is False else section.get("encryption", str,
                                                                             "off"),
        guest_ok=section.get("guest_ok", bool, False),
        anonymous_ok=section.get("anonymous_ok", bool, False),
        metrics_listen=parse_listen(metrics, "server.metrics_listen", 9445) if metrics else None,
        max_connections=section.get("max_connections", int, 1024),
        max_connections_per_client=section.get("max_connections_per_client", int, 64),
        max_credits=section.get("max_credits", int, 8192),
        max_io_bytes=section.get("max_io_bytes", int, 8 * 1024 * 1024),
        max_outstanding_requests=section.get("max_outstanding_requests", int, 8192),
        max_async_requests=section.get("max_async_requests", int, 512),
        max_async_requests_per_session=section.get("max_async_requests_per_session", int, 512),
        auth_timeout_s=section.get("auth_timeout_s", int, 30),
        idle_timeout_s=section.get("idle_timeout_s", int, 0),
        send_timeout_s=section.get("send_timeout_s", int, 60),
        drain_timeout_s=section.get("drain_timeout_s", int, 20),
        log_level=section.get("log_level", str, "info"),
    )


def _share_from_yaml(section: Section) -> ShareConfig:
    section.check_keys(*_SHARE_KEYS)
    return ShareConfig(
        name=section.get("name", str), path=section.get("path", str),
        comment=section.get("comment", str, ""),
        ca=section.get("ca", bool, False),
        encrypt=section.get("encrypt", bool, False),
        read_only=section.get("read_only", bool, False),
        ca_timeout_ms=section.get("ca_timeout_ms", int, DEFAULT_CA_TIMEOUT_MS),
        aggregate=section.get("aggregate", str, ""),
        volume_id=section.get("volume_id", str, None),
    )


def load_yaml(path: str) -> Config:
    """Read and validate a YAML config file."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError("--config", f"{path} must hold a mapping")
    root = Section(raw, "")
    root.check_keys("server", "shares", "users", "smbpasswd_file", "cluster")
    smbpasswd = raw.get("smbpasswd_file")
    files = (smbpasswd,) if isinstance(smbpasswd, str) else tuple(smbpasswd or ())
    return validate(Config(
        server=_server_from_yaml(root.sub("server")),
        shares=tuple(_share_from_yaml(share) for share in root.items("shares")),
        users=parse_users(root, "users"),
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
        listen=tuple(parse_listen(v, f"--listen[{i}]", DEFAULT_PORT)
                     for i, v in enumerate(args.listen))
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
