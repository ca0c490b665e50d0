"""SMB2_CREATE_CONTEXT chains ([MS-SMB2] 2.2.13.2, 2.2.14.2), parsed once into
a typed bundle (shared/STYLE.md rule 6).

``parse_create_contexts`` walks the chain of a CREATE request, looks every
name up in ``_REGISTRY`` and returns a frozen ``CreateContexts`` with one
field per known tag.  ``CreateContexts.validate`` holds the rules about which
contexts may appear together, each quoting its section.  The response side is
``encode_create_contexts`` plus one small builder per response context.

Also home of ``FileId`` (SMB2_FILEID, 2.2.14.1): DHnC and DH2C carry one, and
every handle-based command imports it from here (or from ``create``).
"""

import struct
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from smbcad.proto._util import align8
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

_FILE_ID = struct.Struct("<QQ")
# SMB2_CREATE_CONTEXT header (2.2.13.2): Next, NameOffset, NameLength,
# Reserved, DataOffset, DataLength.
_CONTEXT_HEADER = struct.Struct("<IHHHHI")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_DH2Q = struct.Struct("<II8s16s")          # 2.2.13.2.11
_DH2C = struct.Struct("<QQ16sI")           # 2.2.13.2.12
_LEASE_V1 = struct.Struct("<16sIIQ")       # 2.2.13.2.8 / 2.2.14.2.10
_LEASE_V2 = struct.Struct("<16sIIQ16sHH")  # 2.2.13.2.10 / 2.2.14.2.11
_APP_INSTANCE_ID = struct.Struct("<HH16s")         # 2.2.13.2.13
_APP_INSTANCE_VERSION = struct.Struct("<HHIQQ")    # 2.2.13.2.15
_MXAC_RESPONSE = struct.Struct("<II")      # 2.2.14.2.5
_QFID_RESPONSE = struct.Struct("<QQ16s")   # 2.2.14.2.9
_DH2Q_RESPONSE = struct.Struct("<II")      # 2.2.14.2.12


class FileId(NamedTuple):
    """SMB2_FILEID (2.2.14.1): the persistent and volatile halves of a handle."""

    persistent: int
    volatile: int

    def encode(self) -> bytes:
        return _FILE_ID.pack(self.persistent, self.volatile)

    @classmethod
    def unpack_from(cls, buf, offset: int = 0) -> "FileId":
        return cls(*_FILE_ID.unpack_from(buf, offset))


# The FileId of a related compound request that uses the previous handle (3.3.5.2.7.2).
RELATED_FILE_ID = FileId(0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)


class ContextName:
    """Create-context names as they appear on the wire (2.2.13.2, 2.2.14.2)."""

    EA_BUFFER = b"ExtA"
    SD_BUFFER = b"SecD"
    DURABLE_HANDLE_REQUEST = b"DHnQ"
    DURABLE_HANDLE_RECONNECT = b"DHnC"
    ALLOCATION_SIZE = b"AlSi"
    QUERY_MAXIMAL_ACCESS_REQUEST = b"MxAc"
    TIMEWARP_TOKEN = b"TWrp"
    QUERY_ON_DISK_ID = b"QFid"
    REQUEST_LEASE = b"RqLs"                 # v1 and v2, told apart by DataLength
    DURABLE_HANDLE_REQUEST_V2 = b"DH2Q"
    DURABLE_HANDLE_RECONNECT_V2 = b"DH2C"
    APP_INSTANCE_ID = bytes.fromhex("45BCA66AEFA7F74A9008FA462E144D74")
    APP_INSTANCE_VERSION = bytes.fromhex("B982D0B73B56074FA07B524A8116A010")
    SVHDX_OPEN_DEVICE_CONTEXT = bytes.fromhex("9CCBCF9E04C1E643980E158DA1F6EC83")
    # SMB2_CREATECONTEXT_RESERVED in 2.2.13.2; the SMB3 POSIX extensions' context.
    POSIX = bytes.fromhex("93AD25509CB411E7B42383DE968BCD7C")


class LeaseState:
    """SMB2_LEASE_* state bits (2.2.13.2.8)."""

    NONE = 0x00
    READ_CACHING = 0x01
    HANDLE_CACHING = 0x02
    WRITE_CACHING = 0x04


class LeaseFlags:
    """Lease Flags of 2.2.13.2.10, 2.2.14.2.10 and 2.2.14.2.11."""

    BREAK_IN_PROGRESS = 0x02
    PARENT_LEASE_KEY_SET = 0x04


