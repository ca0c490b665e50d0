"""Large directories, smbd against smbcad (issue 14 item 5; not a test).

For each directory size (default 0, 10,000 and 100,000 files) both servers
get a directory of that many files (made locally, names not 8.3) and one
smbprotocol client per server, kept for the whole run, does:

- create: CREATE (FILE_CREATE) + CLOSE of new names;
- open hit: CREATE (FILE_OPEN) + CLOSE of existing names, exact case;
- open case: the same names upper-cased (a miss in the exact spelling: the
  case-insensitive lookup every CREATE of a new name also makes);
- list: one full QUERY_DIRECTORY enumeration with FileIdBothDirectoryInformation
  (what smbclient and Explorer ask for: 8.3 names included) and one with
  FileDirectoryInformation (none), 64 KiB pages.

The creates stay: the "0" directory holds ``--ops`` files per repetition by
the time it is opened and listed (its opens are of those files), and the
others grow by as many.  The open figures are per CREATE+CLOSE pair.

Each figure is the server's CPU per operation (schedstat run time of every
thread of every process in the server's session, ns resolution: robust on
this shared 2-core machine) and the client-side rate.  Servers are pinned to
CPU 0, this process to CPU 1, as in ``compare.py`` (whose client and server
helpers this reuses); sizes and servers are interleaved and repeated
(``--repeat``), medians shown.

  # as root, with samba installed (bash scripts/test.sh):
  /opt/smbca/test-venv/bin/python bench/bigdir_bench.py
  /opt/smbca/test-venv/bin/python bench/bigdir_bench.py --sizes 0,10000 --ops 200
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

from compare import CLIENT_CPU, SERVER_CPU, ProtoClient  # noqa: E402
from servers import start_server  # noqa: E402

PAGE_BYTES = 65536
FILE_ID_BOTH_DIRECTORY = 37
FILE_DIRECTORY = 1


def entry_name(index: int) -> str:
    return f"bench-file-{index:07d}-data.txt"


def populate(directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o777)
    for index in range(count):
        os.close(os.open(directory / entry_name(index), os.O_CREAT | os.O_WRONLY, 0o666))


def server_cpu_ns(session_id: int) -> int:
    """Run time of every thread of every live process in the server's session."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[3]) != session_id:     # field 6: session
                continue
            for task in os.listdir(f"/proc/{pid}/task"):
                total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


class Client(ProtoClient):
    def create_close(self, name: str, disposition: int) -> None:
        self.open(name, disposition).close()

    def list_all(self, directory: str, info_class: int) -> int:
        """One full enumeration; returns the bytes of entries received."""
        from smbprotocol.exceptions import SMBResponseException
        from smbprotocol.open import (CreateDisposition, CreateOptions, DirectoryAccessMask,
                                      FileAttributes, ImpersonationLevel, Open, ShareAccess)
        from smbprotocol.open import SMB2QueryDirectoryResponse
        handle = Open(self.tree, directory)
        handle.create(ImpersonationLevel.Impersonation,
                      DirectoryAccessMask.FILE_LIST_DIRECTORY | DirectoryAccessMask.SYNCHRONIZE,
                      FileAttributes.FILE_ATTRIBUTE_DIRECTORY,
                      ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                      CreateDisposition.FILE_OPEN, CreateOptions.FILE_DIRECTORY_FILE)
        received = 0
        try:
            while True:
                request, _ = handle.query_directory("*", info_class, max_output=PAGE_BYTES,
                                                    send=False)
                sent = self.connection.send(request, self.session.session_id,
                                            self.tree.tree_connect_id)
                try:
                    response = self.connection.receive(sent)
                except SMBResponseException as exc:
                    if exc.status == 0x80000006:        # STATUS_NO_MORE_FILES
                        return received
                    raise
                body = SMB2QueryDirectoryResponse()
                body.unpack(response["data"].get_value())
                received += len(body["buffer"].get_value())
        finally:
            handle.close()


