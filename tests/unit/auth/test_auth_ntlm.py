"""NtlmAcceptor against pyspnego's NTLM client and hand-built edge cases."""

import struct

import pytest
import spnego

from smbca.auth import AuthError, Identity, NtlmAcceptor
from smbca.auth._ntlm_crypto import ntowf_v2, nt_proof_str
from smbca.auth._ntlm_messages import (AuthenticateMessage, AvId, AvPair, ChallengeMessage,
                                        NegotiateFlags as F, NegotiateMessage, encode_av_pairs)
from smbca.auth.legacy_crypto import nt_hash
from smbcad.proto.status import NtStatus

LOGON_FAILURE = NtStatus.LOGON_FAILURE
INVALID_PARAMETER = NtStatus.INVALID_PARAMETER
PASSWORD = "Pa55:word"  # the conftest users fixture's password for alice


def acceptor(users, rng=None, **kwargs) -> NtlmAcceptor:
    return NtlmAcceptor(users, "SRV", "WORKGROUP", rng=rng or (lambda n: b"\x11" * n),
                        clock=lambda: 0.0, **kwargs)


def client(user="alice", password=PASSWORD):
    return spnego.client(user, password, hostname="srv", protocol="ntlm")


def run(acc: NtlmAcceptor, cli) -> None:
    challenge = acc.step(cli.step())
    assert acc.step(cli.step(challenge)) is None


def expect_status(status, fn, *args):
    with pytest.raises(AuthError) as info:
        fn(*args)
    assert info.value.status == status
    return info.value


def build_authenticate(challenge_raw: bytes, user: str, password: str, *, domain: str = "",
                       hash_domain: str | None = None, pairs=None, flags: int | None = None,
                       nt_response: bytes | None = None, lm_response: bytes = b"") -> bytes:
    """A hand-made AUTHENTICATE_MESSAGE (3.1.5.1.2) for cases pyspnego will not produce."""
    challenge = ChallengeMessage.decode(challenge_raw)
    if nt_response is None:
        avs = challenge.target_info if pairs is None else pairs
        temp = (b"\x01\x01" + bytes(6) + struct.pack("<Q", 0) + b"\xcc" * 8 + bytes(4)
                + encode_av_pairs(tuple(avs)) + bytes(4))
        key = ntowf_v2(nt_hash(password), user, domain if hash_domain is None else hash_domain)
        nt_response = nt_proof_str(key, challenge.server_challenge, temp) + temp
    message = AuthenticateMessage(
        flags=challenge.flags & ~F.KEY_EXCH if flags is None else flags,
        lm_response=lm_response, nt_response=nt_response, domain=domain, user=user,
        workstation="WS", encrypted_session_key=b"")
    return message.encode()


def negotiated(acc: NtlmAcceptor) -> bytes:
    return acc.step(NegotiateMessage(int(F.UNICODE | F.NTLM | F.SIGN | F.EXTENDED_SESSIONSECURITY)
                                     ).encode())


# -- against pyspnego ----------------------------------------------------------

def test_pyspnego_client_authenticates_and_keys_agree(users):
    acc, cli = acceptor(users), client()
    run(acc, cli)
    assert acc.complete and cli.complete
    assert acc.session_key == cli.session_key and len(acc.session_key) == 16
    assert acc.identity == Identity("alice", "")
    # NTLM session security interoperates in both directions, several times.
    for n in range(3):
        assert acc.verify(b"c2s%d" % n, cli.sign(b"c2s%d" % n))
        cli.verify(b"s2c%d" % n, acc.sign(b"s2c%d" % n))
    assert not acc.verify(b"tampered", cli.sign(b"original"))


def test_user_name_is_case_insensitive_and_domain_reported(users):
    acc = acceptor(users)
    run(acc, client(user="CORP\\ALICE"))
    assert acc.identity == Identity("alice", "CORP")


def test_challenge_message_contents(users):
    acc = acceptor(users, rng=lambda n: bytes(range(1, n + 1)))
    challenge = ChallengeMessage.decode(acc.step(client().step()))
    assert challenge.server_challenge == bytes(range(1, 9))
    assert challenge.flags == (F.UNICODE | F.REQUEST_TARGET | F.SIGN | F.SEAL | F.NTLM
                               | F.ALWAYS_SIGN | F.TARGET_TYPE_SERVER
                               | F.EXTENDED_SESSIONSECURITY | F.TARGET_INFO | F.VERSION
                               | F.NEGOTIATE_128 | F.KEY_EXCH | F.NEGOTIATE_56)
    assert challenge.target_name == "SRV"
    def utf16(text):
        return text.encode("utf-16-le")

    assert challenge.target_info == (
        AvPair(AvId.NB_DOMAIN_NAME, utf16("WORKGROUP")),
        AvPair(AvId.NB_COMPUTER_NAME, utf16("SRV")),
        AvPair(AvId.DNS_DOMAIN_NAME, b""),
        AvPair(AvId.DNS_COMPUTER_NAME, utf16("srv")),
        AvPair(AvId.TIMESTAMP, struct.pack("<Q", 116444736000000000)),  # 1970-01-01
    )


