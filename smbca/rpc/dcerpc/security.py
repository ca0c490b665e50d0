"""Connection-oriented DCE/RPC security ([MS-RPCE] 3.3.1.5.2, 2.2.2.11, 2.2.2.12).

One ``AuthState`` per connection runs the security context legs carried by
bind / bind_ack, alter_context / alter_context_resp and auth3, then protects
and checks every request and response PDU at the negotiated level:

* PKT (4) and PKT_INTEGRITY (5): a signature over the whole PDU up to the
  end of the sec_trailer;
* PKT_PRIVACY (6): the stub and its auth padding sealed, the signature over
  the whole PDU with the stub in plaintext;
* CONNECT (2): authentication only, PDUs carry no verifier.

The security provider itself (SPNEGO, NTLM, later Kerberos) is injected as
a ``SecurityProvider``: this package imports the standard library only, so
the adapter to ``smbca.auth`` lives in ``smbca/rpc/ntlm_security.py``.  One
security context per connection; security context multiplexing
([MS-RPCE] 3.3.1.5.4) is not offered in bind time feature negotiation.
Phases move through ``AUTH_TRANSITIONS``; a pair not in the table ends in
FAILED and raises ``AuthRefused``.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, Protocol

from smbca.rpc.dcerpc.constants import AuthLevel, BindNakReason, FaultStatus
from smbca.rpc.dcerpc.elements import SEC_TRAILER_SIZE, AuthVerifier
from smbca.rpc.dcerpc.errors import RpcError

AUTH_PAD_ALIGNMENT = 16
"""Stub plus auth padding is a multiple of 16 octets (Samba DCERPC_AUTH_PAD_LENGTH)."""
MAX_AUTH_TOKEN = 0xFFFF
SUPPORTED_LEVELS = frozenset({AuthLevel.CONNECT, AuthLevel.PKT, AuthLevel.PKT_INTEGRITY,
                              AuthLevel.PKT_PRIVACY})
"""CALL (3) is refused as Samba refuses it; DEFAULT/NONE cannot start a context."""


class SecurityError(RpcError):
    """A security provider rejected a token or a packet; ``status`` is the fault to send."""

    status = FaultStatus.RPC_S_SEC_PKG_ERROR


class AuthRefused(RpcError):
    """A PDU the security phase does not allow, or a failed leg.

    ``bind_nak_reason`` is what a bind gets; other PDUs get a fault with
    ``status`` and the connection closes.
    """

    def __init__(self, message: str, status: int,
                 bind_nak_reason: int = BindNakReason.REASON_NOT_SPECIFIED) -> None:
        super().__init__(message, status)
        self.bind_nak_reason = bind_nak_reason


class SecurityContext(Protocol):
    """One acceptor security context (GSS_Accept_sec_context and per-message calls).

    ``step`` returns (output token, complete) and raises ``SecurityError``.
    The packet calls take ``payload`` (stub plus auth padding) and the
    octets the signature covers; which of them a mechanism signs is its
    business (NTLM always signs the whole PDU, [MS-RPCE] 2.2.2.12 note).
    A context whose mechanism signs the header only when the bind
    negotiated it (Kerberos) has ``use_header_signing(bool)``, called once
    the context is made.
    """

    @property
    def identity(self) -> Any: ...

    @property
    def signature_size(self) -> int: ...

    def step(self, token: bytes) -> tuple[bytes, bool]: ...

    def sign_packet(self, payload: bytes, whole: bytes) -> bytes: ...

    def check_packet(self, payload: bytes, whole: bytes, signature: bytes) -> bool: ...

    def seal_packet(self, payload: bytes, prefix: bytes, suffix: bytes) -> tuple[bytes, bytes]: ...

    def unseal_packet(self, sealed: bytes, prefix: bytes, suffix: bytes,
                      signature: bytes) -> bytes | None: ...


class SecurityProvider(Protocol):
    """Starts contexts by auth_type ([MS-RPCE] 2.2.1.1.7); None for an unknown type."""

    def new_context(self, auth_type: int, auth_level: int) -> SecurityContext | None: ...

    def auth_failed(self) -> None: ...


class AuthPhase(Enum):
    START = "start"              # before the bind
    NONE = "none"                # bound without authentication
    NEGOTIATING = "negotiating"  # legs under way
    ESTABLISHED = "established"  # context complete: requests are protected
    FAILED = "failed"            # terminal


class AuthEvent(Enum):
    BIND_PLAIN = "bind without verifier"
    BIND_AUTH = "bind with verifier"
    ALTER_PLAIN = "alter_context without verifier"
    ALTER_AUTH = "alter_context with verifier"
    AUTH3 = "auth3"
    COMPLETE = "context complete"
    REQUEST = "request"


AUTH_TRANSITIONS: Mapping[tuple[AuthPhase, AuthEvent], AuthPhase] = MappingProxyType({
    (AuthPhase.START, AuthEvent.BIND_PLAIN): AuthPhase.NONE,
    (AuthPhase.START, AuthEvent.BIND_AUTH): AuthPhase.NEGOTIATING,
    (AuthPhase.NONE, AuthEvent.ALTER_PLAIN): AuthPhase.NONE,
    (AuthPhase.NONE, AuthEvent.REQUEST): AuthPhase.NONE,
    (AuthPhase.NEGOTIATING, AuthEvent.ALTER_AUTH): AuthPhase.NEGOTIATING,
    (AuthPhase.NEGOTIATING, AuthEvent.AUTH3): AuthPhase.NEGOTIATING,
    (AuthPhase.NEGOTIATING, AuthEvent.COMPLETE): AuthPhase.ESTABLISHED,
    (AuthPhase.ESTABLISHED, AuthEvent.ALTER_PLAIN): AuthPhase.ESTABLISHED,
    (AuthPhase.ESTABLISHED, AuthEvent.REQUEST): AuthPhase.ESTABLISHED,
})
"""Security phase table; e.g. a second authentication after ESTABLISHED is refused
(Samba dcesrv_auth_alter: access denied), a request while NEGOTIATING is a
protocol error (dcesrv_auth_pkt_pull)."""


@dataclass(frozen=True, slots=True)
class Leg:
    """What one bind / alter_context leg sends back: the verifier for the ack, if any."""

    verifier: AuthVerifier | None


class AuthState:
    """The security state of one connection ([MS-RPCE] 3.3.1.5.2.1)."""

    def __init__(self, provider: SecurityProvider | None) -> None:
        self._provider = provider
        self.phase = AuthPhase.START
        self.auth_type = 0
        self.auth_level = AuthLevel.NONE
        self.auth_context_id = 0
        self._context: SecurityContext | None = None

    @property
    def identity(self) -> Any:
        return self._context.identity if self.phase is AuthPhase.ESTABLISHED and self._context else None

    @property
    def protects_packets(self) -> bool:
        """Requests and responses carry signatures (PKT and above)."""
        return self.phase is AuthPhase.ESTABLISHED and self.auth_level >= AuthLevel.PKT

    @property
    def signature_size(self) -> int:
        return self._context.signature_size if self._context is not None else 0

    def _move(self, event: AuthEvent, status: int, reason: int = BindNakReason.REASON_NOT_SPECIFIED
              ) -> None:
        target = AUTH_TRANSITIONS.get((self.phase, event))
        if target is None:
            phase, self.phase = self.phase, AuthPhase.FAILED
            raise AuthRefused(f"{event.value} not allowed in security phase {phase.value}",
                              status, reason)
        self.phase = target

    # -- context legs ---------------------------------------------------------

    def bind(self, verifier: AuthVerifier | None, header_signing: bool = False) -> Leg:
        """First leg, from the bind; raises AuthRefused (answered with bind_nak).
        ``header_signing``: the bind asked for PFC_SUPPORT_HEADER_SIGN (echoed)."""
        if verifier is None:
            self._move(AuthEvent.BIND_PLAIN, FaultStatus.NCA_S_PROTO_ERROR)
            return Leg(None)
        self._move(AuthEvent.BIND_AUTH, FaultStatus.NCA_S_PROTO_ERROR)
        if verifier.auth_level not in SUPPORTED_LEVELS:
            self.phase = AuthPhase.FAILED
            raise AuthRefused(f"auth_level {verifier.auth_level} not supported",
                              FaultStatus.RPC_S_ACCESS_DENIED, BindNakReason.REASON_NOT_SPECIFIED)
        context = (self._provider.new_context(verifier.auth_type, verifier.auth_level)
                   if self._provider is not None else None)
        if context is None:
            self.phase = AuthPhase.FAILED
            raise AuthRefused(f"no security provider for auth_type {verifier.auth_type}",
                              FaultStatus.RPC_S_SEC_PKG_ERROR,
                              BindNakReason.AUTHENTICATION_TYPE_NOT_RECOGNIZED)
        use_header_signing = getattr(context, "use_header_signing", None)
        if use_header_signing is not None:
            use_header_signing(header_signing)
        self._context = context
        self.auth_type = verifier.auth_type
        self.auth_level = verifier.auth_level
        self.auth_context_id = verifier.auth_context_id
        return self._leg(verifier, BindNakReason.INVALID_CHECKSUM)

    def alter(self, verifier: AuthVerifier | None) -> Leg:
        """A further leg, or a pure context change; raises AuthRefused (fault, close)."""
        if verifier is None:
            self._move(AuthEvent.ALTER_PLAIN, FaultStatus.NCA_S_PROTO_ERROR)
            return Leg(None)
        self._move(AuthEvent.ALTER_AUTH, FaultStatus.RPC_S_ACCESS_DENIED)
        self._check_fields(verifier, FaultStatus.RPC_S_ACCESS_DENIED)
        return self._leg(verifier, BindNakReason.INVALID_CHECKSUM)

    def auth3(self, verifier: AuthVerifier | None) -> None:
        """The last leg of a three-leg mechanism (NTLM); never answered."""
        self._move(AuthEvent.AUTH3, FaultStatus.NCA_S_PROTO_ERROR)
        if verifier is None:
            self.phase = AuthPhase.FAILED
            raise AuthRefused("auth3 without a verifier", FaultStatus.NCA_S_FAULT_REMOTE_NO_MEMORY)
        self._check_fields(verifier, FaultStatus.NCA_S_FAULT_REMOTE_NO_MEMORY)
        self._leg(verifier, BindNakReason.INVALID_CHECKSUM)
        if self.phase is not AuthPhase.ESTABLISHED:
            self.phase = AuthPhase.FAILED  # Samba: auth_invalid, later requests get access denied
            raise AuthRefused("security context incomplete after auth3",
                              FaultStatus.RPC_S_SEC_PKG_ERROR)

    def _check_fields(self, verifier: AuthVerifier, status: int) -> None:
        if (verifier.auth_type, verifier.auth_level, verifier.auth_context_id) != (
                self.auth_type, self.auth_level, self.auth_context_id):
            self.phase = AuthPhase.FAILED
            raise AuthRefused("verifier does not match the security context", status)

    def _leg(self, verifier: AuthVerifier, nak_reason: int) -> Leg:
        assert self._context is not None
        try:
            token, complete = self._context.step(verifier.auth_value)
        except SecurityError as exc:
            self.phase = AuthPhase.FAILED
            if self._provider is not None:
                self._provider.auth_failed()
            raise AuthRefused(f"authentication failed: {exc}", FaultStatus.RPC_S_ACCESS_DENIED,
                              nak_reason) from exc
        if complete:
            self._move(AuthEvent.COMPLETE, FaultStatus.NCA_S_PROTO_ERROR)
        if not token:
            return Leg(None)
        return Leg(AuthVerifier(auth_type=self.auth_type, auth_level=self.auth_level,
                                auth_context_id=self.auth_context_id, auth_value=token))

    # -- per-PDU protection ([MS-RPCE] 3.3.1.5.2.2) -----------------------------

    def check_request(self, verifier: AuthVerifier | None, first: bool) -> None:
        """Phase and sec_trailer checks before a request fragment is unprotected."""
        if self.phase is AuthPhase.FAILED:
            raise AuthRefused("request after failed authentication", FaultStatus.RPC_S_ACCESS_DENIED)
        self._move(AuthEvent.REQUEST, FaultStatus.NCA_S_PROTO_ERROR)
        if self.phase is AuthPhase.NONE or self.auth_level == AuthLevel.CONNECT:
            if verifier is not None and self.phase is AuthPhase.NONE:
                raise AuthRefused("verifier on an unauthenticated connection",
                                  FaultStatus.NCA_S_PROTO_ERROR)
            return
        if verifier is None:
            raise AuthRefused("request without verifier", FaultStatus.NCA_S_PROTO_ERROR)
        if first and (verifier.auth_type, verifier.auth_level, verifier.auth_context_id) != (
                self.auth_type, self.auth_level, self.auth_context_id):
            raise AuthRefused("verifier does not match the security context",
                              FaultStatus.RPC_S_ACCESS_DENIED)

    def unprotect(self, raw: bytes, payload_offset: int, verifier: AuthVerifier) -> bytes:
        """Check or unseal one PDU; return the payload without auth padding."""
        assert self._context is not None
        signature = verifier.auth_value
        trailer_at = len(raw) - len(signature) - SEC_TRAILER_SIZE
        payload = raw[payload_offset:trailer_at]
        if verifier.auth_pad_length > len(payload):
            raise AuthRefused("auth_pad_length exceeds the payload", FaultStatus.NCA_S_PROTO_ERROR)
        if self.auth_level == AuthLevel.PKT_PRIVACY:
            plain = self._context.unseal_packet(payload, raw[:payload_offset],
                                                raw[trailer_at:len(raw) - len(signature)],
                                                signature)
            if plain is None:
                raise AuthRefused("PDU does not unseal", FaultStatus.RPC_S_SEC_PKG_ERROR)
            payload = plain
        elif not self._context.check_packet(payload, raw[:len(raw) - len(signature)], signature):
            raise AuthRefused("PDU signature does not verify", FaultStatus.RPC_S_SEC_PKG_ERROR)
        return payload[:len(payload) - verifier.auth_pad_length]

    def response_verifier(self, stub_length: int) -> AuthVerifier:
        """Placeholder verifier (zero signature) with the padding for ``stub_length``."""
        return AuthVerifier(auth_type=self.auth_type, auth_level=self.auth_level,
                            auth_pad_length=-stub_length % AUTH_PAD_ALIGNMENT,
                            auth_context_id=self.auth_context_id,
                            auth_value=bytes(self.signature_size))

    def protect(self, raw: bytes, payload_offset: int) -> bytes:
        """Sign or seal a PDU encoded with ``response_verifier``'s placeholder."""
        assert self._context is not None
        size = self.signature_size
        trailer_at = len(raw) - size - SEC_TRAILER_SIZE
        payload = raw[payload_offset:trailer_at]
        whole = raw[:len(raw) - size]
        if self.auth_level == AuthLevel.PKT_PRIVACY:
            sealed, signature = self._context.seal_packet(payload, raw[:payload_offset],
                                                          raw[trailer_at:len(raw) - size])
            whole = raw[:payload_offset] + sealed + raw[trailer_at:len(raw) - size]
        else:
            signature = self._context.sign_packet(payload, whole)
        if len(signature) != size:
            raise SecurityError(f"signature of {len(signature)} octets, expected {size}")
        return whole + signature
