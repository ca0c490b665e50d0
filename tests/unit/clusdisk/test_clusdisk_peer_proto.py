"""The clusdisk peer protocol (sans-IO): pinned frames, HMAC, hello,
version refusal, replay and reflection refusal, request/response matching."""

import pytest

from clusdisk.peer_proto import (
    Established, PeerRefused, PeerSession, Request, Response, derive_key)

CLUSTER_KEY = b"0123456789abcdef0123456789abcdef"
KEY = derive_key(CLUSTER_KEY)
NONCE_A, NONCE_B = bytes(range(16)), bytes(range(16, 32))


def pair(version_b=1, key_b=KEY):
    a = PeerSession(KEY, 1, 2, NONCE_A)
    b = PeerSession(key_b, 2, 1, NONCE_B, version=version_b)
    return a, b


def connect(a, b):
    assert a.receive(b.hello()) == [Established(2, 1)]
    assert b.receive(a.hello()) == [Established(1, 1)]


def test_key_derivation_and_frames_are_pinned():
    assert KEY.hex() == "62e80c8ca17e7f6e2aa3ddbda8d0ae1bd8459b436753c9da3944065e9ede4f72"
    a, b = pair()
    assert a.hello().hex() == (
        "53434450010100000014000000000000000000000001000102030405060708090a0b0c0d0e0f"
        "32f8c5ffa8c9112be60bc9899e4e2b398d29fc1207a4ae712fcef6f3cf9b68ae")
    a.receive(b.hello())
    request_id, frame = a.request("placement")
    assert request_id == 1
    assert frame.hex() == (
        "5343445001020000002300000000000000017b226964223a312c226f70223a22706c6163656d656e74"
        "222c2261726773223a7b7d7d"
        "d12f7d81cad83c6451e7bf725b66bf61acc115312e8c15a0da945b09ad5568a5")


def test_request_and_response_in_pieces():
    a, b = pair()
    connect(a, b)
    request_id, frame = a.request("prepare", {"aggregate": "aggr1"})
    events = []
    for byte in frame:                                  # a stream cut anywhere
        events += b.receive(bytes([byte]))
    assert events == [Request(request_id, "prepare", {"aggregate": "aggr1"})]
    assert a.receive(b.respond(request_id, {"ok": True})) == [Response(request_id, {"ok": True})]
    assert a.pending == set()


def test_wrong_key_is_refused_at_the_hello():
    a, b = pair(key_b=derive_key(b"x" * 32))
    with pytest.raises(PeerRefused) as refused:
        a.receive(b.hello())
    assert refused.value.reason == "auth" and "wrong cluster key" in str(refused.value)


def test_other_version_is_refused_by_name():
    a, b = pair(version_b=2)
    with pytest.raises(PeerRefused) as refused:
        a.receive(b.hello())
    assert refused.value.reason == "version"
    assert str(refused.value) == "partner speaks clusdisk peer protocol v2, this node v1"
    with pytest.raises(PeerRefused, match="partner speaks clusdisk peer protocol v1, this node v2"):
        b.receive(a.hello())


def test_replayed_frames_are_refused():
    a, b = pair()
    connect(a, b)
    _, frame = a.request("status")
    assert len(b.receive(frame)) == 1
    with pytest.raises(PeerRefused) as refused:                 # same connection, again
        b.receive(frame)
    assert refused.value.reason == "replay"
    # a new connection (fresh nonce on b's side): the old frame's MAC no longer fits
    b2 = PeerSession(KEY, 2, 1, bytes(16))
    b2.receive(a.hello())
    with pytest.raises(PeerRefused) as refused:
        b2.receive(frame)
    assert refused.value.reason == "auth"


def test_tampered_frame_reflected_hello_and_unexpected_response():
    a, b = pair()
    connect(a, b)
    _, frame = a.request("status")
    tampered = bytearray(frame)
    tampered[20] ^= 1
    with pytest.raises(PeerRefused, match="authentication failed"):
        b.receive(bytes(tampered))
    mirror = PeerSession(KEY, 1, 1, NONCE_A)
    with pytest.raises(PeerRefused) as refused:
        mirror.receive(mirror.hello())
    assert refused.value.reason == "replay"
    a, b = pair()
    with pytest.raises(PeerRefused) as refused:                # node 2 expected
        PeerSession(KEY, 1, 2, NONCE_A).receive(PeerSession(KEY, 3, 1, NONCE_B).hello())
    assert refused.value.reason == "identity"
    connect(a, b)
    with pytest.raises(PeerRefused, match="unexpected response 7"):
        a.receive(b.respond(7, {}))
    with pytest.raises(PeerRefused, match="bad magic"):
        PeerSession(KEY, 1, 2, NONCE_A).receive(b"HTTP/1.1 200 OK\r\n\r\n")
