"""Elements shared by several PDUs ([C706] 12.6.3.1, [MS-RPCE] 2.2.2.7, 2.2.2.11, 2.2.2.14).

Syntax identifiers, presentation context proposals and results, and the
authentication verifier: frozen dataclasses with explicit encode and
``decode_from(data, offset) -> (element, next_offset)``.
"""

import struct
from dataclasses import dataclass
from typing import ClassVar, Self
from uuid import UUID

from smbca.rpc.dcerpc.errors import PduDecodeError

_SYNTAX = struct.Struct("<16sI")
_SEC_TRAILER = struct.Struct("<BBBBI")
_CONTEXT_HEAD = struct.Struct("<HBx")  # p_cont_id, n_transfer_syn
_RESULT_HEAD = struct.Struct("<HH")  # result, reason

SEC_TRAILER_SIZE = _SEC_TRAILER.size


def unpack_at(layout: struct.Struct, data: bytes, offset: int = 0) -> tuple:
    """``layout.unpack_from`` that reports truncation as a PduDecodeError."""
    if offset < 0 or offset + layout.size > len(data):
        raise PduDecodeError("PDU truncated")
    return layout.unpack_from(data, offset)


@dataclass(frozen=True, slots=True)
class SyntaxId:
    """p_syntax_id_t / RPC_SYNTAX_IDENTIFIER ([C706] 12.6.3.1, [MS-RPCE] 2.2.2.7).

    ``if_version`` is the 32-bit wire value: major in the low 16 bits, minor in
    the high 16 bits (the same bytes as RPC_IF_ID's two u16 fields, 2.2.1.1.1).
    """

    if_uuid: UUID
    if_version: int

    SIZE: ClassVar[int] = _SYNTAX.size

    @classmethod
    def of(cls, uuid: str, major: int, minor: int = 0) -> Self:
        return cls(UUID(uuid), (minor << 16) | major)

    @property
    def major(self) -> int:
        return self.if_version & 0xFFFF

    @property
    def minor(self) -> int:
        return self.if_version >> 16

    def encode(self) -> bytes:
        return _SYNTAX.pack(self.if_uuid.bytes_le, self.if_version)

    @classmethod
    def decode_from(cls, data: bytes, offset: int) -> tuple[Self, int]:
        raw, version = unpack_at(_SYNTAX, data, offset)
        return cls(UUID(bytes_le=raw), version), offset + _SYNTAX.size


NDR20 = SyntaxId.of("8a885d04-1ceb-11c9-9fe8-08002b104860", 2)
"""NDR 2.0 transfer syntax ([MS-RPCE] 2.2.4.12)."""
NDR64 = SyntaxId.of("71710533-beba-4937-8319-b5dbef9ccc36", 1)
"""NDR64 transfer syntax ([MS-RPCE] 2.2.5.1); declined by this server."""
NULL_SYNTAX = SyntaxId(UUID(int=0), 0)
"""Zeroed transfer syntax used in rejections and negotiate_ack results ([MS-RPCE] 3.3.1.5.3)."""
_BTFN_PREFIX = UUID("6cb71c2c-9812-4540-0000-000000000000").bytes_le[:8]


def bind_time_features(syntax: SyntaxId) -> int | None:
    """The client's BindTimeFeatureNegotiationBitmask, or None for an ordinary syntax.

    The pseudo transfer syntax is 6CB71C2C-9812-4540-<8 bitmask octets> version
    1.0; only bits of the first octet are defined ([MS-RPCE] 2.2.2.14, 3.3.1.5.3).
    """
    raw = syntax.if_uuid.bytes_le
    if raw[:8] != _BTFN_PREFIX or syntax.if_version != 1:
        return None
    return raw[8]


@dataclass(frozen=True, slots=True, kw_only=True)
class PresentationContext:
    """p_cont_elem_t: one proposed presentation context ([C706] 12.6.3.1)."""

    p_cont_id: int
    abstract_syntax: SyntaxId
    transfer_syntaxes: tuple[SyntaxId, ...]

    def encode(self) -> bytes:
        parts = [_CONTEXT_HEAD.pack(self.p_cont_id, len(self.transfer_syntaxes)),
                 self.abstract_syntax.encode()]
        parts.extend(syntax.encode() for syntax in self.transfer_syntaxes)
        return b"".join(parts)

    @classmethod
    def decode_from(cls, data: bytes, offset: int) -> tuple[Self, int]:
        context_id, count = unpack_at(_CONTEXT_HEAD, data, offset)
        abstract, offset = SyntaxId.decode_from(data, offset + _CONTEXT_HEAD.size)
        transfers = []
        for _ in range(count):
            syntax, offset = SyntaxId.decode_from(data, offset)
            transfers.append(syntax)
        return cls(p_cont_id=context_id, abstract_syntax=abstract,
                   transfer_syntaxes=tuple(transfers)), offset


@dataclass(frozen=True, slots=True, kw_only=True)
class PresentationResult:
    """p_result_t: the answer to one presentation context ([C706] 12.6.3.1, [MS-RPCE] 3.3.1.5.3)."""

    result: int
    reason: int
    transfer_syntax: SyntaxId = NULL_SYNTAX

    def encode(self) -> bytes:
        return _RESULT_HEAD.pack(self.result, self.reason) + self.transfer_syntax.encode()

    @classmethod
    def decode_from(cls, data: bytes, offset: int) -> tuple[Self, int]:
        result, reason = unpack_at(_RESULT_HEAD, data, offset)
        syntax, offset = SyntaxId.decode_from(data, offset + _RESULT_HEAD.size)
        return cls(result=result, reason=reason, transfer_syntax=syntax), offset


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthVerifier:
    """sec_trailer plus auth_value at the end of a PDU ([MS-RPCE] 2.2.2.11, 2.2.2.12)."""

    auth_type: int
    auth_level: int
    auth_pad_length: int = 0
    auth_reserved: int = 0
    auth_context_id: int = 0
    auth_value: bytes = b""

    def encode(self) -> bytes:
        trailer = _SEC_TRAILER.pack(
            self.auth_type, self.auth_level, self.auth_pad_length,
            self.auth_reserved, self.auth_context_id,
        )
        return trailer + self.auth_value

    @classmethod
    def decode_from(cls, data: bytes, offset: int) -> tuple[Self, int]:
        """The sec_trailer at ``offset``; auth_value runs to the end of ``data``."""
        auth_type, level, pad, reserved, context_id = unpack_at(_SEC_TRAILER, data, offset)
        return cls(auth_type=auth_type, auth_level=level, auth_pad_length=pad,
                   auth_reserved=reserved, auth_context_id=context_id,
                   auth_value=data[offset + _SEC_TRAILER.size:]), len(data)
