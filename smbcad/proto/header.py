"""SMB2 packet header, sync and async forms ([MS-SMB2] 2.2.1.1, 2.2.1.2),
and the ERROR response body (2.2.2).

Hot path: every request and response passes through ``HEADER``; it is a
precompiled ``struct.Struct`` that packs straight into the outgoing buffer.
A decoded header is a typed, immutable ``NamedTuple`` rather than a frozen
dataclass: it is built once per request, and a tuple is built in C where a
frozen dataclass sets its twelve fields one ``object.__setattr__`` at a time.
"""

import struct
from typing import NamedTuple

from smbcad.proto.constants import HEADER_SIZE, PROTOCOL_ID, HeaderFlags
from smbcad.proto.errors import ProtocolViolation

# ProtocolId, StructureSize, CreditCharge, Status (or ChannelSequence+Reserved),
# Command, CreditRequest/Response, Flags, NextCommand, MessageId,
# Reserved (sync: ProcessId) | AsyncId low, TreeId | AsyncId high, SessionId, Signature.
HEADER = struct.Struct("<4sHHIHHIIQIIQ16s")
assert HEADER.size == HEADER_SIZE

SIGNATURE_OFFSET = 48
SIGNATURE_SIZE = 16
FLAGS_OFFSET = 16
NEXT_COMMAND_OFFSET = 20
ZERO_SIGNATURE = bytes(16)


class Smb2Header(NamedTuple):
    """One SMB2 header (2.2.1).

    ``status`` holds ChannelSequence (low 16 bits) in 3.x requests.  For the
    async form ``async_id`` is set and ``tree_id`` is 0; for the sync form the
    reverse.
    """

    command: int
    message_id: int
    flags: int = 0
    status: int = 0
    credit_charge: int = 0
    credits: int = 0
    next_command: int = 0
    tree_id: int = 0
    async_id: int = 0
    session_id: int = 0
    signature: bytes = ZERO_SIGNATURE
    process_id: int = 0

    @property
    def is_async(self) -> bool:
        return bool(self.flags & HeaderFlags.ASYNC_COMMAND)

    @property
    def is_related(self) -> bool:
        return bool(self.flags & HeaderFlags.RELATED_OPERATIONS)

    @property
    def is_signed(self) -> bool:
        return bool(self.flags & HeaderFlags.SIGNED)

    @property
    def is_replay(self) -> bool:
        return bool(self.flags & HeaderFlags.REPLAY_OPERATION)

    @property
    def channel_sequence(self) -> int:
        """ChannelSequence of a 3.x request (2.2.1.2)."""
        return self.status & 0xFFFF

    @classmethod
    def decode(cls, buf, offset: int = 0) -> "Smb2Header":
        """Parse a header at ``offset``; ProtocolViolation if it is not one."""
        if len(buf) - offset < HEADER_SIZE:
            raise ProtocolViolation("truncated SMB2 header")
        (proto, size, charge, status, command, credits, flags, next_command,
         message_id, low, high, session_id, signature) = HEADER.unpack_from(buf, offset)
        if proto != PROTOCOL_ID or size != HEADER_SIZE:
            raise ProtocolViolation("not an SMB2 header")
        if flags & HeaderFlags.ASYNC_COMMAND:
            return _new(cls, (command, message_id, flags, status, charge, credits,
                              next_command, 0, low | (high << 32), session_id,
                              signature, 0))
        return _new(cls, (command, message_id, flags, status, charge, credits,
                          next_command, high, 0, session_id, signature, low))

    def pack_into(self, buf, offset: int = 0) -> None:
        if self.flags & HeaderFlags.ASYNC_COMMAND:
            low, high = self.async_id & 0xFFFFFFFF, self.async_id >> 32
        else:
            low, high = self.process_id, self.tree_id
        HEADER.pack_into(buf, offset, PROTOCOL_ID, HEADER_SIZE, self.credit_charge,
                         self.status, self.command, self.credits, self.flags,
                         self.next_command, self.message_id, low, high,
                         self.session_id, self.signature)

    def encode(self) -> bytes:
        out = bytearray(HEADER_SIZE)
        self.pack_into(out)
        return bytes(out)


_new = tuple.__new__

# ERROR response (2.2.2): StructureSize=9, ErrorContextCount, Reserved, ByteCount.
_ERROR = struct.Struct("<HBBI")


def encode_error_body(error_data: bytes = b"", context_count: int = 0) -> bytes:
    """SMB2 ERROR response body; an empty ErrorData still carries one byte (2.2.2)."""
    return _ERROR.pack(9, context_count, 0, len(error_data)) + (error_data or b"\x00")


# The interim response of 3.3.4.2 is an ERROR response with STATUS_PENDING,
# ByteCount 0 and one byte of ErrorData, which Windows sets to 0x21 (Samba's
# smbd_smb2_request_pending_timer: "SCVAL(dyn, 0x00, 0x21); /* Match W2K8R2 */").
INTERIM_RESPONSE_BODY = _ERROR.pack(9, 0, 0, 0) + b"\x21"
