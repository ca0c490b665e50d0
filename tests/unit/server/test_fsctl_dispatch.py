"""The IOCTL command around the FSCTL table ([MS-SMB2] 3.3.5.15): checks that
apply to every FSCTL, the FileId rules, unknown CtlCodes, response framing."""

import asyncio
import struct

import pytest

from smbcad.proto.errors import SmbError
from smbcad.proto.ioctl import IoctlFlags
from smbcad.proto.status import NtStatus as S
from smbcad.server.commands import ioctl
from smbcad.server.context import Pending, Reply
from smbcad.server.fsctl_common import WINDOWS_ALLOWED, Fsctl, unsupported_status
from .test_fsctl_harness import NO_FILE_ID, harness, ioctl_message  # noqa: F401  (fixture)

_RESPONSE = struct.Struct("<HHIQQIIIIII")


def run(harness, message):
    """(status, response fields, output) for one IOCTL through ``ioctl.handle``."""
    try:
        result = ioctl.handle(harness.ctx(message))
    except SmbError as err:
        return err.status, None, None
    if isinstance(result, Pending):
        result = asyncio.run(result.work)
    status = S.SUCCESS
    if isinstance(result, Reply):
        result, status = result.body, result.status
    fields = _RESPONSE.unpack_from(result)
    offset, count = fields[7] - 64, fields[8]
    return status, fields, bytes(result[offset:offset + count])


def test_not_fsctl_and_oversized(harness):
    fh = harness.open("f")
    msg = ioctl_message(Fsctl.GET_COMPRESSION, fh.file_id, flags=IoctlFlags.IS_IOCTL)
    assert run(harness, msg)[0] == S.NOT_SUPPORTED
    big = ioctl_message(Fsctl.GET_COMPRESSION, fh.file_id, max_output=(8 << 20) + 1)
    assert run(harness, big)[0] == S.INVALID_PARAMETER
    big_in = ioctl_message(Fsctl.GET_COMPRESSION, fh.file_id, max_input=(8 << 20) + 1)
    assert run(harness, big_in)[0] == S.INVALID_PARAMETER


def test_no_file_id_fsctls_need_all_ones(harness):
    """bug14788.NETWORK_INTERFACE: INVALID_PARAMETER before BUFFER_TOO_SMALL."""
    for max_output in (0xFFFF, 1):
        msg = ioctl_message(Fsctl.QUERY_NETWORK_INTERFACE_INFO, ((1 << 63) - 1, (1 << 63) - 1),
                            max_output=max_output)
        assert run(harness, msg)[0] == S.INVALID_PARAMETER
    status, fields, out = run(harness, ioctl_message(Fsctl.QUERY_NETWORK_INTERFACE_INFO,
                                                     NO_FILE_ID, max_output=0xFFFF))
    assert status == S.SUCCESS and (fields[3], fields[4]) == tuple(NO_FILE_ID)
    assert len(out) % 152 == 0
    if out:
        small = ioctl_message(Fsctl.QUERY_NETWORK_INTERFACE_INFO, NO_FILE_ID, max_output=1)
        assert run(harness, small)[0] == S.BUFFER_TOO_SMALL


def test_dfs_without_dfs(harness):
    assert run(harness, ioctl_message(Fsctl.DFS_GET_REFERRALS, NO_FILE_ID))[0] == \
        S.FS_DRIVER_REQUIRED


def test_unknown_fsctls(harness):
    fh = harness.open("f")
    closed_id = (fh.persistent_id, fh.volatile_id + 99)
    assert run(harness, ioctl_message(0x0009003F, closed_id))[0] == S.FILE_CLOSED
    # Allowed by Windows, not implemented by the file system (FSCTL_OFFLOAD_READ):
    assert run(harness, ioctl_message(0x00094264, fh.file_id))[0] == S.INVALID_DEVICE_REQUEST
    # Not on the allow list at all (smbtorture's private FSCTLs, made-up codes):
    assert run(harness, ioctl_message(0x83840004, fh.file_id))[0] == S.NOT_SUPPORTED


@pytest.mark.parametrize("code", sorted(WINDOWS_ALLOWED))
def test_allow_list_is_invalid_device_request(code):
    assert unsupported_status(code) == S.INVALID_DEVICE_REQUEST


def test_response_echoes_the_open_and_limits_output(harness):
    fh = harness.open("f")
    status, fields, out = run(harness, ioctl_message(Fsctl.GET_COMPRESSION, fh.file_id,
                                                     max_output=2))
    assert status == S.SUCCESS and out == b"\x00\x00"
    assert fields[:5] == (49, 0, Fsctl.GET_COMPRESSION, fh.persistent_id, fh.volatile_id)
    assert fields[5:9] == (112, 0, 112, 2)
    key = run(harness, ioctl_message(Fsctl.SRV_REQUEST_RESUME_KEY, fh.file_id, max_output=32))
    assert key[0] == S.SUCCESS and len(key[2]) == 32


def test_status_with_body_and_pending(harness):
    """A copy answers through Pending; an invalid one carries the limits with
    STATUS_INVALID_PARAMETER in an IOCTL response, not an error response."""
    src, dst = harness.open("src", b"0123456789"), harness.open("dst")
    key = run(harness, ioctl_message(Fsctl.SRV_REQUEST_RESUME_KEY, src.file_id, max_output=32))[2]
    good = key[:24] + struct.pack("<II", 1, 0) + struct.pack("<QQII", 0, 0, 10, 0)
    status, _, out = run(harness, ioctl_message(Fsctl.SRV_COPYCHUNK_WRITE, dst.file_id, good, 12))
    assert (status, struct.unpack("<III", out)) == (S.SUCCESS, (1, 0, 10))
    assert (harness.root / "dst").read_bytes() == b"0123456789"
    bad = key[:24] + struct.pack("<II", 1, 0) + struct.pack("<QQII", 0, 0, 0, 0)
    status, _, out = run(harness, ioctl_message(Fsctl.SRV_COPYCHUNK, dst.file_id, bad, 12))
    assert (status, struct.unpack("<III", out)) == (S.INVALID_PARAMETER, (256, 1 << 20, 16 << 20))


def test_buffer_overflow_keeps_its_ranges(harness):
    fh = harness.open("f")
    assert run(harness, ioctl_message(Fsctl.SET_SPARSE, fh.file_id, b"", 0))[0] == S.SUCCESS
    for index in range(3):
        harness.fs.write(fh.handle, (2 * index + 1) * 65536, b"y")
    query = struct.pack("<QQ", 0, 1 << 20)
    message = ioctl_message(Fsctl.QUERY_ALLOCATED_RANGES, fh.file_id, query, 32)
    status, _, out = run(harness, message)
    assert status == S.BUFFER_OVERFLOW and len(out) == 32
