"""The one module of smbca that issues ioctls (shared/STYLE.md layering rules).

- ``SG_IO`` with a version 3 ``struct sg_io_hdr`` (Linux ``<scsi/sg.h>``;
  the SCSI Generic HOWTO, "sg_io_hdr_t") on an sg character device opened
  ``O_RDWR | O_NONBLOCK``;
- ``SG_SCSI_RESET`` with ``SG_SCSI_RESET_DEVICE`` / ``_TARGET`` / ``_BUS`` /
  ``_HOST`` (a LUN reset clears SPC-2 reservations, SPC-2 r20 5.5.1);
- ``BLKROSET`` / ``BLKROGET`` on a block device (offline-until-owned).

The ioctl itself is two lines (``_sg_io``/``_reset``); everything around it is
plain data.  ``SgDevice`` runs it off the event loop (``asyncio.to_thread``
by default; both the ioctl function and the thread runner are injected so
the unit tests drive it with a fake kernel), bounds each command by a
timeout and retries outcomes that ``clusdisk.scsi.sense`` calls retryable
(UNIT ATTENTION above all) a bounded number of times.
"""

import asyncio
import ctypes
import enum
import errno as errno_mod
import fcntl
import logging
import os
import struct
from dataclasses import dataclass

from clusdisk.scsi.cdb import Command, Direction
from clusdisk.scsi.errors import ScsiTransportError
from clusdisk.scsi.sense import Outcome, OutcomeKind, classify, timed_out

log = logging.getLogger("clusdisk.sgio")

SG_IO = 0x2285
SG_SCSI_RESET = 0x2284
SG_INTERFACE_ID = ord("S")
BLKROSET = 0x125D
BLKROGET = 0x125E
SENSE_BUFFER_LENGTH = 96

# struct sg_io_hdr, native layout: interface_id, dxfer_direction, cmd_len,
# mx_sb_len, iovec_count, dxfer_len, dxferp, cmdp, sbp, timeout, flags,
# pack_id, usr_ptr, status, masked_status, msg_status, sb_len_wr,
# host_status, driver_status, resid, duration, info (88 bytes on LP64)
SG_IO_HDR = struct.Struct("@iiBBHIPPPIIiPBBBBHHiII0P")   # 0P: sizeof() tail padding
_INT = struct.Struct("@i")


class ResetKind(enum.IntEnum):
    """SG_SCSI_RESET argument values (<scsi/sg.h>)."""

    DEVICE = 1      # LUN reset (logical unit reset task management function)
    BUS = 2
    HOST = 3
    TARGET = 4


@dataclass(frozen=True)
class ScsiResult:
    """A finished command: its outcome plus the data-in actually transferred."""

    outcome: Outcome
    data: bytes = b""
    sense: bytes = b""
    duration_ms: int = 0
    attempts: int = 1


def pack_header(command: Command, timeout_ms: int, data_addr: int, cdb_addr: int,
                sense_addr: int, sense_length: int = SENSE_BUFFER_LENGTH) -> bytearray:
    """An sg_io_hdr for ``command`` pointing at caller-owned buffers."""
    if command.direction is Direction.TO_DEVICE:
        length = len(command.data_out)
    elif command.direction is Direction.FROM_DEVICE:
        length = command.data_in_length
    else:
        length = 0
    return bytearray(SG_IO_HDR.pack(
        SG_INTERFACE_ID, int(command.direction), len(command.cdb), sense_length, 0, length,
        data_addr if length else 0, cdb_addr, sense_addr, timeout_ms, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0))


@dataclass(frozen=True)
class HeaderOut:
    """The fields SG_IO fills in."""

    status: int
    sb_len_wr: int
    host_status: int
    driver_status: int
    resid: int
    duration: int
    dxfer_len: int


def unpack_header(header: bytes) -> HeaderOut:
    fields = SG_IO_HDR.unpack(bytes(header))
    return HeaderOut(status=fields[13], sb_len_wr=fields[16], host_status=fields[17],
                     driver_status=fields[18], resid=fields[19], duration=fields[20],
                     dxfer_len=fields[5])


async def _in_thread(func, *args):
    return await asyncio.to_thread(func, *args)


