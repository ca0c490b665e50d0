"""WRITE request and response ([MS-SMB2] 2.2.21, 2.2.22).

Hot path: ``WriteRequest.decode`` returns ``data`` as a memoryview into the
received message, so the payload is never copied before it reaches the VFS.
"""

import struct
from dataclasses import dataclass

from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.read import Channel
from smbcad.proto.status import NtStatus

# StructureSize, DataOffset, Length, Offset, FileId, Channel, RemainingBytes,
# WriteChannelInfoOffset, WriteChannelInfoLength, Flags.
_REQUEST = struct.Struct("<HHIQQQIIHHI")
_REQUEST_END = HEADER_SIZE + _REQUEST.size           # 112 (0x70): where Buffer starts
# StructureSize, Reserved, Count, Remaining, WriteChannelInfoOffset/Length.
_RESPONSE = struct.Struct("<HHIIHH")
# 3.3.5.13: "If Channel is equal to SMB2_CHANNEL_NONE and DataOffset is
# greater than 0x100, the server MUST fail the request with STATUS_INVALID_PARAMETER."
MAX_DATA_OFFSET = 0x100

__all__ = ["WriteRequest", "WriteResponse", "WriteFlags", "Channel"]


class WriteFlags:
    """WRITE request Flags (2.2.21)."""

    WRITE_THROUGH = 0x00000001
    WRITE_UNBUFFERED = 0x00000002


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """SMB2 WRITE Request (2.2.21).

    ``data`` and ``write_channel_info`` are memoryviews into the message.
    """

    data: memoryview
    offset: int
    file_id: FileId
    channel: int
    remaining_bytes: int
    write_channel_info: memoryview
    flags: int

    @classmethod
    def decode(cls, msg) -> "WriteRequest":
        if len(msg) < _REQUEST_END:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short WRITE")
        (size, data_offset, length, offset, persistent, volatile, channel,
         remaining, info_offset, info_length, flags) = _REQUEST.unpack_from(msg, HEADER_SIZE)
        if size != 49:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad WRITE StructureSize")
        view = memoryview(msg)
        if channel == Channel.NONE and data_offset > MAX_DATA_OFFSET:
            raise SmbError(NtStatus.INVALID_PARAMETER, "WRITE DataOffset > 0x100")
        if length:
            # 3.3.5.13: fewer bytes received than DataOffset + Length is invalid.
            if data_offset < _REQUEST_END or data_offset + length > len(view):
                raise SmbError(NtStatus.INVALID_PARAMETER, "WRITE data outside message")
            data = view[data_offset:data_offset + length]
        else:
            data = view[0:0]
        info = view[0:0]
        if channel != Channel.NONE and info_length:
            if info_offset < _REQUEST_END or info_offset + info_length > len(view):
                raise SmbError(NtStatus.INVALID_PARAMETER, "channel info outside message")
            info = view[info_offset:info_offset + info_length]
        return cls(data, offset, FileId(persistent, volatile), channel, remaining, info, flags)


@dataclass(frozen=True, slots=True)
class WriteResponse:
    """SMB2 WRITE Response (2.2.22); Remaining and the channel-info fields are reserved."""

    count: int

    def encode(self) -> bytes:
        return _RESPONSE.pack(17, 0, self.count, 0, 0, 0)