def test_challenge_golden_bytes(users):
    """Pinned CHALLENGE_MESSAGE (2.2.1.2) for a fixed NEGOTIATE, nonce and clock.

    Flags 0x02828215: VERSION, TARGET_INFO, TARGET_TYPE_SERVER, ALWAYS_SIGN,
    NTLM, SIGN, REQUEST_TARGET, UNICODE.  Timestamp is 1970-01-01 as FILETIME.
    """
    acc = acceptor(users, dns_domain="example.com")
    negotiate = NegotiateMessage(int(F.UNICODE | F.NTLM | F.SIGN | F.VERSION)).encode()
    assert acc.step(negotiate).hex() == (
        "4e544c4d53535000020000000600060038000000158282021111111111111111"
        "00000000000000006c006c003e0000000a007c4f0000000f5300520056000200"
        "120057004f0052004b00470052004f0055005000010006005300520056000400"
        "16006500780061006d0070006c0065002e0063006f006d0003001e0073007200"
        "76002e006500780061006d0070006c0065002e0063006f006d00070008000080"
        "3ed5deb19d0100000000")


def test_no_sign_or_seal_drops_128_and_56(users):
    acc = acceptor(users)
    flags = F.UNICODE | F.NTLM | F.NEGOTIATE_128 | F.NEGOTIATE_56
    challenge = ChallengeMessage.decode(acc.step(NegotiateMessage(int(flags)).encode()))
    assert not challenge.flags & (F.NEGOTIATE_128 | F.NEGOTIATE_56)


# -- credential failures -------------------------------------------------------

def test_wrong_password(users):
    acc, cli = acceptor(users), client(password="nope")
    challenge = acc.step(cli.step())
    expect_status(LOGON_FAILURE, acc.step, cli.step(challenge))
    assert not acc.complete and acc.session_key is None
    # A failed context stays failed.
    expect_status(INVALID_PARAMETER, acc.step, cli.step(challenge))


def test_unknown_user_without_guest(users):
    acc, cli = acceptor(users), client(user="mallory")
    expect_status(LOGON_FAILURE, acc.step, cli.step(acc.step(cli.step())))


def test_unknown_user_maps_to_guest(users):
    acc, cli = acceptor(users, allow_guest=True, guest_user="nobody"), client(user="mallory")
    run(acc, cli)
    assert acc.identity == Identity("nobody", "", is_guest=True, uid=65534, gid=65534)
    expect_status(NtStatus.NOT_SUPPORTED, acc.sign, b"no session security for guests")


def test_known_user_with_wrong_password_is_not_guest(users):
    acc, cli = acceptor(users, allow_guest=True), client(password="nope")
    expect_status(LOGON_FAILURE, acc.step, cli.step(acc.step(cli.step())))


@pytest.mark.parametrize("allowed", [True, False])
def test_anonymous(users, allowed):
    acc = acceptor(users, allow_anonymous=allowed)
    challenge = negotiated(acc)
    token = build_authenticate(challenge, "", "", nt_response=b"", lm_response=b"\x00")
    if allowed:
        assert acc.step(token) is None
        assert acc.identity == Identity("", "", is_anonymous=True)
    else:
        expect_status(LOGON_FAILURE, acc.step, token)


def test_ntlmv1_and_lm_only_responses_are_refused(users):
    for nt in (b"\x42" * 24, b""):
        acc = acceptor(users)
        token = build_authenticate(negotiated(acc), "alice", PASSWORD, nt_response=nt,
                                   lm_response=b"\x42" * 24)
        expect_status(LOGON_FAILURE, acc.step, token)


def test_client_hashing_with_empty_domain_is_accepted(users):
    acc = acceptor(users)
    token = build_authenticate(negotiated(acc), "alice", PASSWORD, domain="CORP", hash_domain="")
    assert acc.step(token) is None
    assert acc.identity == Identity("alice", "CORP")


def test_target_info_must_be_echoed(users):
    acc = acceptor(users)
    challenge = negotiated(acc)
    pairs = ChallengeMessage.decode(challenge).target_info[:-1]  # drop the timestamp
    token = build_authenticate(challenge, "alice", PASSWORD, pairs=pairs)
    expect_status(INVALID_PARAMETER, acc.step, token)


# -- MIC -----------------------------------------------------------------------

def _pyspnego_authenticate(acc, cli) -> bytearray:
    token = bytearray(cli.step(acc.step(cli.step())))
    assert AuthenticateMessage.decode(bytes(token)).mic is not None  # pyspnego sends one
    return token


def test_tampered_mic_is_refused(users):
    acc, cli = acceptor(users), client()
    token = _pyspnego_authenticate(acc, cli)
    token[72] ^= 1
    expect_status(LOGON_FAILURE, acc.step, bytes(token))


def test_tampered_workstation_is_caught_by_mic(users):
    acc, cli = acceptor(users), client()
    token = _pyspnego_authenticate(acc, cli)
    auth = AuthenticateMessage.decode(bytes(token))
    tampered = AuthenticateMessage(auth.flags, auth.lm_response, auth.nt_response, auth.domain,
                                   auth.user, "EVIL" + auth.workstation,
                                   auth.encrypted_session_key, auth.version, auth.mic)
    expect_status(LOGON_FAILURE, acc.step, tampered.encode())


# -- protocol errors -----------------------------------------------------------

def test_messages_out_of_order(users):
    acc, cli = acceptor(users), client()
    negotiate = cli.step()
    challenge = acc.step(negotiate)
    auth = cli.step(challenge)
    expect_status(INVALID_PARAMETER, acceptor(users).step, auth)
    expect_status(INVALID_PARAMETER, acceptor(users).step, challenge)
    expect_status(INVALID_PARAMETER, acc.step, negotiate)


def test_oem_only_client_is_refused(users):
    token = NegotiateMessage(int(F.OEM | F.NTLM)).encode()
    expect_status(INVALID_PARAMETER, acceptor(users).step, token)


def test_sign_before_completion(users):
    expect_status(NtStatus.NOT_SUPPORTED, acceptor(users).sign, b"x")
