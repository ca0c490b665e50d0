"""Messages between the worker processes of one node, as bytes
(docs/multicore.md, "Messages between workers").

Sans-IO: ``smbcad.workers.mailbox`` carries these bytes in Unix datagrams;
this module only builds and reads them, numbers what a worker sends and
matches replies to the requests that wait for them.  A message is a hint,
never the state: its receiver re-checks the open-state database.

Layout, little-endian.  Header (18 bytes)::

    u8 version, u8 message type, u16 flags (reserved, sent 0, ignored),
    u16 sender (worker index), u32 sender generation, u32 sequence,
    u32 payload length

The generation is the sender's start generation, so a message from a dead
predecessor of the same worker index is recognisable.  Payloads::

    file key                 u64 volume id, u64 inode, u16 n, n bytes stream
                             name (UTF-8, surrogatepass; n = 0: the file itself)
    1 BreakRequest           file key, u64 open id, u32 break to, u8 is lease,
                             16 bytes lease key (zeros for an oplock)
    2 BreakDone              file key
    3 LocksChanged           file key
    4 ReleaseDurable         u64 open id, u32 request id, u64 deadline (the
                             system's CLOCK_MONOTONIC, ns: past it, nobody
                             waits for the open any more)
    5 ReleaseDurableReply    u32 request id, u64 open id, u32 status, u32 n,
                             n bytes the open's record (smbcad.store.records;
                             n = 0 unless the status is SUCCESS)
    6 LogoffSession          u64 session id, u32 request id, u16 n, n bytes the
                             user name of the new session (UTF-8)
    7 LogoffSessionReply     u32 request id, u32 status
    8 AdminQuery             u32 request id, u16 n, n bytes query (UTF-8)
    9 AdminReply             u32 request id, u32 n, n bytes JSON (UTF-8)
   10 BreakForOpen           file key, u32 access, u8 flags (bit 0 overwrite,
                             bit 1 sharing violation, bit 2 delete on close,
                             bit 3 take handle caching: a rename or deletion)
   11 ListingChanged         share, u32 m, m bytes directory path (UTF-8,
                             surrogatepass), 16 bytes the acting open's
                             ParentLeaseKey (zeros: none)
   12 OpensBelow             u32 request id, share, u32 m, m bytes directory path
   13 PeerStatus             u32 request id, u32 status (NTSTATUS)
   14 Renamed                u32 request id, file key, share, u32 m, m bytes
                             old path, u32 k, k bytes new path
   15 AppInstanceClose       u32 request id, file key, share, 16 bytes
                             AppInstanceId, 16 bytes the opener's ClientGuid,
                             u8 flags (bit 0 a version is given, bit 1 the
                             opener's dialect is 3.1.1, bit 2 its tree grants
                             the generic read rights), u64 version high,
                             u64 version low
   16 DeletePending          file key

A share is u16 n, n bytes of its name (UTF-8); paths are share-relative,
"/"-separated (UTF-8, surrogatepass).

Every message fits one datagram of at most ``MAX_MESSAGE`` bytes, and
``encode`` refuses a larger one rather than splitting it: a worker's answer
is one datagram, so the supervisor asks for long admin listings in pages
(the query text names the page) and merges them.
"""

import enum
import json
import struct
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import ClassVar

VERSION = 1
# Under 64 KiB with room to spare: a Unix datagram must fit the sender's
# SO_SNDBUF (212992 bytes by default), and several must be in flight at once.
MAX_MESSAGE = 60 * 1024

HEADER = struct.Struct("<BBHHIII")
_FILE_KEY = struct.Struct("<QQH")
_BREAK = struct.Struct("<QIB16s")
_ID_AND_REQUEST = struct.Struct("<QI")         # LogoffSession
_RELEASE = struct.Struct("<QIQ")               # ReleaseDurable
_RELEASE_REPLY = struct.Struct("<IQI")
_REQUEST_AND_STATUS = struct.Struct("<II")     # LogoffSessionReply
_REQUEST_AND_U16 = struct.Struct("<IH")        # AdminQuery
_REQUEST_AND_U32 = struct.Struct("<II")        # AdminReply
_ACCESS_AND_FLAGS = struct.Struct("<IB")       # BreakForOpen
_APP_INSTANCE = struct.Struct("<16s16sBQQ")     # AppInstanceClose, after the share
_APP_VERSION_GIVEN, _APP_DIALECT_311, _APP_MAY_CLOSE = 0x01, 0x02, 0x04
_U16 = struct.Struct("<H")
_U32_LENGTH = struct.Struct("<I")
_NO_LEASE_KEY = bytes(16)
_U32 = 1 << 32

