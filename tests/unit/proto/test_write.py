"""WRITE ([MS-SMB2] 2.2.21, 2.2.22)."""

import struct

import pytest
from smbprotocol.open import SMB2WriteRequest, SMB2WriteResponse

from smbcad.proto.constants import Command
from smbcad.proto.create import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.proto.write import Channel, WriteFlags, WriteRequest, WriteResponse

from . import wire


def test_decode_hand_laid():
    body = (struct.pack("<HHIQQQ", 49, 0x70, 5, 1 << 40, 1, 2)
            + struct.pack("<IIHHI", 0, 0, 0, 0, WriteFlags.WRITE_THROUGH) + b"hello")
    req = WriteRequest.decode(wire.message(Command.WRITE, body))
    assert bytes(req.data) == b"hello"
    assert (req.offset, req.file_id, req.flags) == (1 << 40, FileId(1, 2), 1)


def test_data_is_a_zero_copy_view():
    buf = bytearray(wire.message(Command.WRITE, wire.write_request(1, 2, 0, b"abcdef")))
    req = WriteRequest.decode(buf)
    assert isinstance(req.data, memoryview)
    buf[0x70] = ord("X")
    assert bytes(req.data) == b"Xbcdef"          # it shares the message's memory
    view = memoryview(bytes(buf))
    assert WriteRequest.decode(view).data.obj is view.obj


def test_decode_smbprotocol():
    req = SMB2WriteRequest()
    req["offset"] = 4096
    req["file_id"] = struct.pack("<QQ", 7, 8)
    req["flags"] = WriteFlags.WRITE_UNBUFFERED
    req["buffer"] = b"x" * 1000
    decoded = WriteRequest.decode(wire.from_smbprotocol(Command.WRITE, req))
    assert bytes(decoded.data) == b"x" * 1000
    assert (decoded.offset, decoded.file_id, decoded.flags) == (4096, FileId(7, 8), 2)


def test_zero_length_write():
    body = struct.pack("<HHIQQQIIHHI", 49, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0)
    assert bytes(WriteRequest.decode(wire.message(Command.WRITE, body)).data) == b""


@pytest.mark.parametrize("data_offset,length,channel", [
    (0x70, 10, 0),        # data past the message (only 5 bytes follow)
    (0x60, 5, 0),         # data inside the fixed part
    (0x108, 0, 0),        # DataOffset > 0x100 with SMB2_CHANNEL_NONE (3.3.5.13)
    (0x108, 5, 0),
    (0x08, 5, 1),         # RDMA channel still cannot point data into the header
])
def test_bad_data_fields(data_offset, length, channel):
    body = (struct.pack("<HHIQQQ", 49, data_offset, length, 0, 1, 2)
            + struct.pack("<IIHHI", channel, 0, 0, 0, 0) + b"hello")
    with pytest.raises(SmbError) as err:
        WriteRequest.decode(wire.message(Command.WRITE, body))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_rdma_channel_info():
    descriptor = struct.pack("<QII", 1, 2, 3)
    body = (struct.pack("<HHIQQQ", 49, 0, 0, 0, 1, 2)
            + struct.pack("<IIHHI", Channel.RDMA_V1, 4096, 0x70, 16, 0) + descriptor)
    req = WriteRequest.decode(wire.message(Command.WRITE, body))
    assert bytes(req.write_channel_info) == descriptor
    bad = body[:42] + struct.pack("<H", 32) + body[44:]      # WriteChannelInfoLength
    with pytest.raises(SmbError):
        WriteRequest.decode(wire.message(Command.WRITE, bad))


@pytest.mark.parametrize("body", [b"", wire.write_request(1, 2, 0, b"")[:47],
                                  b"\x31\x01" + wire.write_request(1, 2, 0, b"a")[2:]])
def test_malformed(body):
    with pytest.raises(SmbError) as err:
        WriteRequest.decode(wire.message(Command.WRITE, body))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_response_exact_and_smbprotocol():
    body = WriteResponse(1000).encode()
    assert body == struct.pack("<HHIIHH", 17, 0, 1000, 0, 0, 0)
    parsed = SMB2WriteResponse()
    parsed.unpack(body)
    assert parsed["count"].get_value() == 1000
