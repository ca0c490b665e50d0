"""Sans-IO heartbeat protocol between the two nodes (shared/STYLE.md rule 1):
``send(now, ...)`` -> datagrams, ``receive(link, data, now)`` -> events,
``poll(now)`` -> timeout events.  Standard library only; the asyncio UDP
endpoints live in ``clusdisk.heartbeat_transport``.

Datagram (network byte order, 60 bytes)::

    0   magic "CDHB"      4   version (1)        5   flags
    6   sender node id    8   receiver node id   10  link index   11 reserved
    12  incarnation (u64: the sender's boot id, larger on every start)
    20  sequence (u64: per link, starts at 1, +1 per datagram)
    28  HMAC-SHA256 (RFC 2104 / FIPS 180-4) of bytes 0..27 with the cluster key

Acceptance: the MAC verifies (constant-time compare); sender, receiver and
link match the configuration and the link it arrived on (so a datagram
cannot be replayed onto another link or reflected back); the incarnation is
not older than the newest seen; within an incarnation the sequence on that
link increases.  Everything else is a ``Rejected`` event with a reason.

Liveness: a link is alive while a valid datagram arrived on it within
``interval_s * miss_count``; the partner is alive while any link is.  Loss of
the last link is ``PartnerLost``.  A datagram flagged CLEAN_SHUTDOWN is
``PartnerShutdown``: the partner left on purpose, and no ``PartnerLost``
follows for that incarnation.
"""

import hashlib
import hmac
import struct
from dataclasses import dataclass

MAGIC = b"CDHB"
VERSION = 1
FLAG_CLAIMS_QUORUM = 0x01
FLAG_CLEAN_SHUTDOWN = 0x02
MIN_KEY_BYTES = 16

_HEADER = struct.Struct(">4sBBHHBxQQ")
MAC_BYTES = 32
DATAGRAM_BYTES = _HEADER.size + MAC_BYTES


class HeartbeatError(Exception):
    """A datagram was refused; ``status`` names the reason (for metrics)."""

    def __init__(self, status: str, message: str = "") -> None:
        super().__init__(message or status)
        self.status = status


@dataclass(frozen=True)
class HeartbeatConfig:
    node_id: int
    peer_id: int
    key: bytes
    links: int = 1
    interval_s: float = 1.0
    miss_count: int = 5

    def __post_init__(self) -> None:
        if len(self.key) < MIN_KEY_BYTES:
            raise ValueError(f"the cluster key must have at least {MIN_KEY_BYTES} bytes")
        if self.node_id == self.peer_id:
            raise ValueError("node_id and peer_id must differ")
        if not 1 <= self.links <= 255:
            raise ValueError("links must be 1..255")
        if self.interval_s <= 0 or self.miss_count < 1:
            raise ValueError("interval_s must be > 0 and miss_count >= 1")

    @property
    def timeout_s(self) -> float:
        return self.interval_s * self.miss_count


@dataclass(frozen=True)
class Datagram:
    flags: int
    sender: int
    receiver: int
    link: int
    incarnation: int
    sequence: int
    version: int = VERSION

    def encode(self, key: bytes) -> bytes:
        header = _HEADER.pack(MAGIC, self.version, self.flags, self.sender, self.receiver,
                              self.link, self.incarnation, self.sequence)
        return header + hmac.new(key, header, hashlib.sha256).digest()

    @classmethod
    def decode(cls, data: bytes, key: bytes) -> "Datagram":
        if len(data) != DATAGRAM_BYTES:
            raise HeartbeatError("length", f"datagram of {len(data)} bytes, want {DATAGRAM_BYTES}")
        header, mac = data[:_HEADER.size], data[_HEADER.size:]
        if not hmac.compare_digest(mac, hmac.new(key, header, hashlib.sha256).digest()):
            raise HeartbeatError("mac", "HMAC does not verify")
        magic, version, flags, sender, receiver, link, incarnation, sequence = \
            _HEADER.unpack(header)
        if magic != MAGIC:
            raise HeartbeatError("magic", f"bad magic {magic!r}")
        if version != VERSION:
            raise HeartbeatError("version", f"unsupported version {version}")
        return cls(flags, sender, receiver, link, incarnation, sequence, version)

    @property
    def claims_quorum(self) -> bool:
        return bool(self.flags & FLAG_CLAIMS_QUORUM)

    @property
    def clean_shutdown(self) -> bool:
        return bool(self.flags & FLAG_CLEAN_SHUTDOWN)


# -- events -------------------------------------------------------------------

@dataclass(frozen=True)
class PartnerUp:
    incarnation: int


@dataclass(frozen=True)
class PartnerRestarted:
    old_incarnation: int
    incarnation: int


