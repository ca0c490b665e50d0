"""The slice of ASN.1 DER (X.690) that SPNEGO needs: TLVs, lengths, OIDs.

Single-byte tags only, definite lengths only, every length checked against
its enclosing buffer.  Errors are ``AuthError(STATUS_INVALID_PARAMETER)``.
Encoding is DER (minimal lengths); decoding also takes non-minimal long-form
lengths, which some BER encoders emit.
"""

from smbca.auth.errors import malformed

SEQUENCE = 0x30
OCTET_STRING = 0x04
OID = 0x06
ENUMERATED = 0x0A
BIT_STRING = 0x03
GENERAL_STRING = 0x1B
APPLICATION_0 = 0x60
MAX_TOKEN_SIZE = 1 << 20  # far above any Kerberos ticket an SMB client sends
_MAX_LENGTH_OCTETS = 4
_MAX_OID_SIZE = 64


def context(number: int) -> int:
    """Tag of an EXPLICIT context-specific constructed field ``[number]``."""
    return 0xA0 | number


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(value)) + value


def encode_oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER TLV (X.690 8.19) from its dotted form."""
    try:
        arcs = [int(part) for part in dotted.split(".")]
    except ValueError:
        raise ValueError(f"bad OID {dotted!r}") from None
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise ValueError(f"bad OID {dotted!r}")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(OID, bytes(body))


def decode_oid(content: bytes) -> str:
    """Dotted form of OBJECT IDENTIFIER contents; rejects non-minimal arcs."""
    if not content or content[-1] & 0x80:
        raise malformed("truncated OID")
    if len(content) > _MAX_OID_SIZE:
        raise malformed("OID too long")
    arcs: list[int] = []
    value = 0
    fresh = True
    for byte in content:
        if fresh and byte == 0x80:
            raise malformed("non-minimal OID arc")
        value = (value << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


class Reader:
    """Sequential TLV reader over ``data[start:end]``."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    def at_end(self) -> bool:
        return self._pos >= self._end

    def peek_tag(self) -> int | None:
        return None if self.at_end() else self._data[self._pos]

    def _header(self) -> tuple[int, int, int]:
        """(tag, content start, content end) of the TLV at the cursor."""
        data, pos, end = self._data, self._pos, self._end
        if pos + 2 > end:
            raise malformed("truncated DER header")
        tag = data[pos]
        if (tag & 0x1F) == 0x1F:
            raise malformed("multi-byte DER tags are not used by SPNEGO")
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > _MAX_LENGTH_OCTETS:
                raise malformed("indefinite or oversized DER length")
            if pos + count > end:
                raise malformed("truncated DER length")
            length = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        if length > end - pos:
            raise malformed("DER length beyond its container")
        return tag, pos, pos + length

    def read(self, tag: int) -> "Reader":
        """Enter the TLV with ``tag`` (which must be next); returns a reader on its contents."""
        found, start, stop = self._header()
        if found != tag:
            raise malformed(f"DER tag 0x{found:02x} where 0x{tag:02x} was expected")
        self._pos = stop
        return Reader(self._data, start, stop)

    def read_optional(self, tag: int) -> "Reader | None":
        return self.read(tag) if self.peek_tag() == tag else None

    def rest(self) -> bytes:
        """The unread bytes of this reader."""
        out = self._data[self._pos:self._end]
        self._pos = self._end
        return out

    def read_value(self, tag: int) -> bytes:
        """Contents of a primitive TLV with ``tag``."""
        return self.read(tag).rest()

    def expect_end(self, what: str) -> None:
        if not self.at_end():
            raise malformed(f"trailing bytes in {what}")