DHANDLE_FLAG_PERSISTENT = 0x00000002   # 2.2.13.2.11, 2.2.13.2.12, 2.2.14.2.12
LEASE_V1_SIZE = _LEASE_V1.size         # 0x20
LEASE_V2_SIZE = _LEASE_V2.size         # 0x34
ZERO_KEY = bytes(16)


class CreateContext(NamedTuple):
    """One raw SMB2_CREATE_CONTEXT: its name and its data, as received or to send."""

    name: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class DurableHandleRequestV2:
    """SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2, "DH2Q" (2.2.13.2.11)."""

    timeout: int          # milliseconds; 0 asks for the server default
    flags: int            # DHANDLE_FLAG_PERSISTENT
    create_guid: bytes

    @property
    def persistent(self) -> bool:
        return bool(self.flags & DHANDLE_FLAG_PERSISTENT)


@dataclass(frozen=True, slots=True)
class DurableHandleReconnectV2:
    """SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2, "DH2C" (2.2.13.2.12)."""

    file_id: FileId
    create_guid: bytes
    flags: int

    @property
    def persistent(self) -> bool:
        return bool(self.flags & DHANDLE_FLAG_PERSISTENT)


@dataclass(frozen=True, slots=True)
class MaximalAccessRequest:
    """SMB2_CREATE_QUERY_MAXIMAL_ACCESS_REQUEST, "MxAc" (2.2.13.2.5).

    ``timestamp`` is None when the data is empty: return access unconditionally
    (3.3.5.9.5).
    """

    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """SMB2_CREATE_REQUEST_LEASE (v1, 2.2.13.2.8) or _V2 (2.2.13.2.10), "RqLs".

    v1 carries no ParentLeaseKey/Epoch; they read as zero.  ``flags`` is
    LeaseFlags in v1 (reserved) and Flags in v2.
    """

    lease_key: bytes
    lease_state: int
    flags: int = 0
    lease_duration: int = 0
    parent_lease_key: bytes = ZERO_KEY
    epoch: int = 0
    version: int = 1

    @property
    def parent_lease_key_set(self) -> bool:
        return self.version == 2 and bool(self.flags & LeaseFlags.PARENT_LEASE_KEY_SET)


@dataclass(frozen=True, slots=True)
class AppInstanceVersion:
    """SMB2_CREATE_APP_INSTANCE_VERSION (2.2.13.2.15)."""

    app_instance_version_high: int
    app_instance_version_low: int


@dataclass(frozen=True, slots=True)
class CreateContexts:
    """Every context of one CREATE request, by tag; absent ones are None/False.

    ``entries`` keeps the raw chain in wire order; ``unknown`` lists the names
    nobody registered (ignored per 2.2.13.2, recorded for logs).
    """

    ea_buffer: bytes | None = None                                     # ExtA
    sd_buffer: bytes | None = None                                     # SecD
    durable_handle_request: bool = False                               # DHnQ
    durable_handle_reconnect: FileId | None = None                     # DHnC
    allocation_size: int | None = None                                 # AlSi
    query_maximal_access: MaximalAccessRequest | None = None           # MxAc
    timewarp_token: int | None = None                                  # TWrp
    query_on_disk_id: bool = False                                     # QFid
    lease: LeaseRequest | None = None                                  # RqLs
    durable_handle_request_v2: DurableHandleRequestV2 | None = None    # DH2Q
    durable_handle_reconnect_v2: DurableHandleReconnectV2 | None = None  # DH2C
    app_instance_id: bytes | None = None
    app_instance_version: AppInstanceVersion | None = None
    svhdx_open_device_context: bytes | None = None
    posix: bytes | None = None
    entries: tuple[CreateContext, ...] = ()
    unknown: tuple[bytes, ...] = ()

    @property
    def is_reconnect(self) -> bool:
        """DHnC or DH2C: no path validation or open execution (3.3.5.9.7, 3.3.5.9.12)."""
        return (self.durable_handle_reconnect is not None
                or self.durable_handle_reconnect_v2 is not None)

    def validate(self) -> None:
        """Reject illegal combinations with STATUS_INVALID_PARAMETER.

        Allowed on purpose: DHnQ with DHnC (3.3.5.9.6: "If the create request
        also includes an SMB2_CREATE_DURABLE_HANDLE_RECONNECT create context,
        the server MUST process the create context as specified in section
        3.3.5.9.7 and skip this section" - DHnQ is then ignored).
        """
        dhnq = self.durable_handle_request
        dhnc = self.durable_handle_reconnect is not None
        dh2q = self.durable_handle_request_v2 is not None
        dh2c = self.durable_handle_reconnect_v2 is not None
        # 3.3.5.9.10: "If the create request also includes an
        # SMB2_CREATE_DURABLE_HANDLE_REQUEST create context, or an
        # SMB2_CREATE_DURABLE_HANDLE_RECONNECT or
        # SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2 create context, the server
        # MUST fail the create request with STATUS_INVALID_PARAMETER."
        if dh2q and (dhnq or dhnc or dh2c):
            raise SmbError(NtStatus.INVALID_PARAMETER, "DH2Q with DHnQ/DHnC/DH2C")
        # 3.3.5.9.12: "The CREATE request also contains the
        # SMB2_CREATE_DURABLE_HANDLE_REQUEST context, the
        # SMB2_CREATE_DURABLE_HANDLE_RECONNECT context, or the
        # SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2 context" -> STATUS_INVALID_PARAMETER.
        if dh2c and (dhnq or dhnc or dh2q):
            raise SmbError(NtStatus.INVALID_PARAMETER, "DH2C with DHnQ/DHnC/DH2Q")
        # 3.3.5.9.6: "If the create request also includes an
        # SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2 or
        # SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2 create context, the server
        # SHOULD fail the create request with STATUS_INVALID_PARAMETER."
        # (Covered by the two rules above; kept for the citation.)
        # 3.3.5.9.7: "If the create request also contains an
        # SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2 or
        # SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2 create context, the server
        # SHOULD fail the request with STATUS_INVALID_PARAMETER."
        # (Likewise covered above.)


