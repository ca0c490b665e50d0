"""FSCTL_LMR_REQUEST_RESILIENCY ([MS-SMB2] 3.3.5.15.9) through the IOCTL
command: the checks, the open becoming resilient, the empty output, and the
handle store commit for a persistent open."""

import asyncio
import struct

import pytest

from smbcad.proto.constants import Dialect
from smbcad.proto.status import NtStatus as S
from smbcad.server import durable
from smbcad.server.commands import ioctl
from smbcad.server.context import Pending
from smbcad.server.fsctl_common import Fsctl
from smbcad.server.fsctl_resiliency import NetworkResiliencyRequest
from .test_fsctl_dispatch import run
from .test_fsctl_harness import harness, ioctl_message  # noqa: F401  (fixture)

CLIENT_GUID = bytes(range(16, 32))


def resiliency(file_id, timeout_ms: int = 1000, size: int = 8) -> bytes:
    data = struct.pack("<II", timeout_ms, 0)[:size]
    return ioctl_message(Fsctl.LMR_REQUEST_RESILIENCY, file_id, data, max_output=0)


@pytest.fixture
def opened(harness):
    harness.connection.client_guid = CLIENT_GUID
    return harness.open("vm.vhdx")


def test_request_layout():
    assert NetworkResiliencyRequest(1000).encode() == b"\xe8\x03\x00\x00" + bytes(4)
    assert NetworkResiliencyRequest.decode(b"\x10\x27\x00\x00\x00\x00\x00\x00").timeout_ms == 10000


def test_grants_resiliency_with_no_output(harness, opened):
    """smb2.lock.replay_broken_windows: Timeout 1000, MaxOutputResponse 0."""
    opened.durable = True
    status, fields, out = run(harness, resiliency(opened.file_id, 1000))
    assert status == S.SUCCESS and out == b"" and fields[8] == 0      # OutputCount 0
    assert opened.resilient and not opened.durable
    assert opened.resiliency_timeout_ms == 1000
    assert opened.client_guid == CLIENT_GUID and opened.durable_owner


def test_timeout_zero_takes_the_default(harness, opened):
    assert run(harness, resiliency(opened.file_id, 0))[0] == S.SUCCESS
    assert opened.resiliency_timeout_ms == durable.DEFAULT_RESILIENCY_TIMEOUT_MS


@pytest.mark.parametrize("timeout_ms, size, expected", [
    (1000, 7, S.INVALID_PARAMETER),                                   # InputCount < 8
    (1000, 0, S.INVALID_PARAMETER),
    (durable.MAX_RESILIENCY_TIMEOUT_MS + 1, 8, S.INVALID_PARAMETER),
    (durable.MAX_RESILIENCY_TIMEOUT_MS, 8, S.SUCCESS),
])
def test_input_checks(harness, opened, timeout_ms, size, expected):
    assert run(harness, resiliency(opened.file_id, timeout_ms, size))[0] == expected
    assert opened.resilient == (expected == S.SUCCESS)


def test_refused_on_2_0_2(harness, opened):
    harness.connection.dialect = Dialect.SMB_2_0_2
    assert run(harness, resiliency(opened.file_id))[0] == S.INVALID_DEVICE_REQUEST
    assert not opened.resilient


def test_persistent_open_commits_before_the_response(harness, opened, monkeypatch):
    seen = []

    async def commit():
        seen.append(opened.resilient)
    monkeypatch.setattr(durable, "persist", lambda server, open_: commit())
    result = ioctl.handle(harness.ctx(resiliency(opened.file_id)))
    assert isinstance(result, Pending) and seen == []
    asyncio.run(result.work)
    assert seen == [True]
