"""Handle-store benchmark (not a test): which engine, and what a commit costs.

For each engine configuration, N concurrent committers (coroutines on one
event loop, as the server's request tasks are) each update their own ~330-byte
persistent-open record in a loop for ``--seconds``; we report commits/s,
p50/p99 latency of ``await store.update(...)`` and the mean number of commits
that shared one fsync.  Runs are interleaved (every engine at one concurrency,
then the next concurrency) and repeated ``--repeat`` times; tables show
medians.  Also measured: the disk's floor (one 330-byte pwrite + fdatasync,
overwrite and append), record encode/decode against JSON, and recovery
(opening a store holding 100k records, each created then updated once).

  python3 bench/store_bench.py                   # everything, ~4 min
  python3 bench/store_bench.py --seconds 1 --repeat 1 --recovery-records 20000
  python3 bench/store_bench.py --json out.json   # raw numbers too

The store files go to a temporary directory under ``--dir`` (default: the
system temp dir; put it on the file system the daemon's state_dir uses).
"""

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smbcad.store import (  # noqa: E402
    LeaseRecord, LocalHandleStore, LockRecord, LogEngine, PersistentOpen, SqliteEngine, decode,
    encode)

ENGINES = {
    "log": lambda d: LogEngine(os.path.join(d, "log")),
    "log-append": lambda d: LogEngine(os.path.join(d, "log"), preallocate_bytes=0),
    "sqlite-full": lambda d: SqliteEngine(os.path.join(d, "handles.db")),
    "sqlite-normal-ckpt": lambda d: SqliteEngine(os.path.join(d, "handles.db"),
                                                 synchronous="NORMAL"),
}
BACKGROUND_RECORDS = 1000        # a live table of this size behind the committers


def sample_record(durable_file_id: int) -> PersistentOpen:
    """A persistent open the way a Hyper-V host leaves one: ~330 bytes encoded."""
    return PersistentOpen(
        durable_file_id=durable_file_id,
        create_guid=durable_file_id.to_bytes(16, "little"),
        client_guid=bytes(range(16)),
        owner_user="HV-HOST01$", owner_domain="CONTOSO", share_name="vms",
        path=f"Virtual Machines/vm{durable_file_id % 1000:03d}/Virtual Hard Disks/disk0.vhdx",
        file_dev=2049, file_ino=1_000_000 + durable_file_id, vfs_cookie=bytes(24),
        desired_access=0x0012019F, granted_access=0x0012019F, share_access=0x3,
        create_options=0x00000042, file_attributes=0x20,
        lease=LeaseRecord(lease_key=bytes(range(16, 32)), version=2, state=0x7, epoch=3),
        app_instance_id=bytes(range(32, 48)), is_durable=True, is_persistent=True,
        durable_timeout_ms=60_000, locks=(LockRecord(0, 1 << 20, True),),
        is_replay_eligible=False, channel_sequence=1)


def disk_writes(directory: str) -> int:
    """Bytes written to the block device holding ``directory`` so far, from
    /sys/dev/block/M:m/stat (device-wide: other writers on the machine add
    noise; /proc/self/io write_bytes is not usable in this VM)."""
    st_dev = os.stat(directory).st_dev
    try:
        with open(f"/sys/dev/block/{os.major(st_dev)}:{os.minor(st_dev)}/stat") as file:
            return int(file.read().split()[6]) * 512
    except OSError:
        return 0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- commit rate and latency ----------------------------------------------------------------

async def _commit_run(engine_name: str, directory: str, concurrency: int, seconds: float):
    store = await LocalHandleStore.open(ENGINES[engine_name](directory))
    await asyncio.gather(*(store.create(sample_record(i))
                           for i in range(1000, 1000 + BACKGROUND_RECORDS)))
    records = [await store.create(sample_record(i + 1)) for i in range(concurrency)]
    before = store.stats()
    cpu_before = time.process_time()
    written_before = disk_writes(directory)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def committer(record):
        while time.perf_counter() < stop:
            started = time.perf_counter()
            record = await store.update(dataclasses.replace(record,
                                                            position=record.position + 1))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(committer(record) for record in records))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    after = store.stats()
    await store.commit_barrier()
    written = disk_writes(directory) - written_before
    await store.shutdown()
    batches = after.batches - before.batches
    return {"commits_per_s": len(latencies) / elapsed,
            "p50_us": percentile(latencies, 0.50) * 1e6,
            "p99_us": percentile(latencies, 0.99) * 1e6,
            "commits_per_fsync": (after.commits - before.commits) / max(1, batches),
            "cpu_us_per_commit": cpu / max(1, len(latencies)) * 1e6,
            "disk_bytes_per_commit": written / max(1, len(latencies))}


