"""CDB builders pinned in bytes.

Source of the vectors marked "sg3_utils": the CDB and parameter list that
sg3_utils 1.46 (Debian 12) prints with ``-vv`` before its SG_IO, e.g.
``sg_persist -n -vv --out --preempt --param-rk=0x0102030405060708
--param-sark=0x1122334455667788 --prout-type=5 FILE``.  The others follow
the tables cited in clusdisk.scsi.cdb.
"""

import pytest

from clusdisk.scsi import cdb
from clusdisk.scsi.cdb import Direction, PrInAction, PrOutAction, PrType

RK = 0x0102030405060708
SARK = 0x1122334455667788
RK_BYTES = bytes.fromhex("0102030405060708")
SARK_BYTES = bytes.fromhex("1122334455667788")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def test_test_unit_ready():                       # sg3_utils: sg_turs -vv
    command = cdb.test_unit_ready()
    assert command.cdb == h("00 00 00 00 00 00")
    assert command.direction is Direction.NONE
    assert command.data_in_length == 0 and command.data_out == b""


def test_standard_inquiry():                      # sg3_utils: sg_inq -vv
    command = cdb.inquiry()
    assert command.cdb == h("12 00 00 00 24 00")
    assert command.direction is Direction.FROM_DEVICE
    assert command.data_in_length == 36


@pytest.mark.parametrize("page, expected", [
    (0x00, "12 01 00 00 fc 00"),                  # sg3_utils: sg_inq -p 0x80 -vv (first probe)
    (0x80, "12 01 80 00 fc 00"),
    (0x83, "12 01 83 00 fc 00"),
])
def test_vpd_inquiry(page, expected):
    command = cdb.inquiry(page, 0xFC)
    assert command.cdb == h(expected)
    assert command.data_in_length == 0xFC


def test_vpd_inquiry_default_allocation_length():
    assert cdb.inquiry(0x83).cdb == h("12 01 83 ff 00 00")


def test_read_capacity_16():                      # sg3_utils: sg_readcap -16 -vv
    command = cdb.read_capacity_16()
    assert command.cdb == h("9e 10 00 00 00 00 00 00 00 00 00 00 00 20 00 00")
    assert command.data_in_length == 32


def test_reserve_release_6():
    assert cdb.reserve_6().cdb == h("16 00 00 00 00 00")   # shared/lab selftest: sg_raw 16 ...
    assert cdb.release_6().cdb == h("17 00 00 00 00 00")
    assert cdb.reserve_6().direction is Direction.NONE


def test_pr_in_read_keys():                       # sg3_utils: sg_persist --in -k
    command = cdb.read_keys()
    assert command.cdb == h("5e 00 00 00 00 00 00 20 00 00")
    assert command.data_in_length == 8192


def test_pr_in_read_reservation():                # sg3_utils: sg_persist --in -r
    assert cdb.read_reservation().cdb == h("5e 01 00 00 00 00 00 20 00 00")
    assert cdb.persistent_reserve_in(PrInAction.READ_FULL_STATUS, 0x100).cdb == \
        h("5e 03 00 00 00 00 00 01 00 00")


PARAMS_RK = RK_BYTES + bytes(16)
PARAMS_SARK = bytes(8) + SARK_BYTES + bytes(8)


@pytest.mark.parametrize("command, cdb_hex, params", [
    # sg3_utils: --out --register --param-sark=0x1122334455667788
    (cdb.pr_register(SARK), "5f 00 00 00 00 00 00 00 18 00", PARAMS_SARK),
    # sg3_utils: --out --register --param-rk=0x0102030405060708 --param-sark=0 (unregister)
    (cdb.pr_register(0, current_key=RK), "5f 00 00 00 00 00 00 00 18 00", PARAMS_RK),
    # sg3_utils: --out --register-ignore --param-sark=0x0102030405060708
    (cdb.pr_register(RK, ignore_existing=True), "5f 06 00 00 00 00 00 00 18 00",
     bytes(8) + RK_BYTES + bytes(8)),
    # sg3_utils: --out --reserve --param-rk=... --prout-type=5
    (cdb.pr_reserve(RK, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),
     "5f 01 05 00 00 00 00 00 18 00", PARAMS_RK),
    # sg3_utils: --out --release --param-rk=... --prout-type=5
    (cdb.pr_release(RK, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),
     "5f 02 05 00 00 00 00 00 18 00", PARAMS_RK),
    # sg3_utils: --out --clear --param-rk=...
    (cdb.pr_clear(RK), "5f 03 00 00 00 00 00 00 18 00", PARAMS_RK),
    # sg3_utils: --out --preempt --param-rk=... --param-sark=... --prout-type=5
    (cdb.pr_preempt(RK, SARK, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),
     "5f 04 05 00 00 00 00 00 18 00", RK_BYTES + SARK_BYTES + bytes(8)),
    # sg3_utils: --out --preempt-abort ...
    (cdb.pr_preempt(RK, SARK, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, abort=True),
     "5f 05 05 00 00 00 00 00 18 00", RK_BYTES + SARK_BYTES + bytes(8)),
])
def test_pr_out(command, cdb_hex, params):
    assert command.cdb == h(cdb_hex)
    assert command.data_out == params
    assert len(command.data_out) == cdb.PR_OUT_PARAMETER_LENGTH
    assert command.direction is Direction.TO_DEVICE


def test_pr_out_type_codes():
    assert [t.value for t in PrType] == [1, 3, 5, 6, 7, 8]
    assert PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY == 5
    assert cdb.pr_reserve(1, PrType.WRITE_EXCLUSIVE).cdb[2] == 0x01
    assert cdb.pr_reserve(1, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS).cdb[2] == 0x08


def test_pr_out_flags():
    assert cdb.pr_out_parameters(aptpl=True)[20] == 0x01
    assert cdb.pr_out_parameters(all_tg_pt=True)[20] == 0x04
    assert cdb.pr_register(1, ignore_existing=True, aptpl=True).data_out[20] == 0x01


def test_pr_out_rejects_bad_arguments():
    with pytest.raises(ValueError):
        cdb.persistent_reserve_out(PrOutAction.RESERVE, key=1)        # no type
    with pytest.raises(ValueError):
        cdb.pr_register(1 << 64)
    with pytest.raises(ValueError):
        cdb.persistent_reserve_out(PrOutAction.REGISTER_AND_MOVE)
    with pytest.raises(ValueError):
        cdb.inquiry(0x100)


def test_read_write_16():
    read = cdb.read_16(0x0102030405060708, 8, 512)
    assert read.cdb == h("88 00 01 02 03 04 05 06 07 08 00 00 00 08 00 00")
    assert read.data_in_length == 4096
    write = cdb.write_16(0x10, bytes(1024), 512, fua=True)
    assert write.cdb == h("8a 08 00 00 00 00 00 00 00 10 00 00 00 02 00 00")
    assert write.data_out == bytes(1024)
    with pytest.raises(ValueError):
        cdb.write_16(0, bytes(100), 512)
