"""The worker message codec (smbcad/workers/messages.py): bytes pinned by
hand from the layout in its docstring, round trips, every rejection, and
the pure sequence and reply tables."""

import struct

import pytest
from hypothesis import given, strategies as st

from smbcad.proto.status import NtStatus
from smbcad.workers.messages import (
    HEADER, MAX_MESSAGE, MESSAGE_TYPES, VERSION, AdminQuery, AdminReply, BreakDone,
    AppInstanceClose, BreakForOpen, BreakRequest, DeletePending, Header, ListingChanged, LocksChanged, LogoffSession,
    LogoffSessionReply, MessageError, MessageType, OpensBelow, PeerStatus, ReleaseDurable,
    ReleaseDurableReply, Renamed, ReplyWaiters, Sequencer, decode, encode)

LEASE_KEY = bytes(range(16))
OPEN_ID = 0x0102030405060708


def header_hex(code: int, length: int) -> str:
    """version 1, type, flags 0, sender 3, generation 7, sequence 0x10, length."""
    return f"01 {code:02x} 0000 0300 07000000 10000000 {length:02x}000000"


PINNED = [
    # file key: volume 1, inode 2, stream "ads"; open id, break to R, lease, key 00..0f
    (BreakRequest((1, 2, "ads"), 0x0A0B0C0D0E0F1011, 1, True, LEASE_KEY),
     header_hex(1, 50) + "0100000000000000 0200000000000000 0300 616473"
                         "11100f0e0d0c0b0a 01000000 01 000102030405060708090a0b0c0d0e0f"),
    # an oplock break to level II (1): no stream, is lease 0, zero key
    (BreakRequest((0x1122334455667788, 42), 9, 1, False),
     header_hex(1, 47) + "8877665544332211 2a00000000000000 0000"
                         "0900000000000000 01000000 00 00000000000000000000000000000000"),
    (BreakDone((0x1122334455667788, 42)),
     header_hex(2, 18) + "8877665544332211 2a00000000000000 0000"),
    # a stream name that is a lone surrogate (surrogatepass): ED B3 BF
    (LocksChanged((5, 6, "\udcff")),
     header_hex(3, 21) + "0500000000000000 0600000000000000 0300 edb3bf"),
    (ReleaseDurable(OPEN_ID, 5, 0x1122334455667788),
     header_hex(4, 20) + "0807060504030201 05000000 8877665544332211"),
    (ReleaseDurableReply(5, OPEN_ID, NtStatus.OBJECT_NAME_NOT_FOUND),
     header_hex(5, 20) + "05000000 0807060504030201 340000c0 00000000"),
    (ReleaseDurableReply(5, OPEN_ID, NtStatus.SUCCESS, b"\x01\x02\x03"),
     header_hex(5, 23) + "05000000 0807060504030201 00000000 03000000 010203"),
    (LogoffSession(0x1000000000000041, 6),
     header_hex(6, 14) + "4100000000000010 06000000 0000"),
    (LogoffSession(0x1000000000000041, 6, "bob"),
     header_hex(6, 17) + "4100000000000010 06000000 0300 626f62"),
    (LogoffSessionReply(6, NtStatus.SUCCESS),
     header_hex(7, 8) + "06000000 00000000"),
    (AdminQuery(7, "opens"),
     header_hex(8, 11) + "07000000 0500 6f70656e73"),
    (AdminReply(7, {"n": 1}),
     header_hex(9, 15) + "07000000 07000000 7b226e223a317d"),
    # an open for READ_DATA | WRITE_DATA (3) that overwrites and deletes on close
    (BreakForOpen((0x1122334455667788, 42), 3, 0x05),
     header_hex(10, 23) + "8877665544332211 2a00000000000000 0000 03000000 05"),
    # share "data", directory "a/b", ParentLeaseKey 00..0f
    (ListingChanged("data", "a/b", LEASE_KEY),
     header_hex(11, 29) + "0400 64617461 03000000 612f62 000102030405060708090a0b0c0d0e0f"),
    # request 9: anything open below "vm" on share "data"?
    (OpensBelow(9, "data", "vm"),
     header_hex(12, 16) + "09000000 0400 64617461 02000000 766d"),
    (PeerStatus(9, NtStatus.ACCESS_DENIED),
     header_hex(13, 8) + "09000000 220000c0"),
    # request 10: file (1, 2) on "data" renamed from "a/x" to "b"
    (Renamed(10, (1, 2), "data", "a/x", "b"),
     header_hex(14, 40) + "0a000000 0100000000000000 0200000000000000 0000 0400 64617461"
                          "03000000 612f78 01000000 62"),
    # request 11: close file (1, 2)'s opens on "data" with AppInstanceId 00..0f
    # made by clients other than 10..1f; version (3, 4) given, dialect 3.1.1,
    # the opener may close them
    (AppInstanceClose(11, (1, 2), "data", LEASE_KEY, bytes(range(16, 32)), (3, 4), True, True),
     header_hex(15, 77) + "0b000000 0100000000000000 0200000000000000 0000 0400 64617461"
                          "000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f"
                          "07 0300000000000000 0400000000000000"),
    (DeletePending((0x1122334455667788, 42)),
     header_hex(16, 18) + "8877665544332211 2a00000000000000 0000"),
]


