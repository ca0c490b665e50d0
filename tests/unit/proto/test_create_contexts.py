"""SMB2_CREATE_CONTEXT chains and the typed bundle ([MS-SMB2] 2.2.13.2, 2.2.14.2, 3.3.5.9)."""

import struct
import uuid

import pytest
from smbprotocol.create_contexts import (
    SMB2CreateAppInstanceId, SMB2CreateAppInstanceVersion, SMB2CreateContextRequest,
    SMB2CreateDurableHandleReconnect, SMB2CreateDurableHandleReconnectV2,
    SMB2CreateDurableHandleRequest, SMB2CreateQueryOnDiskIDResponse, SMB2CreateRequestLease,
    SMB2CreateResponseLease)

from smbcad.proto.create_contexts import (
    AppInstanceVersion, ContextName, CreateContext, CreateContexts, FileId, LeaseRequest,
    LeaseResponse, MaximalAccessRequest, durable_handle_response, durable_handle_response_v2,
    encode_create_contexts, maximal_access_response, parse_create_contexts,
    query_on_disk_id_response, split_create_contexts)
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

from . import wire

GUID = uuid.UUID("0c5a4d0e-1a2b-4c3d-8e9f-a0b1c2d3e4f5").bytes_le


def _invalid(buf):
    with pytest.raises(SmbError) as err:
        parse_create_contexts(buf)
    assert err.value.status == NtStatus.INVALID_PARAMETER


# --- the chain --------------------------------------------------------------

def test_hand_laid_single_context():
    # Next=0, NameOffset=16, NameLength=4, Reserved=0, DataOffset=24, DataLength=8.
    buf = (bytes.fromhex("00000000 1000 0400 0000 1800 08000000") + b"AlSi" + bytes(4)
           + struct.pack("<Q", 1 << 20))
    ctx = parse_create_contexts(buf)
    assert ctx.allocation_size == 1 << 20
    assert ctx.entries == (CreateContext(b"AlSi", struct.pack("<Q", 1 << 20)),)


def test_every_known_tag():
    lease_v1 = struct.pack("<16sIIQ", b"L" * 16, 3, 0, 0)
    chain = wire.context_chain(
        (b"ExtA", b"ea-bytes"), (b"SecD", b"sd-bytes"), (b"AlSi", struct.pack("<Q", 7)),
        (b"MxAc", b""), (b"TWrp", struct.pack("<Q", 99)), (b"QFid", b""), (b"RqLs", lease_v1),
        (ContextName.APP_INSTANCE_ID, struct.pack("<HH16s", 20, 0, GUID)),
        (ContextName.APP_INSTANCE_VERSION, struct.pack("<HHIQQ", 24, 0, 0, 5, 6)),
        (ContextName.SVHDX_OPEN_DEVICE_CONTEXT, b"svhdx"), (ContextName.POSIX, b"\xff\x01\x00\x00"),
        (b"DHnQ", bytes(16)))
    ctx = parse_create_contexts(chain)
    assert ctx.ea_buffer == b"ea-bytes" and ctx.sd_buffer == b"sd-bytes"
    assert ctx.allocation_size == 7
    assert ctx.query_maximal_access == MaximalAccessRequest(None)
    assert ctx.timewarp_token == 99
    assert ctx.query_on_disk_id
    assert ctx.lease == LeaseRequest(b"L" * 16, 3, 0, 0, bytes(16), 0, 1)
    assert not ctx.lease.parent_lease_key_set
    assert ctx.app_instance_id == GUID
    assert ctx.app_instance_version == AppInstanceVersion(5, 6)
    assert ctx.svhdx_open_device_context == b"svhdx"
    assert ctx.posix == b"\xff\x01\x00\x00"
    assert ctx.durable_handle_request
    assert ctx.unknown == ()
    ctx.validate()


def test_reconnect_contexts():
    dhnc = parse_create_contexts(wire.context_chain((b"DHnC", struct.pack("<QQ", 5, 6))))
    assert dhnc.durable_handle_reconnect == FileId(5, 6)
    assert dhnc.is_reconnect
    dh2c = parse_create_contexts(wire.context_chain(
        (b"DH2C", struct.pack("<QQ16sI", 7, 8, GUID, 2))))
    assert dh2c.durable_handle_reconnect_v2.file_id == FileId(7, 8)
    assert dh2c.durable_handle_reconnect_v2.create_guid == GUID
    assert dh2c.durable_handle_reconnect_v2.persistent
    assert dh2c.is_reconnect
    assert not CreateContexts().is_reconnect


