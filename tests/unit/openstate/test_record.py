"""The share-mode record's bytes and the decisions made on them
(smbcad/openstate/record.py; [MS-FSA] 2.1.5.1.2)."""

import pytest

from smbcad.openstate import record
from smbcad.openstate.record import OpenEntry
from smbcad.proto.constants import AccessMask as A, ShareAccess as S
from smbcad.proto.status import NtStatus

READ, WRITE, DELETE = A.FILE_READ_DATA, A.FILE_WRITE_DATA, A.DELETE
ALL = S.READ | S.WRITE | S.DELETE


def _value(*entries, delete_pending=False):
    value = None
    for entry in entries:
        value = record.with_entry(value, entry)
    return record.with_delete_pending(value, True) if delete_pending else value


def test_bytes_are_pinned():
    """Header u8 flags, u8 0, u16 count; entry u32 owner, u64 id, u32 access, u32 share."""
    value = _value(OpenEntry(0x11223344, 0x0102030405060708, READ, S.READ), delete_pending=True)
    assert value == bytes.fromhex("01000100" "44332211" "0807060504030201" "01000000" "01000000")
    assert record.decode(value) == record.FileRecord(
        (OpenEntry(0x11223344, 0x0102030405060708, READ, S.READ),), True)


def test_keys_of_files_and_streams_differ():
    assert record.encode_key((1, 2)) == bytes.fromhex("0100000000000000" "0200000000000000")
    assert record.encode_key((1, 2, "s")) == record.encode_key((1, 2)) + b"s"
    assert record.encode_key((1, 2, "\udcff")) != record.encode_key((1, 2, "x"))


def test_add_and_remove_keep_the_other_entries_in_order():
    a, b, c = (OpenEntry(9, n, READ, ALL) for n in (1, 2, 3))
    value = _value(a, b, c)
    assert record.entry_count(value) == 3
    left, removed = record.without_entry(value, 2)
    assert removed == b and record.decode(left).entries == (a, c)
    same, removed = record.without_entry(left, 42)
    assert removed is None and same == left
    left, _ = record.without_entry(left, 1)
    empty, removed = record.without_entry(left, 3)
    assert (empty, removed) == (None, c)


def test_delete_pending_survives_entry_changes_and_can_be_taken_back():
    value = _value(OpenEntry(9, 1, DELETE, ALL), delete_pending=True)
    value = record.with_entry(value, OpenEntry(9, 2, 0, ALL))
    assert record.delete_pending(value)
    left, _ = record.without_entry(value, 1)
    assert record.delete_pending(left)
    assert not record.delete_pending(record.with_delete_pending(left, False))
    assert not record.delete_pending(None)


@pytest.mark.parametrize("held_access, held_share, access, share, expected", [
    (READ, S.READ, READ, S.READ, None),
    (READ, S.READ, WRITE, ALL, NtStatus.SHARING_VIOLATION),     # the holder does not share write
    (READ, ALL, READ, S.WRITE, NtStatus.SHARING_VIOLATION),     # the newcomer does not share read
    (WRITE, ALL, WRITE, S.WRITE, None),
    (READ, S.READ, DELETE, ALL, NtStatus.SHARING_VIOLATION),
    (A.FILE_READ_ATTRIBUTES, 0, READ, 0, None),                  # no data access: never conflicts
    (READ, 0, A.FILE_READ_ATTRIBUTES, 0, None),
])
def test_share_access_check(held_access, held_share, access, share, expected):
    value = _value(OpenEntry(9, 1, held_access, held_share))
    assert record.sharing_conflict(value, access, share) == expected


def test_delete_pending_refuses_every_open():
    value = _value(OpenEntry(9, 1, DELETE, ALL), delete_pending=True)
    assert record.sharing_conflict(value, A.FILE_READ_ATTRIBUTES, ALL) == NtStatus.DELETE_PENDING
    assert record.sharing_conflict(None, READ, 0) is None


def test_a_gone_owner_is_swept():
    value = _value(OpenEntry(7, 1, READ, ALL), OpenEntry(8, 2, READ, ALL),
                   OpenEntry(7, 3, READ, ALL))
    assert record.decode(record.without_owner(value, 7)).entries == (OpenEntry(8, 2, READ, ALL),)
    assert record.without_owner(value, 8) is not None
    assert record.without_owner(_value(OpenEntry(7, 1, READ, ALL)), 7) is None


@pytest.mark.parametrize("bad", [b"", b"\x00", b"\x00\x00\x01\x00", b"\x00\x00\x00\x00" + bytes(20)])
def test_a_record_of_the_wrong_length_is_refused(bad):
    with pytest.raises(record.RecordError):
        record.decode(bad)


def test_a_disconnected_persistent_open_is_bit_31_of_its_share_word():
    value = _value(OpenEntry(1, 7, READ, S.READ), OpenEntry(1, 8, READ, ALL))
    assert not record.held_disconnected(value) and not record.held_disconnected(None)
    marked = record.with_disconnected(value, 8, True)
    assert marked[-4:] == bytes.fromhex("07000080") and marked[:-4] == value[:-4]
    assert record.held_disconnected(marked)
    assert record.with_disconnected(marked, 8, False) == value
    # The mark changes no share decision.
    assert record.sharing_conflict(marked, WRITE, ALL) == NtStatus.SHARING_VIOLATION
    assert record.sharing_conflict(marked, READ, ALL) is None


