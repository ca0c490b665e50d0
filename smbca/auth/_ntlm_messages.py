"""NTLM message codecs ([MS-NLMP] 2.2).

Frozen dataclasses with explicit ``encode``/``decode``.  Decoders check every
offset and length against the buffer and raise only ``AuthError``
(STATUS_INVALID_PARAMETER): tokens come straight off the network.
"""

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from smbca.auth.errors import malformed

SIGNATURE = b"NTLMSSP\x00"
MIC_OFFSET = 72          # AUTHENTICATE_MESSAGE.MIC (2.2.1.3)
MIC_SIZE = 16
_VERSION_SIZE = 8
_FIELD = struct.Struct("<HHI")            # Len, MaxLen, BufferOffset
_PREFIX = struct.Struct("<8sI")           # Signature, MessageType
_AV_HEADER = struct.Struct("<HH")
_NEGOTIATE = struct.Struct("<8sII8s8s")   # through WorkstationFields (32 bytes)
_CHALLENGE = struct.Struct("<8sI8sI8s8x8s")  # through TargetInfoFields (48 bytes)
_AUTHENTICATE = struct.Struct("<8sI8s8s8s8s8s8sI")  # through NegotiateFlags (64 bytes)
_CLIENT_CHALLENGE = struct.Struct("<BB6xQ8s4x")  # NTLMv2_CLIENT_CHALLENGE header (2.2.2.7)
NT_PROOF_SIZE = 16
NTLMV1_RESPONSE_SIZE = 24


class MessageType(IntEnum):
    """MessageType field values (2.2.1.1-2.2.1.3)."""

    NEGOTIATE = 1
    CHALLENGE = 2
    AUTHENTICATE = 3


class NegotiateFlags(IntFlag):
    """NEGOTIATE structure bits (2.2.2.5)."""

    UNICODE = 0x00000001
    OEM = 0x00000002
    REQUEST_TARGET = 0x00000004
    SIGN = 0x00000010
    SEAL = 0x00000020
    DATAGRAM = 0x00000040
    LM_KEY = 0x00000080
    NTLM = 0x00000200
    ANONYMOUS = 0x00000800
    OEM_DOMAIN_SUPPLIED = 0x00001000
    OEM_WORKSTATION_SUPPLIED = 0x00002000
    ALWAYS_SIGN = 0x00008000
    TARGET_TYPE_DOMAIN = 0x00010000
    TARGET_TYPE_SERVER = 0x00020000
    EXTENDED_SESSIONSECURITY = 0x00080000
    IDENTIFY = 0x00100000
    REQUEST_NON_NT_SESSION_KEY = 0x00400000
    TARGET_INFO = 0x00800000
    VERSION = 0x02000000
    NEGOTIATE_128 = 0x20000000
    KEY_EXCH = 0x40000000
    NEGOTIATE_56 = 0x80000000


class AvId(IntEnum):
    """AV_PAIR AvId values (2.2.2.1)."""

    EOL = 0
    NB_COMPUTER_NAME = 1
    NB_DOMAIN_NAME = 2
    DNS_COMPUTER_NAME = 3
    DNS_DOMAIN_NAME = 4
    DNS_TREE_NAME = 5
    FLAGS = 6
    TIMESTAMP = 7
    SINGLE_HOST = 8
    TARGET_NAME = 9
    CHANNEL_BINDINGS = 10


AV_FLAG_MIC_PRESENT = 0x00000002  # MsvAvFlags bit: the MIC field is populated


def _field(data: bytes, raw: bytes, what: str) -> bytes:
    """The payload bytes a Len/MaxLen/BufferOffset triple points at."""
    length, _, offset = _FIELD.unpack(raw)
    if length == 0:
        return b""
    if offset + length > len(data):
        raise malformed(f"NTLM {what} outside the message")
    return data[offset:offset + length]


def _field_offset(raw: bytes) -> int | None:
    length, _, offset = _FIELD.unpack(raw)
    return offset if length else None


def _header(data: bytes, size: int, expected: MessageType) -> None:
    if len(data) < size:
        raise malformed(f"NTLM {expected.name} message truncated")
    signature, message_type = _PREFIX.unpack_from(data)
    if signature != SIGNATURE or message_type != expected:
        raise malformed(f"not an NTLM {expected.name} message")


def decode_utf16(raw: bytes, what: str) -> str:
    if len(raw) % 2:
        raise malformed(f"NTLM {what} has odd UTF-16 length")
    return raw.decode("utf-16-le", errors="surrogatepass")


def encode_utf16(text: str) -> bytes:
    return text.encode("utf-16-le", errors="surrogatepass")


