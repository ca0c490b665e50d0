"""Data-in parsers: decode pinned pages, reject truncated or inconsistent ones
with ScsiParseError (never IndexError/struct.error).

The standard INQUIRY and VPD 0x83 vectors are shaped like LIO's answers
(target_core_spc.c layout: NAA 6 IEEE registered extended, T10 vendor ID,
relative target port) for the shared/lab quorum LUN.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusdisk.scsi import pages
from clusdisk.scsi.cdb import PrType
from clusdisk.scsi.errors import ScsiParseError
from clusdisk.scsi.pages import Association, CodeSet, DesignatorType

STD_INQUIRY = (bytes.fromhex("00 00 06 12 1f 00 10 02") + b"LIO-ORG " + b"LAB-QUORUM      "
               + b"4.0 ")
NAA = bytes.fromhex("6001405abcdef0123456789abcdef012")
VPD83 = bytes.fromhex("00 83 00 37") + (
    bytes.fromhex("01 03 00 10") + NAA                                   # NAA, LU, binary
    + bytes.fromhex("02 01 00 17") + b"LIO-ORG lab-lun0-quorum"          # T10 vendor id, ASCII
    + bytes.fromhex("61 94 00 04 00 00 00 01"))                          # rel. target port
EUI = bytes.fromhex("02 02 00 08 00 11 22 33 44 55 66 77")


def test_standard_inquiry():
    inq = pages.parse_standard_inquiry(STD_INQUIRY)
    assert (inq.peripheral_qualifier, inq.device_type) == (0, 0)
    assert inq.version == 6 and inq.response_data_format == 2 and inq.hisup
    assert inq.multip and inq.cmdque and not inq.removable
    assert (inq.vendor, inq.product, inq.revision) == ("LIO-ORG", "LAB-QUORUM", "4.0")


def test_standard_inquiry_truncated():
    with pytest.raises(ScsiParseError):
        pages.parse_standard_inquiry(STD_INQUIRY[:35])


def test_standard_inquiry_not_ascii():
    with pytest.raises(ScsiParseError):
        pages.parse_standard_inquiry(STD_INQUIRY[:8] + b"\xff" * 28)


def test_supported_pages_and_serial():
    assert pages.parse_supported_vpd_pages(bytes.fromhex("00 00 00 03 00 80 83")) == (0, 0x80, 0x83)
    assert pages.parse_unit_serial_number(b"\x00\x80\x00\x10lab-lun0-quorum\x00") == "lab-lun0-quorum"
    with pytest.raises(ScsiParseError):
        pages.parse_unit_serial_number(b"\x00\x83\x00\x01x")     # wrong page
    with pytest.raises(ScsiParseError):
        pages.parse_supported_vpd_pages(bytes.fromhex("00 00 00 05 00 80"))   # length lies


def test_device_identification():
    naa, t10, port = pages.parse_device_identification(VPD83)
    assert naa.designator_type == DesignatorType.NAA and naa.code_set == CodeSet.BINARY
    assert naa.association == Association.LOGICAL_UNIT
    assert naa.name == "naa.6001405abcdef0123456789abcdef012"
    assert t10.designator_type == DesignatorType.T10_VENDOR_ID and t10.code_set == CodeSet.ASCII
    assert t10.name == "t10.LIO-ORG lab-lun0-quorum"
    assert port.association == Association.TARGET_PORT and port.piv and port.protocol_identifier == 6
    assert port.designator_type == DesignatorType.RELATIVE_TARGET_PORT and port.name is None
    assert pages.logical_unit_names((naa, t10, port)) == (naa.name, t10.name)


def test_eui64_and_naa5():
    naa5 = bytes.fromhex("01 03 00 08 50 01 40 50 00 00 00 a1")
    page = bytes.fromhex("00 83 00") + bytes([len(EUI) + len(naa5)]) + EUI + naa5
    eui, naa = pages.parse_device_identification(page)
    assert eui.name == "eui.0011223344556677" and eui.designator_type == DesignatorType.EUI64
    assert naa.name == "naa.50014050000000a1"


@pytest.mark.parametrize("descriptor", [
    bytes.fromhex("01 03 00 08") + NAA[:8],                  # NAA 6 must be 16 bytes
    bytes.fromhex("01 03 00 08 90 00 00 00 00 00 00 00"),    # NAA 9 unknown
    bytes.fromhex("01 02 00 05 00 11 22 33 44"),             # EUI-64 of 5 bytes
    bytes.fromhex("01 01 00 04") + b"LIO-",                  # T10 shorter than 8
    bytes.fromhex("01 03 00 00"),                            # empty NAA
    bytes.fromhex("02 01 00 08") + b"LIO-ORG\xff",           # T10 not ASCII
])
def test_device_identification_rejects_bad_designators(descriptor):
    page = bytes.fromhex("00 83 00") + bytes([len(descriptor)]) + descriptor
    with pytest.raises(ScsiParseError):
        pages.parse_device_identification(page)


def test_device_identification_descriptor_overruns_page():
    page = bytes.fromhex("00 83 00 08 01 03 00 10") + NAA[:4]
    with pytest.raises(ScsiParseError):
        pages.parse_device_identification(page)


@given(st.binary(max_size=80))
def test_parsers_never_raise_anything_but_parse_errors(blob):
    for parse in (pages.parse_standard_inquiry, pages.parse_device_identification,
                  pages.parse_supported_vpd_pages, pages.parse_unit_serial_number,
                  pages.parse_read_capacity_16, pages.parse_read_keys,
                  pages.parse_read_reservation):
        try:
            parse(blob)
        except ScsiParseError:
            pass


@given(st.integers(min_value=0, max_value=len(VPD83) - 1))
def test_every_truncation_of_vpd83_is_a_parse_error(cut):
    with pytest.raises(ScsiParseError):
        pages.parse_device_identification(VPD83[:cut])


def test_read_capacity_16():
    data = bytes.fromhex("00 00 00 00 00 01 ff ff 00 00 02 00 03 03 80 00") + bytes(16)
    cap = pages.parse_read_capacity_16(data)
    assert cap.last_lba == 0x1FFFF and cap.blocks == 0x20000 and cap.block_length == 512
    assert cap.size_bytes == 64 * 1024 * 1024
    assert cap.protection_enabled and cap.protection_type == 1
    assert cap.blocks_per_physical_exponent == 3 and cap.thin_provisioned
    with pytest.raises(ScsiParseError):
        pages.parse_read_capacity_16(data[:11])
    with pytest.raises(ScsiParseError):
        pages.parse_read_capacity_16(bytes(32))                  # block length 0


def test_read_keys():
    data = bytes.fromhex("00 00 00 07 00 00 00 10 01 02 03 04 05 06 07 08"
                         " 11 22 33 44 55 66 77 88")
    keys = pages.parse_read_keys(data)
    assert keys.generation == 7 and keys.keys == (0x0102030405060708, 0x1122334455667788)
    assert not keys.truncated
    short = pages.parse_read_keys(data[:16])                     # allocation length cut it
    assert short.keys == (0x0102030405060708,) and short.truncated
    assert pages.parse_read_keys(bytes(8)).keys == ()
    with pytest.raises(ScsiParseError):
        pages.parse_read_keys(bytes.fromhex("00 00 00 00 00 00 00 0c") + bytes(12))
    with pytest.raises(ScsiParseError):
        pages.parse_read_keys(bytes(7))


def test_read_reservation():
    none = pages.parse_read_reservation(bytes.fromhex("00 00 00 03 00 00 00 00"))
    assert none.generation == 3 and not none.held and none.pr_type is None
    held = pages.parse_read_reservation(
        bytes.fromhex("00 00 00 04 00 00 00 10 01 02 03 04 05 06 07 08"
                      " 00 00 00 00 00 05 00 00"))
    assert held.held and held.key == 0x0102030405060708
    assert held.pr_type is PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY and held.scope == 0
    odd = pages.parse_read_reservation(bytes.fromhex("00 00 00 04 00 00 00 10") + bytes(13) + b"\x0f\0\0")
    assert odd.pr_type == 0x0F
    with pytest.raises(ScsiParseError):
        pages.parse_read_reservation(bytes.fromhex("00 00 00 04 00 00 00 10") + bytes(8))
    with pytest.raises(ScsiParseError):
        pages.parse_read_reservation(bytes.fromhex("00 00 00 04 00 00 00 08") + bytes(8))
