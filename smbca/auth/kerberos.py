"""Kerberos as a SPNEGO mechanism, acceptor side ([MS-KILE] 3.4, RFC 4121).

GSS_Accept_sec_context is MIT krb5's, through python-gssapi: ticket and
authenticator decryption, the replay cache, clock-skew and lifetime checks,
the AP-REP for mutual authentication and the PAC's server signature are the
library's.  We use python-gssapi directly rather than pyspnego because our
own SPNEGO acceptor (``smbca.auth.spnego``) already does the negotiation and
NTLM, and what we need beyond a context -- the session key ([MS-SMB2]
3.3.5.5.3 "GSS_Inquire_sec_context_by_oid") and the PAC (RFC 6680 name
attribute ``urn:mspac:``) -- is one call each on the raw context, which
pyspnego does not expose.

The acceptor credential comes from a keytab (``server.keytab``) with no
name, so a ticket for any principal in it is accepted: every ``cifs/NAME``
and ``host/NAME`` the join registered for the cluster's names.

Failures map to the NTSTATUS a client can act on, and the log says why:

=================================  =====================================
MIT minor status                    NTSTATUS
=================================  =====================================
KRB5KRB_AP_ERR_SKEW, _TKT_NYV       STATUS_TIME_DIFFERENCE_AT_DC
KRB5KRB_AP_ERR_TKT_EXPIRED          STATUS_LOGON_FAILURE ("expired")
anything else (not our service,     STATUS_LOGON_FAILURE
bad integrity, replay, ...)
malformed token                     STATUS_INVALID_PARAMETER
=================================  =====================================
"""

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import gssapi.raw as gss
from gssapi.raw.misc import GSSError

from smbca.auth.errors import AuthError, logon_failure, malformed
from smbca.auth.identity import Identity
from smbca.auth.pac import parse_logon_info
from smbca.ntstatus import NtStatus

log = logging.getLogger("smbca.auth.kerberos")

KRB5_OID = "1.2.840.113554.1.2.2"
MIT_CLOCKSKEW_S = 300
"""krb5.conf's ``clockskew`` default, which MIT adds to an accepted context's
lifetime (accept_sec_context: time_rec = ticket end + clockskew - now; a
5-minute ticket reports 600 s, tests/ad)."""
MS_KRB5_OID = "1.2.840.48018.1.2.2"       # [MS-KILE] 3.1.5.12: what Windows clients list first
_SESSION_KEY_OID = gss.OID.from_int_seq("1.2.840.113554.1.2.2.5.5")  # GSS_C_INQ_SSPI_SESSION_KEY
_MSPAC_ATTRIBUTE = b"urn:mspac:"

# MIT krb5 error table (krb5_err.et): ERROR_TABLE_BASE_krb5 + the RFC 4120 code.
_KRB5_BASE = -1765328384
KRB5KRB_AP_ERR_TKT_EXPIRED = _KRB5_BASE + 32
KRB5KRB_AP_ERR_TKT_NYV = _KRB5_BASE + 33
KRB5KRB_AP_ERR_SKEW = _KRB5_BASE + 37
KRB5KRB_AP_ERR_MSG_TYPE = _KRB5_BASE + 40
_GSS_S_DEFECTIVE_TOKEN = 9 << 16


def _signed(minor: int) -> int:
    """OM_uint32 minor codes arrive unsigned; krb5's error table is signed."""
    return minor - (1 << 32) if minor >= 1 << 31 else minor


def auth_error_of(exc: GSSError) -> AuthError:
    """The ``AuthError`` a failed GSS_Accept_sec_context stands for."""
    minor = _signed(exc.min_code)
    text = str(exc)
    if minor in (KRB5KRB_AP_ERR_SKEW, KRB5KRB_AP_ERR_TKT_NYV):
        return AuthError(NtStatus.TIME_DIFFERENCE_AT_DC,
                         f"Kerberos: clock skew between client and server is too large "
                         f"(check NTP on both): {text}")
    if minor == KRB5KRB_AP_ERR_TKT_EXPIRED:
        return logon_failure(f"Kerberos: the client's ticket has expired: {text}")
    if minor == KRB5KRB_AP_ERR_MSG_TYPE or exc.maj_code & 0xFFFF0000 == _GSS_S_DEFECTIVE_TOKEN:
        return malformed(f"Kerberos: not a valid AP-REQ: {text}")
    return logon_failure(f"Kerberos: ticket refused: {text}")


