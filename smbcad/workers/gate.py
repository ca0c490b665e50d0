"""A worker's gate for new connections (docs/multicore.md, "Connections and
routing"): the transport asks it about a connection's first bytes, and a
connection another worker owns is passed there with what was read.

``decide`` is the sans-IO part (``routing.inspect_first_message`` and
``routing.route`` with this worker's seat); ``hand_off`` is the one place
that passes a socket (``handoff.send_connection`` over a channel kept per
peer, reconnected once when the peer restarted since).
"""

import logging
import os
import socket
from dataclasses import dataclass

from smbcad.workers import handoff, routing

log = logging.getLogger("smbcad.workers")

NEED_MORE = -1
"""``decide``: the first frame is not whole yet."""
SERVE = -2
"""``decide``: serve the connection here, and stop asking."""
SERVE_LOOK_AGAIN = -3
"""``decide``: serve this frame here (an SMB1 NEGOTIATE), ask again at the next."""


@dataclass(frozen=True)
class WorkerSeat:
    """Which worker this process is, of how many, and where the workers'
    sockets are (``handoff.handoff_path``)."""

    index: int
    count: int
    seed: int
    directory: str


class RoutingGate:
    def __init__(self, seat: WorkerSeat, *, largest_first_frame: int) -> None:
        """``largest_first_frame``: a first frame longer than this is served
        here (the transport receives it into a buffer of its own)."""
        self.seat = seat
        self.largest_first_frame = min(largest_first_frame, routing.MAX_HANDOFF_BYTES)
        self._channels: dict[int, socket.socket] = {}
        self.handed_off = 0

    def decide(self, data) -> int:
        """NEED_MORE, SERVE, SERVE_LOOK_AGAIN, or the index of the worker
        that owns the connection."""
        decision = routing.inspect_first_message(data)
        if isinstance(decision, routing.NeedMore):
            if len(data) + decision.missing > self.largest_first_frame + 4:
                return SERVE
            return NEED_MORE
        if isinstance(decision, routing.Stay):
            return SERVE_LOOK_AGAIN if decision.look_again else SERVE
        owner = routing.route(decision, self.seat.index, self.seat.count, self.seat.seed)
        return SERVE if owner is None else owner

    def hand_off(self, owner: int, descriptor: int, already_read: bytes) -> None:
        """Pass the connection on ``descriptor`` (which stays the caller's to
        close) to ``owner``; HandoffError when it could not be sent."""
        conn = socket.socket(fileno=os.dup(descriptor))
        try:
            try:
                handoff.send_connection(self._channel(owner), conn, already_read)
            except handoff.HandoffError:
                # The owner restarted since the channel was made: once afresh.
                self._forget(owner)
                handoff.send_connection(self._channel(owner), conn, already_read)
        finally:
            conn.close()
        self.handed_off += 1

    def _channel(self, owner: int) -> socket.socket:
        channel = self._channels.get(owner)
        if channel is None:
            channel = self._channels[owner] = handoff.connect(self.seat.directory, owner)
        return channel

    def _forget(self, owner: int) -> None:
        channel = self._channels.pop(owner, None)
        if channel is not None:
            channel.close()

    def close(self) -> None:
        for owner in list(self._channels):
            self._forget(owner)
