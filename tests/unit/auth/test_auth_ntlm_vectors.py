"""Published NTLMv2 test vectors.

Source: [MS-NLMP] section 4.2.4 "NTLMv2 Authentication" (common values in
4.2.1), as mirrored in github.com/awakecoding/openspecs,
skills/windows-protocols/MS-NLMP/MS-NLMP.md.  User "User", domain "Domain",
password "Password", server challenge 0123456789abcdef, client challenge
aa*8, time 0, RandomSessionKey 55*16.
"""

from smbca.auth._ntlm_crypto import (Direction, SessionKeys, check_ntlmv2,
                                      exported_session_key, ntowf_v2, upcase)
from smbca.auth._ntlm_messages import (AuthenticateMessage, AvId, AvPair, ChallengeMessage,
                                        NegotiateMessage, Ntlmv2Response, Version)
from smbca.auth.legacy_crypto import hmac_md5, md4, nt_hash, rc4

SERVER_CHALLENGE = bytes.fromhex("0123456789abcdef")
CLIENT_CHALLENGE = b"\xaa" * 8
RANDOM_SESSION_KEY = b"\x55" * 16
CHALLENGE_FLAGS = 0xE28A8233  # 4.2.4 "Challenge Flags"

NTOWF_V2 = bytes.fromhex("0c868a403bfd7a93a3001ef22ef02e3f")           # 4.2.4.1.1
SESSION_BASE_KEY = bytes.fromhex("8de40ccadbc14a82f15cb0ad0de95ca3")    # 4.2.4.1.2
LMV2_RESPONSE = bytes.fromhex("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa")  # 4.2.4.2.1
NT_PROOF_STR = bytes.fromhex("68cd0ab851e51c96aabc927bebef6a1c")        # 4.2.4.2.2
ENCRYPTED_SESSION_KEY = bytes.fromhex("c5dad2544fc9799094ce1ce90bc9d03e")  # 4.2.4.2.3

# 4.2.4.3 CHALLENGE_MESSAGE.
CHALLENGE_MESSAGE = bytes.fromhex(
    "4e544c4d53535000020000000c000c00"
    "3800000033828ae20123456789abcdef"
    "00000000000000002400240044000000"
    "060070170000000f5300650072007600"
    "6500720002000c0044006f006d006100"
    "69006e0001000c005300650072007600"
    "6500720000000000")
# 4.2.4.3 AUTHENTICATE_MESSAGE.
AUTHENTICATE_MESSAGE = bytes.fromhex(
    "4e544c4d535350000300000018001800"
    "6c00000054005400840000000c000c00"
    "480000000800080054000000100010005c000000"
    "10001000d8000000358288e2"
    "0501280a0000000f"
    "44006f006d00610069006e00"
    "55007300650072004300"
    "4f004d0050005500540045005200"
    "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"
    "68cd0ab851e51c96aabc927bebef6a1c"
    "0101000000000000" "0000000000000000" "aaaaaaaaaaaaaaaa" "00000000"
    "02000c0044006f006d00610069006e00"
    "01000c00530065007200760065007200"
    "0000000000000000"
    "c5dad2544fc9799094ce1ce90bc9d03e")

# 4.2.4.4 GSS_WrapEx example (client-to-server, SeqNum 0).
PLAINTEXT = "Plaintext".encode("utf-16-le")
C2S_SEAL_KEY = bytes.fromhex("59f600973cc4960a25480a7c196e4c58")
C2S_SIGN_KEY = bytes.fromhex("4788dc861b4782f35d43fd98fe1a2d39")
SEALED = bytes.fromhex("54e50165bf1936dc996020c1811b0f06fb5f")
SIGNATURE = bytes.fromhex("010000007fb38ec5c55d497600000000")


