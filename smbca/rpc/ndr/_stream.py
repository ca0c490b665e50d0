"""The octet stream of NDR 2.0 ([C706] ch. 14, [MS-RPCE] 2.2.4): writer and reader.

Little-endian integers only (drep 0x10, the one data representation the
connection core accepts).  Alignment is relative to the start of the stub
([C706] 14.2.2).  The reader reports every truncation and inconsistency as
``NdrError``, whose status is the fault a server answers with.
"""

import struct

RPC_X_BAD_STUB_DATA = 0x000006F7
"""Fault status for undecodable stub data ([MS-RPCE] 3.1.3.5.2, nca_s_fault_ndr)."""
FIRST_REFERENT_ID = 0x00020000
"""Referent ids start here and grow by 4, as Windows and Samba marshal them."""

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class NdrError(ValueError):
    """Stub data that is not valid NDR for the expected type (shared/STYLE.md rule 8)."""

    status = RPC_X_BAD_STUB_DATA


class NdrWriter:
    """Appends NDR primitives; ``referent()`` hands out non-zero pointer ids."""

    __slots__ = ("_buf", "_next_referent")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._next_referent = FIRST_REFERENT_ID

    def __len__(self) -> int:
        return len(self._buf)

    def align(self, alignment: int) -> None:
        self._buf += bytes(-len(self._buf) % alignment)

    def u8(self, value: int) -> None:
        self._buf += _U8.pack(value)

    def u16(self, value: int) -> None:
        self.align(2)
        self._buf += _U16.pack(value)

    def u32(self, value: int) -> None:
        self.align(4)
        self._buf += _U32.pack(value)

    def raw(self, data: bytes) -> None:
        self._buf += data

    def referent(self) -> int:
        """The next referent id for a non-NULL pointer ([C706] 14.3.12.1)."""
        value = self._next_referent
        self._next_referent = (value + 4) & 0xFFFFFFFF or FIRST_REFERENT_ID
        return value

    def getvalue(self) -> bytes:
        return bytes(self._buf)


class NdrReader:
    """Reads NDR primitives with bounds checks; never reads past ``data``."""

    __slots__ = ("_data", "offset")

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self._data = bytes(data)
        self.offset = offset

    @property
    def remaining(self) -> int:
        return len(self._data) - self.offset

    def align(self, alignment: int) -> None:
        self.offset += -self.offset % alignment
        if self.offset > len(self._data):
            raise NdrError("stub truncated in alignment padding")

    def _take(self, size: int) -> bytes:
        if size < 0 or self.offset + size > len(self._data):
            raise NdrError(f"stub truncated: need {size} bytes at offset {self.offset}")
        chunk = self._data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        self.align(2)
        return _U16.unpack(self._take(2))[0]

    def u32(self) -> int:
        self.align(4)
        return _U32.unpack(self._take(4))[0]

    def raw(self, size: int) -> bytes:
        return self._take(size)
