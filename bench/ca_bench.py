"""Continuously-available share benchmark (not a test): what persistence costs.

One smbcad serves two shares from one file system: ``plain`` and ``ca``
(``--share ca=PATH,ca``). The server is pinned to CPU 0; the client
(smbprotocol, inside this process) to CPU 1, as in compare.py. Signed SMB
3.1.1 (``--encrypted``: sealed). The client asks for
SMB2_GLOBAL_CAP_PERSISTENT_HANDLES on every connection, plain or not, so the
two sides differ only in the share and the create context.

1. CREATE+CLOSE pairs, one at a time, on an existing file: the plain share
   with no durability request, the ca share with the same plain open, and
   the ca share with a DH2Q carrying SMB2_DHANDLE_FLAG_PERSISTENT (a fresh
   CreateGuid each time; every response is checked to grant persistence).
   A persistent CREATE and its CLOSE each wait for a handle-store commit.
   p50/p99 pair latency, pairs/s, server and client CPU per pair.
   ``--clients N``: N connections at once, each on its own file in a thread
   of its own (as N VMs opening their disks): the server's group commit
   then shares one sync between several clients' CREATEs and CLOSEs.
2. Sequential write, ``--size-mib`` in 1 MiB WRITEs (``--write-kib``: smaller
   ones, as a database's log writes), 1 and 8 in flight, on
   the plain and the ca share (the ca file is opened persistent, as a
   Hyper-V host does), in two patterns: ``append`` (the open truncates the
   file and the WRITEs extend it, so each fdatasync also commits block
   allocation) and ``overwrite`` (the file is already full size: a fixed
   VHDX). MiB/s and server CPU per MiB. On a ca share every WRITE is
   write-through. ``os.sync()`` runs before each write run (untimed) so no
   run pays for the previous run's writeback.

Each repetition (``--repeat``, default 3) runs every variant in interleaved
rounds (CREATE+CLOSE: ``--rounds`` rounds of ``--pairs``/``--rounds`` pairs,
alternating the order), and the table shows medians of the repetitions and
the ratio ca/plain (latency ratios above 1 and throughput ratios below 1
mean the ca share is slower). If ``perf`` works, the server's fdatasync and
fsync calls are counted per measurement (``perf stat -e
syscalls:sys_enter_fdatasync -p PID``). Because other work may share this
machine, each measurement also records the CPU that other processes used on
the server's and the client's CPU (from /proc/stat, minus our own; kernel
writeback of our data counts as theirs) and the flushes the shares' block
device completed (/proc/diskstats, ours included); the run prints a summary
of both. Raw values and medians go to bench/results/ca-bench-*.json.

  # as root, with the test venv (bash scripts/test.sh installs it):
  /opt/smbca/test-venv/bin/python bench/ca_bench.py                    # ~3-5 min
  /opt/smbca/test-venv/bin/python bench/ca_bench.py --repeat 1 --pairs 500 --size-mib 64
  /opt/smbca/test-venv/bin/python bench/ca_bench.py --only create    # or --only write
  /opt/smbca/test-venv/bin/python bench/ca_bench.py --dir /srv/scratch  # shares' file system

The shares and the state directory go to a temporary directory under
``--dir`` (default: the system temp dir); put it on the file system whose
fdatasync you mean to measure. smbprotocol costs ~160 µs of client CPU per
request and saturates its core at QD8 (shared/reference/benchmarking.md),
so read the QD8 write figures as bounded by the client; the client CPU
columns show how close each run came. On these VMs the client's CPU per MiB
is itself bimodal (~0.9 or ~3.6 ms, the fresh-memory effect of
benchmarking.md point 3): a slow client hides the write-through cost, so
compare write ratios within repetitions whose client CPU per MiB matches
(the JSON has every run).
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import CLIENT_CPU, MIB, SERVER_CPU, ProtoClient  # noqa: E402  (adds tests/interop)
from servers import Share, start_smbcad  # noqa: E402

DH2Q_TIMEOUT_MS = 60_000
CC_FILE = "bench-cc.bin"
WRITE_FILE = "bench-write.bin"
CC_VARIANTS = ("plain", "ca-open", "ca-persistent")     # (share, persistent) below
CC_SHARE = {"plain": ("plain", False), "ca-open": ("ca", False), "ca-persistent": ("ca", True)}
WRITE_VARIANTS = ("plain", "ca")
SYNC_EVENTS = ("syscalls:sys_enter_fdatasync", "syscalls:sys_enter_fsync")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the client ----------------------------------------------------------------------------

class CaClient(ProtoClient):
    """compare.ProtoClient on a chosen share, asking for persistent handles in NEGOTIATE.

    smbprotocol 1.17 never sets SMB2_GLOBAL_CAP_PERSISTENT_HANDLES itself (it
    sends ``Connection.client_capabilities``, LARGE_MTU|ENCRYPTION|DFS), so we
    add it before connecting; the server grants persistence only to a
    connection whose negotiated capabilities hold it ([MS-SMB2] 3.3.5.9.10).
    """

    def __init__(self, server, share: str, encrypted: bool = False) -> None:  # noqa: D107
        from smbprotocol.connection import Capabilities, Connection
        from smbprotocol.session import Session
        from smbprotocol.tree import TreeConnect
        self.connection = Connection(uuid.uuid4(), server.host, server.port, require_signing=True)
        self.connection.client_capabilities |= Capabilities.SMB2_GLOBAL_CAP_PERSISTENT_HANDLES
        self.connection.connect(timeout=10)
        if not self.connection.server_capabilities.has_flag(
                Capabilities.SMB2_GLOBAL_CAP_PERSISTENT_HANDLES):
            self.connection.disconnect(True)
            raise RuntimeError("server did not grant SMB2_GLOBAL_CAP_PERSISTENT_HANDLES")
        # smbprotocol's Session encrypts unless told not to.
        self.session = Session(self.connection, server.user, server.password,
                               require_encryption=encrypted)
        self.session.connect()
        self.tree = TreeConnect(self.session, rf"\\{server.host}\{share}")
        self.tree.connect()

    def open_file(self, name: str, disposition: int, persistent: bool):
        """CREATE for read+write; with ``persistent``, a DH2Q that must come back persistent."""
        from smbprotocol.create_contexts import (DurableHandleFlags,
                                                 SMB2CreateDurableHandleRequestV2,
                                                 SMB2CreateDurableHandleResponseV2)
        from smbprotocol.open import (CreateOptions, FileAttributes, FilePipePrinterAccessMask,
                                      ImpersonationLevel, Open, ShareAccess)
        contexts = None
        if persistent:
            dh2q = SMB2CreateDurableHandleRequestV2()
            dh2q["timeout"] = DH2Q_TIMEOUT_MS
            dh2q["flags"] = DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT
            dh2q["create_guid"] = uuid.uuid4()
            contexts = [dh2q]
        handle = Open(self.tree, name)
        answer = handle.create(
            ImpersonationLevel.Impersonation,
            FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
            FileAttributes.FILE_ATTRIBUTE_NORMAL,
            ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE, disposition,
            CreateOptions.FILE_NON_DIRECTORY_FILE, create_contexts=contexts)
        if persistent and not any(
                isinstance(c, SMB2CreateDurableHandleResponseV2)
                and c["flags"].has_flag(DurableHandleFlags.SMB2_DHANDLE_FLAG_PERSISTENT)
                for c in answer or ()):
            handle.close()
            raise RuntimeError(f"CREATE of {name!r} with a persistent DH2Q: "
                               f"not granted ({answer!r})")
        return handle


# --- what the machine did meanwhile --------------------------------------------------------

def process_cpu_s(pid: int) -> float:
    """CPU time of a process's live threads in seconds, from schedstat (ns; /proc/PID/stat
    counts in 10 ms ticks). A thread that exits inside a window drops out of it; the
    server's to_thread workers live on in the executor, so that is rare."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def cpu_busy_s() -> dict[int, float]:
    """Busy (non-idle, non-iowait) seconds per CPU since boot."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name.startswith("cpu") and name != "cpu":
            t = [int(v) for v in ticks]
            busy[int(name[3:])] = (sum(t[:8]) - t[3] - t[4]) / CLK_TCK
    return busy


def block_device(path: Path) -> str | None:
    """The /proc/diskstats name of the device holding ``path``."""
    st = os.stat(path)
    link = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    return link.resolve().name if link.exists() else None


def disk_counts(device: str | None) -> tuple[int, int]:
    """(flush requests completed, sectors written) of ``device``, or zeros."""
    if device is not None:
        for line in Path("/proc/diskstats").read_text().splitlines():
            fields = line.split()
            if fields[2] == device:
                return (int(fields[18]) if len(fields) > 18 else 0), int(fields[9])
    return 0, 0


class SyncCounter:
    """``perf stat`` counting the server's fdatasync and fsync calls over one window."""

    def __init__(self, pid: int, enabled: bool) -> None:
        self.pid, self.enabled, self.proc, self.out = pid, enabled, None, None

    def __enter__(self):
        if self.enabled:
            self.out = tempfile.NamedTemporaryFile(prefix="ca-bench-perf-", suffix=".csv",
                                                   delete=False)
            self.out.close()
            self.proc = subprocess.Popen(
                ["perf", "stat", "-x", ",", "-o", self.out.name,
                 *(arg for event in SYNC_EVENTS for arg in ("-e", event)), "-p", str(self.pid)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)                  # attach before the timed window starts
            if self.proc.poll() is not None:
                raise RuntimeError("perf stat exited at once")
        return self

    def __exit__(self, *exc) -> None:
        self.counts = None
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        try:
            counts = {}
            for line in Path(self.out.name).read_text().splitlines():
                cells = line.split(",")
                if len(cells) > 2 and cells[2] in SYNC_EVENTS:
                    name = cells[2].rsplit("_", 1)[1]
                    counts[name] = int(cells[0]) if cells[0].isdigit() else None
            self.counts = counts
        finally:
            os.unlink(self.out.name)

    @property
    def syncs(self) -> int | None:
        if not self.counts or None in self.counts.values():
            return None
        return sum(self.counts.values())


class Window:
    """Wall, our client's CPU, the server's CPU and everybody else's CPU over a timed window."""

    device: str | None = None          # the shares' block device (set by main)

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def __enter__(self):
        self._disk = disk_counts(self.device)
        self._busy = cpu_busy_s()
        self._server = process_cpu_s(self.server_pid)
        self._client = time.process_time()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.client_cpu = time.process_time() - self._client
        self.server_cpu = process_cpu_s(self.server_pid) - self._server
        busy = cpu_busy_s()
        flushes, sectors = disk_counts(self.device)
        # Everything the device did, ours included (each of our fdatasyncs is about one flush).
        self.disk = {"flushes_per_s": (flushes - self._disk[0]) / self.wall,
                     "write_mib_per_s": (sectors - self._disk[1]) * 512 / MIB / self.wall}
        delta = {cpu: busy[cpu] - self._busy.get(cpu, 0.0) for cpu in busy}
        # Other people's CPU on our two CPUs (ours are pinned there), as a share of the window.
        self.foreign = {
            "server_cpu": max(0.0, delta.get(int(SERVER_CPU), 0.0) - self.server_cpu) / self.wall,
            "client_cpu": max(0.0, delta.get(CLIENT_CPU, 0.0) - self.client_cpu) / self.wall,
        }


# --- the measurements ----------------------------------------------------------------------

def cc_file(index: int) -> str:
    """Client ``index``'s file: one each, as VMs each open their own disk."""
    return CC_FILE if index == 0 else f"bench-cc-{index}.bin"


def cc_round(clients: list, persistent: bool, pairs: int, server_pid: int,
             count_syncs: bool) -> dict:
    """``pairs`` CREATE+CLOSE pairs, split over ``clients``, each in a thread
    of its own when there are several (the server's group commit can then
    share a sync between their CREATEs and CLOSEs)."""
    from smbprotocol.open import CreateDisposition
    latencies: list[float] = []

    def run(index: int, count: int) -> None:
        client, name = clients[index], cc_file(index)
        for _ in range(count):
            start = time.perf_counter()
            client.open_file(name, CreateDisposition.FILE_OPEN, persistent).close()
            latencies.append(time.perf_counter() - start)

    each = max(1, pairs // len(clients))
    with SyncCounter(server_pid, count_syncs) as syncs, Window(server_pid) as window:
        if len(clients) == 1:
            run(0, each)
        else:
            threads = [threading.Thread(target=run, args=(index, each))
                       for index in range(len(clients))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    return {"latencies": latencies, "wall": window.wall, "client_cpu": window.client_cpu,
            "server_cpu": window.server_cpu, "foreign": window.foreign, "disk": window.disk,
            "syncs": syncs.syncs}


def measure_cc(args, server, repetition: int) -> dict:
    """One repetition: every variant in ``args.rounds`` interleaved rounds; pooled per variant."""
    from smbprotocol.open import CreateDisposition
    clients: dict[str, list] = {}
    try:
        for variant in CC_VARIANTS:
            share, _persistent = CC_SHARE[variant]
            clients[variant] = [CaClient(server, share, args.encrypted)
                                for _ in range(args.clients)]
        for share in ("plain", "ca"):
            client = clients["plain" if share == "plain" else "ca-open"][0]
            for index in range(args.clients):
                client.open_file(cc_file(index), CreateDisposition.FILE_OVERWRITE_IF,
                                 False).close()
        per_round = max(1, args.pairs // args.rounds)
        pooled = {v: [] for v in CC_VARIANTS}
        for round_ in range(args.rounds):
            order = CC_VARIANTS if (repetition + round_) % 2 == 0 else CC_VARIANTS[::-1]
            for variant in order:
                result = cc_round(clients[variant], CC_SHARE[variant][1], per_round, server.pid,
                                  args.count_syncs)
                pooled[variant].append(result)
    finally:
        for group in clients.values():
            for client in group:
                client.close()
    out = {}
    for variant, rounds in pooled.items():
        latencies = sorted(x for r in rounds for x in r["latencies"])
        n, wall = len(latencies), sum(r["wall"] for r in rounds)
        syncs = [r["syncs"] for r in rounds]
        out[variant] = {
            "pairs": n,
            "p50_us": percentile(latencies, 50) * 1e6,
            "p99_us": percentile(latencies, 99) * 1e6,
            "mean_us": statistics.fmean(latencies) * 1e6,
            "pairs_per_s": n / wall,
            "server_cpu_us_per_pair": sum(r["server_cpu"] for r in rounds) / n * 1e6,
            "client_cpu_us_per_pair": sum(r["client_cpu"] for r in rounds) / n * 1e6,
            "syncs_per_pair": None if None in syncs else sum(syncs) / n,
            "foreign_cpu_server": weighted(rounds, "server_cpu"),
            "foreign_cpu_client": weighted(rounds, "client_cpu"),
            "disk_flushes_per_s": sum(r["disk"]["flushes_per_s"] * r["wall"]
                                      for r in rounds) / wall,
            "disk_write_mib_per_s": sum(r["disk"]["write_mib_per_s"] * r["wall"]
                                        for r in rounds) / wall,
        }
        print(f"  [{repetition + 1}/{args.repeat}] create+close {variant:14} "
              f"p50 {out[variant]['p50_us']:7.0f} µs  p99 {out[variant]['p99_us']:7.0f} µs  "
              f"{out[variant]['pairs_per_s']:6.0f} pairs/s  "
              f"syncs/pair {fmt(out[variant]['syncs_per_pair'], 2)}", flush=True)
    return out


def write_run(client: CaClient, persistent: bool, pattern: str, size_mib: int, depth: int,
              server_pid: int, count_syncs: bool, write_bytes: int = MIB) -> dict:
    """``append``: the open truncates the file, the WRITEs extend it (allocating blocks).
    ``overwrite``: the WRITEs land on a file already this size (a fixed VHDX).
    ``write_bytes`` per WRITE."""
    from smbprotocol.open import CreateDisposition
    disposition = (CreateDisposition.FILE_OPEN_IF if pattern == "overwrite"
                   else CreateDisposition.FILE_OVERWRITE_IF)
    handle = client.open_file(WRITE_FILE, disposition, persistent)
    try:
        chunk = os.urandom(MIB)
        client.ensure_credits(depth * (MIB // 65536) + 1)
        data = chunk[:write_bytes]
        have = handle.end_of_file // MIB
        if pattern == "overwrite" and have < size_mib:       # untimed fill
            client.pipelined((handle.write(chunk, i * MIB, send=False)
                              for i in range(have, size_mib)), depth)
        os.sync()                             # start clean: no writeback left from the last run
        requests = (handle.write(data, i * write_bytes, send=False)
                    for i in range(size_mib * MIB // write_bytes))
        with SyncCounter(server_pid, count_syncs) as syncs, Window(server_pid) as window:
            client.pipelined(requests, depth)
    finally:
        handle.close()
    return {"mib_per_s": size_mib / window.wall, "wall": window.wall,
            "server_cpu_ms_per_mib": window.server_cpu / size_mib * 1e3,
            "client_cpu_ms_per_mib": window.client_cpu / size_mib * 1e3,
            "syncs": syncs.syncs, "foreign_cpu_server": window.foreign["server_cpu"],
            "foreign_cpu_client": window.foreign["client_cpu"],
            "disk_flushes_per_s": window.disk["flushes_per_s"],
            "disk_write_mib_per_s": window.disk["write_mib_per_s"]}


def measure_write(args, server, repetition: int) -> dict:
    clients = {}
    out = {}
    try:
        for variant in WRITE_VARIANTS:
            clients[variant] = CaClient(server, variant, args.encrypted)
        for pattern in args.patterns:
            for depth in args.depths:
                flip = (repetition + depth + len(pattern)) % 2
                for variant in (WRITE_VARIANTS[::-1] if flip else WRITE_VARIANTS):
                    result = write_run(clients[variant], variant == "ca", pattern,
                                       args.size_mib, depth, server.pid, args.count_syncs,
                                       args.write_kib * 1024)
                    out.setdefault(f"{pattern}-qd{depth}", {})[variant] = result
                    print(f"  [{repetition + 1}/{args.repeat}] write {pattern:9} QD{depth} "
                          f"{variant:5} {result['mib_per_s']:7.1f} MiB/s  "
                          f"server {result['server_cpu_ms_per_mib']:.2f} ms/MiB  "
                          f"syncs {fmt(result['syncs'], 0)}", flush=True)
    finally:
        for client in clients.values():
            client.close()
    return out


# --- summary -------------------------------------------------------------------------------

def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, round(pct / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def weighted(rounds: list[dict], cpu: str) -> float:
    return sum(r["foreign"][cpu] * r["wall"] for r in rounds) / sum(r["wall"] for r in rounds)


def fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def median_of(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


CC_ROWS = (("p50 latency", "µs", "p50_us"), ("p99 latency", "µs", "p99_us"),
           ("mean latency", "µs", "mean_us"), ("rate", "pairs/s", "pairs_per_s"),
           ("server CPU per pair", "µs", "server_cpu_us_per_pair"),
           ("client CPU per pair", "µs", "client_cpu_us_per_pair"),
           ("fdatasync+fsync per pair", "calls", "syncs_per_pair"))
WRITE_ROWS = (("throughput", "MiB/s", "mib_per_s"),
              ("server CPU per MiB", "ms", "server_cpu_ms_per_mib"),
              ("client CPU per MiB", "ms", "client_cpu_ms_per_mib"),
              ("fdatasync+fsync per run", "calls", "syncs"))


def summarize(raw: dict, args) -> dict:
    summary = {"create_close": [], "write": []}
    if raw["create_close"]:
        for label, unit, key in CC_ROWS:
            med = {v: median_of(rep[v][key] for rep in raw["create_close"]) for v in CC_VARIANTS}
            summary["create_close"].append({
                "metric": label, "unit": unit, "median": med,
                "ca_open_vs_plain": ratio(med["ca-open"], med["plain"]),
                "persistent_vs_plain": ratio(med["ca-persistent"], med["plain"]),
                "persistent_minus_plain": (
                    None if unit not in ("µs", "calls") or None in (med["ca-persistent"],
                                                                    med["plain"])
                    else med["ca-persistent"] - med["plain"])})
    if raw["write"]:
        for pattern in args.patterns:
            for depth in args.depths:
                for label, unit, key in WRITE_ROWS:
                    med = {v: median_of(rep[f"{pattern}-qd{depth}"][v][key]
                                        for rep in raw["write"]) for v in WRITE_VARIANTS}
                    summary["write"].append({
                        "metric": f"{pattern} QD{depth} {label}", "unit": unit, "median": med,
                        "ca_vs_plain": ratio(med["ca"], med["plain"])})
    return summary


def foreign_load(raw: dict) -> dict:
    """Share of each pinned CPU that other processes used during our windows (median, max),
    and the create+close windows' disk flush rate (ours included)."""
    samples = {"server_cpu": [], "client_cpu": [], "cc_disk_flushes_per_s": []}
    entries = [e for rep in raw["create_close"] for e in rep.values()]
    entries += [e for rep in raw["write"] for by_variant in rep.values()
                for e in by_variant.values()]
    for entry in entries:
        samples["server_cpu"].append(entry["foreign_cpu_server"])
        samples["client_cpu"].append(entry["foreign_cpu_client"])
    for rep in raw["create_close"]:
        for variant in ("plain", "ca-open"):      # windows where we sync nothing
            samples["cc_disk_flushes_per_s"].append(rep[variant]["disk_flushes_per_s"])
    return {key: {"median": median_of(v), "max": max(v) if v else None}
            for key, v in samples.items()}


def print_tables(summary: dict, args, load: dict) -> None:
    def ratio_cell(value):
        return "-" if value is None else f"{value:.2f}x"

    if summary["create_close"]:
        print(f"\nCREATE+CLOSE, QD1, {args.pairs} pairs per variant per repetition "
              f"(median of {args.repeat})\n")
        print("| metric | unit | plain | ca, plain open | ca, persistent DH2Q "
              "| ca open / plain | persistent / plain | persistent − plain |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in summary["create_close"]:
            digits = 2 if row["unit"] == "calls" else 0
            cells = " | ".join(fmt(row["median"][v], digits) for v in CC_VARIANTS)
            print(f"| {row['metric']} | {row['unit']} | {cells} | "
                  f"{ratio_cell(row['ca_open_vs_plain'])} | "
                  f"{ratio_cell(row['persistent_vs_plain'])} | "
                  f"{fmt(row['persistent_minus_plain'], digits)} |")
    if summary["write"]:
        print(f"\nSequential write, {args.size_mib} MiB in {args.write_kib} KiB WRITEs "
              f"(median of {args.repeat})\n")
        print("| metric | unit | plain | ca | ca / plain |")
        print("| --- | --- | ---: | ---: | ---: |")
        for row in summary["write"]:
            digits = 0 if row["unit"] == "calls" else (2 if row["unit"] == "ms" else 1)
            cells = " | ".join(fmt(row["median"][v], digits) for v in WRITE_VARIANTS)
            print(f"| {row['metric']} | {row['unit']} | {cells} | "
                  f"{ratio_cell(row['ca_vs_plain'])} |")
    print("\nca/plain: latency, CPU and sync ratios above 1 and throughput ratios below 1 mean "
          "the ca share costs more.")
    print("Other processes' CPU during our windows: server CPU "
          f"{fmt_pct(load['server_cpu'])}, client CPU {fmt_pct(load['client_cpu'])}.")
    flushes = load["cc_disk_flushes_per_s"]
    if flushes["median"] is not None:
        print(f"Disk flushes/s on {Window.device} while we synced nothing (plain-open "
              f"create+close windows): median {flushes['median']:.0f}, max {flushes['max']:.0f}.")


def fmt_pct(entry: dict) -> str:
    if entry["median"] is None:
        return "-"
    return f"median {entry['median'] * 100:.0f} %, max {entry['max'] * 100:.0f} %"


def perf_works() -> bool:
    if shutil.which("perf") is None:
        return False
    result = subprocess.run(["perf", "stat", "-x", ",", "-e", SYNC_EVENTS[0], "true"],
                            capture_output=True, text=True)
    return result.returncode == 0 and SYNC_EVENTS[0] in result.stderr


# --- the run -------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3000,
                        help="CREATE+CLOSE pairs per variant per repetition")
    parser.add_argument("--rounds", type=int, default=6,
                        help="interleaved rounds the pairs are split into")
    parser.add_argument("--clients", type=int, default=1,
                        help="CREATE+CLOSE clients at once, each with its own connection, "
                             "file and thread (default 1: one pair at a time)")
    parser.add_argument("--size-mib", type=int, default=256, help="MiB per write run")
    parser.add_argument("--write-kib", type=int, default=1024,
                        help="KiB per WRITE in the write runs (a divisor of 1024)")
    parser.add_argument("--depths", type=lambda v: [int(d) for d in v.split(",")], default=[1, 8],
                        help="WRITEs in flight, comma-separated")
    parser.add_argument("--patterns", type=lambda v: v.split(","), default=["append", "overwrite"],
                        help="write patterns, comma-separated: append (truncate, then extend), "
                             "overwrite (a file already full size)")
    parser.add_argument("--encrypted", action="store_true",
                        help="encrypt every session (default: signed only, as compare.py's "
                             "'signed' mode)")
    parser.add_argument("--only", choices=("create", "write"), help="run one of the two")
    parser.add_argument("--no-sync-count", dest="count_syncs", action="store_false",
                        help="do not attach perf to count the server's fdatasync/fsync calls")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the shares and state directory go (default: system temp)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if not 0 < args.write_kib <= 1024 or 1024 % args.write_kib:
        parser.error("--write-kib must divide 1024 (KiB per WRITE, at most 1 MiB)")
    if args.count_syncs and not perf_works():
        print("warning: perf cannot count syscalls:sys_enter_fdatasync; no sync counts",
              file=sys.stderr)
        args.count_syncs = False
    pinned = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if pinned:
        os.sched_setaffinity(0, {CLIENT_CPU})
    else:
        print("warning: servers and clients are not pinned", file=sys.stderr)

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    work = Path(tempfile.mkdtemp(prefix="smbca-ca-bench-", dir=args.dir))
    raw = {"create_close": [], "write": []}
    server = None
    started = time.monotonic()
    try:
        shares = []
        for name in ("plain", "ca"):
            (work / name).mkdir()
            shares.append(Share(name, work / name, ca=name == "ca"))
        server = start_smbcad(work, shares=shares, taskset=SERVER_CPU if pinned else None)
        Window.device = block_device(work)
        print(f"smbcad: pid {server.pid}, port {server.port}, shares in {work}", flush=True)
        for repetition in range(args.repeat):
            if args.only in (None, "create"):
                raw["create_close"].append(measure_cc(args, server, repetition))
            if args.only in (None, "write"):
                raw["write"].append(measure_write(args, server, repetition))
        if server.proc.poll() is not None:
            raise RuntimeError(f"smbcad exited: {server.log_tail()}")
        errors = [line for line in server.log_path.read_text(errors="replace").splitlines()
                  if " ERROR " in line or "Traceback" in line]
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    load_after = Path("/proc/loadavg").read_text().split()[:3]

    summary = summarize(raw, args)
    load = foreign_load(raw)
    print_tables(summary, args, load)
    print(f"Load average before / after: {' '.join(load_before)} / {' '.join(load_after)}; "
          f"{time.monotonic() - started:.0f} s.")
    if errors:
        print(f"smbcad logged {len(errors)} error line(s), first: {errors[0]}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out / f"ca-bench-{stamp}.json"
    out.write_text(json.dumps({
        "when": stamp, "host": platform.node(), "cpus": os.cpu_count(), "pinned": pinned,
        "python": platform.python_version(),
        "smbprotocol": importlib.metadata.version("smbprotocol"),
        "kernel": platform.release(), "device": Window.device,
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "loadavg_before": load_before, "loadavg_after": load_after,
        "foreign_cpu": load, "server_log_errors": errors[:20],
        "summary": summary, "raw": raw}, indent=2) + "\n")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
