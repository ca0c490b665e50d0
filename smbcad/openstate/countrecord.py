"""How many of something each process of a node has, under one key
(sans-IO; docs/multicore.md).  Used by the ``dirleases`` sub-database
(directory leases per directory, ``dirleaserecord``) and the
``connections`` one (connections per node and per client address, for
``server.max_connections`` and ``server.max_connections_per_client``
across worker processes).

Value, little-endian, one entry per process whose count is not zero, no
header::

    u32 owner (pid), u32 count    (8 bytes)
"""

import struct

ENTRY = struct.Struct("<II")

# The ``connections`` sub-database's keys: the node's, and one per client
# address (the text of the peer's IP address).
NODE_CONNECTIONS = b"*"


def client_key(host: str) -> bytes:
    return b"client:" + host.encode("utf-8", "surrogatepass")


def with_owner_count(value: bytes | None, owner: int, count: int) -> bytes | None:
    """``value`` with ``owner``'s count ``count`` (0: no entry); None when
    no process has any."""
    kept = [ENTRY.pack(other, held) for other, held in ENTRY.iter_unpack(value or b"")
            if other != owner]
    if count:
        kept.append(ENTRY.pack(owner, count))
    return b"".join(kept) or None


def count_of(value: bytes | None, owner: int) -> int:
    return sum(held for other, held in ENTRY.iter_unpack(value or b"") if other == owner)


def total(value: bytes | None) -> int:
    return sum(held for _, held in ENTRY.iter_unpack(value or b""))


def without_owner(value: bytes, owner: int, keep: frozenset = frozenset()) -> bytes | None:
    """``forget_owner``'s form (``keep`` has no meaning here: what is counted
    dies with its process)."""
    return with_owner_count(value, owner, 0)
