"""NEGOTIATE request and response ([MS-SMB2] 2.2.3, 2.2.4) with the negotiate
contexts of SMB 3.1.1 (2.2.3.1, 2.2.4.1) and the SMB1 multi-protocol NEGOTIATE
that starts a dialect negotiation ([MS-SMB2] 3.3.5.3.1, [MS-CIFS] 2.2.4.52).
"""

import struct
from dataclasses import dataclass, field

from smbcad.proto._util import align8, decode_utf16, slice_checked
from smbcad.proto.constants import HEADER_SIZE, NegotiateContextType as Ctx
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

_REQUEST = struct.Struct("<HHHHI16sIHH")   # through NegotiateContextCount/Reserved2
_CONTEXT_HEADER = struct.Struct("<HHI")
_RESPONSE = struct.Struct("<HHHH16sIIIIQQHHI")
RESPONSE_FIXED_SIZE = 64
_U16 = struct.Struct("<H")
# Context types that may appear once (3.3.5.4); NETNAME and unknown ones are ignored.
_UNIQUE_CONTEXTS = frozenset((
    Ctx.PREAUTH_INTEGRITY_CAPABILITIES, Ctx.ENCRYPTION_CAPABILITIES,
    Ctx.COMPRESSION_CAPABILITIES, Ctx.RDMA_TRANSFORM_CAPABILITIES,
    Ctx.SIGNING_CAPABILITIES, Ctx.TRANSPORT_CAPABILITIES))


@dataclass(frozen=True, slots=True)
class PreauthIntegrityCapabilities:
    """SMB2_PREAUTH_INTEGRITY_CAPABILITIES (2.2.3.1.1)."""

    hash_algorithms: tuple[int, ...]
    salt: bytes

    def encode(self) -> bytes:
        return (struct.pack("<HH", len(self.hash_algorithms), len(self.salt))
                + b"".join(_U16.pack(a) for a in self.hash_algorithms) + self.salt)


@dataclass(frozen=True, slots=True)
class EncryptionCapabilities:
    """SMB2_ENCRYPTION_CAPABILITIES (2.2.3.1.2)."""

    ciphers: tuple[int, ...]

    def encode(self) -> bytes:
        return _U16.pack(len(self.ciphers)) + b"".join(_U16.pack(c) for c in self.ciphers)


@dataclass(frozen=True, slots=True)
class SigningCapabilities:
    """SMB2_SIGNING_CAPABILITIES (2.2.3.1.7)."""

    algorithms: tuple[int, ...]

    def encode(self) -> bytes:
        return _U16.pack(len(self.algorithms)) + b"".join(_U16.pack(a) for a in self.algorithms)


@dataclass(frozen=True, slots=True)
class CompressionCapabilities:
    """SMB2_COMPRESSION_CAPABILITIES (2.2.3.1.3)."""

    algorithms: tuple[int, ...]
    flags: int = 0


@dataclass(frozen=True, slots=True)
class NegotiateContexts:
    """The 3.1.1 contexts of one NEGOTIATE request, parsed once (STYLE rule 6)."""

    preauth: PreauthIntegrityCapabilities | None = None
    encryption: EncryptionCapabilities | None = None
    signing: SigningCapabilities | None = None
    compression: CompressionCapabilities | None = None
    netname: str | None = None
    transport_flags: int | None = None


def _u16_list(data, count_at: int = 0, list_at: int = 2) -> tuple[int, ...]:
    if len(data) < count_at + 2:
        raise SmbError(NtStatus.INVALID_PARAMETER, "short context")
    count = _U16.unpack_from(data, count_at)[0]
    if count == 0 or len(data) < list_at + 2 * count:
        raise SmbError(NtStatus.INVALID_PARAMETER, "bad context list")
    return struct.unpack_from(f"<{count}H", data, list_at)


def _parse_contexts(msg, offset: int, count: int) -> NegotiateContexts:
    """Walk the context list (2.2.3.1); duplicates are invalid (3.3.5.4)."""
    seen: dict[int, object] = {}
    pos = offset
    for index in range(count):
        if index:
            pos = align8(pos)
        header = slice_checked(msg, pos, _CONTEXT_HEADER.size)
        ctx_type, length, _ = _CONTEXT_HEADER.unpack(header)
        data = slice_checked(msg, pos + _CONTEXT_HEADER.size, length)
        pos += _CONTEXT_HEADER.size + length
        if ctx_type in seen and ctx_type in _UNIQUE_CONTEXTS:
            raise SmbError(NtStatus.INVALID_PARAMETER, "duplicate negotiate context")
        if ctx_type == Ctx.PREAUTH_INTEGRITY_CAPABILITIES:
            if len(data) < 4:
                raise SmbError(NtStatus.INVALID_PARAMETER, "short preauth context")
            algs = _u16_list(data, 0, 4)
            salt_len = _U16.unpack_from(data, 2)[0]
            salt_at = 4 + 2 * len(algs)
            seen[ctx_type] = PreauthIntegrityCapabilities(
                algs, bytes(slice_checked(data, salt_at, salt_len)))
        elif ctx_type == Ctx.ENCRYPTION_CAPABILITIES:
            seen[ctx_type] = EncryptionCapabilities(_u16_list(data))
        elif ctx_type == Ctx.SIGNING_CAPABILITIES:
            seen[ctx_type] = SigningCapabilities(_u16_list(data))
        elif ctx_type == Ctx.COMPRESSION_CAPABILITIES:
            if len(data) < 8:
                raise SmbError(NtStatus.INVALID_PARAMETER, "short compression context")
            flags = struct.unpack_from("<I", data, 4)[0]
            seen[ctx_type] = CompressionCapabilities(_u16_list(data, 0, 8), flags)
        elif ctx_type == Ctx.NETNAME_NEGOTIATE_CONTEXT_ID:
            # The server MUST ignore NETNAME (3.3.5.4), so a bad one is no error.
            try:
                seen.setdefault(ctx_type, decode_utf16(data))
            except SmbError:
                pass
        elif ctx_type == Ctx.TRANSPORT_CAPABILITIES:
            if len(data) < 4:
                raise SmbError(NtStatus.INVALID_PARAMETER, "short transport context")
            seen[ctx_type] = struct.unpack_from("<I", data)[0]
        elif ctx_type == Ctx.RDMA_TRANSFORM_CAPABILITIES:
            seen[ctx_type] = True
        # Unknown context types are ignored (3.3.5.4).
    return NegotiateContexts(
        preauth=seen.get(Ctx.PREAUTH_INTEGRITY_CAPABILITIES),
        encryption=seen.get(Ctx.ENCRYPTION_CAPABILITIES),
        signing=seen.get(Ctx.SIGNING_CAPABILITIES),
        compression=seen.get(Ctx.COMPRESSION_CAPABILITIES),
        netname=seen.get(Ctx.NETNAME_NEGOTIATE_CONTEXT_ID),
        transport_flags=seen.get(Ctx.TRANSPORT_CAPABILITIES),
    )


