"""Test-side request encoders and message framing (never imported by smbcad).

Independent, hand-written encoders for the requests a test client sends, laid
out field by field from [MS-SMB2] 2.2.13, 2.2.15, 2.2.19, 2.2.21 and 2.2.33.
"""

import struct

from smbcad.proto.header import Smb2Header

HEADER = 64


def message(command: int, body: bytes, message_id: int = 7, **header) -> bytes:
    """A whole SMB2 message: a sync request header followed by ``body``."""
    return Smb2Header(command=command, message_id=message_id, **header).encode() + body


def from_smbprotocol(command: int, structure) -> bytes:
    """Frame an smbprotocol request structure behind our 64-byte header."""
    return message(command, structure.pack())


def file_id_bytes(persistent: int, volatile: int) -> bytes:
    return struct.pack("<QQ", persistent, volatile)


def create_context(name: bytes, data: bytes, next_offset: int = 0) -> bytes:
    """One SMB2_CREATE_CONTEXT (2.2.13.2), name at 16, data 8-aligned after it."""
    data_offset = (16 + len(name) + 7) & ~7 if data else 0
    out = struct.pack("<IHHHHI", next_offset, 16, len(name), 0, data_offset, len(data)) + name
    if data:
        out += bytes(data_offset - len(out)) + data
    return out


def context_chain(*pairs: tuple[bytes, bytes]) -> bytes:
    out = b""
    for index, (name, data) in enumerate(pairs):
        one = create_context(name, data)
        if index < len(pairs) - 1:
            one += bytes(-len(one) % 8)
            one = struct.pack("<I", len(one)) + one[4:]
        out += one
    return out


def create_request(name: str = "", contexts: bytes = b"", *, oplock: int = 0,
                   impersonation: int = 2, access: int = 0x0012019F,
                   attributes: int = 0x80, share: int = 7, disposition: int = 1,
                   options: int = 0x40) -> bytes:
    """CREATE Request body (2.2.13): name at 0x78, contexts 8-aligned after it."""
    raw_name = name.encode("utf-16-le")
    buf = raw_name or b"\x00"           # Buffer is at least one byte
    ctx_offset = 0
    if contexts:
        buf = raw_name + bytes(-len(raw_name) % 8)
        ctx_offset = 0x78 + len(buf)
        buf += contexts
    fixed = struct.pack("<HBBIQQIIIIIHHII", 57, 0, oplock, impersonation, 0, 0, access,
                        attributes, share, disposition, options, 0x78, len(raw_name),
                        ctx_offset, len(contexts))
    return fixed + buf


def close_request(persistent: int, volatile: int, flags: int = 0) -> bytes:
    return struct.pack("<HHI", 24, flags, 0) + file_id_bytes(persistent, volatile)


def read_request(persistent: int, volatile: int, length: int, offset: int,
                 minimum_count: int = 0, flags: int = 0, padding: int = 0x50) -> bytes:
    return (struct.pack("<HBBIQ", 49, padding, flags, length, offset)
            + file_id_bytes(persistent, volatile)
            + struct.pack("<IIIHH", minimum_count, 0, 0, 0, 0) + b"\x00")


def write_request(persistent: int, volatile: int, offset: int, data: bytes,
                  flags: int = 0) -> bytes:
    return (struct.pack("<HHIQ", 49, 0x70, len(data), offset)
            + file_id_bytes(persistent, volatile)
            + struct.pack("<IIHHI", 0, 0, 0, 0, flags) + data)


def query_directory_request(persistent: int, volatile: int, pattern: str = "*",
                            info_class: int = 0x25, flags: int = 0,
                            output_buffer_length: int = 65536) -> bytes:
    raw = pattern.encode("utf-16-le")
    return (struct.pack("<HBBI", 33, info_class, flags, 0)
            + file_id_bytes(persistent, volatile)
            + struct.pack("<HHI", 0x60 if raw else 0, len(raw), output_buffer_length)
            + (raw or b"\x00"))


