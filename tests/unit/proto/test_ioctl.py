"""IOCTL ([MS-SMB2] 2.2.31, 2.2.32)."""

import struct

import pytest
from smbprotocol.ioctl import SMB2IOCTLRequest, SMB2IOCTLResponse, SMB2SrvNetworkResiliencyRequest

from smbcad.proto.constants import Command
from smbcad.proto.create import RELATED_FILE_ID, FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.ioctl import CtlCode, IoctlFlags, IoctlRequest, IoctlResponse
from smbcad.proto.status import NtStatus

from . import wire


def _body(input_offset, input_count, payload=b"", ctl=CtlCode.FSCTL_LMR_REQUEST_RESILIENCY,
          flags=IoctlFlags.IS_FSCTL):
    return (struct.pack("<HHIQQ", 57, 0, ctl, 1, 2)
            + struct.pack("<IIIIIIII", input_offset, input_count, 0, input_offset, 0, 65536,
                          flags, 0) + payload)


def test_decode_hand_laid():
    payload = struct.pack("<II", 120000, 0)
    req = IoctlRequest.decode(wire.message(Command.IOCTL, _body(120, 8, payload)))
    assert req.ctl_code == CtlCode.FSCTL_LMR_REQUEST_RESILIENCY
    assert req.file_id == FileId(1, 2)
    assert bytes(req.input) == payload and isinstance(req.input, memoryview)
    assert req.max_output_response == 65536
    assert req.is_fsctl


def test_decode_smbprotocol():
    resiliency = SMB2SrvNetworkResiliencyRequest()
    resiliency["timeout"] = 60000
    req = SMB2IOCTLRequest()
    req["ctl_code"] = CtlCode.FSCTL_LMR_REQUEST_RESILIENCY
    req["file_id"] = struct.pack("<QQ", 3, 4)
    req["max_output_response"] = 0
    req["flags"] = IoctlFlags.IS_FSCTL
    req["buffer"] = resiliency
    decoded = IoctlRequest.decode(wire.from_smbprotocol(Command.IOCTL, req))
    assert bytes(decoded.input) == struct.pack("<II", 60000, 0)
    assert decoded.file_id == FileId(3, 4)


def test_no_input_ignores_input_offset():
    req = IoctlRequest.decode(wire.message(Command.IOCTL, _body(0xFFFFFFFF, 0)))
    assert bytes(req.input) == b""


@pytest.mark.parametrize("offset,count", [
    (64, 8),          # inside the fixed part (3.3.5.15)
    (124, 4),         # not a multiple of 8
    (120, 9),         # past the message
    (0, 8),
])
def test_bad_input(offset, count):
    with pytest.raises(SmbError) as err:
        IoctlRequest.decode(wire.message(Command.IOCTL, _body(offset, count, bytes(8))))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_malformed_fixed_part():
    for body in (b"", _body(0, 0)[:55], b"\x31\x00" + _body(0, 0)[2:]):
        with pytest.raises(SmbError):
            IoctlRequest.decode(wire.message(Command.IOCTL, body))


def test_response_with_output_exact_and_smbprotocol():
    output = b"0123456789"
    body = IoctlResponse(CtlCode.FSCTL_VALIDATE_NEGOTIATE_INFO, RELATED_FILE_ID, output).encode()
    assert body == (struct.pack("<HHIQQ", 49, 0, 0x00140204, 2**64 - 1, 2**64 - 1)
                    + struct.pack("<IIIIII", 112, 0, 112, 10, 0, 0) + output)
    parsed = SMB2IOCTLResponse()
    parsed.unpack(body)
    assert parsed["output_offset"].get_value() == 112
    assert parsed["buffer"].get_value() == output


def test_response_with_input_echo_aligns_output():
    body = IoctlResponse(0x9C040, FileId(1, 2), output=b"out", input=b"in!").encode()
    assert struct.unpack_from("<IIII", body, 24) == (112, 3, 120, 3)
    assert body[48:] == b"in!" + bytes(5) + b"out"


def test_response_without_buffers():
    body = IoctlResponse(CtlCode.FSCTL_LMR_REQUEST_RESILIENCY, FileId(1, 2)).encode()
    assert struct.unpack_from("<IIII", body, 24) == (112, 0, 112, 0)
    assert len(body) == 49
