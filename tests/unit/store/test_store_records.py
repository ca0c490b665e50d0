"""The persisted record: exact bytes, round trips, forward compatibility,
upgrades and hostile input (smbcad/store/records.py)."""

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smbcad.store import (
    SCHEMA_VERSION, LeaseRecord, LockRecord, PersistentOpen, RecordCorrupt, RecordTooNew, decode,
    encode)
from smbcad.store.records import NO_LOCK_SEQUENCES, CreateIntent, with_record_version

GUID_A = bytes(range(16))
GUID_B = bytes(range(16, 32))
GUID_C = bytes(range(32, 48))
LEASE_KEY = bytes(range(48, 64))
PARENT_KEY = bytes(range(64, 80))


def full_record() -> PersistentOpen:
    """Every field away from its default."""
    return PersistentOpen(
        durable_file_id=0x0123456789ABCDEF, create_guid=GUID_A, client_guid=GUID_B,
        owner_user="HV01$", owner_domain="CONTOSO", share_name="vms", path="vm1/disk ü.vhdx",
        file_dev=0x801, file_ino=0x1234, vfs_cookie=b"\x01\x02\x03",
        desired_access=0x0012019F, granted_access=0x00120089, share_access=0x7,
        create_options=0x00000042, file_attributes=0x20, is_directory=False, oplock_level=0xFF,
        lease=LeaseRecord(LEASE_KEY, 2, 0x7, 5, PARENT_KEY, True, 0x3, True),
        app_instance_id=GUID_C, app_instance_version=(7, 9), is_durable=True,
        is_persistent=True, is_resilient=False, durable_timeout_ms=60_000,
        resiliency_timeout_ms=0, disconnected_at_ms=1_700_000_000_123,
        locks=(LockRecord(0, 4096, True), LockRecord(1 << 40, 1, False)),
        delete_on_close=True, is_replay_eligible=True, channel_sequence=0x8001,
        position=0xFFFF_FFFF_FFFF, record_version=42).with_lock_sequence(1, 3).with_lock_sequence(
            64, 15)


def expected_bytes(r: PersistentOpen, schema: int = SCHEMA_VERSION) -> bytes:
    """The layout written out by hand from the module docstring, independently
    of ``encode``; with ``schema`` 2 what the previous release wrote."""
    flags = 0x0001 | 0x0002 | 0x0008 | 0x0010 | 0x0040 | 0x0080 | 0x0100 | 0x0200
    fixed = struct.pack(
        "<Q16s16s16sQQQQQQIIIIIIIIHBB16s16sBBH",
        r.durable_file_id, GUID_A, GUID_B, GUID_C, 7, 9, 0x801, 0x1234, 0xFFFF_FFFF_FFFF,
        1_700_000_000_123, 0x0012019F, 0x00120089, 0x7, 0x42, 0x20, 60_000, 0, flags, 0x8001,
        0xFF, 2, LEASE_KEY, PARENT_KEY, 0x7, 0x3, 5)
    path = "vm1/disk ü.vhdx".encode()
    var = (b"\x05\x00HV01$" + b"\x07\x00CONTOSO" + b"\x03\x00vms"
           + struct.pack("<I", len(path)) + path + b"\x03\x00\x00\x00\x01\x02\x03"
           + struct.pack("<I", 2) + struct.pack("<QQB", 0, 4096, 1)
           + struct.pack("<QQB", 1 << 40, 1, 0)
           + bytes((2, 0, 0x13, 63, 0x1F)))
    body = fixed + var
    return struct.pack("<HHQ", schema, 1, 42) + struct.pack("<HI", 1, len(body)) + body


def test_encode_exact_bytes():
    assert encode(full_record()) == expected_bytes(full_record())


def test_decode_exact_bytes():
    assert decode(expected_bytes(full_record())) == full_record()


def test_a_record_the_previous_release_wrote_decodes_without_an_owner_sid():
    record = decode(expected_bytes(full_record(), schema=2))
    assert record == full_record() and record.owner_sid == ""


OWNER_SID = "S-1-5-21-1004336348-1177238915-682003330-1105"


def test_owner_sid_is_section_3_exact_bytes():
    record = dataclasses.replace(full_record(), owner_sid=OWNER_SID)
    section3 = struct.pack("<HI", 3, len(OWNER_SID)) + OWNER_SID.encode()
    assert encode(record) == expected_bytes(full_record()) + section3
    assert decode(encode(record)) == record


def test_owner_sid_follows_an_intent_and_precedes_newer_sections():
    record = dataclasses.replace(full_record(), owner_sid=OWNER_SID,
                                 create_intent=CreateIntent(2, 5, 6))
    blob = encode(record)
    assert decode(blob) == record
    newer = blob + struct.pack("<HI", 4, 2) + b"n4"
    assert decode(newer).owner_sid == OWNER_SID
    assert decode(newer).unknown_sections == struct.pack("<HI", 4, 2) + b"n4"


