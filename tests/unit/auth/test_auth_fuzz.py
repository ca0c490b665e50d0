"""Hypothesis: whatever arrives off the wire, the acceptors raise only AuthError.

Seeds are real tokens from pyspnego; mutations flip, cut, splice and
re-length them.  Any other exception type fails the test.
"""

import struct

import pytest
import spnego
from hypothesis import HealthCheck, given, settings, strategies as st

from smbca.auth import AuthError, Authenticator, NtlmAcceptor, User, UserDatabase
from smbca.auth._spnego_tokens import decode_negotiation_token
from smbca.auth.legacy_crypto import nt_hash

PASSWORD = "pw"
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _users() -> UserDatabase:
    return UserDatabase.from_users([User("alice", nt_hash(PASSWORD))])


def _ntlm() -> NtlmAcceptor:
    return NtlmAcceptor(_users(), "SRV", "WG", allow_guest=True, allow_anonymous=True,
                        rng=lambda n: b"\x33" * n, clock=lambda: 0.0)


def _authenticator() -> Authenticator:
    return Authenticator(_users(), "SRV", "WG", allow_guest=True, allow_anonymous=True,
                         rng=lambda n: b"\x33" * n, clock=lambda: 0.0)


@pytest.fixture(scope="module")
def ntlm_seeds() -> tuple[bytes, bytes]:
    """(NEGOTIATE, AUTHENTICATE) valid for a fresh ``_ntlm()``."""
    cli = spnego.client("alice", PASSWORD, hostname="srv", protocol="ntlm")
    negotiate = cli.step()
    return negotiate, cli.step(_ntlm().step(negotiate))


@pytest.fixture(scope="module")
def spnego_seeds() -> tuple[bytes, bytes]:
    """(NegTokenInit, final NegTokenResp) valid for a fresh exchange."""
    cli = spnego.client("alice", PASSWORD, hostname="srv", protocol="negotiate")
    init = cli.step()
    return init, cli.step(_authenticator().new_exchange().step(init).out_token)


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "u16"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x84, 0xFF]))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif kind == "u16" and len(data) >= 2:
            # NTLM length/offset fields are little-endian 16/32-bit words.
            pos = min(pos, len(data) - 2)
            data[pos:pos + 2] = struct.pack("<H", draw(st.sampled_from([0, 1, 0x7FFF, 0xFFFF])))
    return bytes(data)


def only_auth_errors(fn, *args):
    try:
        return fn(*args)
    except AuthError as exc:
        assert exc.status >> 30 == 3  # an NTSTATUS error code
        return None


@FUZZ
@given(st.binary(max_size=300))
def test_ntlm_random_bytes(data):
    only_auth_errors(_ntlm().step, b"NTLMSSP\x00" + data)
    only_auth_errors(_ntlm().step, data)


@FUZZ
@given(data=st.data())
def test_ntlm_mutated_negotiate(ntlm_seeds, data):
    only_auth_errors(_ntlm().step, data.draw(mutated(ntlm_seeds[0])))


@FUZZ
@given(data=st.data())
def test_ntlm_mutated_authenticate(ntlm_seeds, data):
    acceptor = _ntlm()
    acceptor.step(ntlm_seeds[0])
    only_auth_errors(acceptor.step, data.draw(mutated(ntlm_seeds[1])))


@FUZZ
@given(st.binary(max_size=300))
def test_spnego_random_bytes(data):
    for prefix in (b"", b"\x60", b"\xa0", b"\xa1"):
        only_auth_errors(_authenticator().new_exchange().step, prefix + data)


def _tlv_trees():
    tags = st.sampled_from([0x30, 0x04, 0x06, 0x0A, 0x03, 0x1B, 0x60, 0xA0, 0xA1, 0xA2, 0xA3,
                            0xA4])
    leaves = st.tuples(tags, st.binary(max_size=12)).map(
        lambda tv: bytes([tv[0], len(tv[1])]) + tv[1])

    def nest(children):
        return st.tuples(tags, st.lists(children, max_size=4)).map(
            lambda tc: _tlv(tc[0], b"".join(tc[1])))

    return st.recursive(leaves, nest, max_leaves=30)


def _tlv(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    return bytes([tag, 0x82]) + len(body).to_bytes(2, "big") + body


@FUZZ
@given(_tlv_trees())
def test_spnego_structured_der(token):
    only_auth_errors(decode_negotiation_token, token)
    only_auth_errors(_authenticator().new_exchange().step, token)


@FUZZ
@given(data=st.data())
def test_spnego_mutated_init(spnego_seeds, data):
    only_auth_errors(_authenticator().new_exchange().step, data.draw(mutated(spnego_seeds[0])))


@FUZZ
@given(data=st.data())
def test_spnego_mutated_final(spnego_seeds, data):
    exchange = _authenticator().new_exchange()
    exchange.step(spnego_seeds[0])
    only_auth_errors(exchange.step, data.draw(mutated(spnego_seeds[1])))


def test_deep_nesting_is_bounded():
    token = b"\x04\x00"
    for _ in range(5000):
        token = _tlv(0xA0, token) if len(token) < 0xFFF0 else token
    only_auth_errors(_authenticator().new_exchange().step, token)
