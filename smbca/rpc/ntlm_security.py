"""The DCE/RPC security provider over the shared SPNEGO / NTLM acceptor.

Adapts ``smbca.auth`` (the same user database and code as the SMB server)
to ``smbca.rpc.dcerpc.SecurityProvider``, for witnessd's endpoints and for
smbcad's named pipes:

* auth_type 9 (RPC_C_AUTHN_GSS_NEGOTIATE): SPNEGO, what Windows witness
  clients use by default ([MS-SWN] 7 notes <11>, <12]); four legs, the last
  in alter_context;
* auth_type 10 (RPC_C_AUTHN_WINNT): raw NTLMSSP, three legs ending in auth3
  ([MS-RPCE] 2.2.1.1.7).

Kerberos (16) arrives with the Active Directory work.  NTLM signs the whole
PDU whatever header signing says (Samba ntlmssp_make_packet_signature signs
``whole_pdu``), and seals only the stub with its padding.  Guest and
anonymous logons have no session keys and are refused.
"""

from collections.abc import Callable
from typing import Any

from smbca.auth import NTLM_OID, Authenticator, AuthError
from smbca.rpc.dcerpc import AuthType, SecurityError

NTLM_SIGNATURE_SIZE = 16
"""NTLMSSP_MESSAGE_SIGNATURE ([MS-NLMP] 2.2.2.9)."""


class _Context:
    """One acceptor context behind the ``smbca.rpc.dcerpc.SecurityContext`` protocol."""

    signature_size = NTLM_SIGNATURE_SIZE

    def __init__(self, acceptor: Any, spnego: bool) -> None:
        self._acceptor = acceptor
        self._spnego = spnego

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
        return out, complete

    def sign_packet(self, payload: bytes, whole: bytes) -> bytes:
        try:
            return self._acceptor.sign(whole)
        except AuthError as exc:
            raise SecurityError(str(exc)) from exc

    def check_packet(self, payload: bytes, whole: bytes, signature: bytes) -> bool:
        try:
            return self._acceptor.verify(whole, signature)
        except AuthError:
            return False

    def seal_packet(self, payload: bytes, prefix: bytes, suffix: bytes) -> tuple[bytes, bytes]:
        try:
            return self._acceptor.seal(payload, prefix, suffix)
        except AuthError as exc:
            raise SecurityError(str(exc)) from exc

    def unseal_packet(self, sealed: bytes, prefix: bytes, suffix: bytes,
                      signature: bytes) -> bytes | None:
        try:
            return self._acceptor.unseal(sealed, signature, prefix, suffix)
        except AuthError:
            return None


class NtlmSecurity:
    """``SecurityProvider`` over an ``Authenticator``; ``on_failure`` counts failed logons."""

    def __init__(self, authenticator: Authenticator,
                 on_failure: Callable[[], None] | None = None) -> None:
        self._authenticator = authenticator
        self._on_failure = on_failure
        self._ntlm = next((mech for mech in authenticator.mechanisms if mech.oid == NTLM_OID),
                          None)

    def new_context(self, auth_type: int, auth_level: int) -> _Context | None:
        if auth_type == AuthType.GSS_NEGOTIATE:
            return _Context(self._authenticator.new_exchange(), spnego=True)
        if auth_type == AuthType.WINNT and self._ntlm is not None:
            return _Context(self._ntlm.new_context(), spnego=False)
        return None

    def auth_failed(self) -> None:
        if self._on_failure is not None:
            self._on_failure()