@pytest.mark.parametrize("message,expected", PINNED, ids=lambda v: type(v).__name__)
def test_pinned_bytes(message, expected):
    data = encode(message, sender=3, generation=7, sequence=0x10)
    assert data.hex() == bytes.fromhex(expected).hex()
    header, decoded = decode(data)
    assert decoded == message
    assert header == Header(VERSION, message.TYPE, 0, 3, 7, 0x10, len(data) - HEADER.size)


def test_every_type_is_pinned_and_registered():
    assert {type(m).TYPE for m, _ in PINNED} == set(MessageType) == set(MESSAGE_TYPES)


U16, U32, U64 = (st.integers(0, 2**bits - 1) for bits in (16, 32, 64))
STREAM = st.text(alphabet=st.characters(min_codepoint=1), min_size=1, max_size=40)
FILE_KEY = st.one_of(st.tuples(U64, U64), st.tuples(U64, U64, STREAM))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20)
LEASE = st.builds(BreakRequest, FILE_KEY, U64, U32, st.just(True), st.binary(min_size=16,
                                                                             max_size=16))
OPLOCK = st.builds(BreakRequest, FILE_KEY, U64, U32, st.just(False))
MESSAGES = st.one_of(
    LEASE, OPLOCK, st.builds(BreakDone, FILE_KEY), st.builds(LocksChanged, FILE_KEY),
    st.builds(DeletePending, FILE_KEY),
    st.builds(ReleaseDurable, U64, U32, U64), st.builds(ReleaseDurableReply, U32, U64, U32, st.binary(max_size=600)),
    st.builds(LogoffSession, U64, U32, st.text(max_size=40).filter(
        lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))), st.builds(LogoffSessionReply, U32, U32),
    st.builds(AdminQuery, U32, st.text(max_size=100).filter(
        lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))),
    st.builds(AdminReply, U32, JSON), st.builds(BreakForOpen, FILE_KEY, U32, st.integers(0, 15)),
    st.builds(ListingChanged, st.text(max_size=20).filter(
        lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)), st.text(max_size=60),
        st.binary(min_size=16, max_size=16)),
    st.builds(OpensBelow, U32, st.text(max_size=20).filter(
        lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)), st.text(max_size=60)),
    st.builds(PeerStatus, U32, U32),
    st.builds(Renamed, U32, FILE_KEY, st.text(max_size=20).filter(
        lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)), st.text(max_size=60),
        st.text(max_size=60)),
    st.builds(AppInstanceClose, U32, FILE_KEY, st.text(max_size=20).filter(
        lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
        st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
        st.none() | st.tuples(U64, U64), st.booleans(), st.booleans()))


@given(MESSAGES, U16, U32, U32)
def test_round_trip(message, sender, generation, sequence):
    data = encode(message, sender=sender, generation=generation, sequence=sequence)
    header, decoded = decode(memoryview(data))
    assert decoded == message
    assert (header.sender, header.generation, header.sequence) == (sender, generation, sequence)
    assert header.message_type is type(message).TYPE and header.length == len(data) - 18


