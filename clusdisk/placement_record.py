"""The placement's record on the quorum LUN, pure and standard library only
(``clusdisk.quorum_placement`` reads and writes it over SG_IO).

Why the quorum LUN: the node that forms the cluster holds the quorum
reservation before it brings anything up, and may be alone; its own
``state_dir`` copy of the placement can be older than the partner's (a
takeover it did not see).  The quorum LUN is the one piece of shared
storage it can read at that moment without taking any data LUN (an
aggregate's own filesystem, where smbcad keeps its marker, can only be read
after reserving and mounting the aggregate: the very step to decide).  Only
the quorum owner writes the record (it alone may write in SCSI-2 mode), each
time its placement changes, so the record's generation is the newest the
owners saw (cluster.md 7(a): a generation that moves on, newest wins).

Layout: two slots of ``SLOT_BYTES`` from ``RECORD_OFFSET_BYTES`` (64 KiB, past
an MBR or a GPT with its entries; nothing else uses the quorum LUN's blocks), the record
of generation ``g`` in slot ``g % 2``, so a torn write leaves the other slot
(the previous generation) readable.  A slot (big-endian)::

    magic "SCPL" | version u16 | reserved u16 | generation u64
    | payload length u32 | CRC-32 of the payload u32 | payload (JSON) | zeros

The payload is ``Placement.to_json()`` plus ``"writer"`` (the node id).
"""

import json
import struct
import zlib

MAGIC = b"SCPL"
RECORD_VERSION = 1
RECORD_OFFSET_BYTES = 1 << 16
SLOT_BYTES = 8192
SLOTS = 2
_HEADER = struct.Struct("!4sHHQII")


class RecordError(ValueError):
    """A slot that holds no valid record (blank, torn, another format)."""


def encode(placement_json: dict, writer: int) -> bytes:
    """One slot's bytes (``SLOT_BYTES``) for a placement (``to_json()``)."""
    generation = placement_json["generation"]
    payload = json.dumps({**placement_json, "writer": writer}, sort_keys=True,
                         separators=(",", ":")).encode()
    if _HEADER.size + len(payload) > SLOT_BYTES:
        raise ValueError(f"placement record of {len(payload)} bytes does not fit a "
                         f"{SLOT_BYTES}-byte slot")
    header = _HEADER.pack(MAGIC, RECORD_VERSION, 0, generation, len(payload),
                          zlib.crc32(payload))
    return (header + payload).ljust(SLOT_BYTES, b"\0")


def decode(slot: bytes) -> dict:
    """The payload of a slot (raises RecordError)."""
    if len(slot) < _HEADER.size:
        raise RecordError("slot too short")
    magic, version, _, generation, length, crc = _HEADER.unpack_from(slot)
    if magic != MAGIC:
        raise RecordError("no placement record (blank slot)")
    if version != RECORD_VERSION:
        raise RecordError(f"placement record version {version}, this node reads "
                          f"{RECORD_VERSION}")
    payload = slot[_HEADER.size:_HEADER.size + length]
    if len(payload) != length or zlib.crc32(payload) != crc:
        raise RecordError("placement record torn or damaged (CRC mismatch)")
    try:
        data = json.loads(payload)
    except ValueError:
        raise RecordError("placement record payload is not JSON") from None
    if not isinstance(data, dict) or data.get("generation") != generation:
        raise RecordError("placement record payload does not match its header")
    return data


def slot_of(generation: int) -> int:
    return generation % SLOTS


def newest(slots) -> dict | None:
    """The valid payload of the highest generation among the slots' bytes,
    or None when no slot holds one."""
    best = None
    for raw in slots:
        try:
            data = decode(raw)
        except RecordError:
            continue
        if best is None or data["generation"] > best["generation"]:
            best = data
    return best
