"""What a create intent costs (not a test): persistent CREATE+CLOSE, with and
without intents, in one run (smbcad/server/intents.py; cluster.md section 8
question 1 asked for the measurement).

Two smbcad processes serve identical ``ca`` shares from one file system:
one as shipped, one started through ``bench.smbcad_without_intents`` (the
same server with the intent step switched off).  Both are pinned to CPU 0,
the client (smbprotocol, ca_bench.CaClient) to CPU 1.  Signed SMB 3.1.1.
Interleaved rounds (the order alternates), one pair at a time, each CREATE
with a DH2Q asking for (and checked to get) a persistent handle:

- ``create``: FILE_CREATE of a new name, then CLOSE.  With intents: intent
  commit, file create, open record (replacing the intent), response; CLOSE
  removes the record.  Without: file create, open record, response; CLOSE.
- ``open``: FILE_OPEN of an existing file, then CLOSE: no intent in either
  server (the control: both arms should match).

p50/p99/mean pair latency per variant and the with/without ratio, medians
over ``--repeat`` repetitions; raw values to bench/results/intent-bench-*.json.
The store here is the node-local log store (no partner mirror): with the
mirror every commit also waits for the partner's ack, so the intent's extra
commit costs one more mirrored round trip (bench/mirror_bench.py measures a
lone mirrored commit).

  /opt/smbca/test-venv/bin/python bench/intent_bench.py            # ~1 min
  /opt/smbca/test-venv/bin/python bench/intent_bench.py --pairs 2000 --repeat 5
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ca_bench import CaClient  # noqa: E402
from compare import CLIENT_CPU, SERVER_CPU  # noqa: E402
from servers import Share, start_smbcad  # noqa: E402

ARMS = {"with": "smbcad", "without": "bench.smbcad_without_intents"}
VARIANTS = ("create", "open")
EXISTING = "bench-open.bin"


def pairs(client: CaClient, variant: str, count: int, tag: str) -> list[float]:
    """``count`` persistent CREATE+CLOSE pairs; seconds each."""
    from smbprotocol.open import CreateDisposition
    out = []
    for index in range(count):
        if variant == "create":
            name, disposition = f"new-{tag}-{index}", CreateDisposition.FILE_CREATE
        else:
            name, disposition = EXISTING, CreateDisposition.FILE_OPEN
        start = time.perf_counter()
        client.open_file(name, disposition, persistent=True).close()
        out.append(time.perf_counter() - start)
    return out


def stats(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_us": ordered[len(ordered) // 2] * 1e6,
            "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
            "mean_us": statistics.fmean(ordered) * 1e6, "n": len(ordered)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1200, help="pairs per variant and arm")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    pinned = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if pinned:
        os.sched_setaffinity(0, {CLIENT_CPU})
    work = Path(tempfile.mkdtemp(prefix="smbca-intent-bench-", dir=args.dir))
    servers, clients = {}, {}
    raw = {arm: {variant: [] for variant in VARIANTS} for arm in ARMS}
    try:
        for arm, module in ARMS.items():
            share = work / arm / "ca"
            share.mkdir(parents=True)
            (share / EXISTING).write_bytes(b"x")
            servers[arm] = start_smbcad(work / arm, shares=[Share("ca", share, ca=True)],
                                        taskset=SERVER_CPU if pinned else None, module=module)
            clients[arm] = CaClient(servers[arm], "ca")
        per_round = max(1, args.pairs // args.rounds)
        for repetition in range(args.repeat):
            samples = {arm: {variant: [] for variant in VARIANTS} for arm in ARMS}
            for round_ in range(args.rounds):
                order = list(ARMS) if round_ % 2 == 0 else list(reversed(ARMS))
                for variant in VARIANTS:
                    for arm in order:
                        samples[arm][variant] += pairs(clients[arm], variant, per_round,
                                                       f"{repetition}-{round_}")
            for arm in ARMS:
                for variant in VARIANTS:
                    raw[arm][variant].append(stats(samples[arm][variant]))
            print(f"repetition {repetition + 1}/{args.repeat} done", flush=True)
        for arm, server in servers.items():
            if server.proc.poll() is not None:
                raise RuntimeError(f"smbcad ({arm}) exited: {server.log_tail()}")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary = {arm: {variant: {key: statistics.median(run[key] for run in runs)
                               for key in ("p50_us", "p99_us", "mean_us")}
                     for variant, runs in variants.items()}
               for arm, variants in raw.items()}
    print(f"\npersistent CREATE+CLOSE, µs, medians of {args.repeat} repetitions "
          f"({per_round * args.rounds} pairs each)")
    print(f"{'variant':8} {'arm':8} {'p50':>8} {'p99':>8} {'mean':>8}")
    for variant in VARIANTS:
        for arm in ARMS:
            row = summary[arm][variant]
            print(f"{variant:8} {arm:8} {row['p50_us']:8.0f} {row['p99_us']:8.0f} "
                  f"{row['mean_us']:8.0f}")
        ratio = {key: summary["with"][variant][key] / summary["without"][variant][key]
                 for key in ("p50_us", "p99_us", "mean_us")}
        print(f"{variant:8} {'ratio':8} {ratio['p50_us']:8.2f} {ratio['p99_us']:8.2f} "
              f"{ratio['mean_us']:8.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"intent-bench-{stamp}.json"
    path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                "raw": raw, "summary": summary}, indent=1))
    print(f"raw: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
