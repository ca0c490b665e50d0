"""OPLOCK_BREAK notifications, acknowledgments and responses
([MS-SMB2] 2.2.23, 2.2.24, 2.2.25).

The server sends a notification (oplock: 2.2.23.1, lease: 2.2.23.2); the client
acknowledges (2.2.24.1 / 2.2.24.2, told apart by StructureSize, 3.3.5.22); the
server answers the acknowledgment (2.2.25.1 / 2.2.25.2).
"""

import struct
from dataclasses import dataclass

from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

# Oplock notification / acknowledgment / response: StructureSize, OplockLevel,
# Reserved, Reserved2, FileId.
_OPLOCK = struct.Struct("<HBBIQQ")
# Lease break notification: StructureSize, NewEpoch, Flags, LeaseKey,
# CurrentLeaseState, NewLeaseState, BreakReason, AccessMaskHint, ShareMaskHint.
_LEASE_NOTIFICATION = struct.Struct("<HHI16sIIIII")
# Lease break acknowledgment / response: StructureSize, Reserved, Flags,
# LeaseKey, LeaseState, LeaseDuration.
_LEASE = struct.Struct("<HHI16sIQ")
OPLOCK_SIZE = _OPLOCK.size                       # 24
LEASE_NOTIFICATION_SIZE = _LEASE_NOTIFICATION.size  # 44
LEASE_SIZE = _LEASE.size                         # 36
_U16 = struct.Struct("<H")


class LeaseBreakFlags:
    """Lease Break Notification Flags (2.2.23.2)."""

    ACK_REQUIRED = 0x01


@dataclass(frozen=True, slots=True)
class OplockBreakNotification:
    """Oplock Break Notification (2.2.23.1), server to client."""

    oplock_level: int
    file_id: FileId

    def encode(self) -> bytes:
        return _OPLOCK.pack(OPLOCK_SIZE, self.oplock_level, 0, 0,
                            self.file_id.persistent, self.file_id.volatile)


@dataclass(frozen=True, slots=True)
class LeaseBreakNotification:
    """Lease Break Notification (2.2.23.2), server to client.

    NewEpoch is only meaningful for 3.x (0 for 2.1); BreakReason,
    AccessMaskHint and ShareMaskHint are reserved and MUST be 0.
    """

    new_epoch: int
    flags: int
    lease_key: bytes
    current_lease_state: int
    new_lease_state: int
    break_reason: int = 0
    access_mask_hint: int = 0
    share_mask_hint: int = 0

    def encode(self) -> bytes:
        return _LEASE_NOTIFICATION.pack(
            LEASE_NOTIFICATION_SIZE, self.new_epoch, self.flags, self.lease_key,
            self.current_lease_state, self.new_lease_state, self.break_reason,
            self.access_mask_hint, self.share_mask_hint)


@dataclass(frozen=True, slots=True)
class OplockBreakAcknowledgment:
    """Oplock Break Acknowledgment (2.2.24.1), client to server."""

    oplock_level: int
    file_id: FileId


@dataclass(frozen=True, slots=True)
class LeaseBreakAcknowledgment:
    """Lease Break Acknowledgment (2.2.24.2), client to server; Flags and
    LeaseDuration are reserved and ignored."""

    lease_key: bytes
    lease_state: int


def decode_oplock_break_acknowledgment(
        msg, lease_allowed: bool = True) -> OplockBreakAcknowledgment | LeaseBreakAcknowledgment:
    """Decode an OPLOCK_BREAK request by its StructureSize (3.3.5.22).

    36 is a lease acknowledgment unless ``lease_allowed`` is False (dialect
    2.0.2, where every acknowledgment is an oplock one); 24 is an oplock
    acknowledgment; anything else is STATUS_INVALID_PARAMETER.
    """
    if len(msg) < HEADER_SIZE + 2:
        raise SmbError(NtStatus.INVALID_PARAMETER, "short OPLOCK_BREAK")
    size = _U16.unpack_from(msg, HEADER_SIZE)[0]
    if size == LEASE_SIZE and lease_allowed:
        if len(msg) < HEADER_SIZE + LEASE_SIZE:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short lease break acknowledgment")
        _, _, _, lease_key, lease_state, _ = _LEASE.unpack_from(msg, HEADER_SIZE)
        return LeaseBreakAcknowledgment(bytes(lease_key), lease_state)
    if size == OPLOCK_SIZE:
        if len(msg) < HEADER_SIZE + OPLOCK_SIZE:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short oplock break acknowledgment")
        _, level, _, _, persistent, volatile = _OPLOCK.unpack_from(msg, HEADER_SIZE)
        return OplockBreakAcknowledgment(level, FileId(persistent, volatile))
    raise SmbError(NtStatus.INVALID_PARAMETER, "bad OPLOCK_BREAK StructureSize")


@dataclass(frozen=True, slots=True)
class OplockBreakResponse:
    """Oplock Break Response (2.2.25.1)."""

    oplock_level: int
    file_id: FileId

    def encode(self) -> bytes:
        return _OPLOCK.pack(OPLOCK_SIZE, self.oplock_level, 0, 0,
                            self.file_id.persistent, self.file_id.volatile)


@dataclass(frozen=True, slots=True)
class LeaseBreakResponse:
    """Lease Break Response (2.2.25.2); Flags and LeaseDuration are 0."""

    lease_key: bytes
    lease_state: int

    def encode(self) -> bytes:
        return _LEASE.pack(LEASE_SIZE, 0, 0, self.lease_key, self.lease_state, 0)