@dataclass(frozen=True, slots=True)
class Version:
    """VERSION (2.2.2.10); informational only."""

    major: int
    minor: int
    build: int
    revision: int = 0x0F  # NTLMSSP_REVISION_W2K3

    def encode(self) -> bytes:
        return struct.pack("<BBH3xB", self.major, self.minor, self.build, self.revision)

    @classmethod
    def decode(cls, raw: bytes) -> "Version":
        return cls(*struct.unpack("<BBH3xB", raw))


@dataclass(frozen=True, slots=True)
class AvPair:
    """AV_PAIR (2.2.2.1)."""

    av_id: int
    value: bytes


def encode_av_pairs(pairs: tuple[AvPair, ...]) -> bytes:
    """An AV_PAIR list; MsvAvEOL is appended here, never passed in."""
    out = bytearray()
    for pair in pairs:
        out += _AV_HEADER.pack(pair.av_id, len(pair.value)) + pair.value
    out += _AV_HEADER.pack(AvId.EOL, 0)
    return bytes(out)


def decode_av_pairs(data: bytes) -> tuple[AvPair, ...]:
    """AV pairs up to (not including) MsvAvEOL, which must be present."""
    pairs = []
    offset = 0
    while True:
        if offset + _AV_HEADER.size > len(data):
            raise malformed("AV_PAIR list lacks MsvAvEOL")
        av_id, length = _AV_HEADER.unpack_from(data, offset)
        offset += _AV_HEADER.size
        if av_id == AvId.EOL:
            return tuple(pairs)
        if offset + length > len(data):
            raise malformed("AV_PAIR value outside the list")
        pairs.append(AvPair(av_id, data[offset:offset + length]))
        offset += length


def find_av(pairs: tuple[AvPair, ...], av_id: int) -> bytes | None:
    for pair in pairs:
        if pair.av_id == av_id:
            return pair.value
    return None


@dataclass(frozen=True, slots=True)
class NegotiateMessage:
    """NEGOTIATE_MESSAGE (2.2.1.1).  Names are OEM strings and only informational."""

    flags: int
    domain: bytes = b""
    workstation: bytes = b""
    version: Version | None = None

    def encode(self) -> bytes:
        offset = _NEGOTIATE.size + _VERSION_SIZE
        domain_field = _FIELD.pack(len(self.domain), len(self.domain), offset)
        offset += len(self.domain)
        ws_field = _FIELD.pack(len(self.workstation), len(self.workstation), offset)
        version = self.version.encode() if self.version else bytes(_VERSION_SIZE)
        return (_NEGOTIATE.pack(SIGNATURE, MessageType.NEGOTIATE, self.flags, domain_field,
                                ws_field) + version + self.domain + self.workstation)

    @classmethod
    def decode(cls, data: bytes) -> "NegotiateMessage":
        # Old clients stop after NegotiateFlags; the name fields are optional.
        _header(data, 16, MessageType.NEGOTIATE)
        (flags,) = struct.unpack_from("<I", data, 12)
        if len(data) < _NEGOTIATE.size:
            return cls(flags)
        _, _, _, domain_raw, ws_raw = _NEGOTIATE.unpack_from(data)
        domain = _field(data, domain_raw, "DomainName")
        workstation = _field(data, ws_raw, "WorkstationName")
        version = None
        if flags & NegotiateFlags.VERSION and len(data) >= _NEGOTIATE.size + _VERSION_SIZE:
            version = Version.decode(data[_NEGOTIATE.size:_NEGOTIATE.size + _VERSION_SIZE])
        return cls(flags, domain, workstation, version)


@dataclass(frozen=True, slots=True)
class ChallengeMessage:
    """CHALLENGE_MESSAGE (2.2.1.2).  ``target_info`` excludes MsvAvEOL."""

    flags: int
    server_challenge: bytes
    target_name: str
    target_info: tuple[AvPair, ...]
    version: Version | None = None

    def encode(self) -> bytes:
        name = encode_utf16(self.target_name)
        info = encode_av_pairs(self.target_info)
        offset = _CHALLENGE.size + _VERSION_SIZE
        name_field = _FIELD.pack(len(name), len(name), offset)
        info_field = _FIELD.pack(len(info), len(info), offset + len(name))
        version = self.version.encode() if self.version else bytes(_VERSION_SIZE)
        return (_CHALLENGE.pack(SIGNATURE, MessageType.CHALLENGE, name_field, self.flags,
                                self.server_challenge, info_field) + version + name + info)

    @classmethod
    def decode(cls, data: bytes) -> "ChallengeMessage":
        _header(data, _CHALLENGE.size, MessageType.CHALLENGE)
        _, _, name_raw, flags, challenge, info_raw = _CHALLENGE.unpack_from(data)
        name = decode_utf16(_field(data, name_raw, "TargetName"), "TargetName")
        info_bytes = _field(data, info_raw, "TargetInfo")
        info = decode_av_pairs(info_bytes) if info_bytes else ()
        version = None
        if flags & NegotiateFlags.VERSION and len(data) >= _CHALLENGE.size + _VERSION_SIZE:
            version = Version.decode(data[_CHALLENGE.size:_CHALLENGE.size + _VERSION_SIZE])
        return cls(flags, challenge, name, info, version)


