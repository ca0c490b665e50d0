"""The partner-mirror wire protocol: messages, frames, and a sans-IO
connection (issue 10 item 5; shared/reference/cluster.md §7(a) "The mirrored
handle store", "Handshake and resync").

Stdlib only, no I/O (STYLE rule 1, anchor ``h11/_connection.py``): the mirror
link feeds bytes to ``MirrorConnection.receive_data`` and gets events back,
and writes whatever ``data_to_send()`` returns.

Frame (little-endian; ``_HEADER``)::

    magic "SMBM" | version u8 | type u8 | flags u16 | length u32 | counter u64
    payload (length bytes)
    HMAC-SHA256(key, header + payload)   (32 bytes)

``counter`` counts frames per direction: the HELLO is 0, the first frame
after it 1, and a receiver accepts only the next one.  A replayed or
reordered frame (counter not the next) and a frame whose HMAC does not
verify are dropped and counted, and the connection carries on with the
frame after it; a clean TCP stream never produces one, so the link closes
the connection on the first drop and the mirror resyncs on the new one.  A
header that cannot be a frame (magic, version, length) loses the framing:
the connection fails (``ConnectionFailed``) and drops all further input.

Keys (HKDF, RFC 5869, with HMAC-SHA256).  Nothing secret travels:

- HELLO frames are MAC'd with ``hello_key = HKDF(cluster_key, salt="",
  info="smbca mirror hello v1")``, so a node without the cluster key cannot
  even start a handshake.  A replayed HELLO gains nothing: the session keys
  depend on the receiver's fresh nonce.
- After both HELLOs, each direction has its own key, named by the sender's
  nonce (STYLE rule 7: keys named by direction)::

      prk      = HMAC(salt = sorted(nonce_a, nonce_b) joined, cluster_key)
      key(X→Y) = HKDF-Expand(prk, "smbca mirror frames v1" | nonce_X, 32)

Messages (STYLE rule 5: frozen dataclasses, explicit codec, fields in
protocol order):

- ``Hello``        node_id, nonce (32), incarnation, per aggregate:
                   ``AggregatePosition`` (name, role, epoch, generation, mseq)
- ``Append``       aggregate, epoch, mseq, ops
- ``Ack``          aggregate, epoch, generation, mseq (cumulative: every
                   frame up to mseq of that generation is durable)
- ``SnapshotBegin`` / ``SnapshotChunk`` / ``SnapshotEnd``
                   aggregate, epoch, generation, base_mseq (+ ops in a chunk,
                   + record count at the end)
- ``Refuse``       aggregate, reason, and the refuser's position (epoch,
                   generation, mseq) so the primary can decide again
- ``Tickles``      aggregate and the client connections the owner has on its
                   LIFs (the "tickle list", cluster.md §1.3): the next owner
                   sends each client a tickle ACK when the LIF comes up.  Not
                   a commit: sent after each change, never acknowledged.

Versions.  ``VERSION`` in every frame header is the framing version; a peer
with another one is refused at once with a reason that names both.  Within a
version, the HELLO's header ``flags`` list the optional messages its sender
understands (``FEATURE_*``); nothing optional is sent to a peer that did not
list it, so a node of the previous release keeps mirroring during a rolling
upgrade (it sends flags 0 and ignores ours).

Departure from cluster.md, on purpose: ``Ack`` also carries the generation.
An ACK of an old generation's frame can still be in flight after a snapshot
started a new one with lower mseqs (a primary restarted with a shorter log);
without the generation it would acknowledge frames it never saw.

``ops`` are ``Engine.write`` changes (``smbcad.store.interface``), encoded
as in the log engine: put = 1 u8 | DurableFileId u64 | length u32 | bytes,
remove = 2 u8 | DurableFileId u64, preceded by a u32 count.
"""

import enum
import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

MAGIC = b"SMBM"
VERSION = 1
NONCE_BYTES = 32
MAC_BYTES = 32
MIN_KEY_BYTES = 16
MAX_PAYLOAD = 64 << 20
SNAPSHOT_CHUNK_BYTES = 1 << 20
FEATURE_TICKLES = 0x0001                    # understands TICKLES (type 8)
FEATURES = FEATURE_TICKLES                  # what this release understands

