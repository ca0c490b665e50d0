"""SPNEGO: DER codec bytes, round trips, and exchanges with pyspnego."""

import pytest
import spnego
from spnego._spnego import unpack_token

from smbca.auth import (AuthError, Authenticator, Identity, NTLM_OID, NtlmMechanism,
                         SpnegoAcceptor)
from smbca.auth._der import encode_oid
from smbca.auth._spnego_tokens import (NegState, NegTokenInit, NegTokenResp,
                                        decode_negotiation_token, encode_mech_type_list)
from smbcad.proto.status import NtStatus

PASSWORD = "Pa55:word"  # the conftest users fixture's password for alice
KRB5_OID = "1.2.840.113554.1.2.2"
MS_KRB5_OID = "1.2.840.48018.1.2.2"

# NegTokenInit2 offering only NTLM, derived by hand from RFC 4178 4.2.1 and
# [MS-SPNG] 2.2.1 (compare the [MS-SPNG] section 4 example, which has the
# same framing with NEGOEX added).
NEG_TOKEN_INIT2_NTLM = bytes.fromhex(
    "6048"                              # [APPLICATION 0], 72 bytes
    "06062b0601050502"                  # thisMech 1.3.6.1.5.5.2 (SPNEGO)
    "a03e" "303c"                       # negTokenInit [0] SEQUENCE
    "a00e" "300c"                       # mechTypes [0] SEQUENCE OF
    "060a2b06010401823702020a"          # 1.3.6.1.4.1.311.2.2.10 (NTLM)
    "a32a" "3028" "a026" "1b24"         # negHints [3] SEQUENCE { hintName [0] GeneralString
    + "not_defined_in_RFC4178@please_ignore".encode().hex())
# pyspnego 0.12 client's first token (protocol="negotiate"): NTLM offered,
# optimistic NEGOTIATE_MESSAGE as mechToken.
PYSPNEGO_INIT = bytes.fromhex(
    "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa22a0428"
    "4e544c4d5353500001000000378208e2"
    "00000000280000000000000028000000000c04000000000f")


def authenticator(users, **kwargs) -> Authenticator:
    return Authenticator(users, "SRV", "WORKGROUP", rng=lambda n: b"\x22" * n, **kwargs)


def negotiate_client(user="alice", password=PASSWORD):
    return spnego.client(user, password, hostname="srv", protocol="negotiate")


def expect_status(status, fn, *args):
    with pytest.raises(AuthError) as info:
        fn(*args)
    assert info.value.status == status


# -- codec ---------------------------------------------------------------------

def test_neg_token_init2_exact_bytes():
    assert NegTokenInit((NTLM_OID,), hint_name="not_defined_in_RFC4178@please_ignore"
                        ).encode() == NEG_TOKEN_INIT2_NTLM


def test_neg_token_init2_parses_in_pyspnego():
    token = unpack_token(NEG_TOKEN_INIT2_NTLM)
    assert token.mech_types == [NTLM_OID]
    assert token.hint_name == b"not_defined_in_RFC4178@please_ignore"


def test_neg_token_resp_exact_bytes():
    mic = bytes(range(16))
    assert NegTokenResp(NegState.ACCEPT_COMPLETED, mech_list_mic=mic).encode() == bytes.fromhex(
        "a11b" "3019" "a003" "0a0100" "a312" "0410") + mic
    assert NegTokenResp(NegState.REQUEST_MIC, NTLM_OID).encode() == bytes.fromhex(
        "a115" "3013" "a003" "0a0103" "a10c" "060a2b06010401823702020a")


def test_decode_pyspnego_init():
    token = decode_negotiation_token(PYSPNEGO_INIT)
    assert isinstance(token, NegTokenInit)
    assert token.mech_types == (NTLM_OID,)
    assert token.mech_token.startswith(b"NTLMSSP\x00\x01")
    assert token.hint_name is None and token.mech_list_mic is None


