"""The persisted form of a durable, resilient or persistent open.

This is what a reconnect (DHnC, DH2C), a replayed CREATE or a restart of
smbcad needs, and nothing else ([MS-SMB2] 3.3.1.10 Open, 3.3.1.12 Lease;
shared/reference/smb3-ca.md 1.3 "What to persist for a persistent open").
It is separate from the in-memory ``smbcad.server.adm.Open`` (shared/STYLE.md
rule 9), the way Samba keeps ``smbXsrv_open_global`` apart from
``smbXsrv_open``: the server builds a ``PersistentOpen`` from its Open and
rebuilds an Open from one, never pickles its objects.

Pure: no I/O, no clock.  Times are milliseconds of the server's wall clock,
passed in.

Encoding (all little-endian)
----------------------------
An envelope, then sections::

    envelope   schema_version u16 | min_reader_version u16 | record_version u64
    section    section_version u16 | length u32 | body[length]        (repeated)

Section 1 (this schema) is a fixed struct (``_FIXED``) followed by the
variable fields: owner user, owner domain, share name (u16 length + UTF-8
each), path and VFS cookie (u32 length + bytes each), the byte-range locks
(u32 count, then offset u64, length u64, flags u8 each) and the
LockSequenceArray, sparse: u8 count, then per entry in use its position u8
(LockSequenceIndex - 1) and the entry u8 (Valid 0x10 | SequenceNumber).

Versioning rules (Samba's ``...B``/``...U`` idea, with protobuf's rule for
unknown fields):

- Section 1's layout is frozen.  A later schema adds fields in a new section
  numbered with its schema version; a reader fills absent sections with the
  dataclass defaults, so older records are upgraded by simply decoding them.
- A change of meaning (not just a new field) bumps ``SCHEMA_VERSION`` and adds
  a function to ``UPGRADES``, keyed by the version it upgrades from; decoding
  an older record runs the chain.  Today there is no such change, so
  ``UPGRADES`` is empty.
- Sections newer than this reader are kept verbatim in ``unknown_sections``
  and written back unchanged, so a rolling upgrade (new node writes, old node
  rewrites the record after a lock change) loses nothing.
- ``min_reader_version`` is the oldest schema that may interpret the record.
  A writer raises it only when ignoring its new sections would be wrong; a
  reader older than that refuses the record (``RecordTooNew``).

``record_version`` is the compare-and-set counter of the store (bumped on
every committed change), not a schema number.

Section 2 (schema 2): a create intent
--------------------------------------
A record that carries section 2 is not an open but the *intent* of a
creating or overwriting persistent CREATE, committed before the CREATE
touches the file (cluster.md section 8 question 1; Samba reserves its
replay-cache record the same way, section 1.1): ``CreateIntent`` below.
Section 1 holds what the replay check needs (CreateGuid, ClientGuid, owner,
share, path, access, options, timeout, the intent's time as
``disconnected_at_ms``) and, for an overwrite, the identity of the file it
was about to overwrite (``file_dev``/``file_ino``); the open's own record
later replaces it under the same DurableFileId.  Section 2 body::

    disposition u32 | prior change_time u64 | prior size u64

``is_persistent`` is False in an intent, so a schema-1 reader, which keeps
section 2 as unknown, drops it at adoption as "not a persistent open": it
loses the intent (the behaviour before intents), never misreads it.  Hence
``min_reader_version`` stays 1.  Schema 2 changes the meaning of nothing
in section 1, so there is no upgrade from 1.

Section 3 (schema 3): the owner's SID
-------------------------------------
The durable owner's SID (``owner_sid``, ``S-1-5-21-...`` as text, UTF-8,
the whole body), written only when the opener had one (a domain user): a
reconnect on either node matches the SID rather than the name the client
typed, which differs between Kerberos (``user@REALM``) and NTLM
(``DOMAIN\\user``) logons of the same account (issue 12 item 8).  A record
without it (a local user's, or one the previous release wrote) keeps
matching by name.  A schema-2 reader keeps section 3 as unknown and matches
by name, as it always did, so ``min_reader_version`` stays 1.
"""

