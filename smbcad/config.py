"""smbcad configuration: a frozen dataclass tree, loaded once, validated with
errors that name the offending key (shared/STYLE.md rule 15).

Sources: a YAML file (``--config``) or the quick-mode flags of ``smbcad.cli``.
Units are in key names (``_ms``, ``_bytes``).  This is the only smbcad module
that reads the filesystem for settings; the primitives (errors, sections,
addresses, users, the YAML reader) are the shared ``smbca.config``.
"""

import os
import uuid
from dataclasses import dataclass, field, replace

from smbca.auth import load_smbpasswd
from smbca.auth.idmap import IdentityPolicy, IdMap
from smbca.config import (
    ConfigError,
    ListenAddress,
    Section,
    UserConfig,
    check_user,
    parse_listen,
    parse_identity,
    parse_users,
    read_yaml,
)
from smbca.control import SMBCAD_QUICK_SOCKET_NAME, SMBCAD_QUICK_STATE_ROOT, SMBCAD_SOCKET
from smbcad.config_cluster import ClusterConfig, check_cluster, cluster_from_yaml

DEFAULT_PORT = 445
DEFAULT_CA_TIMEOUT_MS = 60_000
DEFAULT_STATE_DIR = "/var/lib/smbca"
# Quick mode keeps its state (and its control socket) apart from an installed
# server's: QUICK_STATE_ROOT/HOST-PORT of its first listen address.
QUICK_STATE_ROOT = SMBCAD_QUICK_STATE_ROOT
QUICK_CONTROL_SOCKET = SMBCAD_QUICK_SOCKET_NAME     # in the quick-mode state directory


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
    case_sensitive: bool = False       # names match only in their exact case (no case-folding)


@dataclass(frozen=True)
class ServerConfig:
    listen: tuple[ListenAddress, ...]
    server_name: str = "SMBCA"
    domain: str = "WORKGROUP"
    # A domain member's Kerberos keys (``smbca domain join`` writes it; the
    # pair's two nodes hold the same file): enables Kerberos in SPNEGO.
    keytab: str | None = None
    state_dir: str = DEFAULT_STATE_DIR
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
    multichannel: bool = True          # SMB2_GLOBAL_CAP_MULTI_CHANNEL on 3.x: session binding
    max_channels_per_session: int = 32     # connections bound to one session (3.3.5.5.2)
    auth_timeout_s: int = 30           # NEGOTIATE + SESSION_SETUP must finish within this
    idle_timeout_s: int = 0            # 0: never drop idle connections
    send_timeout_s: int = 60           # responses left unread this long close the connection
    drain_timeout_s: int = 20
    log_level: str = "info"
    control_socket: str | None = SMBCAD_SOCKET   # the smbca command and clusdisk; None: none
    # Worker processes serving the clients (docs/multicore.md); 1: this
    # process alone.  More than 1: no cluster section yet; a file open
    # through two workers is cached by neither.
    workers: int = 1
    worker_routing_seed: int = 0       # which worker owns which ClientGuid (tests place clients)


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    shares: tuple[ShareConfig, ...]
    users: tuple[UserConfig, ...] = ()
    smbpasswd_files: tuple[str, ...] = ()
    source_path: str | None = None     # where it came from, for SIGHUP reloads
    cluster: ClusterConfig | None = None   # on a cluster node
    # ID mapping, administrators and backup operators (``identity``); the
    # quick mode maps nobody.
    identity: IdentityPolicy = field(default_factory=lambda: IdentityPolicy(IdMap(())))


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
    if server.keytab is not None and not os.path.isfile(server.keytab):
        raise ConfigError("server.keytab", f"{server.keytab!r} does not exist "
                          "(smbca domain join writes it)")
    if not (config.users or config.smbpasswd_files or server.guest_ok or server.keytab):
        raise ConfigError("users", "no users, no keytab and guest access is off: "
                          "nobody could connect")
    if server.max_io_bytes < 65536 or server.max_io_bytes > 8 * 1024 * 1024:
        raise ConfigError("server.max_io_bytes", "must be 64 KiB..8 MiB")
    _check_limits(server)
    if server.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("server.log_level", "must be debug, info, warning or error")
    _check_workers(config)
    return config


# (key, lowest, highest) of the integer limits; checked for the quick mode too.
_LIMITS = (("max_credits", 1, 65535), ("max_connections", 1, 1_000_000),
           ("max_connections_per_client", 1, 1_000_000),
           ("max_outstanding_requests", 1, 65535), ("max_async_requests", 2, 65535),
           ("max_async_requests_per_session", 2, 65535), ("max_channels_per_session", 1, 1024),
           ("auth_timeout_s", 1, 3600), ("idle_timeout_s", 0, 7 * 24 * 3600),
           ("send_timeout_s", 1, 3600), ("drain_timeout_s", 0, 3600), ("workers", 1, 256),
           ("worker_routing_seed", 0, (1 << 64) - 1))


