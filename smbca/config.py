"""The configuration primitives every daemon uses (shared/STYLE.md rule 15).

Each daemon's ``config.py`` declares its own keys and frozen dataclass tree;
what they have in common lives here, so a bad setting reads the same way in
all three: ``ConfigError`` names the dotted key, ``Section`` walks a parsed
YAML mapping keeping that path, ``parse_listen`` reads ``HOST:PORT``,
``parse_users`` the ``users`` list, ``read_yaml`` the file, and
``build_user_database`` turns users and smbpasswd files into the acceptor's
database.  ``systemd_environment`` is the one place that reads systemd's
variables from the environment.
"""

import difflib
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import yaml

from smbca.auth import User, UserDatabase, load_smbpasswd
from smbca.auth.idmap import IdentityPolicy, IdMap, IdRange, check_ranges, split_sid
from smbca.auth.legacy_crypto import nt_hash

_REQUIRED = object()
_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a mapping"}


class ConfigError(Exception):
    """A bad setting: ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class ListenAddress:
    """An IP address and port to bind or to reach."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class UserConfig:
    """A user: a clear password or an NT hash (hex), never both."""

    name: str
    password: str | None = None
    nt_hash_hex: str | None = None


@dataclass(frozen=True)
class SystemdEnv:
    """What systemd tells a Type=notify service (sd_notify(3), sd_watchdog_enabled(3))."""

    notify_socket: str | None = None
    watchdog_usec: int | None = None
    journal_stream: tuple[int, int] | None = None   # (st_dev, st_ino) of the journal stream


