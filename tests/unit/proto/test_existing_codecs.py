"""NEGOTIATE, SESSION_SETUP and TREE_CONNECT requests as smbprotocol encodes them,
and their responses as smbprotocol decodes them ([MS-SMB2] 2.2.3 - 2.2.10)."""

import os
import struct
import uuid

import pytest
from smbprotocol.connection import (
    SMB2EncryptionCapabilities, SMB2NegotiateContextRequest, SMB2NegotiateRequest,
    SMB2NegotiateResponse, SMB2NetnameNegotiateContextId, SMB2PreauthIntegrityCapabilities,
    SMB2SigningCapabilities, SMB3NegotiateRequest)
from smbprotocol.session import SMB2SessionSetupRequest, SMB2SessionSetupResponse
from smbprotocol.tree import SMB2TreeConnectRequest, SMB2TreeConnectResponse

from smbcad.proto.constants import (
    CipherId, Command, Dialect, HashAlgorithm, NegotiateContextType, SigningAlgorithmId)
from smbcad.proto.errors import SmbError
from smbcad.proto.negotiate import (
    EncryptionCapabilities, NegotiateRequest, NegotiateResponse, PreauthIntegrityCapabilities,
    SigningCapabilities)
from smbcad.proto.session_setup import SessionSetupRequest, SessionSetupResponse
from smbcad.proto.status import NtStatus
from smbcad.proto.tree_connect import TreeConnectRequest, TreeConnectResponse

from . import wire

CLIENT_GUID = uuid.UUID("11111111-2222-3333-4444-555555555555")


def _context(ctx_type, data):
    ctx = SMB2NegotiateContextRequest()
    ctx["context_type"] = ctx_type
    ctx["data"] = data
    return ctx


def test_smb2_negotiate_request():
    req = SMB2NegotiateRequest()
    req["security_mode"] = 1
    req["capabilities"] = 0x7F
    req["client_guid"] = CLIENT_GUID
    req["dialects"] = [0x0202, 0x0210, 0x0300, 0x0302]
    decoded = NegotiateRequest.decode(wire.from_smbprotocol(Command.NEGOTIATE, req))
    assert decoded.dialects == (0x0202, 0x0210, 0x0300, 0x0302)
    assert decoded.security_mode == 1 and decoded.capabilities == 0x7F
    assert decoded.client_guid == req["client_guid"].pack()
    assert decoded.contexts.preauth is None


def test_smb3_negotiate_request_with_contexts():
    salt = bytes(range(32))
    preauth = SMB2PreauthIntegrityCapabilities()
    preauth["hash_algorithms"] = [HashAlgorithm.SHA_512]
    preauth["salt"] = salt
    encryption = SMB2EncryptionCapabilities()
    encryption["ciphers"] = [CipherId.AES_128_GCM, CipherId.AES_128_CCM, CipherId.AES_256_GCM]
    signing = SMB2SigningCapabilities()
    signing["signing_algorithms"] = [SigningAlgorithmId.AES_GMAC, SigningAlgorithmId.AES_CMAC]
    netname = SMB2NetnameNegotiateContextId()
    netname["net_name"] = "fileserver.example.com"
    req = SMB3NegotiateRequest()
    req["security_mode"] = 2
    req["capabilities"] = 0x44
    req["client_guid"] = CLIENT_GUID
    req["dialects"] = [0x0202, 0x0210, 0x0300, 0x0302, 0x0311]
    req["negotiate_context_list"] = [
        _context(NegotiateContextType.PREAUTH_INTEGRITY_CAPABILITIES, preauth),
        _context(NegotiateContextType.ENCRYPTION_CAPABILITIES, encryption),
        _context(NegotiateContextType.SIGNING_CAPABILITIES, signing),
        _context(NegotiateContextType.NETNAME_NEGOTIATE_CONTEXT_ID, netname),
    ]
    decoded = NegotiateRequest.decode(wire.from_smbprotocol(Command.NEGOTIATE, req))
    assert decoded.dialects[-1] == Dialect.SMB_3_1_1
    assert decoded.contexts.preauth == PreauthIntegrityCapabilities((1,), salt)
    assert decoded.contexts.encryption == EncryptionCapabilities((2, 1, 4))
    assert decoded.contexts.signing == SigningCapabilities((2, 1))
    assert decoded.contexts.netname == "fileserver.example.com"


