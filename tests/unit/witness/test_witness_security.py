"""DCE/RPC security ([MS-RPCE] 3.3.1.5.2): legs, integrity, privacy, refusals.

Two independent client implementations: pyspnego (SPNEGO and raw NTLM,
through ``DceClient``) and impacket's DCERPC_v5 (raw NTLM).  The phase table
``AUTH_TRANSITIONS`` is checked pair by pair.
"""

import ipaddress
import itertools

import pytest
from impacket.dcerpc.v5 import rpcrt
from impacket.uuid import uuidtup_to_bin

from smbca.rpc.dcerpc import (
    AUTH_TRANSITIONS,
    NDR20,
    AuthLevel,
    AuthPhase,
    AuthRefused,
    AuthState,
    AuthType,
    AuthVerifier,
    Bind,
    BindNak,
    FaultStatus,
    PfcFlags,
    PresentationContext,
    ProtocolError,
    Request,
    SecurityError,
    decode_pdu,
)
from smbca.rpc.dcerpc.security import AuthEvent
from smbca.rpc.ndr import decode, encode
from witnessd.swn import (
    WITNESS_SYNTAX,
    WITNESS_V2,
    GetInterfaceListRequest,
    GetInterfaceListResponse,
    Interface,
    InterfaceState,
    RegisterExRequest,
    RegisterResponse,
)

from .client import DceClient, fault_status, flags_of, two_node_service, witness_connection

LEVELS = (AuthLevel.PKT_INTEGRITY, AuthLevel.PKT_PRIVACY)
TYPES = (AuthType.GSS_NEGOTIATE, AuthType.WINNT)


@pytest.mark.parametrize("auth_type,level", list(itertools.product(TYPES, LEVELS)))
def test_pyspnego_client_at_each_level(auth_type, level) -> None:
    client = DceClient(witness_connection(two_node_service()), auth_type, level)
    ack = client.bind()
    assert flags_of(client.received[0]) & PfcFlags.SUPPORT_HEADER_SIGN  # echoed
    assert ack.auth is not None
    response = client.call(0, GetInterfaceListRequest(), GetInterfaceListResponse)
    assert response.return_value == 0 and len(response.interface_list.interface_info) == 2
    assert client.conn.auth.identity.user == "alice"


@pytest.mark.parametrize("level", (rpcrt.RPC_C_AUTHN_LEVEL_PKT_INTEGRITY,
                                   rpcrt.RPC_C_AUTHN_LEVEL_PKT_PRIVACY))
def test_impacket_ntlm_client(level) -> None:
    from tests.unit.dcerpc.client import ConnectionTransport

    conn = witness_connection(two_node_service())
    client = rpcrt.DCERPC_v5(ConnectionTransport(conn))
    client.set_credentials("alice", "Secret1", "")
    client.set_auth_type(rpcrt.RPC_C_AUTHN_WINNT)
    client.set_auth_level(level)
    client.connect()
    client.bind(uuidtup_to_bin((str(WITNESS_SYNTAX.if_uuid), "1.1")))
    client.call(4, encode(RegisterExRequest.NDR, RegisterExRequest(
        WITNESS_V2, "CLUSTER", None, "10.0.0.2", "hv1", 0, 60)))
    assert decode(RegisterResponse.NDR, client.recv()).return_value == 0


@pytest.mark.parametrize("level", LEVELS)
def test_fragmented_protected_response(level) -> None:
    service = two_node_service()
    service.interfaces.extend(Interface(f"N{i}", InterfaceState.AVAILABLE,
                                        ipaddress.IPv4Address(f"10.1.0.{i}")) for i in range(10))
    client = DceClient(witness_connection(service), level=level, max_frag=2048)
    client.bind()
    pdus = client.send_call(0, GetInterfaceListRequest())
    assert len(pdus) == 4 and all(len(p) <= 2048 for p in pdus)
    assert [flags_of(p) & 3 for p in pdus] == [1, 0, 0, 2]
    response = client.decode_answer(pdus, GetInterfaceListResponse)
    assert len(response.interface_list.interface_info) == 12