class Section:
    """A parsed YAML mapping with its dotted path, so every error names its key."""

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(path or "(top level)", "must be a mapping")
        self.data, self.path = data, path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def check_keys(self, *allowed: str) -> None:
        """Every key is one of ``allowed``: a typo is an error naming the key
        and, when one is close, the key that was probably meant."""
        for name in self.data:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f" (did you mean {self.key(close[0])}?)" if close else ""
                raise ConfigError(self.key(str(name)), f"unknown key{hint}")

    def get(self, name: str, kind: type, default: object = _REQUIRED, *,
            minimum: int | float | None = None, maximum: int | float | None = None):
        """The value of ``name``, checked against ``kind`` (bool is not an int)
        and the bounds; ``default`` when absent or null, else it is required."""
        value = self.data.get(name)
        if value is None:
            if default is _REQUIRED:
                raise ConfigError(self.key(name), "required")
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise ConfigError(self.key(name), f"must be {_KIND_NAMES.get(kind, kind.__name__)}")
        if minimum is not None and value < minimum:
            raise ConfigError(self.key(name), f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise ConfigError(self.key(name), f"must be at most {maximum}")
        return value

    def sub(self, name: str) -> "Section":
        return Section(self.data.get(name), self.key(name))

    def items(self, name: str) -> list["Section"]:
        """The mappings of the list ``name`` (absent or null: none)."""
        return [Section(item, f"{self.key(name)}[{i}]")
                for i, item in enumerate(self.list(name))]

    def list(self, name: str) -> list:
        value = self.data.get(name) or []
        if not isinstance(value, list):
            raise ConfigError(self.key(name), "must be a list")
        return value


def parse_listen(text: object, key: str, default_port: int | None = None, *,
                 ephemeral_ok: bool = False) -> ListenAddress:
    """``HOST:PORT``, ``[V6]:PORT``, or a bare host when there is a default
    port.  HOST is an IP address or ``localhost``; an empty host means every
    IPv4 address.  Port 0 (the kernel picks) only where ``ephemeral_ok``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(key, "must be HOST:PORT")
    text = text.strip()
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
    elif port_text.isdigit() and (0 if ephemeral_ok else 1) <= int(port_text) < 65536:
        port = int(port_text)
    else:
        raise ConfigError(key, f"bad port {port_text!r}")
    if host not in ("localhost", ""):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(key, f"{host!r} is not an IP address") from None
    return ListenAddress(host or "0.0.0.0", port)


def check_user(user: UserConfig, key: str) -> None:
    """A user name the NTLM acceptor can match, and exactly one secret."""
    name = user.name
    if not name or not name.strip() or ":" in name or len(name) > 255 \
            or any(ord(ch) < 0x20 for ch in name):
        raise ConfigError(f"{key}.name", f"invalid user name {name!r}")
    if (user.password is None) == (user.nt_hash_hex is None):
        raise ConfigError(key, "give exactly one of password or nt_hash")
    if user.nt_hash_hex is not None:
        try:
            if len(bytes.fromhex(user.nt_hash_hex)) != 16:
                raise ValueError(user.nt_hash_hex)
        except ValueError:
            raise ConfigError(f"{key}.nt_hash", "must be 32 hex digits") from None


def parse_users(parent: Section, name: str) -> tuple[UserConfig, ...]:
    """The ``name`` list of ``{name, password | nt_hash}`` mappings."""
    users = []
    for item in parent.items(name):
        item.check_keys("name", "password", "nt_hash")
        password = item.data.get("password")
        if isinstance(password, (int, float)) and not isinstance(password, bool):
            password = str(password)        # YAML reads an all-digit password as a number
        if password is not None and not isinstance(password, str):
            raise ConfigError(item.key("password"), "must be a string")
        user = UserConfig(item.get("name", str), password, item.get("nt_hash", str, None))
        check_user(user, item.path)
        users.append(user)
    return tuple(users)


def build_user_database(users: Iterable[UserConfig], smbpasswd_files: Sequence[str],
                        files_key: str) -> UserDatabase:
    """The acceptor's user database; a bad smbpasswd file is the config error
    ``files_key[INDEX]``."""
    entries = [User(name=user.name, nt_hash=nt_hash(user.password) if user.password is not None
                    else bytes.fromhex(user.nt_hash_hex or ""))
               for user in users]
    for index, path in enumerate(smbpasswd_files):
        try:
            entries.extend(load_smbpasswd(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{files_key}[{index}]", str(exc)) from None
    return UserDatabase.from_users(entries)


# The joined domain's range when ``identity.idmap`` gives it none
# (``identity.default_range``): above the ids Linux distributions hand out.
DEFAULT_DOMAIN_RANGE = (1_000_000, 1_999_999)
IDENTITY_KEYS = ("idmap", "default_range", "admins", "backup_operators")


def _id_range(value: object, key: str) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ConfigError(key, "must be [LOW, HIGH] (two integers)")
    return value[0], value[1]


def _sids(section: Section, name: str) -> frozenset[str]:
    sids = set()
    for index, value in enumerate(section.list(name)):
        text = value.strip().upper() if isinstance(value, str) else ""
        parts = text.split("-")
        if len(parts) < 3 or parts[:2] != ["S", "1"] or not all(p.isdigit() for p in parts[2:]):
            raise ConfigError(f"{section.key(name)}[{index}]", f"{value!r} is not a SID "
                              "(S-1-5-21-...-RID for a domain user or group)")
        sids.add(text)
    return frozenset(sids)


def parse_identity(section: Section, joined_domain: str | None,
                   local_ids: Iterable[tuple[str, int]] = ()) -> IdentityPolicy:
    """The ``identity`` section: ``idmap`` ranges (``{domain: NAME-or-SID,
    range: [LOW, HIGH]}``), ``default_range`` for ``joined_domain`` (the
    domain member's NetBIOS domain, when it has none in ``idmap``), and the
    ``admins``/``backup_operators`` SID lists.  Ranges that overlap or hold
    a local account's id (``local_ids``: ``(name, uid)``) are refused, the
    error naming the range's key."""
    section.check_keys(*IDENTITY_KEYS)
    ranges = []
    for item in section.items("idmap"):
        item.check_keys("domain", "range")
        domain = item.get("domain", str).strip()
        if not domain or (domain.upper().startswith("S-1-5-21-")
                          and split_sid(domain + "-0") is None):
            raise ConfigError(item.key("domain"), f"{domain!r} is neither a NetBIOS domain "
                              "name nor a domain SID (S-1-5-21-X-Y-Z)")
        low, high = _id_range(item.data.get("range"), item.key("range"))
        ranges.append(IdRange(domain.upper(), low, high, item.key("range")))
    default = section.data.get("default_range")
    if joined_domain and not any(r.domain == joined_domain.upper() for r in ranges):
        low, high = (DEFAULT_DOMAIN_RANGE if default is None
                     else _id_range(default, section.key("default_range")))
        ranges.append(IdRange(joined_domain.upper(), low, high, section.key("default_range")))
    try:
        check_ranges(ranges, local_ids)
    except ValueError as exc:
        key, _, problem = str(exc).partition(": ")
        raise ConfigError(key, problem) from None
    return IdentityPolicy(IdMap(ranges), _sids(section, "admins"),
                          _sids(section, "backup_operators"))


def read_yaml(path: str) -> object:
    """The parsed document of a YAML file; errors are the key ``--config``."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("--config", f"{path} is not valid YAML: {exc}") from None


def systemd_environment(environ: Mapping[str, str] | None = None) -> SystemdEnv:
    """NOTIFY_SOCKET, WATCHDOG_USEC (honoured only if WATCHDOG_PID is unset
    or is our pid, sd_watchdog_enabled(3)) and JOURNAL_STREAM (``DEV:INODE``
    of the stream systemd connected stdout/stderr to, systemd.exec(5))."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    watchdog = int(usec) if usec and usec.isdigit() and int(usec) > 0 else None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        watchdog = None
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    stream = (int(device), int(inode)) if device.isdigit() and inode.isdigit() else None
    return SystemdEnv(env.get("NOTIFY_SOCKET") or None, watchdog, stream)


WORKER_LISTEN_FDS = "SMBCA_WORKER_LISTEN_FDS"
WORKER_PREDECESSOR = "SMBCA_WORKER_PREDECESSOR"


def worker_listen_fds(environ: Mapping[str, str] | None = None) -> list[int]:
    """In an smbcad worker: the listening sockets' descriptors its supervisor
    passed (``WORKER_LISTEN_FDS``, comma-separated)."""
    env = os.environ if environ is None else environ
    return [int(fd) for fd in env.get(WORKER_LISTEN_FDS, "").split(",") if fd.isdigit()]


def worker_predecessor(environ: Mapping[str, str] | None = None) -> int | None:
    """In an smbcad worker: the pid of the worker it replaces, if any
    (``WORKER_PREDECESSOR``)."""
    value = (os.environ if environ is None else environ).get(WORKER_PREDECESSOR, "")
    return int(value) if value.isdigit() else None


def worker_environment(notify_socket: str, watchdog_usec: int, listen_fds: list[int],
                       predecessor: int | None = None) -> dict[str, str]:
    """The environment an smbcad supervisor starts a worker with: its own,
    with the supervisor as the worker's NOTIFY_SOCKET and watchdog
    (WATCHDOG_PID dropped: it names the supervisor), the listening
    sockets' descriptors and the pid of the worker it replaces."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("WATCHDOG_PID", WORKER_PREDECESSOR)}
    env.update({"NOTIFY_SOCKET": notify_socket, "WATCHDOG_USEC": str(watchdog_usec),
                WORKER_LISTEN_FDS: ",".join(str(fd) for fd in listen_fds)})
    if predecessor is not None:
        env[WORKER_PREDECESSOR] = str(predecessor)
    return env


def read_key_file(path: str, key: str = "cluster.key_file") -> bytes:
    """The cluster key both nodes share (clusdisk's heartbeats, smbcad's
    handle mirror): raw bytes, or hex text; at least 16 bytes."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None
    text = raw.strip()
    try:
        decoded = bytes.fromhex(text.decode("ascii"))
        if len(decoded) >= 16:
            raw = decoded
    except (UnicodeDecodeError, ValueError):
        pass
    if len(raw) < 16:
        raise ConfigError(key, f"{path}: the key needs at least 16 bytes")
    return raw


def reload_config(running, load, for_reload, log) -> object | None:
    """A SIGHUP's new config: ``load()`` re-reads it, ``for_reload(running,
    loaded)`` keeps what only a restart changes and names it; each such key
    is logged as waiting for the restart.  None (logged, nothing changes)
    when the new config does not load."""
    try:
        cfg, needs_restart = for_reload(running, load())
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
        return None
    for key in needs_restart:
        log.warning("reload: %s changed; it takes effect at the next restart", key)
    return cfg
