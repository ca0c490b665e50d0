"""FLUSH ([MS-SMB2] 2.2.17, 2.2.18)."""

import struct

import pytest
from smbprotocol.open import SMB2FlushRequest, SMB2FlushResponse

from smbcad.proto.constants import Command
from smbcad.proto.create import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.flush import FlushRequest, FlushResponse
from smbcad.proto.status import NtStatus

from . import wire


def test_decode_hand_laid_and_smbprotocol():
    body = struct.pack("<HHIQQ", 24, 0xFFFF, 0xFFFFFFFF, 1, 2)     # reserved fields ignored
    assert FlushRequest.decode(wire.message(Command.FLUSH, body)) == FlushRequest(FileId(1, 2))
    req = SMB2FlushRequest()
    req["file_id"] = struct.pack("<QQ", 5, 6)
    assert FlushRequest.decode(wire.from_smbprotocol(Command.FLUSH, req)).file_id == FileId(5, 6)


@pytest.mark.parametrize("body", [b"\x18\x00", struct.pack("<HHIQQ", 4, 0, 0, 1, 2)])
def test_malformed(body):
    with pytest.raises(SmbError) as err:
        FlushRequest.decode(wire.message(Command.FLUSH, body))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_response():
    body = FlushResponse().encode()
    assert body == b"\x04\x00\x00\x00"
    parsed = SMB2FlushResponse()
    parsed.unpack(body)
    assert parsed["structure_size"].get_value() == 4
