"""QUERY_DIRECTORY ([MS-SMB2] 2.2.33, 2.2.34)."""

import struct

import pytest
from smbprotocol.open import SMB2QueryDirectoryRequest, SMB2QueryDirectoryResponse

from smbcad.proto.constants import Command
from smbcad.proto.create import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.query_directory import (
    QueryDirectoryFlags, QueryDirectoryRequest, QueryDirectoryResponse)
from smbcad.proto.status import NtStatus

from . import wire


def test_decode_hand_laid():
    pattern = "*.txt".encode("utf-16-le")
    body = (struct.pack("<HBBIQQHHI", 33, 0x25, QueryDirectoryFlags.RESTART_SCANS, 0, 1, 2, 96,
                        len(pattern), 65536) + pattern)
    req = QueryDirectoryRequest.decode(wire.message(Command.QUERY_DIRECTORY, body))
    assert req == QueryDirectoryRequest(0x25, 1, 0, FileId(1, 2), "*.txt", 65536)


def test_decode_wire_helper_and_smbprotocol():
    raw = wire.message(Command.QUERY_DIRECTORY, wire.query_directory_request(3, 4, "a*"))
    assert QueryDirectoryRequest.decode(raw).file_name == "a*"
    req = SMB2QueryDirectoryRequest()
    req["file_information_class"] = 0x03
    req["flags"] = QueryDirectoryFlags.REOPEN | QueryDirectoryFlags.INDEX_SPECIFIED
    req["file_index"] = 77
    req["file_id"] = struct.pack("<QQ", 5, 6)
    req["output_buffer_length"] = 8192
    req["buffer"] = "*".encode("utf-16-le")
    decoded = QueryDirectoryRequest.decode(wire.from_smbprotocol(Command.QUERY_DIRECTORY, req))
    assert decoded == QueryDirectoryRequest(3, 0x14, 77, FileId(5, 6), "*", 8192)


def test_no_pattern():
    raw = wire.message(Command.QUERY_DIRECTORY, wire.query_directory_request(1, 2, ""))
    assert QueryDirectoryRequest.decode(raw).file_name == ""


@pytest.mark.parametrize("offset,length", [(96, 3), (96, 40), (64, 2), (0, 2)])
def test_bad_pattern_fields(offset, length):
    body = bytearray(wire.query_directory_request(1, 2, "ab"))
    struct.pack_into("<HH", body, 24, offset, length)
    with pytest.raises(SmbError) as err:
        QueryDirectoryRequest.decode(wire.message(Command.QUERY_DIRECTORY, bytes(body)))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_malformed_fixed_part():
    for body in (b"", wire.query_directory_request(1, 2)[:31],
                 b"\x20\x00" + wire.query_directory_request(1, 2)[2:]):
        with pytest.raises(SmbError):
            QueryDirectoryRequest.decode(wire.message(Command.QUERY_DIRECTORY, body))


def test_response_exact_and_smbprotocol():
    entries = bytes(range(100))
    body = QueryDirectoryResponse(entries).encode()
    assert body == struct.pack("<HHI", 9, 72, 100) + entries
    parsed = SMB2QueryDirectoryResponse()
    parsed.unpack(body)
    assert parsed["buffer"].get_value() == entries
    assert QueryDirectoryResponse(b"").encode() == struct.pack("<HHI", 9, 72, 0) + b"\x00"
