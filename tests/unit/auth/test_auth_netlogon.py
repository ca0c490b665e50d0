"""NTLM pass-through over NETLOGON, the parts that need no DC (issue 12
item 3): the secure channel's key and credential, the logon request, the
DC's answer, and the NTLM acceptor with a domain verifier (the join's
record: tests/unit/smbca/test_smbca_domain.py).  tests/ad runs the whole
against a real Samba AD DC."""

import asyncio
import hashlib
import hmac
import threading

import pytest
import spnego
from impacket.dcerpc.v5 import nrpc

from smbca.auth import AuthError, Authenticator, NtlmAcceptor
from smbca.auth._domain_logon import DomainLogon, NetworkLogon
from smbca.auth._netlogon_core import (NEGOTIATE_FLAGS, REQUIRED_FLAGS, check_server_credential,
                                       credential, domain_logon_of, logon_request, refusal,
                                       session_key)
from smbca.auth._ntlm_crypto import ntowf_v2
from smbca.auth.legacy_crypto import aes_cfb8_decrypt, aes_cfb8_encrypt, nt_hash
from smbca.ntstatus import NtStatus

# A NetrLogonSamLogonEx response stub (decrypted), captured from Samba
# 4.17.12's AD DC (tests/ad fixture, realm SMBCA.TEST) for alice, password
# "Al1ce-Pass.word", server challenge 01..08 and the NTLMv2 response below.
CAPTURED_CHALLENGE = bytes(range(1, 9))
CAPTURED_NT_RESPONSE = bytes.fromhex(
    "e4394f32fd31812b019fef6fc38612650101000000000000000000000000dc0110111213141516170000"
    "000000000000")
CAPTURED_RESPONSE = bytes.fromhex(
    "06000000200002000000000000000000ffffffffffffff7fffffffffffffff7f543772e66b85dd0154f7db10"
    "3586dd0154b7cbdb6ca6dd010a000a00240002000000000028000200000000002c0002000000000030000200"
    "00000000340002000000000038000200000000004f04000001020000020000003c00020000000000acc4b231"
    "d05d0821ba10aea0317c21f806000800400002000a000c004400020048000200acc4b231d05d082110000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000140014004c000200"
    "2000200050000200000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "05000000000000000500000061006c0069006300650000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000002000000"
    "0102000007000000510400000700000004000000000000000300000044004300310000000600000000000000"
    "0500000053004d00420043004100000004000000010400000000000515000000ae0e5f3822fde93b98d814b2"
    "0a000000000000000a00000073006d006200630061002e007400650073007400100000000000000010000000"
    "61006c00690063006500400073006d006200630061002e007400650073007400010000000000000000000000"
)
LOCAL_PASSWORD = "Pa55:word"  # the conftest users fixture's password for alice
DOMAIN_SID = "S-1-5-21-945753774-1005190434-2987710616"

# -- the secure channel's key and credentials ([MS-NRPC] 3.1.4.3.1, 3.1.4.4.1) ---------

def test_session_key_and_credential_agree_with_impacket():
    """impacket's NRPC helpers (over pycryptodome) are an independent
    implementation of the same two formulas."""
    machine_hash = nt_hash("machine password")
    client, server = bytes.fromhex("0102030405060708"), bytes.fromhex("a1a2a3a4a5a6a7a8")
    key = session_key(machine_hash, client, server)
    assert key == nrpc.ComputeSessionKeyAES(None, client, server, machine_hash)
    assert credential(key, client) == nrpc.ComputeNetlogonCredentialAES(client, key)
    assert check_server_credential(key, server, nrpc.ComputeNetlogonCredentialAES(server, key))
    assert not check_server_credential(key, server, credential(key, client))


def test_session_key_is_hmac_sha256_of_both_challenges():
    machine_hash = bytes(range(16))
    expected = hmac.new(machine_hash, b"C" * 8 + b"S" * 8, hashlib.sha256).digest()[:16]
    assert session_key(machine_hash, b"C" * 8, b"S" * 8) == expected


def test_aes_cfb8_round_trip_and_byte_wise_feedback():
    key = bytes(range(16))
    data = b"netlogon credential"
    encrypted = aes_cfb8_encrypt(key, data)
    assert aes_cfb8_decrypt(key, encrypted) == data
    # CFB8: a prefix encrypts to a prefix.
    assert aes_cfb8_encrypt(key, data[:8]) == encrypted[:8]


def test_flags_ask_for_everything_required():
    assert NEGOTIATE_FLAGS & REQUIRED_FLAGS == REQUIRED_FLAGS


# -- the network logon and the DC's answer ------------------------------------------------

