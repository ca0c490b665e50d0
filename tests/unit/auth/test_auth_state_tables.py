"""Every (state x input) pair of both acceptors' transition tables
(shared/STYLE.md rule 2): pairs outside the table fail with
STATUS_INVALID_PARAMETER and leave the acceptor FAILED."""

import itertools

import pytest
import spnego

from smbca.auth import (AuthError, NtlmAcceptor, NtlmMechanism, SpnegoAcceptor, User,
                         UserDatabase)
from smbca.auth import ntlm as ntlm_module
from smbca.auth import spnego as spnego_module
from smbca.auth._ntlm_messages import MessageType
from smbca.auth._spnego_tokens import NegTokenInit, NegTokenResp, decode_negotiation_token
from smbca.auth.legacy_crypto import nt_hash
from smbcad.proto.status import NtStatus

PASSWORD = "pw"
KRB5_OID = "1.2.840.113554.1.2.2"
NtlmState = ntlm_module._State
SpnegoState = spnego_module._State
SpnegoInput = spnego_module._Input


def _users():
    return UserDatabase.from_users([User("alice", nt_hash(PASSWORD))])


def _client(protocol="ntlm"):
    return spnego.client("alice", PASSWORD, hostname="srv", protocol=protocol)


def _ntlm_in(state) -> tuple[NtlmAcceptor, object]:
    """An NtlmAcceptor in ``state`` and a pyspnego client in step with it."""
    acc, cli = NtlmAcceptor(_users(), "SRV", "WG"), _client()
    if state is NtlmState.INITIAL:
        return acc, cli
    challenge = acc.step(cli.step())
    if state is NtlmState.CHALLENGED:
        return acc, cli
    if state is NtlmState.DONE:
        acc.step(cli.step(challenge))
        return acc, cli
    with pytest.raises(AuthError):
        acc.step(b"NTLMSSP\x00\x09\x00\x00\x00")
    return acc, cli


def _ntlm_token(message_type, cli) -> bytes:
    if message_type is MessageType.NEGOTIATE:
        return _client().step()
    if message_type is MessageType.CHALLENGE:
        return NtlmAcceptor(_users(), "SRV", "WG").step(_client().step())
    if message_type is MessageType.AUTHENTICATE:
        other = _client()
        return other.step(NtlmAcceptor(_users(), "SRV", "WG").step(other.step()))
    return b"NTLMSSP\x00" + bytes([message_type]) + bytes(3)


@pytest.mark.parametrize("state, message_type", itertools.product(
    list(NtlmState), [*MessageType, 7]))
def test_ntlm_table(state, message_type):
    acc, cli = _ntlm_in(state)
    assert acc._state is state
    token = _ntlm_token(message_type, cli)
    if (state, message_type) in ntlm_module._TRANSITIONS:
        try:
            acc.step(token)
        except AuthError as exc:
            assert "unexpected NTLM message" not in str(exc)
        return
    with pytest.raises(AuthError) as info:
        acc.step(token)
    assert info.value.status == NtStatus.INVALID_PARAMETER
    assert acc._state is NtlmState.FAILED


def _spnego_in(state) -> SpnegoAcceptor:
    acc = SpnegoAcceptor([NtlmMechanism(_users(), "SRV", "WG")])
    if state is SpnegoState.START:
        return acc
    if state is SpnegoState.RAW:
        acc.step(_client().step())
    elif state is SpnegoState.NEGOTIATING:
        acc.step(_client("negotiate").step())
    elif state is SpnegoState.DONE:
        cli = _client("negotiate")
        acc.step(cli.step(acc.step(cli.step()).out_token))
    elif state is SpnegoState.AWAIT_MIC:
        # Client prefers Kerberos, so NTLM is a downgrade and the client
        # owes a mechListMIC after its AUTHENTICATE_MESSAGE.
        acc.step(NegTokenInit((KRB5_OID, ntlm_module.NTLM_OID)).encode())
        cli = _client()
        reply = acc.step(NegTokenResp(response_token=cli.step()).encode())
        challenge = decode_negotiation_token(reply.out_token).response_token
        acc.step(NegTokenResp(response_token=cli.step(challenge)).encode())
    else:
        with pytest.raises(AuthError):
            acc.step(b"\xff")
    return acc


_SPNEGO_INPUTS = {
    SpnegoInput.EMPTY: lambda: b"",
    SpnegoInput.NEG_TOKEN_INIT: lambda: _client("negotiate").step(),
    SpnegoInput.NEG_TOKEN_RESP: lambda: NegTokenResp(response_token=b"NTLMSSP\x00").encode(),
    SpnegoInput.RAW_NTLMSSP: lambda: _client().step(),
    # A bare Kerberos InitialContextToken (RFC 2743 3.1); NTLM-only: refused.
    SpnegoInput.RAW_MECH: lambda: bytes.fromhex("600d06092a864886f712010202") + b"\x01\x00",
}


@pytest.mark.parametrize("state, kind", list(itertools.product(list(SpnegoState), list(SpnegoInput))))
def test_spnego_table(state, kind):
    acc = _spnego_in(state)
    assert acc._state is state
    token = _SPNEGO_INPUTS[kind]()
    if (state, kind) in spnego_module._TRANSITIONS:
        try:
            acc.step(token)
        except AuthError as exc:
            assert "in SPNEGO state" not in str(exc)
        return
    with pytest.raises(AuthError) as info:
        acc.step(token)
    assert info.value.status == NtStatus.INVALID_PARAMETER
    assert "in SPNEGO state" in str(info.value)
    assert acc._state is SpnegoState.FAILED