import operator
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from smbcad.store.errors import RecordCorrupt, RecordTooNew

SCHEMA_VERSION = 3
MIN_READER_VERSION = 1
_INTENT_SECTION = 2
_OWNER_SID_SECTION = 3
_MAX_SID_TEXT = 256              # S-1- plus 15 sub-authorities of 10 digits fits easily
LOCK_SEQUENCE_ENTRIES = 64       # [MS-SMB2] 3.3.1.10 Open.LockSequenceArray
ZERO_GUID = bytes(16)
NO_LOCK_SEQUENCES = bytes(LOCK_SEQUENCE_ENTRIES)

# LockSequenceArray entry byte: Valid in bit 4, SequenceNumber in bits 0-3.
_LOCK_SEQ_VALID = 0x10

# Section-1 flag bits.
_DURABLE = 0x0001
_PERSISTENT = 0x0002
_RESILIENT = 0x0004
_DELETE_ON_CLOSE = 0x0008
_REPLAY_ELIGIBLE = 0x0010
_DIRECTORY = 0x0020
_HAS_APP_VERSION = 0x0040
_DISCONNECTED = 0x0080
_LEASE_BREAKING = 0x0100
_LEASE_BREAK_PENDING = 0x0200
_KNOWN_FLAGS = 0x03FF

_ENVELOPE = struct.Struct("<HHQ")
_SECTION = struct.Struct("<HI")
_HEAD = struct.Struct("<HHQHI")      # the envelope and section 1's header
_FIXED = struct.Struct(
    "<Q16s16s16s"       # durable_file_id, create_guid, client_guid, app_instance_id
    "QQ"                # app_instance_version high, low
    "QQQQ"              # file_dev, file_ino, position, disconnected_at_ms
    "IIIII"             # desired, granted, share access, create options, file attributes
    "III"               # durable_timeout_ms, resiliency_timeout_ms, flags
    "HBB"               # channel_sequence, oplock_level, lease version (0: no lease)
    "16s16sBBH")        # lease key, parent lease key, state, break-to state, epoch
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_LOCK = struct.Struct("<QQB")
_INTENT = struct.Struct("<IQQ")      # disposition, prior change_time, prior size
# Five length fields, the lock count and the lock-sequence count.
_VAR_MIN = 3 * 2 + 2 * 4 + 4 + 1
_U16_MAX = 0xFFFF


