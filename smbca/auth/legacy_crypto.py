"""Legacy primitives NTLM needs ([MS-NLMP] 3.3.1, 3.3.2, 3.4.4): MD4, the NT
hash, HMAC-MD5 and RC4; and NETLOGON's AES-CFB8 ([MS-NRPC] 3.1.4.4.1).

OpenSSL 3 moved MD4 to the legacy provider, which most distributions do not
load, so ``md4`` falls back to a pure-Python RFC 1320 implementation.  It
only ever hashes passwords, so speed does not matter.
"""

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES

try:
    # cryptography >= 43 keeps ARC4 among the "decrepit" algorithms, and
    # newer releases move CFB8 among the decrepit modes.
    from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import ARC4
try:
    from cryptography.hazmat.decrepit.ciphers.modes import CFB8
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB8

_MASK32 = 0xFFFFFFFF
_BLOCK = struct.Struct("<16I")
_DIGEST = struct.Struct("<4I")
_LENGTH = struct.Struct("<Q")
_MD4_INIT = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)

# RFC 1320 3.4: per round, the word order, the four rotate amounts and the
# additive constant.
_MD4_ROUNDS = (
    (tuple(range(16)), (3, 7, 11, 19), 0x00000000),
    ((0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), (3, 5, 9, 13), 0x5A827999),
    ((0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15), (3, 9, 11, 15), 0x6ED9EBA1),
)


def _md4_f(x: int, y: int, z: int) -> int:
    return (x & y) | (~x & z)


def _md4_g(x: int, y: int, z: int) -> int:
    return (x & y) | (x & z) | (y & z)


def _md4_h(x: int, y: int, z: int) -> int:
    return x ^ y ^ z


_MD4_FUNCS = (_md4_f, _md4_g, _md4_h)


def _md4_python(data: bytes) -> bytes:
    """MD4 per RFC 1320, for when hashlib has none."""
    data = bytes(data)
    padding = b"\x80" + b"\x00" * ((55 - len(data)) % 64)
    message = data + padding + _LENGTH.pack((len(data) * 8) & 0xFFFFFFFFFFFFFFFF)
    state = list(_MD4_INIT)
    for start in range(0, len(message), 64):
        words = _BLOCK.unpack_from(message, start)
        v = list(state)
        for func, (order, shifts, constant) in zip(_MD4_FUNCS, _MD4_ROUNDS):
            for step, k in enumerate(order):
                # Targets cycle a, d, c, b; the other three are its arguments.
                t = -step % 4
                x = (v[t] + func(v[(t + 1) % 4], v[(t + 2) % 4], v[(t + 3) % 4])
                     + words[k] + constant) & _MASK32
                s = shifts[step % 4]
                v[t] = ((x << s) | (x >> (32 - s))) & _MASK32
        state = [(a + b) & _MASK32 for a, b in zip(state, v)]
    return _DIGEST.pack(*state)


def md4(data: bytes) -> bytes:
    """MD4 digest ([RFC1320]); OpenSSL's when it is loaded, else pure Python."""
    try:
        return hashlib.new("md4", data).digest()
    except ValueError:
        return _md4_python(data)


def nt_hash(password: str) -> bytes:
    """NTOWFv1 / the NT hash: MD4 of the UTF-16LE password ([MS-NLMP] 3.3.1)."""
    return md4(password.encode("utf-16-le"))


def hmac_md5(key: bytes, *parts) -> bytes:
    """HMAC-MD5 over the concatenation of ``parts`` ([MS-NLMP] 6)."""
    mac = hmac.new(bytes(key), digestmod=hashlib.md5)
    for part in parts:
        mac.update(part)
    return mac.digest()


def rc4(key: bytes, data: bytes) -> bytes:
    """RC4 keystream XOR ``data``; NTLM key exchange and sealing ([MS-NLMP] 3.4.4)."""
    return Cipher(ARC4(bytes(key)), mode=None).encryptor().update(data)


def aes_cfb8_encrypt(key: bytes, data: bytes) -> bytes:
    """AES-128 in CFB8 mode with a zero IV: the NETLOGON credential and the
    encryption of secrets under the session key ([MS-NRPC] 3.1.4.4.1)."""
    return Cipher(AES(bytes(key)), CFB8(bytes(16))).encryptor().update(bytes(data))


def aes_cfb8_decrypt(key: bytes, data: bytes) -> bytes:
    """The inverse of ``aes_cfb8_encrypt``."""
    return Cipher(AES(bytes(key)), CFB8(bytes(16))).decryptor().update(bytes(data))


def md5(data: bytes) -> bytes:
    """MD5 (NTLM key derivation, [MS-NLMP] 3.4.5)."""
    return hashlib.md5(data).digest()


class Rc4:
    """A keyed RC4 stream whose state advances across calls: NTLM sealing
    keeps one per direction ([MS-NLMP] 3.4.4, 6 RC4())."""

    def __init__(self, key: bytes) -> None:
        self._cipher = Cipher(ARC4(bytes(key)), mode=None).encryptor()

    def update(self, data: bytes) -> bytes:
        return self._cipher.update(data)
