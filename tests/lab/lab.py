#!/usr/bin/env python3
"""lab.py: run commands in the smbca LUN lab (a QEMU guest with shared SCSI LUNs).

    tests/lab/lab.py run [OPTIONS] -- COMMAND [ARG...]   COMMAND's exit status
    tests/lab/lab.py cluster [--mode scsi2|pr] [--event EVENT@S]... [OPTIONS] -- COMMAND...
                                                         COMMAND in the client namespace of a
                                                         two-node cluster, events injected
    tests/lab/lab.py selftest [OPTIONS]                  the smoke checks (guest/smoke.sh)
    tests/lab/lab.py shell [OPTIONS]                     interactive bash on the serial console
    tests/lab/lab.py build [--force]                     build or reuse the cached image
    tests/lab/lab.py info | clean

Exit status: COMMAND's; 124 timeout; 125 the lab failed (boot, setup, usage);
130 interrupted.  COMMAND's stdout and stderr both arrive on stdout; the
``lab:`` lines (LUN map, timings) go to stderr.  See tests/lab/README.md.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import labvm  # noqa: E402  (after the path set-up above)
from labvm import cluster, image  # noqa: E402

SMOKE = Path(__file__).resolve().parent / "guest" / "smoke.sh"


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--luns", type=int, default=2,
                        help="shared LUNs: 0 quorum, 1 data, k>=2 data<k> (default 2)")
    parser.add_argument("--quorum-mb", type=int, default=64, help="LUN 0 size (default 64)")
    parser.add_argument("--data-mb", type=int, default=1024,
                        help="size of the other LUNs (default 1024; sparse, in guest RAM)")
    parser.add_argument("--writable", action="append", default=[], metavar="DIR",
                        help="host DIR read-write at the same path in the guest (repeatable)")
    parser.add_argument("--timeout", type=float, default=3600.0, metavar="S",
                        help="kill the guest after S seconds, boot included; exit 124 (0 = never)")
    parser.add_argument("--mem", type=int, default=int(os.environ.get("SMBCA_LAB_MEM", 2048)),
                        help="guest memory in MiB (default 2048, $SMBCA_LAB_MEM)")
    parser.add_argument("--smp", type=int, default=int(os.environ.get("SMBCA_LAB_SMP", 2)),
                        help="guest vCPUs (default 2, $SMBCA_LAB_SMP)")
    parser.add_argument("--accel", default=os.environ.get("SMBCA_LAB_ACCEL", "tcg"),
                        help="QEMU accelerator (default tcg, $SMBCA_LAB_ACCEL; kvm if you have it)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                        help="environment for COMMAND (repeatable; NAME alone passes the host's)")
    parser.add_argument("--cwd", default=os.getcwd(), help="COMMAND's directory (default: here)")
    parser.add_argument("--keep-job", action="store_true",
                        help="keep the job directory (boot.log, dmesg, LUN map) and print it")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the boot and kernel log")
    parser.add_argument("-q", "--quiet", action="store_true", help="no lab: lines")


def _lab_options(args: argparse.Namespace) -> labvm.LabOptions:
    env = []
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep:
            if name not in os.environ:
                continue
            value = os.environ[name]
        env.append((name, value))
    return labvm.LabOptions(luns=args.luns, quorum_mb=args.quorum_mb, data_mb=args.data_mb,
                            writable=tuple(args.writable), timeout_s=args.timeout,
                            mem_mb=args.mem, smp=args.smp, accel=args.accel, env=tuple(env),
                            cwd=args.cwd, verbose=args.verbose, keep_job=args.keep_job)


def _note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"lab: {text}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace, command: list[str], runner=None) -> int:
    options = _lab_options(args)

    def ready(job_dir: Path) -> None:
        table = (job_dir / "luns.txt").read_text() if (job_dir / "luns.txt").exists() else ""
        _note(args, "guest ready; LUN map (JSON in the guest: $LAB_LUNS_JSON = /run/lab/luns.json):")
        for line in table.splitlines():
            _note(args, "  " + line)
        warnings = job_dir / "warnings"
        for line in (warnings.read_text().splitlines() if warnings.exists() else []):
            _note(args, "guest warning: " + line)
        _note(args, "---- command output ----")

    # SIGTERM unwinds like Ctrl-C, so the guest is killed and the job removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if runner is None:
            result = labvm.run(command, options, output=sys.stdout.buffer, on_ready=ready)
        else:
            result = runner(options, ready)
    except KeyboardInterrupt:
        print("lab: interrupted, guest killed", file=sys.stderr)
        return 130
    if result.failure:
        sys.stderr.write(result.failure)
    built = f"image built in {result.image_build_s:.1f} s, " if result.image_build_s else ""
    _note(args, f"---- exit status {result.status} ({built}boot {result.boot_s:.1f} s, "
                f"command {result.command_s:.1f} s, total {result.total_s:.1f} s) ----")
    if result.job_dir:
        _note(args, f"job directory kept: {result.job_dir}")
    return result.status


def _cluster(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("cluster: no COMMAND (lab.py cluster [OPTIONS] -- COMMAND...)")
    for event in args.event:
        cluster.parse_event(event)              # ValueError: before booting anything
    workdir = args.workdir or tempfile.mkdtemp(prefix="smbca-cluster-")
    os.makedirs(workdir, exist_ok=True)
    _note(args, f"cluster ({args.mode}): logs and timeline.json will be in "
                f"{os.path.join(os.path.abspath(workdir), 'cluster-' + args.mode)}")

    def runner(options, ready):
        return cluster.run_cluster(command, mode=args.mode, events=args.event, workdir=workdir,
                                   timeout_s=args.timeout, options=options,
                                   output=sys.stdout.buffer, on_ready=ready,
                                   after_ready=args.after_ready)
    return _run(args, command, runner)


def _info() -> int:
    host = labvm.find_host()
    print(f"kernel:  {host.vmlinuz} (modules {host.modules_dir})")
    print(f"qemu:    {host.qemu}")
    print(f"busybox: {host.busybox}")
    print(f"cache:   {host.cache_dir} (image key {image.image_key(host)})")
    for entry in sorted(host.cache_dir.glob("*")) if host.cache_dir.exists() else ():
        print(f"         {entry.name} ({entry.stat().st_size // 1024} KiB)")
    groups: dict[str, list[str]] = {}
    for module in image.resolve_modules(host):
        groups.setdefault(module.group, []).append(module.name)
    for group, names in groups.items():
        print(f"modules [{group}]: {' '.join(names)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="run COMMAND in a guest")
    _options(run_parser)
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    cluster_parser = sub.add_parser(
        "cluster", help="COMMAND in the client namespace of a two-node cluster")
    _options(cluster_parser)
    cluster_parser.set_defaults(luns=cluster.LUNS, data_mb=cluster.DATA_MB, timeout=1800.0)
    cluster_parser.add_argument("--mode", choices=cluster.MODES, default="scsi2",
                                help="clusdisk arbitration: scsi2 (default) or pr")
    cluster_parser.add_argument("--event", action="append", default=[], metavar="EVENT@SECONDS",
                                help=f"inject EVENT (one of {', '.join(cluster.EVENTS)}) SECONDS "
                                     "after COMMAND started (repeatable)")
    cluster_parser.add_argument("--after-ready", action="store_true",
                                help="count the events' SECONDS from when COMMAND creates the "
                                     "file $SMBCA_READY (its clients are set up), not from its "
                                     "start")
    cluster_parser.add_argument("--workdir", metavar="DIR",
                                help="host directory, writable in the guest: $SMBCA_WORKDIR, and "
                                     "where logs and timeline.json land (default: a new one "
                                     "under /tmp)")
    cluster_parser.add_argument("command", nargs=argparse.REMAINDER)
    _options(sub.add_parser("selftest", help="the smoke checks"))
    _options(sub.add_parser("shell", help="interactive shell in a guest"))
    sub.add_parser("build", help="build or reuse the cached image").add_argument(
        "--force", action="store_true")
    sub.add_parser("info", help="kernel, tools, cache, modules")
    sub.add_parser("clean", help="remove the cache")
    args = parser.parse_args(argv)
    try:
        if args.action == "run":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not command:
                parser.error("run: no COMMAND (lab.py run [OPTIONS] -- COMMAND...)")
            return _run(args, command)
        if args.action == "cluster":
            return _cluster(args, parser)
        if args.action == "selftest":
            args.cwd = "/"
            return _run(args, ["/bin/bash", str(SMOKE)])
        if args.action == "shell":
            return labvm.shell(_lab_options(args))
        if args.action == "build":
            built = labvm.ensure_image(labvm.find_host(), force=args.force)
            print(built.initrd)
            print(built.kernel)
            return 0
        if args.action == "info":
            return _info()
        shutil.rmtree(image.default_cache_dir(), ignore_errors=True)
        print(f"lab: removed {image.default_cache_dir()}")
        return 0
    except labvm.LabUnavailable as exc:
        for problem in exc.problems:
            print(f"lab: error: {problem}", file=sys.stderr)
        return labvm.LAB_FAILED_STATUS
    except ValueError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return labvm.LAB_FAILED_STATUS


if __name__ == "__main__":
    sys.exit(main())
