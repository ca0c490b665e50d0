"""Server-side NTLM acceptor ([MS-NLMP] 3.2), NTLMv2 only.

``NtlmAcceptor`` consumes NEGOTIATE_MESSAGE, answers with a CHALLENGE_MESSAGE,
then verifies the AUTHENTICATE_MESSAGE against the user database, or, when
it names the domain the server joined, has a domain controller verify it
(``domain_logon``, NETLOGON pass-through: [MS-APDS] 3.1.5.2, the DC returns
the SessionBaseKey, from which key exchange, the MIC and session security
go on exactly as for a local user).  Its
transitions are the ``_TRANSITIONS`` table; any other input moves it to
FAILED.  Every failure, including malformed input, is an ``AuthError``.

Deliberately absent: NTLMv1/LM responses (refused with LOGON_FAILURE), the
OEM character set, channel bindings, challenge expiry and the MaxLifetime
timestamp check of 3.2.5.1.2, and signing without extended session
security (3.4.4.1).
"""

import hmac
import os
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import ClassVar

from smbca.auth._domain_logon import DomainLogonPort, NetworkLogon
from smbca.auth._ntlm_crypto import (ServerSessionSecurity, check_ntlmv2, compute_mic,
                                      exported_session_key)
from smbca.auth._ntlm_messages import (AV_FLAG_MIC_PRESENT, MIC_OFFSET, MIC_SIZE,
                                        NTLMV1_RESPONSE_SIZE, SIGNATURE, AuthenticateMessage,
                                        AvId, AvPair, ChallengeMessage, MessageType,
                                        NegotiateFlags as F, NegotiateMessage, Ntlmv2Response,
                                        Version, encode_utf16, find_av)
from smbca.auth.errors import AuthError, logon_failure, malformed
from smbca.auth.identity import Identity
from smbca.auth.users import UserDatabase
from smbca.ntstatus import NtStatus

NTLM_OID = "1.3.6.1.4.1.311.2.2.10"
_SERVER_VERSION = Version(10, 0, 20348)
# Flags granted whenever the client asks for them (3.2.5.1.1).
_ECHOED = (F.UNICODE | F.SIGN | F.SEAL | F.EXTENDED_SESSIONSECURITY | F.VERSION
           | F.NEGOTIATE_128 | F.KEY_EXCH | F.NEGOTIATE_56)
# Flags every CHALLENGE_MESSAGE carries: a standalone server names itself.
_ALWAYS = F.REQUEST_TARGET | F.NTLM | F.ALWAYS_SIGN | F.TARGET_INFO | F.TARGET_TYPE_SERVER
_FILETIME_EPOCH_OFFSET_S = 11644473600  # 1601-01-01 to 1970-01-01 ([MS-DTYP] 2.3.3)


class _State(Enum):
    INITIAL = "initial"
    CHALLENGED = "challenged"
    DONE = "done"
    FAILED = "failed"


def _filetime(seconds: float) -> int:
    return int((seconds + _FILETIME_EPOCH_OFFSET_S) * 10_000_000)


def _message_type(token: bytes) -> int:
    if len(token) < 12 or token[:8] != SIGNATURE:
        raise malformed("not an NTLMSSP message")
    return struct.unpack_from("<I", token, 8)[0]


