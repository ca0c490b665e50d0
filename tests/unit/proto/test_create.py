"""CREATE request/response ([MS-SMB2] 2.2.13, 2.2.14)."""

import datetime
import struct
import uuid

import pytest
from smbprotocol.create_contexts import (
    SMB2CreateContextRequest, SMB2CreateDurableHandleRequestV2, SMB2CreateQueryMaximalAccessRequest,
    SMB2CreateRequestLeaseV2)
from smbprotocol.open import SMB2CreateRequest, SMB2CreateResponse

from smbcad.proto.constants import Command, HEADER_SIZE
from smbcad.proto.create import CreateRequest, CreateResponse, FileId
from smbcad.proto.create_contexts import (
    ContextName, LeaseResponse, durable_handle_response_v2, maximal_access_response)
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

from . import wire


def _filetime(dt: datetime.datetime) -> int:
    epoch = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc)
    delta = dt - epoch
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


# --- request: hand-laid bytes ----------------------------------------------

def test_decode_hand_laid_request_with_name():
    name = "a\\b.txt".encode("utf-16-le")
    body = (struct.pack("<HBBIQQ", 57, 0, 0x09, 2, 0, 0xDEADBEEF)
            + struct.pack("<IIIII", 0x0012019F, 0x20, 7, 3, 0x40)
            + struct.pack("<HHII", 0x78, len(name), 0, 0) + name)
    req = CreateRequest.decode(wire.message(Command.CREATE, body))
    assert req.requested_oplock_level == 0x09
    assert req.impersonation_level == 2
    assert req.reserved == 0xDEADBEEF
    assert req.desired_access == 0x0012019F
    assert req.file_attributes == 0x20
    assert req.share_access == 7
    assert req.create_disposition == 3
    assert req.create_options == 0x40
    assert req.name == "a\\b.txt"
    assert req.create_contexts.entries == ()


def test_root_open_with_zero_offset_and_length():
    body = (struct.pack("<HBBIQQIIIIIHHII", 57, 0, 0, 2, 0, 0, 0x80, 0, 7, 1, 1, 0, 0, 0, 0)
            + b"\x00")
    assert CreateRequest.decode(wire.message(Command.CREATE, body)).name == ""


def test_spec_example_4_9_replay_create():
    """The CREATE of [MS-SMB2] 4.9: DH2Q + RqLs v2, CreateContextsLength 132."""
    create_guid = uuid.UUID("33AA3970-EF1A-60A4-4BF1-11F5F9FBBFDB").bytes_le
    lease_key = uuid.UUID("5A0E33E0-478A-9FA7-4286-B52390B5857B").bytes_le
    parent = uuid.UUID("5B4F4EAD-B0E6-B997-4222-50FADEC1FD86").bytes_le
    dh2q = struct.pack("<II8s16s", 0, 0, bytes(8), create_guid)
    rqls = struct.pack("<16sIIQ16sHH", lease_key, 7, 4, 0, parent, 0, 0)
    chain = wire.context_chain((b"DH2Q", dh2q), (b"RqLs", rqls))
    assert len(chain) == 132
    body = wire.create_request("Replay.txt", chain, oplock=0xFF, attributes=0x20,
                               disposition=3)
    fixed = struct.unpack_from("<HHII", body, 0x2C)
    assert fixed == (0x78, 20, 144, 132)       # NameOffset..CreateContextsLength of 4.9
    req = CreateRequest.decode(wire.message(Command.CREATE, body, flags=0x20000000))
    assert req.name == "Replay.txt"
    assert req.desired_access == 0x12019F and req.create_options == 0x40
    ctx = req.create_contexts
    assert ctx.durable_handle_request_v2.create_guid == create_guid
    assert ctx.durable_handle_request_v2.timeout == 0
    assert not ctx.durable_handle_request_v2.persistent
    assert ctx.lease.version == 2 and ctx.lease.lease_state == 7
    assert ctx.lease.lease_key == lease_key and ctx.lease.parent_lease_key == parent
    assert ctx.lease.parent_lease_key_set
    ctx.validate()