_HEADER = struct.Struct("<4sBBHIQ")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_POSITION = struct.Struct("<BQQQ")          # role, epoch, generation, mseq
_HELLO_FIXED = struct.Struct("<32sQH")      # nonce, incarnation, aggregate count
_APPEND = struct.Struct("<QQ")              # epoch, mseq
_ACK = struct.Struct("<QQQ")                # epoch, generation, mseq
_SNAP = struct.Struct("<QQQ")               # epoch, generation, base mseq
_REFUSE = struct.Struct("<BQQQ")            # reason, epoch, generation, mseq
_TICKLE = struct.Struct("<B16sH16sH")       # family, client ip, port, server ip, port
_PUT = struct.Struct("<BQI")
_REMOVE = struct.Struct("<BQ")
_OP_PUT, _OP_REMOVE = 1, 2

Ops = tuple[tuple[int, bytes | None], ...]


class ProtocolError(Exception):
    """A payload that does not decode, or a message sent in the wrong state."""


class MessageType(enum.IntEnum):
    HELLO = 1
    APPEND = 2
    ACK = 3
    SNAPSHOT_BEGIN = 4
    SNAPSHOT_CHUNK = 5
    SNAPSHOT_END = 6
    REFUSE = 7
    TICKLES = 8


class Role(enum.IntEnum):
    NONE = 0        # the node has no copy of this aggregate
    PRIMARY = 1
    REPLICA = 2


class RefuseReason(enum.IntEnum):
    STALE_EPOCH = 1     # the sender's epoch is below one the refuser has seen
    GAP = 2             # a frame is missing; resync from the refuser's position
    NOT_REPLICA = 3     # the refuser is not a replica of this aggregate


# --- ops -----------------------------------------------------------------------------


def encode_ops(ops: Iterable[tuple[int, bytes | None]]) -> bytes:
    parts, count = [b""], 0
    for key, blob in ops:
        if blob is None:
            parts.append(_REMOVE.pack(_OP_REMOVE, key))
        else:
            parts.append(_PUT.pack(_OP_PUT, key, len(blob)))
            parts.append(blob)
        count += 1
    parts[0] = _U32.pack(count)
    return b"".join(parts)


def decode_ops(data: bytes | memoryview, offset: int = 0) -> tuple[Ops, int]:
    """Ops at ``offset``; returns them and the offset after them."""
    view = memoryview(data)
    (count,) = _take(_U32, view, offset)
    offset += _U32.size
    ops = []
    for _ in range(count):
        if offset >= len(view):
            raise ProtocolError("ops: fewer ops than counted")
        kind = view[offset]
        if kind == _OP_PUT:
            _, key, length = _take(_PUT, view, offset)
            offset += _PUT.size
            if offset + length > len(view):
                raise ProtocolError("ops: record overruns the payload")
            ops.append((key, bytes(view[offset:offset + length])))
            offset += length
        elif kind == _OP_REMOVE:
            ops.append((_take(_REMOVE, view, offset)[1], None))
            offset += _REMOVE.size
        else:
            raise ProtocolError(f"ops: bad op kind {kind}")
    return tuple(ops), offset


def ops_from_changes(changes: Mapping[int, bytes | None]) -> Ops:
    return tuple(changes.items())


def ops_size(ops: Ops) -> int:
    return sum(_PUT.size + len(blob) if blob is not None else _REMOVE.size
               for _, blob in ops)


def _take(fmt: struct.Struct, view: memoryview, offset: int) -> tuple:
    if offset + fmt.size > len(view):
        raise ProtocolError("payload too short")
    return fmt.unpack_from(view, offset)


def _pack_name(name: str) -> bytes:
    raw = name.encode()
    if not 0 < len(raw) < 256:
        raise ValueError(f"aggregate/node name {name!r} must be 1..255 bytes")
    return _U8.pack(len(raw)) + raw


def _unpack_name(view: memoryview, offset: int) -> tuple[str, int]:
    (length,) = _take(_U8, view, offset)
    offset += 1
    if length == 0 or offset + length > len(view):
        raise ProtocolError("bad name length")
    try:
        return bytes(view[offset:offset + length]).decode(), offset + length
    except UnicodeDecodeError:
        raise ProtocolError("name is not UTF-8") from None