def test_a_restored_open_replaces_its_predecessors_entry():
    value = _value(OpenEntry(1, 7, READ, S.READ), OpenEntry(1, 8, READ, ALL))
    replaced = record.with_entry_replaced(value, OpenEntry(2, 7, READ, S.READ).pack())
    assert record.decode(replaced).entries == (OpenEntry(1, 8, READ, ALL),
                                               OpenEntry(2, 7, READ, S.READ))
    fresh = record.with_entry_replaced(None, OpenEntry(2, 9, READ, ALL).pack())
    assert record.decode(fresh).entries == (OpenEntry(2, 9, READ, ALL),)
    # The dead process's persistent open is kept, now held disconnected and
    # caching nothing (its connection and its breaks died with the process).
    cached = record.with_caching(value, 1, record.CACHING | record.CACHING_HANDLE)
    kept = record.without_owner(cached, 1, keep=frozenset({8}))
    assert record.decode(kept).entries == (
        OpenEntry(1, 8, READ, ALL | record.HELD_DISCONNECTED),)
    assert record.held_disconnected(kept) and not record.caching_elsewhere(kept, 2)


def test_caching_is_bit_30_of_a_process_s_entries():
    value = _value(OpenEntry(1, 7, READ, S.READ), OpenEntry(2, 8, READ, ALL))
    assert record.opened_elsewhere(value, 1) and not record.opened_elsewhere(
        _value(OpenEntry(1, 7, READ, S.READ)), 1)
    marked = record.with_caching(value, 1, record.CACHING)
    assert marked[8 + 12:8 + 16] == bytes.fromhex("01000040")     # entry 1's share word
    assert record.caching_elsewhere(marked, 2) and not record.caching_elsewhere(marked, 1)
    assert record.foreign_state(marked, 2) == (record.CACHING, True)
    assert record.foreign_state(marked, 1) == (0, True)
    assert record.with_caching(marked, 1, 0) == value
    assert record.sharing_conflict(marked, WRITE, ALL) == NtStatus.SHARING_VIOLATION


def test_stat_opens_of_other_processes_do_not_count_as_opened_elsewhere():
    stat = int(A.FILE_READ_ATTRIBUTES | A.FILE_WRITE_ATTRIBUTES
               | A.SYNCHRONIZE)
    assert record.is_stat_access(stat) and record.is_stat_access(int(A.SYNCHRONIZE))
    assert not record.is_stat_access(0)
    assert not record.is_stat_access(stat | int(A.READ_CONTROL))
    assert not record.is_stat_access(int(A.FILE_READ_DATA))
    value = record.with_entry(None, OpenEntry(2, 7, stat, 7))
    assert not record.opened_elsewhere(value, 1)
    assert record.opened_elsewhere(record.with_entry(value, OpenEntry(2, 8, int(A.DELETE), 7)), 1)
    # A stat open that created the file may hold an oplock: then it counts.
    assert record.opened_elsewhere(record.with_caching(value, 2, record.CACHING), 1)


def test_the_stat_bits_are_those_oplocks_use_against_an_oplock():
    from smbcad.server import oplocks
    for access in (0x80, 0x100, 0x100000, 0x180, 0x100180, 0x20000, 0x1, 0x20080):
        assert record.is_stat_access(access) == oplocks.is_stat_open(access, against_lease=False)


def test_what_is_cached_is_bits_29_to_26_beside_the_caching_mark():
    value = record.with_entry(record.with_entry(None, OpenEntry(1, 7, 3, 7)),
                              OpenEntry(2, 8, 3, 7))
    assert record.foreign_caching(value, 2) == 0
    batch = record.CACHING | record.CACHING_HANDLE | record.CACHING_WRITE | record.CACHING_OPLOCK
    marked = record.with_caching(value, 1, batch)
    assert marked[record.HEADER.size + 16:record.HEADER.size + 20] == (
        7 | 0x78000000).to_bytes(4, "little")
    assert record.foreign_caching(marked, 2) == batch
    assert record.foreign_caching(marked, 1) == 0
    level_ii = record.with_caching(marked, 1, record.CACHING | record.CACHING_OPLOCK)
    assert record.foreign_caching(level_ii, 2) == record.CACHING | record.CACHING_OPLOCK
    both = record.with_caching(level_ii, 2, record.CACHING | record.CACHING_HANDLE
                               | record.CACHING_HANDLE_LEASE)     # an RH lease there
    assert record.foreign_caching(both, 1) == 0x44000000 | record.CACHING_HANDLE
    assert record.with_caching(record.with_caching(both, 2, 0), 1, 0) == value
    assert record.sharing_conflict(marked, int(A.FILE_READ_DATA), 7) is None
    for bad in (record.CACHING_WRITE, 0x1, record.CACHING | 0x80000000):
        with pytest.raises(ValueError):      # what is cached, without the mark, or not a bit
            record.with_caching(value, 1, bad)