# --- per-tag parsers (the registry's values) -------------------------------

def _exact(data, size: int, what: str) -> None:
    if len(data) != size:
        raise SmbError(NtStatus.INVALID_PARAMETER, f"{what} context must be {size} bytes")


def _parse_raw(data) -> bytes:
    return bytes(data)


def _parse_durable_handle_request(data) -> bool:
    _exact(data, 16, "DHnQ")          # 2.2.13.2.3: 16 reserved bytes
    return True


def _parse_durable_handle_reconnect(data) -> FileId:
    _exact(data, 16, "DHnC")          # 2.2.13.2.4: an SMB2_FILEID
    return FileId.unpack_from(data)


def _parse_u64(data) -> int:
    _exact(data, 8, "AlSi/TWrp")      # 2.2.13.2.6, 2.2.13.2.7
    return _U64.unpack_from(data)[0]


def _parse_maximal_access(data) -> MaximalAccessRequest:
    if len(data) == 0:                # 2.2.13.2.5: a Timestamp or empty
        return MaximalAccessRequest()
    _exact(data, 8, "MxAc")
    return MaximalAccessRequest(_U64.unpack_from(data)[0])


def _parse_query_on_disk_id(data) -> bool:
    _exact(data, 0, "QFid")           # 2.2.13.2.9: "MUST be empty"
    return True


def _parse_lease(data) -> LeaseRequest:
    """v1 (0x20) or v2 (0x34) by DataLength; anything else is invalid
    (3.3.5.9 "Oplock Acquisition")."""
    if len(data) == LEASE_V1_SIZE:
        key, state, flags, duration = _LEASE_V1.unpack_from(data)
        return LeaseRequest(bytes(key), state, flags, duration)
    if len(data) == LEASE_V2_SIZE:
        key, state, flags, duration, parent, epoch, _ = _LEASE_V2.unpack_from(data)
        return LeaseRequest(bytes(key), state, flags, duration, bytes(parent), epoch, 2)
    raise SmbError(NtStatus.INVALID_PARAMETER, "RqLs must be 0x20 or 0x34 bytes")


def _parse_dh2q(data) -> DurableHandleRequestV2:
    _exact(data, _DH2Q.size, "DH2Q")
    timeout, flags, _, create_guid = _DH2Q.unpack_from(data)
    return DurableHandleRequestV2(timeout, flags, bytes(create_guid))


def _parse_dh2c(data) -> DurableHandleReconnectV2:
    _exact(data, _DH2C.size, "DH2C")
    persistent, volatile, create_guid, flags = _DH2C.unpack_from(data)
    return DurableHandleReconnectV2(FileId(persistent, volatile), bytes(create_guid), flags)


