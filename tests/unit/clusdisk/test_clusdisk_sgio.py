"""SgDevice against a fake kernel (fake_lun.FakeLun.ioctl): the real
sg_io_hdr packing, buffers, retries and resets, no SCSI hardware needed.
The same code runs against LIO in the QEMU lab tier."""

import asyncio
import ctypes
import errno

import pytest

from clusdisk.scsi import cdb, pages
from clusdisk.scsi.errors import ScsiTransportError
from clusdisk.scsi.sense import OutcomeKind
from clusdisk.scsi.sgio import (
    BLKROGET,
    BLKROSET,
    SG_IO_HDR,
    ResetKind,
    SgDevice,
    block_read_only,
    pack_header,
    set_block_read_only,
    unpack_header,
)
from fake_lun import FakeLun, SgIoHdr


def run(coro):
    return asyncio.run(coro)


def test_header_layout_matches_kernel_struct():
    assert SG_IO_HDR.size == ctypes.sizeof(SgIoHdr)
    command = cdb.inquiry(0x83, 0xFC)
    header = pack_header(command, 5000, 0x1000, 0x2000, 0x3000)
    hdr = SgIoHdr.from_buffer(header)
    assert hdr.interface_id == ord("S") and hdr.dxfer_direction == -3
    assert (hdr.cmd_len, hdr.mx_sb_len, hdr.iovec_count, hdr.dxfer_len) == (6, 96, 0, 0xFC)
    assert (hdr.dxferp, hdr.cmdp, hdr.sbp, hdr.timeout) == (0x1000, 0x2000, 0x3000, 5000)
    assert hdr.flags == 0 and hdr.status == 0
    none = SgIoHdr.from_buffer(pack_header(cdb.test_unit_ready(), 1, 0x1000, 0x2000, 0x3000))
    assert none.dxfer_direction == -1 and none.dxfer_len == 0 and none.dxferp is None
    out = SgIoHdr.from_buffer(pack_header(cdb.pr_register(5, ignore_existing=True), 1, 9, 8, 7))
    assert out.dxfer_direction == -2 and out.dxfer_len == 24
    hdr.status, hdr.sb_len_wr, hdr.host_status, hdr.driver_status, hdr.resid = 2, 18, 0, 8, 4
    back = unpack_header(header)
    assert (back.status, back.sb_len_wr, back.driver_status, back.resid) == (2, 18, 8, 4)


def test_commands_through_the_fake_kernel():
    lun = FakeLun()
    a = lun.device(0)
    result = run(a.execute(cdb.test_unit_ready()))
    assert result.outcome.ok and result.attempts == 1
    inq = run(a.execute(cdb.inquiry()))
    assert pages.parse_standard_inquiry(inq.data).product == "LAB-QUORUM"
    vpd = run(a.execute(cdb.inquiry(0x83)))              # resid trims the 0xFF00 buffer
    names = pages.logical_unit_names(pages.parse_device_identification(vpd.data))
    assert names[0] == "naa." + lun.naa.hex()
    cap = pages.parse_read_capacity_16(run(a.execute(cdb.read_capacity_16())).data)
    assert cap.size_bytes == lun.blocks * lun.block_size


def test_reservation_conflict_between_nexuses():
    lun = FakeLun()
    a, b = lun.device(0), lun.device(1)
    assert run(a.execute(cdb.reserve_6())).outcome.ok
    assert run(b.execute(cdb.reserve_6())).outcome.kind is OutcomeKind.RESERVATION_CONFLICT
    assert run(b.execute(cdb.test_unit_ready())).outcome.kind is OutcomeKind.RESERVATION_CONFLICT
    assert run(b.execute(cdb.inquiry())).outcome.ok
    assert run(b.execute(cdb.release_6())).outcome.ok         # non-holder: no effect
    assert lun.scsi2_holder == 0


def test_unit_attention_is_retried_once_then_good():
    lun = FakeLun()
    a, b = lun.device(0), lun.device(1)
    run(a.execute(cdb.reserve_6()))
    run(b.reset(ResetKind.DEVICE))
    assert lun.scsi2_holder is None
    result = run(a.execute(cdb.reserve_6()))
    assert result.outcome.ok and result.attempts == 2       # UA 29/03, then GOOD


def test_retries_are_bounded():
    lun = FakeLun()
    for _ in range(5):
        lun.pending_ua[0].append((0x29, 0x03))
    result = run(lun.device(0, retries=2).execute(cdb.test_unit_ready()))
    assert result.outcome.kind is OutcomeKind.UNIT_ATTENTION and result.attempts == 3
    assert (result.outcome.asc, result.outcome.ascq) == (0x29, 0x03)
    assert run(lun.device(0).execute(cdb.test_unit_ready(), retries=0)).attempts == 1