@pytest.mark.parametrize("level", LEVELS)
def test_fragmented_protected_request(level) -> None:
    client = DceClient(witness_connection(two_node_service()), level=level)
    client.bind()
    stub = encode(RegisterExRequest.NDR, RegisterExRequest(
        WITNESS_V2, "CLUSTER", None, "10.0.0.2", "h" * 200, 0, 60))
    call_id = client.call_id + 1
    client.call_id = call_id
    first, second = stub[:160], stub[160:]
    pdus = []
    for piece, flags in ((first, PfcFlags.FIRST_FRAG), (second, PfcFlags.LAST_FRAG)):
        raw = Request(call_id=call_id, pfc_flags=flags, alloc_hint=len(stub), opnum=4,
                      stub_data=piece, auth=client._verifier(bytes(16), -len(piece) % 16)).encode()
        pdus += client._send(client.protect(raw, 24))
    assert client.decode_answer(pdus, RegisterResponse).return_value == 0


def test_wrong_password_spnego_is_refused_at_alter_context() -> None:
    client = DceClient(witness_connection(two_node_service()), password="wrong")
    with pytest.raises(ProtocolError):
        client.bind()
    assert fault_status(client.received[-1]) == FaultStatus.RPC_S_ACCESS_DENIED
    assert client.conn.closed


def test_wrong_password_ntlm_fails_at_the_next_request() -> None:
    client = DceClient(witness_connection(two_node_service()), AuthType.WINNT, password="wrong")
    client.bind()  # auth3 is never answered
    assert client.conn.auth.phase is AuthPhase.FAILED
    with pytest.raises(ProtocolError):
        client._send(Request(call_id=9, opnum=0).encode())
    assert fault_status(client.received[-1]) == FaultStatus.RPC_S_ACCESS_DENIED


@pytest.mark.parametrize("auth_type", (None, "connect"))
def test_calls_without_packet_protection_are_refused(auth_type) -> None:
    if auth_type is None:
        client = DceClient(witness_connection(two_node_service()), None)
    else:
        client = DceClient(witness_connection(two_node_service()), AuthType.WINNT,
                           AuthLevel.CONNECT)
    client.bind()
    (fault,) = client._send(client.request_pdu(0, b""))
    assert fault_status(fault) == FaultStatus.RPC_S_ACCESS_DENIED
    assert not client.conn.closed


@pytest.mark.parametrize("auth_type", (AuthType.GSS_KERBEROS, AuthType.NETLOGON, 0x77))
def test_unknown_auth_types_get_bind_nak(auth_type) -> None:
    conn = witness_connection(two_node_service())
    bind = Bind(call_id=1, max_xmit_frag=5840, max_recv_frag=5840, p_context_elem=(
        PresentationContext(p_cont_id=0, abstract_syntax=WITNESS_SYNTAX,
                            transfer_syntaxes=(NDR20,)),),
        auth=AuthVerifier(auth_type=auth_type, auth_level=5, auth_value=b"x"))
    with pytest.raises(ProtocolError):
        conn.receive_data(bind.encode())
    (nak,) = conn.pdus_to_send()
    assert isinstance(decode_pdu(nak), BindNak)
    assert decode_pdu(nak).provider_reject_reason == 8


def test_tampered_signature_is_a_security_fault() -> None:
    client = DceClient(witness_connection(two_node_service()))
    client.bind()
    raw = bytearray(client.request_pdu(0, b""))
    raw[-1] ^= 1
    with pytest.raises(ProtocolError):
        client._send(bytes(raw))
    assert fault_status(client.received[-1]) == FaultStatus.RPC_S_SEC_PKG_ERROR


def test_tampered_sealed_stub_is_a_security_fault() -> None:
    client = DceClient(witness_connection(two_node_service()), level=AuthLevel.PKT_PRIVACY)
    client.bind()
    raw = bytearray(client.request_pdu(0, bytes(16)))
    raw[30] ^= 0x40
    with pytest.raises(ProtocolError):
        client._send(bytes(raw))
    assert fault_status(client.received[-1]) == FaultStatus.RPC_S_SEC_PKG_ERROR


def test_unsigned_request_on_a_signed_connection_is_a_protocol_error() -> None:
    client = DceClient(witness_connection(two_node_service()))
    client.bind()
    with pytest.raises(ProtocolError):
        client._send(Request(call_id=9, opnum=0).encode())
    assert fault_status(client.received[-1]) == FaultStatus.NCA_S_PROTO_ERROR


def test_verifier_for_another_context_is_access_denied() -> None:
    client = DceClient(witness_connection(two_node_service()))
    client.bind()
    raw = Request(call_id=9, opnum=0, auth=AuthVerifier(
        auth_type=9, auth_level=5, auth_context_id=7, auth_value=bytes(16))).encode()
    with pytest.raises(ProtocolError):
        client._send(raw)
    assert fault_status(client.received[-1]) == FaultStatus.RPC_S_ACCESS_DENIED