def commit_runs(base: str, engines, concurrencies, seconds: float, repeat: int) -> dict:
    raw: dict = {}
    for round_ in range(repeat):
        for concurrency in concurrencies:
            for name in engines:
                directory = tempfile.mkdtemp(dir=base)
                result = asyncio.run(_commit_run(name, directory, concurrency, seconds))
                shutil.rmtree(directory)
                raw.setdefault(f"{name}/{concurrency}", []).append(result)
                print(f"  round {round_ + 1} {name:>19} x{concurrency:<3} "
                      f"{result['commits_per_s']:8.0f}/s p50 {result['p50_us']:7.0f} µs "
                      f"p99 {result['p99_us']:7.0f} µs "
                      f"{result['commits_per_fsync']:5.1f}/fsync "
                      f"{result['cpu_us_per_commit']:4.0f} µs CPU "
                      f"{result['disk_bytes_per_commit']:6.0f} B/commit", flush=True)
    return raw


# --- the disk's floor -------------------------------------------------------------------------

def disk_floor(base: str, seconds: float) -> dict:
    """One 330-byte pwrite + fdatasync at a time: what a single committer cannot beat."""
    out = {}
    payload = b"x" * 330
    for mode in ("overwrite", "append"):
        path = os.path.join(base, f"floor-{mode}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        if mode == "overwrite":
            os.pwrite(fd, bytes(64 << 20), 0)
            os.fsync(fd)
        offset, times = 0, []
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            started = time.perf_counter()
            os.pwrite(fd, payload, offset)
            os.fdatasync(fd)
            times.append(time.perf_counter() - started)
            offset += len(payload)
        os.close(fd)
        os.unlink(path)
        out[mode] = {"p50_us": percentile(times, 0.5) * 1e6, "syncs_per_s": len(times) / seconds}
    out["overwrite, from the event loop via a writer thread"] = asyncio.run(
        _floor_via_thread(os.path.join(base, "floor-thread"), payload, seconds))
    return out


async def _floor_via_thread(path: str, payload: bytes, seconds: float) -> dict:
    """The same, awaited through run_in_executor: the thread hop every commit pays."""
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.pwrite(fd, bytes(64 << 20), 0)
    os.fsync(fd)

    def sync(offset: int) -> None:
        os.pwrite(fd, payload, offset)
        os.fdatasync(fd)

    offset, times = 0, []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        started = time.perf_counter()
        await loop.run_in_executor(executor, sync, offset)
        times.append(time.perf_counter() - started)
        offset += len(payload)
    executor.shutdown()
    os.close(fd)
    os.unlink(path)
    return {"p50_us": percentile(times, 0.5) * 1e6, "syncs_per_s": len(times) / seconds}


# --- encoding ---------------------------------------------------------------------------------

def _json_encode(record: PersistentOpen) -> bytes:
    def default(value):
        if isinstance(value, bytes):
            return value.hex()
        raise TypeError(type(value))
    return json.dumps(dataclasses.asdict(record), default=default).encode()


def encoding() -> dict:
    record = sample_record(0x1234_5678_9ABC)
    blob, text = encode(record), _json_encode(record)
    n = 20_000

    def per_call(fn, arg) -> float:
        started = time.perf_counter()
        for _ in range(n):
            fn(arg)
        return (time.perf_counter() - started) / n * 1e6

    return {"bytes": len(blob), "encode_us": per_call(encode, record),
            "decode_us": per_call(decode, blob), "json_bytes": len(text),
            "json_encode_us": per_call(_json_encode, record),
            "json_loads_only_us": per_call(json.loads, text)}


# --- recovery ---------------------------------------------------------------------------------

async def _fill(engine_name: str, directory: str, count: int) -> None:
    store = await LocalHandleStore.open(ENGINES[engine_name](directory))
    for start in range(1, count + 1, 2000):
        chunk = range(start, min(start + 2000, count + 1))
        created = await asyncio.gather(*(store.create(sample_record(i)) for i in chunk))
        await asyncio.gather(*(store.update(dataclasses.replace(r, channel_sequence=2))
                               for r in created))
    await store.shutdown()


async def _reopen(engine_name: str, directory: str) -> tuple[float, int]:
    started = time.perf_counter()
    store = await LocalHandleStore.open(ENGINES[engine_name](directory))
    elapsed = time.perf_counter() - started
    count = len(await store.traverse())
    await store.shutdown()
    return elapsed, count


def _engine_load(engine_name: str, directory: str) -> float:
    """The engine's part alone (read, replay, and for the log its compaction)."""
    engine = ENGINES[engine_name](directory)
    started = time.perf_counter()
    engine.load()
    elapsed = time.perf_counter() - started
    engine.close()
    return elapsed


def recovery(base: str, engines, count: int, repeat: int) -> dict:
    out = {}
    for name in engines:
        directory = tempfile.mkdtemp(dir=base)
        asyncio.run(_fill(name, directory, count))
        size = sum(f.stat().st_size for f in Path(directory).rglob("*") if f.is_file())
        times, engine_times = [], []
        for _ in range(repeat):
            engine_times.append(_engine_load(name, directory))
            elapsed, found = asyncio.run(_reopen(name, directory))
            assert found == count, (name, found)
            times.append(elapsed)
        shutil.rmtree(directory)
        out[name] = {"seconds": statistics.median(times),
                     "engine_seconds": statistics.median(engine_times), "bytes_on_disk": size}
        print(f"  recovery {name:>19}: {out[name]['seconds']:.2f} s for {count} records, "
              f"of which the engine {out[name]['engine_seconds']:.2f} s "
              f"({size / 1e6:.0f} MB on disk)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--recovery-records", type=int, default=100_000)
    parser.add_argument("--json", help="write the raw numbers here")
    args = parser.parse_args()
    engines = args.engines.split(",")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    base = tempfile.mkdtemp(prefix="store-bench-", dir=args.dir)
    try:
        print("encoding (one record):")
        enc = encoding()
        print(f"  ours {enc['bytes']} B, encode {enc['encode_us']:.1f} µs, decode "
              f"{enc['decode_us']:.1f} µs; JSON {enc['json_bytes']} B, encode "
              f"{enc['json_encode_us']:.1f} µs, json.loads alone "
              f"{enc['json_loads_only_us']:.1f} µs")
        print("disk floor (330 B pwrite + fdatasync, one at a time):")
        floor = disk_floor(base, args.seconds)
        for mode, row in floor.items():
            print(f"  {mode}: p50 {row['p50_us']:.0f} µs, {row['syncs_per_s']:.0f} syncs/s")
        print("commits (each line one run):")
        raw = commit_runs(base, engines, concurrencies, args.seconds, args.repeat)
        print("recovery:")
        rec = recovery(base, engines, args.recovery_records, args.repeat)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"\nmedians of {args.repeat} interleaved runs, {args.seconds:g} s each")
    print(f"{'engine':>19} {'N':>3} {'commits/s':>10} {'p50 µs':>8} {'p99 µs':>8} "
          f"{'per fsync':>9} {'CPU µs':>7} {'disk B':>7}")
    summary = {}
    for name in engines:
        for concurrency in concurrencies:
            runs = raw[f"{name}/{concurrency}"]
            row = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            summary[f"{name}/{concurrency}"] = row
            print(f"{name:>19} {concurrency:>3} {row['commits_per_s']:10.0f} "
                  f"{row['p50_us']:8.0f} {row['p99_us']:8.0f} {row['commits_per_fsync']:9.1f} "
                  f"{row['cpu_us_per_commit']:7.0f} {row['disk_bytes_per_commit']:7.0f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"encoding": enc, "floor": floor, "commits": raw, "summary": summary,
                       "recovery": rec, "args": vars(args)}, file, indent=1)


if __name__ == "__main__":
    main()
