"""Parsers for the data-in of the commands built in ``clusdisk.scsi.cdb``.
Standard library only; no I/O.

Every parser raises ``ScsiParseError`` (never ``IndexError`` or
``struct.error``) on truncated or inconsistent data.

References (T10 drafts):

- SPC-3 r23: 6.4.2 standard INQUIRY data; 7.6.3 Device Identification VPD
  page (designator types table 298, association, code set); 7.6.9
  Supported VPD Pages; 7.6.10 Unit Serial Number; 6.11.2 READ KEYS and
  6.11.3 READ RESERVATION parameter data (type codes 6.11.3.4)
- SBC-3: READ CAPACITY (16) parameter data
"""

import enum
import struct
import uuid
from dataclasses import dataclass

from clusdisk.scsi.cdb import PrType
from clusdisk.scsi.errors import ScsiParseError

_STANDARD_INQUIRY = struct.Struct(">BBBBBBBB8s16s4s")   # 36 bytes
_VPD_HEADER = struct.Struct(">BBH")                     # qualifier/type, page, length
_DESIGNATOR_HEADER = struct.Struct(">BBxB")             # proto/code set, PIV/assoc/type, length
_READ_CAPACITY_16 = struct.Struct(">QIBBH")             # last LBA, block length, ...
_PR_HEADER = struct.Struct(">II")                       # PRgeneration, additional length
_PR_KEY = struct.Struct(">Q")
_PR_RESERVATION = struct.Struct(">Q4xxBH")              # key, obsolete, reserved, scope/type, obsolete


def _unpack(layout: struct.Struct, data: bytes, offset: int, what: str) -> tuple:
    if len(data) < offset + layout.size:
        raise ScsiParseError(f"{what}: need {offset + layout.size} bytes, got {len(data)}")
    return layout.unpack_from(data, offset)