def test_negotiate_request_bad_context_offset():
    req = SMB3NegotiateRequest()
    req["client_guid"] = CLIENT_GUID
    req["dialects"] = [0x0311]
    preauth = SMB2PreauthIntegrityCapabilities()
    preauth["hash_algorithms"] = [1]
    preauth["salt"] = b"s" * 32
    req["negotiate_context_list"] = [
        _context(NegotiateContextType.PREAUTH_INTEGRITY_CAPABILITIES, preauth)]
    raw = bytearray(wire.from_smbprotocol(Command.NEGOTIATE, req))
    struct.pack_into("<I", raw, 64 + 28, len(raw) + 8)
    with pytest.raises(SmbError) as err:
        NegotiateRequest.decode(bytes(raw))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_negotiate_response_decodes_with_smbprotocol():
    salt = os.urandom(32)
    resp = NegotiateResponse(
        security_mode=1, dialect=Dialect.SMB_3_1_1, server_guid=CLIENT_GUID.bytes_le,
        capabilities=0x2F, max_transact_size=8 << 20, max_read_size=8 << 20,
        max_write_size=8 << 20, system_time=132223104000000000,
        server_start_time=0, security_buffer=b"\x60\x28" + bytes(40),
        contexts=((NegotiateContextType.PREAUTH_INTEGRITY_CAPABILITIES,
                   PreauthIntegrityCapabilities((1,), salt).encode()),
                  (NegotiateContextType.ENCRYPTION_CAPABILITIES,
                   EncryptionCapabilities((2,)).encode()),
                  (NegotiateContextType.SIGNING_CAPABILITIES,
                   SigningCapabilities((1,)).encode())))
    parsed = SMB2NegotiateResponse()
    parsed.unpack(resp.encode())
    assert parsed["dialect_revision"].get_value() == 0x0311
    assert parsed["max_read_size"].get_value() == 8 << 20
    assert parsed["buffer"].get_value() == b"\x60\x28" + bytes(40)
    contexts = parsed["negotiate_context_list"].get_value()
    assert [c["context_type"].get_value() for c in contexts] == [1, 2, 8]
    assert contexts[0]["data"].get_value()["salt"].get_value() == salt
    assert contexts[1]["data"].get_value()["ciphers"].get_value() == [2]
    assert contexts[2]["data"].get_value()["signing_algorithms"].get_value() == [1]


def test_session_setup_request_and_response():
    req = SMB2SessionSetupRequest()
    req["flags"] = 1
    req["security_mode"] = 1
    req["capabilities"] = 1
    req["previous_session_id"] = 0x1234
    req["buffer"] = b"NTLMSSP\x00" + bytes(24)
    decoded = SessionSetupRequest.decode(wire.from_smbprotocol(Command.SESSION_SETUP, req))
    assert decoded == SessionSetupRequest(1, 1, 1, 0, 0x1234, b"NTLMSSP\x00" + bytes(24))
    parsed = SMB2SessionSetupResponse()
    parsed.unpack(SessionSetupResponse(0, b"token").encode())
    assert parsed["security_buffer_offset"].get_value() == 72
    assert parsed["buffer"].get_value() == b"token"


def test_tree_connect_request_and_response():
    req = SMB2TreeConnectRequest()
    req["buffer"] = "\\\\server\\share".encode("utf-16-le")
    decoded = TreeConnectRequest.decode(wire.from_smbprotocol(Command.TREE_CONNECT, req))
    assert decoded.path == "\\\\server\\share"
    assert decoded.share_name == "share"
    parsed = SMB2TreeConnectResponse()
    parsed.unpack(TreeConnectResponse(1, 0x30, 0x10, 0x1F01FF).encode())
    assert parsed["share_type"].get_value() == 1
    assert parsed["capabilities"].get_value() == 0x10
    assert parsed["maximal_access"].get_value() == 0x1F01FF


def _negotiate_311(*contexts: tuple[int, bytes]) -> bytes:
    """A 3.1.1 NEGOTIATE laid out by hand (2.2.3, 2.2.3.1)."""
    body = bytearray(struct.pack("<HHHHI16sIHH", 36, 1, 1, 0, 0, b"g" * 16, 0,
                                 len(contexts), 0) + struct.pack("<H", 0x0311))
    body += bytes(-(64 + len(body)) % 8)
    struct.pack_into("<I", body, 28, 64 + len(body))
    for index, (ctx_type, data) in enumerate(contexts):
        if index:
            body += bytes(-(64 + len(body)) % 8)
        body += struct.pack("<HHI", ctx_type, len(data), 0) + data
    return wire.message(Command.NEGOTIATE, bytes(body))


PREAUTH = (NegotiateContextType.PREAUTH_INTEGRITY_CAPABILITIES,
           struct.pack("<HHH", 1, 4, HashAlgorithm.SHA_512) + b"salt")
NETNAME = NegotiateContextType.NETNAME_NEGOTIATE_CONTEXT_ID


def test_hand_laid_negotiate_311():
    decoded = NegotiateRequest.decode(_negotiate_311(PREAUTH, (NETNAME, "srv".encode("utf-16-le"))))
    assert decoded.contexts.preauth == PreauthIntegrityCapabilities((1,), b"salt")
    assert decoded.contexts.netname == "srv"


# Reported, not fixed here: 3.3.5.4 says "if the context is
# SMB2_NETNAME_NEGOTIATE_CONTEXT_ID ... the server MUST ignore the negotiate
# context": a malformed or repeated one must not fail the NEGOTIATE.
@pytest.mark.parametrize("contexts", [
    (PREAUTH, (NETNAME, b"abc")),                         # odd length
    (PREAUTH, (NETNAME, b"\x00\xd8")),                  # unpaired surrogate
    (PREAUTH, (NETNAME, b"a\x00"), (NETNAME, b"b\x00")),  # twice
], ids=["odd", "surrogate", "duplicate"])
def test_netname_context_is_ignored(contexts):
    NegotiateRequest.decode(_negotiate_311(*contexts))
