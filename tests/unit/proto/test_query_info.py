"""QUERY_INFO ([MS-SMB2] 2.2.37, 2.2.38)."""

import struct

import pytest
from smbprotocol.open import SMB2QueryInfoRequest, SMB2QueryInfoResponse

from smbcad.proto.constants import Command, InfoType
from smbcad.proto.create import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.query_info import (
    FILE_FULL_EA_INFORMATION, QueryInfoRequest, QueryInfoResponse, SecurityInformation)
from smbcad.proto.status import NtStatus

from . import wire


def _body(info_type, info_class, offset, length, payload=b"", additional=0):
    return (struct.pack("<HBBIHHIII", 41, info_type, info_class, 4096, offset, 0, length,
                        additional, 0) + struct.pack("<QQ", 1, 2) + payload)


def test_decode_hand_laid_security_query():
    body = _body(InfoType.SECURITY, 0, 0, 0, b"\x00",
                 SecurityInformation.OWNER | SecurityInformation.DACL)
    req = QueryInfoRequest.decode(wire.message(Command.QUERY_INFO, body))
    assert req == QueryInfoRequest(3, 0, 4096, b"", 5, 0, FileId(1, 2))


def test_ea_query_reads_input_buffer():
    ea_list = struct.pack("<IB", 0, 3) + b"abc\x00"
    body = _body(InfoType.FILE, FILE_FULL_EA_INFORMATION, 104, len(ea_list), ea_list)
    req = QueryInfoRequest.decode(wire.message(Command.QUERY_INFO, body))
    assert req.input_buffer == ea_list


def test_input_fields_ignored_for_other_queries():
    # FileBasicInformation with garbage InputBufferOffset/Length (3.3.5.20: ignored).
    body = _body(InfoType.FILE, 4, 0xFFFF, 0xFFFFFFFF)
    assert QueryInfoRequest.decode(wire.message(Command.QUERY_INFO, body)).input_buffer == b""


@pytest.mark.parametrize("info_type,info_class,offset,length", [
    (InfoType.QUOTA, 0, 104, 100),                       # past the message
    (InfoType.QUOTA, 0, 64, 8),                          # inside the fixed part
    (InfoType.FILE, FILE_FULL_EA_INFORMATION, 200, 8),
])
def test_bad_input_for_quota_and_ea(info_type, info_class, offset, length):
    raw = wire.message(Command.QUERY_INFO, _body(info_type, info_class, offset, length, bytes(8)))
    with pytest.raises(SmbError) as err:
        QueryInfoRequest.decode(raw)
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_decode_smbprotocol():
    req = SMB2QueryInfoRequest()
    req["info_type"] = InfoType.QUOTA
    req["output_buffer_length"] = 65536
    req["file_id"] = struct.pack("<QQ", 9, 8)
    req["buffer"] = struct.pack("<BBHIII", 0, 1, 0, 0, 0, 0)
    decoded = QueryInfoRequest.decode(wire.from_smbprotocol(Command.QUERY_INFO, req))
    assert decoded.input_buffer == struct.pack("<BBHIII", 0, 1, 0, 0, 0, 0)
    assert decoded.file_id == FileId(9, 8)
    assert decoded.output_buffer_length == 65536


def test_malformed_fixed_part():
    for body in (b"", _body(1, 4, 0, 0)[:39], b"\x29\x01" + _body(1, 4, 0, 0)[2:]):
        with pytest.raises(SmbError):
            QueryInfoRequest.decode(wire.message(Command.QUERY_INFO, body))


def test_response_exact_and_smbprotocol():
    info = struct.pack("<QQQQI", 1, 2, 3, 4, 0x20) + bytes(4)
    body = QueryInfoResponse(info).encode()
    assert body == struct.pack("<HHI", 9, 72, 40) + info
    parsed = SMB2QueryInfoResponse()
    parsed.unpack(body)
    assert parsed["buffer"].get_value() == info