def test_md4_and_nt_hash():
    # RFC 1320 appendix A.5 and [MS-NLMP] 4.2.2.1.2.
    assert md4(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"
    assert md4(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d"
    assert nt_hash("Password").hex() == "a4f49c406510bdcab6824ee7c30fd852"


def test_ntowf_v2():
    assert ntowf_v2(nt_hash("Password"), "User", "Domain") == NTOWF_V2
    assert ntowf_v2(nt_hash("Password"), "uSeR", "Domain") == NTOWF_V2


def test_upcase_keeps_length():
    assert upcase("straße") == "STRAßE"


def test_lmv2_response_formula():
    lm = hmac_md5(NTOWF_V2, SERVER_CHALLENGE + CLIENT_CHALLENGE) + CLIENT_CHALLENGE
    assert lm == LMV2_RESPONSE


def test_challenge_message_encodes_to_published_bytes():
    message = ChallengeMessage(
        flags=CHALLENGE_FLAGS, server_challenge=SERVER_CHALLENGE, target_name="Server",
        target_info=(AvPair(AvId.NB_DOMAIN_NAME, "Domain".encode("utf-16-le")),
                     AvPair(AvId.NB_COMPUTER_NAME, "Server".encode("utf-16-le"))),
        version=Version(6, 0, 6000, 15))
    assert message.encode() == CHALLENGE_MESSAGE
    assert ChallengeMessage.decode(CHALLENGE_MESSAGE) == message


def test_authenticate_message_decode_and_reencode():
    auth = AuthenticateMessage.decode(AUTHENTICATE_MESSAGE)
    assert (auth.domain, auth.user, auth.workstation) == ("Domain", "User", "COMPUTER")
    assert auth.flags == 0xE2888235
    assert auth.lm_response == LMV2_RESPONSE
    assert auth.encrypted_session_key == ENCRYPTED_SESSION_KEY
    assert auth.version == Version(5, 1, 2600, 15)
    assert auth.mic is None
    assert auth.encode() == AUTHENTICATE_MESSAGE


def test_ntlmv2_response_verifies_and_yields_keys():
    auth = AuthenticateMessage.decode(AUTHENTICATE_MESSAGE)
    response = Ntlmv2Response.decode(auth.nt_response)
    assert response.nt_proof_str == NT_PROOF_STR
    assert response.timestamp == 0 and response.client_challenge == CLIENT_CHALLENGE
    assert [p.av_id for p in response.av_pairs] == [AvId.NB_DOMAIN_NAME, AvId.NB_COMPUTER_NAME]
    base = check_ntlmv2(nt_hash("Password"), auth.user, ("Domain",), SERVER_CHALLENGE,
                        response.nt_proof_str, response.temp)
    assert base == SESSION_BASE_KEY
    assert rc4(SESSION_BASE_KEY, RANDOM_SESSION_KEY) == ENCRYPTED_SESSION_KEY
    assert exported_session_key(auth.flags, base, auth.encrypted_session_key) == RANDOM_SESSION_KEY


def test_wrong_password_and_domain_fallback():
    auth = AuthenticateMessage.decode(AUTHENTICATE_MESSAGE)
    response = Ntlmv2Response.decode(auth.nt_response)
    args = (SERVER_CHALLENGE, response.nt_proof_str, response.temp)
    assert check_ntlmv2(nt_hash("password"), "User", ("Domain", ""), *args) is None
    # The right domain found second (after a wrong first guess) still matches.
    assert check_ntlmv2(nt_hash("Password"), "User", ("Other", "Domain"), *args) == SESSION_BASE_KEY


def test_sign_and_seal_keys_and_signature():
    keys = SessionKeys.derive(CHALLENGE_FLAGS, RANDOM_SESSION_KEY)
    assert keys.c2s_sealing == C2S_SEAL_KEY
    assert keys.c2s_signing == C2S_SIGN_KEY
    direction = Direction(keys.c2s_signing, keys.c2s_sealing, key_exch=True)
    # GSS_WrapEx seals the data with the same RC4 handle before MAC() (3.4.6).
    assert direction.handle.update(PLAINTEXT) == SEALED
    assert direction.mac(PLAINTEXT) == SIGNATURE


def test_negotiate_message_round_trip():
    message = NegotiateMessage(0xE2088297, b"DOM", b"WS", Version(10, 0, 19041))
    assert NegotiateMessage.decode(message.encode()) == message
