"""Side-by-side benchmark of Samba's smbd and smbcad on this machine (not a test).

Both servers run at once, pinned to CPU 0; every client (smbclient,
smbtorture, and smbprotocol inside this process) runs on CPU 1. Each
measurement alternates between the two servers in one run and is repeated
(``--repeat``, default 3); the table shows medians and how fast ours is
relative to smbd. Raw values and medians go to bench/results/ as JSON.

  # as root, after bash scripts/test.sh has installed samba, smbclient,
  # samba-testsuite and the test venv:
  /opt/smbca/test-venv/bin/python bench/compare.py
  /opt/smbca/test-venv/bin/python bench/compare.py --ours smbd   # smbd vs smbd: checks the script
  /opt/smbca/test-venv/bin/python bench/compare.py --unpinned --only 4x4 --only 16x1
  /opt/smbca/test-venv/bin/python bench/compare.py --unpinned --workers 2 --only 4x4

See shared/reference/benchmarking.md for which client suits which figure.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "interop"))

from clients import ENCRYPTION_REQUIRED, smbclient_argv  # noqa: E402
from servers import start_server  # noqa: E402

MIB = 1 << 20
SERVER_CPU, CLIENT_CPU = "0", 1
MODES = ("signed", "encrypted")
SMBCLIENT_RATE = re.compile(r"\((\d+(?:\.\d+)?) (?:kb/s|KiloBytes/sec)\)")   # KiB/s
TORTURE_FINAL = re.compile(r"open\[num/s=(\d+),avslat=([\d.]+),[^\]]*\] "
                           r"close\[num/s=(\d+),avslat=([\d.]+),")
TORTURE_ECHO = re.compile(r"echo\[num/s=(\d+),avslat=([\d.]+),")
FILE_SIZE = 4096
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Bench:
    """One measurement: ``run(server, mode) -> float`` in ``unit``, or
    ``(float, operations)`` when the server CPU per operation is to be shown."""

    def __init__(self, name: str, unit: str, higher_is_better: bool, run) -> None:
        self.name, self.unit, self.higher_is_better, self.run = name, unit, higher_is_better, run


# --- server CPU, read from /proc --------------------------------------------------------

def server_cpu_seconds(server) -> float:
    """User+system CPU of every process in the server's session (smbd forks one
    per client, reaped ones count in the leader's cutime/cstime)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) != server.pid:        # field 6, session id
            continue
        total += int(fields[11]) + int(fields[12])          # utime, stime
        if int(entry.name) == server.pid:
            total += int(fields[13]) + int(fields[14])      # reaped children
    return total / CLOCK_TICKS


# --- smbclient: bulk throughput, server's own max read/write sizes -----------------------

