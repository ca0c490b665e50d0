"""Server CPU per request through smbcad's real connection core, no network
(not a test): ECHO, CREATE+CLOSE, delete-on-close, open+read+close and
create+write+close, signed as smbclient signs them (AES-GMAC, 3.1.1).

The requests are built and signed outside the timed part; what is timed is
``Connection.receive_frame`` up to the response handed to the sink, i.e.
decode, verify, dispatch, the command, encode and sign, in this thread's
CPU time (the machine is shared).  Socket and event loop costs are not in
it (bench/compare.py measures those, against smbd).

  PYTHONPATH=. /opt/smbca/test-venv/bin/python bench/pipeline_profile.py
  PYTHONPATH=. /opt/smbca/test-venv/bin/python bench/pipeline_profile.py --profile delete
"""

import argparse
import asyncio
import cProfile
import pstats
import struct
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from smbcad.openstate.db import OpenStateDb  # noqa: E402
from smbcad.openstate.table import MemoryOpenState  # noqa: E402
from smbcad.proto.constants import Command, HeaderFlags  # noqa: E402
from tests.unit.proto import wire  # noqa: E402
from tests.unit.server import harness  # noqa: E402

DELETE = 0x00010000
DELETE_ON_CLOSE = 0x00001000
NON_DIRECTORY = 0x00000040
READ_ACCESS = 0x00120089
OPEN, OVERWRITE_IF = 1, 5


class Driver:
    """A connected harness client whose requests are timed one by one."""

    def __init__(self, client: harness.Client) -> None:
        self.client = client
        self.server_seconds = 0.0

    async def request(self, command: int, body: bytes) -> bytes:
        client = self.client
        mid = client.message_id
        client.message_id += 1
        msg = bytearray(harness.header(command, mid, client.session_id, client.tree_id,
                                       HeaderFlags.SIGNED) + body)
        client.signer.sign(msg)
        before = len(client.sink.frames)
        start = time.thread_time()
        await client.conn.receive_frame(msg)
        self.server_seconds += time.thread_time() - start
        (reply,) = client.sink.frames[before:]
        status = harness.status_of(reply)
        if status:
            raise RuntimeError(f"command {command:#x}: status {status:#010x}")
        return reply

    async def create(self, name: str, **options) -> bytes:
        reply = await self.request(Command.CREATE, wire.create_request(name, **options))
        return reply[64 + 64:64 + 80]

    async def close(self, file_id: bytes) -> None:
        await self.request(Command.CLOSE, struct.pack("<HHI", 24, 0, 0) + file_id)


async def echo(driver: Driver, share: Path, index: int) -> None:
    await driver.request(Command.ECHO, struct.pack("<HH", 4, 0))


async def create_close(driver: Driver, share: Path, index: int) -> None:
    await driver.close(await driver.create("existing.bin", disposition=OPEN,
                                           access=READ_ACCESS, options=NON_DIRECTORY))


async def delete(driver: Driver, share: Path, index: int) -> None:
    (share / f"d{index}.bin").write_bytes(b"x" * 4096)
    await driver.close(await driver.create(f"d{index}.bin", disposition=OPEN,
                                           access=DELETE | 0x80,
                                           options=NON_DIRECTORY | DELETE_ON_CLOSE))


async def open_read_close(driver: Driver, share: Path, index: int) -> None:
    file_id = await driver.create("existing.bin", disposition=OPEN, access=READ_ACCESS,
                                  options=NON_DIRECTORY)
    await driver.request(Command.READ, wire.read_request(0, 0, 4096, 0)[:16] + file_id
                         + wire.read_request(0, 0, 4096, 0)[32:])
    await driver.close(file_id)


async def create_write_close(driver: Driver, share: Path, index: int) -> None:
    file_id = await driver.create(f"w{index}.bin", disposition=OVERWRITE_IF,
                                  options=NON_DIRECTORY)
    body = wire.write_request(0, 0, 0, b"y" * 4096)
    await driver.request(Command.WRITE, body[:16] + file_id + body[32:])
    await driver.close(file_id)


OPERATIONS = {"echo": echo, "create_close": create_close, "delete": delete,
              "open_read_close": open_read_close, "create_write_close": create_write_close}


async def run(operation, driver: Driver, share: Path, count: int) -> float:
    for index in range(count // 10):          # warm-up, not counted
        await operation(driver, share, -1 - index)
    driver.server_seconds = 0.0
    for index in range(count):
        await operation(driver, share, index)
    return driver.server_seconds / count * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--profile", choices=sorted(OPERATIONS),
                        help="cProfile this operation (cumulative, top 40)")
    parser.add_argument("--pstats", type=Path, help="write the profile's stats here")
    parser.add_argument("--open-state", choices=("memory", "lmdb"), default="memory",
                        help="share modes in process memory (one worker, as smbcad runs "
                             "today) or in LMDB (several workers, docs/multicore.md)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pipeline-") as scratch:
        share, state = Path(scratch) / "share", Path(scratch) / "state"
        share.mkdir()
        state.mkdir()
        (share / "existing.bin").write_bytes(b"z" * 4096)
        open_state = (MemoryOpenState() if args.open_state == "memory"
                      else OpenStateDb(str(state / "openstate"), create_empty=True))
        server = harness.make_server(str(share), str(state), open_state=open_state)
        client = harness.connected_client(server)
        driver = Driver(client)
        names = [args.profile] if args.profile else list(OPERATIONS)
        for name in names:
            if args.profile:
                profiler = cProfile.Profile(time.thread_time)   # CPU time: the box is shared
                profiler.enable()
            per_op = asyncio.run(run(OPERATIONS[name], driver, share, args.count))
            if args.profile:
                profiler.disable()
                stats = pstats.Stats(profiler).sort_stats("cumulative")
                if args.pstats:
                    stats.dump_stats(args.pstats)
                stats.print_stats(40)
            print(f"{name:20} {per_op:8.1f} µs server CPU per operation", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