def _done(view: memoryview, offset: int) -> None:
    if offset != len(view):
        raise ProtocolError("trailing bytes in a payload")


# --- messages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AggregatePosition:
    """Where a node's copy of one aggregate stands (HELLO, REFUSE)."""

    aggregate: str
    role: Role
    epoch: int
    generation: int
    mseq: int


@dataclass(frozen=True, slots=True)
class Hello:
    node_id: str
    nonce: bytes
    incarnation: int
    aggregates: tuple[AggregatePosition, ...] = ()
    type = MessageType.HELLO

    def encode(self) -> bytes:
        if len(self.nonce) != NONCE_BYTES:
            raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
        parts = [_pack_name(self.node_id),
                 _HELLO_FIXED.pack(self.nonce, self.incarnation, len(self.aggregates))]
        for pos in self.aggregates:
            parts.append(_pack_name(pos.aggregate))
            parts.append(_POSITION.pack(pos.role, pos.epoch, pos.generation, pos.mseq))
        return b"".join(parts)

    @classmethod
    def decode(cls, view: memoryview) -> "Hello":
        node_id, offset = _unpack_name(view, 0)
        nonce, incarnation, count = _take(_HELLO_FIXED, view, offset)
        offset += _HELLO_FIXED.size
        positions = []
        for _ in range(count):
            name, offset = _unpack_name(view, offset)
            role, epoch, generation, mseq = _take(_POSITION, view, offset)
            offset += _POSITION.size
            try:
                positions.append(AggregatePosition(name, Role(role), epoch, generation, mseq))
            except ValueError:
                raise ProtocolError(f"bad role {role}") from None
        _done(view, offset)
        return cls(node_id, nonce, incarnation, tuple(positions))


@dataclass(frozen=True, slots=True)
class Append:
    aggregate: str
    epoch: int
    mseq: int
    ops: Ops
    type = MessageType.APPEND

    def encode(self) -> bytes:
        return b"".join((_pack_name(self.aggregate), _APPEND.pack(self.epoch, self.mseq),
                         encode_ops(self.ops)))

    @classmethod
    def decode(cls, view: memoryview) -> "Append":
        name, offset = _unpack_name(view, 0)
        epoch, mseq = _take(_APPEND, view, offset)
        ops, offset = decode_ops(view, offset + _APPEND.size)
        _done(view, offset)
        return cls(name, epoch, mseq, ops)


@dataclass(frozen=True, slots=True)
class Ack:
    aggregate: str
    epoch: int
    generation: int
    mseq: int
    type = MessageType.ACK

    def encode(self) -> bytes:
        return _pack_name(self.aggregate) + _ACK.pack(self.epoch, self.generation, self.mseq)

    @classmethod
    def decode(cls, view: memoryview) -> "Ack":
        name, offset = _unpack_name(view, 0)
        values = _take(_ACK, view, offset)
        _done(view, offset + _ACK.size)
        return cls(name, *values)


@dataclass(frozen=True, slots=True)
class SnapshotBegin:
    aggregate: str
    epoch: int
    generation: int
    base_mseq: int
    type = MessageType.SNAPSHOT_BEGIN

    def encode(self) -> bytes:
        return _pack_name(self.aggregate) + _SNAP.pack(self.epoch, self.generation,
                                                       self.base_mseq)

    @classmethod
    def decode(cls, view: memoryview) -> "SnapshotBegin":
        name, offset = _unpack_name(view, 0)
        values = _take(_SNAP, view, offset)
        _done(view, offset + _SNAP.size)
        return cls(name, *values)


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    aggregate: str
    epoch: int
    generation: int
    base_mseq: int
    ops: Ops
    type = MessageType.SNAPSHOT_CHUNK

    def encode(self) -> bytes:
        return b"".join((_pack_name(self.aggregate),
                         _SNAP.pack(self.epoch, self.generation, self.base_mseq),
                         encode_ops(self.ops)))

    @classmethod
    def decode(cls, view: memoryview) -> "SnapshotChunk":
        name, offset = _unpack_name(view, 0)
        epoch, generation, base = _take(_SNAP, view, offset)
        ops, offset = decode_ops(view, offset + _SNAP.size)
        _done(view, offset)
        return cls(name, epoch, generation, base, ops)


