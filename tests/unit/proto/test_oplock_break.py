"""OPLOCK_BREAK ([MS-SMB2] 2.2.23, 2.2.24, 2.2.25); impacket is the independent codec."""

import struct

import pytest
from impacket.smb3structs import (
    SMB2LeaseBreakAcknowledgement, SMB2LeaseBreakNotification, SMB2OplockBreakAcknowledgment,
    SMB2OplockBreakNotification)

from smbcad.proto.constants import Command
from smbcad.proto.create import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.oplock_break import (
    LeaseBreakAcknowledgment, LeaseBreakFlags, LeaseBreakNotification, LeaseBreakResponse,
    OplockBreakAcknowledgment, OplockBreakNotification, OplockBreakResponse,
    decode_oplock_break_acknowledgment)
from smbcad.proto.status import NtStatus

from . import wire

KEY = bytes(range(16))


def test_oplock_notification_exact_and_impacket():
    body = OplockBreakNotification(0x01, FileId(1, 2)).encode()
    assert body == struct.pack("<HBBIQQ", 24, 1, 0, 0, 1, 2)
    parsed = SMB2OplockBreakNotification(body)
    assert parsed["OplockLevel"] == 1


def test_lease_notification_exact_and_impacket():
    body = LeaseBreakNotification(3, LeaseBreakFlags.ACK_REQUIRED, KEY, 7, 1).encode()
    assert body == struct.pack("<HHI16sIIIII", 44, 3, 1, KEY, 7, 1, 0, 0, 0)
    parsed = SMB2LeaseBreakNotification(body)
    assert parsed["NewEpoch"] == 3
    assert parsed["LeaseKey"] == KEY
    assert (parsed["CurrentLeaseState"], parsed["NewLeaseState"]) == (7, 1)


def test_decode_oplock_acknowledgment():
    ack = SMB2OplockBreakAcknowledgment()
    ack["OplockLevel"] = 0
    ack["FileID"] = struct.pack("<QQ", 5, 6)
    decoded = decode_oplock_break_acknowledgment(wire.message(Command.OPLOCK_BREAK, ack.getData()))
    assert decoded == OplockBreakAcknowledgment(0, FileId(5, 6))


def test_decode_lease_acknowledgment():
    ack = SMB2LeaseBreakAcknowledgement()
    ack["LeaseKey"] = KEY
    ack["LeaseState"] = 1
    raw = wire.message(Command.OPLOCK_BREAK, ack.getData())
    assert decode_oplock_break_acknowledgment(raw) == LeaseBreakAcknowledgment(KEY, 1)
    # 2.0.2 has no leases: a 36-byte acknowledgment is not an oplock one either.
    with pytest.raises(SmbError):
        decode_oplock_break_acknowledgment(raw, lease_allowed=False)


@pytest.mark.parametrize("body", [
    b"", b"\x18", struct.pack("<HBBIQQ", 24, 0, 0, 0, 1, 2)[:23],
    struct.pack("<HHI16sIQ", 36, 0, 0, KEY, 1, 0)[:35],
    struct.pack("<HBBIQQ", 44, 0, 0, 0, 1, 2) + bytes(20),
])
def test_malformed(body):
    with pytest.raises(SmbError) as err:
        decode_oplock_break_acknowledgment(wire.message(Command.OPLOCK_BREAK, body))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_responses_exact_and_impacket():
    body = OplockBreakResponse(0x08, FileId(7, 8)).encode()
    assert body == struct.pack("<HBBIQQ", 24, 8, 0, 0, 7, 8)
    assert SMB2OplockBreakNotification(body)["OplockLevel"] == 8
    body = LeaseBreakResponse(KEY, 3).encode()
    assert body == struct.pack("<HHI16sIQ", 36, 0, 0, KEY, 3, 0)
    assert SMB2LeaseBreakAcknowledgement(body)["LeaseState"] == 3
