"""Which worker owns a new connection (docs/multicore.md, "Connections and
routing"), decided from the bytes it has sent so far.

Sans-IO: the accepting worker feeds ``inspect_first_message`` what it has
read from the socket (starting at the Direct TCP header, [MS-SMB2] 2.1: a
zero byte, then a 24-bit big-endian length) and gets back

* ``NeedMore``: the first frame is not whole yet;
* ``Stay``: serve the connection here.  An SMB1 multi-protocol NEGOTIATE
  ([MS-SMB2] 3.3.5.3.1) carries no ClientGuid: it is answered here, and when
  it offered "SMB 2.???" the SMB2 NEGOTIATE that follows is inspected again
  (``look_again``).  A NEGOTIATE that can only end at dialect 2.0.2, whose
  ClientGuid the server ignores (3.3.5.4), or with a zero ClientGuid, stays.
  So does anything that is not an SMB2 NEGOTIATE: the local connection code
  answers or rejects it as it would without routing;
* ``Route(client_guid)``: an SMB2 NEGOTIATE (2.2.3); ``route`` names its
  owner, ``owner_of(ClientGuid) mod N``, or None when that is this worker.

Nothing here raises on what a client sends.  Routing is never stricter than
the server: a NEGOTIATE the server would accept always routes (its owner
must answer it, 3.1.1 folds it into the preauth hash), while one the server
would reject may route too, and its owner rejects it.
"""

import hashlib
import struct
from dataclasses import dataclass

from smbcad.proto.constants import (
    ALL_DIALECTS, HEADER_SIZE, PROTOCOL_ID, SMB1_PROTOCOL_ID, Command, Dialect)
from smbcad.proto.errors import ProtocolViolation, SmbError
from smbcad.proto.header import Smb2Header
from smbcad.proto.negotiate import SMB1_DIALECT_WILDCARD, smb1_dialects

# [MS-SMB2] 2.1: the first byte is zero, the other three the frame length.
DIRECT_TCP_HEADER = struct.Struct(">I")
_LENGTH_MASK = 0x00FFFFFF
# [MS-SMB2] 2.2.3 through ClientGuid: StructureSize, DialectCount,
# SecurityMode, Reserved, Capabilities, ClientGuid.  NegotiateRequest.decode
# also parses the 3.1.1 contexts, which are the owner's to judge, not ours.
_NEGOTIATE_PREFIX = struct.Struct("<HHHHI16s")
_NEGOTIATE_STRUCTURE_SIZE = 36
_DIALECTS_AT = HEADER_SIZE + _NEGOTIATE_STRUCTURE_SIZE
_ZERO_GUID = bytes(16)
# Dialects that make the ClientGuid count (3.3.5.4 keeps it unless 2.0.2).
_GUID_DIALECTS = frozenset(ALL_DIALECTS) - {Dialect.SMB_2_0_2}

MAX_HANDOFF_BYTES = 64 * 1024
"""The most bytes a connection may have read when it is handed to another
worker (``smbcad.workers.handoff`` refuses more).  A first frame bigger
than this stays where it landed; real NEGOTIATEs are a few hundred bytes,
a few KiB with every 3.1.1 context, and the server takes up to 128 KiB
before authentication, so such a frame is served, only not routed."""

_SEED_LIMIT = 1 << 64


@dataclass(frozen=True, slots=True)
class NeedMore:
    """Read at least ``missing`` more bytes, then inspect again: exactly
    the rest of the first frame once its transport header is in."""

    missing: int


@dataclass(frozen=True, slots=True)
class Stay:
    """Serve the connection where it landed; ``reason`` is for logs.  With
    ``look_again`` the next frame (the SMB2 NEGOTIATE that follows an SMB1
    one offering "SMB 2.???") is inspected in turn."""

    reason: str
    look_again: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """An SMB2 NEGOTIATE from ``client_guid``: its owner serves it."""

    client_guid: bytes


RoutingDecision = NeedMore | Stay | Route