def test_smbprotocol_encoded_contexts():
    """smbprotocol pads every context, the last one included."""
    dhnq = SMB2CreateDurableHandleRequest()
    lease = SMB2CreateRequestLease()
    lease["lease_key"] = b"k" * 16
    lease["lease_state"] = 7
    app = SMB2CreateAppInstanceId()
    app["app_instance_id"] = GUID
    version = SMB2CreateAppInstanceVersion()
    version["app_instance_version_high"] = 10
    version["app_instance_version_low"] = 11
    reconnect = SMB2CreateDurableHandleReconnect()
    reconnect["data"] = struct.pack("<QQ", 1, 2)
    ctx = parse_create_contexts(SMB2CreateContextRequest.pack_multiple(
        [dhnq, lease, app, version, reconnect]))
    assert ctx.durable_handle_request
    assert ctx.lease.lease_key == b"k" * 16 and ctx.lease.version == 1
    assert ctx.app_instance_id == GUID
    assert ctx.app_instance_version == AppInstanceVersion(10, 11)
    assert ctx.durable_handle_reconnect == FileId(1, 2)


def test_smbprotocol_dh2c():
    dh2c = SMB2CreateDurableHandleReconnectV2()
    dh2c["file_id"] = struct.pack("<QQ", 3, 4)
    dh2c["create_guid"] = uuid.UUID(bytes_le=GUID)
    dh2c["flags"] = 2
    ctx = parse_create_contexts(SMB2CreateContextRequest.pack_multiple([dh2c]))
    assert ctx.durable_handle_reconnect_v2.file_id == FileId(3, 4)
    # GUIDs are kept as the 16 raw bytes on the wire (smbprotocol packs UUIDs in RFC order).
    assert ctx.durable_handle_reconnect_v2.create_guid == dh2c["create_guid"].pack()


def test_unknown_tags_recorded_and_ignored():
    ctx = parse_create_contexts(wire.context_chain((b"AAPL", b"x" * 12), (b"AAPL", b""),
                                                   (b"QFid", b"")))
    assert ctx.unknown == (b"AAPL", b"AAPL")
    assert ctx.query_on_disk_id
    assert len(ctx.entries) == 3


def test_empty_data_ignores_data_offset():
    buf = struct.pack("<IHHHHI", 0, 16, 4, 0, 0xFFFF, 0) + b"QFid"
    assert parse_create_contexts(buf).query_on_disk_id


def test_trailing_bytes_after_last_context_are_ignored():
    buf = wire.context_chain((b"QFid", b"")) + bytes(12)
    assert split_create_contexts(buf) == (CreateContext(b"QFid", b""),)


@pytest.mark.parametrize("buf", [
    b"\x00" * 15,                                                    # shorter than a header
    struct.pack("<IHHHHI", 0, 16, 3, 0, 0, 0) + b"abc\x00",           # NameLength < 4
    struct.pack("<IHHHHI", 0, 16, 0, 0, 0, 0),                        # NameLength 0
    struct.pack("<IHHHHI", 0, 16, 8, 0, 0, 0) + b"QFid",              # name past the context
    struct.pack("<IHHHHI", 0, 8, 4, 0, 0, 0) + b"QFid",               # name inside the header
    struct.pack("<IHHHHI", 0, 16, 4, 0, 24, 9) + b"AlSi" + bytes(12),   # data past the context
    struct.pack("<IHHHHI", 0, 16, 4, 0, 4, 8) + b"AlSi" + bytes(8),     # data inside the header
    struct.pack("<IHHHHI", 64, 16, 4, 0, 0, 0) + b"QFid",             # Next past the buffer
    struct.pack("<IHHHHI", 8, 16, 4, 0, 0, 0) + b"QFid" + bytes(8),   # Next inside the header
    # Next = 24, so the second context starts at 24 and is truncated.
    struct.pack("<IHHHHI", 24, 16, 4, 0, 0, 0) + b"QFid" + bytes(4) + b"\x00" * 8,
    # A first context whose data spills into the second (data must end by Next).
    struct.pack("<IHHHHI", 24, 16, 4, 0, 16, 16) + b"ExtA" + bytes(4)
    + struct.pack("<IHHHHI", 0, 16, 4, 0, 0, 0) + b"QFid",
])
def test_malformed_chain(buf):
    _invalid(buf)


@pytest.mark.parametrize("name,data", [
    (b"DHnQ", bytes(15)), (b"DHnC", bytes(8)), (b"DH2Q", bytes(31)), (b"DH2C", bytes(32)),
    (b"AlSi", bytes(4)), (b"TWrp", bytes(9)), (b"MxAc", bytes(4)), (b"QFid", bytes(8)),
    (b"RqLs", bytes(31)), (b"RqLs", bytes(33)), (b"RqLs", bytes(48)), (b"RqLs", bytes(0)),
    (ContextName.APP_INSTANCE_ID, struct.pack("<HH16s", 24, 0, GUID)),
    (ContextName.APP_INSTANCE_ID, bytes(16)),
    (ContextName.APP_INSTANCE_VERSION, struct.pack("<HHIQQ", 20, 0, 0, 1, 1)),
])
def test_bad_context_data(name, data):
    _invalid(wire.context_chain((name, data)))


def test_duplicate_known_tag():
    _invalid(wire.context_chain((b"QFid", b""), (b"QFid", b"")))
    _invalid(wire.context_chain((b"RqLs", bytes(32)), (b"RqLs", bytes(52))))


