"""Where ``smbca`` finds the daemons, and ``smbca status``: the node at a glance.

A daemon's control socket is, in this order: the ``--socket`` given on the
command line; the one its config in the config directory names
(``/etc/smbca/smbcad.yaml`` ``server.control_socket`` or
``cluster.control_socket``, ``witnessd.yaml`` ``server.control_socket``,
``clusdisk.yaml`` ``control.socket``; ``--config-dir`` to look elsewhere);
the default path (``/run/smbca/NAME.sock``).  When no smbcad listens there,
a quick-mode smbcad is looked for in its own state directory
(``/var/lib/smbca/quick/HOST-PORT/smbcad.sock``).

``smbca status`` asks all three daemons and says, for each one that does not
answer, that it is not running and where it looked; on a pair clusdisk's
answer shows both nodes (or that the partner is unreachable).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from smbca import admin_failover
from smbca.config import ConfigError, read_yaml
from smbca.control import (
    CLUSDISK_SOCKET, SMBCAD_QUICK_SOCKET_NAME, SMBCAD_QUICK_STATE_ROOT, SMBCAD_SOCKET,
    WITNESSD_SOCKET, ControlError, request_blocking)

CONFIG_DIR = "/etc/smbca"
DAEMONS = ("smbcad", "witnessd", "clusdisk")
_DEFAULT_SOCKETS = {"smbcad": SMBCAD_SOCKET, "witnessd": WITNESSD_SOCKET,
                    "clusdisk": CLUSDISK_SOCKET}
_STATUS_REQUESTS = {"smbcad": {"command": "status"}, "witnessd": {"event": "status"},
                    "clusdisk": {"command": "status"}}
# where each daemon's config names its control socket
_CONFIG_KEYS = {"smbcad": (("server", "control_socket"), ("cluster", "control_socket")),
                "witnessd": (("server", "control_socket"),),
                "clusdisk": (("control", "socket"),)}


class NotRunning(Exception):
    """A daemon that does not answer; the message says where we looked."""


@dataclass(frozen=True)
class Where:
    """A daemon's control socket and how we came to it."""

    daemon: str
    path: str
    source: str          # "--socket", "/etc/smbca/smbcad.yaml", "default", "quick mode"


def add_location_arguments(parser, daemon: str, socket_flag: str = "--socket") -> None:
    parser.add_argument(socket_flag, dest="socket",
                        help=f"{daemon} control socket (default: from "
                             f"{CONFIG_DIR}/{daemon}.yaml, else {_DEFAULT_SOCKETS[daemon]})")
    parser.add_argument("--config-dir", default=CONFIG_DIR,
                        help="where the daemons' configs are (default %(default)s)")


def locate(daemon: str, socket: str | None = None, config_dir: str = CONFIG_DIR) -> Where:
    """Where ``daemon`` listens (see the module docstring); raises NotRunning
    only for several quick-mode smbcads, which need ``--socket``."""
    if socket:
        return Where(daemon, socket, "--socket")
    configured = _from_config(daemon, config_dir)
    if configured is not None:
        return configured
    default = Where(daemon, _DEFAULT_SOCKETS[daemon], "default")
    if daemon != "smbcad" or Path(default.path).exists():
        return default
    quick = sorted(str(path) for path in Path(SMBCAD_QUICK_STATE_ROOT).glob(
        f"*/{SMBCAD_QUICK_SOCKET_NAME}") if path.is_socket())
    if len(quick) == 1:
        return Where(daemon, quick[0], "quick mode")
    if len(quick) > 1:
        raise NotRunning(f"smbcad is not at {default.path}, and there are several quick-mode "
                         f"smbcads: {', '.join(quick)}; choose one with --socket")
    return default


def _from_config(daemon: str, config_dir: str) -> Where | None:
    path = Path(config_dir) / f"{daemon}.yaml"
    if not path.is_file():
        return None
    try:
        document = read_yaml(str(path))
    except ConfigError:
        return None              # unreadable (not root?) or broken: the daemon says why
    if not isinstance(document, dict):
        return None
    for section, key in _CONFIG_KEYS[daemon]:
        value = (document.get(section) or {}).get(key) if isinstance(
            document.get(section) or {}, dict) else None
        if isinstance(value, str) and value:
            return Where(daemon, value, str(path))
    return None


def ask(where: Where, message: dict, timeout_s: float = 10.0) -> dict:
    """One request; NotRunning says what is not running and where we looked."""
    if not Path(where.path).exists():
        quick = (f", nor a quick-mode smbcad's in {SMBCAD_QUICK_STATE_ROOT}/*/"
                 if where.daemon == "smbcad" and where.source == "default" else "")
        raise NotRunning(f"{where.daemon} is not running here: no control socket at "
                         f"{where.path} ({_described(where)}){quick}")
    try:
        return request_blocking(where.path, message, timeout_s)
    except ControlError as exc:
        raise NotRunning(f"{where.daemon} does not answer on {where.path}: "
                         f"{str(exc).removeprefix(where.path + ': ')}") from None


def _described(where: Where) -> str:
    return {"--socket": "given with --socket", "default": "the default path",
            "quick mode": "a quick-mode smbcad"}.get(where.source, f"named in {where.source}")


# --- smbca status -----------------------------------------------------------------


