"""Multichannel benchmark (issue 13, "How it is shown"; not a test): sequential
write then read of one file through one channel against four channels of one
session, interleaved in one run.

One smbcad (pinned to CPU 0) listens on 127.0.0.1 to 127.0.0.4; the client
(this process, pinned to CPU 1) sets up a session on 127.0.0.1 and, for the
four-channel arm, binds three more connections from the other addresses
([MS-SMB2] 3.3.5.5.2: SESSION_SETUP with the BINDING flag, signed, its own
preauth hash and channel signing key).  The file is written and read in
``--io-kib`` requests with ``--depth`` of them in flight in total, spread
round-robin over the channels; every request is signed (AES-GMAC).  Figures
are MiB/s, the median of ``--rounds`` rounds per arm.

  /opt/smbca/test-venv/bin/python bench/multichannel_bench.py
  /opt/smbca/test-venv/bin/python bench/multichannel_bench.py --size-mib 512 --rounds 5

On one host both ends share the loopback and two cores, so this shows what
channels cost or give the server itself (one event loop), not a NIC's worth.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path

import spnego

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "interop"))
sys.path.insert(0, str(HERE))

from servers import Share, start_smbcad  # noqa: E402
from smb_async import STATUS_MORE_PROCESSING, AsyncClient, status_of  # noqa: E402
from smbcad import crypto  # noqa: E402
from smbcad.proto.constants import Command, HeaderFlags  # noqa: E402
from tests.unit.proto import wire  # noqa: E402
from tests.unit.server import harness  # noqa: E402

SERVER_CPU, CLIENT_CPU = "0", 1
ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
BINDING = 0x01
AES_GMAC = 2
CREDIT_BYTES = 65536


async def _bind(first: AsyncClient, port: int, source: str) -> AsyncClient:
    """A new connection from ``source`` bound to ``first``'s session."""
    channel = await AsyncClient.connect(port, source=source, host=source)
    await channel.negotiate(client_guid=first.client_guid)
    ntlm = spnego.client(harness.USER, harness.PASSWORD, hostname="SMBCA", protocol="negotiate")
    token = ntlm.step()
    preauth = channel.preauth
    while True:
        body = struct.pack("<HBBIIHHQ", 25, BINDING, 1, 0, 0, 88, len(token), 0) + token
        msg = bytearray(harness.header(Command.SESSION_SETUP, channel.message_id,
                                       first.session_id, flags=HeaderFlags.SIGNED) + body)
        first.signer.sign(msg)
        channel.message_id += 1
        channel.credits -= 1
        preauth = crypto.preauth_next(preauth, msg)
        channel.send(bytes(msg))
        reply = await channel.answer()
        if status_of(reply) != STATUS_MORE_PROCESSING:
            break
        preauth = crypto.preauth_next(preauth, reply)
        offset, length = struct.unpack_from("<HH", reply, 64 + 4)
        token = ntlm.step(reply[offset:offset + length])
    if status_of(reply):
        raise ConnectionError(f"bind from {source}: 0x{status_of(reply):08x}")
    channel.session_id, channel.tree_id = first.session_id, first.tree_id
    key = crypto.derive_signing_key(0x0311, ntlm.session_key, preauth)
    channel.signer = crypto.make_signer(AES_GMAC, key)
    return channel


async def _pipeline(channel: AsyncClient, requests, depth: int, charge: int) -> None:
    """Send ``requests`` (command, body) keeping ``depth`` in flight, within
    the credits granted; every answer must be a success."""
    in_flight = 0
    pending = iter(requests)
    exhausted = False
    while True:
        while not exhausted and in_flight < depth and channel.credits >= charge:
            item = next(pending, None)
            if item is None:
                exhausted = True
                break
            channel.send_request(*item, charge=charge)
            in_flight += 1
        if in_flight == 0:
            return
        await channel.writer.drain()
        reply = await channel.answer()
        if status_of(reply):
            raise RuntimeError(f"I/O failed: 0x{status_of(reply):08x}")
        in_flight -= 1


async def _transfer(channels, file_id, size: int, io: int, depth: int, write: bool) -> float:
    """Seconds to write or read ``size`` bytes, requests round-robin over channels."""
    count = size // io
    data = os.urandom(io) if write else b""
    charge = -(-io // CREDIT_BYTES)
    per_channel = [[] for _ in channels]
    for index in range(count):
        offset = index * io
        body = (wire.write_request(*file_id, offset, data) if write
                else wire.read_request(*file_id, io, offset))
        per_channel[index % len(channels)].append(
            (Command.WRITE if write else Command.READ, body))
    share = max(1, depth // len(channels))
    started = time.perf_counter()
    await asyncio.gather(*(_pipeline(channel, requests, share, charge)
                           for channel, requests in zip(channels, per_channel)))
    return time.perf_counter() - started


async def _round(port: int, channels_wanted: int, size: int, io: int, depth: int,
                 name: str) -> dict:
    first = await AsyncClient.connect(port)
    first.client_guid = uuid.uuid4().bytes
    await first.negotiate(client_guid=first.client_guid)
    if await first.session_setup():
        raise ConnectionError("SESSION_SETUP failed")
    if await first.tree_connect():
        raise ConnectionError("TREE_CONNECT failed")
    channels = [first]
    for source in ADDRESSES[1:channels_wanted]:
        channels.append(await _bind(first, port, source))
    try:
        file_id = await first.create(name, disposition=5)      # OVERWRITE_IF
        if isinstance(file_id, int):
            raise RuntimeError(f"CREATE failed: 0x{file_id:08x}")
        write_s = await _transfer(channels, file_id, size, io, depth, write=True)
        read_s = await _transfer(channels, file_id, size, io, depth, write=False)
        await first.close_file(file_id)
    finally:
        for channel in channels:
            channel.close()
    mib = size / (1 << 20)
    return {"channels": channels_wanted, "write_mib_s": round(mib / write_s, 1),
            "read_mib_s": round(mib / read_s, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--io-kib", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=8, help="requests in flight in total")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    pinned = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if pinned:
        os.sched_setaffinity(0, {CLIENT_CPU})
    size, io = args.size_mib << 20, args.io_kib << 10
    with tempfile.TemporaryDirectory(prefix="smbca-mchan-bench-") as work:
        share = Path(work) / "share"
        share.mkdir()
        server = start_smbcad(Path(work), shares=[Share("share", share)],
                              users={harness.USER: harness.PASSWORD},
                              taskset=SERVER_CPU if pinned else None,
                              also_listen=ADDRESSES[1:])
        try:
            results = {1: [], 4: []}
            for index in range(args.rounds):
                for wanted in (1, 4):
                    row = asyncio.run(_round(server.port, wanted, size, io, args.depth,
                                             f"seq-{wanted}.bin"))
                    print(json.dumps({"round": index, **row}), flush=True)
                    results[wanted].append(row)
        finally:
            server.stop()
    print(f"\nsequential, {args.size_mib} MiB in {args.io_kib} KiB requests, {args.depth} in "
          f"flight, median of {args.rounds}{' (server CPU 0, client CPU 1)' if pinned else ''}")
    print(f"{'channels':>8} {'write MiB/s':>12} {'read MiB/s':>11}")
    for wanted, rows in results.items():
        print(f"{wanted:8} {statistics.median(r['write_mib_s'] for r in rows):12.1f} "
              f"{statistics.median(r['read_mib_s'] for r in rows):11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
