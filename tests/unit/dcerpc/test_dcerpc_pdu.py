"""PDU codec: exact bytes, decode, round trip ([C706] 12.6, [MS-RPCE] 2.2.2).

Client PDUs are cross-checked against impacket's rpcrt encoder, server PDUs
against impacket's decoder; the hex literals are annotated field by field.
"""

from uuid import UUID

import pytest
from impacket.dcerpc.v5 import rpcrt

from smbca.rpc.dcerpc import (
    NDR20,
    NDR64,
    AlterContext,
    AlterContextResp,
    Auth3,
    AuthVerifier,
    Bind,
    BindAck,
    BindNak,
    CoCancel,
    Fault,
    Orphaned,
    PduDecodeError,
    PduHeader,
    PfcFlags,
    PresentationContext,
    PresentationResult,
    PType,
    Request,
    Response,
    Shutdown,
    SyntaxId,
    decode_pdu,
)
from smbca.rpc.dcerpc.elements import NULL_SYNTAX, bind_time_features
from smbca.rpc.dcerpc.verification import (
    SIGNATURE,
    Header2,
    VerificationTrailer,
    split_verification_trailer,
)

from .client import ECHO_BIN, ECHO_SYNTAX, NDR20_BIN, ctx_item, impacket_bind, impacket_request

BIND_ECHO = bytes.fromhex(
    "05000b03" "10000000" "4800" "0000" "01000000"  # 5.0 bind, FIRST|LAST, LE drep, frag 72, call 1
    "b810" "b810" "00000000" "01000000"  # max_xmit 4280, max_recv 4280, assoc 0, 1 context
    "0000" "01" "00"  # p_cont_id 0, one transfer syntax
    "78563412" "3412" "cdab" "ef000123456789ab" "0100" "0000"  # echo v1.0
    "045d888a" "eb1c" "c911" "9fe808002b104860" "02000000"  # NDR v2
)
BIND_ECHO_PDU = Bind(call_id=1, max_xmit_frag=4280, max_recv_frag=4280, p_context_elem=(
    PresentationContext(p_cont_id=0, abstract_syntax=ECHO_SYNTAX, transfer_syntaxes=(NDR20,)),))

BIND_ACK_PIPE = bytes.fromhex(
    "05000c03" "10000000" "4400" "0000" "01000000"  # bind_ack, frag 68, call 1
    "b810" "b810" "f0530000"  # max_xmit 4280, max_recv 4280, assoc group 0x53f0
    "0d00" "5c504950455c73727673766300"  # sec_addr length 13, "\PIPE\srvsvc\0"
    "00"  # pad to 4
    "01000000"  # one result
    "0000" "0000" "045d888aeb1cc9119fe808002b104860" "02000000"  # acceptance, NDR v2
)
BIND_ACK_PIPE_PDU = BindAck(
    call_id=1, max_xmit_frag=4280, max_recv_frag=4280, assoc_group_id=0x53F0,
    sec_addr="\\PIPE\\srvsvc",
    p_result_list=(PresentationResult(result=0, reason=0, transfer_syntax=NDR20),))

REQUEST_HELLO = bytes.fromhex(
    "05000003" "10000000" "1d00" "0000" "02000000"  # request, frag 29, call 2
    "05000000" "0000" "0700"  # alloc_hint 5, p_cont_id 0, opnum 7
    "68656c6c6f"  # stub "hello"
)
RESPONSE_HELLO = bytes.fromhex(
    "05000203" "10000000" "1d00" "0000" "02000000"  # response, frag 29, call 2
    "05000000" "0000" "00" "00"  # alloc_hint 5, p_cont_id 0, cancel_count 0, reserved
    "68656c6c6f"
)
FAULT_OP_RNG = bytes.fromhex(
    "05000323" "10000000" "2000" "0000" "03000000"  # fault, FIRST|LAST|DID_NOT_EXECUTE, frag 32
    "20000000" "0100" "00" "00"  # alloc_hint 32, p_cont_id 1, cancel_count, reserved
    "0200011c" "00000000"  # status nca_s_op_rng_error, reserved
)
BIND_NAK_VERSION = bytes.fromhex(
    "05000d03" "10000000" "1800" "0000" "01000000"  # bind_nak, frag 24
    "0400" "01" "0500" "000000"  # protocol_version_not_supported, 1 version: 5.0, pad
)


