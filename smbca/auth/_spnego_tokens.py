"""SPNEGO negotiation tokens (RFC 4178 4.2, [MS-SPNG] 2.2.1) in DER.

NegotiationToken ::= CHOICE { negTokenInit [0], negTokenResp [1] }.  The
initial token travels inside a GSS-API InitialContextToken (RFC 2743 3.1):
``[APPLICATION 0] { thisMech OID 1.3.6.1.5.5.2, innerContextToken }``.
"""

from dataclasses import dataclass
from enum import IntEnum

from smbca.auth._der import (APPLICATION_0, BIT_STRING, ENUMERATED, GENERAL_STRING,
                              MAX_TOKEN_SIZE, OCTET_STRING, OID, SEQUENCE, Reader, context,
                              decode_oid, encode_oid, tlv)
from smbca.auth.errors import malformed

SPNEGO_OID = "1.3.6.1.5.5.2"
HINT_NAME_IGNORE = "not_defined_in_RFC4178@please_ignore"  # [MS-SPNG] 3.2.5.2
_MAX_MECH_TYPES = 32


class NegState(IntEnum):
    """NegTokenResp.negState (RFC 4178 4.2.2)."""

    ACCEPT_COMPLETED = 0
    ACCEPT_INCOMPLETE = 1
    REJECT = 2
    REQUEST_MIC = 3


def encode_mech_type_list(mech_types: tuple[str, ...]) -> bytes:
    """DER of MechTypeList, the data a mechListMIC covers (RFC 4178 5)."""
    return tlv(SEQUENCE, b"".join(encode_oid(oid) for oid in mech_types))


def _decode_mech_type_list(reader: Reader) -> tuple[str, ...]:
    items = reader.read(SEQUENCE)
    reader.expect_end("mechTypes")
    oids = []
    while not items.at_end():
        if len(oids) == _MAX_MECH_TYPES:
            raise malformed("too many mechTypes")
        oids.append(decode_oid(items.read_value(OID)))
    return tuple(oids)


def _octets(reader: Reader, what: str) -> bytes:
    value = reader.read_value(OCTET_STRING)
    reader.expect_end(what)
    return value


@dataclass(frozen=True, slots=True)
class NegTokenInit:
    """NegTokenInit (RFC 4178 4.2.1); NegTokenInit2 ([MS-SPNG] 2.2.1) when
    ``hint_name`` is set, which moves mechListMIC from [3] to [4].

    ``req_flags`` holds the raw ContextFlags BIT STRING contents; acceptors
    ignore it ([MS-SPNG] 3.1.5.3).
    """

    mech_types: tuple[str, ...]
    req_flags: bytes | None = None
    mech_token: bytes | None = None
    hint_name: str | None = None
    mech_list_mic: bytes | None = None

    def encode(self) -> bytes:
        """The token wrapped in the GSS-API InitialContextToken header."""
        body = tlv(context(0), encode_mech_type_list(self.mech_types))
        if self.req_flags is not None:
            body += tlv(context(1), tlv(BIT_STRING, self.req_flags))
        if self.mech_token is not None:
            body += tlv(context(2), tlv(OCTET_STRING, self.mech_token))
        if self.hint_name is not None:
            hint = tlv(context(0), tlv(GENERAL_STRING, self.hint_name.encode("latin-1")))
            body += tlv(context(3), tlv(SEQUENCE, hint))
        if self.mech_list_mic is not None:
            mic_tag = context(4) if self.hint_name is not None else context(3)
            body += tlv(mic_tag, tlv(OCTET_STRING, self.mech_list_mic))
        inner = tlv(context(0), tlv(SEQUENCE, body))
        return tlv(APPLICATION_0, encode_oid(SPNEGO_OID) + inner)

    @classmethod
    def _decode(cls, reader: Reader) -> "NegTokenInit":
        seq = reader.read(SEQUENCE)
        reader.expect_end("negTokenInit")
        field = seq.read_optional(context(0))
        mech_types = _decode_mech_type_list(field) if field else ()
        field = seq.read_optional(context(1))
        req_flags = None
        if field:
            req_flags = field.read_value(BIT_STRING)
            field.expect_end("reqFlags")
        field = seq.read_optional(context(2))
        mech_token = _octets(field, "mechToken") if field else None
        hint_name = None
        mic = None
        field = seq.read_optional(context(3))
        if field and field.peek_tag() == SEQUENCE:
            hint_name = _decode_neg_hints(field)
        elif field:
            mic = _octets(field, "mechListMIC")
        field = seq.read_optional(context(4))
        if field:
            mic = _octets(field, "mechListMIC")
        seq.expect_end("negTokenInit")
        return cls(mech_types, req_flags, mech_token, hint_name, mic)