@dataclass(frozen=True, slots=True)
class SnapshotEnd:
    aggregate: str
    epoch: int
    generation: int
    base_mseq: int
    records: int
    type = MessageType.SNAPSHOT_END

    def encode(self) -> bytes:
        return b"".join((_pack_name(self.aggregate),
                         _SNAP.pack(self.epoch, self.generation, self.base_mseq),
                         _U32.pack(self.records)))

    @classmethod
    def decode(cls, view: memoryview) -> "SnapshotEnd":
        name, offset = _unpack_name(view, 0)
        epoch, generation, base = _take(_SNAP, view, offset)
        (records,) = _take(_U32, view, offset + _SNAP.size)
        _done(view, offset + _SNAP.size + _U32.size)
        return cls(name, epoch, generation, base, records)


@dataclass(frozen=True, slots=True)
class Refuse:
    aggregate: str
    reason: RefuseReason
    epoch: int
    generation: int
    mseq: int
    type = MessageType.REFUSE

    def encode(self) -> bytes:
        return _pack_name(self.aggregate) + _REFUSE.pack(self.reason, self.epoch,
                                                         self.generation, self.mseq)

    @classmethod
    def decode(cls, view: memoryview) -> "Refuse":
        name, offset = _unpack_name(view, 0)
        reason, epoch, generation, mseq = _take(_REFUSE, view, offset)
        _done(view, offset + _REFUSE.size)
        try:
            return cls(name, RefuseReason(reason), epoch, generation, mseq)
        except ValueError:
            raise ProtocolError(f"bad refuse reason {reason}") from None


Tickle = tuple[str, int, str, int]          # client ip, client port, server ip, server port


@dataclass(frozen=True, slots=True)
class Tickles:
    """The owner's client connections on the aggregate's LIFs, all of them."""

    aggregate: str
    connections: tuple[Tickle, ...]
    type = MessageType.TICKLES

    def encode(self) -> bytes:
        parts = [_pack_name(self.aggregate), _U32.pack(len(self.connections))]
        for client_ip, client_port, server_ip, server_port in self.connections:
            client, server = ipaddress.ip_address(client_ip), ipaddress.ip_address(server_ip)
            if client.version != server.version:
                raise ValueError(f"tickle {client_ip} -> {server_ip}: mixed address families")
            parts.append(_TICKLE.pack(client.version, client.packed, client_port,
                                      server.packed, server_port))
        return b"".join(parts)

    @classmethod
    def decode(cls, view: memoryview) -> "Tickles":
        name, offset = _unpack_name(view, 0)
        (count,) = _take(_U32, view, offset)
        offset += _U32.size
        connections = []
        for _ in range(count):
            family, client, client_port, server, server_port = _take(_TICKLE, view, offset)
            offset += _TICKLE.size
            if family == 4:
                connections.append((str(ipaddress.IPv4Address(client[:4])), client_port,
                                    str(ipaddress.IPv4Address(server[:4])), server_port))
            elif family == 6:
                connections.append((str(ipaddress.IPv6Address(client)), client_port,
                                    str(ipaddress.IPv6Address(server)), server_port))
            else:
                raise ProtocolError(f"bad address family {family}")
        _done(view, offset)
        return cls(name, tuple(connections))


Message = Hello | Append | Ack | SnapshotBegin | SnapshotChunk | SnapshotEnd | Refuse | Tickles
_DECODERS = MappingProxyType({cls.type: cls.decode for cls in (
    Hello, Append, Ack, SnapshotBegin, SnapshotChunk, SnapshotEnd, Refuse, Tickles)})


def snapshot_messages(aggregate: str, epoch: int, generation: int, base_mseq: int,
                      records: Mapping[int, bytes], chunk_bytes: int = SNAPSHOT_CHUNK_BYTES
                      ) -> Iterable[Message]:
    """SNAPSHOT_BEGIN, CHUNKs of about ``chunk_bytes`` of ops, SNAPSHOT_END."""
    yield SnapshotBegin(aggregate, epoch, generation, base_mseq)
    ops, size = [], 0
    for key, blob in records.items():
        ops.append((key, blob))
        size += _PUT.size + len(blob)
        if size >= chunk_bytes:
            yield SnapshotChunk(aggregate, epoch, generation, base_mseq, tuple(ops))
            ops, size = [], 0
    if ops:
        yield SnapshotChunk(aggregate, epoch, generation, base_mseq, tuple(ops))
    yield SnapshotEnd(aggregate, epoch, generation, base_mseq, len(records))


