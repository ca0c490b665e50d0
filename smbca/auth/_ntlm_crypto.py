"""NTLMv2 response checking, key derivation and session security ([MS-NLMP] 3.3.2, 3.4).

Keys are named by direction (shared/STYLE.md rule 7): ``c2s`` protects what
the client sends, ``s2c`` what the server sends.  Only NTLMv2 is here; NTLMv1
and LM responses are refused before reaching this module.
"""

import hmac
import struct
from dataclasses import dataclass

from smbca.auth._ntlm_messages import NegotiateFlags as F
from smbca.auth.errors import AuthError
from smbca.auth.legacy_crypto import Rc4, hmac_md5, md5, rc4
from smbca.ntstatus import NtStatus

_C2S_SIGN = b"session key to client-to-server signing key magic constant\x00"
_S2C_SIGN = b"session key to server-to-client signing key magic constant\x00"
_C2S_SEAL = b"session key to client-to-server sealing key magic constant\x00"
_S2C_SEAL = b"session key to server-to-client sealing key magic constant\x00"
_SIGNATURE_VERSION = 1
_SIGNATURE = struct.Struct("<I8sI")  # NTLMSSP_MESSAGE_SIGNATURE for ESS (2.2.2.9.2)
_SEQ = struct.Struct("<I")


def upcase(text: str) -> str:
    """Per-character upper case, as Windows' RtlUpcaseUnicodeString: a
    character whose upper case is longer (German sharp s) stays as it is."""
    return "".join(up if len(up := ch.upper()) == 1 else ch for ch in text)


def ntowf_v2(nt_hash: bytes, user: str, domain: str) -> bytes:
    """NTOWFv2 = HMAC_MD5(MD4(UNICODE(Passwd)), UNICODE(Uppercase(User) || UserDom)) (3.3.2)."""
    return hmac_md5(nt_hash, (upcase(user) + domain).encode("utf-16-le", errors="surrogatepass"))


def nt_proof_str(response_key_nt: bytes, server_challenge: bytes, temp: bytes) -> bytes:
    """NTProofStr = HMAC_MD5(ResponseKeyNT, ServerChallenge || temp) (3.3.2)."""
    return hmac_md5(response_key_nt, server_challenge + temp)


def check_ntlmv2(nt_hash: bytes, user: str, domains: tuple[str, ...], server_challenge: bytes,
                 proof: bytes, temp: bytes) -> bytes | None:
    """The SessionBaseKey if ``proof`` matches for any of ``domains``, else None.

    Trying the client's domain and then the empty one follows 3.2.5.1.2
    ("SHOULD support NTLM clients which incorrectly use NIL for the UserDom").
    """
    for domain in domains:
        key = ntowf_v2(nt_hash, user, domain)
        if hmac.compare_digest(nt_proof_str(key, server_challenge, temp), proof):
            return hmac_md5(key, proof)  # SessionBaseKey (3.3.2)
    return None


def exported_session_key(flags: int, key_exchange_key: bytes, encrypted_key: bytes) -> bytes:
    """ExportedSessionKey (3.2.5.1.2): RC4K(KeyExchangeKey, EncryptedRandomSessionKey)
    under KEY_EXCH with SIGN or SEAL, else KeyExchangeKey itself.  For NTLMv2,
    KeyExchangeKey is the SessionBaseKey (3.4.5.1)."""
    if flags & F.KEY_EXCH and flags & (F.SIGN | F.SEAL):
        if len(encrypted_key) != 16:
            raise AuthError(NtStatus.INVALID_PARAMETER, "EncryptedRandomSessionKey is not 16 bytes")
        return rc4(key_exchange_key, encrypted_key)
    return key_exchange_key


def compute_mic(exported_key: bytes, negotiate: bytes, challenge: bytes,
                authenticate_zeroed: bytes) -> bytes:
    """MIC = HMAC_MD5(ExportedSessionKey, NEGOTIATE || CHALLENGE || AUTHENTICATE) (3.2.5.1.2)."""
    return hmac_md5(exported_key, negotiate + challenge + authenticate_zeroed)


def sign_key(exported_key: bytes, constant: bytes) -> bytes:
    """SIGNKEY (3.4.5.2) with extended session security."""
    return md5(exported_key + constant)


def seal_key(flags: int, exported_key: bytes, constant: bytes) -> bytes:
    """SEALKEY (3.4.5.3) with extended session security: 128, 56 or 40 bits of key."""
    if flags & F.NEGOTIATE_128:
        base = exported_key
    elif flags & F.NEGOTIATE_56:
        base = exported_key[:7]
    else:
        base = exported_key[:5]
    return md5(base + constant)