GOOD = encode(BreakDone((1, 2)), sender=0, generation=0, sequence=0)


def with_header(payload: bytes, *, version=VERSION, code=MessageType.BREAK_DONE,
                length=None) -> bytes:
    length = len(payload) if length is None else length
    return HEADER.pack(version, code, 0, 0, 0, 0, length) + payload


@pytest.mark.parametrize("data,reason", [
    (GOOD[:17], "shorter than the 18-byte header"),
    (b"", "0 bytes"),
    (with_header(GOOD[18:], version=2), "version 2"),
    (with_header(GOOD[18:], version=0), "version 0"),
    (with_header(GOOD[18:], code=0), "unknown message type 0"),
    (with_header(GOOD[18:], code=17), "unknown message type 17"),
    (with_header(struct.pack("<IH", 1, 1) + b"\xff" + struct.pack("<I", 0),
                 code=MessageType.OPENS_BELOW), "OpensBelow: not UTF-8"),
    (with_header(struct.pack("<IH", 1, 0) + struct.pack("<I", 5) + b"ab",
                 code=MessageType.OPENS_BELOW), "OpensBelow: payload of 12 bytes is too short"),
    (with_header(struct.pack("<I", 1) + GOOD[18:] + struct.pack("<HI", 0, 0),
                 code=MessageType.RENAMED), "Renamed: payload of 28 bytes is too short"),
    (with_header(struct.pack("<H", 1) + b"\xff" + struct.pack("<I", 0) + bytes(16),
                 code=MessageType.LISTING_CHANGED), "ListingChanged: not UTF-8"),
    (with_header(struct.pack("<H", 0) + struct.pack("<I", 0) + bytes(15),
                 code=MessageType.LISTING_CHANGED), "ListingChanged: payload of 21 bytes"),
    (with_header(GOOD[18:] + struct.pack("<IB", 3, 0x10), code=MessageType.BREAK_FOR_OPEN),
     "BreakForOpen: flags 0x10"),
    (with_header(GOOD[18:], code=255), "unknown message type 255"),
    (with_header(GOOD[18:], length=19), "header says 19 payload bytes, the datagram carries 18"),
    (with_header(GOOD[18:], length=17), "header says 17"),
    (GOOD[:-1], "header says 18 payload bytes, the datagram carries 17"),
    (with_header(GOOD[18:] + b"\0"), "BreakDone: 1 trailing bytes"),
    (with_header(GOOD[18:-1]), "BreakDone: payload of 17 bytes is too short"),
    (with_header(struct.pack("<QQH", 1, 2, 3) + b"ab"), "too short"),       # stream cut off
    (with_header(struct.pack("<QQH", 1, 2, 1) + b"\xff"), "BreakDone: not UTF-8"),
    (with_header(struct.pack("<QQHQIB16s", 1, 2, 0, 9, 1, 2, bytes(16)),
                 code=MessageType.BREAK_REQUEST), "is-lease byte 2"),
    (with_header(struct.pack("<QQHQIB16s", 1, 2, 0, 9, 1, 0, LEASE_KEY),
                 code=MessageType.BREAK_REQUEST), "oplock break with a lease key"),
    (with_header(struct.pack("<IH", 7, 2) + b"\xc3(", code=MessageType.ADMIN_QUERY),
     "AdminQuery: not UTF-8"),
    (with_header(struct.pack("<II", 7, 3) + b"{x}", code=MessageType.ADMIN_REPLY),
     "AdminReply: payload is not JSON"),
    (with_header(struct.pack("<III", 7, 0, 0), code=MessageType.LOGOFF_SESSION_REPLY),
     "LogoffSessionReply: 4 trailing bytes"),
    (with_header(bytes(MAX_MESSAGE - 17), code=MessageType.ADMIN_REPLY), "over MAX_MESSAGE"),
], ids=lambda value: value if isinstance(value, str) else "bytes")
def test_decode_rejects(data, reason):
    with pytest.raises(MessageError, match=reason.replace("(", r"\(")):
        decode(data)


