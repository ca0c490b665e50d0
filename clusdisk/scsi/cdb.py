"""Pure CDB builders (shared/STYLE.md rule 13: side effects are a plan; this
is the plan for SCSI).  Standard library only; no I/O.

Every builder returns a ``Command``: the CDB bytes, the data direction, the
data-out bytes and the data-in allocation length, which is all
``clusdisk.scsi.sgio`` needs to issue it.  Byte layouts were checked against
the CDBs that sg3_utils 1.46 prints with ``-vv`` (see the unit tests).

References (T10 drafts):

- SPC-2 r20: 5.5.1 reservations overview, 7.22 RESERVE(6), 7.17 RELEASE(6)
- SPC-3 r23: 6.4 INQUIRY, 6.11 PERSISTENT RESERVE IN, 6.12 PERSISTENT RESERVE
  OUT (6.12.3 parameter list), 6.33 TEST UNIT READY
- SPC-4 r17: 5.7 reservations, 6.13 PERSISTENT RESERVE IN, 6.14 PERSISTENT
  RESERVE OUT
- SBC-3: READ CAPACITY (16), READ (16), WRITE (16)

The data-in parsers live in ``clusdisk.scsi.pages``.
"""

import enum
import struct
from dataclasses import dataclass

# Operation codes (SPC-3 annex D / SBC-3 table 11)
TEST_UNIT_READY = 0x00
INQUIRY = 0x12
RESERVE_6 = 0x16
RELEASE_6 = 0x17
PERSISTENT_RESERVE_IN = 0x5E
PERSISTENT_RESERVE_OUT = 0x5F
READ_16 = 0x88
WRITE_16 = 0x8A
SERVICE_ACTION_IN_16 = 0x9E
SAI_READ_CAPACITY_16 = 0x10

# VPD page codes (SPC-3 7.6)
VPD_SUPPORTED_PAGES = 0x00
VPD_UNIT_SERIAL = 0x80
VPD_DEVICE_IDENTIFICATION = 0x83

STANDARD_INQUIRY_LENGTH = 36
READ_CAPACITY_16_LENGTH = 32
PR_OUT_PARAMETER_LENGTH = 24
MAX_KEY = (1 << 64) - 1

_CDB6 = struct.Struct(">B4xB")                 # opcode, 4 reserved, control
_INQUIRY = struct.Struct(">BBBHB")             # opcode, EVPD, page, alloc len, control
_READ_CAPACITY_16 = struct.Struct(">BBQIBB")   # opcode, SA, LBA, alloc len, PMI, control
_PR_IN = struct.Struct(">BB5xHB")              # opcode, SA, reserved, alloc len, control
_PR_OUT = struct.Struct(">BBB2xIB")            # opcode, SA, scope/type, reserved, param len, control
_PR_OUT_PARAMS = struct.Struct(">QQIBBH")      # key, SA key, obsolete, flags, reserved, obsolete
_RW_16 = struct.Struct(">BBQIBB")              # opcode, flags, LBA, blocks, group, control


class Direction(enum.IntEnum):
    """Data transfer direction, valued as sg_io_hdr's dxfer_direction."""

    NONE = -1
    TO_DEVICE = -2
    FROM_DEVICE = -3


class PrInAction(enum.IntEnum):
    """PERSISTENT RESERVE IN service actions (SPC-3 6.11.1, table 102)."""

    READ_KEYS = 0x00
    READ_RESERVATION = 0x01
    REPORT_CAPABILITIES = 0x02
    READ_FULL_STATUS = 0x03


class PrOutAction(enum.IntEnum):
    """PERSISTENT RESERVE OUT service actions (SPC-3 6.12.2, table 113)."""

    REGISTER = 0x00
    RESERVE = 0x01
    RELEASE = 0x02
    CLEAR = 0x03
    PREEMPT = 0x04
    PREEMPT_AND_ABORT = 0x05
    REGISTER_AND_IGNORE_EXISTING_KEY = 0x06
    REGISTER_AND_MOVE = 0x07


class PrType(enum.IntEnum):
    """Persistent reservation type codes (SPC-3 6.11.3.4, table 107)."""

    WRITE_EXCLUSIVE = 0x1
    EXCLUSIVE_ACCESS = 0x3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 0x5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 0x6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 0x7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 0x8


