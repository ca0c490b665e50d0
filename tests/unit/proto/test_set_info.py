"""SET_INFO ([MS-SMB2] 2.2.39, 2.2.40)."""

import struct

import pytest
from smbprotocol.open import SMB2SetInfoRequest, SMB2SetInfoResponse

from smbcad.proto.constants import Command, InfoType
from smbcad.proto.create import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.set_info import SetInfoRequest, SetInfoResponse
from smbcad.proto.status import NtStatus

from . import wire


def _body(offset, length, payload, info_class=13):
    return (struct.pack("<HBBIHHI", 33, InfoType.FILE, info_class, length, offset, 0, 0)
            + struct.pack("<QQ", 1, 2) + payload)


def test_decode_hand_laid_disposition():
    req = SetInfoRequest.decode(wire.message(Command.SET_INFO, _body(96, 1, b"\x01")))
    assert req == SetInfoRequest(InfoType.FILE, 13, b"\x01", 0, FileId(1, 2))


def test_decode_smbprotocol():
    req = SMB2SetInfoRequest()
    req["info_type"] = InfoType.FILE
    req["file_info_class"] = 20                       # FileEndOfFileInformation
    req["file_id"] = struct.pack("<QQ", 3, 4)
    req["buffer"] = struct.pack("<Q", 1 << 30)
    decoded = SetInfoRequest.decode(wire.from_smbprotocol(Command.SET_INFO, req))
    assert decoded == SetInfoRequest(1, 20, struct.pack("<Q", 1 << 30), 0, FileId(3, 4))


@pytest.mark.parametrize("offset,length", [
    (96, 0),       # BufferLength 0 (3.3.5.21)
    (96, 2),       # past the message
    (64, 1),       # inside the fixed part
    (0, 1),
])
def test_bad_buffer(offset, length):
    with pytest.raises(SmbError) as err:
        SetInfoRequest.decode(wire.message(Command.SET_INFO, _body(offset, length, b"\x01")))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_malformed_fixed_part():
    for body in (b"", _body(96, 1, b"\x01")[:31], b"\x21\x01" + _body(96, 1, b"\x01")[2:]):
        with pytest.raises(SmbError):
            SetInfoRequest.decode(wire.message(Command.SET_INFO, body))


def test_response():
    body = SetInfoResponse().encode()
    assert body == b"\x02\x00"
    parsed = SMB2SetInfoResponse()
    parsed.unpack(body)
    assert parsed["structure_size"].get_value() == 2