def test_bind_encodes_like_impacket() -> None:
    assert impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN)) == BIND_ECHO
    assert BIND_ECHO_PDU.encode() == BIND_ECHO


def test_bind_decode() -> None:
    assert Bind.decode(BIND_ECHO) == BIND_ECHO_PDU
    assert decode_pdu(BIND_ECHO) == BIND_ECHO_PDU


def test_bind_with_several_contexts_and_syntaxes_round_trips() -> None:
    pdu = Bind(call_id=9, pfc_flags=0x17, max_xmit_frag=5840, max_recv_frag=2048,
               assoc_group_id=0x1234, p_context_elem=(
                   PresentationContext(p_cont_id=0, abstract_syntax=ECHO_SYNTAX,
                                       transfer_syntaxes=(NDR64, NDR20)),
                   PresentationContext(p_cont_id=1, abstract_syntax=ECHO_SYNTAX,
                                       transfer_syntaxes=(NDR20,))))
    assert Bind.decode(pdu.encode()) == pdu


def test_bind_ack_exact_bytes_and_impacket_decode() -> None:
    data = BIND_ACK_PIPE_PDU.encode()
    assert data == BIND_ACK_PIPE
    ack = rpcrt.MSRPCBindAck(data)
    assert ack["type"] == rpcrt.MSRPC_BINDACK
    assert (ack["max_tfrag"], ack["max_rfrag"], ack["assoc_group"]) == (4280, 4280, 0x53F0)
    assert ack["SecondaryAddr"] == "\\PIPE\\srvsvc"
    result = ack.getCtxItem(1)
    assert (result["Result"], result["Reason"]) == (0, 0)
    assert result["TransferSyntax"] == NDR20_BIN


def test_bind_ack_decode_and_empty_secondary_address() -> None:
    assert BindAck.decode(BIND_ACK_PIPE) == BIND_ACK_PIPE_PDU
    empty = BindAck(call_id=1, max_xmit_frag=2048, max_recv_frag=2048, assoc_group_id=1,
                    p_result_list=(PresentationResult(result=3, reason=2),))
    data = empty.encode()
    # length 0, no string, then 2 bytes of pad to reach offset 28
    assert data[24:32] == bytes.fromhex("0000" "0000" "01000000")
    assert BindAck.decode(data) == empty


def test_alter_context_and_response_share_layouts() -> None:
    alter = AlterContext(call_id=4, max_xmit_frag=4280, max_recv_frag=4280,
                         p_context_elem=BIND_ECHO_PDU.p_context_elem)
    data = alter.encode()
    assert data[2] == PType.ALTER_CONTEXT and data[16:] == BIND_ECHO[16:]
    assert AlterContext.decode(data) == alter
    resp = AlterContextResp(call_id=4, max_xmit_frag=4280, max_recv_frag=4280,
                            assoc_group_id=0x53F0, p_result_list=BIND_ACK_PIPE_PDU.p_result_list)
    assert AlterContextResp.decode(resp.encode()) == resp
    with pytest.raises(PduDecodeError):
        Bind.decode(data)  # PTYPE says alter_context


def test_bind_nak_exact_bytes() -> None:
    pdu = BindNak(call_id=1, provider_reject_reason=4)
    assert pdu.encode() == BIND_NAK_VERSION
    assert BindNak.decode(BIND_NAK_VERSION) == pdu
    nak = rpcrt.MSRPCBindNak(rpcrt.MSRPCHeader(BIND_NAK_VERSION)["pduData"])
    assert nak["RejectedReason"] == 4


