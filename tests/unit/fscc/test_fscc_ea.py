"""EA lists ([MS-FSCC] 2.4.16, 2.4.16.1): encode, decode, limits and malformed input."""

import pytest
from smbprotocol import file_info as spf

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (FsccStatus, FullEa, decode_full_ea_list, decode_get_ea_list,
                               encode_full_ea_list, packed_ea_size)

EAS = (FullEa("USER.ONE", b"1"), FullEa("TWO", b"22", 0x80), FullEa("X", b""))


def d(v: int) -> bytes:
    return v.to_bytes(4, "little")


def test_encode_exact():
    data, count = encode_full_ea_list(EAS[:2])
    # 8 + 8 + 1 + 1 = 18 -> padded to 20
    first = d(20) + b"\x00\x08\x01\x00" + b"USER.ONE\x00" + b"1" + b"\x00\x00"
    second = d(0) + b"\x80\x03\x02\x00" + b"TWO\x00" + b"22"
    assert (data, count) == (first + second, 2)


def test_round_trip():
    data, count = encode_full_ea_list(EAS)
    assert count == 3
    assert decode_full_ea_list(data) == EAS


def test_cross_check_smbprotocol():
    s = spf.FileFullEaInformation()
    s["ea_name"] = b"FOO"
    s["ea_value"] = b"bar"
    assert decode_full_ea_list(s.pack()) == (FullEa("FOO", b"bar"),)
    data, _ = encode_full_ea_list([FullEa("FOO", b"bar")])
    assert data == s.pack()


def test_encode_limits():
    full, _ = encode_full_ea_list(EAS)
    assert encode_full_ea_list(EAS, max_len=len(full)) == (full, 3)
    data, count = encode_full_ea_list(EAS, max_len=19)        # first entry is 18 bytes
    assert count == 1 and data[:4] == d(0) and len(data) == 18
    assert encode_full_ea_list(EAS, max_len=17) == (b"", 0)
    data, count = encode_full_ea_list(EAS, single_entry=True)
    assert count == 1 and decode_full_ea_list(data) == EAS[:1]


def test_packed_size():
    assert packed_ea_size(()) == 0
    # 4 + (5 + 8 + 1) + (5 + 3 + 2) + (5 + 1 + 0)
    assert packed_ea_size(EAS) == 4 + 14 + 10 + 6


@pytest.mark.parametrize("data, status", [
    (b"", FsccStatus.EA_LIST_INCONSISTENT),
    (bytes(7), FsccStatus.EA_LIST_INCONSISTENT),
    (d(0) + b"\x00\x03\x00\x00AB", FsccStatus.EA_LIST_INCONSISTENT),          # name overruns
    (d(0) + b"\x00\x02\x05\x00AB\x00xy", FsccStatus.EA_LIST_INCONSISTENT),    # value overruns
    (d(0) + b"\x00\x02\x00\x00ABC", FsccStatus.EA_LIST_INCONSISTENT),         # no NUL
    (d(6) + b"\x00\x01\x00\x00A\x00", FsccStatus.EA_LIST_INCONSISTENT),       # misaligned
    (d(4) + b"\x00\x01\x00\x00A\x00\x00\x00", FsccStatus.EA_LIST_INCONSISTENT),  # backwards
    (d(12) + b"\x00\x01\x00\x00A\x00\x00\x00", FsccStatus.EA_LIST_INCONSISTENT),  # past end
    (d(0) + b"\x01\x01\x00\x00A\x00", FsccStatus.INVALID_EA_NAME),            # bad flags
    (d(0) + b"\x00\x01\x00\x00*\x00", FsccStatus.INVALID_EA_NAME),
    (d(0) + b"\x00\x00\x00\x00\x00", FsccStatus.INVALID_EA_NAME),             # empty name
    (d(0) + b"\x00\x01\x00\x00\xe9\x00", FsccStatus.INVALID_EA_NAME),         # not ASCII
])
def test_decode_bad(data, status):
    with pytest.raises(SmbError) as err:
        decode_full_ea_list(data)
    assert err.value.status == status


def test_get_ea_list():
    # NextEntryOffset, EaNameLength, "AB\0" (8 bytes), then "C\0"
    data = d(8) + b"\x02AB\x00" + d(0) + b"\x01C\x00"
    assert decode_get_ea_list(data) == ("AB", "C")
    s = spf.FileGetEaInformation()
    s["ea_name"] = b"NAME"
    assert decode_get_ea_list(s.pack()) == ("NAME",)


@pytest.mark.parametrize("data", [
    b"", d(0), d(0) + b"\x05AB\x00", d(0) + b"\x02ABC", d(3) + b"\x01A\x00" + bytes(4),
])
def test_get_ea_list_bad(data):
    with pytest.raises(SmbError) as err:
        decode_get_ea_list(data)
    assert err.value.status == FsccStatus.EA_LIST_INCONSISTENT