def _parse_app_instance_id(data) -> bytes:
    # 2.2.13.2.13; the server MAY validate StructureSize (3.3.5.9.13) and does.
    _exact(data, _APP_INSTANCE_ID.size, "APP_INSTANCE_ID")
    size, _, app_instance_id = _APP_INSTANCE_ID.unpack_from(data)
    if size != 20:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad APP_INSTANCE_ID StructureSize")
    return bytes(app_instance_id)


def _parse_app_instance_version(data) -> AppInstanceVersion:
    _exact(data, _APP_INSTANCE_VERSION.size, "APP_INSTANCE_VERSION")
    size, _, _, high, low = _APP_INSTANCE_VERSION.unpack_from(data)
    if size != 24:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad APP_INSTANCE_VERSION StructureSize")
    return AppInstanceVersion(high, low)


# name -> (CreateContexts field, parser)
_REGISTRY = {
    ContextName.EA_BUFFER: ("ea_buffer", _parse_raw),
    ContextName.SD_BUFFER: ("sd_buffer", _parse_raw),
    ContextName.DURABLE_HANDLE_REQUEST: ("durable_handle_request", _parse_durable_handle_request),
    ContextName.DURABLE_HANDLE_RECONNECT: ("durable_handle_reconnect",
                                           _parse_durable_handle_reconnect),
    ContextName.ALLOCATION_SIZE: ("allocation_size", _parse_u64),
    ContextName.QUERY_MAXIMAL_ACCESS_REQUEST: ("query_maximal_access", _parse_maximal_access),
    ContextName.TIMEWARP_TOKEN: ("timewarp_token", _parse_u64),
    ContextName.QUERY_ON_DISK_ID: ("query_on_disk_id", _parse_query_on_disk_id),
    ContextName.REQUEST_LEASE: ("lease", _parse_lease),
    ContextName.DURABLE_HANDLE_REQUEST_V2: ("durable_handle_request_v2", _parse_dh2q),
    ContextName.DURABLE_HANDLE_RECONNECT_V2: ("durable_handle_reconnect_v2", _parse_dh2c),
    ContextName.APP_INSTANCE_ID: ("app_instance_id", _parse_app_instance_id),
    ContextName.APP_INSTANCE_VERSION: ("app_instance_version", _parse_app_instance_version),
    ContextName.SVHDX_OPEN_DEVICE_CONTEXT: ("svhdx_open_device_context", _parse_raw),
    ContextName.POSIX: ("posix", _parse_raw),
}


def split_create_contexts(buf) -> tuple[CreateContext, ...]:
    """Walk a raw SMB2_CREATE_CONTEXT chain (2.2.13.2) without interpreting it.

    Each context spans ``Next`` bytes (the rest of ``buf`` for the last one);
    its name and data must lie inside that span.  NameLength < 4 or a name or
    data outside the context is STATUS_INVALID_PARAMETER (3.3.5.9 "Create
    Context Validation").  Offsets are relative to each context; alignment is
    not enforced on receipt.
    """
    out = []
    pos = 0
    end = len(buf)
    while pos < end:
        remaining = end - pos
        if remaining < _CONTEXT_HEADER.size:
            raise SmbError(NtStatus.INVALID_PARAMETER, "truncated create context")
        (next_offset, name_offset, name_length, _, data_offset,
         data_length) = _CONTEXT_HEADER.unpack_from(buf, pos)
        if next_offset:
            if next_offset < _CONTEXT_HEADER.size or next_offset > remaining:
                raise SmbError(NtStatus.INVALID_PARAMETER, "bad create context Next")
            span = next_offset
        else:
            span = remaining
        if name_length < 4:
            raise SmbError(NtStatus.INVALID_PARAMETER, "create context NameLength < 4")
        if name_offset < _CONTEXT_HEADER.size or name_offset + name_length > span:
            raise SmbError(NtStatus.INVALID_PARAMETER, "create context name outside context")
        if data_length:
            # DataOffset is ignored when DataLength is 0 (2.2.13.2).
            if data_offset < _CONTEXT_HEADER.size or data_offset + data_length > span:
                raise SmbError(NtStatus.INVALID_PARAMETER, "create context data outside context")
            data = bytes(buf[pos + data_offset:pos + data_offset + data_length])
        else:
            data = b""
        out.append(CreateContext(bytes(buf[pos + name_offset:pos + name_offset + name_length]),
                                 data))
        if not next_offset:
            break
        pos += next_offset
    return tuple(out)