FileKey = tuple[int, int] | tuple[int, int, str]
"""A file as the open-state database keys it: (volume id, inode) for the
file itself, (volume id, inode, stream name) for one of its streams."""


class MessageError(ValueError):
    """Bytes that are not a message of this version, or a message that
    cannot be encoded; the text says what was wrong."""


class MessageType(enum.IntEnum):
    BREAK_REQUEST = 1
    BREAK_DONE = 2
    LOCKS_CHANGED = 3
    RELEASE_DURABLE = 4
    RELEASE_DURABLE_REPLY = 5
    LOGOFF_SESSION = 6
    LOGOFF_SESSION_REPLY = 7
    ADMIN_QUERY = 8
    ADMIN_REPLY = 9
    BREAK_FOR_OPEN = 10
    LISTING_CHANGED = 11
    OPENS_BELOW = 12
    PEER_STATUS = 13
    RENAMED = 14
    APP_INSTANCE_CLOSE = 15
    DELETE_PENDING = 16


@dataclass(frozen=True, slots=True)
class Header:
    version: int
    message_type: MessageType
    flags: int
    sender: int             # the sending worker's index
    generation: int         # the sending worker's start generation
    sequence: int           # per sender, wraps at 2**32
    length: int             # payload bytes after the header


class _Reader:
    """Reads one payload front to back: running short, or leaving bytes
    over, is a MessageError naming the message."""

    __slots__ = ("data", "offset", "what")

    def __init__(self, data: memoryview, what: str) -> None:
        self.data, self.offset, self.what = data, 0, what

    def fields(self, layout: struct.Struct) -> tuple:
        return layout.unpack(self.take(layout.size))

    def take(self, length: int) -> bytes:
        end = self.offset + length
        if end > len(self.data):
            raise MessageError(f"{self.what}: payload of {len(self.data)} bytes is too short")
        chunk = bytes(self.data[self.offset:end])
        self.offset = end
        return chunk

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise MessageError(f"{self.what}: {len(self.data) - self.offset} trailing bytes")


def _text(raw: bytes, what: str, errors: str = "strict") -> str:
    try:
        return raw.decode("utf-8", errors)
    except UnicodeDecodeError as error:
        raise MessageError(f"{what}: not UTF-8 ({error.reason})") from None


def _pack_file_key(key: FileKey) -> bytes:
    if len(key) == 2:
        return _FILE_KEY.pack(key[0], key[1], 0)
    if len(key) != 3 or not key[2]:
        raise MessageError(f"file key {key!r}: (volume id, inode) or (volume id, inode, "
                           f"non-empty stream name)")
    stream = key[2].encode("utf-8", "surrogatepass")
    return _FILE_KEY.pack(key[0], key[1], len(stream)) + stream


def _pack_share(share: str, what: str) -> bytes:
    try:
        raw = share.encode("utf-8")
    except UnicodeEncodeError as error:
        raise MessageError(f"{what}: share is not UTF-8 ({error.reason})") from None
    return _U16.pack(len(raw)) + raw


def _read_share(reader: _Reader) -> str:
    return _text(reader.take(reader.fields(_U16)[0]), reader.what)


def _pack_path(path: str) -> bytes:
    raw = path.encode("utf-8", "surrogatepass")
    return _U32_LENGTH.pack(len(raw)) + raw


def _read_path(reader: _Reader) -> str:
    return _text(reader.take(reader.fields(_U32_LENGTH)[0]), reader.what, "surrogatepass")


def _read_file_key(reader: _Reader) -> FileKey:
    volume_id, inode, length = reader.fields(_FILE_KEY)
    if not length:
        return volume_id, inode
    return volume_id, inode, _text(reader.take(length), reader.what, "surrogatepass")