class NtlmAcceptor:
    """One NTLM authentication exchange, server side ([MS-NLMP] 3.2.5.1).

    ``server_name``/``domain_name`` are the NetBIOS names sent in the
    CHALLENGE_MESSAGE TargetInfo; ``dns_name`` defaults to the lower-case
    server name (plus ``dns_domain``).  An unknown user becomes a guest
    (named ``guest_user``, with that account's uid/gid if it exists) when
    ``allow_guest``; an empty user with empty responses is anonymous when
    ``allow_anonymous``.  ``rng`` makes the server challenge, ``clock``
    (seconds since 1970) the MsvAvTimestamp.  ``domain_logon`` verifies the
    users of the joined domain (its ``logon`` may block: an acceptor with
    one is stepped off the event loop).

    After ``complete``: ``session_key`` is the ExportedSessionKey and
    ``identity`` the authenticated principal; ``sign``/``verify`` give
    session security (3.4.4.2), e.g. for SPNEGO's mechListMIC.
    """

    def __init__(self, users: UserDatabase, server_name: str, domain_name: str,
                 dns_domain: str = "", dns_name: str = "", allow_guest: bool = False,
                 guest_user: str | None = None, allow_anonymous: bool = False,
                 rng: Callable[[int], bytes] = os.urandom,
                 clock: Callable[[], float] = time.time,
                 domain_logon: DomainLogonPort | None = None) -> None:
        self._users = users
        self._domain_logon = domain_logon
        self._nb_computer = server_name.upper()
        self._nb_domain = domain_name.upper()
        self._dns_domain = dns_domain
        self._dns_name = dns_name or server_name.lower() + (f".{dns_domain}" if dns_domain else "")
        self._allow_guest = allow_guest
        self._guest_user = guest_user
        self._allow_anonymous = allow_anonymous
        self._rng = rng
        self._clock = clock
        self._state = _State.INITIAL
        self._negotiate_raw = b""
        self._challenge: ChallengeMessage | None = None
        self._challenge_raw = b""
        self._session_key: bytes | None = None
        self._identity: Identity | None = None
        self._security: ServerSessionSecurity | None = None

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE

    @property
    def session_key(self) -> bytes | None:
        return self._session_key

    @property
    def identity(self) -> Identity | None:
        return self._identity

    def step(self, token: bytes) -> bytes | None:
        """Consume one NTLM message; return the reply (None after AUTHENTICATE)."""
        token = bytes(token)
        try:
            transition = _TRANSITIONS.get((self._state, _message_type(token)))
            if transition is None:
                raise malformed(f"unexpected NTLM message in state {self._state.value}")
            handler, next_state = transition
            reply = handler(self, token)
        except AuthError:
            self._state = _State.FAILED
            raise
        self._state = next_state
        return reply

    # -- NEGOTIATE -> CHALLENGE (3.2.5.1.1) ------------------------------------

    def _on_negotiate(self, token: bytes) -> bytes:
        negotiate = NegotiateMessage.decode(token)
        if not negotiate.flags & F.UNICODE:
            raise malformed("client does not offer Unicode (OEM is not supported)")
        flags = _ALWAYS | (negotiate.flags & _ECHOED)
        if not negotiate.flags & (F.SIGN | F.SEAL):
            flags &= ~(F.NEGOTIATE_128 | F.NEGOTIATE_56)  # 2.2.2.5 bits U and W
        challenge = ChallengeMessage(
            flags=int(flags),
            server_challenge=bytes(self._rng(8)),
            target_name=self._nb_computer,
            target_info=self._target_info(),
            version=_SERVER_VERSION if flags & F.VERSION else None,
        )
        self._negotiate_raw = token
        self._challenge = challenge
        self._challenge_raw = challenge.encode()
        return self._challenge_raw

    def _target_info(self) -> tuple[AvPair, ...]:
        timestamp = struct.pack("<Q", _filetime(self._clock()))
        return (AvPair(AvId.NB_DOMAIN_NAME, encode_utf16(self._nb_domain)),
                AvPair(AvId.NB_COMPUTER_NAME, encode_utf16(self._nb_computer)),
                AvPair(AvId.DNS_DOMAIN_NAME, encode_utf16(self._dns_domain)),
                AvPair(AvId.DNS_COMPUTER_NAME, encode_utf16(self._dns_name)),
                AvPair(AvId.TIMESTAMP, timestamp))

    # -- AUTHENTICATE (3.2.5.1.2) ----------------------------------------------

    def _on_authenticate(self, token: bytes) -> None:
        assert self._challenge is not None  # guaranteed by _TRANSITIONS
        auth = AuthenticateMessage.decode(token)
        flags = self._challenge.flags & auth.flags if auth.flags else self._challenge.flags
        if (not auth.user and not auth.nt_response
                and auth.lm_response in (b"", b"\x00")):
            self._accept_unauthenticated(flags, auth, anonymous=True)
            return None
        if len(auth.nt_response) <= NTLMV1_RESPONSE_SIZE:
            raise logon_failure("NTLMv1 and LM responses are refused")
        response = Ntlmv2Response.decode(auth.nt_response)
        self._check_echoed_target_info(response.av_pairs)
        if self._domain_logon is not None and self._domain_logon.handles(auth.domain):
            verified = self._verify_with_dc(auth)
        else:
            verified = self._verify_local(auth, response)
            if verified is None:
                self._accept_unauthenticated(flags, auth, anonymous=False)
                return None
        base_key, identity = verified
        exported = exported_session_key(flags, base_key, auth.encrypted_session_key)
        if _av_flags(response) & AV_FLAG_MIC_PRESENT:
            self._check_mic(exported, auth, token)
        self._session_key = exported
        self._security = ServerSessionSecurity(flags, exported)
        self._identity = identity
        return None

    def _verify_local(self, auth: AuthenticateMessage,
                      response: Ntlmv2Response) -> tuple[bytes, Identity] | None:
        """SessionBaseKey and identity of a local user; None: an unknown
        user who becomes the guest."""
        assert self._challenge is not None
        user = self._users.lookup(auth.user)
        if user is None:
            if not self._allow_guest:
                raise logon_failure(f"unknown user {auth.user!r}")
            return None
        domains = (auth.domain, "") if auth.domain else ("",)
        base_key = check_ntlmv2(user.nt_hash, auth.user, domains,
                                self._challenge.server_challenge,
                                response.nt_proof_str, response.temp)
        if base_key is None:
            raise logon_failure(f"wrong password for {user.name!r}")
        return base_key, Identity(user.name, auth.domain, uid=user.uid, gid=user.gid)

    def _verify_with_dc(self, auth: AuthenticateMessage) -> tuple[bytes, Identity]:
        """A user of the joined domain: the DC checks the response and gives
        the SessionBaseKey and the user's SIDs (AuthError if it refuses)."""
        assert self._challenge is not None and self._domain_logon is not None
        result = self._domain_logon.logon(NetworkLogon(
            domain=auth.domain, user=auth.user, workstation=auth.workstation,
            server_challenge=self._challenge.server_challenge,
            nt_response=auth.nt_response, lm_response=auth.lm_response))
        if len(result.session_base_key) != 16:
            raise logon_failure("the DC gave no 16-byte session key")
        return result.session_base_key, Identity(
            result.user, result.domain, sid=result.user_sid, group_sids=result.group_sids)

    def _check_echoed_target_info(self, client_pairs: tuple[AvPair, ...]) -> None:
        """Every pair of our TargetInfo must come back unchanged inside the
        signed NTLMv2 blob, as Samba's ntlmssp_server_preauth checks: a
        response computed for another server's challenge is refused."""
        assert self._challenge is not None
        for pair in self._challenge.target_info:
            if find_av(client_pairs, pair.av_id) != pair.value:
                raise malformed(f"NTLMv2 response does not echo AV pair {pair.av_id}")

    def _check_mic(self, exported: bytes, auth: AuthenticateMessage, token: bytes) -> None:
        if auth.mic is None:
            raise malformed("MsvAvFlags announces a MIC but the message has none")
        zeroed = token[:MIC_OFFSET] + bytes(MIC_SIZE) + token[MIC_OFFSET + MIC_SIZE:]
        expected = compute_mic(exported, self._negotiate_raw, self._challenge_raw, zeroed)
        if not hmac.compare_digest(expected, auth.mic):
            raise logon_failure("NTLM MIC mismatch")

    def _accept_unauthenticated(self, flags: int, auth: AuthenticateMessage,
                                anonymous: bool) -> None:
        """NullSession / GuestSession of 3.2.5.1.2: SessionBaseKey is Z(16) and
        there is no session security (3.4), so the MIC is not checked."""
        if anonymous and not self._allow_anonymous:
            raise logon_failure("anonymous logon is disabled")
        key = bytes(16)
        if len(auth.encrypted_session_key) == 16:
            key = exported_session_key(flags, key, auth.encrypted_session_key)
        self._session_key = key
        if anonymous:
            self._identity = Identity("", auth.domain, is_anonymous=True)
            return
        account = self._users.lookup(self._guest_user) if self._guest_user else None
        self._identity = Identity(self._guest_user or "guest", auth.domain, is_guest=True,
                                  uid=account.uid if account else None,
                                  gid=account.gid if account else None)

    # -- session security (3.4) ------------------------------------------------

    def _session_security(self) -> ServerSessionSecurity:
        if self._security is None:
            raise AuthError(NtStatus.NOT_SUPPORTED, "no NTLM session security on this context")
        return self._security

    def sign(self, data: bytes) -> bytes:
        """GSS_GetMIC with the server-to-client keys (3.4.4.2)."""
        return self._session_security().sign(bytes(data))

    def verify(self, data: bytes, signature: bytes) -> bool:
        """GSS_VerifyMIC with the client-to-server keys (3.4.4.2)."""
        return self._session_security().verify(bytes(data), bytes(signature))

    def reset_key_state(self, outgoing: bool) -> None:
        """Rewind one direction's RC4 handle after the mechListMIC (MS-SPNG 3.2.5.1)."""
        self._session_security().reset_key_state(outgoing)

    def seal(self, message: bytes, prefix: bytes = b"", suffix: bytes = b"") -> tuple[bytes, bytes]:
        """GSS_WrapEx with confidentiality, server-to-client (3.4.3, 3.4.6)."""
        return self._session_security().seal(message, prefix, suffix)

    def unseal(self, sealed: bytes, signature: bytes, prefix: bytes = b"",
               suffix: bytes = b"") -> bytes | None:
        """GSS_UnwrapEx, client-to-server; None when the signature does not verify."""
        return self._session_security().unseal(sealed, signature, prefix, suffix)