def test_a_schema_2_reader_keeps_the_owner_sid_as_an_unknown_section():
    """What the previous release does with section 3: keeps it verbatim
    (its rule for sections newer than itself) and may interpret the rest."""
    blob = encode(dataclasses.replace(full_record(), owner_sid=OWNER_SID))
    schema, min_reader = struct.unpack_from("<HH", blob)
    assert (schema, min_reader) == (3, 1)          # min_reader 1: old readers go on


def test_minimal_record_bytes():
    r = PersistentOpen(1, GUID_A, GUID_B, "", "", "", "")
    blob = encode(r)
    assert len(blob) == 12 + 6 + 176 + 3 * 2 + 2 * 4 + 4 + 1   # 176: the fixed part
    assert blob[:12] == struct.pack("<HHQ", SCHEMA_VERSION, 1, 0)
    assert decode(blob) == r


def test_sample_record_is_about_300_bytes():
    r = dataclasses.replace(full_record(), path="Virtual Machines/web01/Virtual Hard Disks/"
                            "web01-disk0.vhdx", vfs_cookie=bytes(24))
    assert 280 <= len(encode(r)) <= 380


guids = st.binary(min_size=16, max_size=16)
u16, u32, u64 = (st.integers(0, (1 << bits) - 1) for bits in (16, 32, 64))
names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
leases = st.builds(LeaseRecord, guids, st.sampled_from((1, 2)), st.integers(0, 7), u16, guids,
                   st.booleans(), st.integers(0, 7), st.booleans())
locks = st.builds(LockRecord, u64, u64, st.booleans())
intents = st.builds(CreateIntent, u32, u64, u64)
lock_sequences = st.lists(st.sampled_from((0,) * 4 + tuple(range(0x10, 0x20))),
                          min_size=64, max_size=64).map(bytes)
records = st.builds(
    PersistentOpen, st.integers(1, (1 << 64) - 1), guids, guids, names, names, names,
    st.text(max_size=200).map(lambda s: s.encode("utf-16-le", "surrogatepass")
                              .decode("utf-16-le", "surrogatepass")),
    u64, u64, st.binary(max_size=64), u32, u32, u32, u32, u32, st.booleans(),
    st.integers(0, 255), st.none() | leases, guids, st.none() | st.tuples(u64, u64),
    st.booleans(), st.booleans(), st.booleans(), u32, u32, st.none() | u64,
    st.lists(locks, max_size=5).map(tuple), lock_sequences, st.booleans(), st.booleans(), u16,
    u64, st.none() | intents, st.just("") | st.from_regex(r"S-1-5-21(-[0-9]{1,10}){4}",
                                                          fullmatch=True), u64)


@settings(max_examples=300, deadline=None)
@given(records)
def test_round_trip(record):
    assert decode(encode(record)) == record


def test_lone_surrogate_in_a_name_survives():
    r = PersistentOpen(1, GUID_A, GUID_B, "u", "d", "s", "a\udc80b")
    assert decode(encode(r)).path == "a\udc80b"


def test_every_truncation_is_corrupt():
    blob = encode(full_record())
    for size in range(len(blob)):
        with pytest.raises(RecordCorrupt):
            decode(blob[:size])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 400), st.integers(0, 255))
def test_garbage_never_escapes_as_another_exception(noise, where, value):
    blob = bytearray(encode(full_record()))
    blob[where % len(blob)] = value
    for data in (noise, bytes(blob), bytes(blob) + noise):
        try:
            decode(data)
        except (RecordCorrupt, RecordTooNew):
            pass


def test_unknown_flag_bits_are_corrupt():
    blob = bytearray(encode(full_record()))
    flags_at = 12 + 6 + 8 + 48 + 16 + 32 + 7 * 4
    assert struct.unpack_from("<I", blob, flags_at)[0] == 0x3DB
    struct.pack_into("<I", blob, flags_at, 0x3DB | 0x8000)
    with pytest.raises(RecordCorrupt, match="unknown flags"):
        decode(bytes(blob))


# --- versioning -----------------------------------------------------------------------------

def newer_writer_blob(record: PersistentOpen, min_reader: int = 1) -> tuple[bytes, bytes]:
    """What a schema-5 smbcad might write: our sections, then sections 4 and 5."""
    ours = encode(record)
    extra = struct.pack("<HI", 4, 5) + b"new-4" + struct.pack("<HI", 5, 2) + b"n5"
    return struct.pack("<HHQ", 5, min_reader, record.record_version) + ours[12:] + extra, extra


def test_newer_sections_are_kept_and_written_back_unchanged():
    blob, extra = newer_writer_blob(full_record())
    record = decode(blob)
    assert record.unknown_sections == extra
    assert dataclasses.replace(record, unknown_sections=b"") == full_record()
    assert encode(record) == blob