def _decode_neg_hints(reader: Reader) -> str:
    hints = reader.read(SEQUENCE)
    reader.expect_end("negHints")
    name_field = hints.read_optional(context(0))
    name = ""
    if name_field:
        name = name_field.read_value(GENERAL_STRING).decode("latin-1")
        name_field.expect_end("hintName")
    address = hints.read_optional(context(1))
    if address:
        address.rest()
    hints.expect_end("negHints")
    return name


@dataclass(frozen=True, slots=True)
class NegTokenResp:
    """NegTokenResp (RFC 4178 4.2.2)."""

    neg_state: NegState | None = None
    supported_mech: str | None = None
    response_token: bytes | None = None
    mech_list_mic: bytes | None = None

    def encode(self) -> bytes:
        body = b""
        if self.neg_state is not None:
            body += tlv(context(0), tlv(ENUMERATED, bytes([self.neg_state])))
        if self.supported_mech is not None:
            body += tlv(context(1), encode_oid(self.supported_mech))
        if self.response_token is not None:
            body += tlv(context(2), tlv(OCTET_STRING, self.response_token))
        if self.mech_list_mic is not None:
            body += tlv(context(3), tlv(OCTET_STRING, self.mech_list_mic))
        return tlv(context(1), tlv(SEQUENCE, body))

    @classmethod
    def _decode(cls, reader: Reader) -> "NegTokenResp":
        seq = reader.read(SEQUENCE)
        reader.expect_end("negTokenResp")
        neg_state = None
        field = seq.read_optional(context(0))
        if field:
            raw = field.read_value(ENUMERATED)
            field.expect_end("negState")
            if len(raw) != 1 or raw[0] > NegState.REQUEST_MIC:
                raise malformed("unknown negState")
            neg_state = NegState(raw[0])
        field = seq.read_optional(context(1))
        supported = None
        if field:
            supported = decode_oid(field.read_value(OID))
            field.expect_end("supportedMech")
        field = seq.read_optional(context(2))
        token = _octets(field, "responseToken") if field else None
        field = seq.read_optional(context(3))
        mic = _octets(field, "mechListMIC") if field else None
        seq.expect_end("negTokenResp")
        return cls(neg_state, supported, token, mic)


def initial_context_mech(data: bytes) -> str | None:
    """The thisMech OID of a GSS InitialContextToken (RFC 2743 3.1), or None
    if ``data`` does not start with one."""
    if not data or data[0] != APPLICATION_0:
        return None
    app = Reader(bytes(data)).read(APPLICATION_0)
    return decode_oid(app.read_value(OID))


def decode_negotiation_token(data: bytes) -> NegTokenInit | NegTokenResp:
    """A NegotiationToken, with or without the InitialContextToken wrapper."""
    if len(data) > MAX_TOKEN_SIZE:
        raise malformed("SPNEGO token too large")
    reader = Reader(bytes(data))
    tag = reader.peek_tag()
    if tag == APPLICATION_0:
        app = reader.read(APPLICATION_0)
        reader.expect_end("InitialContextToken")
        if decode_oid(app.read_value(OID)) != SPNEGO_OID:
            raise malformed("InitialContextToken is not SPNEGO")
        token = NegTokenInit._decode(app.read(context(0)))
        app.expect_end("InitialContextToken")
        return token
    if tag in (context(0), context(1)):
        inner = reader.read(tag)
        reader.expect_end("NegotiationToken")
        return NegTokenInit._decode(inner) if tag == context(0) else NegTokenResp._decode(inner)
    raise malformed("not a SPNEGO NegotiationToken")