def _av_flags(response: Ntlmv2Response) -> int:
    raw = find_av(response.av_pairs, AvId.FLAGS)
    if raw is None:
        return 0
    if len(raw) != 4:
        raise malformed("MsvAvFlags is not 4 bytes")
    return struct.unpack("<I", raw)[0]


_Handler = Callable[[NtlmAcceptor, bytes], bytes | None]
_TRANSITIONS: Mapping[tuple[_State, int], tuple[_Handler, _State]] = MappingProxyType({
    (_State.INITIAL, MessageType.NEGOTIATE): (NtlmAcceptor._on_negotiate, _State.CHALLENGED),
    (_State.CHALLENGED, MessageType.AUTHENTICATE): (NtlmAcceptor._on_authenticate, _State.DONE),
})


@dataclass(frozen=True, slots=True)
class NtlmMechanism:
    """SPNEGO mechanism factory: one ``NtlmAcceptor`` per exchange."""

    oid: ClassVar[str] = NTLM_OID
    users: UserDatabase
    server_name: str
    domain_name: str
    dns_domain: str = ""
    dns_name: str = ""
    allow_guest: bool = False
    guest_user: str | None = None
    allow_anonymous: bool = False
    rng: Callable[[int], bytes] = os.urandom
    clock: Callable[[], float] = time.time
    domain_logon: DomainLogonPort | None = None

    def new_context(self) -> NtlmAcceptor:
        return NtlmAcceptor(self.users, self.server_name, self.domain_name,
                            dns_domain=self.dns_domain, dns_name=self.dns_name,
                            allow_guest=self.allow_guest, guest_user=self.guest_user,
                            allow_anonymous=self.allow_anonymous, rng=self.rng,
                            clock=self.clock, domain_logon=self.domain_logon)