@pytest.mark.parametrize("token", [
    NegTokenInit((NTLM_OID,)),
    NegTokenInit((MS_KRB5_OID, KRB5_OID, NTLM_OID), req_flags=b"\x01\x02", mech_token=b"tok",
                 mech_list_mic=b"mic"),
    NegTokenInit((NTLM_OID,), hint_name="hint", mech_list_mic=b"m" * 300),
    NegTokenResp(),
    NegTokenResp(NegState.ACCEPT_INCOMPLETE, NTLM_OID, b"x" * 70000, b"y"),
    NegTokenResp(NegState.REJECT),
])
def test_round_trip(token):
    assert decode_negotiation_token(token.encode()) == token


def test_bare_neg_token_init_without_gss_header():
    wrapped = NegTokenInit((NTLM_OID,), mech_token=b"t").encode()
    bare = wrapped[10:]  # drop 60 xx 06 06 <oid>
    assert bare[0] == 0xA0
    assert decode_negotiation_token(bare) == NegTokenInit((NTLM_OID,), mech_token=b"t")


def test_non_minimal_long_form_length_is_accepted():
    assert decode_negotiation_token(bytes.fromhex("a1 84 00000007 3005 a003 0a0100")) == \
        NegTokenResp(NegState.ACCEPT_COMPLETED)


@pytest.mark.parametrize("hex_token, why", [
    ("", "empty"),
    ("a180", "indefinite length"),
    ("a1053003a0030a01", "length beyond container"),
    ("a1053003a00100", "inner length beyond container"),
    ("a10530030a0100ff", "trailing bytes"),
    ("a1053003a0030a0104", "unknown negState"),
    ("a103" "3001" "ff", "garbage field"),
    ("bf01023000", "multi-byte tag"),
    ("a2023000", "negTokenResp tag out of range"),
    ("600a06062a03040506" "07a000", "wrong thisMech OID"),
    ("a0" "07" "3005" "a003" "3001" "06", "truncated OID TLV"),
    ("a0" "09" "3007" "a005" "3003" "060180", "non-minimal OID"),
    ("a0" "09" "3007" "a005" "3003" "060181", "truncated OID arc"),
    ("a18500000000003000", "5-byte length"),
])
def test_malformed_der_is_invalid_parameter(hex_token, why):
    expect_status(NtStatus.INVALID_PARAMETER, decode_negotiation_token, bytes.fromhex(hex_token))


def test_mech_type_list_limits():
    many = tuple(f"1.2.3.{n}" for n in range(33))
    expect_status(NtStatus.INVALID_PARAMETER, decode_negotiation_token,
                  NegTokenInit(many).encode())
    long_oid = "1.2." + ".".join(["16383"] * 40)  # 80 content bytes > 64
    assert len(encode_oid(long_oid)) > 64
    expect_status(NtStatus.INVALID_PARAMETER, decode_negotiation_token,
                  NegTokenInit((long_oid,)).encode())


# -- exchanges with pyspnego ---------------------------------------------------

@pytest.mark.parametrize("send_init2_first", [False, True])
def test_negotiate_exchange(users, drive, send_init2_first):
    auth = authenticator(users)
    exchange = auth.new_exchange()
    cli = negotiate_client()
    outputs = drive(exchange.step, cli, auth.negotiate_token() if send_init2_first else None)
    assert [o.complete for o in outputs] == [False, True]
    assert exchange.complete and cli.complete  # pyspnego accepted our mechListMIC
    assert decode_negotiation_token(outputs[-1].out_token).mech_list_mic is not None
    assert exchange.session_key == cli.session_key
    assert exchange.identity == Identity("alice", "")
    # Session security after the mechListMIC ([MS-SPNG] 3.2.5.1 RC4 reset).
    assert exchange.verify(b"first", cli.sign(b"first"))
    cli.verify(b"reply", exchange.sign(b"reply"))


def test_raw_ntlmssp_without_spnego(users, drive):
    exchange = authenticator(users).new_exchange()
    cli = spnego.client("alice", PASSWORD, hostname="srv", protocol="ntlm")
    outputs = drive(exchange.step, cli)
    assert outputs[0].out_token.startswith(b"NTLMSSP\x00\x02")
    assert outputs[-1].out_token == b"" and outputs[-1].complete
    assert exchange.session_key == cli.session_key
    assert exchange.identity.user == "alice"


