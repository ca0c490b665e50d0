"""Where a lone mirrored commit's time goes, hop by hop (not a test; issue 10:
"target <= 1.3x the local-only latency").

Runs lone commits (one coroutine updating one record) on a MirroredEngine
whose partner is a second process on 127.0.0.1, as ``mirror_bench.py`` does,
and timestamps named points on both sides with ``time.perf_counter`` (on
Linux CLOCK_MONOTONIC, one clock for both processes).  The points are
wrappers put around the functions below at run time (so the figures include
a wrapper's ~1 µs each); then the same commits on a local-only LogEngine for
the reference.  Prints, per point, the median time since the caller's
``await`` started, and the median of each hop.

  python3 bench/mirror_hops.py --pin                       # partner on CPU 1
  python3 bench/mirror_hops.py --pin --partner-dir /dev/shm
"""

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mirror_bench import AGG, parse_partner_args, record  # noqa: E402

from smbcad.cluster import aggregate_state as ags  # noqa: E402
from smbcad.cluster import mirror_core, mirror_link, mirror_proto, mirror_wire  # noqa: E402
from smbcad.cluster import mirrored_engine, replica  # noqa: E402
from smbcad.store import LocalHandleStore, LogEngine  # noqa: E402
from smbcad.store import local as local_store  # noqa: E402

_EVENTS: list[tuple[str, float]] = []
_now = time.perf_counter


def _mark(name: str) -> None:
    _EVENTS.append((name, _now()))


def _probe(owner, attribute: str, before: str | None = None, after: str | None = None,
           only=None) -> None:
    """Wrap ``owner.attribute`` to mark ``before``/``after`` it runs (when
    ``only(args)`` says so)."""
    original = getattr(owner, attribute)

    def probed(*args, **kwargs):
        chosen = only is None or only(args)
        if before and chosen:
            _mark(before)
        result = original(*args, **kwargs)
        if after and chosen:
            _mark(after)
        return result
    setattr(owner, attribute, probed)


def _is(kind):
    return lambda args: isinstance(args[1], kind)


def probe_primary() -> None:
    _probe(local_store.LocalHandleStore, "_write", before="flusher")
    _probe(mirror_core.PrimaryMirror, "submit", before="begin")
    _probe(mirror_wire.MirrorWire, "send", before="append send", after="append sent",
           only=_is(mirror_proto.Append))
    _probe(mirrored_engine._Batch, "write_local", before="local write", after="local durable")
    _probe(mirrored_engine.MirroredEngine, "_finish", before="finish")
    _probe(mirror_wire.MirrorWire, "_receive", before="ack recv")
    _probe(mirrored_engine.MirroredEngine, "on_message", before="ack parsed")
    _probe(mirrored_engine, "_resolve", before="resolved")


def probe_replica() -> None:
    _probe(mirror_wire.MirrorWire, "_receive", before="append recv")
    _probe(mirror_link.MirrorLink, "wire_events", before="append parsed")
    _probe(replica.ReplicaStore, "write", before="replica write", after="replica durable")
    _probe(mirror_wire.MirrorWire, "send", before="ack send", after="ack sent",
           only=_is(mirror_proto.Ack))