@dataclass(frozen=True, slots=True)
class LockRecord:
    """One byte-range lock held by the open ([MS-FSA] 2.1.1.7; [MS-SMB2] 2.2.26.1)."""

    offset: int
    length: int
    exclusive: bool


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The open's lease as a reconnect needs it ([MS-SMB2] 3.3.1.12 Lease).

    Several opens of one client may share a lease; each of their records
    carries a copy, and a lease change rewrites all of them in one
    ``update_many`` so the copies never disagree on disk.
    ``break_notification_pending`` is Lease.BreakNotification being set: a
    break that could not be delivered while disconnected, to be sent on
    reconnect (3.3.4.7, 3.3.5.9.12 step 6).
    """

    lease_key: bytes
    version: int                        # 1 or 2
    state: int                          # R 0x01 | H 0x02 | W 0x04
    epoch: int = 0
    parent_lease_key: bytes = ZERO_GUID
    breaking: bool = False
    break_to_state: int = 0
    break_notification_pending: bool = False


@dataclass(frozen=True, slots=True)
class CreateIntent:
    """A persistent CREATE that creates or overwrites and has not answered yet
    (section 2; smbcad.server.intents).

    ``disposition`` is the request's CreateDisposition.  For an overwrite
    the record's ``file_dev``/``file_ino`` name the file as it was, and
    ``prior_change_time``/``prior_size`` (FILETIME, bytes) its state before
    the truncation, so the next owner can tell whether it happened; a
    create has ``file_ino`` 0 (the name was free)."""

    disposition: int
    prior_change_time: int = 0
    prior_size: int = 0


@dataclass(frozen=True, slots=True)
class PersistentOpen:
    """What survives of an Open ([MS-SMB2] 3.3.1.10) across a disconnect or restart.

    Keyed by ``durable_file_id`` (Open.DurableFileId, the persistent half of
    SMB2_FILEID); also found by ``create_guid`` (DH2C by CreateGuid, CREATE
    replay).  ``owner_user``/``owner_domain`` are Open.DurableOwner, with
    ``owner_sid`` (section 3) when the opener had a SID.
    ``file_dev``/``file_ino`` identify the file (volume id, inode), ``vfs_cookie`` is the VFS's
    opaque reopen state (the store never parses it, STYLE rule 10).
    ``disconnected_at_ms`` is None while a connection holds the open.
    """

    durable_file_id: int
    create_guid: bytes
    client_guid: bytes
    owner_user: str
    owner_domain: str
    share_name: str
    path: str
    file_dev: int = 0
    file_ino: int = 0
    vfs_cookie: bytes = b""
    desired_access: int = 0
    granted_access: int = 0
    share_access: int = 0
    create_options: int = 0
    file_attributes: int = 0
    is_directory: bool = False
    oplock_level: int = 0
    lease: LeaseRecord | None = None
    app_instance_id: bytes = ZERO_GUID
    app_instance_version: tuple[int, int] | None = None     # (High, Low), 3.1.1
    is_durable: bool = False
    is_persistent: bool = False
    is_resilient: bool = False
    durable_timeout_ms: int = 0
    resiliency_timeout_ms: int = 0
    disconnected_at_ms: int | None = None
    locks: tuple[LockRecord, ...] = ()
    lock_sequences: bytes = field(default=NO_LOCK_SEQUENCES, repr=False)
    delete_on_close: bool = False
    is_replay_eligible: bool = False
    channel_sequence: int = 0
    position: int = 0
    create_intent: CreateIntent | None = None       # section 2: not an open yet
    owner_sid: str = ""                             # section 3: "" for a local user
    record_version: int = 0
    unknown_sections: bytes = b""

    @property
    def timeout_ms(self) -> int:
        """How long the open outlives a disconnect: ResiliencyTimeout for a
        resilient open, DurableOpenTimeout otherwise (3.3.7.1)."""
        return self.resiliency_timeout_ms if self.is_resilient else self.durable_timeout_ms

    @property
    def expires_at_ms(self) -> int | None:
        if self.disconnected_at_ms is None:
            return None
        return self.disconnected_at_ms + self.timeout_ms

    def lock_sequence(self, index: int) -> int | None:
        """LockSequenceArray entry for LockSequenceIndex ``index`` (1..64,
        [MS-SMB2] 2.2.26): its SequenceNumber if Valid, else None."""
        entry = self.lock_sequences[index - 1]
        return entry & 0x0F if entry & _LOCK_SEQ_VALID else None

    def with_lock_sequence(self, index: int, sequence: int) -> "PersistentOpen":
        """The record with entry ``index`` set Valid with ``sequence`` (3.3.5.14)."""
        if not 1 <= index <= LOCK_SEQUENCE_ENTRIES or not 0 <= sequence <= 0x0F:
            raise ValueError(f"lock sequence index {index} / number {sequence} out of range")
        entries = bytearray(self.lock_sequences)
        entries[index - 1] = _LOCK_SEQ_VALID | sequence
        return replace(self, lock_sequences=bytes(entries))

    def disconnected(self, now_ms: int) -> "PersistentOpen":
        return replace(self, disconnected_at_ms=now_ms)

    def reconnected(self) -> "PersistentOpen":
        return replace(self, disconnected_at_ms=None)


_ALL_BUT_LAST_TWO = operator.attrgetter(*PersistentOpen.__slots__[:-2])


def with_record_version(record: PersistentOpen, version: int) -> PersistentOpen:
    """``replace(record, record_version=version)`` at half the cost: the
    store does this on every commit."""
    return PersistentOpen(*_ALL_BUT_LAST_TWO(record), version, record.unknown_sections)


# --- encoding ---------------------------------------------------------------------------

def _guid(value: bytes, name: str) -> bytes:
    if len(value) != 16:
        raise ValueError(f"{name} must be 16 bytes, got {len(value)}")
    return value


def _utf8(value: str) -> bytes:
    # surrogatepass: a name from UTF-16 may hold an unpaired surrogate; keep it exactly.
    return value.encode("utf-8", "surrogatepass")


def _lock_sequence_bytes(entries: bytes) -> bytes:
    if entries == NO_LOCK_SEQUENCES:
        return b"\x00"
    if len(entries) != LOCK_SEQUENCE_ENTRIES:
        raise ValueError("lock_sequences must be 64 bytes")
    out = bytearray(1)
    for index, entry in enumerate(entries):
        if entry:
            if entry & ~(_LOCK_SEQ_VALID | 0x0F):
                raise ValueError(f"lock sequence entry {index + 1} is {entry:#x}")
            out += bytes((index, entry))
    out[0] = (len(out) - 1) // 2
    return bytes(out)


def encode(record: PersistentOpen) -> bytes:
    """The record's exact bytes (envelope + section 1 + kept newer sections).

    Raises ValueError for a value the layout cannot hold."""
    r = record
    lease = r.lease
    flags = ((_DURABLE if r.is_durable else 0) | (_PERSISTENT if r.is_persistent else 0)
             | (_RESILIENT if r.is_resilient else 0)
             | (_DELETE_ON_CLOSE if r.delete_on_close else 0)
             | (_REPLAY_ELIGIBLE if r.is_replay_eligible else 0)
             | (_DIRECTORY if r.is_directory else 0))
    if r.app_instance_version is not None:
        flags |= _HAS_APP_VERSION
        version_high, version_low = r.app_instance_version
    else:
        version_high = version_low = 0
    if r.disconnected_at_ms is not None:
        flags |= _DISCONNECTED
        disconnected_at_ms = r.disconnected_at_ms
    else:
        disconnected_at_ms = 0
    if lease is not None:
        if lease.version not in (1, 2):
            raise ValueError(f"lease version {lease.version}")
        flags |= ((_LEASE_BREAKING if lease.breaking else 0)
                  | (_LEASE_BREAK_PENDING if lease.break_notification_pending else 0))
        lease_fields = (lease.version, _guid(lease.lease_key, "lease_key"),
                        _guid(lease.parent_lease_key, "parent_lease_key"),
                        lease.state, lease.break_to_state, lease.epoch)
    else:
        lease_fields = (0, ZERO_GUID, ZERO_GUID, 0, 0, 0)
    user, domain, share = _utf8(r.owner_user), _utf8(r.owner_domain), _utf8(r.share_name)
    path = _utf8(r.path)
    if max(len(user), len(domain), len(share)) > _U16_MAX:
        raise ValueError("owner or share name too long")
    try:
        fixed = _FIXED.pack(
            r.durable_file_id, _guid(r.create_guid, "create_guid"),
            _guid(r.client_guid, "client_guid"), _guid(r.app_instance_id, "app_instance_id"),
            version_high, version_low, r.file_dev, r.file_ino, r.position, disconnected_at_ms,
            r.desired_access, r.granted_access, r.share_access, r.create_options,
            r.file_attributes, r.durable_timeout_ms, r.resiliency_timeout_ms, flags,
            r.channel_sequence, r.oplock_level, *lease_fields)
        parts = [fixed, _U16.pack(len(user)), user, _U16.pack(len(domain)), domain,
                 _U16.pack(len(share)), share, _U32.pack(len(path)), path,
                 _U32.pack(len(r.vfs_cookie)), r.vfs_cookie, _U32.pack(len(r.locks))]
        parts += [_LOCK.pack(lock.offset, lock.length, 1 if lock.exclusive else 0)
                  for lock in r.locks]
    except struct.error as exc:
        raise ValueError(f"open {r.durable_file_id!r}: {exc}") from None
    parts.append(_lock_sequence_bytes(r.lock_sequences))
    body = b"".join(parts)
    schema = SCHEMA_VERSION
    intent = b""
    if r.create_intent is not None:
        try:
            intent = _SECTION.pack(_INTENT_SECTION, _INTENT.size) + _INTENT.pack(
                r.create_intent.disposition, r.create_intent.prior_change_time,
                r.create_intent.prior_size)
        except struct.error as exc:
            raise ValueError(f"intent {r.durable_file_id!r}: {exc}") from None
    owner_sid = b""
    if r.owner_sid:
        sid = _utf8(r.owner_sid)
        if len(sid) > _MAX_SID_TEXT:
            raise ValueError(f"owner SID of {r.durable_file_id!r} too long")
        owner_sid = _SECTION.pack(_OWNER_SID_SECTION, len(sid)) + sid
    if r.unknown_sections:
        schema = max(schema, max(version for version, _, _ in _sections(r.unknown_sections)))
    return b"".join((_ENVELOPE.pack(schema, MIN_READER_VERSION, r.record_version),
                     _SECTION.pack(1, len(body)), body, intent, owner_sid,
                     r.unknown_sections))


# --- decoding ---------------------------------------------------------------------------

Upgrade = Callable[[PersistentOpen], PersistentOpen]
# from-version → function giving the record as the next schema means it.
UPGRADES: Mapping[int, Upgrade] = MappingProxyType({})


def _sections(data: bytes, offset: int = 0):
    """(section_version, body, header offset) triples; RecordCorrupt if a length overruns."""
    end = len(data)
    while offset < end:
        if end - offset < _SECTION.size:
            raise RecordCorrupt("truncated section header")
        start = offset
        version, length = _SECTION.unpack_from(data, offset)
        offset += _SECTION.size
        if length > end - offset:
            raise RecordCorrupt(f"section {version} overruns the record")
        yield version, data[offset:offset + length], start
        offset += length


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise RecordCorrupt("a name is not UTF-8") from None


def _decode_section1(body: bytes, record_version: int, unknown: bytes,
                     intent: CreateIntent | None, owner_sid: str) -> PersistentOpen:
    # Straight-line offset arithmetic: this runs for every record at recovery.
    end = len(body)
    if end < _FIXED.size + _VAR_MIN:
        raise RecordCorrupt("section 1 too short")
    (durable_file_id, create_guid, client_guid, app_instance_id, version_high, version_low,
     file_dev, file_ino, position, disconnected_at_ms, desired_access, granted_access,
     share_access, create_options, file_attributes, durable_timeout_ms,
     resiliency_timeout_ms, flags, channel_sequence, oplock_level, lease_version, lease_key,
     parent_lease_key, lease_state, break_to_state, epoch) = _FIXED.unpack_from(body)
    if flags & ~_KNOWN_FLAGS:
        raise RecordCorrupt(f"unknown flags {flags & ~_KNOWN_FLAGS:#x} in section 1")
    texts = []
    offset = _FIXED.size
    for layout in (_U16, _U16, _U16, _U32, _U32):
        if offset + layout.size > end:
            raise RecordCorrupt("field overruns section 1")
        (length,) = layout.unpack_from(body, offset)
        offset += layout.size
        if offset + length > end:
            raise RecordCorrupt("field overruns section 1")
        texts.append(body[offset:offset + length])
        offset += length
    user, domain, share, path, cookie = texts
    if offset + _U32.size > end:
        raise RecordCorrupt("field overruns section 1")
    (lock_count,) = _U32.unpack_from(body, offset)
    offset += _U32.size
    if offset + lock_count * _LOCK.size + 1 > end:
        raise RecordCorrupt("lock list overruns section 1")
    locks = []
    for _ in range(lock_count):
        lock_offset, length, exclusive = _LOCK.unpack_from(body, offset)
        offset += _LOCK.size
        if exclusive > 1:
            raise RecordCorrupt("lock flags")
        locks.append(LockRecord(lock_offset, length, exclusive == 1))
    count = body[offset]
    offset += 1
    if offset + 2 * count != end:
        raise RecordCorrupt("section 1 length does not match its lock sequence array")
    if count:
        entries = bytearray(LOCK_SEQUENCE_ENTRIES)
        for i in range(offset, end, 2):
            index, entry = body[i], body[i + 1]
            if index >= LOCK_SEQUENCE_ENTRIES or entry & ~(_LOCK_SEQ_VALID | 0x0F):
                raise RecordCorrupt("lock sequence entry")
            entries[index] = entry
        lock_sequences = bytes(entries)
    else:
        lock_sequences = NO_LOCK_SEQUENCES
    if lease_version == 0:
        lease = None
    elif lease_version <= 2:
        lease = LeaseRecord(lease_key, lease_version, lease_state, epoch, parent_lease_key,
                            bool(flags & _LEASE_BREAKING), break_to_state,
                            bool(flags & _LEASE_BREAK_PENDING))
    else:
        raise RecordCorrupt(f"lease version {lease_version}")
    return PersistentOpen(
        durable_file_id, create_guid, client_guid, _text(user), _text(domain), _text(share),
        _text(path), file_dev, file_ino, cookie, desired_access, granted_access, share_access,
        create_options, file_attributes, bool(flags & _DIRECTORY), oplock_level, lease,
        app_instance_id, (version_high, version_low) if flags & _HAS_APP_VERSION else None,
        bool(flags & _DURABLE), bool(flags & _PERSISTENT), bool(flags & _RESILIENT),
        durable_timeout_ms, resiliency_timeout_ms,
        disconnected_at_ms if flags & _DISCONNECTED else None, tuple(locks), lock_sequences,
        bool(flags & _DELETE_ON_CLOSE), bool(flags & _REPLAY_ELIGIBLE), channel_sequence,
        position, intent, owner_sid, record_version, unknown)


def _decode_intent(data: bytes) -> tuple[CreateIntent, bytes]:
    """Section 2 at the start of ``data``; returns it and what follows."""
    version, body, _ = next(_sections(data))
    if len(body) != _INTENT.size:      # frozen, as section 1 is
        raise RecordCorrupt("intent section length")
    return CreateIntent(*_INTENT.unpack_from(body)), data[_SECTION.size + len(body):]


def decode(data: bytes, *, upgrades: Mapping[int, Upgrade] = UPGRADES) -> PersistentOpen:
    """The record in ``data``, upgraded to this schema.

    RecordCorrupt for bytes that are not a record, RecordTooNew for a record
    this schema must not interpret.  ``upgrades`` is there so the upgrade
    chain can be exercised before the first real schema change exists."""
    if len(data) < _HEAD.size:
        raise RecordCorrupt("truncated envelope")
    schema, min_reader, record_version, first, length = _HEAD.unpack_from(data)
    if min_reader > SCHEMA_VERSION:
        raise RecordTooNew(f"record needs schema {min_reader}, this smbcad reads {SCHEMA_VERSION}")
    if first != 1:
        raise RecordCorrupt(f"first section is {first}, not 1")
    end = _HEAD.size + length
    if end > len(data):
        raise RecordCorrupt("section 1 overruns the record")
    section1 = data[_HEAD.size:end]
    unknown = data[end:]
    intent = None
    if len(unknown) >= _U16.size and _U16.unpack_from(unknown)[0] == _INTENT_SECTION:
        intent, unknown = _decode_intent(unknown)
    owner_sid = ""
    if len(unknown) >= _U16.size and _U16.unpack_from(unknown)[0] == _OWNER_SID_SECTION:
        _, sid, _ = next(_sections(unknown))
        if len(sid) > _MAX_SID_TEXT:
            raise RecordCorrupt("owner SID section length")
        owner_sid, unknown = _text(sid), unknown[_SECTION.size + len(sid):]
    # Whatever follows is newer than this reader (sections are in order):
    # kept as it is.
    if unknown and any(version <= SCHEMA_VERSION for version, _, _ in _sections(unknown)):
        raise RecordCorrupt("sections out of order")
    record = _decode_section1(section1, record_version, unknown, intent, owner_sid)
    for version in range(schema, SCHEMA_VERSION):
        upgrade = upgrades.get(version)
        if upgrade is not None:
            record = upgrade(record)
    return record