class KerberosMechanism:
    """A SPNEGO mechanism (``MechanismFactory``) over the keytab at ``keytab``.

    One instance per OID: ``KRB5_OID`` and ``MS_KRB5_OID`` name the same
    mechanism; SPNEGO answers with the one the client chose."""

    def __init__(self, keytab: str, oid: str = KRB5_OID,
                 credentials: gss.Creds | None = None,
                 clock: Callable[[], float] = time.time, *, dce_style: bool = False) -> None:
        self._oid = oid
        self.keytab = keytab
        self._credentials = credentials or acceptor_credentials(keytab)
        self._clock = clock
        self._dce_style = dce_style

    @property
    def oid(self) -> str:
        return self._oid

    def with_oid(self, oid: str) -> "KerberosMechanism":
        """The same keytab and credentials under another mechanism OID."""
        return KerberosMechanism(self.keytab, oid, self._credentials, self._clock,
                                 dce_style=self._dce_style)

    def for_dce_rpc(self) -> "KerberosMechanism":
        """The same keys for DCE/RPC binds, whose clients may ask for the
        three-leg DCE style exchange ([MS-RPCE] 3.3.1.5.2.2, [MS-KILE] 3.4.5.1)."""
        return KerberosMechanism(self.keytab, self._oid, self._credentials, self._clock,
                                 dce_style=True)

    def new_context(self) -> "KerberosContext":
        if self._dce_style:
            from smbca.auth.kerberos_rpc import RpcKerberosContext
            return RpcKerberosContext(self._credentials, self._clock)
        return KerberosContext(self._credentials, self._clock)


def acceptor_credentials(keytab: str) -> gss.Creds:
    """Acceptor credentials for every principal in ``keytab`` (MIT cred store)."""
    try:
        return gss.acquire_cred_from({b"keytab": keytab.encode()}, usage="accept").creds
    except GSSError as exc:
        raise ValueError(f"no acceptor credentials in keytab {keytab}: {exc}") from None


@dataclass
class _Established:
    session_key: bytes
    identity: Identity


class KerberosContext:
    """One GSS_Accept_sec_context exchange (``MechanismContext``).

    Kerberos takes one leg: the AP-REQ in, the AP-REP out (mutual
    authentication, when the client asked for it) and the context is done.
    A DCE style exchange (DCE/RPC only, ``dce_style``) takes two: the
    client answers our AP-REP with its own."""

    dce_style = False

    def __init__(self, credentials: gss.Creds, clock: Callable[[], float] = time.time) -> None:
        self._credentials = credentials
        self._clock = clock
        self._context: gss.SecurityContext | None = None
        self._established: _Established | None = None

    @property
    def complete(self) -> bool:
        return self._established is not None

    @property
    def session_key(self) -> bytes | None:
        return self._established.session_key if self._established else None

    @property
    def identity(self) -> Identity | None:
        return self._established.identity if self._established else None

    def step(self, token: bytes) -> bytes | None:
        if self._established is not None:
            raise malformed("Kerberos context already established")
        try:
            result = gss.accept_sec_context(bytes(token), self._credentials, self._context)
        except GSSError as exc:
            raise auth_error_of(exc) from None
        self._context = result.context
        if result.more_steps:
            if not self.dce_style:
                # DCE-style three-leg exchanges are for DCE/RPC, not SMB.
                raise malformed("Kerberos: the client asked for a three-leg (DCE style) exchange")
            return result.token or None
        identity = _identity(result.initiator_name)
        if result.lifetime is not None:
            # MIT's acceptor reports the ticket's end plus the clock skew it
            # allows; the session expires at the ticket's end, as Windows'
            # ([MS-SMB2] 3.3.5.5.3 Session.ExpirationTime).
            left = max(0, result.lifetime - MIT_CLOCKSKEW_S)
            identity = dataclasses.replace(identity, expires_at=self._clock() + left)
        self._established = _Established(self._session_key(), identity)
        return result.token or None

    def _session_key(self) -> bytes:
        """The acceptor subkey if any, else the initiator's, else the ticket's
        ([MS-KILE] 3.1.1.2); what MIT reports for GSS_C_INQ_SSPI_SESSION_KEY."""
        try:
            key = gss.inquire_sec_context_by_oid(self._context, _SESSION_KEY_OID)
        except GSSError as exc:
            raise logon_failure(f"Kerberos: no session key: {exc}") from None
        if not key or not key[0]:
            raise logon_failure("Kerberos: no session key")
        return bytes(key[0])

    def sign(self, data: bytes) -> bytes:
        return gss.get_mic(self._context, bytes(data))

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            gss.verify_mic(self._context, bytes(data), bytes(signature))
        except GSSError:
            return False
        return True


def _identity(name: gss.Name) -> Identity:
    """The user from the PAC when the ticket has one (an AD KDC's always
    does), else from the client principal ``user@REALM``."""
    principal = gss.display_name(name).name.decode()
    pac = _pac_of(name)
    if pac is None:
        user, _, realm = principal.rpartition("@")
        log.info("Kerberos: %s has no PAC: no SIDs for its token", principal)
        return Identity(user=user or principal, domain=realm, principal=principal)
    info = parse_logon_info(pac)
    log.debug("Kerberos: %s is %s\\%s, SID %s, groups %s", principal, info.domain, info.user,
              info.user_sid, " ".join(info.group_sids))
    return Identity(user=info.user, domain=info.domain, principal=principal,
                    sid=info.user_sid, group_sids=info.group_sids)


def _pac_of(name: gss.Name) -> bytes | None:
    try:
        result = gss.get_name_attribute(name, _MSPAC_ATTRIBUTE)
    except GSSError:
        return None
    if not result.values or not result.authenticated:
        return None
    return bytes(result.values[0])