def parse_create_contexts(buf) -> CreateContexts:
    """Split the chain and decode every registered tag into ``CreateContexts``.

    A known tag given twice is STATUS_INVALID_PARAMETER; unknown tags are
    ignored (2.2.13.2 lists the valid names; others have no meaning) but
    recorded in ``unknown``, duplicates included.
    """
    entries = split_create_contexts(buf)
    fields: dict[str, object] = {}
    unknown = []
    for name, data in entries:
        known = _REGISTRY.get(name)
        if known is None:
            unknown.append(name)
            continue
        field_name, parser = known
        if field_name in fields:
            raise SmbError(NtStatus.INVALID_PARAMETER, "duplicate create context")
        fields[field_name] = parser(data)
    return CreateContexts(entries=entries, unknown=tuple(unknown), **fields)


# --- response side (2.2.14.2) ----------------------------------------------

def encode_create_contexts(contexts: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Encode ``(name, data)`` pairs as an SMB2_CREATE_CONTEXT chain (2.2.13.2).

    The name sits at offset 16, the data at the next 8-byte boundary after it
    (DataOffset 0 when there is no data), each following context starts
    8-byte aligned, and the last one has Next = 0 and no trailing padding.
    """
    items = list(contexts)
    out = bytearray()
    for index, (name, data) in enumerate(items):
        name_end = _CONTEXT_HEADER.size + len(name)
        data_offset = align8(name_end) if data else 0
        size = (data_offset + len(data)) if data else name_end
        last = index == len(items) - 1
        next_offset = 0 if last else align8(size)
        out += _CONTEXT_HEADER.pack(next_offset, _CONTEXT_HEADER.size, len(name), 0,
                                    data_offset, len(data))
        out += name
        if data:
            out += bytes(data_offset - name_end)
            out += data
        if not last:
            out += bytes(next_offset - size)
    return bytes(out)


def durable_handle_response() -> CreateContext:
    """SMB2_CREATE_DURABLE_HANDLE_RESPONSE (2.2.14.2.3): 8 reserved zero bytes."""
    return CreateContext(ContextName.DURABLE_HANDLE_REQUEST, bytes(8))


def maximal_access_response(query_status: int, maximal_access: int) -> CreateContext:
    """SMB2_CREATE_QUERY_MAXIMAL_ACCESS_RESPONSE (2.2.14.2.5)."""
    return CreateContext(ContextName.QUERY_MAXIMAL_ACCESS_REQUEST,
                         _MXAC_RESPONSE.pack(query_status, maximal_access))


def query_on_disk_id_response(disk_file_id: int, volume_id: int) -> CreateContext:
    """SMB2_CREATE_QUERY_ON_DISK_ID response (2.2.14.2.9): 32 bytes."""
    return CreateContext(ContextName.QUERY_ON_DISK_ID,
                         _QFID_RESPONSE.pack(disk_file_id, volume_id, bytes(16)))


def durable_handle_response_v2(timeout: int, flags: int = 0) -> CreateContext:
    """SMB2_CREATE_DURABLE_HANDLE_RESPONSE_V2 (2.2.14.2.12)."""
    return CreateContext(ContextName.DURABLE_HANDLE_REQUEST_V2,
                         _DH2Q_RESPONSE.pack(timeout, flags))


@dataclass(frozen=True, slots=True)
class LeaseResponse:
    """SMB2_CREATE_RESPONSE_LEASE (v1, 2.2.14.2.10) or _V2 (2.2.14.2.11).

    For v2, PARENT_LEASE_KEY_SET is added to ``flags`` when a non-zero
    ``parent_lease_key`` is given (3.3.5.9.11).  LeaseDuration is always 0.
    """

    lease_key: bytes
    lease_state: int
    flags: int = 0
    parent_lease_key: bytes = ZERO_KEY
    epoch: int = 0
    version: int = 1

    def encode(self) -> bytes:
        if self.version == 1:
            return _LEASE_V1.pack(self.lease_key, self.lease_state, self.flags, 0)
        flags = self.flags
        if self.parent_lease_key != ZERO_KEY:
            flags |= LeaseFlags.PARENT_LEASE_KEY_SET
        return _LEASE_V2.pack(self.lease_key, self.lease_state, flags, 0,
                              self.parent_lease_key, self.epoch, 0)

    def context(self) -> CreateContext:
        return CreateContext(ContextName.REQUEST_LEASE, self.encode())
