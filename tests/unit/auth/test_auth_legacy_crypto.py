"""MD4, NT hash, HMAC-MD5 and RC4 for NTLM ([MS-NLMP] 3.3)."""

import json
from pathlib import Path

import pytest

from smbca.auth.legacy_crypto import _md4_python, hmac_md5, md4, nt_hash, rc4

VECTORS = json.loads((Path(__file__).parents[1] / "crypto" / "ms_blog_vectors.json").read_text())

# RFC 1320 appendix A.5 test suite.
MD4_SUITE = [
    (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
    (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
    (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
    (b"message digest", "d9130a8164549fe818874806e1c7014b"),
    (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
    (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
     "043f8582f241db351ce627e153e7f0e4"),
    (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
]


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


@pytest.mark.parametrize("data,digest", MD4_SUITE)
def test_md4_rfc1320(data, digest):
    assert md4(data).hex() == digest
    # Pin the fallback too, whether or not this OpenSSL still ships MD4.
    assert _md4_python(data).hex() == digest


@pytest.mark.parametrize("size", [55, 56, 63, 64, 65, 119, 120, 1000])
def test_md4_padding_boundaries_agree(size):
    data = bytes(range(256)) * 4
    assert _md4_python(data[:size]) == md4(data[:size])


def test_nt_hash_of_password():
    # [MS-NLMP] 4.2.2.1.2: NTOWFv1("Password", "User", "Domain").
    assert nt_hash("Password").hex() == "a4f49c406510bdcab6824ee7c30fd852"


def test_ntowfv2_msnlmp_example():
    # [MS-NLMP] 4.2.4.1.1: NTOWFv2("Password", "User", "Domain").
    response_key = hmac_md5(nt_hash("Password"), "USERDomain".encode("utf-16-le"))
    assert response_key.hex() == "0c868a403bfd7a93a3001ef22ef02e3f"


def test_rc4_msnlmp_encrypted_session_key():
    # [MS-NLMP] 4.2.4.2.3: RC4(SessionBaseKey of 4.2.4.1.2, RandomSessionKey 0x55 * 16).
    encrypted = rc4(unhex("8de40ccadbc14a82f15cb0ad0de95ca3"), b"\x55" * 16)
    assert encrypted.hex() == "c5dad2544fc9799094ce1ce90bc9d03e"


def test_ntlmv2_session_key_from_anatomy_blog():
    # "Anatomy of signing and cryptographic keys" (2017), NTLMv2 SessionKey example:
    # password -> NT hash -> NTOWFv2 -> NTProofStr -> SessionBaseKey -> RC4 ->
    # ExportedSessionKey 270E1BA8..., the SMB 3.1.1 session key of that trace.
    ntlm = VECTORS["smb311_multichannel"]["ntlm"]
    nt = nt_hash(ntlm["password"])
    assert nt == unhex(ntlm["nt_hash"])
    user_domain = "ADMINISTRATORSUT311".encode("utf-16-le")
    assert user_domain == unhex(ntlm["user_domain_utf16"])
    ntowfv2 = hmac_md5(nt, user_domain)
    assert ntowfv2 == unhex(ntlm["ntowfv2"])
    proof = hmac_md5(ntowfv2, unhex(ntlm["server_challenge"]), unhex(ntlm["temp"]))
    assert proof == unhex(ntlm["nt_proof_str"])
    base_key = hmac_md5(ntowfv2, proof)
    assert base_key == unhex(ntlm["session_base_key"])
    assert rc4(base_key, unhex(ntlm["encrypted_random_session_key"])) == \
        unhex(ntlm["exported_session_key"])


@pytest.mark.parametrize("key,parts,digest", [
    # RFC 2202 section 2, test cases 1 and 2.
    (b"\x0b" * 16, (b"Hi There",), "9294727a3638bb1c13f48ef8158bfc9d"),
    (b"Jefe", (b"what do ya want ", b"for nothing?"), "750c783e6ab0b503eaa86e310a5db738"),
])
def test_hmac_md5_rfc2202(key, parts, digest):
    assert hmac_md5(key, *parts).hex() == digest


@pytest.mark.parametrize("key,keystream", [
    # RFC 6229 section 2, offset 0, 40-bit and 128-bit keys.
    ("0102030405", "b2396305f03dc027ccc3524a0a1118a86982944f18fc82d589c403a47a0d0919"),
    ("0102030405060708090a0b0c0d0e0f10",
     "9ac7cc9a609d1ef7b2932899cde41b975248c4959014126a6e8a84f11d1a9e1c"),
])
def test_rc4_rfc6229(key, keystream):
    assert rc4(unhex(key), bytes(32)).hex() == keystream


def test_rc4_is_its_own_inverse():
    key = bytes(range(16))
    assert rc4(key, rc4(key, b"sealed payload")) == b"sealed payload"