def owner_of(client_guid: bytes, workers: int, seed: int = 0) -> int:
    """The worker (0..workers-1) that owns every connection of ``client_guid``.

    A keyed BLAKE2b of the GUID, not ``hash()``: Python salts that per
    process, and every worker of the node (and the adopting node, for
    persistent handles) must compute the same owner.  ``seed`` (a u64,
    0 in production) lets tests place two clients on chosen workers.  A
    zero GUID gets an index like any other; ``inspect_first_message`` keeps
    such connections (and 2.0.2-only ones) where they land.
    """
    if len(client_guid) != 16:
        raise ValueError(f"a ClientGuid is 16 bytes, not {len(client_guid)}")
    if workers < 1:
        raise ValueError(f"{workers} workers: there must be at least one")
    if not 0 <= seed < _SEED_LIMIT:
        raise ValueError(f"routing seed {seed} is not a u64")
    digest = hashlib.blake2b(client_guid, digest_size=8,
                             key=seed.to_bytes(8, "little")).digest()
    return int.from_bytes(digest, "little") % workers


def inspect_first_message(data: bytes | bytearray | memoryview) -> RoutingDecision:
    """The decision for a new connection that has sent ``data`` so far
    (from its first byte on; bytes past the first frame are not looked at)."""
    view = memoryview(data)
    if len(view) < DIRECT_TCP_HEADER.size:
        return NeedMore(DIRECT_TCP_HEADER.size - len(view))
    word = DIRECT_TCP_HEADER.unpack_from(view)[0]
    if word > _LENGTH_MASK:
        return Stay("not a Direct TCP frame (first byte not zero)")
    length = word & _LENGTH_MASK
    total = DIRECT_TCP_HEADER.size + length
    if total > MAX_HANDOFF_BYTES:
        return Stay(f"first frame of {total} bytes is too big to hand off")
    if len(view) < total:
        return NeedMore(total - len(view))
    return _inspect_frame(view[DIRECT_TCP_HEADER.size:total])


def _inspect_frame(frame: memoryview) -> RoutingDecision:
    magic = bytes(frame[:4])
    if magic == SMB1_PROTOCOL_ID:
        return _inspect_smb1(frame)
    if magic != PROTOCOL_ID:
        return Stay("not an SMB2 message")
    try:
        header = Smb2Header.decode(frame)
    except ProtocolViolation:
        return Stay("not an SMB2 header")
    if header.command != Command.NEGOTIATE:
        return Stay(f"command {header.command:#x} before NEGOTIATE")
    if len(frame) < _DIALECTS_AT:
        return Stay("NEGOTIATE shorter than its fixed part")
    size, dialect_count, _, _, _, client_guid = _NEGOTIATE_PREFIX.unpack_from(frame, HEADER_SIZE)
    if size != _NEGOTIATE_STRUCTURE_SIZE or dialect_count == 0:
        return Stay("malformed NEGOTIATE (StructureSize or DialectCount)")
    if len(frame) < _DIALECTS_AT + 2 * dialect_count:
        return Stay("NEGOTIATE dialects run past the message")
    dialects = struct.unpack_from(f"<{dialect_count}H", frame, _DIALECTS_AT)
    if _GUID_DIALECTS.isdisjoint(dialects):
        return Stay("NEGOTIATE without a dialect above 2.0.2 (ClientGuid unused)")
    if client_guid == _ZERO_GUID:
        return Stay("NEGOTIATE with a zero ClientGuid")
    return Route(client_guid)


def _inspect_smb1(frame: memoryview) -> Stay:
    """[MS-SMB2] 3.3.5.3.1: only "SMB 2.???" leads to an SMB2 NEGOTIATE."""
    try:
        names = smb1_dialects(frame)
    except SmbError:
        return Stay("SMB1 message that is not a NEGOTIATE")
    if SMB1_DIALECT_WILDCARD in names:
        return Stay("SMB1 NEGOTIATE: answered here, the SMB2 NEGOTIATE routes", look_again=True)
    return Stay("SMB1 NEGOTIATE without the SMB2 wildcard")


def route(decision: RoutingDecision, here: int, workers: int, seed: int = 0) -> int | None:
    """The worker that must own the connection, or None to keep it ``here``."""
    if isinstance(decision, NeedMore):
        raise ValueError("no decision yet: read more of the first frame")
    if not 0 <= here < workers:
        raise ValueError(f"worker {here} is not one of {workers}")
    if not isinstance(decision, Route) or workers == 1:
        return None
    owner = owner_of(decision.client_guid, workers, seed)
    return None if owner == here else owner