def network_logon(**changes) -> NetworkLogon:
    fields = dict(domain="SMBCA", user="alice", workstation="WS1",
                  server_challenge=CAPTURED_CHALLENGE, nt_response=CAPTURED_NT_RESPONSE,
                  lm_response=b"")
    fields.update(changes)
    return NetworkLogon(**fields)


def test_logon_request_carries_the_challenge_and_responses():
    request = logon_request("FS1", network_logon())
    decoded = nrpc.NetrLogonSamLogonEx(request.getData())
    assert decoded["ComputerName"] == "FS1\x00"
    level = nrpc.NETLOGON_LOGON_INFO_CLASS.NetlogonNetworkTransitiveInformation
    assert decoded["LogonLevel"] == level
    info = decoded["LogonInformation"]["LogonNetworkTransitive"]
    assert info["Identity"]["LogonDomainName"] == "SMBCA"
    assert info["Identity"]["UserName"] == "alice"
    assert info["Identity"]["Workstation"] == "WS1"
    assert info["Identity"]["ParameterControl"] == 0x820
    assert bytes(info["LmChallenge"]) == CAPTURED_CHALLENGE
    assert bytes(info["NtChallengeResponse"]) == CAPTURED_NT_RESPONSE
    assert decoded["ValidationLevel"] == 6


def test_the_dcs_answer_gives_sids_and_the_ntlmv2_session_base_key():
    logon = domain_logon_of(nrpc.NetrLogonSamLogonExResponse(CAPTURED_RESPONSE))
    assert (logon.user, logon.domain) == ("alice", "SMBCA")
    assert logon.user_sid == f"{DOMAIN_SID}-1103"
    assert logon.group_sids == (f"{DOMAIN_SID}-513", f"{DOMAIN_SID}-1105")
    # The key the DC returned is the one NTLMv2 derives from the password
    # ([MS-NLMP] 3.3.2): what the NTLM acceptor computes for a local user.
    response_key = ntowf_v2(nt_hash("Al1ce-Pass.word"), "alice", "SMBCA")
    proof = CAPTURED_NT_RESPONSE[:16]
    assert logon.session_base_key == hmac.new(response_key, proof, hashlib.md5).digest()


def test_an_answer_that_does_not_decode_is_logon_failure():
    with pytest.raises(AuthError) as info:
        domain_logon_of({"ValidationInformation": {}})
    assert info.value.status == NtStatus.LOGON_FAILURE


@pytest.mark.parametrize("status, shown", [
    (NtStatus.WRONG_PASSWORD, NtStatus.LOGON_FAILURE),
    (NtStatus.NO_SUCH_USER, NtStatus.LOGON_FAILURE),
    (NtStatus.LOGON_FAILURE, NtStatus.LOGON_FAILURE),
    (NtStatus.ACCOUNT_DISABLED, NtStatus.ACCOUNT_DISABLED),
    (NtStatus.ACCOUNT_LOCKED_OUT, NtStatus.ACCOUNT_LOCKED_OUT),
    (NtStatus.PASSWORD_EXPIRED, NtStatus.PASSWORD_EXPIRED),
    (NtStatus.ACCOUNT_EXPIRED, NtStatus.ACCOUNT_EXPIRED),
])
def test_refusal_status(status, shown):
    error = refusal(status, network_logon())
    assert error.status == shown
    assert "SMBCA\\alice" in str(error)


# -- the NTLM acceptor with a domain verifier ------------------------------------------------

class NtlmV2Verifier:
    """A DomainLogonPort that checks NTLMv2 itself for one domain's users,
    as a DC does ([MS-APDS] 3.1.5.2.1); ``key_change`` alters the key it
    returns, to see the MIC catch it."""

    def __init__(self, passwords: dict[str, str], key_change: bytes = bytes(16)) -> None:
        self.passwords = passwords
        self.key_change = key_change
        self.threads: list[str] = []

    def handles(self, domain: str) -> bool:
        return domain.upper() in ("SMBCA", "SMBCA.TEST")

    def logon(self, logon: NetworkLogon) -> DomainLogon:
        self.threads.append(threading.current_thread().name)
        password = self.passwords.get(logon.user.lower())
        if password is None:
            raise refusal(NtStatus.NO_SUCH_USER, logon)
        key = ntowf_v2(nt_hash(password), logon.user, logon.domain)
        proof, temp = logon.nt_response[:16], logon.nt_response[16:]
        if hmac.new(key, logon.server_challenge + temp, hashlib.md5).digest() != proof:
            raise refusal(NtStatus.WRONG_PASSWORD, logon)
        base = hmac.new(key, proof, hashlib.md5).digest()
        base = bytes(a ^ b for a, b in zip(base, self.key_change))
        return DomainLogon(logon.user, "SMBCA", f"{DOMAIN_SID}-1103",
                           (f"{DOMAIN_SID}-513",), base)