def test_an_older_node_changing_the_record_keeps_the_newer_sections():
    blob, extra = newer_writer_blob(full_record())
    changed = dataclasses.replace(decode(blob), position=7)
    again = decode(encode(changed))
    assert again.position == 7 and again.unknown_sections == extra
    assert encode(changed)[:2] == b"\x05\x00"      # still says schema 5
    assert with_record_version(changed, 43).unknown_sections == extra


def test_a_record_needing_a_newer_reader_is_refused():
    blob, _ = newer_writer_blob(full_record(), min_reader=SCHEMA_VERSION + 1)
    with pytest.raises(RecordTooNew):
        decode(blob)


@pytest.mark.parametrize("tail", [
    struct.pack("<HI", 1, 0),                       # a second section 1
    struct.pack("<HI", 5, 1) + b"x" + struct.pack("<HI", 1, 0),   # out of order
    struct.pack("<HI", 5, 9) + b"x",                # overruns
    b"\x05",                                        # truncated header
])
def test_bad_section_lists_are_corrupt(tail):
    with pytest.raises(RecordCorrupt):
        decode(encode(full_record()) + tail)


def test_first_section_must_be_section_1():
    blob = bytearray(encode(full_record()))
    blob[12] = 2
    with pytest.raises(RecordCorrupt):
        decode(bytes(blob))


def test_older_records_run_the_upgrade_chain():
    # A record from schema 0, whose (imagined) durable timeout was in seconds.
    blob = bytearray(encode(dataclasses.replace(full_record(), durable_timeout_ms=60)))
    blob[0:2] = b"\x00\x00"
    upgraded = decode(bytes(blob), upgrades={
        0: lambda r: dataclasses.replace(r, durable_timeout_ms=r.durable_timeout_ms * 1000)})
    assert upgraded == full_record()
    # No upgrade function for a version: its records mean the same as ours.
    assert decode(bytes(blob)).durable_timeout_ms == 60


def test_current_records_do_not_run_upgrades():
    called = []
    decode(encode(full_record()), upgrades={1: called.append, 0: called.append})
    assert called == []


# --- helpers and validation -----------------------------------------------------------------

def test_lock_sequence_array():
    r = PersistentOpen(1, GUID_A, GUID_B, "", "", "", "")
    assert r.lock_sequences == NO_LOCK_SEQUENCES
    assert all(r.lock_sequence(i) is None for i in range(1, 65))
    r = r.with_lock_sequence(64, 0).with_lock_sequence(2, 9)
    assert r.lock_sequence(64) == 0 and r.lock_sequence(2) == 9 and r.lock_sequence(1) is None
    assert decode(encode(r)).lock_sequences == r.lock_sequences
    for index, sequence in ((0, 1), (65, 1), (1, 16), (1, -1)):
        with pytest.raises(ValueError):
            r.with_lock_sequence(index, sequence)


def test_timeouts_and_expiry():
    r = PersistentOpen(1, GUID_A, GUID_B, "", "", "", "", durable_timeout_ms=100,
                       resiliency_timeout_ms=5)
    assert r.expires_at_ms is None
    assert r.disconnected(1000).expires_at_ms == 1100
    assert dataclasses.replace(r, is_resilient=True).disconnected(1000).expires_at_ms == 1005
    assert r.disconnected(1000).reconnected() == r


@pytest.mark.parametrize("change", [
    {"create_guid": b"short"}, {"client_guid": bytes(17)}, {"app_instance_id": b""},
    {"lease": LeaseRecord(b"x", 2, 7)}, {"lease": LeaseRecord(LEASE_KEY, 3, 7)},
    {"durable_file_id": 1 << 64}, {"granted_access": -1}, {"channel_sequence": 1 << 16},
    {"owner_user": "x" * 70000}, {"lock_sequences": b"\x00" * 63 + b"\x20"},
])
def test_unencodable_values_raise_value_error(change):
    with pytest.raises(ValueError):
        encode(dataclasses.replace(full_record(), **change))


def test_with_record_version_is_replace():
    r = dataclasses.replace(full_record(), unknown_sections=b"\x03\x00\x00\x00\x00\x00")
    assert with_record_version(r, 7) == dataclasses.replace(r, record_version=7)


def test_a_create_intent_is_section_2_after_section_1():
    """[records.py "Section 2"]: disposition u32, prior change time u64, prior size u64."""
    intent = CreateIntent(5, 0x01D9_0000_0000_0001, 4096)
    r = dataclasses.replace(full_record(), create_intent=intent, is_persistent=False)
    blob = encode(r)
    plain = encode(dataclasses.replace(r, create_intent=None))
    assert blob == plain + struct.pack("<HI", 2, 20) + struct.pack("<IQQ", *(5, intent.prior_change_time, 4096))
    assert decode(blob) == r
    assert decode(blob + struct.pack("<HI", 4, 1) + b"z").unknown_sections == b"\x04\x00\x01\x00\x00\x00z"
    with pytest.raises(RecordCorrupt):
        decode(plain + struct.pack("<HI", 2, 19) + bytes(19))

