"""A handle-store writer for the crash tests, run as a subprocess and SIGKILLed.

    python store_crash_child.py ENGINE PATH [--kill-at STEP] [--compact-every-write]

ENGINE is ``log`` or ``sqlite``.  Sixteen workers each own eight
DurableFileIds and loop forever over create / update / close of them.  Before
each call a worker prints ``S <id> <crc>`` (``<crc>``: crc32 of the record as
it will be stored, or ``closed``) and after the call returns ``A <id>``, both
flushed, so the parent knows which changes were acknowledged and which were
in flight at the kill.

``--kill-at STEP`` (log engine) makes the process SIGKILL itself when a
compaction reaches STEP; with ``--arm-after N`` it arms only after N
acknowledged commits (so the open-time compaction of an existing store is hit
when N is 0).  ``--compact-every-write`` makes every commit compact.
"""

import argparse
import asyncio
import dataclasses
import os
import random
import signal
import sys
import zlib

from smbcad.store import (
    LeaseRecord, LocalHandleStore, LockRecord, LogEngine, PersistentOpen, SqliteEngine, encode)


def record(key: int, step: int) -> PersistentOpen:
    return PersistentOpen(
        durable_file_id=key, create_guid=key.to_bytes(16, "little"),
        client_guid=b"C" * 16, owner_user="user", owner_domain="DOMAIN", share_name="ca",
        path=f"vm{key}/disk.vhdx", file_dev=1, file_ino=key, vfs_cookie=step.to_bytes(8, "little"),
        granted_access=0x12019F, is_durable=True, is_persistent=True, durable_timeout_ms=60_000,
        lease=LeaseRecord(key.to_bytes(16, "big"), 2, 7, step & 0xFFFF),
        locks=tuple(LockRecord(i * 4096, 4096, True) for i in range(step % 4)),
        position=step)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine")
    parser.add_argument("path")
    parser.add_argument("--kill-at")
    parser.add_argument("--arm-after", type=int, default=50)
    parser.add_argument("--compact-every-write", action="store_true")
    args = parser.parse_args()
    acked = 0

    def on_step(name: str) -> None:
        if name == args.kill_at and acked >= args.arm_after:
            os.kill(os.getpid(), signal.SIGKILL)

    if args.engine == "log":
        options = {"compact_min_bytes": 0, "compact_ratio": 0.0} if args.compact_every_write \
            else {}
        engine = LogEngine(args.path, preallocate_bytes=64 << 10, on_compaction_step=on_step,
                           **options)
    else:
        engine = SqliteEngine(args.path, checkpoint_pages=50)
    store = await LocalHandleStore.open(engine)
    print("READY", flush=True)

    async def worker(index: int) -> None:
        nonlocal acked
        rng = random.Random(index)
        keys = [index * 1000 + i + 1 for i in range(8)]
        live: dict[int, PersistentOpen] = {r.durable_file_id: r for r in await store.traverse()
                                           if r.durable_file_id in keys}
        step = 0
        while True:
            key = rng.choice(keys)
            step += 1
            current = live.get(key)
            if current is None:
                new = dataclasses.replace(record(key, step), record_version=1)
                print(f"S {key} {zlib.crc32(encode(new))}", flush=True)
                live[key] = await store.create(new)
            elif rng.random() < 0.15:
                print(f"S {key} closed", flush=True)
                await store.close(key)
                del live[key]
            else:
                new = dataclasses.replace(record(key, step),
                                          record_version=current.record_version + 1)
                print(f"S {key} {zlib.crc32(encode(new))}", flush=True)
                live[key] = await store.update(dataclasses.replace(
                    new, record_version=current.record_version))
            acked += 1
            print(f"A {key}", flush=True)

    await asyncio.gather(*(worker(i) for i in range(16)))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
