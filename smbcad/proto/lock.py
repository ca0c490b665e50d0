"""LOCK request and response ([MS-SMB2] 2.2.26, 2.2.26.1, 2.2.27)."""

import struct
from dataclasses import dataclass

from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

# StructureSize, LockCount, LockSequenceNumber/LockSequenceIndex, FileId.
_REQUEST = struct.Struct("<HHIQQ")
# SMB2_LOCK_ELEMENT (2.2.26.1): Offset, Length, Flags, Reserved.
_ELEMENT = struct.Struct("<QQII")
# StructureSize, Reserved.
_RESPONSE = struct.Struct("<HH")
LOCK_RESPONSE_BODY = _RESPONSE.pack(4, 0)


class LockFlags:
    """SMB2_LOCK_ELEMENT Flags (2.2.26.1)."""

    SHARED_LOCK = 0x00000001
    EXCLUSIVE_LOCK = 0x00000002
    UNLOCK = 0x00000004
    FAIL_IMMEDIATELY = 0x00000010
    # "The following are the only valid combinations for the flags field".
    VALID_COMBINATIONS = frozenset({
        SHARED_LOCK, EXCLUSIVE_LOCK, SHARED_LOCK | FAIL_IMMEDIATELY,
        EXCLUSIVE_LOCK | FAIL_IMMEDIATELY, UNLOCK})


@dataclass(frozen=True, slots=True)
class LockElement:
    """SMB2_LOCK_ELEMENT (2.2.26.1)."""

    offset: int
    length: int
    flags: int

    @property
    def is_unlock(self) -> bool:
        return bool(self.flags & LockFlags.UNLOCK)


@dataclass(frozen=True, slots=True)
class LockRequest:
    """SMB2 LOCK Request (2.2.26).

    The u32 after LockCount is split as in 2.2.26: LockSequenceNumber is its
    low 4 bits, LockSequenceIndex the high 28 (1..64 are valid, 0 reserved).
    Both are meaningless for 2.0.2, where the field is reserved.  Whether the
    flag combinations are valid is checked by the handler (3.3.5.14.1/2 give
    different answers for lock and unlock batches).
    """

    lock_sequence_number: int
    lock_sequence_index: int
    file_id: FileId
    locks: tuple[LockElement, ...]

    @classmethod
    def decode(cls, msg) -> "LockRequest":
        if len(msg) < HEADER_SIZE + _REQUEST.size:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short LOCK")
        size, count, sequence, persistent, volatile = _REQUEST.unpack_from(msg, HEADER_SIZE)
        if size != 48:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad LOCK StructureSize")
        # "The lock count MUST be greater than or equal to 1" (2.2.26).
        if count == 0:
            raise SmbError(NtStatus.INVALID_PARAMETER, "LockCount is 0")
        start = HEADER_SIZE + _REQUEST.size
        if start + count * _ELEMENT.size > len(msg):
            raise SmbError(NtStatus.INVALID_PARAMETER, "LOCK elements past the message")
        locks = tuple(LockElement(offset, length, flags) for offset, length, flags, _
                      in _ELEMENT.iter_unpack(msg[start:start + count * _ELEMENT.size]))
        return cls(sequence & 0xF, sequence >> 4, FileId(persistent, volatile), locks)


@dataclass(frozen=True, slots=True)
class LockResponse:
    """SMB2 LOCK Response (2.2.27)."""

    def encode(self) -> bytes:
        return LOCK_RESPONSE_BODY
