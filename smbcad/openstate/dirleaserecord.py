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
511-byte limit is its SHA-256.  Value: ``countrecord``'s, per holding
process the directory leases it holds there.
"""

import hashlib

from smbcad.openstate.countrecord import ENTRY

_MAX_KEY = 400


def encode_key(share: str, path: str) -> bytes:
    key = share.lower().encode("utf-8", "surrogatepass") + b"\0" + path.encode(
        "utf-8", "surrogatepass")
    if len(key) > _MAX_KEY:
        return b"#" + hashlib.sha256(key).digest()
    return key


def held_elsewhere(value: bytes | None, owner: int) -> bool:
    """Whether a process other than ``owner`` holds a lease there."""
    return any(other != owner and held for other, held in ENTRY.iter_unpack(value or b""))