def test_decode_smbprotocol_request_with_contexts():
    req = SMB2CreateRequest()
    req["requested_oplock_level"] = 0xFF
    req["impersonation_level"] = 2
    req["desired_access"] = 0x120089
    req["file_attributes"] = 0x80
    req["share_access"] = 7
    req["create_disposition"] = 1
    req["create_options"] = 0x40
    req["buffer_path"] = "dir\\file.txt".encode("utf-16-le")
    lease = SMB2CreateRequestLeaseV2()
    lease["lease_key"] = b"K" * 16
    lease["lease_state"] = 7
    lease["lease_flags"] = 4
    lease["parent_lease_key"] = b"P" * 16
    lease["epoch"] = b"\x03\x00"
    dh2q = SMB2CreateDurableHandleRequestV2()
    dh2q["timeout"] = 5000
    dh2q["flags"] = 2
    dh2q["create_guid"] = uuid.UUID(int=1234)
    mxac = SMB2CreateQueryMaximalAccessRequest()
    mxac["timestamp"] = datetime.datetime(2020, 1, 1)
    req["buffer_contexts"] = SMB2CreateContextRequest.pack_multiple([lease, dh2q, mxac])
    decoded = CreateRequest.decode(wire.from_smbprotocol(Command.CREATE, req))
    assert decoded.name == "dir\\file.txt"
    assert decoded.requested_oplock_level == 0xFF
    assert decoded.desired_access == 0x120089
    ctx = decoded.create_contexts
    assert [e.name for e in ctx.entries] == [b"RqLs", b"DH2Q", b"MxAc"]
    assert ctx.lease.epoch == 3 and ctx.lease.flags == 4
    assert ctx.durable_handle_request_v2.timeout == 5000
    assert ctx.durable_handle_request_v2.persistent
    assert ctx.durable_handle_request_v2.create_guid == dh2q["create_guid"].pack()
    assert ctx.query_maximal_access.timestamp == 132223104000000000


def test_decode_smbprotocol_root_open():
    req = SMB2CreateRequest()
    req["impersonation_level"] = 2
    req["desired_access"] = 0x80
    req["create_disposition"] = 1
    req["buffer_path"] = b"\x00\x00"          # smbprotocol's root: NameLength 0, 2-byte Buffer
    raw = wire.from_smbprotocol(Command.CREATE, req)
    assert struct.unpack_from("<HH", raw, HEADER_SIZE + 0x2C) == (0x78, 0)
    decoded = CreateRequest.decode(raw)
    assert decoded.name == ""


# --- request: malformed ----------------------------------------------------

def _create(body: bytes) -> bytes:
    return wire.message(Command.CREATE, body)


@pytest.mark.parametrize("cut", [0, 2, 55, 56])
def test_truncated_request(cut):
    body = wire.create_request("x")[:cut]
    with pytest.raises(SmbError) as err:
        CreateRequest.decode(_create(body))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_bad_structure_size():
    body = bytearray(wire.create_request("x"))
    body[0] = 56
    with pytest.raises(SmbError) as err:
        CreateRequest.decode(_create(bytes(body)))
    assert err.value.status == NtStatus.INVALID_PARAMETER


@pytest.mark.parametrize("offset,length,status", [
    (0x78, 3, NtStatus.INVALID_PARAMETER),       # odd NameLength (3.3.5.9)
    (0x78, 200, NtStatus.INVALID_PARAMETER),     # name past the message
    (0x40, 2, NtStatus.INVALID_PARAMETER),       # NameOffset inside the fixed part
    (0, 2, NtStatus.INVALID_PARAMETER),          # name at offset 0 with a length
    (0xFFFF, 2, NtStatus.INVALID_PARAMETER),
])
def test_bad_name_fields(offset, length, status):
    body = bytearray(wire.create_request("abcd"))
    struct.pack_into("<HH", body, 0x2C, offset, length)
    with pytest.raises(SmbError) as err:
        CreateRequest.decode(_create(bytes(body)))
    assert err.value.status == status


def test_unpaired_surrogate_name_is_object_name_invalid():
    body = bytearray(wire.create_request("ab"))
    body[56:58] = b"\x00\xd8"                 # a lone high surrogate
    with pytest.raises(SmbError) as err:
        CreateRequest.decode(_create(bytes(body)))
    assert err.value.status == NtStatus.OBJECT_NAME_INVALID


@pytest.mark.parametrize("offset,length", [(0x78 + 8, 500), (0x20, 8), (0, 8), (0x10000 - 8, 16)])
def test_bad_context_fields(offset, length):
    chain = wire.context_chain((b"QFid", b""))
    body = bytearray(wire.create_request("abcd", chain))
    struct.pack_into("<II", body, 0x30, offset, length)
    with pytest.raises(SmbError) as err:
        CreateRequest.decode(_create(bytes(body)))
    assert err.value.status == NtStatus.INVALID_PARAMETER