@dataclass(frozen=True, slots=True)
class AuthenticateMessage:
    """AUTHENTICATE_MESSAGE (2.2.1.3).  Strings are Unicode: the acceptor
    never negotiates the OEM character set.

    ``mic`` is None when the payload starts before offset 88, i.e. the
    message has no room for a MIC field.
    """

    flags: int
    lm_response: bytes
    nt_response: bytes
    domain: str
    user: str
    workstation: str
    encrypted_session_key: bytes
    version: Version | None = None
    mic: bytes | None = None

    def encode(self) -> bytes:
        """Payload in Windows order: domain, user, workstation, LM, NT, key."""
        parts = (encode_utf16(self.domain), encode_utf16(self.user),
                 encode_utf16(self.workstation), self.lm_response, self.nt_response,
                 self.encrypted_session_key)
        offset = MIC_OFFSET + (MIC_SIZE if self.mic is not None else 0)
        fields = []
        for part in parts:
            fields.append(_FIELD.pack(len(part), len(part), offset))
            offset += len(part)
        lm, nt, dom, usr, ws, key = fields[3], fields[4], fields[0], fields[1], fields[2], fields[5]
        version = self.version.encode() if self.version else bytes(_VERSION_SIZE)
        return (_AUTHENTICATE.pack(SIGNATURE, MessageType.AUTHENTICATE, lm, nt, dom, usr, ws,
                                   key, self.flags)
                + version + (self.mic or b"") + b"".join(parts))

    @classmethod
    def decode(cls, data: bytes) -> "AuthenticateMessage":
        _header(data, _AUTHENTICATE.size, MessageType.AUTHENTICATE)
        (_, _, lm_raw, nt_raw, dom_raw, usr_raw, ws_raw, key_raw,
         flags) = _AUTHENTICATE.unpack_from(data)
        raws = (lm_raw, nt_raw, dom_raw, usr_raw, ws_raw, key_raw)
        offsets = [o for o in map(_field_offset, raws) if o is not None]
        payload_start = min(offsets, default=len(data))
        version = None
        if (flags & NegotiateFlags.VERSION and payload_start >= MIC_OFFSET
                and len(data) >= MIC_OFFSET):
            version = Version.decode(data[_AUTHENTICATE.size:MIC_OFFSET])
        mic = None
        if payload_start >= MIC_OFFSET + MIC_SIZE and len(data) >= MIC_OFFSET + MIC_SIZE:
            mic = data[MIC_OFFSET:MIC_OFFSET + MIC_SIZE]
        return cls(
            flags=flags,
            lm_response=_field(data, lm_raw, "LmChallengeResponse"),
            nt_response=_field(data, nt_raw, "NtChallengeResponse"),
            domain=decode_utf16(_field(data, dom_raw, "DomainName"), "DomainName"),
            user=decode_utf16(_field(data, usr_raw, "UserName"), "UserName"),
            workstation=decode_utf16(_field(data, ws_raw, "Workstation"), "Workstation"),
            encrypted_session_key=_field(data, key_raw, "EncryptedRandomSessionKey"),
            version=version,
            mic=mic,
        )


@dataclass(frozen=True, slots=True)
class Ntlmv2Response:
    """NTLMv2_RESPONSE (2.2.2.8) with its NTLMv2_CLIENT_CHALLENGE (2.2.2.7).

    ``temp`` is the client-challenge blob exactly as sent: the HMAC in
    3.3.2 covers these bytes, so it is kept rather than re-encoded.
    """

    nt_proof_str: bytes
    temp: bytes
    timestamp: int
    client_challenge: bytes
    av_pairs: tuple[AvPair, ...]

    @classmethod
    def decode(cls, data: bytes) -> "Ntlmv2Response":
        if len(data) < NT_PROOF_SIZE + _CLIENT_CHALLENGE.size:
            raise malformed("NTLMv2_RESPONSE truncated")
        temp = data[NT_PROOF_SIZE:]
        resp_type, hi_resp_type, timestamp, client_challenge = _CLIENT_CHALLENGE.unpack_from(temp)
        if resp_type != 1 or hi_resp_type != 1:
            raise malformed("NTLMv2_CLIENT_CHALLENGE RespType is not 1")
        pairs = decode_av_pairs(temp[_CLIENT_CHALLENGE.size:])
        return cls(data[:NT_PROOF_SIZE], temp, timestamp, client_challenge, pairs)
