"""No growth (issue 17 item 1): open and drop 10,000 connections, 2,000
(CHURN_CONNECTIONS) that stop at every awkward point and 8,000 plain logins,
then check that everything the server tracks, and the live objects of its
classes, are back at the baseline.

The mix: NEGOTIATE only; the first SESSION_SETUP leg (a session in setup with
its preauth hash); a full login; malformed frames, bad lengths and frames
cut half-way; a compound whose second member is cut; a login with an open
file; a CHANGE_NOTIFY left pending; a CREATE left waiting for a lease break
that the other client never acknowledges.  Some connections are dropped while
others are still open (batches), all by the client, without LOGOFF or CLOSE.
"""

import gc
import os
import struct
import sys
import tracemalloc

import pytest

from smbcad.proto.constants import Command
from smbcad.proto.status import NtStatus
from tests.unit.proto import wire
from tests.unit.server import harness
from tests.unit.server.loopback import FILE_DIRECTORY_FILE, LoopbackServer, SocketClient

CHURN_CONNECTIONS = 2000          # connections that end at an awkward point (the mix below)
LOGIN_CONNECTIONS = 8000          # plus plain logins dropped without LOGOFF: 10,000 in all
BATCH = 40                        # connections open together before they are dropped
# Classes whose live instances must come back to the baseline.
WATCHED_CLASSES = ("SmbProtocol", "_FrameSink", "Connection", "Session", "Open", "TreeConnect",
                   "_AsyncRequest", "RequestContext", "CompoundState", "NotifyWaiter",
                   "ChangeNotifyEntry", "Lease", "SpnegoAcceptor", "Task", "TimerHandle")
TRACED_CONNECTIONS = 300         # the last ones, under tracemalloc
# What the traced connections may leave allocated, all together: under 1 KiB
# each (measured: ~30 KiB, pyspnego's and prometheus-client's caches filling).
MAX_GROWTH_BYTES = 256 * 1024
LEASE_RWH = 0x7
TRACE_FRAMES = 1                  # more to find what grows, at a cost in time


def _lease_v2(key: bytes) -> bytes:
    """SMB2_CREATE_REQUEST_LEASE_V2 (2.2.13.2.10) asking for RWH."""
    return wire.context_chain((b"RqLs", struct.pack("<16sIIQ16sHH", key, LEASE_RWH, 0, 0,
                                                    bytes(16), 0, 0)))


def _negotiated(port) -> SocketClient:
    client = SocketClient(port)
    client.negotiate()
    return client


def _scenario(index: int, port: int, keep: list) -> None:
    """One connection (two for the lease break) ending in scenario ``index % 12``."""
    kind = index % 12
    if kind == 0:
        keep.append(_negotiated(port))
    elif kind == 1:
        client = _negotiated(port)
        client.start_session_setup()
        keep.append(client)
    elif kind == 2:
        keep.append(SocketClient(port).login())
    elif kind == 3:                                        # not SMB at all
        client = _negotiated(port)
        client.send(b"\xfeSMX" + bytes(60))
        keep.append(client)
    elif kind == 4:                                        # first length byte not zero
        client = SocketClient(port)
        client.send_raw(b"\x81\x00\x00\x10" + bytes(16))
        keep.append(client)
    elif kind == 5:                                        # a frame cut half-way
        client = _negotiated(port)
        client.send_raw(struct.pack(">I", 200) + harness.header(Command.ECHO, 1))
        keep.append(client)
    elif kind == 6:                                        # a compound's second member cut
        client = _negotiated(port)
        first = bytearray(harness.header(Command.ECHO, 1) + struct.pack("<HH", 4, 0) + bytes(4))
        struct.pack_into("<I", first, 20, len(first))      # NextCommand
        client.send(bytes(first) + harness.header(Command.ECHO, 2)[:30])
        keep.append(client)
    elif kind == 7:                                        # an open file
        client = SocketClient(port).login()
        client.create(f"file{index % 5}.txt")
        keep.append(client)
    elif kind == 8:                                        # a CHANGE_NOTIFY left pending
        client = SocketClient(port).login()
        client.notify(client.create("dir", options=FILE_DIRECTORY_FILE))
        assert harness.status_of(client.receive()) == NtStatus.PENDING
        keep.append(client)
    elif kind == 9 and index % 48 == 9:                    # a CREATE waiting for a lease break
        holder = SocketClient(port).login()
        key = os.urandom(16)
        name = f"leased-{key.hex()}.txt"                   # a new file each time
        holder.answer(holder.send_request(Command.CREATE, wire.create_request(
            name, _lease_v2(key), oplock=0xFF, disposition=3)))
        breaker = SocketClient(port).login()
        breaker.send_request(Command.CREATE, wire.create_request(name, disposition=5))
        assert harness.status_of(breaker.receive()) == NtStatus.PENDING
        keep += [breaker, holder]
    else:                                                  # garbage before NEGOTIATE
        client = SocketClient(port)
        client.send(os.urandom(80))
        keep.append(client)


