"""``smbcad`` command line: ``--config FILE`` or the quick-mode flags.

A bad flag or config exits 2 with one line naming the key and the problem.
``--check-config`` (like Samba's ``testparm``) loads and validates the
config, prints what it would serve and exits 0 (or 2), binding nothing and
touching no state.  Quick mode keeps its state and control socket in a
directory of its own (``config.quick_state_dir``) unless ``--state-dir``
says where.
"""

import argparse
import asyncio
import sys

from smbca.config import ConfigError, build_user_database
from smbca.logs import add_log_arguments, start_logging
from smbca.version import add_version_argument
from smbcad import config as config_mod


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smbcad", description="Continuously-available SMB 3 server")
    p.add_argument("--config", help="YAML configuration file")
    p.add_argument("--listen", action="append", default=[], help="ADDR:PORT (repeatable)")
    p.add_argument("--share", action="append", default=[],
                   help="NAME=PATH[,ca][,encrypt][,ro] (repeatable)")
    p.add_argument("--user", action="append", default=[],
                   help="NAME:PASSWORD or an smbpasswd file (repeatable)")
    p.add_argument("--signing", default="required", choices=("required", "enabled"))
    p.add_argument("--encryption", default="off", choices=("off", "desired", "required"))
    p.add_argument("--state-dir", help="quick mode's state (default: "
                   f"{config_mod.QUICK_STATE_ROOT}/HOST-PORT of the first --listen)")
    p.add_argument("--control-socket", help="quick mode's control socket for the smbca "
                   f"command (default: STATE_DIR/{config_mod.QUICK_CONTROL_SOCKET})")
    p.add_argument("--metrics-listen", help="ADDR:PORT for Prometheus metrics")
    p.add_argument("--server-name", default="SMBCA")
    p.add_argument("--keytab", help="Kerberos keytab of the server's domain account "
                   "(smbca domain join): offer Kerberos")
    p.add_argument("--guest-ok", action="store_true")
    p.add_argument("--anonymous-ok", action="store_true",
                   help="allow anonymous (null) sessions, e.g. for smbtorture's re-auth tests")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (docs/multicore.md; default 1)")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)   # a supervisor's child
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--check-config", action="store_true",
                   help="load and validate the config, print a summary, exit 0 or 2")
    add_version_argument(p)
    add_log_arguments(p)
    return p


def load(argv) -> tuple[config_mod.Config, object]:
    """Parse arguments into a Config and a function that re-reads it (SIGHUP)."""
    return _load(_parser().parse_args(argv))


def _load(args) -> tuple[config_mod.Config, object]:
    if args.config:
        if args.share or args.user or args.listen:
            raise ConfigError("--config", "cannot be combined with --share/--user/--listen")

        def reload():
            return config_mod.load_yaml(args.config)
        return reload(), reload
    if not args.share:
        raise ConfigError("--share", "give --config FILE or at least one --share")
    quick = config_mod.QuickArgs(
        listen=tuple(args.listen), shares=tuple(args.share), users=tuple(args.user),
        signing=args.signing, encryption=args.encryption, state_dir=args.state_dir,
        metrics_listen=args.metrics_listen, server_name=args.server_name,
        keytab=args.keytab, guest_ok=args.guest_ok, anonymous_ok=args.anonymous_ok, log_level=args.log_level,
        control_socket=args.control_socket, workers=args.workers)

    def reload_quick():
        return config_mod.from_quick_args(quick)
    return reload_quick(), reload_quick


def summary(cfg: config_mod.Config) -> list[str]:
    """What ``--check-config`` prints: where it came from and what it serves."""
    server = cfg.server
    lines = [f"config: {cfg.source_path or 'quick mode (flags)'}: valid",
             f"listen: {', '.join(str(a) for a in server.listen)}",
             f"server name: {server.server_name}, domain {server.domain}",
             f"kerberos: {'keytab ' + server.keytab if server.keytab else 'off'}",
             f"signing: {'required' if server.signing_required else 'enabled'}, "
             f"encryption: {server.encryption}",
             f"state directory: {server.state_dir}",
             f"control socket: {server.control_socket or 'none'}",
             f"metrics: {server.metrics_listen or 'off'}",
             f"workers: {server.workers}",
             f"users: {len(cfg.users)}, smbpasswd files: {len(cfg.smbpasswd_files)}, "
             f"guest: {'yes' if server.guest_ok else 'no'}"]
    for share in cfg.shares:
        flags = [flag for flag, on in (("ca", share.ca), ("encrypt", share.encrypt),
                                       ("read-only", share.read_only)) if on]
        where = f" (aggregate {share.aggregate})" if share.aggregate else ""
        lines.append(f"share {share.name}: {share.path}{where}"
                     + (f" [{', '.join(flags)}]" if flags else ""))
    if cfg.cluster is not None:
        cluster = cfg.cluster
        lines.append(f"cluster {cluster.name}: node {cluster.node_id}, partner "
                     f"{cluster.partner}, mirror {cluster.mirror_listen or 'off'} -> "
                     f"{cluster.mirror_peer or 'off'}, aggregates "
                     f"{', '.join(a.name for a in cluster.aggregates) or 'none'}")
    return lines


def check_config(args) -> int:
    """``--check-config``: exit 0 with the summary, or 2 with the error."""
    try:
        cfg, _ = _load(args)
        build_user_database(cfg.users, cfg.smbpasswd_files, "smbpasswd_file")
    except ConfigError as exc:
        print(f"smbcad: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary(cfg)))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:            # --help and --version: 0, a usage error: 2
        return int(exc.code or 0)
    if args.check_config:
        return check_config(args)
    try:
        cfg, reload = _load(args)
        if cfg.server.workers > 1 and args.worker is None:
            from smbcad.workers.supervisor import Supervisor
            start_logging("smbcad", cfg.server.log_level, argv)
            return asyncio.run(Supervisor(cfg, argv).run())
        from smbcad.daemon import Daemon
        from smbcad.workers.gate import WorkerSeat
        from smbcad.workers.supervisor import workers_directory
        seat = None
        if args.worker is not None:
            if not 0 <= args.worker < cfg.server.workers:
                raise ConfigError("--worker", f"must be 0..{cfg.server.workers - 1}")
            seat = WorkerSeat(args.worker, cfg.server.workers, cfg.server.worker_routing_seed,
                              workers_directory(cfg.server.state_dir))
        start_logging("smbcad" if seat is None else f"smbcad-worker-{seat.index}",
                      cfg.server.log_level, argv, worker=None if seat is None else seat.index)
        daemon = Daemon(cfg, reload, seat)
    except ConfigError as exc:
        print(f"smbcad: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(daemon.run())
    finally:
        daemon.stop_overrun.disarm()


if __name__ == "__main__":
    sys.exit(main())
