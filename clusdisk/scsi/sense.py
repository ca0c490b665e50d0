"""Sense data decoding and the outcome of a completed command.  Standard
library only; no I/O.

``decode_sense`` reads fixed (response codes 0x70/0x71, SPC-3 4.5.3) and
descriptor (0x72/0x73, SPC-3 4.5.2) sense data.  ``classify`` folds the SCSI
status (SAM-3 5.3), the sense data and the Linux host/driver bytes of an
sg_io_hdr into one of a few ``OutcomeKind`` values and decides whether
issuing the same command again may help (``retryable``).
"""

import enum
import struct
from dataclasses import dataclass

from clusdisk.scsi.errors import ScsiParseError

# SCSI status codes (SAM-3 5.3, table 22)
GOOD = 0x00
CHECK_CONDITION = 0x02
CONDITION_MET = 0x04
BUSY = 0x08
RESERVATION_CONFLICT = 0x18
TASK_SET_FULL = 0x28
ACA_ACTIVE = 0x30
TASK_ABORTED = 0x40

# Linux host byte (include/scsi/scsi_status.h, DID_*) and driver byte
DID_OK = 0x00
DID_NO_CONNECT = 0x01
DID_BUS_BUSY = 0x02
DID_TIME_OUT = 0x03
DID_RESET = 0x08
DID_SOFT_ERROR = 0x0B
DID_IMM_RETRY = 0x0C
DID_REQUEUE = 0x0D
DID_TRANSPORT_DISRUPTED = 0x0E
DRIVER_TIMEOUT = 0x06
DRIVER_SENSE = 0x08

_RETRYABLE_HOST = frozenset({DID_BUS_BUSY, DID_RESET, DID_SOFT_ERROR, DID_IMM_RETRY,
                             DID_REQUEUE, DID_TRANSPORT_DISRUPTED})


class SenseKey(enum.IntEnum):
    """SENSE KEY (SPC-3 4.5.6, table 27)."""

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    RESERVED_C = 0xC
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE
    RESERVED_F = 0xF


# ASC/ASCQ pairs clusdisk meets (SPC-3 4.5.6, table 28), for messages only
ASC_NAMES = {
    (0x04, 0x01): "logical unit is in process of becoming ready",
    (0x04, 0x07): "operation in progress",
    (0x04, 0x0A): "asymmetric access state transition",
    (0x20, 0x00): "invalid command operation code",
    (0x24, 0x00): "invalid field in cdb",
    (0x26, 0x00): "invalid field in parameter list",
    (0x26, 0x04): "invalid release of persistent reservation",
    (0x29, 0x00): "power on, reset, or bus device reset occurred",
    (0x29, 0x03): "bus device reset function occurred",
    (0x29, 0x07): "i_t nexus loss occurred",
    (0x2A, 0x03): "reservations preempted",
    (0x2A, 0x04): "reservations released",
    (0x2A, 0x05): "registrations preempted",
    (0x2A, 0x09): "capacity data has changed",
    (0x3A, 0x00): "medium not present",
    (0x3F, 0x0E): "reported luns data has changed",
}

# NOT READY codes that clear by themselves (SPC-3 4.5.6)
_TRANSIENT_NOT_READY = frozenset({(0x04, 0x01), (0x04, 0x07), (0x04, 0x0A)})

_FIXED_MIN = 8
_DESCRIPTOR_HEAD = struct.Struct(">BBBB3xB")  # response, key, asc, ascq, add. length
_DESCRIPTOR_INFORMATION = struct.Struct(">BBB1xQ")


@dataclass(frozen=True)
class SenseData:
    response_code: int
    key: int
    asc: int = 0
    ascq: int = 0
    information: int | None = None
    descriptors: tuple[tuple[int, bytes], ...] = ()

    @property
    def descriptor_format(self) -> bool:
        return self.response_code in (0x72, 0x73)

    @property
    def deferred(self) -> bool:
        return self.response_code in (0x71, 0x73)


def _decode_fixed(data: bytes) -> SenseData:
    if len(data) < _FIXED_MIN:
        raise ScsiParseError(f"fixed sense data shorter than {_FIXED_MIN} bytes: {len(data)}")
    additional = data[7]
    asc = ascq = 0
    if additional >= 6:                      # ASC and ASCQ are bytes 12 and 13
        if len(data) < 14:
            raise ScsiParseError(f"fixed sense data: ADDITIONAL SENSE LENGTH {additional} "
                                 f"but only {len(data)} bytes")
        asc, ascq = data[12], data[13]
    information = int.from_bytes(data[3:7], "big") if data[0] & 0x80 else None
    return SenseData(data[0] & 0x7F, data[2] & 0x0F, asc, ascq, information)


