"""mirror_proto: exact bytes, round trips, the handshake, and every way a
frame is dropped or the connection fails (STYLE rule 14)."""

import hashlib
import hmac

import pytest

from smbcad.cluster import mirror_proto as mp

KEY = b"k" * 32
NONCE_A = bytes(range(32))
NONCE_B = bytes(range(32, 64))
POS = mp.AggregatePosition("aggr1", mp.Role.REPLICA, 3, 2, 41)

MESSAGES = [
    mp.Hello("node-a", NONCE_A, 7, (POS,)),
    mp.Hello("node-b", NONCE_B, 0, ()),
    mp.Append("aggr1", 3, 42, ((5, b"rec"), (6, None))),
    mp.Append("aggr1", 3, 43, ()),
    mp.Ack("aggr1", 3, 2, 42),
    mp.SnapshotBegin("aggr1", 3, 4, 100),
    mp.SnapshotChunk("aggr1", 3, 4, 100, ((1, b"x" * 300),)),
    mp.SnapshotEnd("aggr1", 3, 4, 100, 1),
    mp.Refuse("aggr1", mp.RefuseReason.GAP, 3, 2, 40),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    assert type(message).decode(memoryview(message.encode())) == message


def test_append_exact_bytes():
    data = mp.Append("ag", 1, 2, ((5, b"ab"), (9, None))).encode()
    assert data == (b"\x02ag" + (1).to_bytes(8, "little") + (2).to_bytes(8, "little")
                    + (2).to_bytes(4, "little")
                    + b"\x01" + (5).to_bytes(8, "little") + (2).to_bytes(4, "little") + b"ab"
                    + b"\x02" + (9).to_bytes(8, "little"))


def test_frame_exact_bytes():
    frame = mp.encode_frame(KEY, 3, mp.Ack("ag", 1, 2, 4))
    payload = b"\x02ag" + b"".join(v.to_bytes(8, "little") for v in (1, 2, 4))
    header = (b"SMBM\x01\x03\x00\x00" + len(payload).to_bytes(4, "little")
              + (3).to_bytes(8, "little"))
    assert frame == header + payload + hmac.new(KEY, header + payload, hashlib.sha256).digest()


def test_hkdf_matches_rfc5869_case_1():
    # RFC 5869 A.1 (first 32 bytes of OKM).
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    assert mp._hkdf(ikm, salt, info).hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf")


def test_session_keys_are_per_direction():
    ab = mp.session_key(KEY, NONCE_A, NONCE_B)
    ba = mp.session_key(KEY, NONCE_B, NONCE_A)
    assert ab != ba and len(ab) == 32
    assert mp.session_key(b"j" * 32, NONCE_A, NONCE_B) != ab


@pytest.mark.parametrize("bad", [
    b"", b"\x05ag", b"\x02ag" + b"\x00" * 8,
    mp.Append("ag", 1, 2, ()).encode() + b"\x00",                      # trailing
    b"\x02ag" + b"\x00" * 16 + (1).to_bytes(4, "little") + b"\x07",   # bad op kind
    b"\x02ag" + b"\x00" * 16 + (1).to_bytes(4, "little") + b"\x01" + b"\x00" * 8
    + (9).to_bytes(4, "little") + b"abc",                              # record overruns
])
def test_append_decode_rejects(bad):
    with pytest.raises(mp.ProtocolError):
        mp.Append.decode(memoryview(bad))


def test_snapshot_messages_chunk_and_count():
    records = {key: bytes(100) for key in range(1, 30)}
    messages = list(mp.snapshot_messages("ag", 1, 2, 3, records, chunk_bytes=1000))
    assert isinstance(messages[0], mp.SnapshotBegin)
    assert messages[-1] == mp.SnapshotEnd("ag", 1, 2, 3, 29)
    chunks = messages[1:-1]
    assert [len(chunk.ops) for chunk in chunks] == [9, 9, 9, 2]    # 113 bytes an op
    assert dict(op for chunk in chunks for op in chunk.ops) == records


# --- the connection ------------------------------------------------------------------


def pair(key_b=KEY):
    a = mp.MirrorConnection(KEY, mp.Hello("a", NONCE_A, 1, (POS,)))
    b = mp.MirrorConnection(key_b, mp.Hello("b", NONCE_B, 2, ()))
    return a, b


def handshake():
    a, b = pair()
    events_b = b.receive_data(a.data_to_send())
    events_a = a.receive_data(b.data_to_send())
    assert events_b == [mp.PeerHello(a.local_hello)]
    assert events_a == [mp.PeerHello(b.local_hello)]
    assert a.state is b.state is mp.ConnectionState.OPEN
    return a, b


def test_handshake_and_messages_both_ways():
    a, b = handshake()
    a.send(MESSAGES[2])
    a.send(MESSAGES[4])
    b.send(MESSAGES[5])
    assert b.receive_data(a.data_to_send()) == [mp.MessageReceived(MESSAGES[2]),
                                                  mp.MessageReceived(MESSAGES[4])]
    assert a.receive_data(b.data_to_send()) == [mp.MessageReceived(MESSAGES[5])]


def test_byte_by_byte_feed():
    a, b = pair()
    hello = a.data_to_send()
    events = []
    for i in range(len(hello)):
        events += b.receive_data(hello[i:i + 1])
    assert events == [mp.PeerHello(a.local_hello)]


def test_send_before_handshake_raises():
    a, _ = pair()
    with pytest.raises(mp.ProtocolError):
        a.send(MESSAGES[2])


def test_wrong_cluster_key_fails_handshake():
    a, b = pair(key_b=b"x" * 32)
    (event,) = b.receive_data(a.data_to_send())
    assert isinstance(event, mp.ConnectionFailed)
    assert b.state is mp.ConnectionState.FAILED
    assert b.receive_data(b"anything") == []


def test_reflected_hello_fails():
    a, _ = pair()
    (event,) = a.receive_data(a.data_to_send())
    assert isinstance(event, mp.ConnectionFailed)


def test_first_frame_not_hello_fails():
    a, _ = pair()
    frame = mp.encode_frame(mp.hello_key(KEY), 0, MESSAGES[4])
    assert isinstance(a.receive_data(frame)[0], mp.ConnectionFailed)


def test_bad_mac_is_dropped_and_the_next_frame_passes():
    a, b = handshake()
    a.send(MESSAGES[4])
    good = a.data_to_send()
    tampered = bytearray(good)
    tampered[25] ^= 1
    assert b.receive_data(bytes(tampered)) == [mp.FrameDropped(mp.DropReason.BAD_MAC, 1)]
    assert b.receive_data(good) == [mp.MessageReceived(MESSAGES[4])]
    assert b.stats.dropped[mp.DropReason.BAD_MAC] == 1


def test_replayed_and_reordered_frames_are_dropped():
    a, b = handshake()
    a.send(MESSAGES[4])
    first = a.data_to_send()
    a.send(MESSAGES[5])
    second = a.data_to_send()
    a.send(MESSAGES[6])
    third = a.data_to_send()
    assert b.receive_data(first) == [mp.MessageReceived(MESSAGES[4])]
    assert b.receive_data(first) == [mp.FrameDropped(mp.DropReason.COUNTER, 1)]   # replay
    assert b.receive_data(third) == [mp.FrameDropped(mp.DropReason.COUNTER, 3)]   # reorder
    assert b.receive_data(second) == [mp.MessageReceived(MESSAGES[5])]
    assert b.stats.dropped[mp.DropReason.COUNTER] == 2


def test_frame_from_an_old_session_is_dropped():
    a, b = handshake()
    a.send(MESSAGES[4])
    old = a.data_to_send()
    a2 = mp.MirrorConnection(KEY, mp.Hello("a", bytes(32), 1, ()))
    b2 = mp.MirrorConnection(KEY, mp.Hello("b", bytes([1]) * 32, 2, ()))
    b2.receive_data(a2.data_to_send())
    assert b2.receive_data(old) == [mp.FrameDropped(mp.DropReason.BAD_MAC, 1)]


def test_hello_key_cannot_forge_session_frames():
    a, b = handshake()
    forged = mp.encode_frame(mp.hello_key(KEY), 1, MESSAGES[4])
    assert b.receive_data(forged) == [mp.FrameDropped(mp.DropReason.BAD_MAC, 1)]


def test_bad_length_fails_the_connection():
    a, b = handshake()
    header = mp._HEADER.pack(mp.MAGIC, mp.VERSION, mp.MessageType.ACK, 0,
                             mp.MAX_PAYLOAD + 1, 1)
    (event,) = b.receive_data(header)
    assert isinstance(event, mp.ConnectionFailed)
    assert b.state is mp.ConnectionState.FAILED


def test_bad_magic_fails_the_connection():
    a, b = handshake()
    assert isinstance(b.receive_data(b"XXXX" + bytes(40))[0], mp.ConnectionFailed)


def test_authentic_but_undecodable_frame_is_dropped():
    a, b = handshake()
    key = mp.session_key(KEY, NONCE_A, NONCE_B)
    header = mp._HEADER.pack(mp.MAGIC, mp.VERSION, mp.MessageType.ACK, 0, 3, 1)
    frame = header + b"\x02ag" + hmac.new(key, header + b"\x02ag", hashlib.sha256).digest()
    assert b.receive_data(frame) == [mp.FrameDropped(mp.DropReason.UNDECODABLE, 1)]
    a._send_counter = 1
    a.send(MESSAGES[4])
    assert b.receive_data(a.data_to_send()) == [mp.MessageReceived(MESSAGES[4])]


def test_second_hello_fails():
    a, b = handshake()
    key = mp.session_key(KEY, NONCE_A, NONCE_B)
    frame = mp.encode_frame(key, 1, a.local_hello)
    assert isinstance(b.receive_data(frame)[0], mp.ConnectionFailed)


def test_short_cluster_key_is_refused():
    with pytest.raises(ValueError):
        mp.MirrorConnection(b"short", mp.Hello("a", NONCE_A, 1))


# --- tickle lists and versions (issue 11 items 1 and 4) -------------------------------

TICKLES = mp.Tickles("aggr1", (("192.0.2.100", 50123, "192.0.2.10", 445),
                               ("fd5b:ca::64", 40000, "fd5b:ca::10", 445)))


def test_tickles_round_trip():
    assert mp.Tickles.decode(memoryview(TICKLES.encode())) == TICKLES
    assert mp.Tickles.decode(memoryview(mp.Tickles("a", ()).encode())) == mp.Tickles("a", ())


def test_tickles_exact_bytes():
    data = mp.Tickles("ag", (("192.0.2.100", 50123, "192.0.2.10", 445),)).encode()
    assert data == (b"\x02ag" + (1).to_bytes(4, "little") + b"\x04"
                    + bytes([192, 0, 2, 100]) + bytes(12) + (50123).to_bytes(2, "little")
                    + bytes([192, 0, 2, 10]) + bytes(12) + (445).to_bytes(2, "little"))


def test_tickles_refuse_mixed_families_and_bad_family():
    with pytest.raises(ValueError):
        mp.Tickles("a", (("192.0.2.1", 1, "fd5b:ca::1", 445),)).encode()
    bad = bytearray(mp.Tickles("a", (("192.0.2.1", 1, "192.0.2.10", 445),)).encode())
    bad[2 + 4] = 5                                      # the family byte
    with pytest.raises(mp.ProtocolError):
        mp.Tickles.decode(memoryview(bytes(bad)))


def test_hello_flags_carry_the_features():
    a = mp.MirrorConnection(KEY, mp.Hello("node-a", NONCE_A, 1))
    old = mp.MirrorConnection(KEY, mp.Hello("node-b", NONCE_B, 1), features=0)
    old.receive_data(a.data_to_send())
    a.receive_data(old.data_to_send())
    assert old.peer_features == mp.FEATURES and mp.FEATURES & mp.FEATURE_TICKLES
    assert a.peer_features == 0
    assert a.state is old.state is mp.ConnectionState.OPEN


def test_another_framing_version_is_refused_with_both_versions_named():
    a, b = pair()
    frame = bytearray(a.data_to_send())
    frame[4] = mp.VERSION + 1
    (event,) = b.receive_data(bytes(frame))
    assert event == mp.ConnectionFailed(
        f"the partner speaks mirror protocol version {mp.VERSION + 1}; "
        f"this node speaks {mp.VERSION}")
    assert b.state is mp.ConnectionState.FAILED
