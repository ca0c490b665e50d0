"""SESSION_SETUP request and response ([MS-SMB2] 2.2.5, 2.2.6)."""

import struct
from dataclasses import dataclass

from smbcad.proto._util import slice_checked
from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

_REQUEST = struct.Struct("<HBBIIHHQ")
_RESPONSE = struct.Struct("<HHHH")
# SecurityBufferOffset: where Buffer starts, 0x48, even for an empty final
# token.  Samba sets it unconditionally (smb2_sesssetup.c:
# out_security_offset = SMB2_HDR_BODY + 0x08) and Windows does the same;
# strict clients reject an offset that points into the header.
RESPONSE_BUFFER_OFFSET = HEADER_SIZE + _RESPONSE.size     # 0x48


@dataclass(frozen=True, slots=True)
class SessionSetupRequest:
    """SMB2 SESSION_SETUP Request (2.2.5)."""

    flags: int
    security_mode: int
    capabilities: int
    channel: int
    previous_session_id: int
    security_buffer: bytes

    @classmethod
    def decode(cls, msg) -> "SessionSetupRequest":
        (size, flags, mode, caps, channel, offset, length,
         previous) = _REQUEST.unpack(slice_checked(msg, HEADER_SIZE, _REQUEST.size))
        if size != 25:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad SESSION_SETUP size")
        blob = bytes(slice_checked(msg, offset, length))
        return cls(flags, mode, caps, channel, previous, blob)


@dataclass(frozen=True, slots=True)
class SessionSetupResponse:
    """SMB2 SESSION_SETUP Response (2.2.6)."""

    session_flags: int
    security_buffer: bytes

    def encode(self) -> bytes:
        return (_RESPONSE.pack(9, self.session_flags, RESPONSE_BUFFER_OFFSET,
                               len(self.security_buffer))
                + (self.security_buffer or b"\x00"))
