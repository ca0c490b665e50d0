"""SMB2 TRANSFORM_HEADER encryption and decryption ([MS-SMB2] 2.2.41, 3.1.4.3,
3.3.5.2.1.1, 3.2.5.1.1.1).

Frame layout: ProtocolId (4) | Signature (16) | Nonce (16) |
OriginalMessageSize (4) | Reserved (2) | Flags (2) | SessionId (8) | ciphertext.
The AEAD tag is the Signature; the associated data is the 32 bytes from Nonce
to the end of the header.

Hot path: the AEAD writes the ciphertext straight into the outgoing frame
(``encrypt_into``), and a large GCM frame is decrypted in place
(``decrypt_in_place``: OpenSSL's GCM through ``update_into`` with the same
buffer in and out, the tag passed on its own), so an encrypted 1 MiB WRITE
is never copied between the receive buffer and ``pwrite``.
"""

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM

from smbcad.proto.constants import TRANSFORM_PROTOCOL_ID, CipherId
from smbcad.proto.errors import ProtocolViolation
from smbcad.proto.status import NtStatus

# ProtocolId, Signature, Nonce, OriginalMessageSize, Reserved, Flags, SessionId.
TRANSFORM_HEADER = struct.Struct("<4s16s16sIHHQ")
TRANSFORM_HEADER_SIZE = TRANSFORM_HEADER.size
assert TRANSFORM_HEADER_SIZE == 52
_SESSION_ID = struct.Struct("<Q")
_SESSION_ID_OFFSET = 44
_AAD_OFFSET = 20
_SIG_OFFSET = 4
_TAG_SIZE = 16
_NONCE_FIELD_SIZE = 16
# Flags (3.1.1) / EncryptionAlgorithm (3.0.x): both mean AES as negotiated (2.2.41).
TRANSFORM_FLAG_ENCRYPTED = 0x0001
# Below this, joining ciphertext and tag for the one-shot AEAD is cheaper than
# setting up a streaming GCM context (measured with cryptography 50).
_GCM_STREAM_MIN = 64 * 1024

# cipher id -> (AEAD class, key size, nonce size) ([MS-SMB2] 2.2.3.1.2, 2.2.41).
CIPHERS = {
    CipherId.AES_128_CCM: (AESCCM, 16, 11),
    CipherId.AES_128_GCM: (AESGCM, 16, 12),
    CipherId.AES_256_CCM: (AESCCM, 32, 11),
    CipherId.AES_256_GCM: (AESGCM, 32, 12),
}


class DecryptionError(ProtocolViolation):
    """A transform frame that does not decrypt; the connection is dropped
    ([MS-SMB2] 3.3.5.2.1.1)."""

    status = NtStatus.DECRYPTION_FAILED


def _cipher_params(cipher_id: int, key: bytes):
    params = CIPHERS.get(cipher_id)
    if params is None:
        raise ValueError(f"unknown cipher {cipher_id:#06x}")
    if len(key) != params[1]:
        raise ValueError(f"cipher {cipher_id:#06x} takes a {params[1]}-byte key")
    return params


def transform_session_id(frame) -> int:
    """SessionId of a transform frame, read without decrypting (2.2.41)."""
    if len(frame) < TRANSFORM_HEADER_SIZE:
        raise DecryptionError("truncated TRANSFORM_HEADER")
    return _SESSION_ID.unpack_from(frame, _SESSION_ID_OFFSET)[0]


