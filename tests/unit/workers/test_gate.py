"""A worker's gate for new connections (smbcad/workers/gate.py): the
decision on the first bytes, and a connection passed to the owner's
handoff listener, again after the owner restarted."""

import asyncio
import socket
import struct

import pytest

from smbcad.workers import gate
from smbcad.workers.gate import RoutingGate, WorkerSeat
from smbcad.workers.handoff import HandoffError, HandoffListener
from smbcad.workers.routing import owner_of

from test_routing import GUID, negotiate, smb1_negotiate


def seat(index: int, tmp_path, count: int = 2) -> WorkerSeat:
    return WorkerSeat(index, count, 0, str(tmp_path))


def test_the_owner_serves_and_others_name_it(tmp_path):
    owner = owner_of(GUID, 2)
    frame = negotiate()
    assert RoutingGate(seat(owner, tmp_path), largest_first_frame=16384).decide(frame) \
        == gate.SERVE
    assert RoutingGate(seat(1 - owner, tmp_path), largest_first_frame=16384).decide(frame) \
        == owner


def test_partial_big_smb1_and_foreign_first_bytes(tmp_path):
    router = RoutingGate(seat(0, tmp_path), largest_first_frame=16384)
    frame = negotiate()
    assert router.decide(frame[:3]) == gate.NEED_MORE
    assert router.decide(frame[:40]) == gate.NEED_MORE
    assert router.decide(smb1_negotiate(b"NT LM 0.12", b"SMB 2.???")) == gate.SERVE_LOOK_AGAIN
    assert router.decide(smb1_negotiate(b"NT LM 0.12")) == gate.SERVE
    assert router.decide(b"GET / HTTP/1.1\r\n") == gate.SERVE
    # A first frame bigger than the transport assembles in its stage is
    # received into its own buffer: served here, never routed.
    big = struct.pack(">I", 20000) + bytes(100)
    assert router.decide(big) == gate.SERVE


def test_hand_off_reaches_the_owner_and_survives_its_restart(tmp_path):
    async def run() -> None:
        loop = asyncio.get_running_loop()
        received: asyncio.Queue = asyncio.Queue()
        router = RoutingGate(seat(0, tmp_path), largest_first_frame=16384)
        for round_ in range(2):                  # the second listener is a restarted owner
            listener = HandoffListener(str(tmp_path), 1)
            listener.attach(loop, lambda sock, data: received.put_nowait((sock, data)))
            ours, theirs = socket.socketpair()
            router.hand_off(1, ours.fileno(), b"first bytes %d" % round_)
            ours.close()                         # the gate passed a copy of the descriptor
            sock, data = await asyncio.wait_for(received.get(), 5)
            assert data == b"first bytes %d" % round_
            sock.setblocking(True)
            sock.sendall(b"to the client")
            assert theirs.recv(100) == b"to the client"
            sock.close()
            theirs.close()
            listener.close()
        assert router.handed_off == 2
        with pytest.raises(HandoffError):         # nobody listens any more
            ours, theirs = socket.socketpair()
            try:
                router.hand_off(1, ours.fileno(), b"")
            finally:
                ours.close()
                theirs.close()
        router.close()

    asyncio.run(run())