def add_status_parser(sub) -> None:
    status = sub.add_parser("status", help="this node's daemons, and the pair's state")
    status.add_argument("--socket", "--clusdisk-socket", dest="clusdisk_socket",
                        help=f"clusdisk control socket (default {CLUSDISK_SOCKET})")
    status.add_argument("--smbcad-socket", help=f"default {SMBCAD_SOCKET}")
    status.add_argument("--witnessd-socket", help=f"default {WITNESSD_SOCKET}")
    status.add_argument("--config-dir", default=CONFIG_DIR,
                        help="where the daemons' configs are (default %(default)s)")
    status.add_argument("--json", action="store_true", help="every daemon's answer as JSON")


def status(args) -> int:
    """0: everything that answers is healthy and smbcad runs; 1: something
    is not running or not well; 2: no daemon could be reached at all."""
    answers: dict[str, dict] = {}
    missing: dict[str, str] = {}
    for daemon in DAEMONS:
        try:
            where = locate(daemon, getattr(args, f"{daemon}_socket"), args.config_dir)
            answers[daemon] = {"socket": where.path, **ask(where, _STATUS_REQUESTS[daemon])}
        except NotRunning as exc:
            missing[daemon] = str(exc)
    if args.json:
        print(json.dumps({**answers, **{d: {"running": False, "error": text}
                                        for d, text in missing.items()}}, indent=2))
    else:
        print("\n".join(show(answers, missing)))
    if not answers:
        return 2
    healthy = all(answer.get("ok") for answer in answers.values())
    return 0 if healthy and "smbcad" in answers else 1


def show(answers: dict, missing: dict) -> list[str]:
    lines = []
    smbcad = answers.get("smbcad")
    if smbcad is not None:
        smb = smbcad.get("smb", {})
        lines.append(f"smbcad: running, pid {smb.get('pid', '?')}, version "
                     f"{smb.get('version', '?')}, up {_duration(smb.get('uptime_s'))} "
                     f"({smbcad['socket']})")
        lines.append(f"  listening on {', '.join(smb.get('listen', [])) or '?'}; "
                     f"{smb.get('connections', 0)} connections, {smb.get('sessions', 0)} "
                     f"sessions, {smb.get('opens', 0)} opens "
                     f"({smb.get('disconnected_opens', 0)} disconnected)")
        lines.append(f"  shares online: {', '.join(smb.get('shares_online', [])) or 'none'}"
                     + (f"; offline: {', '.join(smb['shares_offline'])}"
                        if smb.get("shares_offline") else ""))
        if smb.get("workers"):                   # server.workers above 1: the supervisor's pid
            lines.append("  workers: " + "; ".join(
                f"{worker.get('index')}: pid {worker['pid']}, {worker.get('connections', 0)} "
                f"connections, {worker.get('opens', 0)} opens" if "pid" in worker
                else f"{worker.get('index')}: {worker.get('error', 'no answer')}"
                for worker in smb["workers"]))
        for aggregate in (smbcad.get("status") or {}).get("aggregates", []):
            mirror = aggregate.get("mirror") or {}
            lines.append(f"  aggregate {aggregate.get('name', '?')}: "
                         f"{aggregate.get('phase', '?')}"
                         + (f", mirror {mirror.get('role', '?')}, in sync "
                            f"{'yes' if mirror.get('in_sync') else 'no'}" if mirror else ""))
            if aggregate.get("partitions"):        # workers: each one's partition
                lines.append("    " + "; ".join(_partition(p) for p in aggregate["partitions"]))
    else:
        lines.append(missing["smbcad"])
    witnessd = answers.get("witnessd")
    if witnessd is not None:
        lines.append(f"witnessd: running ({witnessd['socket']}): "
                     f"{_witness_summary(witnessd)}")
    else:
        lines.append(missing["witnessd"])
    clusdisk = answers.get("clusdisk")
    if clusdisk is not None:
        lines.append(f"clusdisk: running ({clusdisk['socket']})")
        lines.extend("  " + line for line in admin_failover.show_status(
            clusdisk.get("status", {})))
    else:
        lines.append(missing["clusdisk"])
        if smbcad is not None and not (smbcad.get("status") or {}).get("aggregates"):
            lines.append("  (a single node: without clusdisk there is no pair, no takeover)")
    return lines


def _partition(partition: dict) -> str:
    mirror = partition.get("mirror") or {}
    text = f"worker {partition.get('worker', '?')}: {partition.get('phase', '?')}"
    if mirror:
        text += f", mirror {mirror.get('role', '?')} " + (
            "in sync" if mirror.get("in_sync") else "NOT in sync")
    if partition.get("detail"):
        text += f" ({partition['detail']})"
    return text


def _witness_summary(answer: dict) -> str:
    registrations = answer.get("registrations")
    interfaces = answer.get("interfaces")
    parts = []
    if isinstance(registrations, (list, int)):
        count = registrations if isinstance(registrations, int) else len(registrations)
        parts.append(f"{count} registrations")
    if isinstance(interfaces, list):
        parts.append(f"{len(interfaces)} interfaces")
    return ", ".join(parts) or ("ok" if answer.get("ok") else answer.get("error", "?"))


def _duration(seconds) -> str:
    if not isinstance(seconds, int):
        return "?"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