class Encryptor:
    """Encrypts messages for one key: the sender's side of 3.1.4.3.

    Nonces are a random prefix followed by a 64-bit message counter, so one
    instance never repeats a nonce.  Keep exactly one Encryptor per key: the
    channels of a multichannel session share Session.EncryptionKey, so they
    must share this object too.
    """

    def __init__(self, cipher_id: int, key: bytes, nonce_prefix: bytes | None = None) -> None:
        aead_cls, _, nonce_size = _cipher_params(cipher_id, key)
        self.cipher_id = cipher_id
        self._aead = aead_cls(bytes(key))
        self._nonce_size = nonce_size
        prefix_size = nonce_size - 8
        if nonce_prefix is None:
            nonce_prefix = os.urandom(prefix_size)
        if len(nonce_prefix) != prefix_size:
            raise ValueError(f"nonce prefix must be {prefix_size} bytes")
        self._prefix = bytes(nonce_prefix)
        self._counter = 0
        self._gcm_key = algorithms.AES(bytes(key)) if aead_cls is AESGCM else None

    def encrypts_in_place(self, size: int) -> bool:
        """Whether ``encrypt_in_place`` takes a message of ``size`` bytes (a
        large one, with AES-GCM)."""
        return self._gcm_key is not None and size >= _GCM_STREAM_MIN

    def encrypt_in_place(self, frame, start: int, session_id: int) -> None:
        """Encrypt the message ``frame[start:]`` where it is, and write its
        TRANSFORM_HEADER (3.1.4.3) into the ``TRANSFORM_HEADER_SIZE`` bytes
        before it: a large READ's data is encrypted in the buffer it was read
        into, with no 1 MiB copy.  Only where ``encrypts_in_place``."""
        view = memoryview(frame)
        header_at = start - TRANSFORM_HEADER_SIZE
        message = view[start:]
        size = len(message)
        nonce_field = self._next_nonce().ljust(_NONCE_FIELD_SIZE, b"\x00")
        TRANSFORM_HEADER.pack_into(view, header_at, TRANSFORM_PROTOCOL_ID, bytes(_TAG_SIZE),
                                   nonce_field, size, 0, TRANSFORM_FLAG_ENCRYPTED, session_id)
        ctx = Cipher(self._gcm_key, modes.GCM(nonce_field[:self._nonce_size])).encryptor()
        ctx.authenticate_additional_data(bytes(view[header_at + _AAD_OFFSET:start]))
        ctx.update_into(message, message)       # OpenSSL takes the same buffer in and out
        ctx.finalize()
        view[header_at + _SIG_OFFSET:header_at + _SIG_OFFSET + _TAG_SIZE] = ctx.tag

    def _next_nonce(self) -> bytes:
        if self._counter >= 1 << 64:
            raise OverflowError("nonce space exhausted; the session must re-key")
        nonce = self._prefix + self._counter.to_bytes(8, "little")
        self._counter += 1
        return nonce

    def encrypt(self, message, session_id: int, nonce: bytes | None = None) -> bytearray:
        """TRANSFORM_HEADER followed by the encrypted ``message`` (3.1.4.3).

        ``nonce`` is for known-answer tests: either the cipher's nonce (11 or
        12 bytes) or the whole 16-byte Nonce field.  Returns a bytearray so
        the ciphertext is written only once.
        """
        if nonce is None:
            nonce = self._next_nonce()
        elif len(nonce) not in (self._nonce_size, _NONCE_FIELD_SIZE):
            raise ValueError("nonce must be the cipher's nonce or the 16-byte field")
        nonce_field = bytes(nonce).ljust(_NONCE_FIELD_SIZE, b"\x00")
        size = len(message)
        frame = bytearray(TRANSFORM_HEADER_SIZE + size + _TAG_SIZE)
        TRANSFORM_HEADER.pack_into(frame, 0, TRANSFORM_PROTOCOL_ID, bytes(_TAG_SIZE),
                                   nonce_field, size, 0, TRANSFORM_FLAG_ENCRYPTED,
                                   session_id)
        aad = bytes(frame[_AAD_OFFSET:TRANSFORM_HEADER_SIZE])
        # The AEAD appends the tag after the ciphertext; move it to Signature.
        self._aead.encrypt_into(nonce_field[:self._nonce_size], message, aad,
                                memoryview(frame)[TRANSFORM_HEADER_SIZE:])
        frame[_SIG_OFFSET:_SIG_OFFSET + _TAG_SIZE] = frame[-_TAG_SIZE:]
        del frame[-_TAG_SIZE:]
        return frame

    def __repr__(self) -> str:
        return f"Encryptor(cipher_id={self.cipher_id:#06x}, <key redacted>)"


class Decryptor:
    """Decrypts transform frames for one key: 3.3.5.2.1.1 / 3.2.5.1.1.1."""

    def __init__(self, cipher_id: int, key: bytes) -> None:
        aead_cls, _, nonce_size = _cipher_params(cipher_id, key)
        self.cipher_id = cipher_id
        self._aead = aead_cls(bytes(key))
        self._nonce_size = nonce_size
        self._gcm_key = algorithms.AES(bytes(key)) if aead_cls is AESGCM else None

    def decrypt(self, frame) -> bytes:
        """The SMB2 message inside ``frame``; DecryptionError on any failure."""
        return self._decrypt(frame, in_place=False)

    def decrypt_in_place(self, frame: bytearray):
        """The SMB2 message inside ``frame``, decrypted where its ciphertext
        was for a large GCM frame (a memoryview of ``frame``), else a new
        buffer; DecryptionError on any failure (``frame`` is garbage then)."""
        return self._decrypt(frame, in_place=True)

    def _decrypt(self, frame, in_place: bool):
        view = memoryview(frame)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        # The spec drops frames no longer than the header (3.3.5.2.1.1).
        if len(view) <= TRANSFORM_HEADER_SIZE:
            raise DecryptionError("transform frame has no payload")
        (protocol_id, tag, nonce_field, size, _reserved, flags,
         _session_id) = TRANSFORM_HEADER.unpack_from(view, 0)
        if protocol_id != TRANSFORM_PROTOCOL_ID:
            raise DecryptionError("not a TRANSFORM_HEADER")
        if flags != TRANSFORM_FLAG_ENCRYPTED:
            raise DecryptionError(f"unknown transform flags {flags:#06x}")
        ciphertext = view[TRANSFORM_HEADER_SIZE:]
        if size != len(ciphertext):
            raise DecryptionError("OriginalMessageSize does not match the frame")
        nonce = nonce_field[:self._nonce_size]
        aad = view[_AAD_OFFSET:TRANSFORM_HEADER_SIZE]
        try:
            if self._gcm_key is not None and size >= _GCM_STREAM_MIN:
                return self._decrypt_gcm_stream(nonce, tag, aad, ciphertext,
                                                in_place and not view.readonly)
            return self._aead.decrypt(nonce, b"".join((ciphertext, tag)), aad)
        except InvalidTag:
            raise DecryptionError("transform signature mismatch") from None

    def _decrypt_gcm_stream(self, nonce: bytes, tag: bytes, aad, ciphertext: memoryview,
                            in_place: bool):
        """GCM with the tag passed separately, so the payload is not re-joined;
        ``in_place``: the plaintext overwrites the ciphertext (OpenSSL allows
        the same buffer in and out, never a partial overlap)."""
        ctx = Cipher(self._gcm_key, modes.GCM(nonce, tag)).decryptor()
        ctx.authenticate_additional_data(bytes(aad))
        if in_place:
            ctx.update_into(ciphertext, ciphertext)
            ctx.finalize()
            return ciphertext
        plaintext = ctx.update(ciphertext)
        ctx.finalize()
        return plaintext

    def __repr__(self) -> str:
        return f"Decryptor(cipher_id={self.cipher_id:#06x}, <key redacted>)"
