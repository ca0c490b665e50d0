"""``smbcad`` command line: ``--config FILE`` or the quick-mode flags.

A bad flag or config exits 2 with one line naming the key and the problem.
"""

import argparse
import asyncio
import sys

from smbca.config import ConfigError
from smbca.logs import add_log_arguments, start_logging
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
    p.add_argument("--state-dir")
    p.add_argument("--metrics-listen", help="ADDR:PORT for Prometheus metrics")
    p.add_argument("--server-name", default="SMBCA")
    p.add_argument("--guest-ok", action="store_true")
    p.add_argument("--anonymous-ok", action="store_true",
                   help="allow anonymous (null) sessions, e.g. for smbtorture's re-auth tests")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    add_log_arguments(p)
    return p


def load(argv) -> tuple[config_mod.Config, object]:
    """Parse arguments into a Config and a function that re-reads it (SIGHUP)."""
    args = _parser().parse_args(argv)
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
        guest_ok=args.guest_ok, anonymous_ok=args.anonymous_ok, log_level=args.log_level)

    def reload_quick():
        return config_mod.from_quick_args(quick)
    return reload_quick(), reload_quick


def main(argv=None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        cfg, reload = load(argv)
        from smbcad.daemon import Daemon
        start_logging("smbcad", cfg.server.log_level, argv)
        daemon = Daemon(cfg, reload)
    except ConfigError as exc:
        print(f"smbcad: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(daemon.run())


if __name__ == "__main__":
    sys.exit(main())
