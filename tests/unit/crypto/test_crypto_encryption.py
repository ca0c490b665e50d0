"""TRANSFORM_HEADER encryption ([MS-SMB2] 2.2.41, 3.1.4.3, 3.3.5.2.1.1).

Published vectors (ms_blog_vectors.json): every encrypted WRITE/READ request
and response of "Encryption in SMB 3.0: A protocol perspective" (AES-128-CCM,
3.0) and Appendix A.1/A.2 of "SMB 3.1.1 Encryption in Windows 10"
(AES-128-GCM and AES-128-CCM, 3.1.1).  No published AES-256 vector exists;
those ciphers are covered by round trips and tamper tests only.
"""

import json
import struct
from pathlib import Path

import pytest

from smbcad.crypto import (TRANSFORM_HEADER_SIZE, DecryptionError, Decryptor, Encryptor,
                           derive_session_keys, transform_session_id)
from smbcad.crypto.encryption import _GCM_STREAM_MIN
from smbcad.proto.constants import CipherId, Dialect
from smbcad.proto.errors import ProtocolViolation
from smbcad.proto.status import NtStatus

VECTORS = json.loads(Path(__file__).with_name("ms_blog_vectors.json").read_text())
ALL_CIPHERS = [CipherId.AES_128_CCM, CipherId.AES_128_GCM, CipherId.AES_256_CCM,
               CipherId.AES_256_GCM]
KEY_SIZE = {CipherId.AES_128_CCM: 16, CipherId.AES_128_GCM: 16,
            CipherId.AES_256_CCM: 32, CipherId.AES_256_GCM: 32}
SESSION_ID = 0x0000100000000025


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def _published_frames():
    cipher_of = {"smb30_ccm": CipherId.AES_128_CCM, "smb311_gcm": CipherId.AES_128_GCM,
                 "smb311_ccm": CipherId.AES_128_CCM}
    for entry, cipher_id in cipher_of.items():
        for direction in ("c2s", "s2c"):
            for frame in VECTORS[entry][direction]:
                yield pytest.param(entry, cipher_id, direction, frame,
                                   id=f"{entry}-{frame['name']}")


@pytest.mark.parametrize("entry,cipher_id,direction,vector", _published_frames())
def test_published_frame(entry, cipher_id, direction, vector):
    key = unhex(VECTORS[entry][f"encrypt_{direction}"])
    session_id = int(VECTORS[entry]["session_id"], 16)
    plaintext, frame = unhex(vector["plaintext"]), unhex(vector["frame"])
    out = Encryptor(cipher_id, key).encrypt(plaintext, session_id,
                                            nonce=unhex(vector["nonce_field"]))
    assert out == frame
    assert Decryptor(cipher_id, key).decrypt(frame) == plaintext
    assert transform_session_id(frame) == session_id


def test_published_keys_drive_published_frames():
    # Derive instead of reading keys: SessionKey -> c2s key -> WRITE frame.
    entry = VECTORS["smb311_gcm"]
    keys = derive_session_keys(Dialect.SMB_3_1_1, unhex(entry["session_key"]),
                               unhex(entry["chain"][-1]["hash"]), CipherId.AES_128_GCM)
    server_in = Decryptor(CipherId.AES_128_GCM, keys.encrypt_c2s)
    write = entry["c2s"][0]
    assert server_in.decrypt(unhex(write["frame"])) == unhex(write["plaintext"])
    # Direction matters: the s2c key cannot open a client frame.
    with pytest.raises(DecryptionError):
        Decryptor(CipherId.AES_128_GCM, keys.encrypt_s2c).decrypt(unhex(write["frame"]))


def _pair(cipher_id, prefix=None):
    key = bytes(range(KEY_SIZE[cipher_id]))
    return Encryptor(cipher_id, key, nonce_prefix=prefix), Decryptor(cipher_id, key)


@pytest.mark.parametrize("cipher_id", ALL_CIPHERS)
@pytest.mark.parametrize("size", [1, 64, 4096, _GCM_STREAM_MIN, 1 << 20])
def test_round_trip(cipher_id, size):
    enc, dec = _pair(cipher_id)
    message = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = enc.encrypt(message, SESSION_ID)
    assert len(frame) == TRANSFORM_HEADER_SIZE + size
    assert frame[:4] == b"\xfdSMB"
    assert struct.unpack_from("<IHHQ", frame, 36) == (size, 0, 1, SESSION_ID)
    assert dec.decrypt(frame) == message
    assert dec.decrypt(bytes(frame)) == message
    assert dec.decrypt(memoryview(frame)) == message