def admin_reply_of(size: int) -> AdminReply:
    """An AdminReply whose datagram is ``size`` bytes: 18 header, 8 fixed, 2 quotes."""
    return AdminReply(1, "x" * (size - 28))


def test_size_limit():
    assert len(encode(admin_reply_of(MAX_MESSAGE), sender=0, generation=0, sequence=0)) \
        == MAX_MESSAGE == 60 * 1024
    with pytest.raises(MessageError, match=f"AdminReply of {MAX_MESSAGE + 1} bytes is over"):
        encode(admin_reply_of(MAX_MESSAGE + 1), sender=0, generation=0, sequence=0)


@pytest.mark.parametrize("message,reason", [
    (BreakDone((1, 2, "")), "non-empty stream name"),
    (BreakDone((1,)), "file key"),
    (BreakDone((2**64, 2)), "out of range"),
    (BreakRequest((1, 2), 3, 1, True, b"short"), "lease key of 5 bytes"),
    (BreakRequest((1, 2), 3, 1, False, LEASE_KEY), "oplock break with a lease key"),
    (ReleaseDurable(-1, 0), "out of range"),
    (LogoffSessionReply(1, 2**32), "out of range"),
    (AdminQuery(1, "\ud800"), "not UTF-8"),
    (AdminReply(1, {"x": float("nan")}), "not JSON"),
    (AdminReply(1, object()), "not JSON"),
], ids=lambda value: value if isinstance(value, str) else type(value).__name__)
def test_encode_rejects(message, reason):
    with pytest.raises(MessageError, match=reason):
        encode(message, sender=0, generation=0, sequence=0)


@pytest.mark.parametrize("sender,generation,sequence", [(2**16, 0, 0), (0, 2**32, 0),
                                                        (0, 0, -1)])
def test_encode_rejects_header_fields_out_of_range(sender, generation, sequence):
    with pytest.raises(MessageError, match="header out of range"):
        encode(BreakDone((1, 2)), sender=sender, generation=generation, sequence=sequence)


def test_reserved_flags_are_ignored():
    data = bytearray(GOOD)
    data[2] = 0x80
    header, message = decode(bytes(data))
    assert header.flags == 0x80 and message == BreakDone((1, 2))


def test_sequencer_wraps_at_2_32():
    sequencer = Sequencer(2**32 - 2)
    assert [sequencer.next() for _ in range(4)] == [2**32 - 2, 2**32 - 1, 0, 1]
    assert Sequencer().next() == 0
    with pytest.raises(ValueError):
        Sequencer(2**32)


def test_replies_find_their_waiter_once():
    waiters = ReplyWaiters()
    first, second = waiters.new_request_id(), waiters.new_request_id()
    assert (first, second) == (0, 1)
    waiters.register(first, "release", expects=ReleaseDurable.REPLY)
    waiters.register(second, "logoff")
    with pytest.raises(ValueError, match="already waiting"):
        waiters.register(first, "again")
    assert waiters.resolve(ReleaseDurableReply(99, 1, NtStatus.SUCCESS)) is None   # unknown
    # a reply of the wrong kind does not take the waiter
    assert waiters.resolve(LogoffSessionReply(first, NtStatus.SUCCESS)) is None
    assert waiters.resolve(ReleaseDurableReply(first, 1, NtStatus.SUCCESS)) == "release"
    assert waiters.resolve(ReleaseDurableReply(first, 1, NtStatus.SUCCESS)) is None  # duplicate
    assert waiters.resolve(LogoffSessionReply(second, NtStatus.SUCCESS)) == "logoff"
    assert len(waiters) == 0


def test_a_late_reply_after_discard_is_dropped():
    waiters = ReplyWaiters()
    waiters.register(4, "admin", expects=AdminQuery.REPLY)
    assert waiters.discard(4) == "admin" and waiters.discard(4) is None
    assert waiters.resolve(AdminReply(4, [])) is None


def test_request_ids_wrap_and_skip_waiting_ones():
    waiters = ReplyWaiters(first_request_id=2**32 - 1)
    waiters.register(0, "still waiting")
    assert [waiters.new_request_id() for _ in range(2)] == [2**32 - 1, 1]
