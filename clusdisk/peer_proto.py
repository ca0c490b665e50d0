"""The clusdisk peer protocol, sans-IO (issue 11 items 2, 4): framing, HMAC,
hello, replay protection and request/response matching between the two
clusdisk daemons over the heartbeat interconnect (TCP; ``clusdisk.peer`` is
the asyncio shell).

Frame (big-endian)::

    magic "SCDP" | version u8 | kind u8 | length u32 | seq u64 | payload | HMAC-SHA256 (32)

The key is HKDF-SHA256 of the cluster key (info ``"smbca clusdisk peer
v1"``).  Each side opens with a HELLO (seq 0; payload: node id u32 and a
fresh 16-byte nonce) whose MAC covers header and payload.  The layout and
MAC of the HELLO are frozen for every protocol version, so a node can
authenticate a hello of another version and say which version it speaks
("partner speaks clusdisk peer protocol v2, this node v1") before refusing
it.  Every later frame's MAC also covers the sender's and the receiver's
nonces, and its seq must be the previous one plus one: a frame replayed
from another connection or out of order is refused.

REQUEST and RESPONSE payloads are JSON objects: ``{"id": N, "op": OP,
"args": {...}}`` and ``{"id": N, "reply": {...}}``; a response must answer
a request still pending.  Any refused frame ends the connection.
"""

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PROTOCOL_VERSION = 1
MAGIC = b"SCDP"
HKDF_INFO = b"smbca clusdisk peer v1"
NONCE_BYTES = 16
MAC_BYTES = 32
MAX_PAYLOAD = 1 << 20

HELLO, REQUEST, RESPONSE = 1, 2, 3
_HEADER = struct.Struct("!4sBBIQ")
_HELLO = struct.Struct("!I16s")


def derive_key(cluster_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=HKDF_INFO).derive(cluster_key)


def version_text(partner: int, mine: int = PROTOCOL_VERSION) -> str:
    return f"partner speaks clusdisk peer protocol v{partner}, this node v{mine}"


class PeerRefused(Exception):
    """A frame this side will not accept; ``reason``: auth, version, replay,
    identity, malformed.  The connection must be closed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Established:
    partner_id: int
    partner_version: int


@dataclass(frozen=True)
class Request:
    id: int
    op: str
    args: dict


@dataclass(frozen=True)
class Response:
    id: int
    reply: dict


def _mac(key: bytes, *parts: bytes) -> bytes:
    digest = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        digest.update(part)
    return digest.digest()


class PeerSession:
    """One connection's protocol state.  ``hello()`` first, then feed every
    received chunk to ``receive`` (returns events, raises PeerRefused)."""

    def __init__(self, key: bytes, node_id: int, partner_id: int, nonce: bytes,
                 version: int = PROTOCOL_VERSION) -> None:
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"a nonce has {NONCE_BYTES} bytes")
        self.key = key
        self.node_id = node_id
        self.partner_id = partner_id
        self.nonce = nonce
        self.version = version
        self.partner_nonce: bytes | None = None
        self.partner_version: int | None = None
        self._buffer = bytearray()
        self._send_seq = 0
        self._recv_seq = 0
        self._next_id = 1
        self.pending: set[int] = set()

    @property
    def established(self) -> bool:
        return self.partner_nonce is not None

    # -- sending -------------------------------------------------------------

    def hello(self) -> bytes:
        payload = _HELLO.pack(self.node_id, self.nonce)
        header = _HEADER.pack(MAGIC, self.version, HELLO, len(payload), 0)
        return header + payload + _mac(self.key, header, payload)

    def _frame(self, kind: int, body: dict) -> bytes:
        if not self.established:
            raise RuntimeError("no frame before the partner's hello")
        payload = json.dumps(body, separators=(",", ":")).encode()
        if len(payload) > MAX_PAYLOAD:
            raise ValueError("peer message too large")
        self._send_seq += 1
        header = _HEADER.pack(MAGIC, self.version, kind, len(payload), self._send_seq)
        return header + payload + _mac(self.key, self.nonce, self.partner_nonce, header, payload)

    def request(self, op: str, args: dict | None = None) -> tuple[int, bytes]:
        request_id, self._next_id = self._next_id, self._next_id + 1
        self.pending.add(request_id)
        return request_id, self._frame(REQUEST, {"id": request_id, "op": op,
                                                 "args": args or {}})

    def respond(self, request_id: int, reply: dict) -> bytes:
        return self._frame(RESPONSE, {"id": request_id, "reply": reply})

    # -- receiving -----------------------------------------------------------

    def receive(self, data: bytes) -> list:
        self._buffer += data
        events = []
        while len(self._buffer) >= _HEADER.size:
            magic, version, kind, length, seq = _HEADER.unpack_from(self._buffer)
            if magic != MAGIC:
                raise PeerRefused("malformed", "not a clusdisk peer frame (bad magic)")
            if length > MAX_PAYLOAD:
                raise PeerRefused("malformed", f"frame of {length} bytes is too large")
            end = _HEADER.size + length + MAC_BYTES
            if len(self._buffer) < end:
                break
            frame = bytes(self._buffer[:end])
            del self._buffer[:end]
            events.append(self._frame_received(frame, version, kind, length, seq))
        return events

    def _frame_received(self, frame: bytes, version: int, kind: int, length: int, seq: int):
        header = frame[:_HEADER.size]
        payload = frame[_HEADER.size:_HEADER.size + length]
        mac = frame[_HEADER.size + length:]
        if not self.established:
            return self._hello_received(header, payload, mac, version, kind)
        expected = _mac(self.key, self.partner_nonce, self.nonce, header, payload)
        if not hmac.compare_digest(mac, expected):
            raise PeerRefused("auth", "frame authentication failed (replayed from another "
                              "connection, or tampered with)")
        if seq != self._recv_seq + 1:
            raise PeerRefused("replay", f"frame seq {seq}, expected {self._recv_seq + 1} "
                              "(replayed or reordered)")
        self._recv_seq = seq
        if version != self.version:
            raise PeerRefused("version", version_text(version, self.version))
        try:
            body = json.loads(payload)
        except ValueError:
            raise PeerRefused("malformed", "peer message is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            raise PeerRefused("malformed", "peer message without an id")
        if kind == REQUEST:
            if not isinstance(body.get("op"), str) or not isinstance(body.get("args", {}), dict):
                raise PeerRefused("malformed", "peer request without op/args")
            return Request(body["id"], body["op"], body.get("args", {}))
        if kind == RESPONSE:
            if body["id"] not in self.pending or not isinstance(body.get("reply"), dict):
                raise PeerRefused("malformed", f"unexpected response {body['id']}")
            self.pending.discard(body["id"])
            return Response(body["id"], body["reply"])
        raise PeerRefused("malformed", f"unknown frame kind {kind}")

    def _hello_received(self, header, payload, mac, version, kind) -> Established:
        if kind != HELLO or len(payload) != _HELLO.size:
            raise PeerRefused("malformed", "the first frame must be a hello")
        if not hmac.compare_digest(mac, _mac(self.key, header, payload)):
            raise PeerRefused("auth", "hello authentication failed (wrong cluster key?)")
        partner_id, nonce = _HELLO.unpack(payload)
        if partner_id != self.partner_id:
            raise PeerRefused("identity", f"hello from node {partner_id}, expected "
                              f"node {self.partner_id}")
        if nonce == self.nonce:
            raise PeerRefused("replay", "hello carries this side's own nonce (reflected)")
        self.partner_version = version
        if version != self.version:
            raise PeerRefused("version", version_text(version, self.version))
        self.partner_nonce = nonce
        return Established(partner_id, version)
