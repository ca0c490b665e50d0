"""Responses whose variable-length buffer is empty (issue 16 item 1).

Strict clients check that a buffer offset does not point into the SMB2 header
or the fixed part even when the length is 0, so every response carries the
offset Windows and Samba put there.  Each test pins the exact bytes of the
fixed part and names its source: the [MS-SMB2] section and the line of
Samba's source3/smbd/smb2_*.c that sets the field (Samba matches Windows
captures in smbtorture, which runs against both).
"""

import struct

from smbcad.proto.change_notify import ChangeNotifyResponse
from smbcad.proto.constants import Dialect
from smbcad.proto.create import CreateResponse, FileId
from smbcad.proto.header import encode_error_body
from smbcad.proto.ioctl import CtlCode, IoctlResponse
from smbcad.proto.negotiate import NegotiateResponse
from smbcad.proto.query_directory import QueryDirectoryResponse
from smbcad.proto.query_info import QueryInfoResponse
from smbcad.proto.read import ReadResponse, encode_read_response_prefix
from smbcad.proto.session_setup import SessionSetupResponse

GUID = bytes(range(16))


def test_session_setup_empty_final_token_offset_0x48():
    # 2.2.6 SecurityBufferOffset "from the beginning of the SMB2 header";
    # smb2_sesssetup.c: out_security_offset = SMB2_HDR_BODY + 0x08, set
    # whatever the token length (the raw-NTLMSSP final leg has none).
    assert SessionSetupResponse(0, b"").encode() == struct.pack("<HHHH", 9, 0, 0x48, 0) + b"\x00"


def test_session_setup_with_token_unchanged():
    assert SessionSetupResponse(1, b"tok").encode() == struct.pack("<HHHH", 9, 1, 0x48, 3) + b"tok"


def _negotiate(security_buffer: bytes, contexts=()):
    return NegotiateResponse(
        security_mode=1, dialect=Dialect.SMB_3_0_2, server_guid=GUID, capabilities=0x2F,
        max_transact_size=1 << 20, max_read_size=1 << 20, max_write_size=1 << 20,
        system_time=1, server_start_time=0, security_buffer=security_buffer,
        contexts=contexts).encode()


def test_negotiate_empty_security_buffer_offset_0x80():
    # 2.2.4; smb2_negprot.c: security_offset = SMB2_HDR_BODY + 0x40, always.
    # NegotiateContextOffset is Reserved2 (0) below 3.1.1.
    body = _negotiate(b"")
    assert len(body) == 65
    assert struct.unpack_from("<HHI", body, 56) == (0x80, 0, 0)
    assert body[64:] == b"\x00"


def test_negotiate_contexts_follow_an_empty_security_buffer():
    body = _negotiate(b"", ((1, b"\x01\x00\x00\x00\x01\x00"),))
    # The contexts start at the first 8-byte boundary after Buffer: 0x80 itself.
    assert struct.unpack_from("<HHI", body, 56) == (0x80, 0, 0x80)
    assert struct.unpack_from("<H", body, 6)[0] == 1           # NegotiateContextCount


def test_query_info_empty_output_offset_0x48():
    # 2.2.38; smb2_getinfo.c: out_output_buffer_offset = SMB2_HDR_BODY + 0x08.
    assert QueryInfoResponse(b"").encode() == struct.pack("<HHI", 9, 0x48, 0) + b"\x00"


def test_query_directory_empty_output_offset_0x48():
    # 2.2.34; smb2_query_directory.c: out_output_buffer_offset = SMB2_HDR_BODY + 0x08.
    assert QueryDirectoryResponse(b"").encode() == struct.pack("<HHI", 9, 0x48, 0) + b"\x00"


def test_change_notify_empty_output_offset_0x48():
    # 2.2.36 (an overflowed or cancelled-by-close notify has no entries);
    # smb2_notify.c: out_output_buffer_offset = SMB2_HDR_BODY + 0x08.
    assert ChangeNotifyResponse(b"").encode() == struct.pack("<HHI", 9, 0x48, 0) + b"\x00"


def test_read_empty_data_offset_0x50():
    # 2.2.20; smb2_read.c: out_data_offset = SMB2_HDR_BODY + 0x10 (a zero-byte
    # read of a pipe or at EOF with MinimumCount 0).
    expected = struct.pack("<HBBIII", 17, 0x50, 0, 0, 0, 0)
    assert ReadResponse(b"").encode() == expected + b"\x00"
    assert encode_read_response_prefix(0) == expected


def test_ioctl_empty_input_and_output_offsets_0x70():
    # 2.2.32; smb2_ioctl.c: out_input_offset = out_output_offset =
    # SMB2_HDR_BODY + 0x30, the end of the 48-byte fixed part.
    body = IoctlResponse(CtlCode.FSCTL_VALIDATE_NEGOTIATE_INFO, FileId(2**64 - 1, 2**64 - 1)).encode()
    assert struct.unpack_from("<IIII", body, 24) == (0x70, 0, 0x70, 0)
    assert len(body) == 49


def test_ioctl_output_only_starts_at_0x70():
    body = IoctlResponse(CtlCode.FSCTL_SRV_REQUEST_RESUME_KEY, FileId(1, 2), b"x" * 8).encode()
    assert struct.unpack_from("<IIII", body, 24) == (0x70, 0, 0x70, 8)
    assert body[48:] == b"x" * 8


def test_create_without_contexts_offset_0():
    # 2.2.14: "If none are being returned in the response, this value MUST be
    # 0"; smb2_create.c only sets out_context_buffer_offset = SMB2_HDR_BODY +
    # 0x58 when out_context_buffer.length > 0.  The one exception to 0x48-style
    # offsets, so pinned here too.
    body = CreateResponse(0, 0, 1, 0, 0, 0, 0, 0, 0, 0x80, FileId(1, 2)).encode()
    assert struct.unpack_from("<II", body, 80) == (0, 0)
    assert len(body) == 89


def test_error_response_byte_count_0_one_byte_of_error_data():
    # 2.2.2: StructureSize 9, ByteCount 0 and ErrorData of one byte when there
    # is no error data; smb2_server.c smbd_smb2_request_error_ex: SIVAL(body,
    # 0x04, info ? info->length : 0) with a one-byte dyn buffer.
    assert encode_error_body() == struct.pack("<HBBI", 9, 0, 0, 0) + b"\x00"
    assert encode_error_body(b"\x10\x00\x00\x00") == struct.pack("<HBBI", 9, 0, 0, 4) + b"\x10\x00\x00\x00"