def smbclient_rate(server, mode: str, commands: str, timeout: float = 600) -> float:
    options = ENCRYPTION_REQUIRED if mode == "encrypted" else ()
    result = subprocess.run(smbclient_argv(server, commands, options=options), capture_output=True,
                            text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    match = SMBCLIENT_RATE.search(output)
    if result.returncode != 0 or "NT_STATUS_" in output or not match:
        raise RuntimeError(f"smbclient {commands!r}: {output.strip()[-300:]}")
    return float(match[1]) / 1024


# --- smbclient: many small files (create+write+close, open+read+close, delete) ----------

def _fresh_dir(server, name: str) -> Path:
    path = Path(server.share.path) / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


def _fill(path: Path, count: int) -> None:
    block = os.urandom(FILE_SIZE)
    for index in range(count):
        (path / f"f{index:05d}.bin").write_bytes(block)


def smbclient_files(server, mode: str, action: str, count: int) -> tuple[float, int]:
    """files/s for ``count`` 4 KiB files: put, get or del (the timed smbclient
    run includes its connect, the same for both servers)."""
    options = ENCRYPTION_REQUIRED if mode == "encrypted" else ()
    remote = _fresh_dir(server, f"files-{action}")
    with tempfile.TemporaryDirectory(prefix="bench-files-") as local:
        if action == "put":
            _fill(Path(local), count)
            commands = f"cd files-{action}; lcd {local}; prompt off; mput *"
        elif action == "get":
            _fill(remote, count)
            commands = f"cd files-{action}; lcd {local}; prompt off; mget *"
        else:
            _fill(remote, count)
            commands = f"cd files-{action}; del *"
        argv = smbclient_argv(server, commands, options=options)
        start = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                                stdin=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        output = result.stdout + result.stderr
        if result.returncode != 0 or "NT_STATUS_" in output:
            raise RuntimeError(f"smbclient {commands!r}: {output.strip()[-300:]}")
        if action == "get" and len(os.listdir(local)) != count:
            raise RuntimeError(f"smbclient mget fetched {len(os.listdir(local))} of {count}")
    if action == "del" and any(remote.iterdir()):
        raise RuntimeError("smbclient del * left files behind")
    shutil.rmtree(remote, ignore_errors=True)
    return count / elapsed, count


# --- smbprotocol: exact 1 MiB requests with a fixed number in flight ---------------------

class ProtoClient:
    def __init__(self, server, mode: str) -> None:
        from smbprotocol.connection import Connection
        from smbprotocol.session import Session
        from smbprotocol.tree import TreeConnect
        self.connection = Connection(uuid.uuid4(), server.host, server.port, require_signing=True)
        self.connection.connect(timeout=10)
        self.session = Session(self.connection, server.user, server.password,
                               require_encryption=mode == "encrypted")
        self.session.connect()
        self.tree = TreeConnect(self.session, rf"\\{server.host}\{server.share.name}")
        self.tree.connect()

    def open(self, name: str, disposition: int):
        from smbprotocol.open import (CreateOptions, FileAttributes, FilePipePrinterAccessMask,
                                      ImpersonationLevel, Open, ShareAccess)
        handle = Open(self.tree, name)
        handle.create(ImpersonationLevel.Impersonation,
                      FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
                      FileAttributes.FILE_ATTRIBUTE_NORMAL,
                      ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE, disposition,
                      CreateOptions.FILE_NON_DIRECTORY_FILE)
        return handle

    def ensure_credits(self, wanted: int) -> None:
        """Ask for credits with ECHO until ``wanted`` are available (or the server stops granting)."""
        window = self.connection.sequence_window
        for _ in range(16):
            available = window["high"] - window["low"]
            if available >= wanted:
                return
            self.connection.echo(self.session.session_id, credit_request=wanted - available + 1)
        raise RuntimeError(f"server granted {available} credits; {wanted} needed")

    def pipelined(self, requests, depth: int) -> None:
        """Send (message, receive) pairs keeping ``depth`` requests in flight."""
        self.ensure_credits(depth * (MIB // 65536) + 1)
        in_flight = deque()
        for message, receive in requests:
            if len(in_flight) == depth:
                receive_one, request = in_flight.popleft()
                receive_one(request)
            request = self.connection.send(message, self.session.session_id,
                                           self.tree.tree_connect_id)
            in_flight.append((receive, request))
        while in_flight:
            receive_one, request = in_flight.popleft()
            receive_one(request)

    def close(self) -> None:
        self.connection.disconnect(True)


def proto_io(server, mode: str, size_mib: int, depth: int, write: bool) -> float:
    from smbprotocol.open import CreateDisposition
    client = ProtoClient(server, mode)
    try:
        disposition = CreateDisposition.FILE_OVERWRITE_IF if write else CreateDisposition.FILE_OPEN_IF
        handle = client.open("bench-proto.bin", disposition)
        chunk = os.urandom(MIB)
        if not write and handle.end_of_file < size_mib * MIB:
            # Run alone (--only read), the read bench writes its file first, untimed.
            client.pipelined((handle.write(chunk, i * MIB, send=False) for i in range(size_mib)),
                             depth)
        if write:
            requests = (handle.write(chunk, i * MIB, send=False) for i in range(size_mib))
        else:
            requests = (handle.read(i * MIB, MIB, send=False) for i in range(size_mib))
        start = time.perf_counter()
        client.pipelined(requests, depth)
        elapsed = time.perf_counter() - start
        handle.close()
    finally:
        client.close()
    return size_mib / elapsed


def proto_create_close(server, mode: str, pairs: int) -> float:
    """Sequential CREATE(open existing)+CLOSE pairs; returns the median pair latency in µs."""
    from smbprotocol.open import CreateDisposition
    client = ProtoClient(server, mode)
    try:
        client.open("bench-cc.bin", CreateDisposition.FILE_OVERWRITE_IF).close()
        latencies = []
        for _ in range(pairs):
            start = time.perf_counter()
            client.open("bench-cc.bin", CreateDisposition.FILE_OPEN).close()
            latencies.append(time.perf_counter() - start)
    finally:
        client.close()
    return statistics.median(latencies) * 1e6


# --- smbtorture smb2.bench.path-contention-shared: CREATE+CLOSE in C ---------------------

def _torture(server, mode: str, test: str, seconds: int, nprocs: int, qdepth: int) -> str:
    argv = ["smbtorture", server.unc(), "-p", str(server.port), "-U",
            f"{server.user}%{server.password}", f"--option=torture:timelimit={seconds}",
            f"--option=torture:nprocs={nprocs}", f"--option=torture:qdepth={qdepth}",
            *(ENCRYPTION_REQUIRED if mode == "encrypted" else ()), test]
    with tempfile.TemporaryDirectory(prefix="smbtorture-") as scratch:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                                cwd=scratch, stdin=subprocess.DEVNULL)
    output = (result.stdout + result.stderr).replace("\r", "\n")
    if result.returncode != 0:
        raise RuntimeError(f"smbtorture: {output.strip()[-300:]}")
    return output


def torture_bench(server, mode: str, seconds: int, nprocs: int, qdepth: int) -> tuple[float, float]:
    """(CREATE+CLOSE pairs/s, average CREATE+CLOSE latency in µs)."""
    output = _torture(server, mode, "smb2.bench.path-contention-shared", seconds, nprocs, qdepth)
    finals = TORTURE_FINAL.findall(output)
    if not finals:
        raise RuntimeError(f"smbtorture: {output.strip()[-300:]}")
    opens, open_lat, _closes, close_lat = finals[-1]
    return float(opens), (float(open_lat) + float(close_lat)) * 1e6


def torture_echo(server, mode: str, seconds: int) -> tuple[float, int]:
    """(ECHOs/s over the run, ECHOs), one connection, one in flight."""
    output = _torture(server, mode, "smb2.bench.echo", seconds, 1, 1)
    rates = [float(rate) for rate, _latency in TORTURE_ECHO.findall(output)]
    if not rates:
        raise RuntimeError(f"smbtorture: {output.strip()[-300:]}")
    rate = statistics.mean(rates)
    return rate, int(rate * seconds)


# --- the run -----------------------------------------------------------------------------

def benches(args, source: Path) -> list[Bench]:
    mib = args.size_mib
    return [
        # server CPU per MiB
        Bench(f"smbclient put {mib} MiB", "MiB/s", True,
              lambda s, m: (smbclient_rate(s, m, f"put {source} bench.bin"), mib)),
        Bench(f"smbclient get {mib} MiB", "MiB/s", True,
              lambda s, m: (smbclient_rate(s, m, "get bench.bin /dev/null"), mib)),
        Bench(f"smbprotocol write {mib}x1MiB QD{args.depth}", "MiB/s", True,
              lambda s, m: proto_io(s, m, mib, args.depth, write=True)),
        Bench(f"smbprotocol read {mib}x1MiB QD{args.depth}", "MiB/s", True,
              lambda s, m: proto_io(s, m, mib, args.depth, write=False)),
        Bench("smbprotocol open+close p50", "µs", False,
              lambda s, m: proto_create_close(s, m, args.pairs)),
        Bench("smbtorture echo 1x1", "ops/s", True,
              lambda s, m: torture_echo(s, m, args.torture_seconds)),
        Bench("smbtorture create+close 1x1", "pairs/s", True,
              lambda s, m: _pairs(torture_bench(s, m, args.torture_seconds, 1, 1),
                                  args.torture_seconds)),
        Bench("smbtorture create+close 1x1 avg", "µs", False,
              lambda s, m: torture_bench(s, m, args.torture_seconds, 1, 1)[1]),
        Bench("smbtorture create+close 4x4", "pairs/s", True,
              lambda s, m: _pairs(torture_bench(s, m, args.torture_seconds, 4, 4),
                                  args.torture_seconds)),
        # Sixteen clients, one request in flight each: many hosts on one node.
        Bench("smbtorture create+close 16x1", "pairs/s", True,
              lambda s, m: _pairs(torture_bench(s, m, args.torture_seconds, 16, 1),
                                  args.torture_seconds)),
        Bench(f"{args.files} files create+write+close", "files/s", True,
              lambda s, m: smbclient_files(s, m, "put", args.files)),
        Bench(f"{args.files} files open+read+close", "files/s", True,
              lambda s, m: smbclient_files(s, m, "get", args.files)),
        Bench(f"{args.files} files delete", "files/s", True,
              lambda s, m: smbclient_files(s, m, "del", args.files)),
    ]


def _pairs(result: tuple[float, float], seconds: int) -> tuple[float, int]:
    rate = result[0]
    return rate, int(rate * seconds)


CPU = " [server CPU/op]"


def measure(args, servers: dict, source: Path) -> dict:
    """{bench: {mode: {slot: [values]}}}, alternating server order between repetitions."""
    results = {}
    chosen = [b for b in benches(args, source) if not args.only or any(o in b.name for o in args.only)]
    for repetition in range(args.repeat):
        order = list(servers) if repetition % 2 == 0 else list(reversed(servers))
        for bench in chosen:
            for mode in args.modes:
                for slot in order:
                    cpu_per_op = None
                    try:
                        cpu_before = server_cpu_seconds(servers[slot])
                        value = bench.run(servers[slot], mode)
                        if isinstance(value, tuple):
                            time.sleep(0.2)             # let smbd reap its client's process
                            value, operations = value
                            cpu_per_op = ((server_cpu_seconds(servers[slot]) - cpu_before)
                                          / operations * 1e6)
                    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
                        print(f"  {bench.name} [{mode}] on {slot}: FAILED: {exc}", file=sys.stderr)
                        value = None
                    entry = results.setdefault(bench.name, {"unit": bench.unit,
                                                            "higher_is_better": bench.higher_is_better})
                    entry.setdefault(mode, {}).setdefault(slot, []).append(value)
                    if cpu_per_op is not None or value is None and bench.name + CPU in results:
                        cpu = results.setdefault(bench.name + CPU, {"unit": "µs",
                                                                    "higher_is_better": False})
                        cpu.setdefault(mode, {}).setdefault(slot, []).append(cpu_per_op)
                    shown = "failed" if value is None else f"{value:.1f} {bench.unit}"
                    if cpu_per_op is not None:
                        shown += f", server {cpu_per_op:.0f} µs CPU/op"
                    print(f"  [{repetition + 1}/{args.repeat}] {bench.name} [{mode}] {slot}: {shown}",
                          flush=True)
    return results


def summarize(results: dict, slots: list[str]) -> list[dict]:
    rows = []
    for name, entry in results.items():
        for mode in MODES:
            if mode not in entry:
                continue
            medians = {}
            for slot in slots:
                values = [v for v in entry[mode].get(slot, []) if v is not None]
                medians[slot] = statistics.median(values) if values else None
            base, ours = medians[slots[0]], medians[slots[1]]
            speed = None
            if base and ours:
                speed = ours / base if entry["higher_is_better"] else base / ours
            rows.append({"bench": name, "mode": mode, "unit": entry["unit"],
                         "median": medians, "ours_vs_smbd": speed})
    return rows


def print_table(rows: list[dict], slots: list[str]) -> None:
    header = f"{'benchmark':52} {'mode':9} {'unit':7} {slots[0]:>9} {slots[1]:>9}  ours/smbd"
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        cells = [("-" if row["median"][s] is None else f"{row['median'][s]:.1f}") for s in slots]
        speed = "-" if row["ours_vs_smbd"] is None else f"{row['ours_vs_smbd']:.2f}x"
        print(f"{row['bench']:52} {row['mode']:9} {row['unit']:7} {cells[0]:>9} {cells[1]:>9}  {speed}")
    print("ours/smbd: relative speed (above 1.00x: ours is faster; latencies and CPU per "
          "operation are inverted)")


def make_source(path: Path, size_mib: int) -> None:
    with open(path, "wb") as handle:
        for _ in range(size_mib):
            handle.write(os.urandom(MIB))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ours", choices=("smbcad", "smbd"), default="smbcad",
                        help="server in the 'ours' slot (smbd: check the script itself)")
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--depth", type=int, default=8, help="smbprotocol requests in flight")
    parser.add_argument("--pairs", type=int, default=2000, help="smbprotocol open+close pairs")
    parser.add_argument("--torture-seconds", type=int, default=10)
    parser.add_argument("--files", type=int, default=1000, help="files in the small-file runs")
    parser.add_argument("--modes", type=lambda v: v.split(","), default=list(MODES))
    parser.add_argument("--only", action="append", help="run benchmarks whose name contains this")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--workers", type=int, default=1,
                        help="smbcad's worker processes (server.workers, docs/multicore.md)")
    parser.add_argument("--unpinned", action="store_true",
                        help="servers and clients on every CPU (how many cores each server uses)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root (smbd needs it)")
    for tool in ("smbd", "smbclient", "smbtorture", "taskset"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (bash scripts/test.sh installs it)")
    pinned = (os.cpu_count() or 1) >= 2 and not args.unpinned
    if pinned:
        os.sched_setaffinity(0, {CLIENT_CPU})
    elif not args.unpinned:
        print("warning: one CPU only, servers and clients are not pinned", file=sys.stderr)

    slots = ["smbd", args.ours if args.ours == "smbcad" else "smbd(ours)"]
    work = Path(tempfile.mkdtemp(prefix="smbca-bench-"))
    servers = {}
    try:
        source = work / "source.bin"
        make_source(source, args.size_mib)
        for slot, kind in zip(slots, ("smbd", args.ours)):
            servers[slot] = start_server(kind, work / slot.replace("(", "-").rstrip(")"),
                                         taskset=SERVER_CPU if pinned else None,
                                         extra_args=(["--workers", str(args.workers)]
                                                     if args.workers > 1 else []))
            print(f"{slot}: pid {servers[slot].pid}, port {servers[slot].port}", flush=True)
        results = measure(args, servers, source)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    rows = summarize(results, slots)
    print_table(rows, slots)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out / f"compare-{stamp}.json"
    smbd_version = subprocess.run(["smbd", "--version"], capture_output=True, text=True).stdout.strip()
    out.write_text(json.dumps({
        "when": stamp, "host": platform.node(), "cpus": os.cpu_count(), "pinned": pinned,
        "smbd": smbd_version, "python": platform.python_version(),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "slots": slots, "summary": rows, "raw": results}, indent=2) + "\n")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