# --- validate() -------------------------------------------------------------

DH2Q = (b"DH2Q", struct.pack("<II8s16s", 0, 2, bytes(8), GUID))
DH2C = (b"DH2C", struct.pack("<QQ16sI", 1, 2, GUID, 0))
DHNQ = (b"DHnQ", bytes(16))
DHNC = (b"DHnC", struct.pack("<QQ", 1, 2))


@pytest.mark.parametrize("pairs", [
    (DH2Q, DHNQ), (DH2Q, DHNC), (DH2Q, DH2C),   # 3.3.5.9.10
    (DH2C, DHNQ), (DH2C, DHNC),                 # 3.3.5.9.12
    (DHNQ, DH2C), (DHNC, DH2Q),                 # 3.3.5.9.6, 3.3.5.9.7
])
def test_validate_rejects(pairs):
    ctx = parse_create_contexts(wire.context_chain(*pairs))
    with pytest.raises(SmbError) as err:
        ctx.validate()
    assert err.value.status == NtStatus.INVALID_PARAMETER


@pytest.mark.parametrize("pairs", [(DHNQ, DHNC), (DH2Q,), (DH2C,), (DHNQ,), (DHNC,), ()])
def test_validate_accepts(pairs):
    ctx = parse_create_contexts(wire.context_chain(*pairs)) if pairs else CreateContexts()
    ctx.validate()


# --- response side ----------------------------------------------------------

def test_encode_chain_exact_bytes():
    out = encode_create_contexts([(b"MxAc", struct.pack("<II", 0, 0x1F01FF)),
                                  (b"QFid", bytes(32))])
    assert out == (struct.pack("<IHHHHI", 32, 16, 4, 0, 24, 8) + b"MxAc" + bytes(4)
                   + struct.pack("<II", 0, 0x1F01FF)
                   + struct.pack("<IHHHHI", 0, 16, 4, 0, 24, 32) + b"QFid" + bytes(4)
                   + bytes(32))


def test_encode_chain_pads_between_not_after():
    out = encode_create_contexts([(b"AAAAA", b"x"), (b"BBBB", b"")])
    # First: 16 + 5 name, data at 24, one byte -> 25, padded to 32.
    assert struct.unpack_from("<IHHHHI", out, 0) == (32, 16, 5, 0, 24, 1)
    assert out[25:32] == bytes(7)
    # Last: no data, DataOffset 0, no trailing pad.
    assert struct.unpack_from("<IHHHHI", out, 32) == (0, 16, 4, 0, 0, 0)
    assert len(out) == 32 + 20
    assert encode_create_contexts([]) == b""


def test_encode_then_split_round_trip():
    pairs = [CreateContext(b"RqLs", bytes(range(52))), CreateContext(b"DHnQ", bytes(8)),
             CreateContext(ContextName.APP_INSTANCE_ID, b"y" * 20), CreateContext(b"QFid", b"")]
    assert split_create_contexts(encode_create_contexts(pairs)) == tuple(pairs)


def test_response_builders_exact_bytes():
    assert durable_handle_response() == (b"DHnQ", bytes(8))
    assert maximal_access_response(NtStatus.NONE_MAPPED, 0) == (
        b"MxAc", struct.pack("<II", 0xC0000073, 0))
    assert query_on_disk_id_response(0x1234, 0x99) == (
        b"QFid", struct.pack("<QQ", 0x1234, 0x99) + bytes(16))
    assert durable_handle_response_v2(60000, 2) == (b"DH2Q", struct.pack("<II", 60000, 2))


def test_lease_response_v1_and_v2():
    v1 = LeaseResponse(b"k" * 16, 5, 2).encode()
    assert v1 == b"k" * 16 + struct.pack("<IIQ", 5, 2, 0)
    parsed = SMB2CreateResponseLease()
    parsed.unpack(v1)
    assert parsed["lease_state"].get_value() == 5
    assert parsed["lease_flags"].get_value() == 2
    v2 = LeaseResponse(b"k" * 16, 7, 0, b"p" * 16, epoch=9, version=2).encode()
    assert v2 == b"k" * 16 + struct.pack("<IIQ", 7, 4, 0) + b"p" * 16 + struct.pack("<HH", 9, 0)
    no_parent = LeaseResponse(b"k" * 16, 1, 2, version=2).encode()
    assert struct.unpack_from("<I", no_parent, 20)[0] == 2
    assert LeaseResponse(b"k" * 16, 1).context().name == b"RqLs"


def test_query_on_disk_id_response_decodes_with_smbprotocol():
    parsed = SMB2CreateQueryOnDiskIDResponse()
    parsed.unpack(query_on_disk_id_response(77, 88).data)
    assert parsed["disk_file_id"].get_value() == 77
    assert parsed["volume_id"].get_value() == 88


def test_file_id_helpers():
    fid = FileId(0x0102030405060708, 0x1112131415161718)
    assert FileId.unpack_from(fid.encode()) == fid
    assert fid.encode() == struct.pack("<QQ", fid.persistent, fid.volatile)