@dataclass(frozen=True, slots=True)
class NegotiateRequest:
    """SMB2 NEGOTIATE Request (2.2.3)."""

    security_mode: int
    capabilities: int
    client_guid: bytes
    dialects: tuple[int, ...]
    contexts: NegotiateContexts = field(default_factory=NegotiateContexts)

    @classmethod
    def decode(cls, msg) -> "NegotiateRequest":
        body = slice_checked(msg, HEADER_SIZE, _REQUEST.size)
        (size, count, security_mode, _, caps, client_guid, ctx_offset,
         ctx_count, _) = _REQUEST.unpack(body)
        if size != 36 or count == 0:
            raise SmbError(NtStatus.INVALID_PARAMETER, "bad NEGOTIATE")
        raw = slice_checked(msg, HEADER_SIZE + 36, 2 * count)
        dialects = struct.unpack(f"<{count}H", raw)
        contexts = NegotiateContexts()
        if 0x0311 in dialects and ctx_count:
            contexts = _parse_contexts(msg, ctx_offset, ctx_count)
        return cls(security_mode, caps, bytes(client_guid), dialects, contexts)


def _encode_context(ctx_type: int, data: bytes) -> bytes:
    return _CONTEXT_HEADER.pack(ctx_type, len(data), 0) + data


@dataclass(frozen=True, slots=True)
class NegotiateResponse:
    """SMB2 NEGOTIATE Response (2.2.4)."""

    security_mode: int
    dialect: int
    server_guid: bytes
    capabilities: int
    max_transact_size: int
    max_read_size: int
    max_write_size: int
    system_time: int
    server_start_time: int
    security_buffer: bytes
    # (ContextType, encoded data) in the order they go on the wire; 3.1.1 only.
    contexts: tuple[tuple[int, bytes], ...] = ()

    def encode(self) -> bytes:
        # SecurityBufferOffset is 0x80 even when the buffer is empty, as Samba
        # (smb2_negprot.c: security_offset = SMB2_HDR_BODY + 0x40) and Windows
        # send it.  NegotiateContextOffset stays 0 without contexts (it is
        # Reserved2 below 3.1.1, 2.2.4).
        buffer_offset = HEADER_SIZE + RESPONSE_FIXED_SIZE
        out = bytearray(RESPONSE_FIXED_SIZE)
        out += self.security_buffer
        ctx_offset = 0
        if self.contexts:
            out += b"\x00" * (align8(HEADER_SIZE + len(out)) - HEADER_SIZE - len(out))
            ctx_offset = HEADER_SIZE + len(out)
            for index, (ctx_type, data) in enumerate(self.contexts):
                if index:
                    out += b"\x00" * (align8(len(out)) - len(out))
                out += _encode_context(ctx_type, data)
        _RESPONSE.pack_into(
            out, 0, 65, self.security_mode, self.dialect, len(self.contexts),
            self.server_guid, self.capabilities, self.max_transact_size,
            self.max_read_size, self.max_write_size, self.system_time,
            self.server_start_time, buffer_offset, len(self.security_buffer), ctx_offset)
        if not self.security_buffer and not self.contexts:
            out += b"\x00"   # the Buffer field is at least one byte (2.2.4)
        return bytes(out)


# --- SMB1 multi-protocol negotiate ([MS-SMB2] 3.3.5.3.1) -------------------

SMB1_DIALECT_2_0_2 = "SMB 2.002"
SMB1_DIALECT_WILDCARD = "SMB 2.???"


def smb1_dialects(frame) -> tuple[str, ...]:
    """Dialect strings of an SMB1 NEGOTIATE ([MS-CIFS] 2.2.4.52.1).

    SMB1 header: 32 bytes, Command at offset 4 (0x72 = NEGOTIATE); then
    WordCount (0), ByteCount u16, and 0x02-prefixed NUL-terminated strings.
    """
    if len(frame) < 35 or bytes(frame[0:4]) != b"\xffSMB" or frame[4] != 0x72:
        raise SmbError(NtStatus.INVALID_PARAMETER, "not an SMB1 NEGOTIATE")
    byte_count = _U16.unpack_from(frame, 33)[0]
    data = bytes(frame[35:35 + byte_count])
    names = []
    for part in data.split(b"\x00"):
        if part.startswith(b"\x02"):
            names.append(part[1:].decode("ascii", errors="replace"))
    return tuple(names)
