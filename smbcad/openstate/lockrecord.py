"""A file's byte-range locks as every worker process sees them (sans-IO;
docs/multicore.md, the ``locks`` sub-database).

Each process keeps its own locks in ``smbcad.server.locks`` (Open objects,
waiters) and publishes them here, so another process can tell whether a
READ, WRITE or LOCK of its own meets one ([MS-FSA] 2.1.4.10).  Locks of one
process never conflict here: the owning process decides those itself.

Layout, little-endian, one entry per lock, no header::

    u32 owner (pid), u64 open id (DurableFileId), u64 offset, u64 length,
    u8 flags (bit 0: exclusive)                                 (29 bytes)
"""

import struct

LOCK = struct.Struct("<IQQQB")
_EXCLUSIVE = 0x01


def pack(owner: int, locks) -> bytes:
    """``locks``: (open id, offset, length, exclusive) of one owner."""
    return b"".join(LOCK.pack(owner, open_id, offset, length, _EXCLUSIVE if exclusive else 0)
                    for open_id, offset, length, exclusive in locks)


def foreign_conflict(value: bytes | None, owner: int, offset: int, length: int,
                     exclusive: bool) -> bool:
    """Whether another owner's lock stops an access of ``length`` bytes at
    ``offset``: reads ask with ``exclusive`` False, writes and exclusive
    locks with True, shared locks with False.  Another owner's open is never
    the caller's, so an overlapping exclusive lock always stops it, and a
    shared one stops writes and exclusive locks (2.1.4.10)."""
    if not value:
        return False
    last = offset + length - 1
    for other, _open_id, start, size, flags in LOCK.iter_unpack(value):
        if other == owner or offset > start + size - 1 or last < start:
            continue
        if flags & _EXCLUSIVE or exclusive:
            return True
    return False


def with_owner_locks(value: bytes | None, owner: int, mine: bytes) -> bytes | None:
    """``value`` with ``owner``'s locks replaced by ``mine`` (packed); None
    when no lock is left."""
    kept = b"" if not value else b"".join(
        LOCK.pack(*fields) for fields in LOCK.iter_unpack(value) if fields[0] != owner)
    return (kept + mine) or None


def without_owner(value: bytes, owner: int, keep: frozenset = frozenset()) -> bytes | None:
    """``value`` without the locks of a process that is gone, except those of
    the opens in ``keep`` (persistent ones, which its successor restores)."""
    kept = b"".join(LOCK.pack(*fields) for fields in LOCK.iter_unpack(value)
                    if fields[0] != owner or fields[1] in keep)
    return kept or None


def with_open_owned_by(value: bytes, open_id: int, owner: int | None) -> bytes | None:
    """``value`` with the locks of open ``open_id`` now ``owner``'s: another
    process adopted the open (a durable open handed between workers); with
    ``owner`` None they go (it could not).  None when no lock is left."""
    kept = b"".join(LOCK.pack(owner if fields[1] == open_id else fields[0], *fields[1:])
                    for fields in LOCK.iter_unpack(value)
                    if owner is not None or fields[1] != open_id)
    return kept or None


def decode(value: bytes | None) -> list[tuple[int, int, int, int, bool]]:
    """(owner, open id, offset, length, exclusive) of every lock (reads, tests)."""
    return [(owner, open_id, offset, length, bool(flags & _EXCLUSIVE))
            for owner, open_id, offset, length, flags in LOCK.iter_unpack(value or b"")]
