"""Key derivation ([MS-SMB2] 3.1.4.2, 3.3.5.5.3) against Microsoft's published keys.

Vectors: tests/unit/crypto/ms_blog_vectors.json (each entry names its blog).
Cross-checks marked "independent" use cryptography's KBKDFHMAC, a separate
SP800-108 implementation, where no published vector exists (L = 256).
"""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

from smbcad.crypto import (PREAUTH_INITIAL, SessionKeys, derive_session_keys,
                           derive_signing_key, preauth_next, sp800_108_hmac_sha256)
from smbcad.proto.constants import CipherId, Dialect

VECTORS = json.loads(Path(__file__).with_name("ms_blog_vectors.json").read_text())


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def _final_preauth(entry: dict) -> bytes | None:
    if "chain" not in entry:
        return None
    return unhex(entry["chain"][-1]["hash"])


@pytest.mark.parametrize("name", ["smb30_ccm", "smb30_multichannel", "smb311_gcm",
                                  "smb311_ccm", "smb311_multichannel"])
def test_session_keys_match_published(name):
    entry = VECTORS[name]
    keys = derive_session_keys(entry["dialect"], unhex(entry["session_key"]),
                               _final_preauth(entry), entry.get("cipher_id"))
    assert keys.signing == unhex(entry["signing_key"])
    assert keys.encrypt_c2s == unhex(entry["encrypt_c2s"])
    assert keys.encrypt_s2c == unhex(entry["encrypt_s2c"])
    assert keys.application == unhex(entry["application_key"])


def test_smb311_signing_key_from_recomputed_preauth_chain():
    # End to end: messages -> preauth hash -> SigningKey 73FE7A9A... (2017 blog,
    # same SessionKey/SigningKey pair as the 2015 pre-auth integrity blog).
    entry = VECTORS["smb311_multichannel"]
    value = PREAUTH_INITIAL
    for step in entry["chain"]:
        value = preauth_next(value, unhex(step["message"]))
    assert derive_signing_key(Dialect.SMB_3_1_1, unhex(entry["session_key"]), value) \
        == unhex("73FE7A9A77BEF0BDE49C650D8CCB5F76")


def test_smb30_channel_signing_key():
    entry = VECTORS["smb30_multichannel"]
    assert derive_signing_key(Dialect.SMB_3_0, unhex(entry["binding_session_key"])) \
        == unhex(entry["channel_signing_key"])


def test_smb311_channel_signing_key_uses_binding_preauth_hash():
    entry = VECTORS["smb311_multichannel"]
    binding_hash = unhex(entry["binding_chain"][-1]["hash"])
    assert derive_signing_key(Dialect.SMB_3_1_1, unhex(entry["binding_session_key"]),
                              binding_hash) == unhex(entry["channel_signing_key"])


def test_smb302_uses_the_smb30_table():
    entry = VECTORS["smb30_ccm"]
    assert derive_session_keys(Dialect.SMB_3_0_2, unhex(entry["session_key"])) == \
        derive_session_keys(Dialect.SMB_3_0, unhex(entry["session_key"]))


@pytest.mark.parametrize("dialect", [Dialect.SMB_2_0_2, Dialect.SMB_2_1])
def test_smb2_signing_key_is_the_session_key(dialect):
    key = bytes(range(32))
    keys = derive_session_keys(dialect, key)
    assert keys == SessionKeys(key[:16], b"", b"", b"")
    assert derive_signing_key(dialect, key) == key[:16]


def test_short_session_key_is_right_padded():
    # [MS-SMB2] 3.3.1.8: keys under 16 bytes are padded with zeros.
    assert derive_session_keys(Dialect.SMB_2_1, b"\x01" * 8).signing == b"\x01" * 8 + bytes(8)
    assert derive_signing_key(Dialect.SMB_3_0, b"\x01" * 8) == \
        derive_signing_key(Dialect.SMB_3_0, b"\x01" * 8 + bytes(8))


def _kbkdf(key: bytes, label: bytes, context: bytes, length: int) -> bytes:
    return KBKDFHMAC(algorithm=hashes.SHA256(), mode=Mode.CounterMode, length=length,
                     rlen=4, llen=4, location=CounterLocation.BeforeFixed,
                     label=label, context=context, fixed=None).derive(key)


@pytest.mark.parametrize("length", [16, 32, 48])
def test_kdf_matches_independent_kbkdf(length):
    key = bytes(range(16, 48))
    assert sp800_108_hmac_sha256(key, b"label\x00", b"ctx", length) == \
        _kbkdf(key, b"label\x00", b"ctx", length)


@pytest.mark.parametrize("cipher_id", [CipherId.AES_256_CCM, CipherId.AES_256_GCM])
def test_aes256_cipher_keys_use_full_session_key_and_l256(cipher_id):
    full_key = bytes(range(100, 132))
    preauth = bytes(range(64))
    keys = derive_session_keys(Dialect.SMB_3_1_1, full_key, preauth, cipher_id)
    assert len(keys.encrypt_c2s) == len(keys.encrypt_s2c) == 32
    assert keys.encrypt_c2s == _kbkdf(full_key, b"SMBC2SCipherKey\x00", preauth, 32)
    assert keys.encrypt_s2c == _kbkdf(full_key, b"SMBS2CCipherKey\x00", preauth, 32)
    # Signing and application keys stay 128-bit and use the 16-byte SessionKey.
    assert keys.signing == _kbkdf(full_key[:16], b"SMBSigningKey\x00", preauth, 16)
    assert keys.application == _kbkdf(full_key[:16], b"SMBAppKey\x00", preauth, 16)


def test_aes128_cipher_keys_use_truncated_session_key():
    full_key = bytes(range(100, 132))
    preauth = bytes(range(64))
    keys = derive_session_keys(Dialect.SMB_3_1_1, full_key, preauth, CipherId.AES_128_GCM)
    assert keys.encrypt_c2s == _kbkdf(full_key[:16], b"SMBC2SCipherKey\x00", preauth, 16)


@pytest.mark.parametrize("preauth", [None, bytes(32)])
def test_smb311_requires_64_byte_preauth_hash(preauth):
    with pytest.raises(ValueError):
        derive_session_keys(Dialect.SMB_3_1_1, bytes(16), preauth)
    with pytest.raises(ValueError):
        derive_signing_key(Dialect.SMB_3_1_1, bytes(16), preauth)


def test_unknown_dialect_rejected():
    with pytest.raises(ValueError):
        derive_session_keys(Dialect.WILDCARD, bytes(16))


def test_repr_hides_keys():
    keys = derive_session_keys(Dialect.SMB_3_0, b"\xab" * 16)
    assert keys.signing.hex() not in repr(keys)
    assert repr(keys.signing) not in repr(keys)
