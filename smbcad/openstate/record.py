"""The per-file share-mode record as bytes, and the decisions made on it.

Sans-IO: ``smbcad.openstate.db`` stores these bytes in LMDB; this
module only builds, reads and changes them.  A record holds what every
worker process must see of a file's opens to decide a CREATE ([MS-FSA]
2.1.1.5 Stream.ShareAccess state and the File's DeletePending, 2.1.5.1.2
the share access check): each open's owner, id, granted access and share
access, and the file's delete-pending flag.  Live objects (the Open, its
handle, its lease) stay in the owning process.

Layout, little-endian::

    header  u8 flags (bit 0: delete pending), u8 reserved, u16 entry count
    entry   u32 owner (the owning process), u64 open id (DurableFileId),
            u32 granted access, u32 share access          (20 bytes, repeated)

Bit 31 of an entry's share access word (no ShareAccess bit is that high)
marks a persistent open whose client is disconnected: a 3.x CREATE of the
file through any process gets STATUS_FILE_NOT_AVAILABLE ([MS-SMB2] 3.3.5.9)
until the owner reconnects.  Bit 30 marks the entries of a process that
holds caching (a lease or an oplock) on the file: it may only while no
other process has the file open, and another process's CREATE has it
broken first (docs/multicore.md, "Caching across workers").  Bits 29-26
say what that caching is, so another process decides an open as it would
next to a local holder ([MS-FSA] 2.1.4.12): 29 handle caching (a batch
oplock, a lease with H: another process's CREATE then has it broken before
the share check, as a holder may close, [MS-FSA] 2.1.5.1.2; without it a
share violation fails at once, with no break), 28 write caching (its holder
is alone: any other data open breaks it), 27 an oplock (a new lease gets no
H next to it), 26 a lease with H (a new oplock gets none next to it).  Read
caching alone (a level II oplock, an R or RH lease) is shared between
processes as between the clients of one.  A stat open
(attributes and SYNCHRONIZE only, [MS-FSA] 2.1.4.12: it breaks no oplock or
lease) counts for neither.

Records are small (one entry for almost every file), so changes rewrite the
whole value: an append is one concatenation, a removal one join.
"""

import struct
from dataclasses import dataclass

from smbcad.proto.constants import AccessMask, ShareAccess
from smbcad.proto.status import NtStatus

HEADER = struct.Struct("<BxH")
ENTRY = struct.Struct("<IQII")
_KEY = struct.Struct("<QQ")
_unpack_entry = ENTRY.unpack_from
_unpack_open_id = struct.Struct("<4xQ").unpack_from      # an entry's open id
_ONE_ENTRY = HEADER.pack(0, 1)
_DELETE_PENDING = 0x01
HELD_DISCONNECTED = 0x80000000          # in the share access word
CACHING = 0x40000000                    # in the share access word
CACHING_HANDLE = 0x20000000             # in the share access word, with CACHING
CACHING_WRITE = 0x10000000              # ditto
CACHING_OPLOCK = 0x08000000             # ditto
CACHING_HANDLE_LEASE = 0x04000000       # ditto
CACHING_BITS = (CACHING | CACHING_HANDLE | CACHING_WRITE | CACHING_OPLOCK
                | CACHING_HANDLE_LEASE)

# The access bits that share modes govern ([MS-FSA] 2.1.5.1.2.1), as plain
# ints: every CREATE tests them, and IntFlag arithmetic costs ~10x more.
READ_LIKE = int(AccessMask.FILE_READ_DATA | AccessMask.FILE_EXECUTE)
WRITE_LIKE = int(AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA)
DELETE = int(AccessMask.DELETE)
DATA_ACCESS = READ_LIKE | WRITE_LIKE | DELETE
# A stat open's access as oplocks.is_stat_open sees it against an oplock
# (the narrower of its two definitions: right for leases too).
STAT_ACCESS = int(AccessMask.FILE_READ_ATTRIBUTES | AccessMask.FILE_WRITE_ATTRIBUTES
                  | AccessMask.SYNCHRONIZE)
_SHARE_READ, _SHARE_WRITE, _SHARE_DELETE = (
    int(ShareAccess.READ), int(ShareAccess.WRITE), int(ShareAccess.DELETE))


class RecordError(ValueError):
    """A stored record is not one this module wrote: a bug or a foreign file."""


