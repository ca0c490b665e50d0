"""Hostile loads for the soak benchmark (issue 17 "How it is shown"): what the
fuzzer did to the server, from up to ~1,000 connections at once, each kind a
loop of asyncio "actors" until a deadline.

  churn       connect, NEGOTIATE, sometimes the first SESSION_SETUP leg, drop
  malformed   garbage frames, bad lengths, mutated requests of every command,
              compounds cut half-way; then drop
  slowloris   a NEGOTIATE sent one byte a second (the auth deadline ends it)
  half        a frame header announcing 120 KiB, a few bytes of it, then
              nothing: held until the server closes it
  flood       logged in, ECHO and QUERY_INFO pipelined as deep as the credits
              allow, responses read as they come
  bigdir      logged in, lists a 10,000-entry directory from the start again
              and again, and opens names that are not there (each a
              case-insensitive scan of the directory)
  sameguid    eight connections NEGOTIATE with one ClientGuid, log in, drop

Each kind gets its own loopback source addresses (127.0.0.x), at most 60
connections per address, so server.max_connections_per_client (64) never
refuses the load (one address over it is tested by the unit tests).

Run alone (the soak runs it in a child process so that the well-behaved
client does not share its interpreter):

  python bench/hostile_loads.py --port 4450 --duration 60 --scale 1.0
"""

import argparse
import asyncio
import os
import random
import struct
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from smb_async import ECHO_BODY, FILE_DIRECTORY_FILE, AsyncClient  # noqa: E402
from smbcad.proto.constants import Command  # noqa: E402
from tests.unit.server import harness  # noqa: E402

BIG_DIR = "big"
BIG_DIR_ENTRIES = 10_000
PER_ADDRESS = 60
# Actors of each kind at --scale 1.0: 1,000 connections at most together
# (half and slowloris hold theirs; the others come and go).
MIX = {"half": 400, "slowloris": 200, "churn": 120, "malformed": 80, "flood": 150,
       "bigdir": 2, "sameguid": 1}
_COMMANDS = [c for c in range(Command.SESSION_SETUP, Command.OPLOCK_BREAK + 1) if c != Command.CANCEL]


class Counters:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def make_big_directory(share: Path) -> None:
    big = share / BIG_DIR
    big.mkdir(exist_ok=True)
    for index in range(BIG_DIR_ENTRIES):
        (big / f"entry-{index:05d}-{uuid.UUID(int=index).hex[:12]}.dat").touch()