def exchange(acceptor, user: str, password: str):
    client = spnego.client(user, password, hostname="fs1", protocol="ntlm")
    challenge = acceptor.step(client.step())
    assert acceptor.step(client.step(challenge)) is None
    return client


def test_a_domain_user_is_verified_by_the_dc_with_its_key_and_sids(users):
    verifier = NtlmV2Verifier({"alice": "Dom-Pass1"})
    acceptor = NtlmAcceptor(users, "FS1", "SMBCA", domain_logon=verifier)
    client = exchange(acceptor, "SMBCA\\alice", "Dom-Pass1")
    identity = acceptor.identity
    assert (identity.user, identity.domain, identity.sid) == ("alice", "SMBCA",
                                                              f"{DOMAIN_SID}-1103")
    assert identity.group_sids == (f"{DOMAIN_SID}-513",)
    # pyspnego's exported key (after KEY_EXCH) matches ours, and signing works.
    assert acceptor.session_key == client.session_key
    assert acceptor.verify(b"data", client.sign(b"data"))


def test_the_mic_is_checked_with_the_dcs_key(users):
    """A wrong SessionBaseKey from the DC fails the MIC pyspnego sends."""
    verifier = NtlmV2Verifier({"alice": "Dom-Pass1"}, key_change=b"\x01" + bytes(15))
    acceptor = NtlmAcceptor(users, "FS1", "SMBCA", domain_logon=verifier)
    with pytest.raises(AuthError, match="MIC") as info:
        exchange(acceptor, "SMBCA\\alice", "Dom-Pass1")
    assert info.value.status == NtStatus.LOGON_FAILURE


def test_the_dcs_refusal_reaches_the_client(users):
    verifier = NtlmV2Verifier({"alice": "Dom-Pass1"})
    acceptor = NtlmAcceptor(users, "FS1", "SMBCA", domain_logon=verifier)
    with pytest.raises(AuthError) as info:
        exchange(acceptor, "smbca.test\\alice", "wrong")
    assert info.value.status == NtStatus.LOGON_FAILURE
    assert "STATUS_WRONG_PASSWORD" in str(info.value)


def test_local_users_never_reach_the_dc(users):
    verifier = NtlmV2Verifier({})
    for name in ("alice", "FS1\\alice", "WORKGROUP\\alice"):
        acceptor = NtlmAcceptor(users, "FS1", "SMBCA", domain_logon=verifier)
        exchange(acceptor, name, LOCAL_PASSWORD)
        assert acceptor.identity.sid is None
    assert verifier.threads == []


def test_authenticator_steps_off_the_loop_in_its_own_threads(users, drive):
    verifier = NtlmV2Verifier({"alice": "Dom-Pass1"})
    authenticator = Authenticator(users, "FS1", "SMBCA", domain_logon=verifier)
    assert authenticator.may_block
    client = spnego.client("SMBCA\\alice", "Dom-Pass1", hostname="fs1", protocol="negotiate",
                           options=spnego.NegotiateOptions.use_ntlm)
    spnego_exchange = authenticator.new_exchange()

    async def run():
        token = client.step()
        while True:
            step = await authenticator.step_off_loop(spnego_exchange, token)
            assert not isinstance(step, AuthError), step
            if step.complete:
                return
            token = client.step(step.out_token)
    try:
        asyncio.run(run())
    finally:
        authenticator.close()
    assert spnego_exchange.identity.sid == f"{DOMAIN_SID}-1103"
    assert verifier.threads and all(name.startswith("smbca-auth") for name in verifier.threads)


def test_a_refusal_off_the_loop_comes_back_as_the_error(users):
    authenticator = Authenticator(users, "FS1", "SMBCA",
                                  domain_logon=NtlmV2Verifier({"alice": "Dom-Pass1"}))
    client = spnego.client("SMBCA\\alice", "wrong", hostname="fs1", protocol="ntlm")
    ntlm_exchange = authenticator.new_exchange()

    async def run():
        first = await authenticator.step_off_loop(ntlm_exchange, client.step())
        return await authenticator.step_off_loop(ntlm_exchange, client.step(first.out_token))
    try:
        outcome = asyncio.run(run())
    finally:
        authenticator.close()
    assert isinstance(outcome, AuthError) and outcome.status == NtStatus.LOGON_FAILURE


def test_without_a_domain_nothing_is_offloaded(users):
    assert not Authenticator(users, "FS1", "WORKGROUP").may_block


