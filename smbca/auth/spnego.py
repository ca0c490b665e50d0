"""SPNEGO acceptor (RFC 4178 with the [MS-SPNG] extensions).

Mechanism-neutral: a mechanism is any factory with an ``oid`` and a
``new_context()`` whose contexts follow ``MechanismContext``.  NTLM is one,
Kerberos (``smbca.auth.kerberos``) another.  A bare mechanism token without
SPNEGO framing (NTLMSSP, or a Kerberos InitialContextToken) is accepted too.  The acceptor's transitions are the
``_TRANSITIONS`` table; input that has no entry fails the exchange with
STATUS_INVALID_PARAMETER.

mechListMIC (RFC 4178 5, [MS-SPNG] 3.1.5.1): a client MIC is verified
whenever one arrives; ours is sent back whenever the client sent one, and
is mandatory both ways when we did not pick the client's first mechanism
(a downgrade).  Guest and anonymous contexts have no session security
([MS-NLMP] 3.4), so MICs are neither checked nor sent for them.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Protocol

from smbca.auth._ntlm_messages import SIGNATURE as NTLMSSP_SIGNATURE
from smbca.auth._spnego_tokens import (HINT_NAME_IGNORE, SPNEGO_OID, NegState, NegTokenInit,
                                        NegTokenResp, decode_negotiation_token,
                                        encode_mech_type_list, initial_context_mech)
from smbca.auth.errors import AuthError, logon_failure, malformed
from smbca.auth.identity import Identity
from smbca.auth.ntlm import NTLM_OID


class MechanismContext(Protocol):
    """One exchange of a mechanism, acceptor side (GSS_Accept_sec_context).

    ``step`` raises only ``AuthError``.  ``sign``/``verify`` are GSS_GetMIC /
    GSS_VerifyMIC, used for the mechListMIC.  A context may also offer
    ``reset_key_state(outgoing: bool)``, called right after each mechListMIC
    operation; NTLM uses it to rewind its RC4 handle ([MS-SPNG] 3.2.5.1).
    """

    @property
    def complete(self) -> bool: ...

    @property
    def session_key(self) -> bytes | None: ...

    @property
    def identity(self) -> Identity | None: ...

    def step(self, token: bytes) -> bytes | None: ...

    def sign(self, data: bytes) -> bytes: ...

    def verify(self, data: bytes, signature: bytes) -> bool: ...


class MechanismFactory(Protocol):
    """A negotiable mechanism: its OID and a way to start an exchange."""

    @property
    def oid(self) -> str: ...

    def new_context(self) -> MechanismContext: ...


@dataclass(frozen=True, slots=True)
class AuthStep:
    """What to send back: ``out_token`` (possibly empty) and whether the
    exchange is finished (False means STATUS_MORE_PROCESSING_REQUIRED)."""

    out_token: bytes
    complete: bool


class _State(Enum):
    START = "start"
    NEGOTIATING = "negotiating"     # SPNEGO mechanism chosen, more legs to come
    RAW = "raw"                     # bare NTLMSSP, no SPNEGO framing
    AWAIT_MIC = "await-mic"         # mechanism done, client mechListMIC owed
    DONE = "done"
    FAILED = "failed"


class _Input(Enum):
    EMPTY = "empty token"
    NEG_TOKEN_INIT = "NegTokenInit"
    NEG_TOKEN_RESP = "NegTokenResp"
    RAW_NTLMSSP = "raw NTLMSSP token"
    RAW_MECH = "raw mechanism token"      # a GSS token of another mechanism (Kerberos)


class SpnegoAcceptor:
    """One SPNEGO exchange, acceptor side.  ``step`` until ``complete``."""

    def __init__(self, mechanisms: Sequence[MechanismFactory]) -> None:
        oids = tuple(mech.oid for mech in mechanisms)
        if not oids or len(set(oids)) != len(oids):
            raise ValueError("SPNEGO needs at least one mechanism and unique OIDs")
        self._mechanisms = {mech.oid: mech for mech in mechanisms}
        self._oids = oids
        self._state = _State.START
        self._context: MechanismContext | None = None
        self._client_mech_types: tuple[str, ...] = ()
        self._downgraded = False

    def initial_token(self) -> bytes:
        """NegTokenInit2 listing our mechanisms ([MS-SPNG] 3.2.5.2), for the
        SMB2 NEGOTIATE response's security buffer."""
        return NegTokenInit(self._oids, hint_name=HINT_NAME_IGNORE).encode()

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE

    @property
    def session_key(self) -> bytes | None:
        return self._context.session_key if self.complete and self._context else None

    @property
    def identity(self) -> Identity | None:
        return self._context.identity if self.complete and self._context else None

    def sign(self, data: bytes) -> bytes:
        """GSS_GetMIC of the negotiated mechanism (e.g. for DCE/RPC packets)."""
        return self._established().sign(data)

    def verify(self, data: bytes, signature: bytes) -> bool:
        """GSS_VerifyMIC of the negotiated mechanism."""
        return self._established().verify(data, signature)

    def seal(self, message: bytes, prefix: bytes = b"", suffix: bytes = b"") -> tuple[bytes, bytes]:
        """GSS_WrapEx with confidentiality, for mechanisms that offer it (NTLM)."""
        return self._established().seal(message, prefix, suffix)  # type: ignore[attr-defined]

    def unseal(self, sealed: bytes, signature: bytes, prefix: bytes = b"",
               suffix: bytes = b"") -> bytes | None:
        """GSS_UnwrapEx; None when the signature does not verify."""
        return self._established().unseal(  # type: ignore[attr-defined]
            sealed, signature, prefix, suffix)

    @property
    def mechanism_context(self) -> MechanismContext | None:
        """The chosen mechanism's context once the exchange is complete (the
        DCE/RPC adapter asks it how the mechanism protects packets)."""
        return self._context if self.complete else None

    def _established(self) -> MechanismContext:
        if not self.complete or self._context is None:
            raise malformed("SPNEGO exchange is not complete")
        return self._context

    def step(self, token: bytes) -> AuthStep:
        """Consume one client token; raise ``AuthError`` on failure."""
        try:
            kind, parsed = _classify(bytes(token))
            handler = _TRANSITIONS.get((self._state, kind))
            if handler is None:
                raise malformed(f"unexpected {kind.value} in SPNEGO state {self._state.value}")
            result, self._state = handler(self, parsed)
        except AuthError:
            self._state = _State.FAILED
            raise
        return result

    # -- handlers: each returns (reply, next state) ---------------------------

    def _on_empty(self, _: object) -> tuple[AuthStep, _State]:
        """No client token yet: offer our mechanisms ([MS-SPNG] 3.2.5.2)."""
        return AuthStep(self.initial_token(), False), _State.START

    def _on_raw(self, raw: tuple[str, bytes]) -> tuple[AuthStep, _State]:
        """A client that skipped SPNEGO and sent a mechanism's token directly:
        NTLMSSP, or a Kerberos AP-REQ (smbprotocol's ``kerberos``), as
        Windows' Negotiate package accepts them."""
        oid, token = raw
        if self._context is None:
            factory = self._mechanisms.get(oid)
            if factory is None:
                raise malformed(f"raw token of mechanism {oid}, which is not offered")
            self._context = factory.new_context()
        out = self._context.step(token) or b""
        if self._context.complete:
            return AuthStep(out, True), _State.DONE
        return AuthStep(out, False), _State.RAW

    def _on_init(self, init: NegTokenInit) -> tuple[AuthStep, _State]:
        """First SPNEGO token: pick the first client mechanism we support (RFC 4178 3.2)."""
        self._client_mech_types = init.mech_types
        chosen = next(((index, oid) for index, oid in enumerate(init.mech_types)
                       if oid in self._mechanisms), None)
        if chosen is None:
            raise malformed("no mechanism in common with the client")
        index, oid = chosen
        self._context = self._mechanisms[oid].new_context()
        if index > 0:
            # The optimistic token (if any) was for a mechanism we lack.
            self._downgraded = True
            return _reply(NegState.REQUEST_MIC, oid), _State.NEGOTIATING
        if init.mech_token is None:
            return _reply(NegState.ACCEPT_INCOMPLETE, oid), _State.NEGOTIATING
        return self._mech_step(init.mech_token, None, oid)

    def _on_resp(self, resp: NegTokenResp) -> tuple[AuthStep, _State]:
        if resp.neg_state is NegState.REJECT:
            raise logon_failure("client rejected the negotiation")
        if not resp.response_token:
            raise malformed("NegTokenResp without a responseToken")
        return self._mech_step(resp.response_token, resp.mech_list_mic, None)

    def _on_client_mic(self, resp: NegTokenResp) -> tuple[AuthStep, _State]:
        """The client's mechListMIC after we sent ours (RFC 4178 5)."""
        if resp.mech_list_mic is None:
            raise logon_failure("mechListMIC required after a mechanism downgrade")
        self._verify_mic(resp.mech_list_mic)
        return _reply(NegState.ACCEPT_COMPLETED), _State.DONE

    # -- helpers ---------------------------------------------------------------

    def _mech_step(self, token: bytes, client_mic: bytes | None,
                   supported: str | None) -> tuple[AuthStep, _State]:
        assert self._context is not None  # guaranteed by _TRANSITIONS
        out = self._context.step(token)
        if not self._context.complete:
            return _reply(NegState.ACCEPT_INCOMPLETE, supported, out), _State.NEGOTIATING
        identity = self._context.identity
        if identity is None or identity.is_guest or identity.is_anonymous:
            return _reply(NegState.ACCEPT_COMPLETED, supported, out), _State.DONE
        if client_mic is not None:
            self._verify_mic(client_mic)
            mic = self._sign_mic()
            return _reply(NegState.ACCEPT_COMPLETED, supported, out, mic), _State.DONE
        if self._downgraded:
            mic = self._sign_mic()
            return _reply(NegState.ACCEPT_INCOMPLETE, supported, out, mic), _State.AWAIT_MIC
        return _reply(NegState.ACCEPT_COMPLETED, supported, out), _State.DONE

    def _verify_mic(self, mic: bytes) -> None:
        assert self._context is not None
        ok = self._context.verify(encode_mech_type_list(self._client_mech_types), mic)
        _reset_key_state(self._context, outgoing=False)
        if not ok:
            raise logon_failure("SPNEGO mechListMIC does not verify")

    def _sign_mic(self) -> bytes:
        assert self._context is not None
        mic = self._context.sign(encode_mech_type_list(self._client_mech_types))
        _reset_key_state(self._context, outgoing=True)
        return mic