# --- keys ----------------------------------------------------------------------------


def _hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) for one 32-byte output block."""
    prk = hmac.new(salt or bytes(32), key, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def hello_key(cluster_key: bytes) -> bytes:
    return _hkdf(cluster_key, b"", b"smbca mirror hello v1")


def session_key(cluster_key: bytes, sender_nonce: bytes, receiver_nonce: bytes) -> bytes:
    """The key of frames sent by the side whose nonce is ``sender_nonce``."""
    salt = b"".join(sorted((sender_nonce, receiver_nonce)))
    return _hkdf(cluster_key, salt, b"smbca mirror frames v1" + sender_nonce)


def encode_frame(key: bytes, counter: int, message: Message, flags: int = 0) -> bytes:
    payload = message.encode()
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"{message.type.name} payload of {len(payload)} bytes is too large")
    header = _HEADER.pack(MAGIC, VERSION, message.type, flags, len(payload), counter)
    mac = hmac.new(key, header, hashlib.sha256)
    mac.update(payload)
    return b"".join((header, payload, mac.digest()))


# --- connection ----------------------------------------------------------------------


class ConnectionState(enum.Enum):
    AWAIT_HELLO = "await-hello"     # our HELLO is queued; the peer's has not come
    OPEN = "open"                   # session keys derived; any message may pass
    FAILED = "failed"               # framing lost or handshake refused: close it


class _Input(enum.Enum):
    PEER_HELLO = "peer-hello"
    MESSAGE = "message"
    FATAL = "fatal"


# (state, input) -> next state (STYLE rule 2); a pair missing here is a peer
# protocol violation and fails the connection.
TRANSITIONS = MappingProxyType({
    (ConnectionState.AWAIT_HELLO, _Input.PEER_HELLO): ConnectionState.OPEN,
    (ConnectionState.AWAIT_HELLO, _Input.FATAL): ConnectionState.FAILED,
    (ConnectionState.OPEN, _Input.MESSAGE): ConnectionState.OPEN,
    (ConnectionState.OPEN, _Input.FATAL): ConnectionState.FAILED,
})


class DropReason(enum.Enum):
    BAD_MAC = "bad-mac"
    COUNTER = "counter"             # replayed or reordered
    UNDECODABLE = "undecodable"     # the MAC verified, the payload did not decode


@dataclass(frozen=True, slots=True)
class PeerHello:
    """The handshake is complete; ``hello`` is the peer's."""

    hello: Hello


@dataclass(frozen=True, slots=True)
class MessageReceived:
    message: Message


@dataclass(frozen=True, slots=True)
class FrameDropped:
    reason: DropReason
    counter: int


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    reason: str


Event = PeerHello | MessageReceived | FrameDropped | ConnectionFailed


@dataclass
class ConnectionStats:
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: dict[DropReason, int] = field(default_factory=lambda: dict.fromkeys(DropReason, 0))