# --- response ---------------------------------------------------------------

def test_response_without_contexts_exact_bytes():
    resp = CreateResponse(oplock_level=0, flags=0, create_action=1, creation_time=1,
                          last_access_time=2, last_write_time=3, change_time=4,
                          allocation_size=4096, end_of_file=10, file_attributes=0x20,
                          file_id=FileId(0x1122, 0x3344))
    expected = (struct.pack("<HBBI", 89, 0, 0, 1) + struct.pack("<QQQQQQ", 1, 2, 3, 4, 4096, 10)
                + struct.pack("<II", 0x20, 0) + struct.pack("<QQ", 0x1122, 0x3344)
                + struct.pack("<II", 0, 0) + b"\x00")
    assert resp.encode() == expected


def test_spec_example_4_9_response_bytes_and_smbprotocol_decode():
    """The CREATE response of [MS-SMB2] 4.9: RqLs v2 then DH2Q, offset 0x98, length 0x70."""
    when = _filetime(datetime.datetime(2012, 5, 11, 9, 23, 5, 943750,
                                       tzinfo=datetime.timezone.utc))
    lease_key = uuid.UUID("5A0E33E0-478A-9FA7-4286-B52390B5857B").bytes_le
    parent = uuid.UUID("5B4F4EAD-B0E6-B997-4222-50FADEC1FD86").bytes_le
    resp = CreateResponse(
        0xFF, 0, 1, when, when, when, when, 0, 0, 0x20,
        FileId(0x10000010000001D, 0x10100000001),
        (LeaseResponse(lease_key, 7, 0, parent, epoch=1, version=2).context(),
         durable_handle_response_v2(60000, 0)))
    body = resp.encode()
    assert struct.unpack_from("<II", body, 80) == (0x98, 0x70)
    assert len(body) == 88 + 0x70
    rqls = body[88:88 + 80]
    assert rqls[:16] == struct.pack("<IHHHHI", 80, 16, 4, 0, 24, 52)
    assert rqls[16:20] == b"RqLs" and rqls[20:24] == bytes(4)
    assert rqls[24:76] == struct.pack("<16sIIQ16sHH", lease_key, 7, 4, 0, parent, 1, 0)
    assert rqls[76:80] == bytes(4)                             # ContextPadding (4 bytes)
    assert body[88 + 80:] == (struct.pack("<IHHHHI", 0, 16, 4, 0, 24, 8) + b"DH2Q"
                              + bytes(4) + struct.pack("<II", 60000, 0))
    parsed = SMB2CreateResponse()
    parsed.unpack(body)
    assert parsed["oplock_level"].get_value() == 0xFF
    assert parsed["create_action"].get_value() == 1
    assert parsed["file_id"].get_value() == struct.pack("<QQ", 0x10000010000001D, 0x10100000001)
    assert parsed["create_contexts_offset"].get_value() == 152
    contexts = parsed["buffer"].get_value()
    assert [c["buffer_name"].get_value() for c in contexts] == [b"RqLs", b"DH2Q"]
    lease = contexts[0].get_context_data()
    assert lease["epoch"].get_value() == 1
    assert lease["flags"].get_value() == 4
    assert contexts[1].get_context_data()["timeout"].get_value() == 60000


def test_response_maximal_access_decodes_with_smbprotocol():
    resp = CreateResponse(0, 0, 2, 0, 0, 0, 0, 0, 0, 0x10, FileId(1, 2),
                          (maximal_access_response(0, 0x001F01FF),))
    parsed = SMB2CreateResponse()
    parsed.unpack(resp.encode())
    (mxac,) = parsed["buffer"].get_value()
    assert mxac["buffer_name"].get_value() == ContextName.QUERY_MAXIMAL_ACCESS_REQUEST
    data = mxac.get_context_data()
    assert data["query_status"].get_value() == 0
    assert data["maximal_access"].get_value() == 0x001F01FF


def test_round_trip_through_wire_encoder():
    body = wire.create_request("r\u00e9sum\u00e9.txt", wire.context_chain((b"QFid", b"")),
                               disposition=2)
    req = CreateRequest.decode(wire.message(Command.CREATE, body))
    assert req.name == "r\u00e9sum\u00e9.txt"
    assert req.create_contexts.query_on_disk_id
    assert req.create_disposition == 2