async def _churn(port, source, counters):
    client = await AsyncClient.connect(port, source)
    try:
        await client.negotiate()
        if random.random() < 0.5:
            import spnego
            token = spnego.client(harness.USER, harness.PASSWORD, hostname="X",
                                  protocol="negotiate").step()
            client.send(harness.header(Command.SESSION_SETUP, 1) + struct.pack(
                "<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(token), 0) + token)
            await client.answer()
        counters.add("churn")
    finally:
        client.close()


async def _malformed(port, source, counters):
    client = await AsyncClient.connect(port, source)
    try:
        kind = random.randrange(6)
        if kind == 0:
            client.writer.write(os.urandom(random.randrange(1, 200)))
        elif kind == 1:
            client.writer.write(b"\x81\x00\x00\x10" + bytes(16))
        else:
            await client.negotiate()
            if kind == 2:                              # a frame cut half-way
                client.writer.write(struct.pack(">I", 200) + harness.header(Command.ECHO, 1))
            elif kind == 3:                            # a compound's second member cut
                first = bytearray(harness.header(Command.ECHO, 1) + ECHO_BODY + bytes(4))
                struct.pack_into("<I", first, 20, len(first))
                client.send(bytes(first) + harness.header(Command.ECHO, 2)[:30])
            else:                                      # a mutated request of any command
                body = bytearray(os.urandom(random.randrange(0, 160)))
                command = random.choice(_COMMANDS)
                client.send(harness.header(command, 1) + bytes(body))
        await client.writer.drain()
        await asyncio.wait_for(client.reader.read(65536), 0.5)
        counters.add("malformed")
    except (asyncio.TimeoutError, ConnectionError, OSError):
        counters.add("malformed")
    finally:
        client.close()


async def _slowloris(port, source, counters):
    client = await AsyncClient.connect(port, source)
    msg = harness.header(Command.NEGOTIATE, 0) + harness.negotiate_body()
    frame = struct.pack(">I", len(msg)) + msg
    try:
        for byte in frame:
            client.writer.write(bytes((byte,)))
            await client.writer.drain()
            if client.reader.at_eof():
                break
            await asyncio.sleep(1.0)
    except (ConnectionError, OSError):
        pass
    finally:
        counters.add("slowloris")
        client.close()


async def _half(port, source, counters):
    client = await AsyncClient.connect(port, source)
    try:
        await client.negotiate()
        client.writer.write(struct.pack(">I", 120 * 1024) + harness.header(Command.ECHO, 1))
        await client.writer.drain()
        await client.reader.read(1)                    # until the server closes it
    except (ConnectionError, OSError):
        pass
    finally:
        counters.add("half")
        client.close()


async def _flood(port, source, counters, seconds: float):
    client = await (await AsyncClient.connect(port, source)).login()
    until = time.monotonic() + seconds
    in_flight = 0
    query_root = None
    try:
        handle = await client.create("", options=FILE_DIRECTORY_FILE, disposition=1)
        if isinstance(handle, tuple):
            query_root = struct.pack("<HBBIIII", 41, 1, 4, 1024, 0, 0, 0) + struct.pack(
                "<QQ", *handle)
        while time.monotonic() < until:
            while client.credits > 1 and in_flight < 64:
                if query_root is not None and client.message_id % 2:
                    client.send_request(Command.QUERY_INFO, query_root)
                else:
                    client.send_request(Command.ECHO, ECHO_BODY)
                in_flight += 1
            await client.writer.drain()
            await client.answer()
            in_flight -= 1
            counters.add("flood_requests")
    finally:
        client.close()


async def _bigdir(port, source, counters, seconds: float):
    client = await (await AsyncClient.connect(port, source)).login()
    until = time.monotonic() + seconds
    try:
        big = await client.create(BIG_DIR, options=FILE_DIRECTORY_FILE, disposition=1)
        while time.monotonic() < until:
            counters.add("bigdir_pages", await client.list_directory(big))
            for _ in range(20):                        # case-insensitive misses
                status = await client.create(f"{BIG_DIR}\\Missing-{random.randrange(1 << 30)}",
                                             disposition=1)
                counters.add("bigdir_misses", 1 if isinstance(status, int) else 0)
    finally:
        client.close()


async def _sameguid(port, source, counters):
    guid = uuid.uuid4().bytes
    clients = [await AsyncClient.connect(port, source) for _ in range(8)]
    try:
        for client in clients:
            await client.negotiate(client_guid=guid)
        for client in clients:
            await client.session_setup()
        counters.add("sameguid", len(clients))
    finally:
        for client in clients:
            client.close()


async def _actor(kind, index, port, deadline, counters):
    source = f"127.0.0.{10 + _address_slot(kind, index)}"
    while time.monotonic() < deadline:
        try:
            if kind in ("flood", "bigdir"):
                await _flood(port, source, counters, 20.0) if kind == "flood" else \
                    await _bigdir(port, source, counters, 20.0)
            else:
                await {"churn": _churn, "malformed": _malformed, "slowloris": _slowloris,
                       "half": _half, "sameguid": _sameguid}[kind](port, source, counters)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            counters.add(f"{kind}_errors")
            await asyncio.sleep(0.1)


_SLOT_BASE: dict[str, int] = {}


def _address_slot(kind: str, index: int) -> int:
    if not _SLOT_BASE:
        base = 0
        for name, count in MIX.items():
            _SLOT_BASE[name] = base
            base += -(-max(count, 8) // PER_ADDRESS)
    return _SLOT_BASE[kind] + index // PER_ADDRESS


async def run(port: int, duration_s: float, scale: float, kinds=None) -> dict:
    deadline = time.monotonic() + duration_s
    counters = Counters()
    actors = []
    for kind, count in MIX.items():
        if kinds and kind not in kinds:
            continue
        for index in range(max(1, round(count * scale))):
            actors.append(asyncio.create_task(_actor(kind, index, port, deadline, counters)))
            await asyncio.sleep(0.002)                   # ramp up, not one SYN storm
    await asyncio.wait(actors, timeout=duration_s + 40)
    for task in actors:
        task.cancel()
    return counters.counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--kinds", default="", help="comma-separated subset of " + ",".join(MIX))
    args = parser.parse_args(argv)
    kinds = set(filter(None, args.kinds.split(",")))
    counts = asyncio.run(run(args.port, args.duration, args.scale, kinds))
    print(" ".join(f"{key}={value}" for key, value in sorted(counts.items())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