@pytest.mark.parametrize("cipher_id", ALL_CIPHERS)
@pytest.mark.parametrize("size", [1, 4096, _GCM_STREAM_MIN, 1 << 20])
def test_decrypt_in_place(cipher_id, size):
    """A large GCM frame is decrypted where its ciphertext was (the view
    shares the frame's memory); otherwise a new buffer, same plaintext."""
    enc, dec = _pair(cipher_id)
    message = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = enc.encrypt(message, SESSION_ID)
    plain = dec.decrypt_in_place(frame)
    assert bytes(plain) == message
    in_place = cipher_id in (CipherId.AES_128_GCM, CipherId.AES_256_GCM) and size >= _GCM_STREAM_MIN
    assert isinstance(plain, memoryview) == in_place
    if in_place:
        assert bytes(frame[TRANSFORM_HEADER_SIZE:]) == message


@pytest.mark.parametrize("cipher_id", ALL_CIPHERS)
@pytest.mark.parametrize("size", [4096, _GCM_STREAM_MIN, 1 << 20])
def test_encrypt_in_place_is_the_same_frame(cipher_id, size):
    """A large GCM message encrypted where it is, its TRANSFORM_HEADER in the
    bytes before it, gives the very frame ``encrypt`` gives with the same
    nonce; CCM and small messages are not taken."""
    ccm = cipher_id in (CipherId.AES_128_CCM, CipherId.AES_256_CCM)
    prefix = bytes(range(3 if ccm else 4))      # the nonce less its 8-byte counter
    copying, _ = _pair(cipher_id, prefix)
    in_place, dec = _pair(cipher_id, prefix)
    message = bytes(range(256)) * (size // 256)
    taken = cipher_id in (CipherId.AES_128_GCM, CipherId.AES_256_GCM) and size >= _GCM_STREAM_MIN
    assert in_place.encrypts_in_place(size) == taken
    if not taken:
        return
    expected = copying.encrypt(message, SESSION_ID)
    buffer = bytearray(4 + TRANSFORM_HEADER_SIZE) + bytearray(message)
    in_place.encrypt_in_place(buffer, 4 + TRANSFORM_HEADER_SIZE, SESSION_ID)
    assert buffer[4:] == expected
    assert dec.decrypt(buffer[4:]) == message


@pytest.mark.parametrize("cipher_id", ALL_CIPHERS)
@pytest.mark.parametrize("position", [4, 44, 52, -1])
def test_decrypt_in_place_detects_tampering(cipher_id, position):
    enc, dec = _pair(cipher_id)
    frame = enc.encrypt(b"\x5a" * (_GCM_STREAM_MIN + 8), SESSION_ID)
    frame[position] ^= 0x01
    with pytest.raises(DecryptionError):
        dec.decrypt_in_place(frame)


@pytest.mark.parametrize("cipher_id", ALL_CIPHERS)
@pytest.mark.parametrize("size", [100, _GCM_STREAM_MIN + 8])
@pytest.mark.parametrize("position", [
    4,      # Signature (the AEAD tag)
    20,     # Nonce
    36,     # OriginalMessageSize
    44,     # SessionId (authenticated data)
    52,     # first ciphertext byte
    -1,     # last ciphertext byte
])
def test_tamper_detected(cipher_id, size, position):
    enc, dec = _pair(cipher_id)
    frame = enc.encrypt(b"\x5a" * size, SESSION_ID)
    frame[position] ^= 0x01
    with pytest.raises(DecryptionError) as err:
        dec.decrypt(frame)
    assert err.value.status == NtStatus.DECRYPTION_FAILED == 0xC000028B


@pytest.mark.parametrize("cipher_id", ALL_CIPHERS)
def test_reserved_nonce_bytes_are_authenticated(cipher_id):
    enc, dec = _pair(cipher_id)
    frame = enc.encrypt(b"hello", SESSION_ID)
    frame[20 + 15] ^= 0x80  # last byte of the 16-byte Nonce field: unused, but AAD
    with pytest.raises(DecryptionError):
        dec.decrypt(frame)


@pytest.mark.parametrize("cipher_id", ALL_CIPHERS)
def test_wrong_key(cipher_id):
    enc, _ = _pair(cipher_id)
    frame = enc.encrypt(b"hello", SESSION_ID)
    with pytest.raises(DecryptionError):
        Decryptor(cipher_id, b"\x01" * KEY_SIZE[cipher_id]).decrypt(frame)


def test_header_checks():
    enc, dec = _pair(CipherId.AES_128_GCM)
    good = enc.encrypt(b"hello", SESSION_ID)
    for mutate in (
        lambda f: f.__setitem__(slice(0, 4), b"\xfeSMB"),       # ProtocolId
        lambda f: struct.pack_into("<H", f, 42, 2),              # Flags != 0x0001
        lambda f: struct.pack_into("<I", f, 36, 4),              # size < payload
        lambda f: struct.pack_into("<I", f, 36, 6),              # size > payload
        lambda f: f.extend(b"\x00"),                             # trailing junk
    ):
        frame = bytearray(good)
        mutate(frame)
        with pytest.raises(DecryptionError):
            dec.decrypt(frame)
    for truncated in (b"", good[:TRANSFORM_HEADER_SIZE], good[:TRANSFORM_HEADER_SIZE - 1]):
        with pytest.raises(DecryptionError):
            dec.decrypt(truncated)


def test_decryption_error_drops_the_connection():
    assert issubclass(DecryptionError, ProtocolViolation)
    assert DecryptionError.status == 0xC000028B


@pytest.mark.parametrize("cipher_id", ALL_CIPHERS)
def test_generated_nonces_never_repeat(cipher_id):
    enc, dec = _pair(cipher_id)
    nonces = set()
    for _ in range(1000):
        frame = enc.encrypt(b"x", SESSION_ID)
        nonces.add(bytes(frame[20:36]))
        assert dec.decrypt(frame) == b"x"
    assert len(nonces) == 1000


@pytest.mark.parametrize("cipher_id,prefix_size", [(CipherId.AES_128_CCM, 3),
                                                   (CipherId.AES_256_GCM, 4)])
def test_nonce_layout(cipher_id, prefix_size):
    prefix = b"\xaa" * prefix_size
    enc, _ = _pair(cipher_id, prefix)
    first = enc.encrypt(b"x", SESSION_ID)[20:36]
    second = enc.encrypt(b"x", SESSION_ID)[20:36]
    used = prefix_size + 8
    assert first[:used] == prefix + (0).to_bytes(8, "little")
    assert second[:used] == prefix + (1).to_bytes(8, "little")
    assert first[used:] == bytes(16 - used)  # reserved bytes are zero (2.2.41)


def test_two_encryptors_with_random_prefixes_differ():
    key = bytes(16)
    a = Encryptor(CipherId.AES_128_GCM, key).encrypt(b"x", SESSION_ID)
    b = Encryptor(CipherId.AES_128_GCM, key).encrypt(b"x", SESSION_ID)
    assert a[20:32] != b[20:32]


def test_transform_session_id():
    frame = _pair(CipherId.AES_128_CCM)[0].encrypt(b"x", 0xFEDCBA9876543210)
    assert transform_session_id(frame) == 0xFEDCBA9876543210
    assert transform_session_id(memoryview(frame)) == 0xFEDCBA9876543210
    with pytest.raises(DecryptionError):
        transform_session_id(frame[:51])


@pytest.mark.parametrize("cipher_id", ALL_CIPHERS)
def test_key_size_enforced(cipher_id):
    wrong = bytes(48 - KEY_SIZE[cipher_id])
    with pytest.raises(ValueError):
        Encryptor(cipher_id, wrong)
    with pytest.raises(ValueError):
        Decryptor(cipher_id, wrong)


def test_bad_arguments():
    with pytest.raises(ValueError):
        Encryptor(0x0009, bytes(16))
    with pytest.raises(ValueError):
        Encryptor(CipherId.AES_128_GCM, bytes(16), nonce_prefix=b"\x00" * 3)
    enc = Encryptor(CipherId.AES_128_GCM, bytes(16))
    with pytest.raises(ValueError):
        enc.encrypt(b"x", 1, nonce=bytes(11))
    assert bytes(16).hex() not in repr(enc)