def test_busy_waits_between_retries():
    sleeps = []

    def busy_ioctl(fd, request, arg, mutate=True):
        SgIoHdr.from_buffer(arg).status = 0x08
        return 0

    async def inline(func, *args):
        return func(*args)

    async def record_sleep(delay):
        sleeps.append(delay)

    device = SgDevice("/dev/x", ioctl=busy_ioctl, open_fd=lambda p, f: 3, close_fd=lambda fd: None,
                      run_blocking=inline, sleep=record_sleep, retries=2, busy_delay_s=0.25)
    result = run(device.execute(cdb.test_unit_ready()))
    assert result.outcome.kind is OutcomeKind.BUSY and sleeps == [0.25, 0.25]


def test_path_down_is_a_transport_error():
    lun = FakeLun(offline={1})
    result = run(lun.device(1, retries=1).execute(cdb.test_unit_ready()))
    assert result.outcome.kind is OutcomeKind.TRANSPORT_ERROR and result.attempts == 2


def test_ioctl_oserror_and_open_failure():
    def failing(fd, request, arg, mutate=True):
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    async def inline(func, *args):
        return func(*args)

    device = SgDevice("/tmp/file", ioctl=failing, open_fd=lambda p, f: 3,
                      close_fd=lambda fd: None, run_blocking=inline)
    outcome = run(device.execute(cdb.test_unit_ready())).outcome
    assert outcome.kind is OutcomeKind.TRANSPORT_ERROR and "Inappropriate" in outcome.detail

    def no_open(path, flags):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    missing = SgDevice("/dev/sg99", open_fd=no_open, run_blocking=inline)
    assert run(missing.execute(cdb.test_unit_ready())).outcome.kind is OutcomeKind.TRANSPORT_ERROR
    with pytest.raises(ScsiTransportError):
        missing.reset_blocking(ResetKind.DEVICE)


def test_open_flags_and_close():
    opened = []

    def record_open(path, flags):
        opened.append((path, flags))
        return 7

    closed = []
    device = SgDevice("/dev/sg0", open_fd=record_open, close_fd=closed.append)
    assert device.fileno() == 7 and device.fileno() == 7
    import os
    assert opened == [("/dev/sg0", os.O_RDWR | os.O_NONBLOCK)]
    device.close()
    device.close()
    assert closed == [7]


def test_hung_command_times_out():
    async def never(func, *args):
        await asyncio.sleep(3600)

    device = SgDevice("/dev/sg0", run_blocking=never, timeout_ms=10, timeout_grace_s=0.0,
                      retries=3)
    result = run(device.execute(cdb.pr_preempt(1, 2, cdb.PrType(5), abort=True)))
    assert result.outcome.kind is OutcomeKind.TRANSPORT_ERROR and result.attempts == 1
    assert "no answer within 10 ms" in result.outcome.detail
    with pytest.raises(ScsiTransportError):
        run(device.reset(ResetKind.DEVICE, timeout_s=0.01))


def test_reset_kinds():
    lun = FakeLun()
    b = lun.device(1)
    run(b.reset(ResetKind.TARGET))
    assert list(lun.pending_ua[0]) == [(0x29, 0x03)]
    with pytest.raises(ScsiTransportError, match="BUS"):
        run(b.reset(ResetKind.BUS))
    assert lun.journal[-1] == (1, "reset 2")


def test_block_read_only_ioctls():
    state = {"ro": 0}
    calls = []

    def fake(fd, request, arg, mutate=True):
        calls.append((fd, request))
        if request == BLKROSET:
            state["ro"] = int.from_bytes(bytes(arg), "little")
        elif request == BLKROGET:
            arg[:] = state["ro"].to_bytes(4, "little")
        return 0

    closed = []
    kwargs = dict(ioctl=fake, open_fd=lambda p, f: 9, close_fd=closed.append)
    set_block_read_only("/dev/sdb", True, **kwargs)
    assert block_read_only("/dev/sdb", **kwargs) is True
    set_block_read_only("/dev/sdb", False, **kwargs)
    assert block_read_only("/dev/sdb", **kwargs) is False
    assert calls[0] == (9, BLKROSET) and closed == [9, 9, 9, 9]

    def eacces(fd, request, arg, mutate=True):
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(ScsiTransportError, match="BLKROSET"):
        set_block_read_only("/dev/sdb", True, ioctl=eacces, open_fd=lambda p, f: 9,
                            close_fd=lambda fd: None)
