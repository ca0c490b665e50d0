"""SMB2/3 cryptography: key derivation, signing, encryption and preauth hashing.

With ``smbca/auth/legacy_crypto.py`` (NTLM's RC4, HMAC-MD5 and MD4), the only
code that imports ``cryptography`` (shared/STYLE.md rule 7).
Keys are named by direction (c2s, s2c) so the server and the test client use
the same code; the four verbs are sign, verify, encrypt and decrypt.
"""

from smbcad.crypto.encryption import (
    TRANSFORM_HEADER_SIZE,
    DecryptionError,
    Decryptor,
    Encryptor,
    transform_session_id,
)
from smbcad.crypto.kdf import (
    SessionKeys,
    derive_session_keys,
    derive_signing_key,
    sp800_108_hmac_sha256,
)
from smbcad.crypto.preauth import PREAUTH_INITIAL, preauth_next
from smbcad.crypto.signing import (
    Signer,
    default_signing_algorithm,
    gmac_nonce,
    make_signer,
)

__all__ = [
    "PREAUTH_INITIAL",
    "TRANSFORM_HEADER_SIZE",
    "DecryptionError",
    "Decryptor",
    "Encryptor",
    "SessionKeys",
    "Signer",
    "default_signing_algorithm",
    "derive_session_keys",
    "derive_signing_key",
    "gmac_nonce",
    "make_signer",
    "preauth_next",
    "sp800_108_hmac_sha256",
    "transform_session_id",
]
