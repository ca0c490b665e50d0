"""Which worker processes hold directory leases on a directory (sans-IO;
docs/multicore.md, the ``dirleases`` sub-database).

A change to a directory's listing through one worker ([MS-FSA] 2.1.4.13: a
file created, deleted, renamed, written or its times set) must break the
directory leases that other workers' clients hold on it.  The holding
worker publishes, per directory, how many it holds; the acting worker reads
that one record and tells the others only when it names someone else.

Keyed by share and path (the acting worker knows the changed entry's
path, not its directory's inode): UTF-8 of the share name (lower case), a
NUL, and the directory's share-relative path; a key longer than LMDB's
511-byte limit is its SHA-256.  Value, little-endian, one entry per
holding process, no header::

    u32 owner (pid), u32 directory leases it holds there    (8 bytes)
"""

import hashlib
import struct

ENTRY = struct.Struct("<II")
_MAX_KEY = 400


def encode_key(share: str, path: str) -> bytes:
    key = share.lower().encode("utf-8", "surrogatepass") + b"\0" + path.encode(
        "utf-8", "surrogatepass")
    if len(key) > _MAX_KEY:
        return b"#" + hashlib.sha256(key).digest()
    return key


def with_owner_count(value: bytes | None, owner: int, count: int) -> bytes | None:
    """``value`` with ``owner`` holding ``count`` leases (0: none); None when
    nobody holds any."""
    kept = [ENTRY.pack(other, held) for other, held in ENTRY.iter_unpack(value or b"")
            if other != owner]
    if count:
        kept.append(ENTRY.pack(owner, count))
    return b"".join(kept) or None


def held_elsewhere(value: bytes | None, owner: int) -> bool:
    """Whether a process other than ``owner`` holds a lease there."""
    return any(other != owner and held for other, held in ENTRY.iter_unpack(value or b""))


def without_owner(value: bytes, owner: int, keep: frozenset = frozenset()) -> bytes | None:
    """``forget_owner``'s form (``keep`` has no meaning here: leases die with
    their process, and a successor grants them anew)."""
    return with_owner_count(value, owner, 0)