@dataclass(frozen=True)
class PartnerSeen:
    """A valid heartbeat (level-triggered: one per accepted datagram)."""

    link: int
    claims_quorum: bool


@dataclass(frozen=True)
class PartnerShutdown:
    incarnation: int


@dataclass(frozen=True)
class PartnerLost:
    pass


@dataclass(frozen=True)
class LinkUp:
    link: int


@dataclass(frozen=True)
class LinkDown:
    link: int


@dataclass(frozen=True)
class Rejected:
    link: int
    reason: str
    detail: str = ""


class HeartbeatProtocol:
    def __init__(self, config: HeartbeatConfig, incarnation: int) -> None:
        self.config = config
        self.incarnation = incarnation
        self._send_seq = [0] * config.links
        self._partner_incarnation: int | None = None
        self._recv_seq: list[int] = [0] * config.links
        self._last_rx: list[float | None] = [None] * config.links
        self._departed = False
        self._alive = False

    @property
    def partner_alive(self) -> bool:
        return self._alive

    @property
    def partner_incarnation(self) -> int | None:
        return self._partner_incarnation

    def links_alive(self) -> tuple[bool, ...]:
        return tuple(t is not None for t in self._last_rx)

    # -- sending -----------------------------------------------------------

    def send(self, now: float, *, claims_quorum: bool,
             clean_shutdown: bool = False) -> list[tuple[int, bytes]]:
        """One datagram per link: ``[(link, bytes), ...]``."""
        flags = (FLAG_CLAIMS_QUORUM if claims_quorum else 0) | \
            (FLAG_CLEAN_SHUTDOWN if clean_shutdown else 0)
        out = []
        for link in range(self.config.links):
            self._send_seq[link] += 1
            datagram = Datagram(flags, self.config.node_id, self.config.peer_id, link,
                                self.incarnation, self._send_seq[link])
            out.append((link, datagram.encode(self.config.key)))
        return out

    # -- receiving ---------------------------------------------------------

    def receive(self, link: int, data: bytes, now: float) -> list:
        try:
            datagram = self._accept(link, data)
        except HeartbeatError as exc:
            return [Rejected(link, exc.status, str(exc))]
        events: list = []
        if datagram.incarnation != self._partner_incarnation:
            if self._partner_incarnation is not None and self._alive:
                events.append(PartnerRestarted(self._partner_incarnation, datagram.incarnation))
            self._partner_incarnation = datagram.incarnation
            self._recv_seq = [0] * self.config.links
            self._departed = False
        self._recv_seq[link] = datagram.sequence
        if self._departed:
            return events                   # repeats of the shutdown notice
        if not self._alive:
            self._alive = True
            if not any(isinstance(e, PartnerRestarted) for e in events):
                events.append(PartnerUp(datagram.incarnation))
        if self._last_rx[link] is None:
            events.append(LinkUp(link))
        self._last_rx[link] = now
        if datagram.clean_shutdown:
            self._departed = True
            self._alive = False
            self._last_rx = [None] * self.config.links
            events.append(PartnerShutdown(datagram.incarnation))
        else:
            events.append(PartnerSeen(link, datagram.claims_quorum))
        return events

    def _accept(self, link: int, data: bytes) -> Datagram:
        datagram = Datagram.decode(data, self.config.key)
        if datagram.sender == self.config.node_id:
            raise HeartbeatError("reflected", "our own datagram came back")
        if datagram.sender != self.config.peer_id or datagram.receiver != self.config.node_id:
            raise HeartbeatError("address", f"from node {datagram.sender} to "
                                 f"{datagram.receiver}, not from our partner to us")
        if not 0 <= link < self.config.links or datagram.link != link:
            raise HeartbeatError("link", f"link {datagram.link} datagram arrived on link {link}")
        current = self._partner_incarnation
        if current is not None and datagram.incarnation < current:
            raise HeartbeatError("stale-incarnation",
                                 f"incarnation {datagram.incarnation} < {current}")
        if datagram.incarnation == current and datagram.sequence <= self._recv_seq[link]:
            raise HeartbeatError("replay", f"sequence {datagram.sequence} on link {link} "
                                 f"not above {self._recv_seq[link]}")
        return datagram

    # -- timeouts ----------------------------------------------------------

    def next_deadline(self) -> float | None:
        pending = [t + self.config.timeout_s for t in self._last_rx if t is not None]
        return min(pending) if pending else None

    def poll(self, now: float) -> list:
        events: list = []
        for link, last in enumerate(self._last_rx):
            if last is not None and now - last >= self.config.timeout_s:
                self._last_rx[link] = None
                events.append(LinkDown(link))
        if self._alive and all(t is None for t in self._last_rx):
            self._alive = False
            events.append(PartnerLost())
        return events