@dataclass(frozen=True)
class Command:
    """One SCSI command ready for SG_IO.

    ``data_in_length`` is the allocation length for FROM_DEVICE commands;
    ``data_out`` is the parameter data for TO_DEVICE commands.
    """

    name: str
    cdb: bytes
    direction: Direction = Direction.NONE
    data_out: bytes = b""
    data_in_length: int = 0

    @property
    def opcode(self) -> int:
        return self.cdb[0]


def _check_key(name: str, key: int) -> None:
    if not 0 <= key <= MAX_KEY:
        raise ValueError(f"{name} must fit in 64 bits, got {key!r}")


def _check_u16(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} must be 0..65535, got {value!r}")


def test_unit_ready() -> Command:
    """TEST UNIT READY (SPC-3 6.33): six zero bytes."""
    return Command("TEST UNIT READY", _CDB6.pack(TEST_UNIT_READY, 0))



def inquiry(page: int | None = None, allocation_length: int | None = None) -> Command:
    """INQUIRY (SPC-3 6.4): standard data when ``page`` is None, else the VPD
    page with EVPD=1.  The default allocation length is 36 bytes for standard
    data (the minimum every device returns) and 0xFF00 for VPD pages."""
    if page is None:
        length = STANDARD_INQUIRY_LENGTH if allocation_length is None else allocation_length
        _check_u16("allocation_length", length)
        return Command("INQUIRY", _INQUIRY.pack(INQUIRY, 0, 0, length, 0),
                       Direction.FROM_DEVICE, data_in_length=length)
    if not 0 <= page <= 0xFF:
        raise ValueError(f"VPD page must be 0..255, got {page!r}")
    length = 0xFF00 if allocation_length is None else allocation_length
    _check_u16("allocation_length", length)
    return Command(f"INQUIRY VPD 0x{page:02x}", _INQUIRY.pack(INQUIRY, 1, page, length, 0),
                   Direction.FROM_DEVICE, data_in_length=length)


def read_capacity_16(allocation_length: int = READ_CAPACITY_16_LENGTH) -> Command:
    """READ CAPACITY (16) (SBC-3): SERVICE ACTION IN(16) 0x9E, action 0x10."""
    return Command("READ CAPACITY(16)",
                   _READ_CAPACITY_16.pack(SERVICE_ACTION_IN_16, SAI_READ_CAPACITY_16, 0,
                                          allocation_length, 0, 0),
                   Direction.FROM_DEVICE, data_in_length=allocation_length)


def reserve_6() -> Command:
    """RESERVE(6) (SPC-2 7.22): reserve the whole logical unit for this I_T
    nexus.  Obsolete in SPC-3, still what the Microsoft cluster design uses."""
    return Command("RESERVE(6)", _CDB6.pack(RESERVE_6, 0))


def release_6() -> Command:
    """RELEASE(6) (SPC-2 7.17).  GOOD and no effect from a non-holder."""
    return Command("RELEASE(6)", _CDB6.pack(RELEASE_6, 0))


def persistent_reserve_in(action: PrInAction, allocation_length: int = 8192) -> Command:
    """PERSISTENT RESERVE IN (SPC-3 6.11, SPC-4 r17 6.13)."""
    _check_u16("allocation_length", allocation_length)
    action = PrInAction(action)
    return Command(f"PR IN {action.name}",
                   _PR_IN.pack(PERSISTENT_RESERVE_IN, action, allocation_length, 0),
                   Direction.FROM_DEVICE, data_in_length=allocation_length)


def read_keys(allocation_length: int = 8192) -> Command:
    return persistent_reserve_in(PrInAction.READ_KEYS, allocation_length)


def read_reservation(allocation_length: int = 8192) -> Command:
    return persistent_reserve_in(PrInAction.READ_RESERVATION, allocation_length)


def pr_out_parameters(key: int = 0, service_action_key: int = 0, *, aptpl: bool = False,
                      all_tg_pt: bool = False) -> bytes:
    """The 24-byte basic PERSISTENT RESERVE OUT parameter list (SPC-3 6.12.3,
    table 115): RESERVATION KEY, SERVICE ACTION RESERVATION KEY, an obsolete
    scope-specific address, then SPEC_I_PT/ALL_TG_PT/APTPL flags."""
    _check_key("key", key)
    _check_key("service_action_key", service_action_key)
    flags = (0x04 if all_tg_pt else 0) | (0x01 if aptpl else 0)
    return _PR_OUT_PARAMS.pack(key, service_action_key, 0, flags, 0, 0)


