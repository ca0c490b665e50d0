"""IOCTL request and response ([MS-SMB2] 2.2.31, 2.2.32).

Only the envelope lives here; FSCTL payloads (2.2.31.x, 2.2.32.x) are decoded
by the handlers that own them.
"""

import struct
from dataclasses import dataclass

from smbcad.proto._util import align8
from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

# StructureSize, Reserved, CtlCode, FileId, InputOffset, InputCount,
# MaxInputResponse, OutputOffset, OutputCount, MaxOutputResponse, Flags, Reserved2.
_REQUEST = struct.Struct("<HHIQQIIIIIIII")
_REQUEST_END = HEADER_SIZE + _REQUEST.size           # 120: where Buffer starts
# StructureSize, Reserved, CtlCode, FileId, InputOffset, InputCount,
# OutputOffset, OutputCount, Flags, Reserved2.
_RESPONSE = struct.Struct("<HHIQQIIIIII")
RESPONSE_BUFFER_OFFSET = HEADER_SIZE + _RESPONSE.size   # 112


class IoctlFlags:
    """IOCTL request Flags (2.2.31)."""

    IS_IOCTL = 0x00000000
    IS_FSCTL = 0x00000001


class CtlCode:
    """The CtlCode values of 2.2.31 that need SMB2-specific processing."""

    FSCTL_DFS_GET_REFERRALS = 0x00060194
    FSCTL_PIPE_PEEK = 0x0011400C
    FSCTL_PIPE_WAIT = 0x00110018
    FSCTL_PIPE_TRANSCEIVE = 0x0011C017
    FSCTL_SRV_COPYCHUNK = 0x001440F2
    FSCTL_SRV_ENUMERATE_SNAPSHOTS = 0x00144064
    FSCTL_SRV_REQUEST_RESUME_KEY = 0x00140078
    FSCTL_SRV_READ_HASH = 0x001441BB
    FSCTL_SRV_COPYCHUNK_WRITE = 0x001480F2
    FSCTL_LMR_REQUEST_RESILIENCY = 0x001401D4
    FSCTL_QUERY_NETWORK_INTERFACE_INFO = 0x001401FC
    FSCTL_SET_REPARSE_POINT = 0x000900A4
    FSCTL_DFS_GET_REFERRALS_EX = 0x000601B0
    FSCTL_FILE_LEVEL_TRIM = 0x00098208
    FSCTL_VALIDATE_NEGOTIATE_INFO = 0x00140204


@dataclass(frozen=True, slots=True)
class IoctlRequest:
    """SMB2 IOCTL Request (2.2.31).

    ``input`` is a memoryview into the message.  OutputOffset/OutputCount are
    ignored (3.3.5.15: "The server SHOULD ignore OutputOffset and OutputCount").
    """

    ctl_code: int
    file_id: FileId
    input: memoryview
    max_input_response: int
    max_output_response: int
    flags: int

    @property
    def is_fsctl(self) -> bool:
        return self.flags == IoctlFlags.IS_FSCTL

    @classmethod
    def decode(cls, msg) -> "IoctlRequest":
        if len(msg) < _REQUEST_END:
            raise SmbError(NtStatus.INVALID_PARAMETER, "short IOCTL")
        (size, _, ctl_code, persistent, volatile, input_offset, input_count,
         max_input, _, _, max_output, flags, _) = _REQUEST.unpack_from(msg, HEADER_SIZE)
        if size != 57:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad IOCTL StructureSize")
        view = memoryview(msg)
        data = view[0:0]
        if input_count:
            # 3.3.5.15: with InputCount != 0, InputOffset inside the fixed part,
            # not a multiple of 8, or input running past the message is invalid.
            if (input_offset < _REQUEST_END or input_offset % 8
                    or input_offset + input_count > len(view)):
                raise SmbError(NtStatus.INVALID_PARAMETER, "IOCTL input outside message")
            data = view[input_offset:input_offset + input_count]
        return cls(ctl_code, FileId(persistent, volatile), data, max_input, max_output, flags)


@dataclass(frozen=True, slots=True)
class IoctlResponse:
    """SMB2 IOCTL Response (2.2.32).

    ``input`` is echoed only for pass-through FSCTLs (3.3.5.15.8); InputOffset
    is always the Buffer offset and OutputOffset = InputOffset + InputCount
    rounded up to 8, as Windows sends them (<66>, <67>).
    """

    ctl_code: int
    file_id: FileId
    output: bytes = b""
    input: bytes = b""

    def encode(self) -> bytes:
        output_offset = align8(RESPONSE_BUFFER_OFFSET + len(self.input))
        head = _RESPONSE.pack(49, 0, self.ctl_code, self.file_id.persistent,
                              self.file_id.volatile, RESPONSE_BUFFER_OFFSET,
                              len(self.input), output_offset, len(self.output), 0, 0)
        buf = bytes(self.input)
        if self.output:
            buf += bytes(output_offset - RESPONSE_BUFFER_OFFSET - len(buf)) + bytes(self.output)
        # An empty Buffer still occupies the byte that StructureSize 49 counts.
        return head + (buf or b"\x00")