def _decode_descriptor(data: bytes) -> SenseData:
    if len(data) < _DESCRIPTOR_HEAD.size:
        raise ScsiParseError(f"descriptor sense data shorter than 8 bytes: {len(data)}")
    code, key, asc, ascq, additional = _DESCRIPTOR_HEAD.unpack_from(data)
    end = 8 + additional
    if end > len(data):
        raise ScsiParseError(f"descriptor sense data: ADDITIONAL SENSE LENGTH {additional} "
                             f"but only {len(data) - 8} bytes follow")
    descriptors = []
    information = None
    offset = 8
    while offset < end:
        if offset + 2 > end:
            raise ScsiParseError(f"sense descriptor header at {offset} is truncated")
        kind, length = data[offset], data[offset + 1]
        if offset + 2 + length > end:
            raise ScsiParseError(f"sense descriptor 0x{kind:02x} at {offset} overruns the data")
        body = bytes(data[offset + 2:offset + 2 + length])
        if kind == 0x00 and length == 0x0A:          # information descriptor (SPC-3 4.5.2.2)
            _, _, valid, value = _DESCRIPTOR_INFORMATION.unpack_from(data, offset)
            if valid & 0x80:
                information = value
        descriptors.append((kind, body))
        offset += 2 + length
    return SenseData(code & 0x7F, key & 0x0F, asc, ascq, information, tuple(descriptors))


def decode_sense(data: bytes) -> SenseData:
    """Decode fixed or descriptor format sense data."""
    if not data:
        raise ScsiParseError("empty sense data")
    code = data[0] & 0x7F
    if code in (0x70, 0x71):
        return _decode_fixed(data)
    if code in (0x72, 0x73):
        return _decode_descriptor(data)
    raise ScsiParseError(f"unsupported sense response code 0x{code:02x}")


class OutcomeKind(enum.Enum):
    GOOD = "good"
    RESERVATION_CONFLICT = "reservation conflict"
    UNIT_ATTENTION = "unit attention"
    NOT_READY = "not ready"
    BUSY = "busy"
    CHECK_CONDITION = "check condition"
    TRANSPORT_ERROR = "transport error"


@dataclass(frozen=True)
class Outcome:
    """What became of one command.  ``sense_key``/``asc``/``ascq`` are set for
    CHECK CONDITION outcomes whose sense data decoded."""

    kind: OutcomeKind
    status: int | None = GOOD
    sense_key: int | None = None
    asc: int = 0
    ascq: int = 0
    host_status: int = 0
    driver_status: int = 0
    retryable: bool = False
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.GOOD

    def describe(self) -> str:
        text = self.kind.value
        if self.sense_key is not None:
            key = SenseKey(self.sense_key).name.lower().replace("_", " ")
            name = ASC_NAMES.get((self.asc, self.ascq), "")
            text += f" ({key}, asc/ascq {self.asc:02x}/{self.ascq:02x}{': ' + name if name else ''})"
        if self.host_status or self.driver_status:
            text += f" (host 0x{self.host_status:02x}, driver 0x{self.driver_status:02x})"
        if self.detail:
            text += f": {self.detail}"
        return text


def _from_sense(status: int, sense: bytes, host: int, driver: int) -> Outcome:
    try:
        data = decode_sense(sense)
    except ScsiParseError as exc:
        return Outcome(OutcomeKind.CHECK_CONDITION, status, host_status=host,
                       driver_status=driver, detail=f"undecodable sense: {exc}")
    fields = dict(status=status, sense_key=data.key, asc=data.asc, ascq=data.ascq,
                  host_status=host, driver_status=driver)
    if data.key == SenseKey.RECOVERED_ERROR:
        return Outcome(OutcomeKind.GOOD, **fields)
    if data.key == SenseKey.UNIT_ATTENTION:
        return Outcome(OutcomeKind.UNIT_ATTENTION, retryable=True, **fields)
    if data.key == SenseKey.NOT_READY:
        return Outcome(OutcomeKind.NOT_READY,
                       retryable=(data.asc, data.ascq) in _TRANSIENT_NOT_READY, **fields)
    return Outcome(OutcomeKind.CHECK_CONDITION,
                   retryable=data.key == SenseKey.ABORTED_COMMAND, **fields)


def classify(status: int, sense: bytes = b"", host_status: int = 0,
             driver_status: int = 0) -> Outcome:
    """The outcome of a command that SG_IO returned from.

    Host errors (the command may never have reached the target) take
    precedence, then a driver timeout, then the SCSI status.
    """
    driver = driver_status & 0x0F
    if host_status != DID_OK:
        return Outcome(OutcomeKind.TRANSPORT_ERROR, None, host_status=host_status,
                       driver_status=driver_status,
                       retryable=host_status in _RETRYABLE_HOST)
    if driver == DRIVER_TIMEOUT:
        return Outcome(OutcomeKind.TRANSPORT_ERROR, None, driver_status=driver_status,
                       detail="command timed out")
    if status in (GOOD, CONDITION_MET):
        return Outcome(OutcomeKind.GOOD, status, driver_status=driver_status)
    if status == RESERVATION_CONFLICT:
        return Outcome(OutcomeKind.RESERVATION_CONFLICT, status, driver_status=driver_status)
    if status in (BUSY, TASK_SET_FULL):
        return Outcome(OutcomeKind.BUSY, status, driver_status=driver_status, retryable=True)
    if status == CHECK_CONDITION:
        if sense:
            return _from_sense(status, bytes(sense), host_status, driver_status)
        return Outcome(OutcomeKind.CHECK_CONDITION, status, driver_status=driver_status,
                       detail="no sense data")
    return Outcome(OutcomeKind.CHECK_CONDITION, status, driver_status=driver_status,
                   retryable=status == TASK_ABORTED, detail=f"status 0x{status:02x}")


def timed_out(detail: str = "no answer in time") -> Outcome:
    """The outcome recorded when the caller gave up waiting."""
    return Outcome(OutcomeKind.TRANSPORT_ERROR, None, detail=detail)
