"""CLOSE ([MS-SMB2] 2.2.15, 2.2.16)."""

import struct

import pytest
from impacket.smb3structs import SMB2Close
from smbprotocol.open import SMB2CloseRequest, SMB2CloseResponse

from smbcad.proto.close import CloseFlags, CloseRequest, CloseResponse
from smbcad.proto.constants import Command
from smbcad.proto.create import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.fileinfo import FileInfo
from smbcad.proto.status import NtStatus

from . import wire


def test_decode_hand_laid():
    body = struct.pack("<HHIQQ", 24, 1, 0xFFFFFFFF, 0xAA, 0xBB)
    req = CloseRequest.decode(wire.message(Command.CLOSE, body))
    assert req == CloseRequest(1, FileId(0xAA, 0xBB))
    assert req.postquery_attrib


def test_decode_wire_helper_and_smbprotocol():
    assert CloseRequest.decode(wire.message(Command.CLOSE, wire.close_request(3, 4))) == \
        CloseRequest(0, FileId(3, 4))
    req = SMB2CloseRequest()
    req["flags"] = CloseFlags.POSTQUERY_ATTRIB
    req["file_id"] = struct.pack("<QQ", 9, 10)
    assert CloseRequest.decode(wire.from_smbprotocol(Command.CLOSE, req)) == \
        CloseRequest(1, FileId(9, 10))


def test_decode_impacket():
    req = SMB2Close()
    req["Flags"] = 1
    req["FileID"] = struct.pack("<QQ", 11, 12)
    assert CloseRequest.decode(wire.message(Command.CLOSE, req.getData())).file_id == FileId(11, 12)


@pytest.mark.parametrize("body", [
    b"", struct.pack("<HHIQQ", 24, 0, 0, 1, 2)[:23], struct.pack("<HHIQQ", 25, 0, 0, 1, 2)])
def test_malformed(body):
    with pytest.raises(SmbError) as err:
        CloseRequest.decode(wire.message(Command.CLOSE, body))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_response_without_attributes_is_zero():
    assert CloseResponse().encode() == struct.pack("<HH", 60, 0) + bytes(56)


def test_response_with_attributes_exact_and_smbprotocol():
    info = FileInfo(creation_time=1, last_access_time=2, last_write_time=3, change_time=4,
                    end_of_file=5, allocation_size=4096, attributes=0x20, file_id=1,
                    number_of_links=1, is_directory=False)
    body = CloseResponse.with_attributes(info).encode()
    assert body == struct.pack("<HHIQQQQQQI", 60, 1, 0, 1, 2, 3, 4, 4096, 5, 0x20)
    parsed = SMB2CloseResponse()
    parsed.unpack(body)
    assert parsed["flags"].get_value() == 1
    assert parsed["end_of_file"].get_value() == 5
    assert parsed["allocation_size"].get_value() == 4096
    assert parsed["file_attributes"].get_value() == 0x20