async def replica_main(state_dir: str, key_hex: str, cpu: str) -> None:
    if cpu != "-":
        os.sched_setaffinity(0, {int(cpu)})
    probe_replica()
    link = mirror_link.MirrorLink(node_id="b", cluster_key=bytes.fromhex(key_hex),
                                  incarnation=1, listen=("127.0.0.1", 0),
                                  peer=("127.0.0.1", 9), peer_node_id="a")
    link.register(await mirror_link.ReplicaEndpoint.open(state_dir, AGG, link))
    await link.start()
    print(f"PORT {link.listen[1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await link.stop()
    Path(state_dir + ".events").write_text(json.dumps(_EVENTS))


async def lone_commits(store, commits: int, warmup: int = 200) -> list[tuple[str, float]]:
    current = await store.create(record(1))
    for _ in range(warmup):
        current = await store.update(dataclasses.replace(current, file_attributes=0x20))
    _EVENTS.clear()
    for _ in range(commits):
        _mark("call")
        current = await store.update(dataclasses.replace(current, file_attributes=0x20))
        _mark("answered")
    return list(_EVENTS)


async def primary_main(directory: str, key: bytes, port: int, commits: int):
    state, mount = os.path.join(directory, "a-state"), os.path.join(directory, "a-mount")
    ags.commit_adoption(state, mount, ags.load_for_adoption(state, AGG, mount))
    loop = asyncio.get_running_loop()
    link = mirror_link.MirrorLink(node_id="a", cluster_key=key, incarnation=1,
                                  listen=("127.0.0.1", 0), peer=("127.0.0.1", port),
                                  peer_node_id="b")
    engine = mirrored_engine.MirroredEngine(state_dir=state, aggregate=AGG,
                                            mount_point=mount, link=link, loop=loop)
    await link.start()
    store = await LocalHandleStore.open(engine)
    try:
        while not engine.status().in_sync:
            await asyncio.sleep(0.01)
        return await lone_commits(store, commits)
    finally:
        await store.shutdown()
        await link.stop()


async def local_main(directory: str, commits: int):
    engine = LogEngine(os.path.join(directory, "local"))
    _probe(engine, "write", before="local write", after="local durable")
    store = await LocalHandleStore.open(engine)
    try:
        return await lone_commits(store, commits)
    finally:
        await store.shutdown()


def per_commit(events: list[tuple[str, float]], start: str) -> list[dict[str, float]]:
    """Split a side's events into commits, each starting at ``start`` (the
    first occurrence of a name within a commit counts)."""
    commits: list[dict[str, float]] = []
    for name, at in events:
        if name == start:
            commits.append({})
        if commits and name not in commits[-1]:
            commits[-1][name] = at
    return commits


def show(title: str, rows: list[dict[str, float]], points: list[str]) -> None:
    """Each point's median time since ``call``, in that order, then the hops
    between consecutive points."""
    print(title)
    medians = {}
    for point in points:
        values = sorted(row[point] - row["call"] for row in rows if point in row)
        if len(values) >= len(rows) // 2:
            medians[point] = (statistics.median(values), values)
    ordered = sorted(medians, key=lambda point: medians[point][0])
    for point in ordered:
        median, values = medians[point]
        print(f"  {point:18} {median * 1e6:7.0f} µs "
              f"(p10 {values[len(values) // 10] * 1e6:5.0f}, "
              f"p90 {values[9 * len(values) // 10] * 1e6:5.0f})")
    print("  hops (median of each commit's difference):")
    for first, second in zip(ordered, ordered[1:]):
        values = [row[second] - row[first] for row in rows if first in row and second in row]
        print(f"    {first:>16} -> {second:18} {statistics.median(values) * 1e6:7.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=1000)
    args = parse_partner_args(parser, replica_main)
    if args is None:
        return
    key = secrets.token_bytes(32)
    directory = tempfile.mkdtemp(prefix="mirror-hops-")
    partner = tempfile.mkdtemp(prefix="mirror-hops-b-", dir=args.partner_dir) \
        if args.partner_dir else directory
    state_b = os.path.join(partner, "b-state")
    try:
        local = asyncio.run(local_main(directory, args.commits))
        proc = subprocess.Popen([sys.executable, __file__, "--replica", state_b, key.hex(),
                                 "1" if args.pin else "-"], stdout=subprocess.PIPE, text=True)
        try:
            port = int(proc.stdout.readline().split()[1])
            probe_primary()
            mine = asyncio.run(primary_main(directory, key, port, args.commits))
        finally:
            proc.terminate()
            proc.wait()
            proc.stdout.close()
        theirs = [tuple(event) for event in json.loads(Path(state_b + ".events").read_text())]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(partner, ignore_errors=True)
    show("local only", per_commit(local, "call"), ["call", "local write", "local durable",
                                                   "answered"])
    # The partner's events of commit i follow the APPEND of commit i: merge both
    # sides by commit, counting from the end (the partner also saw the warm-up).
    a_rows = per_commit(mine, "call")
    b_rows = per_commit(theirs, "append recv")
    b_rows = [row for row in b_rows if "replica write" in row][-len(a_rows):]
    rows = [{**b, **a} for a, b in zip(a_rows[-len(b_rows):], b_rows)]
    show("mirrored (primary and partner on one clock)", rows, [
        "call", "flusher", "begin", "append send", "append sent", "append recv",
        "append parsed", "replica write", "local write", "replica durable", "ack send",
        "ack sent", "ack recv", "ack parsed", "local durable", "finish", "resolved",
        "answered"])


if __name__ == "__main__":
    main()
