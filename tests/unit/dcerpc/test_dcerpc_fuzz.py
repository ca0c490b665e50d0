"""Arbitrary and mutated bytes into RpcConnection.receive_data.

The only exception allowed out is ProtocolError; whatever the connection
answers must itself decode; after a ProtocolError the connection is CLOSED
(shared/STYLE.md rules 8 and 14).  Interesting inputs are kept below as
named regression blobs.
"""

import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from smbca.rpc.dcerpc import ConnState, ProtocolError, decode_pdu
from smbca.rpc.dcerpc.verification import SIGNATURE, split_verification_trailer

from .client import (
    BTFN_BIN,
    ECHO_BIN,
    NDR20_BIN,
    NDR64_BIN,
    OTHER_BIN,
    ctx_item,
    impacket_bind,
    impacket_request,
    make_connection,
)

VALID_STREAM = b"".join([
    impacket_bind(ctx_item(0, ECHO_BIN, NDR64_BIN), ctx_item(1, ECHO_BIN, NDR20_BIN),
                  ctx_item(2, ECHO_BIN, BTFN_BIN)),
    impacket_request(b"hello", ctx_id=1, call_id=2),
    impacket_request(b"A" * 40, ctx_id=1, call_id=3, flags=0x01, alloc_hint=80),
    impacket_request(b"B" * 40, ctx_id=1, call_id=3, flags=0x02, alloc_hint=40),
    impacket_bind(ctx_item(5, OTHER_BIN, NDR20_BIN), call_id=4, ptype=14),
    impacket_request(struct.pack("<I", 9000), ctx_id=1, call_id=5, opnum=1),
    impacket_request(b"", ctx_id=1, call_id=6, opnum=77),
])

REGRESSIONS: dict[str, bytes] = {
    "empty": b"",
    "header_only_zero_frag_length": bytes.fromhex("05000b0310000000" "0000" "0000" "01000000"),
    "frag_length_15": bytes.fromhex("05000b0310000000" "0f00" "0000" "01000000"),
    "bind_context_count_255_no_body": bytes.fromhex(
        "05000b03100000001c00000001000000" "b810b81000000000" "ff000000"),
    "bind_transfer_count_255": impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN))[:30] + b"\xff"
    + impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN))[31:],
    "auth_length_ffff": bytes.fromhex("05000003100000001800" "ffff" "01000000" "0000000000000000"),
    "big_endian_garbage": bytes.fromhex("05000b0300000000" "0010" "0000" "00000001") + bytes(16),
    "version_4_bind": bytes.fromhex("04000b03100000001000000001000000"),
    "unknown_ptype_99": bytes.fromhex("05006303100000001000000001000000"),
    "verification_signature_only": impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN))
    + impacket_request(b"abcd" + SIGNATURE),
    "verification_huge_command_length": impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN))
    + impacket_request(b"abcd" + SIGNATURE + struct.pack("<HH", 0x4001, 0xFFFC)),
}


def feed(data: bytes, chunks: list[int] | None = None) -> None:
    """Feed ``data`` (optionally split), asserting the documented behaviour."""
    connection = make_connection()
    pieces = [data]
    if chunks:
        pieces, rest = [], data
        for size in chunks:
            pieces.append(rest[:size])
            rest = rest[size:]
        pieces.append(rest)
    for piece in pieces:
        try:
            connection.receive_data(piece)
        except ProtocolError:
            assert connection.state is ConnState.CLOSED
            for pdu in connection.pdus_to_send():
                decode_pdu(pdu)
            return
        for pdu in connection.pdus_to_send():
            decode_pdu(pdu)


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression_blobs(name: str) -> None:
    feed(REGRESSIONS[name])


def test_valid_stream_is_answered() -> None:
    connection = make_connection()
    connection.receive_data(VALID_STREAM)
    kinds = [decode_pdu(pdu).PTYPE.name for pdu in connection.pdus_to_send()]
    assert kinds == ["BIND_ACK", "RESPONSE", "RESPONSE", "ALTER_CONTEXT_RESP",
                     "RESPONSE", "RESPONSE", "RESPONSE", "FAULT"]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    feed(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_after_bind(data: bytes) -> None:
    feed(impacket_bind(ctx_item(0, ECHO_BIN, NDR20_BIN)) + data)


@st.composite
def mutated_streams(draw) -> tuple[bytes, list[int]]:
    data = bytearray(VALID_STREAM)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "delete" and data:
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "truncate":
            del data[at:]
    chunks = draw(st.lists(st.integers(1, 200), max_size=6))
    return bytes(data), chunks


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_streams())
def test_mutated_streams(case: tuple[bytes, list[int]]) -> None:
    data, chunks = case
    feed(data, chunks)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=64))
def test_verification_trailer_search_never_raises(prefix: bytes, tail: bytes) -> None:
    stub, _ = split_verification_trailer(prefix + SIGNATURE + tail)
    assert (prefix + SIGNATURE + tail).startswith(stub)
