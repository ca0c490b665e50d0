"""READ ([MS-SMB2] 2.2.19, 2.2.20)."""

import struct

import pytest
from smbprotocol.open import SMB2ReadRequest, SMB2ReadResponse

from smbcad.proto.constants import Command
from smbcad.proto.create import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.read import (
    Channel, ReadFlags, ReadRequest, ReadResponse, encode_read_response_prefix)
from smbcad.proto.status import NtStatus

from . import wire


def test_decode_hand_laid():
    body = (struct.pack("<HBBIQQQ", 49, 0x50, ReadFlags.READ_UNBUFFERED, 65536, 1 << 33, 7, 8)
            + struct.pack("<IIIHH", 100, 0, 0, 0, 0) + b"\x00")
    req = ReadRequest.decode(wire.message(Command.READ, body))
    assert req == ReadRequest(0x50, 1, 65536, 1 << 33, FileId(7, 8), 100, 0, 0, b"")


def test_decode_wire_helper_and_smbprotocol():
    raw = wire.message(Command.READ, wire.read_request(1, 2, 4096, 8192, minimum_count=1))
    assert ReadRequest.decode(raw).length == 4096
    req = SMB2ReadRequest()
    req["length"] = 1 << 20
    req["offset"] = 12345
    req["file_id"] = struct.pack("<QQ", 3, 4)
    req["minimum_count"] = 9
    decoded = ReadRequest.decode(wire.from_smbprotocol(Command.READ, req))
    assert (decoded.length, decoded.offset, decoded.file_id, decoded.minimum_count) == (
        1 << 20, 12345, FileId(3, 4), 9)


def test_channel_none_ignores_channel_info_fields():
    body = (struct.pack("<HBBIQQQ", 49, 0, 0, 1, 0, 1, 2)
            + struct.pack("<IIIHH", 0, Channel.NONE, 99, 0xFFFF, 0xFFFF) + b"\x00")
    assert ReadRequest.decode(wire.message(Command.READ, body)).read_channel_info == b""


def test_rdma_channel_info_is_bounds_checked():
    descriptor = struct.pack("<QII", 0x1000, 0x2, 4096)
    body = (struct.pack("<HBBIQQQ", 49, 0, 0, 0, 0, 1, 2)
            + struct.pack("<IIIHH", 0, Channel.RDMA_V1, 4096, 0x70, len(descriptor)) + descriptor)
    req = ReadRequest.decode(wire.message(Command.READ, body))
    assert req.read_channel_info == descriptor
    bad = bytearray(body)
    struct.pack_into("<H", bad, 44, 0x80)
    with pytest.raises(SmbError) as err:
        ReadRequest.decode(wire.message(Command.READ, bytes(bad)))
    assert err.value.status == NtStatus.INVALID_PARAMETER
    struct.pack_into("<H", bad, 44, 0x10)          # inside the fixed part
    with pytest.raises(SmbError):
        ReadRequest.decode(wire.message(Command.READ, bytes(bad)))


@pytest.mark.parametrize("body", [
    b"", wire.read_request(1, 2, 3, 4)[:47],
    b"\x30" + wire.read_request(1, 2, 3, 4)[1:]])
def test_malformed(body):
    with pytest.raises(SmbError) as err:
        ReadRequest.decode(wire.message(Command.READ, body))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_response_prefix_exact_and_smbprotocol():
    prefix = encode_read_response_prefix(5, 0)
    assert prefix == struct.pack("<HBBIII", 17, 0x50, 0, 5, 0, 0)
    assert len(prefix) == 16
    parsed = SMB2ReadResponse()
    parsed.unpack(prefix + b"hello")
    assert parsed["data_offset"].get_value() == 0x50
    assert parsed["buffer"].get_value() == b"hello"


def test_response_dataclass():
    assert ReadResponse(b"abc").encode() == encode_read_response_prefix(3) + b"abc"
    assert ReadResponse(b"", 7).encode() == encode_read_response_prefix(0, 7) + b"\x00"