def _check_workers(config: Config) -> None:
    """On a cluster node each worker runs its own mirror link on the mirror
    ports plus its index (``smbcad.cluster.partition``): they must all be ports."""
    count, cluster = config.server.workers, config.cluster
    if count == 1 or cluster is None:
        return
    for key, address in (("mirror_listen", cluster.mirror_listen),
                         ("mirror_peer", cluster.mirror_peer)):
        if address is None:
            continue
        if address.port == 0 or address.port + count - 1 > 65535:
            raise ConfigError(f"cluster.{key}", f"with server.workers: {count} worker K "
                              f"mirrors on this port plus K: ports {address.port}.."
                              f"{address.port + count - 1} must all be 1..65535")


def _check_limits(server: ServerConfig) -> None:
    for name, lowest, highest in _LIMITS:
        value = getattr(server, name)
        if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
            raise ConfigError(f"server.{name}", f"must be {lowest}..{highest}")


# --- YAML -------------------------------------------------------------------------

_SERVER_KEYS = ("listen", "server_name", "domain", "keytab", "state_dir", "signing", "encryption",
                "guest_ok", "anonymous_ok", "metrics_listen", "max_connections",
                "max_connections_per_client", "max_credits", "max_io_bytes",
                "max_outstanding_requests", "max_async_requests",
                "max_async_requests_per_session", "multichannel", "max_channels_per_session",
                "auth_timeout_s",
                "idle_timeout_s", "send_timeout_s", "drain_timeout_s", "log_level",
                "control_socket", "workers", "worker_routing_seed")
_SHARE_KEYS = ("name", "path", "comment", "ca", "encrypt", "read_only", "ca_timeout_ms",
               "aggregate", "volume_id", "case_sensitive")


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
    control = raw.get("control_socket", SMBCAD_SOCKET)      # null or "": no control socket
    if control is not None and not isinstance(control, str):
        raise ConfigError("server.control_socket", "must be a path (or null)")
    return ServerConfig(
        listen=listen,
        server_name=section.get("server_name", str, "SMBCA"),
        domain=section.get("domain", str, "WORKGROUP"),
        keytab=section.get("keytab", str, None),
        state_dir=section.get("state_dir", str, DEFAULT_STATE_DIR),
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
        multichannel=section.get("multichannel", bool, True),
        max_channels_per_session=section.get("max_channels_per_session", int, 32),
        auth_timeout_s=section.get("auth_timeout_s", int, 30),
        idle_timeout_s=section.get("idle_timeout_s", int, 0),
        send_timeout_s=section.get("send_timeout_s", int, 60),
        drain_timeout_s=section.get("drain_timeout_s", int, 20),
        log_level=section.get("log_level", str, "info"),
        control_socket=control or None,
        workers=section.get("workers", int, 1),
        worker_routing_seed=section.get("worker_routing_seed", int, 0),
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
        case_sensitive=section.get("case_sensitive", bool, False),
    )


def load_yaml(path: str) -> Config:
    """Read and validate a YAML config file."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError("--config", f"{path} must hold a mapping")
    root = Section(raw, "")
    root.check_keys("server", "shares", "users", "smbpasswd_file", "cluster", "identity")
    smbpasswd = raw.get("smbpasswd_file")
    files = (smbpasswd,) if isinstance(smbpasswd, str) else tuple(smbpasswd or ())
    server, cluster = _one_control_socket(raw, _server_from_yaml(root.sub("server")),
                                          cluster_from_yaml(raw.get("cluster")))
    # A domain member's workgroup is its domain's NetBIOS name, as in smb.conf.
    identity = parse_identity(root.sub("identity"), server.domain if server.keytab else None,
                              _local_ids(files))
    return validate(Config(
        server=server,
        shares=tuple(_share_from_yaml(share) for share in root.items("shares")),
        users=parse_users(root, "users"),
        smbpasswd_files=files,
        source_path=os.path.abspath(path),
        cluster=cluster,
        identity=identity,
    ))


def _local_ids(smbpasswd_files) -> list[tuple[str, int]]:
    """(user, uid) of the local accounts that have one, which no idmap range
    may hold; an unreadable file is ``validate``'s to report."""
    ids = []
    for path in smbpasswd_files:
        try:
            ids += [(user.name, user.uid) for user in load_smbpasswd(path)
                    if user.uid is not None]
        except (OSError, ValueError):
            continue
    return ids


