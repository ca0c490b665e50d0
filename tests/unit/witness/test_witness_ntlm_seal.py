"""NTLM sealing added for DCE/RPC privacy (smbca.auth, [MS-NLMP] 3.4.3).

``unseal`` is pinned by the [MS-NLMP] 4.2.4.4 GSS_WrapEx example (NTLMv2,
client-to-server keys); ``seal`` by a round trip through a client-side
mirror of the keys, and (in test_witness_security) against pyspnego.
"""

import pytest

from smbca.auth import AuthError
from smbca.auth._ntlm_crypto import ServerSessionSecurity, SessionKeys
from smbca.auth._ntlm_messages import NegotiateFlags as F
from smbca.auth.legacy_crypto import Rc4, hmac_md5

FLAGS_4_2_4 = 0xE28A8233  # challenge flags of the [MS-NLMP] 4.2.4 NTLMv2 examples
RANDOM_SESSION_KEY = bytes([0x55] * 16)  # [MS-NLMP] 4.2.1
PLAINTEXT = "Plaintext".encode("utf-16-le")
SEALED = bytes.fromhex("54e50165bf1936dc996020c1811b0f06fb5f")
SIGNATURE = bytes.fromhex("010000007fb38ec5c55d497600000000")


def test_unseal_matches_ms_nlmp_4_2_4_4() -> None:
    keys = SessionKeys.derive(FLAGS_4_2_4, RANDOM_SESSION_KEY)
    assert keys.c2s_sealing.hex() == "59f600973cc4960a25480a7c196e4c58"
    assert keys.c2s_signing.hex() == "4788dc861b4782f35d43fd98fe1a2d39"
    security = ServerSessionSecurity(FLAGS_4_2_4, RANDOM_SESSION_KEY)
    assert security.unseal(SEALED, SIGNATURE) == PLAINTEXT


def test_unseal_refuses_a_bad_signature() -> None:
    security = ServerSessionSecurity(FLAGS_4_2_4, RANDOM_SESSION_KEY)
    assert security.unseal(SEALED, SIGNATURE[:-5] + b"\x01" + SIGNATURE[-4:]) is None


def test_seal_signs_prefix_plaintext_suffix() -> None:
    security = ServerSessionSecurity(FLAGS_4_2_4, RANDOM_SESSION_KEY)
    sealed, signature = security.seal(PLAINTEXT, b"head", b"tail")
    keys = SessionKeys.derive(FLAGS_4_2_4, RANDOM_SESSION_KEY)
    handle = Rc4(keys.s2c_sealing)
    assert handle.update(sealed) == PLAINTEXT
    checksum = hmac_md5(keys.s2c_signing, bytes(4) + b"head" + PLAINTEXT + b"tail")[:8]
    assert signature == b"\x01\x00\x00\x00" + handle.update(checksum) + bytes(4)


def test_seal_needs_the_seal_flag() -> None:
    security = ServerSessionSecurity(FLAGS_4_2_4 & ~F.SEAL, RANDOM_SESSION_KEY)
    with pytest.raises(AuthError):
        security.seal(b"x")