def _reset_key_state(context: MechanismContext, outgoing: bool) -> None:
    reset: Callable[..., None] | None = getattr(context, "reset_key_state", None)
    if reset is not None:
        reset(outgoing=outgoing)


def _reply(state: NegState, supported: str | None = None, token: bytes | None = None,
           mic: bytes | None = None) -> AuthStep:
    resp = NegTokenResp(state, supported, token or None, mic)
    return AuthStep(resp.encode(), state is NegState.ACCEPT_COMPLETED)


def _classify(token: bytes) -> tuple[_Input, object]:
    if not token:
        return _Input.EMPTY, None
    if token.startswith(NTLMSSP_SIGNATURE):
        return _Input.RAW_NTLMSSP, (NTLM_OID, token)
    mech = initial_context_mech(token)
    if mech is not None and mech != SPNEGO_OID:
        return _Input.RAW_MECH, (mech, token)
    parsed = decode_negotiation_token(token)
    if isinstance(parsed, NegTokenInit):
        return _Input.NEG_TOKEN_INIT, parsed
    return _Input.NEG_TOKEN_RESP, parsed


_Handler = Callable[[SpnegoAcceptor, object], tuple[AuthStep, _State]]
_TRANSITIONS: Mapping[tuple[_State, _Input], _Handler] = MappingProxyType({
    (_State.START, _Input.EMPTY): SpnegoAcceptor._on_empty,
    (_State.START, _Input.NEG_TOKEN_INIT): SpnegoAcceptor._on_init,
    (_State.START, _Input.RAW_NTLMSSP): SpnegoAcceptor._on_raw,
    (_State.RAW, _Input.RAW_NTLMSSP): SpnegoAcceptor._on_raw,
    (_State.START, _Input.RAW_MECH): SpnegoAcceptor._on_raw,
    (_State.NEGOTIATING, _Input.NEG_TOKEN_RESP): SpnegoAcceptor._on_resp,
    (_State.AWAIT_MIC, _Input.NEG_TOKEN_RESP): SpnegoAcceptor._on_client_mic,
})