def _one_control_socket(raw: dict, server: ServerConfig, cluster: ClusterConfig | None):
    """``server.control_socket`` is the socket; on a cluster node
    ``cluster.control_socket`` (the older spelling) may name it instead."""
    if cluster is None:
        return server, None
    in_cluster = isinstance(raw.get("cluster"), dict) and "control_socket" in raw["cluster"]
    in_server = isinstance(raw.get("server"), dict) and "control_socket" in raw["server"]
    if in_cluster and in_server and cluster.control_socket != server.control_socket:
        raise ConfigError("cluster.control_socket",
                          "differs from server.control_socket: give one of them")
    if in_cluster:
        server = replace(server, control_socket=cluster.control_socket)
    if server.control_socket is None:
        raise ConfigError("server.control_socket", "a cluster node needs its control socket "
                          "(clusdisk's adopt and release come through it)")
    return server, replace(cluster, control_socket=server.control_socket)


def parse_share_flag(text: str, index: int) -> ShareConfig:
    """``NAME=PATH[,ca][,encrypt][,ro][,case_sensitive]`` from ``--share``."""
    key = f"--share[{index}]"
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise ConfigError(key, f"{text!r} is not NAME=PATH[,ca][,encrypt][,ro][,case_sensitive]")
    path, *options = rest.split(",")
    flags = {"ca": False, "encrypt": False, "ro": False, "case_sensitive": False}
    for option in options:
        if option not in flags:
            raise ConfigError(key, f"unknown option {option!r} (ca, encrypt, ro, case_sensitive)")
        flags[option] = True
    return ShareConfig(name=name, path=os.path.abspath(path), ca=flags["ca"],
                       encrypt=flags["encrypt"], read_only=flags["ro"],
                       case_sensitive=flags["case_sensitive"])


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
    keytab: str | None = None
    guest_ok: bool = False
    anonymous_ok: bool = False
    log_level: str = "info"
    control_socket: str | None = None
    workers: int = 1
    extra: dict = field(default_factory=dict)


def quick_state_dir(listen: ListenAddress) -> str:
    """Quick mode's own state directory, never the installed server's (whose
    handle store is locked while it runs): one per listen address."""
    host = listen.host.replace(":", "_")
    return os.path.join(QUICK_STATE_ROOT, f"{host}-{listen.port}")


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
    listen = (tuple(parse_listen(v, f"--listen[{i}]", DEFAULT_PORT)
                    for i, v in enumerate(args.listen))
              or (ListenAddress("0.0.0.0", DEFAULT_PORT),))
    state_dir = os.path.abspath(args.state_dir) if args.state_dir else quick_state_dir(listen[0])
    server = ServerConfig(
        listen=listen,
        server_name=args.server_name,
        keytab=os.path.abspath(args.keytab) if args.keytab else None,
        state_dir=state_dir,
        control_socket=(os.path.abspath(args.control_socket) if args.control_socket
                        else os.path.join(state_dir, QUICK_CONTROL_SOCKET)),
        signing_required=args.signing == "required",
        encryption=args.encryption,
        guest_ok=args.guest_ok,
        anonymous_ok=args.anonymous_ok,
        metrics_listen=(parse_listen(args.metrics_listen, "--metrics-listen", 9445)
                        if args.metrics_listen else None),
        log_level=args.log_level,
        workers=args.workers,
    )
    return validate(Config(
        server=server,
        shares=tuple(parse_share_flag(s, i) for i, s in enumerate(args.shares)),
        users=tuple(users),
        smbpasswd_files=tuple(files),
    ))


# --- SIGHUP -------------------------------------------------------------------------

# Server keys bound at start-up (sockets, the state directory, the frame size
# the listener was built with): a reload keeps their running values.
RESTART_ONLY = ("listen", "state_dir", "metrics_listen", "control_socket", "max_io_bytes",
                "workers", "worker_routing_seed")


def for_reload(running: Config, loaded: Config) -> tuple[Config, tuple[str, ...]]:
    """``loaded`` with the running values of what only a restart changes,
    and the dotted names of those the new config changed.

    Live: users, local shares (added, removed, changed), names, signing,
    encryption, limits, timeouts and the log level.  Restart: the keys of
    ``RESTART_ONLY``, the ``cluster`` section, and shares on aggregates
    (an aggregate's shares come and go with adopt and release)."""
    changed = [f"server.{name}" for name in RESTART_ONLY
               if getattr(running.server, name) != getattr(loaded.server, name)]
    server = replace(loaded.server, **{name: getattr(running.server, name)
                                       for name in RESTART_ONLY})
    if running.cluster != loaded.cluster:
        changed.append("cluster")
    old_on_aggregates = {share.name.lower(): share for share in running.shares if share.aggregate}
    shares = []
    for share in loaded.shares:
        old = old_on_aggregates.pop(share.name.lower(), None)
        if share.aggregate or old is not None:
            if share != old:
                changed.append(f"shares[{share.name}]")
            if old is not None:
                shares.append(old)
            continue
        shares.append(share)
    for old in old_on_aggregates.values():           # removed from the file: kept until then
        changed.append(f"shares[{old.name}]")
        shares.append(old)
    return replace(loaded, server=server, shares=tuple(shares), cluster=running.cluster), \
        tuple(changed)
