"""``witnessd`` command line: ``--config FILE`` or the quick-mode flags.

Quick mode, for scripts and tests::

    witnessd --listen ADDR:PORT [--epm-listen ADDR:PORT] --user NAME:PASSWORD \\
             --net-name NAME --interface NODE=IPV4[,IPV6] [--interface ...] \\
             [--node NAME] [--share NAME] [--control-socket PATH]

``--epm-listen`` defaults to port 135 on the ``--listen`` address; ``--node``
(the local node, whose addresses GetInterfaceList does not offer as
witnesses) defaults to the node owning the ``--listen`` address.  A bad
flag or config (an unknown key too) exits 2 with one line naming the key
and the problem.  With ``--config``, SIGHUP re-reads the file
(``witnessd.daemon.Daemon.reload``).  ``--check-config`` loads and
validates the config, prints a summary and exits 0 (or 2), binding nothing.
"""

import argparse
import asyncio
import sys

from smbca.config import ConfigError, build_user_database
from smbca.logs import add_log_arguments, start_logging
from smbca.version import add_version_argument
from witnessd import config as config_mod


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="witnessd", description="MS-SWN witness server")
    p.add_argument("--config", help="YAML configuration file")
    p.add_argument("--listen", action="append", default=[],
                   help="witness RPC endpoint ADDR:PORT (repeatable; port 0 picks one)")
    p.add_argument("--epm-listen", action="append", default=[],
                   help="endpoint mapper ADDR[:PORT] (default: port 135 on --listen)")
    p.add_argument("--user", action="append", default=[], help="NAME:PASSWORD (repeatable)")
    p.add_argument("--net-name", help="ServerGlobalName: the cluster name clients use")
    p.add_argument("--interface", action="append", default=[],
                   help="NODE=IPV4[,IPV6] (repeatable): an InterfaceList entry")
    p.add_argument("--node", help="the local node (default: the node owning --listen)")
    p.add_argument("--share", action="append", default=[],
                   help="share name RegisterEx may name (repeatable)")
    p.add_argument("--control-socket", help="Unix socket for events (default: none)")
    p.add_argument("--metrics-listen", help="ADDR:PORT for Prometheus metrics")
    p.add_argument("--server-name", default="WITNESS", help="NetBIOS name for NTLM")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--check-config", action="store_true",
                   help="load and validate the config, print a summary, exit 0 or 2")
    add_version_argument(p)
    add_log_arguments(p)
    return p


def load(argv: list[str]) -> config_mod.Config:
    return _load(_parser().parse_args(argv))


def _load(args) -> config_mod.Config:
    if args.config:
        if args.listen or args.user or args.interface or args.net_name:
            raise ConfigError("--config", "cannot be combined with quick-mode flags")
        return config_mod.load_yaml(args.config)
    if not args.listen or not args.net_name or not args.user:
        raise ConfigError("--listen", "give --config FILE, or --listen, --net-name "
                                     "and --user")
    return config_mod.from_quick_args(config_mod.QuickArgs(
        listen=tuple(args.listen), epm_listen=tuple(args.epm_listen), users=tuple(args.user),
        net_name=args.net_name, interfaces=tuple(args.interface), node=args.node,
        shares=tuple(args.share), control_socket=args.control_socket,
        metrics_listen=args.metrics_listen, server_name=args.server_name,
        log_level=args.log_level))


def summary(cfg: config_mod.Config) -> list[str]:
    """What ``--check-config`` prints."""
    server, witness = cfg.server, cfg.witness
    lines = [f"config: {cfg.source_path or 'quick mode (flags)'}: valid",
             f"witness RPC: {', '.join(str(a) for a in server.listen)}; endpoint mapper: "
             f"{', '.join(str(a) for a in server.epm_listen)}",
             f"control socket: {server.control_socket or 'none'}",
             f"metrics: {server.metrics_listen or 'off'}",
             f"net name: {witness.net_name}"
             + (f" (aliases {', '.join(witness.aliases)})" if witness.aliases else ""),
             f"nodes: {', '.join(witness.nodes) or 'none'}; this node: "
             f"{witness.local_node or '?'}",
             f"users: {len(cfg.auth.users)}, smbpasswd files: {len(cfg.auth.smbpasswd_files)}",
             f"shares: {', '.join(witness.shares) or 'none'}"]
    for interface in cfg.interfaces:
        addresses = ", ".join(str(a) for a in (interface.ipv4, interface.ipv6) if a)
        lines.append(f"interface {addresses} on {interface.node} ({interface.state})")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:            # --help and --version: 0, a usage error: 2
        return int(exc.code or 0)
    try:
        cfg = _load(args)
        if args.check_config:
            build_user_database(cfg.auth.users, cfg.auth.smbpasswd_files,
                                "auth.smbpasswd_files")
            print("\n".join(summary(cfg)))
            return 0
        start_logging("witnessd", cfg.server.log_level, argv)
        from witnessd.daemon import Daemon
        daemon = Daemon(cfg)
    except ConfigError as exc:
        print(f"witnessd: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(daemon.run())
    finally:
        daemon.stop_overrun.disarm()


if __name__ == "__main__":
    sys.exit(main())
