"""SMB 3.1.1 preauthentication integrity hash ([MS-SMB2] 3.3.5.4, 3.3.5.5).

The hash starts as 64 zero bytes and absorbs each NEGOTIATE and SESSION_SETUP
message in turn, from its SMB2 header to its last byte:
``H(n) = SHA-512(H(n-1) || message)``.  The final SESSION_SETUP response is
not absorbed; the value before it is the KDF context (see kdf.py).
"""

import hashlib

PREAUTH_INITIAL = bytes(64)


def preauth_next(previous: bytes, message) -> bytes:
    """The hash after ``message`` (any bytes-like, e.g. a memoryview of the frame)."""
    digest = hashlib.sha512(previous)
    digest.update(message)
    return digest.digest()