def test_request_before_the_context_completes_is_a_protocol_error() -> None:
    conn = witness_connection(two_node_service())
    client = DceClient(conn, AuthType.GSS_NEGOTIATE)
    import spnego
    client.ctx = spnego.client("alice", "Secret1", hostname="node1", protocol="negotiate")
    conn.receive_data(Bind(call_id=1, max_xmit_frag=5840, max_recv_frag=5840, p_context_elem=(
        PresentationContext(p_cont_id=0, abstract_syntax=WITNESS_SYNTAX,
                            transfer_syntaxes=(NDR20,)),),
        auth=client._verifier(client.ctx.step())).encode())
    conn.pdus_to_send()
    with pytest.raises(ProtocolError):
        conn.receive_data(Request(call_id=2, opnum=0, auth=client._verifier(bytes(16))).encode())
    assert fault_status(conn.pdus_to_send()[-1]) == FaultStatus.NCA_S_PROTO_ERROR


# -- the phase table --------------------------------------------------------------------

class _Context:
    identity = "someone"
    signature_size = 16

    def __init__(self, legs: int) -> None:
        self.legs = legs

    def step(self, token: bytes) -> tuple[bytes, bool]:
        if token == b"bad":
            raise SecurityError("bad token")
        self.legs -= 1
        return b"out", self.legs <= 0


class _Provider:
    def __init__(self, legs: int = 2) -> None:
        self.legs = legs
        self.failures = 0

    def new_context(self, auth_type: int, auth_level: int):
        return _Context(self.legs) if auth_type in (9, 10) else None

    def auth_failed(self) -> None:
        self.failures += 1


VERIFIER = AuthVerifier(auth_type=9, auth_level=5, auth_context_id=1, auth_value=b"tok")


def _state_in(phase: AuthPhase) -> AuthState:
    state = AuthState(_Provider())
    if phase is AuthPhase.NONE:
        state.bind(None)
    elif phase is AuthPhase.NEGOTIATING:
        state.bind(VERIFIER)
    elif phase is AuthPhase.ESTABLISHED:
        state.bind(VERIFIER)
        state.alter(VERIFIER)
    elif phase is AuthPhase.FAILED:
        state.phase = AuthPhase.FAILED
    assert state.phase is phase
    return state


_ACTIONS = {
    AuthEvent.BIND_PLAIN: lambda s: s.bind(None),
    AuthEvent.BIND_AUTH: lambda s: s.bind(VERIFIER),
    AuthEvent.ALTER_PLAIN: lambda s: s.alter(None),
    AuthEvent.ALTER_AUTH: lambda s: s.alter(VERIFIER),
    AuthEvent.AUTH3: lambda s: s.auth3(VERIFIER),
    AuthEvent.REQUEST: lambda s: s.check_request(VERIFIER if s.phase is not AuthPhase.NONE
                                                 else None, True),
}


@pytest.mark.parametrize("phase,event", [(p, e) for p in AuthPhase for e in _ACTIONS])
def test_every_phase_event_pair_follows_the_table(phase, event) -> None:
    state = _state_in(phase)
    target = AUTH_TRANSITIONS.get((phase, event))
    if target is None:
        with pytest.raises(AuthRefused):
            _ACTIONS[event](state)
        assert state.phase is AuthPhase.FAILED
        return
    if event in (AuthEvent.AUTH3, AuthEvent.ALTER_AUTH):
        _ACTIONS[event](state)  # the second leg completes the two-leg fake context
        assert AUTH_TRANSITIONS[target, AuthEvent.COMPLETE] is AuthPhase.ESTABLISHED
        assert state.phase is AuthPhase.ESTABLISHED
        return
    _ACTIONS[event](state)
    assert state.phase is target


def test_failed_leg_reports_to_the_provider() -> None:
    provider = _Provider()
    state = AuthState(provider)
    with pytest.raises(AuthRefused) as info:
        state.bind(AuthVerifier(auth_type=9, auth_level=5, auth_value=b"bad"))
    assert info.value.bind_nak_reason == 9 and provider.failures == 1


def test_unsupported_level_is_refused() -> None:
    with pytest.raises(AuthRefused):
        AuthState(_Provider()).bind(AuthVerifier(auth_type=9, auth_level=AuthLevel.CALL,
                                                 auth_value=b"x"))