def _churn(srv, count: int) -> None:
    keep: list = []
    for index in range(count):
        _scenario(index, srv.port, keep)
        if len(keep) >= BATCH:
            for client in keep:
                client.close()
            keep.clear()
    for client in keep:
        client.close()
    assert srv.wait_for(lambda: not srv.server.connections and not srv.listener.tracked()[
        "protocols"], timeout_s=30)


def _logins(srv, count: int) -> None:
    """``count`` connections that log in (a session each) and are dropped,
    BATCH at a time, without LOGOFF."""
    for _ in range(0, count, BATCH):
        batch = [SocketClient(srv.port).login() for _ in range(BATCH)]
        for client in batch:
            client.close()
    assert srv.wait_for(lambda: not srv.server.connections and not srv.listener.tracked()[
        "protocols"], timeout_s=30)


def _live_objects() -> dict[str, int]:
    gc.collect()
    counts = dict.fromkeys(WATCHED_CLASSES, 0)
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in counts:
            counts[name] += 1
    return counts


def _state(srv) -> dict:
    def on_loop():
        counts = dict(srv.server.tracked())
        counts.update(srv.listener.tracked())
        loop = srv.loop
        counts["loop_timers"] = sum(1 for h in loop._scheduled if not h.cancelled())
        counts["metric_samples"] = sum(len(family.samples)
                                       for family in srv.server.metrics.registry.collect())
        return counts
    return srv.call(on_loop)


@pytest.mark.skipif(sys.platform != "linux", reason="inotify")
def test_churn_leaves_nothing_behind(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "dir").mkdir()
    with LoopbackServer(str(share), str(tmp_path / "state"), max_connections_per_client=1024,
                        auth_timeout_s=60) as srv:
        # Warm up: every code path once (caches, metric children, inotify).
        _churn(srv, 48)
        baseline, live_before = _state(srv), _live_objects()
        fds_before = len(os.listdir("/proc/self/fd"))
        _churn(srv, CHURN_CONNECTIONS - TRACED_CONNECTIONS)
        _logins(srv, LOGIN_CONNECTIONS)
        # The last connections under tracemalloc (it slows everything 4x):
        # what they leave allocated, cyclic garbage collected, must be small.
        tracemalloc.start(TRACE_FRAMES)
        gc.collect()
        before = tracemalloc.take_snapshot()
        _churn(srv, TRACED_CONNECTIONS)
        gc.collect()
        after_churn = tracemalloc.take_snapshot()
        tracemalloc.stop()
        after, live_after = _state(srv), _live_objects()
        assert after == baseline, {k: (baseline.get(k), v) for k, v in after.items()
                                   if baseline.get(k) != v}
        assert live_after == live_before, {k: (live_before[k], v) for k, v in live_after.items()
                                           if live_before[k] != v}
        assert len(os.listdir("/proc/self/fd")) <= fds_before
        growth = after_churn.compare_to(before, "traceback")
        grown = sum(stat.size_diff for stat in growth)
        top = "\n".join(str(stat) + "\n" + "\n".join(stat.traceback.format()[-6:])
                        for stat in growth[:5])
        assert grown < MAX_GROWTH_BYTES, top