class _Message:
    """What every message has: its type code, ``encode()`` (the payload)
    and ``decode(payload)``, which insists on the whole payload."""

    __slots__ = ()
    TYPE: ClassVar[MessageType]

    def encode(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def read(cls, reader: _Reader) -> "_Message":
        raise NotImplementedError

    @classmethod
    def decode(cls, payload: bytes | memoryview) -> "_Message":
        reader = _Reader(memoryview(payload), cls.__name__)
        message = cls.read(reader)
        reader.finish()
        return message


class _FixedMessage(_Message):
    """A message whose payload is its fields, in order, packed by ``LAYOUT``."""

    __slots__ = ()
    LAYOUT: ClassVar[struct.Struct]

    def encode(self) -> bytes:
        return self.LAYOUT.pack(*(getattr(self, field.name) for field in fields(self)))

    @classmethod
    def read(cls, reader: _Reader) -> "_FixedMessage":
        return cls(*reader.fields(cls.LAYOUT))


class _FileKeyMessage(_Message):
    """A message whose payload is one file key (``file_key``)."""

    __slots__ = ()

    def encode(self) -> bytes:
        return _pack_file_key(self.file_key)

    @classmethod
    def read(cls, reader: _Reader) -> "_FileKeyMessage":
        return cls(_read_file_key(reader))


@dataclass(frozen=True, slots=True)
class BreakRequest(_Message):
    """Break the caching of open ``open_id`` to ``break_to`` ([MS-SMB2]
    3.3.4.6 oplock break, 3.3.4.7 lease break), sent to the worker holding
    that open.  ``break_to`` is a lease state (R=1, H=2, W=4) when
    ``is_lease``, else an oplock level."""

    TYPE: ClassVar[MessageType] = MessageType.BREAK_REQUEST
    file_key: FileKey
    open_id: int            # the holder's DurableFileId
    break_to: int
    is_lease: bool
    lease_key: bytes = _NO_LEASE_KEY

    def encode(self) -> bytes:
        if len(self.lease_key) != 16:
            raise MessageError(f"BreakRequest: lease key of {len(self.lease_key)} bytes")
        if not self.is_lease and self.lease_key != _NO_LEASE_KEY:
            raise MessageError("BreakRequest: an oplock break with a lease key")
        return _pack_file_key(self.file_key) + _BREAK.pack(
            self.open_id, self.break_to, int(self.is_lease), self.lease_key)

    @classmethod
    def read(cls, reader: _Reader) -> "BreakRequest":
        file_key = _read_file_key(reader)
        open_id, break_to, is_lease, lease_key = reader.fields(_BREAK)
        if is_lease > 1:
            raise MessageError(f"BreakRequest: is-lease byte {is_lease}")
        if not is_lease and lease_key != _NO_LEASE_KEY:
            raise MessageError("BreakRequest: an oplock break with a lease key")
        return cls(file_key, open_id, break_to, bool(is_lease), lease_key)


@dataclass(frozen=True, slots=True)
class BreakForOpen(_Message):
    """A client of the sender opens this file ([MS-FSA] 2.1.4.12 case OPEN):
    the receiver breaks its holders' caching as a local open of the same
    kind would (``oplocks.decide_open``); the sender re-checks the shared
    record for the outcome."""

    TYPE: ClassVar[MessageType] = MessageType.BREAK_FOR_OPEN
    OVERWRITE: ClassVar[int] = 0x01
    SHARING_VIOLATION: ClassVar[int] = 0x02
    DELETE_ON_CLOSE: ClassVar[int] = 0x04
    TAKE_HANDLE: ClassVar[int] = 0x08
    FLAGS: ClassVar[int] = 0x0F
    file_key: FileKey
    access: int
    flags: int

    def encode(self) -> bytes:
        if self.flags & ~self.FLAGS:
            raise MessageError(f"BreakForOpen: flags {self.flags:#x}")
        return _pack_file_key(self.file_key) + _ACCESS_AND_FLAGS.pack(self.access, self.flags)

    @classmethod
    def read(cls, reader: _Reader) -> "BreakForOpen":
        file_key = _read_file_key(reader)
        access, flags = reader.fields(_ACCESS_AND_FLAGS)
        if flags & ~cls.FLAGS:
            raise MessageError(f"BreakForOpen: flags {flags:#x}")
        return cls(file_key, access, flags)


@dataclass(frozen=True, slots=True)
class ListingChanged(_Message):
    """A directory's listing changed through the sender ([MS-FSA] 2.1.4.13):
    the receiver breaks its directory leases on it to none, except the one
    whose key is ``parent_lease_key``."""

    TYPE: ClassVar[MessageType] = MessageType.LISTING_CHANGED
    share: str
    directory: str
    parent_lease_key: bytes = _NO_LEASE_KEY

    def encode(self) -> bytes:
        if len(self.parent_lease_key) != 16:
            raise MessageError(f"ListingChanged: lease key of {len(self.parent_lease_key)} bytes")
        return (_pack_share(self.share, "ListingChanged") + _pack_path(self.directory)
                + self.parent_lease_key)

    @classmethod
    def read(cls, reader: _Reader) -> "ListingChanged":
        return cls(_read_share(reader), _read_path(reader), reader.take(16))


@dataclass(frozen=True, slots=True)
class PeerStatus(_FixedMessage):
    """A worker's answer to OpensBelow or Renamed: an NTSTATUS."""

    LAYOUT: ClassVar[struct.Struct] = _REQUEST_AND_STATUS
    TYPE: ClassVar[MessageType] = MessageType.PEER_STATUS
    request_id: int
    status: int


@dataclass(frozen=True, slots=True)
class OpensBelow(_Message):
    """Does the receiver have an open of anything below ``directory``?  A
    directory rename through the sender is refused while one is open
    ([MS-FSA] 2.1.5.15.12: STATUS_ACCESS_DENIED).  PeerStatus SUCCESS: none;
    ACCESS_DENIED: some."""

    TYPE: ClassVar[MessageType] = MessageType.OPENS_BELOW
    REPLY: ClassVar[type] = PeerStatus
    request_id: int
    share: str
    directory: str

    def encode(self) -> bytes:
        return (_U32_LENGTH.pack(self.request_id) + _pack_share(self.share, "OpensBelow")
                + _pack_path(self.directory))

    @classmethod
    def read(cls, reader: _Reader) -> "OpensBelow":
        request_id = reader.fields(_U32_LENGTH)[0]
        return cls(request_id, _read_share(reader), _read_path(reader))


@dataclass(frozen=True, slots=True)
class Renamed(_Message):
    """The sender renamed ``file_key`` from ``old_path`` to ``new_path``: the
    receiver's opens of it, and of anything below a renamed directory, live
    at the new name (their delete-on-close, persistent records, name
    queries).  PeerStatus SUCCESS once their records say so."""

    TYPE: ClassVar[MessageType] = MessageType.RENAMED
    REPLY: ClassVar[type] = PeerStatus
    request_id: int
    file_key: FileKey
    share: str
    old_path: str
    new_path: str

    def encode(self) -> bytes:
        return (_U32_LENGTH.pack(self.request_id) + _pack_file_key(self.file_key)
                + _pack_share(self.share, "Renamed") + _pack_path(self.old_path)
                + _pack_path(self.new_path))

    @classmethod
    def read(cls, reader: _Reader) -> "Renamed":
        request_id = reader.fields(_U32_LENGTH)[0]
        file_key = _read_file_key(reader)
        return cls(request_id, file_key, _read_share(reader), _read_path(reader),
                   _read_path(reader))


@dataclass(frozen=True, slots=True)
class AppInstanceClose(_Message):
    """A CREATE through the sender carries ``app_instance_id`` ([MS-SMB2]
    3.3.5.9.13): the receiver closes its opens of ``file_key`` on ``share``
    with that AppInstanceId made by another client (a VM moved to another
    Hyper-V host).  ``version``: (high, low) of the CREATE's
    AppInstanceVersion context, or None; ``may_close``: the opener's tree
    grants the generic read rights (else versions are checked, nothing is
    closed).  PeerStatus SUCCESS (closed, or none), or FILE_FORCED_CLOSED
    when a stale open's version refuses it."""

    TYPE: ClassVar[MessageType] = MessageType.APP_INSTANCE_CLOSE
    REPLY: ClassVar[type] = PeerStatus
    request_id: int
    file_key: FileKey
    share: str
    app_instance_id: bytes
    client_guid: bytes
    version: tuple[int, int] | None
    dialect_311: bool
    may_close: bool

    def encode(self) -> bytes:
        flags = ((_APP_VERSION_GIVEN if self.version is not None else 0)
                 | (_APP_DIALECT_311 if self.dialect_311 else 0)
                 | (_APP_MAY_CLOSE if self.may_close else 0))
        high, low = self.version if self.version is not None else (0, 0)
        return (_U32_LENGTH.pack(self.request_id) + _pack_file_key(self.file_key)
                + _pack_share(self.share, "AppInstanceClose")
                + _APP_INSTANCE.pack(self.app_instance_id, self.client_guid, flags, high, low))

    @classmethod
    def read(cls, reader: _Reader) -> "AppInstanceClose":
        request_id = reader.fields(_U32_LENGTH)[0]
        file_key = _read_file_key(reader)
        share = _read_share(reader)
        app_id, client_guid, flags, high, low = reader.fields(_APP_INSTANCE)
        return cls(request_id, file_key, share, app_id, client_guid,
                   (high, low) if flags & _APP_VERSION_GIVEN else None,
                   bool(flags & _APP_DIALECT_311), bool(flags & _APP_MAY_CLOSE))


@dataclass(frozen=True, slots=True)
class BreakDone(_FileKeyMessage):
    """The caching state of this file changed: CREATEs waiting for a break
    ([MS-SMB2] 3.3.4.6, 3.3.4.7, 3.3.5.9) re-check the shared record."""

    TYPE: ClassVar[MessageType] = MessageType.BREAK_DONE
    file_key: FileKey


@dataclass(frozen=True, slots=True)
class DeletePending(_FileKeyMessage):
    """A close through the sender left directory ``file_key`` delete-pending
    while others still have it open: the receiver's CHANGE_NOTIFY requests
    on it complete with STATUS_DELETE_PENDING ([MS-FSA] 2.1.5.15.3)."""

    TYPE: ClassVar[MessageType] = MessageType.DELETE_PENDING
    file_key: FileKey


@dataclass(frozen=True, slots=True)
class LocksChanged(_FileKeyMessage):
    """Byte-range locks of this file were released: pending LOCK requests
    ([MS-FSA] 2.1.5.8, [MS-SMB2] 3.3.5.14) on it try again."""

    TYPE: ClassVar[MessageType] = MessageType.LOCKS_CHANGED
    file_key: FileKey


@dataclass(frozen=True, slots=True)
class ReleaseDurableReply(_Message):
    """``status`` SUCCESS: the receiver let go of the open, and ``record`` is
    the open as the handle store encodes it (``smbcad.store.records``), for
    the asker to adopt; OBJECT_NAME_NOT_FOUND: it holds no such open that
    may move."""

    TYPE: ClassVar[MessageType] = MessageType.RELEASE_DURABLE_REPLY
    request_id: int
    open_id: int
    status: int
    record: bytes = b""

    def encode(self) -> bytes:
        return (_RELEASE_REPLY.pack(self.request_id, self.open_id, self.status)
                + _U32_LENGTH.pack(len(self.record)) + self.record)

    @classmethod
    def read(cls, reader: _Reader) -> "ReleaseDurableReply":
        request_id, open_id, status = reader.fields(_RELEASE_REPLY)
        return cls(request_id, open_id, status, reader.take(reader.fields(_U32_LENGTH)[0]))


@dataclass(frozen=True, slots=True)
class ReleaseDurable(_FixedMessage):
    """Give up this disconnected durable open so the sender can adopt it: a
    reconnect ([MS-SMB2] 3.3.5.9.7, 3.3.5.9.12) from a client whose
    ClientGuid routed it to another worker than the one holding the open
    (``smbcad.server.durable_handover``)."""

    LAYOUT: ClassVar[struct.Struct] = _RELEASE
    TYPE: ClassVar[MessageType] = MessageType.RELEASE_DURABLE
    REPLY: ClassVar[type] = ReleaseDurableReply
    open_id: int
    request_id: int
    # time.monotonic_ns() (one clock for every process of the machine) past
    # which the sender has stopped waiting: the holder then keeps the open,
    # which nobody would adopt.
    deadline_ns: int = 0


@dataclass(frozen=True, slots=True)
class LogoffSessionReply(_FixedMessage):
    LAYOUT: ClassVar[struct.Struct] = _REQUEST_AND_STATUS
    TYPE: ClassVar[MessageType] = MessageType.LOGOFF_SESSION_REPLY
    request_id: int
    status: int


@dataclass(frozen=True, slots=True)
class LogoffSession(_Message):
    """End session ``session_id`` if the receiver holds it and ``user`` is
    its user, keeping its durable opens for a reconnect: a SESSION_SETUP
    with PreviousSessionId ([MS-SMB2] 3.3.5.5.3) on another worker.
    LogoffSessionReply SUCCESS: it ended; USER_SESSION_DELETED: not here."""

    TYPE: ClassVar[MessageType] = MessageType.LOGOFF_SESSION
    REPLY: ClassVar[type] = LogoffSessionReply
    session_id: int
    request_id: int
    user: str = ""

    def encode(self) -> bytes:
        try:
            raw = self.user.encode("utf-8")
        except UnicodeEncodeError as error:
            raise MessageError(f"LogoffSession: user is not UTF-8 ({error.reason})") from None
        return _ID_AND_REQUEST.pack(self.session_id, self.request_id) + _U16.pack(len(raw)) + raw

    @classmethod
    def read(cls, reader: _Reader) -> "LogoffSession":
        session_id, request_id = reader.fields(_ID_AND_REQUEST)
        return cls(session_id, request_id, _text(reader.take(reader.fields(_U16)[0]), reader.what))


@dataclass(frozen=True, slots=True)
class AdminReply(_Message):
    """A worker's answer to an AdminQuery.  ``payload`` is JSON-able (dicts
    with string keys, lists, str, int, float, bool, None): it travels as
    JSON, so tuples come back as lists."""

    TYPE: ClassVar[MessageType] = MessageType.ADMIN_REPLY
    request_id: int
    payload: object

    def encode(self) -> bytes:
        try:
            body = json.dumps(self.payload, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            raise MessageError(f"AdminReply: payload is not JSON ({error})") from None
        raw = body.encode("ascii")      # ensure_ascii: lone surrogates survive as escapes
        return _REQUEST_AND_U32.pack(self.request_id, len(raw)) + raw

    @classmethod
    def read(cls, reader: _Reader) -> "AdminReply":
        request_id, length = reader.fields(_REQUEST_AND_U32)
        body = _text(reader.take(length), reader.what)
        try:
            payload = json.loads(body)
        except ValueError as error:
            raise MessageError(f"AdminReply: payload is not JSON ({error})") from None
        return cls(request_id, payload)


@dataclass(frozen=True, slots=True)
class AdminQuery(_Message):
    """The supervisor asks a worker for an admin listing (``query`` names
    it: "sessions", "opens", ...; a page of it when it is long)."""

    TYPE: ClassVar[MessageType] = MessageType.ADMIN_QUERY
    REPLY: ClassVar[type] = AdminReply
    request_id: int
    query: str

    def encode(self) -> bytes:
        try:
            raw = self.query.encode("utf-8")
        except UnicodeEncodeError as error:
            raise MessageError(f"AdminQuery: query is not UTF-8 ({error.reason})") from None
        return _REQUEST_AND_U16.pack(self.request_id, len(raw)) + raw

    @classmethod
    def read(cls, reader: _Reader) -> "AdminQuery":
        request_id, length = reader.fields(_REQUEST_AND_U16)
        return cls(request_id, _text(reader.take(length), reader.what))


Message = (BreakRequest | BreakDone | LocksChanged | ReleaseDurable | ReleaseDurableReply
           | LogoffSession | LogoffSessionReply | AdminQuery | AdminReply | BreakForOpen
           | ListingChanged | OpensBelow | PeerStatus | Renamed | AppInstanceClose
           | DeletePending)
Request = ReleaseDurable | LogoffSession | AdminQuery | OpensBelow | Renamed | AppInstanceClose
Reply = ReleaseDurableReply | LogoffSessionReply | AdminReply | PeerStatus

MESSAGE_TYPES = MappingProxyType({kind.TYPE: kind for kind in (
    BreakRequest, BreakDone, LocksChanged, ReleaseDurable, ReleaseDurableReply,
    LogoffSession, LogoffSessionReply, AdminQuery, AdminReply, BreakForOpen, ListingChanged,
    OpensBelow, PeerStatus, Renamed, AppInstanceClose, DeletePending)})
"""Type code → message class: what ``decode`` accepts."""


def encode(message: Message, *, sender: int, generation: int, sequence: int) -> bytes:
    """The datagram carrying ``message`` from worker ``sender``."""
    name = type(message).__name__
    try:
        payload = message.encode()
    except struct.error as error:
        raise MessageError(f"{name}: a field is out of range ({error})") from None
    try:
        header = HEADER.pack(VERSION, message.TYPE, 0, sender, generation, sequence, len(payload))
    except struct.error:
        raise MessageError(f"{name}: header out of range (sender {sender}, generation "
                           f"{generation}, sequence {sequence})") from None
    size = HEADER.size + len(payload)
    if size > MAX_MESSAGE:
        raise MessageError(f"{name} of {size} bytes is over MAX_MESSAGE ({MAX_MESSAGE})")
    return header + payload


def decode(data: bytes | memoryview) -> tuple[Header, Message]:
    """One datagram → its header and message, or MessageError."""
    view = memoryview(data)
    if len(view) < HEADER.size:
        raise MessageError(f"{len(view)} bytes: shorter than the {HEADER.size}-byte header")
    if len(view) > MAX_MESSAGE:
        raise MessageError(f"{len(view)} bytes: over MAX_MESSAGE ({MAX_MESSAGE})")
    version, code, flags, sender, generation, sequence, length = HEADER.unpack_from(view)
    if version != VERSION:
        raise MessageError(f"version {version}: this node speaks version {VERSION}")
    kind = MESSAGE_TYPES.get(code)
    if kind is None:
        raise MessageError(f"unknown message type {code}")
    carried = len(view) - HEADER.size
    if length != carried:
        raise MessageError(f"{kind.__name__}: header says {length} payload bytes, "
                           f"the datagram carries {carried}")
    message = kind.decode(view[HEADER.size:])
    return Header(version, kind.TYPE, flags, sender, generation, sequence, length), message


class Sequencer:
    """The sequence numbers of one sender: 0, 1, ..., 2**32 - 1, 0, ...
    They number messages for logs and for spotting loss; nothing orders by
    them across a wrap."""

    __slots__ = ("_next",)

    def __init__(self, start: int = 0) -> None:
        if not 0 <= start < _U32:
            raise ValueError(f"sequence {start} is not a u32")
        self._next = start

    def next(self) -> int:
        sequence = self._next
        self._next = (sequence + 1) % _U32
        return sequence


class ReplyWaiters:
    """Requests this worker sent and that wait for their reply: request id
    → the caller's token (in the shell, the future to resolve).  A reply
    nobody waits for (unknown, late after a timeout, or a duplicate)
    resolves to None and is dropped."""

    __slots__ = ("_waiting", "_next_id")

    def __init__(self, first_request_id: int = 0) -> None:
        self._waiting: dict[int, tuple[object, type | None]] = {}
        self._next_id = first_request_id

    def new_request_id(self) -> int:
        """An id no waiting request has (ids wrap at 2**32)."""
        if len(self._waiting) >= _U32:
            raise ValueError("every request id is waiting")
        while self._next_id in self._waiting:
            self._next_id = (self._next_id + 1) % _U32
        request_id, self._next_id = self._next_id, (self._next_id + 1) % _U32
        return request_id

    def register(self, request_id: int, token: object, *, expects: type | None = None) -> None:
        """Wait for the reply to ``request_id``; with ``expects`` (a reply
        class, e.g. ``ReleaseDurable.REPLY``) a reply of another type does
        not resolve it."""
        if request_id in self._waiting:
            raise ValueError(f"request {request_id} is already waiting")
        self._waiting[request_id] = (token, expects)

    def resolve(self, reply: Reply) -> object | None:
        """The token waiting for ``reply``, no longer waiting; None if none."""
        waiting = self._waiting.get(reply.request_id)
        if waiting is None:
            return None
        token, expects = waiting
        if expects is not None and not isinstance(reply, expects):
            return None
        del self._waiting[reply.request_id]
        return token

    def discard(self, request_id: int) -> object | None:
        """Stop waiting (the caller gave up): its token, or None."""
        waiting = self._waiting.pop(request_id, None)
        return None if waiting is None else waiting[0]

    def __len__(self) -> int:
        return len(self._waiting)

