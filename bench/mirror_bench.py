"""Partner-mirror benchmark (not a test): what the mirror adds to a commit
(issue 10 "How it is shown": target <= 1.3x the local-only latency).

One run, interleaved ``--repeat`` times: the same LocalHandleStore workload on
a plain LogEngine ("local") and on a MirroredEngine whose partner is a second
process on 127.0.0.1 holding the replica ("mirrored"):

- lone commit: one coroutine updating one ~330-byte record, ``--commits`` times;
- CREATE+CLOSE: one coroutine creating then closing a persistent open;
- 16 committers: 16 coroutines updating their own records (group commit).

Reports p50/p99 latency per commit and commits/s, medians over the repeats,
and each repeat's p50 and mirrored/local ratio (local and mirrored run back
to back in each repeat, so the ratio of one repeat shares its load).

``--pin`` puts this process on CPU 0 and the partner on CPU 1, a little
closer to two machines (on a 2-core VM the partner, woken by each APPEND,
otherwise competes with this process for a core).

  python3 bench/mirror_bench.py                    # ~1 min
  python3 bench/mirror_bench.py --commits 500 --repeat 1
  python3 bench/mirror_bench.py --pin
  python3 bench/mirror_bench.py --pin --partner-dir /dev/shm   # the partner's own disk
"""

import argparse
import asyncio
import dataclasses
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smbcad.cluster import aggregate_state as ags  # noqa: E402
from smbcad.cluster.mirror_link import MirrorLink, ReplicaEndpoint  # noqa: E402
from smbcad.cluster.mirrored_engine import MirroredEngine  # noqa: E402
from smbcad.store import LocalHandleStore, LogEngine, PersistentOpen  # noqa: E402

AGG = "bench"


def record(key: int) -> PersistentOpen:
    return PersistentOpen(
        durable_file_id=key, create_guid=key.to_bytes(16, "little"),
        client_guid=bytes(range(16)), owner_user="HV-HOST01$", owner_domain="CONTOSO",
        share_name="vms",
        path=f"Virtual Machines/vm{key % 1000:03d}/Virtual Hard Disks/disk0.vhdx",
        file_dev=2049, file_ino=1_000_000 + key, vfs_cookie=bytes(24),
        desired_access=0x0012019F, granted_access=0x0012019F, share_access=0x3,
        is_durable=True, is_persistent=True, durable_timeout_ms=120_000)


async def replica_main(state_dir: str, key_hex: str, cpu: str) -> None:
    if cpu != "-":
        os.sched_setaffinity(0, {int(cpu)})
    link = MirrorLink(node_id="b", cluster_key=bytes.fromhex(key_hex), incarnation=1,
                      listen=("127.0.0.1", 0), peer=("127.0.0.1", 9), peer_node_id="a")
    link.register(await ReplicaEndpoint.open(state_dir, AGG, link))
    await link.start()
    print(f"PORT {link.listen[1]}", flush=True)
    await asyncio.Event().wait()


