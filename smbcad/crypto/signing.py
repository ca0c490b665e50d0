"""SMB2 message signing and verification ([MS-SMB2] 3.1.4.1, 3.1.5.1).

Hot path: READ responses and WRITE requests carry up to 8 MiB.  The MAC is
fed memoryview slices of the caller's frame (header up to the signature,
sixteen zero bytes, then the rest), so the payload is never copied.  AES-GMAC
takes one contiguous associated-data buffer, so that signer zeroes the
signature field in place and puts the received bytes back afterwards.
"""

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from smbcad.proto.constants import (HEADER_SIZE, Command, Dialect, HeaderFlags,
                                    SigningAlgorithmId)
from smbcad.proto.header import SIGNATURE_OFFSET, SIGNATURE_SIZE, ZERO_SIGNATURE

_SIG_END = SIGNATURE_OFFSET + SIGNATURE_SIZE
# Command (offset 12), Flags (16) and MessageId (24) of the SMB2 header (2.2.1).
_NONCE_FIELDS = struct.Struct("<12xH2xI4xQ")
# AES_GMAC nonce ([MS-SMB2] 3.1.4.1): MessageId, then role/CANCEL bits.
_GMAC_NONCE = struct.Struct("<QI")
_GMAC_ROLE_SERVER = 0x1
_GMAC_CANCEL = 0x2


def default_signing_algorithm(dialect: int, negotiated: int | None = None) -> int:
    """The algorithm a connection signs with ([MS-SMB2] 3.1.4.1).

    2.0.2/2.1 use HMAC-SHA256; 3.0/3.0.2 AES-CMAC; 3.1.1 the algorithm from
    the SMB2_SIGNING_CAPABILITIES context, or AES-CMAC when none was agreed.
    """
    if dialect in (Dialect.SMB_2_0_2, Dialect.SMB_2_1):
        return SigningAlgorithmId.HMAC_SHA256
    if dialect == Dialect.SMB_3_1_1 and negotiated is not None:
        return negotiated
    return SigningAlgorithmId.AES_CMAC


def _message(buf, offset: int, length: int | None) -> memoryview:
    """The signed message as a byte view of ``buf`` (no copy)."""
    view = memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    end = len(view) if length is None else offset + length
    if offset < 0 or end > len(view) or end - offset < HEADER_SIZE:
        raise ValueError("signed message must hold a whole SMB2 header")
    return view[offset:end]


class Signer:
    """Signs and verifies SMB2 messages with one key and one algorithm.

    ``buf`` is the whole frame (bytearray or writable memoryview); the message
    is ``buf[offset:offset + length]``, one member of a compound including its
    padding ([MS-SMB2] 3.1.4.1), or to the end of ``buf`` when ``length`` is
    None.  The caller sets SMB2_FLAGS_SIGNED before calling ``sign``.
    """

    algorithm_id: int

    def sign(self, buf, offset: int = 0, length: int | None = None) -> None:
        """Compute the signature and write it into the header (3.1.4.1)."""
        msg = _message(buf, offset, length)
        msg[SIGNATURE_OFFSET:_SIG_END] = self._mac(msg)

    def verify(self, buf, offset: int = 0, length: int | None = None) -> bool:
        """True when the header's signature matches the message (3.1.5.1)."""
        try:
            msg = _message(buf, offset, length)
        except ValueError:
            return False
        received = bytes(msg[SIGNATURE_OFFSET:_SIG_END])
        return hmac.compare_digest(self._mac(msg), received)

    def _mac(self, msg: memoryview) -> bytes:
        """MAC of ``msg`` as if its signature field were zero; leaves ``msg`` as found."""
        return self._digest((msg[:SIGNATURE_OFFSET], ZERO_SIGNATURE, msg[_SIG_END:]))

    def _digest(self, parts) -> bytes:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<key redacted>)"


