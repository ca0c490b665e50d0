"""READ request and response ([MS-SMB2] 2.2.19, 2.2.20).

Hot path: ``ReadRequest.decode`` is one ``unpack_from``; the response is built
with ``encode_read_response_prefix`` so the caller can send the data buffer it
already holds right after the 16-byte fixed part, without copying it.
"""

import struct
from dataclasses import dataclass

from smbcad.proto._util import slice_checked
from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

# StructureSize, Padding, Flags, Length, Offset, FileId, MinimumCount, Channel,
# RemainingBytes, ReadChannelInfoOffset, ReadChannelInfoLength.
_REQUEST = struct.Struct("<HBBIQQQIIIHH")
_REQUEST_END = HEADER_SIZE + _REQUEST.size           # 112: where Buffer starts
# StructureSize, DataOffset, Reserved, DataLength, DataRemaining, Reserved2/Flags.
_RESPONSE = struct.Struct("<HBBIII")
DATA_OFFSET = HEADER_SIZE + _RESPONSE.size           # 0x50


class ReadFlags:
    """READ request Flags (2.2.19), 3.0.2 and later."""

    READ_UNBUFFERED = 0x01
    REQUEST_COMPRESSED = 0x02


class Channel:
    """READ/WRITE Channel (2.2.19, 2.2.21)."""

    NONE = 0x00000000
    RDMA_V1 = 0x00000001
    RDMA_V1_INVALIDATE = 0x00000002
    RDMA_TRANSFORM = 0x00000003


class ReadResponseFlags:
    """READ response Reserved2/Flags (2.2.20), 3.1.1 only."""

    NONE = 0x00000000
    RDMA_TRANSFORM = 0x00000001


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """SMB2 READ Request (2.2.19).

    ``read_channel_info`` is only looked at (and bounds-checked) when
    ``channel`` is not SMB2_CHANNEL_NONE: otherwise RemainingBytes and the
    channel-info fields "MUST be ignored by the server".
    """

    padding: int
    flags: int
    length: int
    offset: int
    file_id: FileId
    minimum_count: int
    channel: int
    remaining_bytes: int
    read_channel_info: bytes = b""

    @classmethod
    def decode(cls, msg) -> "ReadRequest":
        if len(msg) < _REQUEST_END:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short READ")
        (size, padding, flags, length, offset, persistent, volatile, minimum,
         channel, remaining, info_offset, info_length) = _REQUEST.unpack_from(msg, HEADER_SIZE)
        if size != 49:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad READ StructureSize")
        info = b""
        if channel != Channel.NONE and info_length:
            if info_offset < _REQUEST_END:
                raise SmbError(NtStatus.INVALID_PARAMETER, "channel info overlaps READ")
            info = bytes(slice_checked(msg, info_offset, info_length))
        return cls(padding, flags, length, offset, FileId(persistent, volatile),
                   minimum, channel, remaining, info)


def encode_read_response_prefix(data_length: int, data_remaining: int = 0) -> bytes:
    """The 16-byte fixed part of a READ Response (2.2.20), DataOffset = 0x50.

    The caller sends ``data_length`` bytes of data right after it.
    """
    return _RESPONSE.pack(17, DATA_OFFSET, 0, data_length, data_remaining, 0)


@dataclass(frozen=True, slots=True)
class ReadResponse:
    """SMB2 READ Response (2.2.20); ``encode`` copies, prefer the prefix on the hot path."""

    data: bytes
    data_remaining: int = 0
    flags: int = 0

    def encode(self) -> bytes:
        # "The minimum length [of Buffer] is 1 byte."
        return (_RESPONSE.pack(17, DATA_OFFSET, 0, len(self.data), self.data_remaining,
                               self.flags)
                + (bytes(self.data) or b"\x00"))