def test_empty_first_token_gets_init2(users, drive):
    exchange = authenticator(users).new_exchange()
    first = exchange.step(b"")
    assert first == type(first)(NEG_TOKEN_INIT2_NTLM, False)
    cli = negotiate_client()
    drive(exchange.step, cli, first.out_token)
    assert exchange.complete and cli.complete


def test_wrong_password_over_spnego(users):
    exchange = authenticator(users).new_exchange()
    cli = negotiate_client(password="wrong")
    challenge = exchange.step(cli.step())
    expect_status(NtStatus.LOGON_FAILURE, exchange.step, cli.step(challenge.out_token))
    assert not exchange.complete and exchange.session_key is None


def test_bad_mech_list_mic(users):
    exchange = authenticator(users).new_exchange()
    cli = negotiate_client()
    final = decode_negotiation_token(cli.step(exchange.step(cli.step()).out_token))
    assert final.mech_list_mic is not None
    bad_mic = bytes([final.mech_list_mic[0]]) + bytes(15)
    tampered = NegTokenResp(final.neg_state, final.supported_mech, final.response_token, bad_mic)
    expect_status(NtStatus.LOGON_FAILURE, exchange.step, tampered.encode())


def test_guest_completes_without_mech_list_mic(users):
    exchange = authenticator(users, allow_guest=True).new_exchange()
    cli = negotiate_client(user="stranger")
    final = exchange.step(cli.step(exchange.step(cli.step()).out_token))
    assert final.complete and exchange.identity.is_guest
    resp = decode_negotiation_token(final.out_token)
    assert resp.neg_state is NegState.ACCEPT_COMPLETED and resp.mech_list_mic is None


# -- mechanism downgrade (client prefers Kerberos) -------------------------------

def _downgraded(users):
    """Start an exchange whose client lists Kerberos first, NTLM second."""
    exchange = authenticator(users).new_exchange()
    mech_types = (MS_KRB5_OID, KRB5_OID, NTLM_OID)
    reply = exchange.step(NegTokenInit(mech_types, mech_token=b"\x60\x00kerberos-ap-req").encode())
    resp = decode_negotiation_token(reply.out_token)
    assert resp == NegTokenResp(NegState.REQUEST_MIC, NTLM_OID)
    ntlm = spnego.client("alice", PASSWORD, hostname="srv", protocol="ntlm")
    challenge = exchange.step(NegTokenResp(response_token=ntlm.step()).encode())
    challenge_resp = decode_negotiation_token(challenge.out_token)
    assert challenge_resp.neg_state is NegState.ACCEPT_INCOMPLETE
    assert challenge_resp.supported_mech is None  # only in the first reply
    auth_token = ntlm.step(challenge_resp.response_token)
    return exchange, ntlm, encode_mech_type_list(mech_types), auth_token


def test_downgrade_with_client_mic(users):
    exchange, ntlm, mech_list, auth_token = _downgraded(users)
    final = exchange.step(NegTokenResp(response_token=auth_token,
                                       mech_list_mic=ntlm.sign(mech_list)).encode())
    assert final.complete
    resp = decode_negotiation_token(final.out_token)
    assert resp.neg_state is NegState.ACCEPT_COMPLETED
    ntlm.verify(mech_list, resp.mech_list_mic)  # raises if our MIC is wrong


def test_downgrade_requires_client_mic(users):
    exchange, ntlm, mech_list, auth_token = _downgraded(users)
    step = exchange.step(NegTokenResp(response_token=auth_token).encode())
    resp = decode_negotiation_token(step.out_token)
    assert not step.complete and resp.neg_state is NegState.ACCEPT_INCOMPLETE
    ntlm.verify(mech_list, resp.mech_list_mic)
    done = exchange.step(NegTokenResp(mech_list_mic=ntlm.sign(mech_list)).encode())
    assert done.complete and exchange.identity.user == "alice"


def test_downgrade_without_any_client_mic_fails(users):
    exchange, _, _, auth_token = _downgraded(users)
    exchange.step(NegTokenResp(response_token=auth_token).encode())
    expect_status(NtStatus.LOGON_FAILURE, exchange.step,
                  NegTokenResp(NegState.ACCEPT_INCOMPLETE).encode())