def _ascii(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise ScsiParseError(f"{what}: not ASCII: {raw!r}") from None


@dataclass(frozen=True)
class StandardInquiry:
    """Standard INQUIRY data (SPC-3 6.4.2, table 82), the fields we use."""

    peripheral_qualifier: int
    device_type: int
    removable: bool
    version: int
    normaca: bool
    hisup: bool
    response_data_format: int
    additional_length: int
    sccs: bool
    tpgs: int
    protect: bool
    encserv: bool
    multip: bool
    cmdque: bool
    vendor: str
    product: str
    revision: str


def parse_standard_inquiry(data: bytes) -> StandardInquiry:
    (b0, b1, version, b3, additional, b5, b6, b7, vendor, product,
     revision) = _unpack(_STANDARD_INQUIRY, data, 0, "standard INQUIRY data")
    return StandardInquiry(
        peripheral_qualifier=b0 >> 5, device_type=b0 & 0x1F, removable=bool(b1 & 0x80),
        version=version, normaca=bool(b3 & 0x20), hisup=bool(b3 & 0x10),
        response_data_format=b3 & 0x0F, additional_length=additional,
        sccs=bool(b5 & 0x80), tpgs=(b5 >> 4) & 0x3, protect=bool(b5 & 0x01),
        encserv=bool(b6 & 0x40), multip=bool(b6 & 0x10), cmdque=bool(b7 & 0x02),
        vendor=_ascii(vendor, "T10 VENDOR IDENTIFICATION").rstrip(),
        product=_ascii(product, "PRODUCT IDENTIFICATION").rstrip(),
        revision=_ascii(revision, "PRODUCT REVISION LEVEL").rstrip())


def _vpd_payload(data: bytes, page: int) -> bytes:
    _, got_page, length = _unpack(_VPD_HEADER, data, 0, f"VPD page 0x{page:02x} header")
    if got_page != page:
        raise ScsiParseError(f"expected VPD page 0x{page:02x}, got 0x{got_page:02x}")
    if len(data) < 4 + length:
        raise ScsiParseError(f"VPD page 0x{page:02x}: PAGE LENGTH {length} but only "
                             f"{len(data) - 4} bytes follow the header")
    return bytes(data[4:4 + length])


def parse_supported_vpd_pages(data: bytes) -> tuple[int, ...]:
    """Supported VPD Pages page 0x00 (SPC-3 7.6.9)."""
    return tuple(_vpd_payload(data, 0x00))


def parse_unit_serial_number(data: bytes) -> str:
    """Unit Serial Number page 0x80 (SPC-3 7.6.10): ASCII, trailing spaces and
    NULs dropped."""
    return _ascii(_vpd_payload(data, 0x80), "PRODUCT SERIAL NUMBER").rstrip(" \x00")


class CodeSet(enum.IntEnum):
    """CODE SET (SPC-3 7.6.3.1, table 297)."""

    BINARY = 1
    ASCII = 2
    UTF8 = 3


class Association(enum.IntEnum):
    """ASSOCIATION (SPC-3 7.6.3.1, table 296): only LOGICAL_UNIT designators
    name the disk itself; the others differ from path to path."""

    LOGICAL_UNIT = 0
    TARGET_PORT = 1
    TARGET_DEVICE = 2


class DesignatorType(enum.IntEnum):
    """DESIGNATOR TYPE (SPC-3 7.6.3.1, table 298; UUID from SPC-4)."""

    VENDOR_SPECIFIC = 0x0
    T10_VENDOR_ID = 0x1
    EUI64 = 0x2
    NAA = 0x3
    RELATIVE_TARGET_PORT = 0x4
    TARGET_PORT_GROUP = 0x5
    LOGICAL_UNIT_GROUP = 0x6
    MD5_LOGICAL_UNIT = 0x7
    SCSI_NAME_STRING = 0x8
    PROTOCOL_SPECIFIC_PORT = 0x9
    UUID = 0xA


_NAA_LENGTHS = {0x2: 8, 0x3: 8, 0x5: 8, 0x6: 16}    # NAA field -> designator length
_EUI64_LENGTHS = (8, 12, 16)


@dataclass(frozen=True)
class Designator:
    """One designation descriptor of the Device Identification page."""

    protocol_identifier: int
    code_set: int
    piv: bool
    association: int
    designator_type: int
    value: bytes

    @property
    def name(self) -> str | None:
        """The designator as clusdisk's config names disks, following the
        prefixes Linux uses in sysfs ``wwid``: ``naa.<hex>``, ``eui.<hex>``,
        ``t10.<ascii>`` (space runs collapsed), ``name.<string>`` and
        ``uuid.<uuid>``.  None for designator types that cannot name a disk."""
        kind = self.designator_type
        if kind == DesignatorType.NAA:
            return "naa." + self.value.hex()
        if kind == DesignatorType.EUI64:
            return "eui." + self.value.hex()
        if kind == DesignatorType.T10_VENDOR_ID:
            return "t10." + " ".join(self.value.decode("ascii", "replace").split())
        if kind == DesignatorType.SCSI_NAME_STRING:
            return "name." + self.value.rstrip(b"\x00").decode("utf-8", "replace")
        if kind == DesignatorType.UUID and len(self.value) == 18:
            return "uuid." + str(uuid.UUID(bytes=self.value[2:]))
        return None

    @property
    def names_logical_unit(self) -> bool:
        return self.association == Association.LOGICAL_UNIT and self.name is not None


def _check_designator(kind: int, code_set: int, value: bytes) -> None:
    if kind == DesignatorType.NAA:
        if not value:
            raise ScsiParseError("NAA designator is empty")
        expected = _NAA_LENGTHS.get(value[0] >> 4)
        if expected is None:
            raise ScsiParseError(f"NAA designator with unknown NAA field {value[0] >> 4}")
        if len(value) != expected:
            raise ScsiParseError(f"NAA {value[0] >> 4} designator must be {expected} bytes, "
                                 f"got {len(value)}")
    elif kind == DesignatorType.EUI64 and len(value) not in _EUI64_LENGTHS:
        raise ScsiParseError(f"EUI-64 designator must be 8, 12 or 16 bytes, got {len(value)}")
    elif kind == DesignatorType.T10_VENDOR_ID:
        if len(value) < 8:
            raise ScsiParseError(f"T10 vendor ID designator shorter than 8 bytes: {len(value)}")
        if code_set != CodeSet.ASCII:
            raise ScsiParseError("T10 vendor ID designator must use the ASCII code set")
        _ascii(value, "T10 vendor ID designator")


def parse_device_identification(data: bytes) -> tuple[Designator, ...]:
    """Device Identification page 0x83 (SPC-3 7.6.3): every designation
    descriptor, in page order."""
    payload = _vpd_payload(data, 0x83)
    out = []
    offset = 0
    while offset < len(payload):
        b0, b1, length = _unpack(_DESIGNATOR_HEADER, payload, offset, "designation descriptor")
        end = offset + 4 + length
        if end > len(payload):
            raise ScsiParseError(f"designation descriptor at {offset} claims {length} bytes, "
                                 f"{len(payload) - offset - 4} remain")
        value = payload[offset + 4:end]
        kind, code_set = b1 & 0x0F, b0 & 0x0F
        _check_designator(kind, code_set, value)
        out.append(Designator(protocol_identifier=b0 >> 4, code_set=code_set,
                              piv=bool(b1 & 0x80), association=(b1 >> 4) & 0x3,
                              designator_type=kind, value=value))
        offset = end
    return tuple(out)


def logical_unit_names(designators) -> tuple[str, ...]:
    """Names of the designators that identify the logical unit itself."""
    return tuple(d.name for d in designators if d.names_logical_unit)


@dataclass(frozen=True)
class Capacity:
    """READ CAPACITY (16) parameter data (SBC-3)."""

    last_lba: int
    block_length: int
    protection_enabled: bool = False
    protection_type: int = 0
    blocks_per_physical_exponent: int = 0
    thin_provisioned: bool = False
    lowest_aligned_lba: int = 0

    @property
    def blocks(self) -> int:
        return self.last_lba + 1

    @property
    def size_bytes(self) -> int:
        return self.blocks * self.block_length


def parse_read_capacity_16(data: bytes) -> Capacity:
    last_lba, block_length, b12, b13, b14 = _unpack(_READ_CAPACITY_16, data, 0,
                                                     "READ CAPACITY(16) data")
    if block_length == 0:
        raise ScsiParseError("READ CAPACITY(16): LOGICAL BLOCK LENGTH is 0")
    return Capacity(last_lba=last_lba, block_length=block_length,
                    protection_enabled=bool(b12 & 0x01), protection_type=(b12 >> 1) & 0x7,
                    blocks_per_physical_exponent=b13 & 0x0F,
                    thin_provisioned=bool(b14 & 0x8000), lowest_aligned_lba=b14 & 0x3FFF)


@dataclass(frozen=True)
class RegisteredKeys:
    """PR IN READ KEYS parameter data (SPC-3 6.11.2).  ``truncated`` is set
    when the allocation length cut the key list short."""

    generation: int
    keys: tuple[int, ...]
    truncated: bool = False


def parse_read_keys(data: bytes) -> RegisteredKeys:
    generation, length = _unpack(_PR_HEADER, data, 0, "READ KEYS header")
    if length % 8:
        raise ScsiParseError(f"READ KEYS: ADDITIONAL LENGTH {length} is not a multiple of 8")
    available = min(length, (len(data) - 8) // 8 * 8)
    keys = tuple(_PR_KEY.unpack_from(data, 8 + i)[0] for i in range(0, available, 8))
    return RegisteredKeys(generation, keys, truncated=available < length)


@dataclass(frozen=True)
class Reservation:
    """PR IN READ RESERVATION parameter data (SPC-3 6.11.3): ``key`` and
    ``pr_type`` are None when no persistent reservation is held."""

    generation: int
    key: int | None = None
    scope: int = 0
    pr_type: PrType | int | None = None

    @property
    def held(self) -> bool:
        return self.key is not None


def parse_read_reservation(data: bytes) -> Reservation:
    generation, length = _unpack(_PR_HEADER, data, 0, "READ RESERVATION header")
    if length == 0:
        return Reservation(generation)
    if length != 16:
        raise ScsiParseError(f"READ RESERVATION: ADDITIONAL LENGTH must be 0 or 16, got {length}")
    key, scope_type, _ = _unpack(_PR_RESERVATION, data, 8, "READ RESERVATION descriptor")
    code = scope_type & 0x0F
    try:
        pr_type: PrType | int = PrType(code)
    except ValueError:
        pr_type = code
    return Reservation(generation, key=key, scope=scope_type >> 4, pr_type=pr_type)