async def workload(store, commits: int) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {"lone": [], "create+close": [], "16 committers": []}
    current = await store.create(record(1))
    for _ in range(commits):
        started = time.perf_counter()
        current = await store.update(dataclasses.replace(current, file_attributes=0x20))
        lat["lone"].append(time.perf_counter() - started)
    for key in range(1000, 1000 + commits // 2):
        started = time.perf_counter()
        await store.create(record(key))
        await store.close(key)
        lat["create+close"].append(time.perf_counter() - started)

    async def committer(key: int) -> None:
        mine = await store.create(record(key))
        for _ in range(commits // 16):
            started = time.perf_counter()
            mine = await store.update(dataclasses.replace(mine, file_attributes=0x20))
            lat["16 committers"].append(time.perf_counter() - started)
    started = time.perf_counter()
    await asyncio.gather(*(committer(key) for key in range(2000, 2016)))
    lat["16 rate"] = [16 * (commits // 16) / (time.perf_counter() - started)]
    return lat


async def run_local(directory: str, commits: int):
    store = await LocalHandleStore.open(LogEngine(os.path.join(directory, "local")))
    try:
        return await workload(store, commits)
    finally:
        await store.shutdown()


async def run_mirrored(directory: str, commits: int, key: bytes, port: int):
    state, mount = os.path.join(directory, "a-state"), os.path.join(directory, "a-mount")
    ags.commit_adoption(state, mount, ags.load_for_adoption(state, AGG, mount))
    loop = asyncio.get_running_loop()
    link = MirrorLink(node_id="a", cluster_key=key, incarnation=1, listen=("127.0.0.1", 0),
                      peer=("127.0.0.1", port), peer_node_id="b")
    engine = MirroredEngine(state_dir=state, aggregate=AGG, mount_point=mount, link=link,
                            loop=loop)
    await link.start()
    store = await LocalHandleStore.open(engine)
    try:
        while not engine.status().in_sync:
            await asyncio.sleep(0.01)
        result = await workload(store, commits)
        assert engine.status().degrade_count == 0, "the mirror degraded during the run"
        return result
    finally:
        await store.shutdown()
        await link.stop()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def parse_partner_args(parser: argparse.ArgumentParser, replica) -> argparse.Namespace | None:
    """Add --pin, --partner-dir and the partner process's --replica, and
    parse.  In the partner process, run ``replica(*args.replica)`` and return
    None; else pin this process (--pin) and return the arguments."""
    parser.add_argument("--pin", action="store_true",
                        help="this process on CPU 0, the partner on CPU 1")
    parser.add_argument("--partner-dir", default=None,
                        help="the partner's replica under this directory (e.g. /dev/shm: "
                             "a partner with a disk of its own, whose fsync does not queue "
                             "behind ours as it does on this one-disk VM)")
    parser.add_argument("--replica", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replica:
        asyncio.run(replica(*args.replica))
        return None
    if args.pin:
        os.sched_setaffinity(0, {0})
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parse_partner_args(parser, replica_main)
    if args is None:
        return
    key = secrets.token_bytes(32)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    rates: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for mode in ("local", "mirrored"):
            directory = tempfile.mkdtemp(prefix="mirror-bench-", dir=args.dir)
            partner = tempfile.mkdtemp(prefix="mirror-bench-b-", dir=args.partner_dir) \
                if args.partner_dir else directory
            proc = None
            try:
                if mode == "local":
                    lat = asyncio.run(run_local(directory, args.commits))
                else:
                    proc = subprocess.Popen(
                        [sys.executable, __file__, "--replica",
                         os.path.join(partner, "b-state"), key.hex(),
                         "1" if args.pin else "-"],
                        stdout=subprocess.PIPE, text=True)
                    port = int(proc.stdout.readline().split()[1])
                    lat = asyncio.run(run_mirrored(directory, args.commits, key, port))
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
                    proc.stdout.close()
                shutil.rmtree(directory, ignore_errors=True)
                shutil.rmtree(partner, ignore_errors=True)
            rates.setdefault(mode, []).append(lat.pop("16 rate")[0])
            for name, values in lat.items():
                results.setdefault((name, mode), []).append((pct(values, 0.5),
                                                             pct(values, 0.99)))
    print(f"{'workload':16} {'mode':9} {'p50 µs':>8} {'p99 µs':>8} {'x local p50':>12}"
          f"   p50 of each run (µs)")
    for name in ("lone", "create+close", "16 committers"):
        base = statistics.median(p50 for p50, _ in results[name, "local"])
        for mode in ("local", "mirrored"):
            p50 = statistics.median(v[0] for v in results[name, mode])
            p99 = statistics.median(v[1] for v in results[name, mode])
            runs = " ".join(f"{v[0] * 1e6:.0f}" for v in results[name, mode])
            print(f"{name:16} {mode:9} {p50 * 1e6:8.0f} {p99 * 1e6:8.0f} {p50 / base:12.2f}"
                  f"   {runs}")
        ratios = sorted(m[0] / loc[0] for loc, m in zip(results[name, "local"],
                                                        results[name, "mirrored"]))
        print(f"{'':16} {'ratio':9} each run (mirrored/local p50): "
              + " ".join(f"{r:.2f}" for r in ratios))
    for mode in ("local", "mirrored"):
        print(f"16 committers, {mode}: {statistics.median(rates[mode]):.0f} commits/s "
              f"(runs: {' '.join(f'{r:.0f}' for r in rates[mode])})")


if __name__ == "__main__":
    main()