# -- negotiation errors --------------------------------------------------------

def test_no_common_mechanism(users):
    token = NegTokenInit((KRB5_OID,), mech_token=b"x").encode()
    expect_status(NtStatus.INVALID_PARAMETER, authenticator(users).new_exchange().step, token)


def test_unexpected_order_and_failed_state(users):
    exchange = authenticator(users).new_exchange()
    expect_status(NtStatus.INVALID_PARAMETER, exchange.step, NegTokenResp(response_token=b"x")
                  .encode())
    expect_status(NtStatus.INVALID_PARAMETER, exchange.step, PYSPNEGO_INIT)


def test_client_reject(users):
    exchange = authenticator(users).new_exchange()
    exchange.step(PYSPNEGO_INIT)
    expect_status(NtStatus.LOGON_FAILURE, exchange.step, NegTokenResp(NegState.REJECT).encode())


def test_sign_before_complete(users):
    expect_status(NtStatus.INVALID_PARAMETER, authenticator(users).new_exchange().sign, b"x")


# -- mechanism neutrality ------------------------------------------------------

class _ToyContext:
    """A one-leg mechanism standing in for Kerberos."""

    def __init__(self):
        self.complete = False
        self.session_key = None
        self.identity = None

    def step(self, token):
        if token != b"let me in":
            raise AuthError(NtStatus.LOGON_FAILURE)
        self.complete, self.session_key = True, b"K" * 16
        self.identity = Identity("toy", "REALM")
        return b"welcome"

    def sign(self, data):
        return b"toy-mic:" + data[:4]

    def verify(self, data, signature):
        return signature == b"toy-mic:" + data[:4]


class _ToyMechanism:
    oid = "1.3.6.1.4.1.99999.1"

    def new_context(self):
        return _ToyContext()


def test_second_mechanism_plugs_in(users):
    ntlm = NtlmMechanism(users, "SRV", "WORKGROUP")
    exchange = SpnegoAcceptor([_ToyMechanism(), ntlm])
    assert decode_negotiation_token(exchange.initial_token()).mech_types == (
        _ToyMechanism.oid, NTLM_OID)
    step = exchange.step(NegTokenInit((_ToyMechanism.oid, NTLM_OID),
                                      mech_token=b"let me in").encode())
    resp = decode_negotiation_token(step.out_token)
    assert step.complete and resp.supported_mech == _ToyMechanism.oid
    assert resp.response_token == b"welcome" and resp.mech_list_mic is None
    assert exchange.identity == Identity("toy", "REALM") and exchange.session_key == b"K" * 16
    assert exchange.verify(b"abcdef", b"toy-mic:abcd")


def test_second_mechanism_downgrade_exchanges_mics():
    """The client prefers a mechanism we lack; the toy one is chosen second."""
    exchange = SpnegoAcceptor([_ToyMechanism()])
    mech_types = (KRB5_OID, _ToyMechanism.oid)
    first = decode_negotiation_token(exchange.step(NegTokenInit(mech_types).encode()).out_token)
    assert first == NegTokenResp(NegState.REQUEST_MIC, _ToyMechanism.oid)
    mic = b"toy-mic:" + encode_mech_type_list(mech_types)[:4]
    final = exchange.step(NegTokenResp(response_token=b"let me in", mech_list_mic=mic).encode())
    assert final.complete
    assert decode_negotiation_token(final.out_token) == NegTokenResp(
        NegState.ACCEPT_COMPLETED, None, b"welcome", mic)


def test_acceptor_needs_unique_mechanisms(users):
    with pytest.raises(ValueError):
        SpnegoAcceptor([])
    ntlm = NtlmMechanism(users, "SRV", "WORKGROUP")
    with pytest.raises(ValueError):
        SpnegoAcceptor([ntlm, ntlm])


def test_authenticator_facade(users):
    auth = authenticator(users)
    assert auth.negotiate_token() == NEG_TOKEN_INIT2_NTLM
    first, second = auth.new_exchange(), auth.new_exchange()
    assert first is not second
    first.step(PYSPNEGO_INIT)
    assert not second.complete
    second.step(PYSPNEGO_INIT)  # independent state