def timed(server, work, count: int) -> tuple[float, float]:
    """(server CPU µs per operation, operations per second) of ``work()``."""
    before_cpu = server_cpu_ns(server.pid)
    start = time.perf_counter()
    work()
    elapsed = time.perf_counter() - start
    cpu = server_cpu_ns(server.pid) - before_cpu
    return cpu / 1000 / count, count / elapsed


def run_size(server, client: Client, size: int, ops: int, repetition: int) -> dict:
    from smbprotocol.open import CreateDisposition
    directory = f"d{size}"
    opened = [f"{directory}\\{entry_name(i * max(1, size // ops))}" for i in range(min(ops, size))]
    if not opened:                      # an empty directory: open what this run creates
        opened = [f"{directory}\\new-{repetition}-{i}.txt" for i in range(ops)]
    results = {}
    names = [f"{directory}\\new-{repetition}-{i}.txt" for i in range(ops)]
    results["create"] = timed(server, lambda: [client.create_close(n, CreateDisposition.FILE_CREATE)
                                               for n in names], ops)
    results["open hit"] = timed(server, lambda: [client.create_close(n, CreateDisposition.FILE_OPEN)
                                                 for n in opened], len(opened))
    upper = [n.upper() for n in opened]
    results["open case"] = timed(server, lambda: [client.create_close(n, CreateDisposition.FILE_OPEN)
                                                  for n in upper], len(upper))
    results["list both"] = timed(server, lambda: client.list_all(directory, FILE_ID_BOTH_DIRECTORY), 1)
    results["list plain"] = timed(server, lambda: client.list_all(directory, FILE_DIRECTORY), 1)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")],
                        default=[0, 10_000, 100_000])
    parser.add_argument("--ops", type=int, default=300, help="creates and opens per figure")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--servers", type=lambda v: v.split(","), default=["smbd", "smbcad"])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and "smbd" in args.servers:
        parser.error("run as root (smbd needs it)")
    pinned = (os.cpu_count() or 1) >= 2
    if pinned:
        os.sched_setaffinity(0, {CLIENT_CPU})
    work = Path(tempfile.mkdtemp(prefix="smbca-bigdir-"))
    servers, clients = {}, {}
    raw: dict = {}
    try:
        for kind in args.servers:
            servers[kind] = start_server(kind, work / kind, taskset=SERVER_CPU if pinned else None)
            for size in args.sizes:
                populate(Path(servers[kind].share.path) / f"d{size}", size)
            clients[kind] = Client(servers[kind], "signed")
            print(f"{kind}: pid {servers[kind].pid}, port {servers[kind].port}", flush=True)
        for repetition in range(args.repeat):
            order = args.servers if repetition % 2 == 0 else list(reversed(args.servers))
            for size in args.sizes:
                for kind in order:
                    figures = run_size(servers[kind], clients[kind], size, args.ops, repetition)
                    for op, (cpu, rate) in figures.items():
                        raw.setdefault(f"{op} @{size}", {}).setdefault(kind, []).append((cpu, rate))
                        print(f"  [{repetition + 1}/{args.repeat}] {op:10} {size:>7} {kind:7}"
                              f" {cpu:10.1f} µs CPU/op {rate:10.1f} ops/s", flush=True)
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    header = f"{'operation @ files':22}" + "".join(f" {k + ' µs/op':>14} {k + ' op/s':>12}"
                                                    for k in args.servers)
    print("\n" + header + "\n" + "-" * len(header))
    for name, by_server in raw.items():
        medians = {kind: (statistics.median(v[0] for v in values),
                          statistics.median(v[1] for v in values))
                   for kind, values in by_server.items()}
        rows.append({"bench": name, "median": medians})
        print(f"{name:22}" + "".join(f" {medians[k][0]:14.1f} {medians[k][1]:12.1f}"
                                     for k in args.servers if k in medians))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out / f"bigdir-{stamp}.json"
    out.write_text(json.dumps({"when": stamp, "params": {k: str(v) for k, v in vars(args).items()},
                               "pinned": pinned, "summary": rows, "raw": raw}, indent=2) + "\n")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
