"""The DCE/RPC security provider over the shared SPNEGO / NTLM / Kerberos acceptors.

Adapts ``smbca.auth`` (the same user database and code as the SMB server)
to ``smbca.rpc.dcerpc.SecurityProvider``, for witnessd's endpoints and for
smbcad's named pipes:

* auth_type 9 (RPC_C_AUTHN_GSS_NEGOTIATE): SPNEGO, what Windows witness
  clients use by default ([MS-SWN] 7 notes <11>, <12]); four legs, the last
  in alter_context;
* auth_type 10 (RPC_C_AUTHN_WINNT): raw NTLMSSP, three legs ending in auth3
  ([MS-RPCE] 2.2.1.1.7);
* auth_type 16 (RPC_C_AUTHN_GSS_KERBEROS), and Kerberos inside SPNEGO, when
  the provider has the domain member's keytab: ``smbca.auth.kerberos_rpc``
  (the DCE style exchange, GSS_WrapEx over IOVs).

NTLM signs the whole PDU whatever header signing says (Samba
ntlmssp_make_packet_signature signs ``whole_pdu``), and seals only the stub
with its padding.  Kerberos signs (and, sealing, authenticates) the PDU
header and sec_trailer only when the bind negotiated header signing, as
Samba's gssapi_sign_packet / gssapi_seal_packet do.  Guest and anonymous
logons have no session keys and are refused.
"""

import logging
from collections.abc import Callable
from typing import Any

from smbca.auth import NTLM_OID, Authenticator, AuthError, SpnegoAcceptor
from smbca.rpc.dcerpc import AuthLevel, AuthType, SecurityError

log = logging.getLogger("smbca.rpc.security")

NTLM_SIGNATURE_SIZE = 16
"""NTLMSSP_MESSAGE_SIGNATURE ([MS-NLMP] 2.2.2.9)."""


class _Context:
    """One acceptor context behind the ``smbca.rpc.dcerpc.SecurityContext`` protocol."""

    def __init__(self, acceptor: Any, spnego: bool, auth_level: int = AuthLevel.PKT) -> None:
        self._acceptor = acceptor
        self._spnego = spnego
        self._privacy = auth_level == AuthLevel.PKT_PRIVACY
        self._header_signing = False
        self._kerberos_signature_size: int | None = None

    def use_header_signing(self, negotiated: bool) -> None:
        self._header_signing = negotiated

    def _kerberos(self) -> Any:
        """The Kerberos context once established, None for NTLM."""
        inner = self._acceptor.mechanism_context if self._spnego else self._acceptor
        return inner if getattr(inner, "dce_style", False) and inner.complete else None

    @property
    def signature_size(self) -> int:
        kerberos = self._kerberos()
        if kerberos is None:
            return NTLM_SIGNATURE_SIZE
        if self._kerberos_signature_size is None:
            try:
                self._kerberos_signature_size = kerberos.signature_length(self._privacy)
            except AuthError as exc:
                raise SecurityError(str(exc)) from exc
        return self._kerberos_signature_size

    def _signed_part(self, payload: bytes, whole: bytes) -> bytes:
        """What the signature covers: always the whole PDU for NTLM, for
        Kerberos only with header signing (else the stub and its padding)."""
        return payload if self._kerberos() is not None and not self._header_signing else whole

    def _signed_around(self, prefix: bytes, suffix: bytes) -> tuple[bytes, bytes]:
        if self._kerberos() is not None and not self._header_signing:
            return b"", b""
        return prefix, suffix

    @property
    def identity(self) -> Any:
        return self._acceptor.identity

    def step(self, token: bytes) -> tuple[bytes, bool]:
        try:
            if self._spnego:
                result = self._acceptor.step(token)
                out, complete = result.out_token, result.complete
            else:
                out = self._acceptor.step(token) or b""
                complete = self._acceptor.complete
        except AuthError as exc:
            raise SecurityError(f"{exc} (NTSTATUS 0x{exc.status:08x})") from exc
        identity = self._acceptor.identity if complete else None
        if complete and (identity is None or identity.is_guest or identity.is_anonymous):
            raise SecurityError("guest and anonymous logons cannot protect DCE/RPC packets")
        if complete:
            log.debug("DCE/RPC bind authenticated %s\\%s with %s", identity.domain, identity.user,
                     "Kerberos" if identity.principal else "NTLM")
        return out, complete

    def sign_packet(self, payload: bytes, whole: bytes) -> bytes:
        try:
            return self._acceptor.sign(self._signed_part(payload, whole))
        except AuthError as exc:
            raise SecurityError(str(exc)) from exc

    def check_packet(self, payload: bytes, whole: bytes, signature: bytes) -> bool:
        try:
            return self._acceptor.verify(self._signed_part(payload, whole), signature)
        except AuthError:
            return False

    def seal_packet(self, payload: bytes, prefix: bytes, suffix: bytes) -> tuple[bytes, bytes]:
        try:
            return self._acceptor.seal(payload, *self._signed_around(prefix, suffix))
        except AuthError as exc:
            raise SecurityError(str(exc)) from exc

    def unseal_packet(self, sealed: bytes, prefix: bytes, suffix: bytes,
                      signature: bytes) -> bytes | None:
        try:
            return self._acceptor.unseal(sealed, signature, *self._signed_around(prefix, suffix))
        except AuthError:
            return None


class NtlmSecurity:
    """``SecurityProvider`` over an ``Authenticator``; ``on_failure`` counts failed logons.

    ``kerberos`` (a ``KerberosMechanism`` over the member's keytab) adds
    Kerberos: auth_type 16, and a mechanism of SPNEGO's (under both OIDs)."""

    def __init__(self, authenticator: Authenticator,
                 on_failure: Callable[[], None] | None = None, kerberos: Any = None) -> None:
        self._authenticator = authenticator
        self._on_failure = on_failure
        self._ntlm = next((mech for mech in authenticator.mechanisms if mech.oid == NTLM_OID),
                          None)
        self._kerberos = kerberos.for_dce_rpc() if kerberos is not None else None
        self._spnego_mechanisms: tuple = ()
        if self._kerberos is not None:
            from smbca.auth.kerberos import MS_KRB5_OID
            self._spnego_mechanisms = (self._kerberos.with_oid(MS_KRB5_OID), self._kerberos,
                                       *([self._ntlm] if self._ntlm is not None else []))

    def new_context(self, auth_type: int, auth_level: int) -> _Context | None:
        if auth_type == AuthType.GSS_NEGOTIATE:
            exchange = (SpnegoAcceptor(self._spnego_mechanisms) if self._spnego_mechanisms
                        else self._authenticator.new_exchange())
            return _Context(exchange, spnego=True, auth_level=auth_level)
        if auth_type == AuthType.WINNT and self._ntlm is not None:
            return _Context(self._ntlm.new_context(), spnego=False, auth_level=auth_level)
        if auth_type == AuthType.GSS_KERBEROS and self._kerberos is not None:
            return _Context(self._kerberos.new_context(), spnego=False, auth_level=auth_level)
        return None

    def auth_failed(self) -> None:
        if self._on_failure is not None:
            self._on_failure()