def persistent_reserve_out(action: PrOutAction, *, key: int = 0, service_action_key: int = 0,
                           pr_type: PrType | None = None, aptpl: bool = False) -> Command:
    """PERSISTENT RESERVE OUT (SPC-3 6.12, SPC-4 r17 6.14) with the basic
    parameter list.  Scope is always LU_SCOPE (0).  ``pr_type`` is required by
    RESERVE, RELEASE, PREEMPT and PREEMPT AND ABORT and ignored otherwise."""
    action = PrOutAction(action)
    if action is PrOutAction.REGISTER_AND_MOVE:
        raise ValueError("REGISTER AND MOVE needs a TransportID parameter list (unsupported)")
    typed = action in (PrOutAction.RESERVE, PrOutAction.RELEASE, PrOutAction.PREEMPT,
                       PrOutAction.PREEMPT_AND_ABORT)
    if typed and pr_type is None:
        raise ValueError(f"{action.name} needs a reservation type")
    type_byte = PrType(pr_type) if typed else 0
    params = pr_out_parameters(key, service_action_key, aptpl=aptpl)
    cdb = _PR_OUT.pack(PERSISTENT_RESERVE_OUT, action, type_byte, len(params), 0)
    return Command(f"PR OUT {action.name}", cdb, Direction.TO_DEVICE, data_out=params)


def pr_register(new_key: int, *, current_key: int = 0, ignore_existing: bool = False,
                aptpl: bool = False) -> Command:
    """REGISTER (``current_key`` must match) or REGISTER AND IGNORE EXISTING
    KEY; ``new_key`` 0 unregisters."""
    action = (PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY if ignore_existing
              else PrOutAction.REGISTER)
    return persistent_reserve_out(action, key=0 if ignore_existing else current_key,
                                  service_action_key=new_key, aptpl=aptpl)


def pr_reserve(key: int, pr_type: PrType) -> Command:
    return persistent_reserve_out(PrOutAction.RESERVE, key=key, pr_type=pr_type)


def pr_release(key: int, pr_type: PrType) -> Command:
    return persistent_reserve_out(PrOutAction.RELEASE, key=key, pr_type=pr_type)


def pr_clear(key: int) -> Command:
    return persistent_reserve_out(PrOutAction.CLEAR, key=key)


def pr_preempt(key: int, victim_key: int, pr_type: PrType, *, abort: bool = False) -> Command:
    """PREEMPT (or PREEMPT AND ABORT): remove ``victim_key``'s registrations and,
    if it holds the reservation, take it over with ``pr_type``."""
    action = PrOutAction.PREEMPT_AND_ABORT if abort else PrOutAction.PREEMPT
    return persistent_reserve_out(action, key=key, service_action_key=victim_key,
                                  pr_type=pr_type)


def _rw_16(opcode: int, name: str, lba: int, blocks: int, fua: bool) -> tuple[str, bytes]:
    if not 0 <= lba <= MAX_KEY:
        raise ValueError(f"lba must fit in 64 bits, got {lba!r}")
    if not 0 <= blocks <= 0xFFFFFFFF:
        raise ValueError(f"blocks must fit in 32 bits, got {blocks!r}")
    return name, _RW_16.pack(opcode, 0x08 if fua else 0, lba, blocks, 0, 0)


def read_16(lba: int, blocks: int, block_size: int, *, fua: bool = False) -> Command:
    """READ (16) (SBC-3)."""
    name, cdb = _rw_16(READ_16, "READ(16)", lba, blocks, fua)
    return Command(name, cdb, Direction.FROM_DEVICE, data_in_length=blocks * block_size)


def write_16(lba: int, data: bytes, block_size: int, *, fua: bool = False) -> Command:
    """WRITE (16) (SBC-3); ``data`` must be a whole number of blocks."""
    if block_size <= 0 or len(data) % block_size:
        raise ValueError(f"data length {len(data)} is not a multiple of {block_size}")
    name, cdb = _rw_16(WRITE_16, "WRITE(16)", lba, len(data) // block_size, fua)
    return Command(name, cdb, Direction.TO_DEVICE, data_out=bytes(data))
