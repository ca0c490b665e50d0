"""LOCK ([MS-SMB2] 2.2.26, 2.2.26.1, 2.2.27)."""

import struct

import pytest
from impacket.smb3structs import SMB2_LOCK_ELEMENT, SMB2Lock
from smbprotocol.open import SMB2LockElement, SMB2LockRequest, SMB2LockResponse

from smbcad.proto.constants import Command
from smbcad.proto.create import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.lock import LockElement, LockFlags, LockRequest, LockResponse
from smbcad.proto.status import NtStatus

from . import wire


def test_decode_hand_laid_with_sequence_split():
    # LockSequenceNumber 0xA (low 4 bits), LockSequenceIndex 64 (high 28 bits).
    body = (struct.pack("<HHIQQ", 48, 2, (64 << 4) | 0xA, 1, 2)
            + struct.pack("<QQII", 0, 100, LockFlags.EXCLUSIVE_LOCK | LockFlags.FAIL_IMMEDIATELY, 0)
            + struct.pack("<QQII", 200, 10, LockFlags.SHARED_LOCK | LockFlags.FAIL_IMMEDIATELY, 0))
    req = LockRequest.decode(wire.message(Command.LOCK, body))
    assert req.lock_sequence_number == 0xA
    assert req.lock_sequence_index == 64
    assert req.file_id == FileId(1, 2)
    assert req.locks == (LockElement(0, 100, 0x12), LockElement(200, 10, 0x11))
    assert not req.locks[0].is_unlock


def test_decode_smbprotocol():
    element = SMB2LockElement()
    element["offset"] = 4096
    element["length"] = 512
    element["flags"] = LockFlags.UNLOCK
    req = SMB2LockRequest()
    req["lock_sequence"] = (3 << 4) | 1
    req["file_id"] = struct.pack("<QQ", 5, 6)
    req["locks"] = [element]
    decoded = LockRequest.decode(wire.from_smbprotocol(Command.LOCK, req))
    assert decoded.locks == (LockElement(4096, 512, LockFlags.UNLOCK),)
    assert decoded.locks[0].is_unlock
    assert (decoded.lock_sequence_number, decoded.lock_sequence_index) == (1, 3)


def test_decode_impacket():
    element = SMB2_LOCK_ELEMENT()
    element["Offset"] = 1
    element["Length"] = 2
    element["Flags"] = LockFlags.SHARED_LOCK
    req = SMB2Lock()
    req["LockCount"] = 1
    req["FileID"] = struct.pack("<QQ", 7, 8)
    req["Locks"] = element.getData()
    assert LockRequest.decode(wire.message(Command.LOCK, req.getData())).locks == (
        LockElement(1, 2, 1),)


@pytest.mark.parametrize("body", [
    b"",
    struct.pack("<HHIQQ", 48, 0, 0, 1, 2) + bytes(24),      # LockCount 0 (2.2.26)
    struct.pack("<HHIQQ", 48, 2, 0, 1, 2) + bytes(24),      # second element missing
    struct.pack("<HHIQQ", 48, 1, 0, 1, 2) + bytes(23),
    struct.pack("<HHIQQ", 24, 1, 0, 1, 2) + bytes(24),      # bad StructureSize
])
def test_malformed(body):
    with pytest.raises(SmbError) as err:
        LockRequest.decode(wire.message(Command.LOCK, body))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_valid_flag_combinations_table():
    assert LockFlags.SHARED_LOCK | LockFlags.EXCLUSIVE_LOCK not in LockFlags.VALID_COMBINATIONS
    assert LockFlags.UNLOCK | LockFlags.FAIL_IMMEDIATELY not in LockFlags.VALID_COMBINATIONS
    assert len(LockFlags.VALID_COMBINATIONS) == 5


def test_response():
    body = LockResponse().encode()
    assert body == b"\x04\x00\x00\x00"
    parsed = SMB2LockResponse()
    parsed.unpack(body)
    assert parsed["structure_size"].get_value() == 4
