"""Soak benchmark (not a test; issue 17 "How it is shown", first part only):
connection churn against one smbcad for ``--duration`` seconds, sampling
every ``--interval`` seconds the server's RSS and open fds (/proc) and a
well-behaved client's NEGOTIATE latency (p50/p99 of ``--probes`` fresh
connections).

The churn is the no-growth test's mix (tests/unit/server/test_no_growth.py:
half-done setups, malformed and cut frames, cut compounds, pending
CHANGE_NOTIFY and lease-break waits, open files, all dropped by the client).
One sample per line goes to stdout as JSON; the summary compares the last
sample's RSS with the first after ``--warmup`` seconds.

The issue's whole soak (floods, slowloris and half frames from up to 1,000
connections, event-loop lag, CREATE/READ probes, the PNG plot) is
bench/soak_hostile.py; this one stays the plain churn.

  /opt/smbca/test-venv/bin/python bench/soak.py --duration 1800     # the issue's 30 minutes
  /opt/smbca/test-venv/bin/python bench/soak.py --duration 60 --interval 5
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "interop"))

from servers import start_smbcad  # noqa: E402
from tests.unit.server import harness  # noqa: E402
from tests.unit.server.loopback import SocketClient  # noqa: E402
from tests.unit.server.test_no_growth import BATCH, _scenario  # noqa: E402


def _proc_sample(pid: int) -> dict:
    rss_kib = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    return {"rss_mib": round(rss_kib / 1024, 1), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def _negotiate_latencies(port: int, probes: int) -> list[float]:
    out = []
    for _ in range(probes):
        started = time.perf_counter()
        client = SocketClient(port)
        client.negotiate()
        out.append(time.perf_counter() - started)
        client.close()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "share" / "dir").mkdir(parents=True)
        server = start_smbcad(Path(tmp), users={harness.USER: harness.PASSWORD})
        try:
            samples, keep, index = [], [], 0
            start = next_sample = time.monotonic()
            while time.monotonic() - start < args.duration:
                _scenario(index, server.port, keep)
                index += 1
                if len(keep) >= BATCH:
                    for client in keep:
                        client.close()
                    keep.clear()
                if time.monotonic() >= next_sample:
                    latencies = sorted(_negotiate_latencies(server.port, args.probes))
                    sample = {"t_s": round(time.monotonic() - start, 1), "connections": index,
                              **_proc_sample(server.pid),
                              "negotiate_p50_ms": round(statistics.median(latencies) * 1e3, 2),
                              "negotiate_p99_ms": round(latencies[-1] * 1e3, 2)}
                    samples.append(sample)
                    print(json.dumps(sample), flush=True)
                    next_sample += args.interval
            for client in keep:
                client.close()
        finally:
            server.stop()
    warm = [s for s in samples if s["t_s"] >= args.warmup] or samples
    if warm:
        first, last = warm[0], warm[-1]
        growth = (last["rss_mib"] - first["rss_mib"]) / max(first["rss_mib"], 1e-9) * 100
        print(f"RSS after warm-up {first['rss_mib']} MiB -> {last['rss_mib']} MiB "
              f"({growth:+.1f} %), fds {first['fds']} -> {last['fds']}, worst NEGOTIATE p99 "
              f"{max(s['negotiate_p99_ms'] for s in warm)} ms, {samples[-1]['connections']} "
              "connections", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
