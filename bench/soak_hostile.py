"""Hostile soak benchmark (not a test; issue 17 "How it is shown"): one quick-mode
smbcad under the loads of ``bench/hostile_loads.py`` (churn, malformed frames,
slowloris, half frames, request floods, a 10,000-entry directory listed again
and again, eight connections per ClientGuid: up to ~1,000 connections at
``--scale 1``) for ``--duration`` seconds, while a well-behaved client measures,
every ``--interval`` seconds, from a fresh connection each time:

  NEGOTIATE, SESSION_SETUP (all legs) and CREATE+CLOSE latency, and the
  throughput of a 16 MiB file read in 1 MiB READs.

Each sample also has the server's RSS, open fds and CPU time (/proc), and from
its Prometheus endpoint the connections, requests answered, limit hits and the
event-loop lag (``smbcad_event_loop_lag_max_seconds``: the worst delay of
the server's loop-lag probe in the last 10 s).  One JSON line per sample goes to
``OUT/samples.jsonl``; ``OUT/soak.png`` plots RSS, fds and connections,
event-loop lag and the probe's latencies over time; ``OUT/summary.json`` has
RSS flatness after ``--warmup``, the probe's p50/p99 per step, server CPU per
request, and, measured after the loads stop, the memory per idle
(authenticated) connection and per open.

  /opt/smbca/test-venv/bin/python bench/soak_hostile.py --duration 1800     # the issue's 30 min
  /opt/smbca/test-venv/bin/python bench/soak_hostile.py --duration 300 --out /tmp/soak
  ... --profile /tmp/soak/server.svg     # py-spy flame graph of the server meanwhile

matplotlib and py-spy: ``pip install -e .[bench]``.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "interop"))

from hostile_loads import make_big_directory  # noqa: E402
from servers import free_port, start_smbcad  # noqa: E402
from smb_async import FILE_DIRECTORY_FILE, AsyncClient  # noqa: E402
from tests.unit.server import harness  # noqa: E402

READ_FILE = "probe-read.bin"
READ_FILE_BYTES = 16 * 1024 * 1024
READ_CHUNK = 1024 * 1024
STEPS = ("negotiate", "session_setup", "create_close")
PROBE_SOURCE = "127.0.0.2"          # the well-behaved client's own address
IDLE_CONNECTIONS = 200              # for memory per idle connection
OPENS = 2000                        # for memory per open


# --- the server's side ------------------------------------------------------------

def proc_sample(pid: int) -> dict:
    rss_kib = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return {"rss_mib": round(rss_kib / 1024, 1), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "cpu_s": round(cpu_s, 2)}


def scrape(metrics_port: int) -> dict:
    """The few metrics the soak plots, summed over their labels."""
    wanted = ("smbcad_connections", "smbcad_requests_total", "smbcad_limit_hits_total",
              "smbcad_event_loop_lag_max_seconds", "smbcad_sessions", "smbcad_opens")
    out = dict.fromkeys(wanted, 0.0)
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as rsp:
        for line in rsp.read().decode().splitlines():
            if line.startswith("#"):
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in out:
                out[name] += float(line.rsplit(" ", 1)[1])
    return out


# --- the well-behaved client --------------------------------------------------------

async def probe(port: int) -> dict:
    """One round from a fresh connection: latency of each step in ms, READ MiB/s."""
    timings = {}
    started = time.perf_counter()
    client = await AsyncClient.connect(port, PROBE_SOURCE)
    try:
        await client.negotiate()
        timings["negotiate"] = time.perf_counter() - started
        mark = time.perf_counter()
        if await client.session_setup():
            raise ConnectionError("probe SESSION_SETUP failed")
        timings["session_setup"] = time.perf_counter() - mark
        await client.tree_connect()
        mark = time.perf_counter()
        handle = await client.create(f"probe-{os.getpid()}.txt", disposition=5)
        if not isinstance(handle, tuple):
            raise ConnectionError(f"probe CREATE failed: 0x{handle:08x}")
        await client.close_file(handle)
        timings["create_close"] = time.perf_counter() - mark
        handle = await client.create(READ_FILE, disposition=1)
        mark = time.perf_counter()
        got = 0
        for offset in range(0, READ_FILE_BYTES, READ_CHUNK):
            got += await client.read(handle, READ_CHUNK, offset)
        read_s = time.perf_counter() - mark
        await client.close_file(handle)
    finally:
        client.close()
    out = {f"{step}_ms": round(seconds * 1e3, 2) for step, seconds in timings.items()}
    out["read_mib_s"] = round(got / (1 << 20) / read_s, 1)
    return out


async def negotiate_only(port: int) -> float:
    started = time.perf_counter()
    client = await AsyncClient.connect(port, PROBE_SOURCE)
    try:
        await client.negotiate()
        return (time.perf_counter() - started) * 1e3
    finally:
        client.close()


async def memory_per_object(port: int, pid: int) -> dict:
    """RSS added by IDLE_CONNECTIONS authenticated idle connections, then by
    OPENS opens on one of them; on the fresh server, before any load (after a
    load the allocator's free arenas would hide the growth)."""
    before = proc_sample(pid)["rss_mib"]
    clients = []
    for index in range(IDLE_CONNECTIONS):
        source = f"127.0.1.{1 + index // 50}"
        clients.append(await (await AsyncClient.connect(port, source)).login())
    with_connections = proc_sample(pid)["rss_mib"]
    holder = clients[0]
    directory = await holder.create("opens", options=FILE_DIRECTORY_FILE, disposition=3)
    await holder.close_file(directory)
    for index in range(OPENS):
        handle = await holder.create(f"opens\\file-{index}.txt", disposition=3)
        if not isinstance(handle, tuple):
            raise ConnectionError(f"CREATE failed: 0x{handle:08x}")
    with_opens = proc_sample(pid)["rss_mib"]
    for client in clients:
        client.close()
    return {"idle_connection_kib": round((with_connections - before) * 1024 / IDLE_CONNECTIONS, 1),
            "open_kib": round((with_opens - with_connections) * 1024 / OPENS, 2)}


# --- the run --------------------------------------------------------------------------

def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else None


async def _sample_loop(args, server, metrics_port, out_dir, negotiates) -> list:
    samples = []
    start = time.monotonic()
    last_cpu = last_requests = None
    with open(out_dir / "samples.jsonl", "w") as sink:
        while time.monotonic() - start < args.duration:
            tick = time.monotonic()
            sample = {"t_s": round(tick - start, 1)}
            try:
                sample.update(await probe(server.port))
            except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                sample["probe_error"] = str(exc)
            for _ in range(args.negotiates):
                try:
                    negotiates.append((tick - start, await negotiate_only(server.port)))
                except (ConnectionError, OSError, asyncio.IncompleteReadError):
                    pass
            sample.update(proc_sample(server.pid))
            metrics = await asyncio.to_thread(scrape, metrics_port)
            sample.update(connections=metrics["smbcad_connections"],
                          limit_hits=metrics["smbcad_limit_hits_total"],
                          loop_lag_ms=round(metrics["smbcad_event_loop_lag_max_seconds"] * 1e3, 2),
                          requests=metrics["smbcad_requests_total"])
            if last_cpu is not None and sample["requests"] > last_requests:
                sample["cpu_us_per_request"] = round(
                    (sample["cpu_s"] - last_cpu) / (sample["requests"] - last_requests) * 1e6, 1)
            last_cpu, last_requests = sample["cpu_s"], sample["requests"]
            samples.append(sample)
            sink.write(json.dumps(sample) + "\n")
            sink.flush()
            print(json.dumps(sample), flush=True)
            await asyncio.sleep(max(0.0, args.interval - (time.monotonic() - tick)))
    return samples


def summarize(args, samples, negotiates, per_object, load_counts) -> dict:
    warm = [s for s in samples if s["t_s"] >= args.warmup] or samples
    rss = [s["rss_mib"] for s in warm]
    summary = {
        "duration_s": args.duration, "scale": args.scale, "samples": len(samples),
        "rss_mib_after_warmup": {"first": rss[0], "last": rss[-1], "min": min(rss),
                                 "max": max(rss),
                                 "last_vs_first_pct": round((rss[-1] - rss[0]) / rss[0] * 100, 1)},
        "fds": {"first": warm[0]["fds"], "last": warm[-1]["fds"],
                "max": max(s["fds"] for s in samples)},
        "max_connections": max(s["connections"] for s in samples),
        "loop_lag_ms": {"p50": _percentile([s["loop_lag_ms"] for s in samples], 0.5),
                        "max": max(s["loop_lag_ms"] for s in samples)},
        "negotiate_ms": {"count": len(negotiates),
                         "p50": _percentile([ms for _, ms in negotiates], 0.5),
                         "p99": _percentile([ms for _, ms in negotiates], 0.99),
                         "max": max((ms for _, ms in negotiates), default=None)},
        "probe_errors": sum(1 for s in samples if "probe_error" in s),
        "loads": load_counts,
        **per_object,
    }
    for step in STEPS:
        values = [s[f"{step}_ms"] for s in samples if f"{step}_ms" in s]
        summary[f"probe_{step}_ms"] = {"p50": _percentile(values, 0.5),
                                       "p99": _percentile(values, 0.99)}
    reads = [s["read_mib_s"] for s in samples if "read_mib_s" in s]
    summary["probe_read_mib_s"] = {"p50": _percentile(reads, 0.5), "min": min(reads, default=None)}
    cpu = [s["cpu_us_per_request"] for s in warm if "cpu_us_per_request" in s]
    if cpu:
        # One sample is 5 s of whatever the loads happened to send; the
        # flatness is judged on the medians of six equal spans after warm-up.
        spans = [cpu[len(cpu) * k // 6:len(cpu) * (k + 1) // 6] for k in range(6)]
        medians = [round(statistics.median(span), 1) for span in spans if span]
        summary["cpu_us_per_request"] = {
            "median": statistics.median(cpu), "span_medians": medians,
            "last_vs_first_span_pct": round((medians[-1] - medians[0]) / medians[0] * 100, 1),
            "spread_pct": round((max(medians) - min(medians)) / min(medians) * 100, 1)}
    return summary


def plot(samples, negotiates, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = [s["t_s"] for s in samples]
    fig, axes = plt.subplots(5, 1, figsize=(11, 15), sharex=True)
    axes[0].plot(t, [s["rss_mib"] for s in samples], color="tab:blue")
    axes[0].set_ylabel("server RSS (MiB)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(t, [s["fds"] for s in samples], label="open fds")
    axes[1].plot(t, [s["connections"] for s in samples], label="connections")
    axes[1].set_ylabel("count")
    axes[1].legend(loc="upper left")
    axes[2].plot(t, [s["loop_lag_ms"] for s in samples], color="tab:red")
    axes[2].set_ylabel("event-loop lag, worst\nin 10 s (ms)")
    axes[3].scatter([x for x, _ in negotiates], [ms for _, ms in negotiates], s=4,
                    label="NEGOTIATE (fresh conn.)", color="tab:green")
    for step, color in (("session_setup", "tab:orange"), ("create_close", "tab:purple")):
        points = [(s["t_s"], s[f"{step}_ms"]) for s in samples if f"{step}_ms" in s]
        axes[3].plot([p[0] for p in points], [p[1] for p in points], label=step, color=color)
    axes[3].axhline(200, color="grey", linestyle="--", linewidth=0.8, label="200 ms target")
    axes[3].set_yscale("log")
    axes[3].set_ylabel("well-behaved client\nlatency (ms)")
    axes[3].legend(loc="upper left", fontsize="small")
    axes[4].plot(t, [s.get("read_mib_s", 0) for s in samples], color="tab:brown")
    axes[4].set_ylabel("16 MiB read (MiB/s)")
    axes[4].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


async def run(args) -> int:
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="soak-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        share = Path(tmp) / "share"
        share.mkdir()
        make_big_directory(share)
        (share / READ_FILE).write_bytes(os.urandom(READ_FILE_BYTES))
        metrics_port = free_port("127.0.0.1")
        server = start_smbcad(Path(tmp), users={harness.USER: harness.PASSWORD}, extra_args=(
            "--metrics-listen", f"127.0.0.1:{metrics_port}", "--log-level", "warning"))
        loads = profiler = None
        try:
            per_object = await memory_per_object(server.port, server.pid)
            await asyncio.sleep(1)
            if args.scale > 0:
                loads = subprocess.Popen(
                    [sys.executable, str(REPO / "bench" / "hostile_loads.py"), "--port",
                     str(server.port), "--duration", str(args.duration), "--scale",
                     str(args.scale), "--kinds", args.kinds], stdout=subprocess.PIPE, text=True)
            if args.profile:
                profiler = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(server.pid), "-o", args.profile, "-r", "50",
                     "-d", str(int(args.duration)), "--nonblocking",
                     "--format", "raw" if args.profile.endswith(".txt") else "flamegraph"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            negotiates: list = []
            samples = await _sample_loop(args, server, metrics_port, out_dir, negotiates)
            load_counts = {}
            if loads is not None:
                output, _ = await asyncio.to_thread(loads.communicate, timeout=120)
                load_counts = dict(item.split("=") for item in output.split())
            if profiler is not None:
                await asyncio.to_thread(profiler.wait, 120)
        finally:
            for proc in (loads, profiler):
                if proc is not None and proc.poll() is None:
                    proc.kill()
            server.stop()
            shutil.copy(server.log_path, out_dir / "smbcad.log")
    summary = summarize(args, samples, negotiates, per_object, load_counts)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(samples, negotiates, out_dir / "soak.png",
         f"smbcad hostile soak: {args.duration:.0f} s, scale {args.scale}, "
         f"up to {summary['max_connections']:.0f} connections")
    print(json.dumps(summary, indent=2))
    print(f"samples, plot and summary in {out_dir}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds before RSS flatness is judged")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="actors per kind relative to hostile_loads.MIX (0: no load)")
    parser.add_argument("--kinds", default="", help="only these load kinds (comma-separated)")
    parser.add_argument("--negotiates", type=int, default=5,
                        help="extra NEGOTIATE-only probes per sample (for the p99)")
    parser.add_argument("--out", help="output directory (default: a new temp dir)")
    parser.add_argument("--profile", help="py-spy profile of the server: a flame graph "
                        "(FILE.svg) or collapsed stacks (FILE.txt)")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