def test_request_encodes_like_impacket_and_decodes() -> None:
    assert impacket_request(b"hello", opnum=7) == REQUEST_HELLO
    pdu = Request(call_id=2, alloc_hint=5, opnum=7, stub_data=b"hello")
    assert pdu.encode() == REQUEST_HELLO
    assert Request.decode(REQUEST_HELLO) == pdu


def test_request_with_object_uuid() -> None:
    obj = UUID("01234567-89ab-cdef-0123-456789abcdef")
    data = impacket_request(b"xy", opnum=1, object_uuid=obj)
    pdu = Request.decode(data)
    assert pdu.object == obj and pdu.stub_data == b"xy"
    assert pdu.pfc_flags & PfcFlags.OBJECT_UUID
    assert pdu.encode() == data
    assert Request(call_id=2, alloc_hint=2, opnum=1, object=obj, stub_data=b"xy").encode() == data


def test_request_with_verifier_strips_auth_padding() -> None:
    verifier = AuthVerifier(auth_type=10, auth_level=5, auth_pad_length=3,
                            auth_context_id=79231, auth_value=bytes(range(16)))
    pdu = Request(call_id=5, alloc_hint=5, opnum=0, stub_data=b"hello", auth=verifier)
    data = pdu.encode()
    header = PduHeader.decode(data)
    assert header.auth_length == 16 and header.frag_length == len(data) == 24 + 5 + 3 + 8 + 16
    assert data[29:32] == b"\x00\x00\x00"  # auth padding
    assert Request.decode(data) == pdu


def test_response_exact_bytes_and_impacket_decode() -> None:
    data = Response(call_id=2, alloc_hint=5, stub_data=b"hello").encode()
    assert data == RESPONSE_HELLO
    parsed = rpcrt.MSRPCRespHeader(data)
    assert parsed["type"] == rpcrt.MSRPC_RESPONSE
    assert (parsed["alloc_hint"], parsed["ctx_id"], parsed["pduData"]) == (5, 0, b"hello")
    assert Response.decode(data) == Response(call_id=2, alloc_hint=5, stub_data=b"hello")


def test_fault_exact_bytes() -> None:
    pdu = Fault(call_id=3, pfc_flags=0x23, p_cont_id=1, status=0x1C010002)
    assert pdu.encode() == FAULT_OP_RNG
    assert Fault.decode(FAULT_OP_RNG) == pdu
    parsed = rpcrt.MSRPCRespHeader(FAULT_OP_RNG)
    assert parsed["type"] == rpcrt.MSRPC_FAULT and parsed["pduData"][:4] == b"\x02\x00\x01\x1c"


@pytest.mark.parametrize("pdu", [
    Auth3(call_id=1, auth=AuthVerifier(auth_type=10, auth_level=2, auth_value=b"NTLMSSP\x00")),
    CoCancel(call_id=7),
    Orphaned(call_id=7, pfc_flags=0x03),
    Shutdown(call_id=0),
    BindNak(call_id=1, provider_reject_reason=0, versions=((5, 0), (5, 1))),
])
def test_small_pdus_round_trip(pdu) -> None:
    data = pdu.encode()
    assert PduHeader.decode(data).ptype == pdu.PTYPE
    assert decode_pdu(data) == pdu


def test_auth3_body_is_four_pad_bytes() -> None:
    verifier = AuthVerifier(auth_type=10, auth_level=2, auth_value=b"tok")
    data = Auth3(call_id=1, auth=verifier).encode()
    assert data[16:20] == b"\x00" * 4 and data[20:28] == bytes.fromhex("0a02000000000000")


def test_header_is_read_in_the_drep_byte_order() -> None:
    big = bytes.fromhex("05000b03" "00000000" "0048" "0000" "00000001")
    header = PduHeader.decode(big)
    assert (header.frag_length, header.call_id, header.drep_supported) == (72, 1, False)
    assert PduHeader.decode(BIND_ECHO).drep_supported