class MirrorConnection:
    """One side of a mirror connection (both sides are alike: each sends its
    HELLO at once).  ``nonce`` must be fresh per connection
    (``secrets.token_bytes(NONCE_BYTES)``); it is passed in so the core has
    no randomness of its own."""

    def __init__(self, cluster_key: bytes, hello: Hello, features: int = FEATURES) -> None:
        if len(cluster_key) < MIN_KEY_BYTES:
            raise ValueError(f"the cluster key must have at least {MIN_KEY_BYTES} bytes")
        self._cluster_key = cluster_key
        self._hello_key = hello_key(cluster_key)
        self.local_hello = hello
        self.peer_hello: Hello | None = None
        self.peer_features = 0                   # the peer HELLO's flags
        self.state = ConnectionState.AWAIT_HELLO
        self.stats = ConnectionStats()
        self._send_key = self._receive_key = b""
        self._send_counter = self._receive_counter = 0
        self._inbuf = bytearray()
        self._outbuf = [encode_frame(self._hello_key, 0, hello, features)]
        self.stats.frames_out = 1

    def _move(self, symbol: _Input) -> None:
        self.state = TRANSITIONS.get((self.state, symbol), ConnectionState.FAILED)

    def send(self, message: Message) -> None:
        """Queue a message (raises ProtocolError before the handshake is done)."""
        if self.state is not ConnectionState.OPEN or isinstance(message, Hello):
            raise ProtocolError(f"cannot send {message.type.name} in state {self.state.value}")
        self._send_counter += 1
        self._outbuf.append(encode_frame(self._send_key, self._send_counter, message))
        self.stats.frames_out += 1

    def data_to_send(self) -> bytes:
        data = b"".join(self._outbuf)
        self._outbuf.clear()
        self.stats.bytes_out += len(data)
        return data

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed received bytes; returns the events they complete.  Never raises
        on peer input."""
        if self.state is ConnectionState.FAILED:
            return []
        self.stats.bytes_in += len(data)
        self._inbuf += data
        events: list[Event] = []
        offset = 0
        while self.state is not ConnectionState.FAILED:
            if len(self._inbuf) - offset < _HEADER.size:
                break
            magic, version, kind, flags, length, counter = _HEADER.unpack_from(
                self._inbuf, offset)
            if magic == MAGIC and version != VERSION:
                events.append(self._fail(f"the partner speaks mirror protocol version "
                                         f"{version}; this node speaks {VERSION}"))
                break
            if magic != MAGIC or length > MAX_PAYLOAD:
                events.append(self._fail(f"bad frame header (magic {magic!r}, version "
                                         f"{version}, length {length})"))
                break
            end = offset + _HEADER.size + length + MAC_BYTES
            if len(self._inbuf) < end:
                break
            frame = memoryview(self._inbuf)[offset:end]
            offset = end
            event = self._frame(frame, kind, flags, length, counter)
            frame.release()
            if event is not None:
                events.append(event)
        del self._inbuf[:offset]
        return events

    def _frame(self, frame: memoryview, kind: int, flags: int, length: int,
               counter: int) -> Event | None:
        body_end = _HEADER.size + length
        awaiting = self.state is ConnectionState.AWAIT_HELLO
        key = self._hello_key if awaiting else self._receive_key
        mac = hmac.new(key, frame[:body_end], hashlib.sha256).digest()
        if not hmac.compare_digest(mac, frame[body_end:]):
            if awaiting:
                return self._fail("HELLO does not verify: another cluster key")
            return self._drop(DropReason.BAD_MAC, counter)
        if awaiting and (kind != MessageType.HELLO or counter != 0):
            return self._fail(f"first frame is type {kind}, counter {counter}, not HELLO")
        if not awaiting and counter != self._receive_counter + 1:
            return self._drop(DropReason.COUNTER, counter)
        decoder = _DECODERS.get(kind)
        try:
            if decoder is None:
                raise ProtocolError(f"unknown message type {kind}")
            message = decoder(frame[_HEADER.size:body_end])
        except ProtocolError as exc:
            if awaiting:
                return self._fail(f"bad HELLO: {exc}")
            self._receive_counter = counter   # authentic, so it did use up its counter
            return self._drop(DropReason.UNDECODABLE, counter)
        self.stats.frames_in += 1
        if awaiting:
            if message.nonce == self.local_hello.nonce:
                return self._fail("our own HELLO came back: a loop or a reflection")
            self.peer_features = flags
            self._handshake(message)
            return PeerHello(message)
        if isinstance(message, Hello):
            return self._fail("a second HELLO on an open connection")
        self._receive_counter = counter
        self._move(_Input.MESSAGE)
        return MessageReceived(message)

    def _handshake(self, hello: Hello) -> None:
        self.peer_hello = hello
        self._send_key = session_key(self._cluster_key, self.local_hello.nonce, hello.nonce)
        self._receive_key = session_key(self._cluster_key, hello.nonce, self.local_hello.nonce)
        self._move(_Input.PEER_HELLO)

    def _drop(self, reason: DropReason, counter: int) -> FrameDropped:
        self.stats.dropped[reason] += 1
        return FrameDropped(reason, counter)

    def _fail(self, reason: str) -> ConnectionFailed:
        self._move(_Input.FATAL)
        return ConnectionFailed(reason)
