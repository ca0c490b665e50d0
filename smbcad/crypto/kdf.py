"""SMB 3.x key derivation ([MS-SMB2] 3.1.4.2) and the per-dialect label table
([MS-SMB2] 3.2.5.3.1 client, 3.3.5.5.3 server).

Keys are named by direction (shared/STYLE.md rule 7): ``encrypt_c2s`` is what
the client encrypts with and the server decrypts with (the server's
Session.DecryptionKey), ``encrypt_s2c`` the reverse.  Server and test client
therefore read the same fields and never swap "encryption"/"decryption".
"""

import hmac
import struct
from dataclasses import dataclass

from smbcad.proto.constants import CipherId, Dialect

# SP800-108 counter mode fields: i (r = 32 bits) and L, both big-endian.
_U32BE = struct.Struct(">I")

SIGNING_KEY_SIZE = 16
PREAUTH_HASH_SIZE = 64
_AES256_CIPHERS = frozenset((CipherId.AES_256_CCM, CipherId.AES_256_GCM))

# (label, context) per key purpose.  Labels and string contexts carry their
# terminating NUL because [MS-SMB2] 3.3.5.5.3 counts it in the buffer size.
# ``None`` as context means Session.PreauthIntegrityHashValue (3.1.1 only).
_SMB30_TABLE = {
    "signing": (b"SMB2AESCMAC\x00", b"SmbSign\x00"),
    "encrypt_c2s": (b"SMB2AESCCM\x00", b"ServerIn \x00"),
    "encrypt_s2c": (b"SMB2AESCCM\x00", b"ServerOut\x00"),
    "application": (b"SMB2APP\x00", b"SmbRpc\x00"),
}
_SMB311_TABLE = {
    "signing": (b"SMBSigningKey\x00", None),
    "encrypt_c2s": (b"SMBC2SCipherKey\x00", None),
    "encrypt_s2c": (b"SMBS2CCipherKey\x00", None),
    "application": (b"SMBAppKey\x00", None),
}
DERIVATION_TABLE = {
    Dialect.SMB_3_0: _SMB30_TABLE,
    Dialect.SMB_3_0_2: _SMB30_TABLE,
    Dialect.SMB_3_1_1: _SMB311_TABLE,
}
_SMB2_DIALECTS = frozenset((Dialect.SMB_2_0_2, Dialect.SMB_2_1))


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The keys of one session ([MS-SMB2] 3.3.1.8), named by direction.

    For 2.0.2/2.1 only ``signing`` is set (it is the session key itself); the
    cipher and application keys are empty.
    """

    signing: bytes
    encrypt_c2s: bytes
    encrypt_s2c: bytes
    application: bytes

    def __repr__(self) -> str:
        # Keep key material out of logs and tracebacks.
        return "SessionKeys(<redacted>)"


def sp800_108_hmac_sha256(key: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """KDF in counter mode ([SP800-108] 5.1) with HMAC-SHA256, r = 32.

    ``length`` is in bytes (L = 8 * length bits).  The fixed input is
    ``label || 0x00 || context || L``, as [MS-SMB2] 3.1.4.2 prescribes.
    """
    fixed = label + b"\x00" + context + _U32BE.pack(length * 8)
    out = bytearray()
    counter = 1
    while len(out) < length:
        out += hmac.digest(key, _U32BE.pack(counter) + fixed, "sha256")
        counter += 1
    return bytes(out[:length])


def _session_key16(session_key: bytes) -> bytes:
    """Session.SessionKey: first 16 bytes, right-padded with zeros ([MS-SMB2] 3.3.1.8)."""
    return bytes(session_key[:16]).ljust(16, b"\x00")


def _table_for(dialect: int, preauth_hash: bytes | None) -> dict:
    table = DERIVATION_TABLE.get(dialect)
    if table is None:
        raise ValueError(f"no SMB3 key derivation for dialect {dialect:#06x}")
    if dialect == Dialect.SMB_3_1_1 and (preauth_hash is None
                                         or len(preauth_hash) != PREAUTH_HASH_SIZE):
        raise ValueError("dialect 3.1.1 needs the 64-byte preauth integrity hash")
    return table


def _derive(table: dict, purpose: str, key: bytes, preauth_hash: bytes | None,
            length: int) -> bytes:
    label, context = table[purpose]
    if context is None:
        context = bytes(preauth_hash)
    return sp800_108_hmac_sha256(key, label, context, length)


def derive_signing_key(dialect: int, session_key: bytes,
                       preauth_hash: bytes | None = None) -> bytes:
    """Session.SigningKey, or Channel.SigningKey when binding ([MS-SMB2] 3.3.5.5.3).

    For a binding, pass the key the binding authentication returned and, on
    3.1.1, the PreauthSession hash of the binding exchange.
    """
    if dialect in _SMB2_DIALECTS:
        return _session_key16(session_key)
    table = _table_for(dialect, preauth_hash)
    return _derive(table, "signing", _session_key16(session_key), preauth_hash,
                   SIGNING_KEY_SIZE)


def derive_session_keys(dialect: int, session_key: bytes,
                        preauth_hash: bytes | None = None,
                        cipher_id: int | None = None) -> SessionKeys:
    """All keys of a new session ([MS-SMB2] 3.3.5.5.3, 3.2.5.3.1).

    ``session_key`` is the full key from GSS; it is cut to 16 bytes for
    everything except the 3.1.1 AES-256 cipher keys, which use
    Session.FullSessionKey with L = 256 ([MS-SMB2] 3.1.4.2).
    """
    key16 = _session_key16(session_key)
    if dialect in _SMB2_DIALECTS:
        return SessionKeys(key16, b"", b"", b"")
    table = _table_for(dialect, preauth_hash)
    if dialect == Dialect.SMB_3_1_1 and cipher_id in _AES256_CIPHERS:
        cipher_kdk, cipher_len = bytes(session_key), 32
    else:
        cipher_kdk, cipher_len = key16, 16
    return SessionKeys(
        signing=_derive(table, "signing", key16, preauth_hash, SIGNING_KEY_SIZE),
        encrypt_c2s=_derive(table, "encrypt_c2s", cipher_kdk, preauth_hash, cipher_len),
        encrypt_s2c=_derive(table, "encrypt_s2c", cipher_kdk, preauth_hash, cipher_len),
        application=_derive(table, "application", key16, preauth_hash, 16),
    )
