"""``clusdisk`` command line.

    clusdisk --config FILE            run the cluster service (systemd unit)
    clusdisk --config FILE --check-config
                                      load and validate the config, print a
                                      summary, exit 0 or 2 (touches no disk)
    clusdisk scan [--hosts 0,1] [--json] [--no-probe]
                                      every SCSI disk: identifiers, paths, size,
                                      reservation state (needs no config)
    clusdisk status [--socket PATH]   the running daemon's view, as JSON
    clusdisk diagram scsi2|pr         the arbitration table as Graphviz

A bad flag or config exits 2 with one line naming the key and the problem.
"""

import argparse
import asyncio
import json
import sys

from clusdisk import config as config_mod
from clusdisk import disks
from clusdisk.arbitration import Mode, to_dot
from smbca.config import ConfigError, systemd_environment
from smbca.control import CLUSDISK_SOCKET, ControlError, request_blocking
from smbca.version import add_version_argument
from smbca.logs import add_log_arguments, start_logging

SUBCOMMANDS = ("scan", "status", "diagram")


def _daemon_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clusdisk", description="smbca shared-disk cluster service",
                                epilog="subcommands: " + ", ".join(SUBCOMMANDS))
    p.add_argument("--config", required=True, help="YAML configuration file")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    p.add_argument("--check-config", action="store_true",
                   help="load and validate the config, print a summary, exit 0 or 2")
    add_version_argument(p)
    add_log_arguments(p)
    return p


def _tools_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clusdisk")
    add_version_argument(p)
    sub = p.add_subparsers(dest="command", required=True)
    scan = sub.add_parser("scan", help="list SCSI disks with identifiers and reservations")
    scan.add_argument("--sysfs-root", default="/sys")
    scan.add_argument("--dev-root", default="/dev")
    scan.add_argument("--hosts", help="comma-separated SCSI host numbers to include")
    scan.add_argument("--json", action="store_true")
    scan.add_argument("--no-probe", action="store_true", help="no SCSI commands (sysfs only)")
    status = sub.add_parser("status", help="query the running daemon")
    status.add_argument("--socket", default=CLUSDISK_SOCKET)
    diagram = sub.add_parser("diagram", help="print the arbitration table as Graphviz")
    diagram.add_argument("mode", choices=[m.value for m in Mode])
    return p


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


async def _probe(luns, device_factory) -> list[str]:
    from clusdisk.reservations import probe_any
    states = []
    for lun in luns:
        device = device_factory(lun.sg)
        try:
            states.append((await probe_any(device)).summary)
        finally:
            device.close()
    return states


def scan(args, out=sys.stdout, device_factory=None, read_vpd83=None) -> int:
    from clusdisk.daemon import read_vpd83_blocking
    from clusdisk.scsi.sgio import SgDevice
    hosts = None
    if args.hosts:
        try:
            hosts = {int(h) for h in args.hosts.split(",")}
        except ValueError:
            print("clusdisk: --hosts: a comma-separated list of numbers", file=sys.stderr)
            return 2
    luns = disks.scan(args.sysfs_root, args.dev_root,
                      read_vpd83=None if args.no_probe else (read_vpd83 or read_vpd83_blocking))
    luns = [lun for lun in luns if hosts is None or lun.host in hosts]
    states = (["not probed"] * len(luns) if args.no_probe
              else asyncio.run(_probe(luns, device_factory or SgDevice)))
    if args.json:
        json.dump([{"sg": lun.sg, "block": lun.block, "hctl": lun.hctl, "vendor": lun.vendor,
                    "model": lun.model, "serial": lun.serial, "size_bytes": lun.size_bytes,
                    "designators": list(lun.designators), "reservation": state,
                    "problem": lun.problem} for lun, state in zip(luns, states)], out, indent=2)
        out.write("\n")
        return 0
    if not luns:
        print("no SCSI disks found", file=out)
    for lun, state in zip(luns, states):
        print(f"{lun.sg:<10} {lun.block or '-':<10} {lun.hctl:<10} {_size(lun.size_bytes):>10}  "
              f"{lun.vendor} {lun.model}  serial {lun.serial or '-'}", file=out)
        for designator in lun.designators or ("(no logical unit designator)",):
            print(f"    id: {designator}", file=out)
        print(f"    reservation: {state}", file=out)
        if lun.problem:
            print(f"    problem: {lun.problem}", file=out)
    return 0


def status(args, out=sys.stdout) -> int:
    try:
        reply = request_blocking(args.socket, {"command": "status"}, 5.0)
    except ControlError as exc:
        print(f"clusdisk: {exc}", file=sys.stderr)
        return 1
    json.dump(reply.get("status", reply), out, indent=2)
    out.write("\n")
    return 0 if reply.get("ok") else 1


def summary(cfg: config_mod.Config) -> list[str]:
    """What ``--check-config`` prints."""
    me, partner = cfg.me, cfg.partner
    hb = cfg.heartbeat
    lines = [f"config: {cfg.source_path}: valid",
             f"cluster {cfg.cluster_name}: this node {me.name} (id {me.id}), partner "
             f"{partner.name} (id {partner.id})",
             f"heartbeat: every {hb.interval_s:g} s, partner lost after {hb.miss_count} "
             f"misses; links {', '.join(f'{l.local} -> {l.peer}' for l in hb.links)}; "
             f"peer channel port {hb.peer_port}",
             f"arbitration: {cfg.arbitration.mode.value}, takeover after "
             f"{cfg.arbitration.timings.takeover_delay_s:g} s; quorum disk {cfg.quorum_disk}",
             f"control socket: {cfg.control.socket}; smbcad: "
             f"{cfg.control.smbcad_socket or 'not told'}; witnessd: "
             f"{cfg.control.witnessd_socket or 'not told'}",
             f"metrics: {cfg.metrics_listen or 'off'}; state directory: {cfg.state_dir}",
             f"automatic giveback: "
             + (f"after {cfg.failover.auto_giveback_s:g} s" if cfg.failover.auto_giveback_s
                else "off")]
    names = {node.id: node.name for node in cfg.nodes}
    for aggregate in cfg.aggregates:
        lifs = ", ".join(f"{lif.name} {lif.address} on {lif.interface}" for lif in aggregate.lifs)
        lines.append(f"aggregate {aggregate.name}: home {names.get(aggregate.home_node)}, disk "
                     f"{aggregate.disk}, {aggregate.filesystem} on {aggregate.mount_point}"
                     + (f"; LIFs {lifs}" if lifs else ""))
    return lines


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        args = _tools_parser().parse_args(argv)
        if args.command == "scan":
            return scan(args)
        if args.command == "status":
            return status(args)
        print(to_dot(Mode(args.mode)))
        return 0
    try:
        args = _daemon_parser().parse_args(argv)
    except SystemExit as exc:            # --help and --version: 0, a usage error: 2
        return int(exc.code or 0)
    try:
        cfg = config_mod.load_yaml(args.config)
        start_logging("clusdisk", args.log_level or cfg.log_level, argv)
    except ConfigError as exc:
        print(f"clusdisk: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print("\n".join(summary(cfg)))
        return 0
    from clusdisk.daemon import Daemon
    daemon = Daemon(cfg, systemd_environment())
    try:
        return asyncio.run(daemon.run())
    finally:
        daemon.stop_overrun.disarm()


if __name__ == "__main__":
    sys.exit(main())