class _HmacSha256Signer(Signer):
    """HMAC-SHA256 truncated to 16 bytes: 2.0.2 and 2.1 ([MS-SMB2] 3.1.4.1)."""

    algorithm_id = SigningAlgorithmId.HMAC_SHA256

    def __init__(self, key: bytes) -> None:
        # Keyed once; copy() per message skips re-hashing the key pads.
        self._base = hmac.new(bytes(key), digestmod=hashlib.sha256)

    def _digest(self, parts) -> bytes:
        mac = self._base.copy()
        for part in parts:
            mac.update(part)
        return mac.digest()[:SIGNATURE_SIZE]


class _AesCmacSigner(Signer):
    """AES-128-CMAC ([RFC4493]): 3.0, 3.0.2 and 3.1.1 by default."""

    algorithm_id = SigningAlgorithmId.AES_CMAC

    def __init__(self, key: bytes) -> None:
        self._base = cmac.CMAC(algorithms.AES(bytes(key)))

    def _digest(self, parts) -> bytes:
        mac = self._base.copy()
        for part in parts:
            mac.update(part)
        return mac.finalize()


class _AesGmacSigner(Signer):
    """AES-128-GMAC ([RFC4543]): 3.1.1 with SMB2_SIGNING_CAPABILITIES.

    GMAC is GCM with no plaintext and the message as associated data.
    """

    algorithm_id = SigningAlgorithmId.AES_GMAC

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(bytes(key))

    def sign(self, buf, offset: int = 0, length: int | None = None) -> None:
        # The field is zeroed, MACed and filled in place: nothing to restore.
        msg = _message(buf, offset, length)
        msg[SIGNATURE_OFFSET:_SIG_END] = ZERO_SIGNATURE
        msg[SIGNATURE_OFFSET:_SIG_END] = self._aead.encrypt(gmac_nonce(msg), b"", msg)

    def _mac(self, msg: memoryview) -> bytes:
        nonce = gmac_nonce(msg)
        if msg.readonly:
            scratch = bytearray(msg)
            scratch[SIGNATURE_OFFSET:_SIG_END] = ZERO_SIGNATURE
            return self._aead.encrypt(nonce, b"", scratch)
        saved = bytes(msg[SIGNATURE_OFFSET:_SIG_END])
        msg[SIGNATURE_OFFSET:_SIG_END] = ZERO_SIGNATURE
        try:
            return self._aead.encrypt(nonce, b"", msg)
        finally:
            msg[SIGNATURE_OFFSET:_SIG_END] = saved


def gmac_nonce(msg) -> bytes:
    """The 12-byte AES-GMAC nonce of one message ([MS-SMB2] 3.1.4.1).

    MessageId, then bit 0 set when the sender is the server (the message
    carries SMB2_FLAGS_SERVER_TO_REDIR) and bit 1 set for a CANCEL request.
    """
    command, flags, message_id = _NONCE_FIELDS.unpack_from(msg, 0)
    if flags & HeaderFlags.SERVER_TO_REDIR:
        role = _GMAC_ROLE_SERVER
    elif command == Command.CANCEL:
        role = _GMAC_CANCEL
    else:
        role = 0
    return _GMAC_NONCE.pack(message_id, role)


_SIGNERS = {
    SigningAlgorithmId.HMAC_SHA256: _HmacSha256Signer,
    SigningAlgorithmId.AES_CMAC: _AesCmacSigner,
    SigningAlgorithmId.AES_GMAC: _AesGmacSigner,
}
_AES_KEY_SIZE = 16


def make_signer(algorithm_id: int, key: bytes) -> Signer:
    """A Signer for a SigningAlgorithmId (2.2.3.1.7) and a 16-byte signing key."""
    cls = _SIGNERS.get(algorithm_id)
    if cls is None:
        raise ValueError(f"unknown signing algorithm {algorithm_id:#06x}")
    if cls is not _HmacSha256Signer and len(key) != _AES_KEY_SIZE:
        raise ValueError("AES signing keys are 16 bytes")
    return cls(key)