class SgDevice:
    """One sg device node (one I_T nexus to one logical unit).

    ``ioctl`` has ``fcntl.ioctl``'s signature; ``run_blocking(func, *args)``
    is awaited to run a blocking call (default: a worker thread); ``sleep``
    is awaited between retries.  The fd is opened on first use.  The kernel
    aborts a command after ``timeout_ms``; the caller stops waiting
    ``timeout_grace_s`` later even if the ioctl never returns (the worker
    thread is then left blocked, the way a hung target leaves it).
    """

    def __init__(self, path: str, *, timeout_ms: int = 5000, retries: int = 3,
                 busy_delay_s: float = 0.1, timeout_grace_s: float = 1.0, ioctl=fcntl.ioctl, open_fd=os.open,
                 close_fd=os.close, run_blocking=_in_thread, sleep=asyncio.sleep) -> None:
        self.path = path
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.busy_delay_s = busy_delay_s
        self.timeout_grace_s = timeout_grace_s
        self._ioctl = ioctl
        self._open = open_fd
        self._close = close_fd
        self._run_blocking = run_blocking
        self._sleep = sleep
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"SgDevice({self.path!r})"

    def fileno(self) -> int:
        if self._fd is None:
            try:
                self._fd = self._open(self.path, os.O_RDWR | os.O_NONBLOCK)
            except OSError as exc:
                raise ScsiTransportError(f"{self.path}: {exc.strerror}", exc.errno) from None
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._close(fd)

    # -- the ioctls -------------------------------------------------------

    def _sg_io(self, fd: int, header: bytearray) -> None:
        self._ioctl(fd, SG_IO, header)

    def _reset(self, fd: int, kind: int) -> None:
        self._ioctl(fd, SG_SCSI_RESET, bytearray(_INT.pack(kind)))

    # -- blocking calls (run in a thread) ---------------------------------

    def execute_blocking(self, command: Command, timeout_ms: int | None = None) -> ScsiResult:
        """Issue ``command`` once with SG_IO; never raises for SCSI outcomes."""
        timeout_ms = self.timeout_ms if timeout_ms is None else timeout_ms
        cdb = ctypes.create_string_buffer(command.cdb, len(command.cdb))
        sense = ctypes.create_string_buffer(SENSE_BUFFER_LENGTH)
        if command.direction is Direction.TO_DEVICE:
            data = ctypes.create_string_buffer(command.data_out, max(len(command.data_out), 1))
        else:
            data = ctypes.create_string_buffer(max(command.data_in_length, 1))
        header = pack_header(command, timeout_ms, ctypes.addressof(data), ctypes.addressof(cdb),
                             ctypes.addressof(sense))
        try:
            self._sg_io(self.fileno(), header)
        except ScsiTransportError as exc:
            return ScsiResult(Outcome(OutcomeKind.TRANSPORT_ERROR, None, detail=str(exc)))
        except OSError as exc:
            return ScsiResult(Outcome(OutcomeKind.TRANSPORT_ERROR, None,
                                      retryable=exc.errno in (errno_mod.EINTR, errno_mod.EAGAIN),
                                      detail=f"SG_IO: {exc.strerror}"))
        out = unpack_header(header)
        sense_bytes = sense.raw[:min(out.sb_len_wr, SENSE_BUFFER_LENGTH)]
        received = b""
        if command.direction is Direction.FROM_DEVICE:
            received = data.raw[:max(0, command.data_in_length - max(out.resid, 0))]
        outcome = classify(out.status, sense_bytes, out.host_status, out.driver_status)
        return ScsiResult(outcome, received, sense_bytes, out.duration)

    def reset_blocking(self, kind: ResetKind) -> None:
        try:
            self._reset(self.fileno(), int(kind))
        except OSError as exc:
            raise ScsiTransportError(f"{self.path}: SG_SCSI_RESET {ResetKind(kind).name}: "
                                     f"{exc.strerror}", exc.errno) from None

    # -- asyncio API ------------------------------------------------------

    async def execute(self, command: Command, *, timeout_ms: int | None = None,
                      retries: int | None = None) -> ScsiResult:
        """Issue ``command``, retrying retryable outcomes up to ``retries``
        times.  The result of the last attempt is returned, whatever it is."""
        timeout_ms = self.timeout_ms if timeout_ms is None else timeout_ms
        retries = self.retries if retries is None else retries
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(timeout_ms / 1000 + self.timeout_grace_s):
                    result = await self._run_blocking(self.execute_blocking, command,
                                                      timeout_ms)
            except TimeoutError:
                result = ScsiResult(timed_out(f"{command.name} on {self.path}: no answer "
                                              f"within {timeout_ms} ms"))
            outcome = result.outcome
            if not outcome.retryable or attempt > retries:
                return ScsiResult(outcome, result.data, result.sense, result.duration_ms, attempt)
            log.debug("%s on %s: %s, retrying (%d/%d)", command.name, self.path,
                      outcome.describe(), attempt, retries)
            if outcome.kind is not OutcomeKind.UNIT_ATTENTION:
                await self._sleep(self.busy_delay_s)

    async def reset(self, kind: ResetKind = ResetKind.DEVICE, *,
                    timeout_s: float = 30.0) -> None:
        """SG_SCSI_RESET; raises ScsiTransportError if the kernel refuses
        (tcm_loop, for one, implements no bus or host reset)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._run_blocking(self.reset_blocking, kind)
        except TimeoutError:
            raise ScsiTransportError(f"{self.path}: SG_SCSI_RESET {ResetKind(kind).name}: "
                                     f"no answer within {timeout_s} s") from None


def set_block_read_only(path: str, read_only: bool, *, ioctl=fcntl.ioctl, open_fd=os.open,
                        close_fd=os.close) -> None:
    """BLKROSET: make the block device ``path`` read-only (or writable) in
    the kernel, so no local writer reaches a disk this node does not own."""
    try:
        fd = open_fd(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ScsiTransportError(f"{path}: {exc.strerror}", exc.errno) from None
    try:
        ioctl(fd, BLKROSET, bytearray(_INT.pack(1 if read_only else 0)))
    except OSError as exc:
        raise ScsiTransportError(f"{path}: BLKROSET: {exc.strerror}", exc.errno) from None
    finally:
        close_fd(fd)


def block_read_only(path: str, *, ioctl=fcntl.ioctl, open_fd=os.open,
                    close_fd=os.close) -> bool:
    """BLKROGET: whether the block device ``path`` is read-only."""
    try:
        fd = open_fd(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ScsiTransportError(f"{path}: {exc.strerror}", exc.errno) from None
    try:
        buf = bytearray(_INT.size)
        ioctl(fd, BLKROGET, buf)
        return bool(_INT.unpack(buf)[0])
    except OSError as exc:
        raise ScsiTransportError(f"{path}: BLKROGET: {exc.strerror}", exc.errno) from None
    finally:
        close_fd(fd)