@pytest.mark.parametrize("data, why", [
    (BIND_ECHO[:15], "short header"),
    (BIND_ECHO[:-1], "frag_length larger than the data"),
    (BIND_ECHO[:16] + BIND_ECHO[16:40], "truncated context list"),
    (REQUEST_HELLO[:10] + b"\x64\x00" + REQUEST_HELLO[12:], "auth_length past the header"),
    (bytes.fromhex("05001403100000001000000001000000"), "unknown PTYPE 20"),
    (REQUEST_HELLO[:16] + b"\x00" * 4, "frag_length smaller than the data"),
])
def test_decode_errors(data: bytes, why: str) -> None:
    with pytest.raises(PduDecodeError):
        decode_pdu(data)


def test_auth_pad_length_beyond_body_is_rejected() -> None:
    verifier = AuthVerifier(auth_type=10, auth_level=5, auth_pad_length=0, auth_value=b"x" * 16)
    data = bytearray(Request(call_id=1, opnum=0, auth=verifier).encode())
    data[24 + 2] = 200  # sec_trailer.auth_pad_length
    with pytest.raises(PduDecodeError):
        Request.decode(bytes(data))


def test_syntax_ids() -> None:
    assert NDR20.encode() == NDR20_BIN
    assert (NDR64.major, NDR64.minor) == (1, 0)
    version_3_1 = SyntaxId.of("12345678-1234-abcd-ef00-0123456789ab", 3, 1)
    assert version_3_1.encode()[16:] == b"\x03\x00\x01\x00"
    assert NULL_SYNTAX.encode() == bytes(20)


def test_bind_time_feature_syntax() -> None:
    btfn = SyntaxId.of("6cb71c2c-9812-4540-0300-000000000000", 1)
    assert bind_time_features(btfn) == 0x03
    assert bind_time_features(SyntaxId.of("6cb71c2c-9812-4540-0100-000000000000", 1)) == 0x01
    assert bind_time_features(SyntaxId.of("6cb71c2c-9812-4540-0300-000000000000", 2)) is None
    assert bind_time_features(NDR20) is None


# -- verification trailer ([MS-RPCE] 2.2.2.13) ------------------------------------

TRAILER = VerificationTrailer(
    bitmask_1=1, pcontext=(ECHO_SYNTAX, NDR20),
    header2=Header2(ptype=0, drep=b"\x10\x00\x00\x00", call_id=2, p_cont_id=0, opnum=7))
TRAILER_BYTES = bytes.fromhex(
    "8ae3137102f43671"  # signature
    "0100" "0400" "01000000"  # BITMASK_1, length 4, CLIENT_SUPPORT_HEADER_SIGNING
    "0200" "2800" + ECHO_SYNTAX.encode().hex() + NDR20.encode().hex()  # PCONTEXT, length 0x28
    + "0340" "1000" "00" "00" "0000" "10000000" "02000000" "0000" "0700")  # HEADER2 | END


def test_verification_trailer_bytes_and_split() -> None:
    assert TRAILER.encode() == TRAILER_BYTES
    stub, trailer = split_verification_trailer(b"stub\x00\x00\x00\x00" + TRAILER_BYTES)
    assert (stub, trailer) == (b"stub\x00\x00\x00\x00", TRAILER)


@pytest.mark.parametrize("stub", [
    b"abc" + TRAILER_BYTES,  # signature not 4-byte aligned
    b"abcd" + TRAILER_BYTES[:-2],  # truncated command
    b"abcd" + TRAILER_BYTES[:16],  # no command flagged END
    b"abcd" + TRAILER_BYTES + b"\x00\x00\x00\x00",  # END is not the end of the stub
    b"abcd" + SIGNATURE,
])
def test_no_verification_trailer_found(stub: bytes) -> None:
    assert split_verification_trailer(stub) == (stub, None)