class Direction:
    """One direction's signing state: SigningKey, SealingKey handle, SeqNum (3.4.1)."""

    def __init__(self, signing_key: bytes, sealing_key: bytes, key_exch: bool) -> None:
        self._signing_key = signing_key
        self._sealing_key = sealing_key
        self._key_exch = key_exch
        self._handle = Rc4(sealing_key)
        self._seq_num = 0

    @property
    def handle(self) -> Rc4:
        """The sealing RC4 handle; GSS_WrapEx (3.4.6) shares it with MAC()."""
        return self._handle

    def mac(self, message: bytes) -> bytes:
        """MAC() for extended session security (3.4.4.2); advances SeqNum."""
        seq_num = self._seq_num
        checksum = hmac_md5(self._signing_key, _SEQ.pack(seq_num) + message)[:8]
        if self._key_exch:
            checksum = self._handle.update(checksum)
        self._seq_num = (seq_num + 1) & 0xFFFFFFFF
        return _SIGNATURE.pack(_SIGNATURE_VERSION, checksum, seq_num)

    def reset_handle(self) -> None:
        """Return the RC4 handle to its initial state (MS-SPNG 3.2.5.1)."""
        self._handle = Rc4(self._sealing_key)


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The four derived keys of 3.2.5.1.2, named by direction."""

    c2s_signing: bytes
    s2c_signing: bytes
    c2s_sealing: bytes
    s2c_sealing: bytes

    @classmethod
    def derive(cls, flags: int, exported_key: bytes) -> "SessionKeys":
        return cls(sign_key(exported_key, _C2S_SIGN), sign_key(exported_key, _S2C_SIGN),
                   seal_key(flags, exported_key, _C2S_SEAL),
                   seal_key(flags, exported_key, _S2C_SEAL))


_NULL_SIGNATURE = _SIGNATURE.pack(_SIGNATURE_VERSION, bytes(8), 0)


class ServerSessionSecurity:
    """GSS_GetMIC / GSS_VerifyMIC for the acceptor (3.4.2, 3.4.4).

    ``sign`` uses the server-to-client keys, ``verify`` the client-to-server
    ones.  Without SIGN or SEAL negotiated the signature is the constant of
    3.4.4.3.  Signing without extended session security (3.4.4.1) is not
    implemented and fails with STATUS_NOT_SUPPORTED.
    """

    def __init__(self, flags: int, exported_key: bytes) -> None:
        self._flags = flags
        keys = SessionKeys.derive(flags, exported_key)
        key_exch = bool(flags & F.KEY_EXCH)
        self._s2c = Direction(keys.s2c_signing, keys.s2c_sealing, key_exch)
        self._c2s = Direction(keys.c2s_signing, keys.c2s_sealing, key_exch)

    def _integrity(self) -> bool:
        if not self._flags & (F.SIGN | F.SEAL):
            return False
        if not self._flags & F.EXTENDED_SESSIONSECURITY:
            raise AuthError(NtStatus.NOT_SUPPORTED,
                            "NTLM signing without extended session security")
        return True

    def sign(self, message: bytes) -> bytes:
        return self._s2c.mac(message) if self._integrity() else _NULL_SIGNATURE

    def verify(self, message: bytes, signature: bytes) -> bool:
        expected = self._c2s.mac(message) if self._integrity() else _NULL_SIGNATURE
        return hmac.compare_digest(expected, bytes(signature))

    def reset_key_state(self, outgoing: bool) -> None:
        """Reinitialise one RC4 handle after the SPNEGO mechListMIC (MS-SPNG 3.2.5.1)."""
        (self._s2c if outgoing else self._c2s).reset_handle()

    def _confidentiality(self) -> None:
        if not self._flags & F.SEAL or not self._integrity():
            raise AuthError(NtStatus.NOT_SUPPORTED, "NTLM sealing was not negotiated")

    def seal(self, message: bytes, prefix: bytes = b"", suffix: bytes = b"") -> tuple[bytes, bytes]:
        """SEAL (3.4.3) with the server-to-client keys: (sealed message, signature).

        The message is encrypted first, then the MAC is computed over
        ``prefix + message + suffix`` in plaintext and its checksum encrypted
        with the same RC4 handle (3.4.4.2).  DCE/RPC passes the PDU header and
        sec_trailer as prefix and suffix, because NTLM signs the whole PDU
        while sealing only the stub ([MS-RPCE] 2.2.2.11, 3.3.1.5.2.2).
        """
        self._confidentiality()
        sealed = self._s2c.handle.update(bytes(message))
        return sealed, self._s2c.mac(bytes(prefix) + bytes(message) + bytes(suffix))

    def unseal(self, sealed: bytes, signature: bytes, prefix: bytes = b"",
               suffix: bytes = b"") -> bytes | None:
        """UNSEAL with the client-to-server keys: the plaintext, or None if the
        signature over ``prefix + plaintext + suffix`` does not verify."""
        self._confidentiality()
        message = self._c2s.handle.update(bytes(sealed))
        expected = self._c2s.mac(bytes(prefix) + message + bytes(suffix))
        return message if hmac.compare_digest(expected, bytes(signature)) else None
