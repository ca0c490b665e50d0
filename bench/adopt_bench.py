"""Adoption benchmark (not a test): how long a takeover's step 6 takes.

Issue 10's target: 10,000 persistent opens adopted in at most 2 s on this
machine.  The aggregate's store holds N persistent opens of N files (each
with an RWH lease and a byte-range lock, as a Hyper-V host leaves them);
``ClusterMember.adopt`` then reads the store, reopens and checks every file
((volume id, inode)), rebuilds each open with its lease and lock, restarts
every reconnect timer and commits the new disconnect times (one atomic
update), and brings the share online.  The time is from the adopt request to
its answer, the store's recovery (LogEngine.load) included.

  /opt/smbca/test-venv/bin/python bench/adopt_bench.py              # 10,000 opens, 3 runs
  /opt/smbca/test-venv/bin/python bench/adopt_bench.py --opens 1000 --repeat 5

Results (medians and raw) go to bench/results/adopt-bench-*.json.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smbca.auth import Authenticator, User, UserDatabase  # noqa: E402
from smbca.auth.legacy_crypto import nt_hash  # noqa: E402
from smbca.config import ListenAddress  # noqa: E402
from smbcad.cluster.member import ClusterMember  # noqa: E402
from smbcad.config import Config, ServerConfig, ShareConfig  # noqa: E402
from smbcad.config_cluster import AggregateConfig, ClusterConfig  # noqa: E402
from smbcad.metrics import SmbMetrics  # noqa: E402
from smbcad.server.server import SmbServer  # noqa: E402
from smbcad.store import (  # noqa: E402
    LeaseRecord, LocalHandleStore, LockRecord, LogEngine, PersistentOpen)
from smbcad.vfs import ShareFs  # noqa: E402


def make_server(base: Path) -> tuple[SmbServer, ClusterMember, Path]:
    mount = base / "aggr1"
    data = mount / "data"
    data.mkdir(parents=True, exist_ok=True)
    cluster = ClusterConfig(node_id=2, name="bench",
                            aggregates=(AggregateConfig("aggr1", str(mount), ()),))
    cfg = Config(server=ServerConfig(listen=(ListenAddress("127.0.0.1", 0),),
                                     state_dir=str(base / "state")),
                 shares=(ShareConfig("vms", str(data), ca=True, aggregate="aggr1"),),
                 cluster=cluster)
    users = UserDatabase.from_users([User("bench", nt_hash("bench"))])
    server = SmbServer(cfg, server_guid=cluster.derived_server_guid,
                       authenticator=Authenticator(users, server_name="SMBCA",
                                                   domain_name="WORKGROUP"),
                       metrics=SmbMetrics(), open_share_fs=ShareFs, node_id=2)
    return server, ClusterMember(server, cluster, str(base / "state")), data


async def fill(member: ClusterMember, data: Path, count: int) -> None:
    """N files and, in the aggregate's store, a persistent open of each."""
    with ShareFs(str(data)) as fs:
        records = []
        for index in range(count):
            name = f"vm{index:05d}.vhdx"
            (data / name).write_bytes(b"")
            info = fs.stat_path((name,))
            records.append(PersistentOpen(
                durable_file_id=(1 << 56) | (index + 1), create_guid=uuid.uuid4().bytes,
                client_guid=uuid.uuid4().bytes, owner_user="host$", owner_domain="CORP",
                share_name="vms", path=name, file_dev=info.device_id, file_ino=info.file_id,
                granted_access=0x0012019F, desired_access=0x0012019F, share_access=1,
                is_persistent=True, is_durable=True, durable_timeout_ms=60_000,
                disconnected_at_ms=None, oplock_level=0xFF,
                lease=LeaseRecord(uuid.uuid4().bytes, 2, 0x07, epoch=1),
                locks=(LockRecord(0, 4096, True),)))
    store = await LocalHandleStore.open(LogEngine(member.store_dir("aggr1")))
    for start in range(0, count, 1000):
        await asyncio.gather(*(store.create(record) for record in records[start:start + 1000]))
    await store.shutdown()


async def one_run(count: int, workdir: str) -> dict:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        server, member, data = make_server(Path(tmp))
        await fill(member, data, count)
        started = time.perf_counter()
        answer = await member.adopt("aggr1")
        adopt_s = time.perf_counter() - started
        assert answer["restored"] == count, answer
        for open_ in list(server.opens.by_persistent_id.values()):
            server.opens.stop_scavenger(open_)
        started = time.perf_counter()
        await member.release("aggr1", planned=True)
        release_s = time.perf_counter() - started
        return {"opens": count, "adopt_s": adopt_s, "release_s": release_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opens", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    runs = [asyncio.run(one_run(args.opens, args.dir)) for _ in range(args.repeat)]
    summary = {key: statistics.median(run[key] for run in runs)
               for key in ("adopt_s", "release_s")}
    print(f"{args.opens} persistent opens: adopt {summary['adopt_s']:.3f} s "
          f"({args.opens / summary['adopt_s']:.0f}/s), planned release "
          f"{summary['release_s']:.3f} s (medians of {args.repeat})")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"adopt-bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"args": vars(args), "runs": runs, "median": summary}, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