@dataclass(frozen=True, slots=True)
class OpenEntry:
    """One open as the other processes see it."""

    owner: int          # the process that holds the Open (its pid)
    open_id: int        # the open's DurableFileId, unique on the node
    access: int         # granted access, after generic mapping
    share: int          # ShareAccess of its CREATE

    def pack(self) -> bytes:
        return ENTRY.pack(self.owner, self.open_id, self.access, self.share)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A decoded record (reads and tests; the hot paths work on the bytes)."""

    entries: tuple[OpenEntry, ...]
    delete_pending: bool


def encode_key(key: tuple) -> bytes:
    """(volume id, inode) or (volume id, inode, stream name) → database key."""
    packed = _KEY.pack(key[0], key[1])
    if len(key) == 2:
        return packed
    return packed + key[2].encode("utf-8", "surrogatepass")


def decode(value: bytes) -> FileRecord:
    flags, _count = _header(value)
    entries = tuple(OpenEntry(*fields) for fields in ENTRY.iter_unpack(value[HEADER.size:]))
    return FileRecord(entries, bool(flags & _DELETE_PENDING))


def _header(value: bytes) -> tuple[int, int]:
    if len(value) < HEADER.size:
        raise RecordError(f"record of {len(value)} bytes")
    flags, count = HEADER.unpack_from(value)
    if len(value) != HEADER.size + count * ENTRY.size:
        raise RecordError(f"record of {len(value)} bytes claims {count} entries")
    return flags, count


def delete_pending(value: bytes | None) -> bool:
    return value is not None and bool(value[0] & _DELETE_PENDING)


def entry_count(value: bytes | None) -> int:
    return 0 if value is None else _header(value)[1]


def sharing_conflict(value: bytes | None, access: int, share: int) -> NtStatus | None:
    """[MS-FSA] 2.1.5.1.2.1 for a new open of ``access``/``share`` against the
    recorded ones: DELETE_PENDING, SHARING_VIOLATION, or None (it may open).
    Opens without data access never conflict."""
    if value is None:
        return None
    if value[0] & _DELETE_PENDING:
        return NtStatus.DELETE_PENDING
    if not access & DATA_ACCESS:
        return None
    _flags, count = _header(value)
    for offset in range(HEADER.size, HEADER.size + count * ENTRY.size, ENTRY.size):
        _owner, _open_id, other_access, other_share = _unpack_entry(value, offset)
        if not other_access & DATA_ACCESS:
            continue
        if excludes(other_share, access) or excludes(share, other_access):
            return NtStatus.SHARING_VIOLATION
    return None


def excludes(share: int, access: int) -> bool:
    """Whether an open sharing ``share`` shuts out one asking ``access``."""
    return bool((access & READ_LIKE and not share & _SHARE_READ)
                or (access & WRITE_LIKE and not share & _SHARE_WRITE)
                or (access & DELETE and not share & _SHARE_DELETE))


def with_entry(value: bytes | None, entry: OpenEntry) -> bytes:
    """``value`` with ``entry`` added (a new record when there was none)."""
    return with_packed_entry(value, entry.pack())


def with_packed_entry(value: bytes | None, packed: bytes) -> bytes:
    """``with_entry`` for an entry already packed (``ENTRY.pack``): every
    CREATE adds one, and building an ``OpenEntry`` first would cost more
    than the rest of it."""
    if value is None:
        return _ONE_ENTRY + packed
    flags, count = _header(value)
    if count == 0xFFFF:
        raise RecordError("65535 opens of one file")
    return HEADER.pack(flags, count + 1) + value[HEADER.size:] + packed


def without_entry(value: bytes, open_id: int) -> tuple[bytes | None, OpenEntry | None]:
    """``value`` without the entry of ``open_id``: (the new value, or None when
    no open is left; the removed entry, or None when it was not there)."""
    flags, count = _header(value)
    if count == 1:                  # the common case: the file's only open goes
        if _unpack_open_id(value, HEADER.size)[0] != open_id:
            return value, None
        return None, OpenEntry(*_unpack_entry(value, HEADER.size))
    kept, removed = [], None
    for fields in ENTRY.iter_unpack(memoryview(value)[HEADER.size:]):
        if removed is None and fields[1] == open_id:
            removed = OpenEntry(*fields)
        else:
            kept.append(ENTRY.pack(*fields))
    if removed is None:
        return value, None
    if not kept:
        return None, removed
    return HEADER.pack(flags, count - 1) + b"".join(kept), removed


def with_delete_pending(value: bytes, pending: bool) -> bytes:
    flags, count = _header(value)
    flags = flags | _DELETE_PENDING if pending else flags & ~_DELETE_PENDING
    return HEADER.pack(flags, count) + value[HEADER.size:]


def held_disconnected(value: bytes | None) -> bool:
    """Whether a disconnected persistent open holds the file."""
    if value is None:
        return False
    _flags, count = _header(value)
    return any(fields[3] & HELD_DISCONNECTED
               for fields in ENTRY.iter_unpack(value[HEADER.size:HEADER.size
                                                     + count * ENTRY.size]))


def with_disconnected(value: bytes, open_id: int, disconnected: bool) -> bytes:
    """``value`` with ``open_id``'s entry marked (or no longer marked) as a
    persistent open whose client is away."""
    return _with_share_bit(value, HELD_DISCONNECTED, disconnected,
                           lambda fields: fields[1] == open_id)


def _with_share_bit(value: bytes, bit: int, on: bool, chosen) -> bytes:
    """``value`` with ``bit`` of the share word set (or cleared) in the
    entries ``chosen(fields)`` picks."""
    flags, _count = _header(value)
    entries = []
    for fields in ENTRY.iter_unpack(value[HEADER.size:]):
        owner, entry_id, access, share = fields
        if chosen(fields):
            share = share | bit if on else share & ~bit
        entries.append(ENTRY.pack(owner, entry_id, access, share))
    return HEADER.pack(flags, len(entries)) + b"".join(entries)


def foreign_caching(value: bytes | None, owner: int) -> int:
    """The CACHING_BITS other processes hold (their union), or 0."""
    if value is None:
        return 0
    _flags, count = _header(value)
    found = 0
    for fields in ENTRY.iter_unpack(value[HEADER.size:HEADER.size + count * ENTRY.size]):
        if fields[0] != owner:
            found |= fields[3] & CACHING_BITS
    return found


def foreign_state(value: bytes | None, owner: int) -> tuple[int, bool]:
    """(``foreign_caching``, ``opened_elsewhere``): what a grant decides on."""
    return foreign_caching(value, owner), opened_elsewhere(value, owner)


def caching_elsewhere(value: bytes | None, owner: int) -> bool:
    """Whether another process holds caching on the file."""
    return foreign_caching(value, owner) != 0


def is_stat_access(access: int) -> bool:
    """Whether an open of ``access`` is a stat open, which breaks no caching."""
    return bool(access & STAT_ACCESS) and not access & ~STAT_ACCESS


def opened_elsewhere(value: bytes | None, owner: int) -> bool:
    """Whether another process has the file open, stat opens aside unless
    their process caches the file (a stat open that created the file may
    hold an oplock: it counts as another opener, smb2.oplock.batch9)."""
    if value is None:
        return False
    _flags, count = _header(value)
    return any(fields[0] != owner and (fields[3] & CACHING or not is_stat_access(fields[2]))
               for fields in ENTRY.iter_unpack(
                   value[HEADER.size:HEADER.size + count * ENTRY.size]))


def with_caching(value: bytes, owner: int, bits: int) -> bytes:
    """``value`` with ``owner``'s entries carrying the CACHING_BITS ``bits``
    (0: it caches nothing), in place of those they had."""
    if bits & ~CACHING_BITS or (bits and not bits & CACHING):
        raise ValueError(f"caching bits {bits:#x}")
    flags, _count = _header(value)
    entries = []
    for fields in ENTRY.iter_unpack(value[HEADER.size:]):
        owner_of, entry_id, access, share = fields
        if owner_of == owner:
            share = share & ~CACHING_BITS | bits
        entries.append(ENTRY.pack(owner_of, entry_id, access, share))
    return HEADER.pack(flags, len(entries)) + b"".join(entries)


def with_entry_replaced(value: bytes | None, packed: bytes) -> bytes:
    """``value`` with the entry ``packed`` (``ENTRY.pack``) in place of any
    entry of the same open: a persistent open restored by the process that
    took over from its owner's (the owner changes, the open is the same)."""
    if value is None:
        return _ONE_ENTRY + packed
    open_id = ENTRY.unpack(packed)[1]
    flags, _count = _header(value)
    kept = [ENTRY.pack(*fields) for fields in ENTRY.iter_unpack(value[HEADER.size:])
            if fields[1] != open_id]
    if len(kept) == 0xFFFF:
        raise RecordError("65535 opens of one file")
    return HEADER.pack(flags, len(kept) + 1) + b"".join(kept) + packed


def without_owner(value: bytes, owner: int, keep: frozenset = frozenset()) -> bytes | None:
    """``value`` without any entry of ``owner`` (a process that is gone),
    except those of the opens in ``keep`` (its persistent opens, which its
    successor restores).  Those lost their connection with the process:
    until the successor has them back they hold the file as disconnected
    persistent opens do ([MS-SMB2] 3.3.5.9: STATUS_FILE_NOT_AVAILABLE to
    others), and cache nothing (nobody could break them)."""
    flags, _count = _header(value)
    kept = []
    for fields in ENTRY.iter_unpack(value[HEADER.size:]):
        entry_owner, entry_id, access, share = fields
        if entry_owner != owner:
            kept.append(ENTRY.pack(*fields))
        elif entry_id in keep:
            share = (share & ~CACHING_BITS) | HELD_DISCONNECTED
            kept.append(ENTRY.pack(entry_owner, entry_id, access, share))
    if not kept:
        return None
    return HEADER.pack(flags, len(kept)) + b"".join(kept)
