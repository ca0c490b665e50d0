"""TREE_CONNECT request and response ([MS-SMB2] 2.2.9, 2.2.10)."""

import struct
from dataclasses import dataclass

from smbcad.proto._util import decode_utf16, slice_checked
from smbcad.proto.constants import HEADER_SIZE
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

_REQUEST = struct.Struct("<HHHH")
_RESPONSE = struct.Struct("<HBBIII")


@dataclass(frozen=True, slots=True)
class TreeConnectRequest:
    """SMB2 TREE_CONNECT Request (2.2.9); ``path`` is ``\\\\server\\share``."""

    flags: int
    path: str

    @classmethod
    def decode(cls, msg) -> "TreeConnectRequest":
        size, flags, offset, length = _REQUEST.unpack(
            slice_checked(msg, HEADER_SIZE, _REQUEST.size))
        if size != 9:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad TREE_CONNECT size")
        return cls(flags, decode_utf16(slice_checked(msg, offset, length)))

    @property
    def share_name(self) -> str:
        """The last component of ``\\\\server\\share`` (3.3.5.7)."""
        parts = self.path.lstrip("\\").split("\\")
        return parts[1] if len(parts) >= 2 else ""


@dataclass(frozen=True, slots=True)
class TreeConnectResponse:
    """SMB2 TREE_CONNECT Response (2.2.10)."""

    share_type: int
    share_flags: int
    capabilities: int
    maximal_access: int

    def encode(self) -> bytes:
        return _RESPONSE.pack(16, self.share_type, 0, self.share_flags,
                              self.capabilities, self.maximal_access)
