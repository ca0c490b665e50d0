"""Small helpers shared by the codecs: bounded slices, alignment, UTF-16 names."""

from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

U16 = "<H"


def align8(n: int) -> int:
    return (n + 7) & ~7


def pad_to_8(buf: bytearray) -> None:
    buf.extend(b"\x00" * (align8(len(buf)) - len(buf)))


def slice_checked(msg, offset: int, length: int, status: int = NtStatus.INVALID_PARAMETER):
    """``msg[offset:offset+length]`` or SmbError(status) when it does not fit.

    Offsets in SMB2 bodies count from the start of the header (2.2.1), so ``msg``
    is always the whole message.  A zero length yields an empty slice whatever
    the offset, as clients send offset 0 with length 0.
    """
    if length == 0:
        return msg[0:0]
    if offset < 0 or length < 0 or offset + length > len(msg):
        raise SmbError(status, "buffer outside message")
    return msg[offset:offset + length]


def decode_utf16(raw) -> str:
    """UTF-16LE name; unpaired surrogates and odd lengths are invalid names."""
    if len(raw) % 2:
        raise SmbError(NtStatus.INVALID_PARAMETER, "odd UTF-16 length")
    try:
        return bytes(raw).decode("utf-16-le", errors="strict")
    except UnicodeDecodeError as exc:
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "bad UTF-16") from exc


def encode_utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def guid_str(raw: bytes) -> str:
    """A GUID's canonical text form ([MS-DTYP] 2.3.4.3)."""
    import uuid
    return str(uuid.UUID(bytes_le=bytes(raw)))
