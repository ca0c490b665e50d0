"""CHANGE_NOTIFY ([MS-SMB2] 2.2.35, 2.2.36) and FILE_NOTIFY_INFORMATION ([MS-FSCC] 2.7.1)."""

import struct

import pytest
from smbprotocol.change_notify import (
    FileNotifyInformation as SpFileNotifyInformation, SMB2ChangeNotifyRequest,
    SMB2ChangeNotifyResponse)

from smbcad.proto.change_notify import (
    ChangeNotifyFlags, ChangeNotifyRequest, ChangeNotifyResponse, CompletionFilter, FileAction,
    FileNotifyInformation, encode_file_notify_information)
from smbcad.proto.constants import Command
from smbcad.proto.create import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus

from . import wire


def test_decode_hand_laid():
    body = struct.pack("<HHIQQII", 32, 1, 4096, 1, 2, 0x17, 0xFFFFFFFF)
    req = ChangeNotifyRequest.decode(wire.message(Command.CHANGE_NOTIFY, body))
    assert req == ChangeNotifyRequest(1, 4096, FileId(1, 2), 0x17)
    assert req.watch_tree


def test_decode_smbprotocol():
    req = SMB2ChangeNotifyRequest()
    req["flags"] = ChangeNotifyFlags.WATCH_TREE
    req["output_buffer_length"] = 1024
    req["file_id"] = struct.pack("<QQ", 3, 4)
    req["completion_filter"] = CompletionFilter.FILE_NAME | CompletionFilter.DIR_NAME
    decoded = ChangeNotifyRequest.decode(wire.from_smbprotocol(Command.CHANGE_NOTIFY, req))
    assert decoded == ChangeNotifyRequest(1, 1024, FileId(3, 4), 3)


@pytest.mark.parametrize("body", [b"", struct.pack("<HHIQQII", 32, 0, 0, 1, 2, 1, 0)[:31],
                                  struct.pack("<HHIQQII", 33, 0, 0, 1, 2, 1, 0)])
def test_malformed(body):
    with pytest.raises(SmbError) as err:
        ChangeNotifyRequest.decode(wire.message(Command.CHANGE_NOTIFY, body))
    assert err.value.status == NtStatus.INVALID_PARAMETER


def test_file_notify_information_exact_bytes():
    out = encode_file_notify_information([
        FileNotifyInformation(FileAction.RENAMED_OLD_NAME, "a"),      # 12 + 2 -> padded to 16
        FileNotifyInformation(FileAction.RENAMED_NEW_NAME, "bc")])    # 12 + 4, last: no pad
    assert out == (struct.pack("<III", 16, 4, 2) + "a".encode("utf-16-le") + bytes(2)
                   + struct.pack("<III", 0, 5, 4) + "bc".encode("utf-16-le"))
    assert encode_file_notify_information([]) == b""


def test_file_notify_information_decodes_with_smbprotocol():
    names = ["new file.txt", "d\\x", "\u00e9t\u00e9"]
    out = encode_file_notify_information(
        [FileNotifyInformation(FileAction.ADDED, name) for name in names])
    parsed, pos = [], 0
    while True:
        entry = SpFileNotifyInformation()
        entry.unpack(out[pos:])
        parsed.append(entry["file_name"].get_value())
        assert entry["action"].get_value() == FileAction.ADDED
        step = entry["next_entry_offset"].get_value()
        if not step:
            break
        assert step % 4 == 0
        pos += step
    assert parsed == names


def test_response_exact_and_smbprotocol():
    chain = encode_file_notify_information([FileNotifyInformation(FileAction.MODIFIED, "f")])
    body = ChangeNotifyResponse(chain).encode()
    assert body == struct.pack("<HHI", 9, 72, len(chain)) + chain
    parsed = SMB2ChangeNotifyResponse()
    parsed.unpack(body)
    assert parsed["buffer"].get_value() == chain
