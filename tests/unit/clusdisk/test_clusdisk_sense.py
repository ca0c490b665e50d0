"""Sense decoding and outcome classification, pinned in bytes.

The fixed-format UNIT ATTENTION 29/03 is what LIO returned after a LUN reset
in shared/lab (``sg_raw -v`` "Raw sense data"); the descriptor vectors follow
SPC-3 4.5.2 tables 12-14.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusdisk.scsi import sense
from clusdisk.scsi.errors import ScsiParseError
from clusdisk.scsi.sense import OutcomeKind, SenseKey

UA_29_03 = bytes.fromhex("70 00 06 00 00 00 00 0a 00 00 00 00 29 03 00 00 00 00")
NOT_READY_04_01 = bytes.fromhex("70 00 02 00 00 00 00 0a 00 00 00 00 04 01 00 00 00 00")
ILLEGAL_24_00 = bytes.fromhex("f0 00 05 00 00 01 00 0a 00 00 00 00 24 00 00 00 00 00")
DESC_UA_2A_03 = bytes.fromhex("72 06 2a 03 00 00 00 00")
DESC_WITH_INFO = bytes.fromhex("72 03 11 00 00 00 00 0c 00 0a 80 00 00 00 00 00 00 00 12 34")


def test_fixed_unit_attention():
    data = sense.decode_sense(UA_29_03)
    assert (data.response_code, data.key, data.asc, data.ascq) == (0x70, 6, 0x29, 0x03)
    assert not data.descriptor_format and not data.deferred and data.information is None


def test_fixed_with_valid_information():
    data = sense.decode_sense(ILLEGAL_24_00)
    assert data.key == SenseKey.ILLEGAL_REQUEST and data.information == 0x100
    assert (data.asc, data.ascq) == (0x24, 0x00)


def test_fixed_deferred_and_short():
    data = sense.decode_sense(bytes.fromhex("71 00 03 00 00 00 00 00"))   # no ASC bytes
    assert data.deferred and data.key == SenseKey.MEDIUM_ERROR and (data.asc, data.ascq) == (0, 0)
    with pytest.raises(ScsiParseError):
        sense.decode_sense(UA_29_03[:13])          # claims ASC but cut before it
    with pytest.raises(ScsiParseError):
        sense.decode_sense(UA_29_03[:7])


def test_descriptor_formats():
    data = sense.decode_sense(DESC_UA_2A_03)
    assert data.descriptor_format and (data.key, data.asc, data.ascq) == (6, 0x2A, 0x03)
    info = sense.decode_sense(DESC_WITH_INFO)
    assert info.key == SenseKey.MEDIUM_ERROR and info.asc == 0x11
    assert info.information == 0x1234 and info.descriptors[0][0] == 0x00
    assert sense.decode_sense(bytes.fromhex("73 02 04 01 00 00 00 00")).deferred


@pytest.mark.parametrize("blob", [
    b"",
    bytes.fromhex("72 06 2a"),                                   # header truncated
    bytes.fromhex("72 06 2a 03 00 00 00 04 00 0a"),              # descriptor overruns
    bytes.fromhex("72 06 2a 03 00 00 00 01 00"),                 # descriptor header cut
    bytes.fromhex("7f 00 00 00 00 00 00 00"),                    # vendor specific format
])
def test_malformed_sense(blob):
    with pytest.raises(ScsiParseError):
        sense.decode_sense(blob)


@given(st.binary(max_size=40))
def test_decode_sense_only_raises_parse_errors(blob):
    try:
        sense.decode_sense(blob)
    except ScsiParseError:
        pass
    outcome = sense.classify(sense.CHECK_CONDITION, blob)    # never raises
    assert isinstance(outcome, sense.Outcome)


@pytest.mark.parametrize("args, kind, retryable", [
    ((sense.GOOD,), OutcomeKind.GOOD, False),
    ((sense.CONDITION_MET,), OutcomeKind.GOOD, False),
    ((sense.RESERVATION_CONFLICT,), OutcomeKind.RESERVATION_CONFLICT, False),
    ((sense.BUSY,), OutcomeKind.BUSY, True),
    ((sense.TASK_SET_FULL,), OutcomeKind.BUSY, True),
    ((sense.CHECK_CONDITION, UA_29_03, 0, 0x08), OutcomeKind.UNIT_ATTENTION, True),
    ((sense.CHECK_CONDITION, DESC_UA_2A_03), OutcomeKind.UNIT_ATTENTION, True),
    ((sense.CHECK_CONDITION, NOT_READY_04_01), OutcomeKind.NOT_READY, True),
    ((sense.CHECK_CONDITION, bytes.fromhex("70 00 02 00 00 00 00 0a 00 00 00 00 3a 00")),
     OutcomeKind.NOT_READY, False),
    ((sense.CHECK_CONDITION, ILLEGAL_24_00), OutcomeKind.CHECK_CONDITION, False),
    ((sense.CHECK_CONDITION, bytes.fromhex("70 00 0b 00 00 00 00 0a 00 00 00 00 47 00")),
     OutcomeKind.CHECK_CONDITION, True),
    ((sense.CHECK_CONDITION, bytes.fromhex("70 00 01 00 00 00 00 0a 00 00 00 00 17 01")),
     OutcomeKind.GOOD, False),                                   # recovered error
    ((sense.CHECK_CONDITION, b""), OutcomeKind.CHECK_CONDITION, False),
    ((sense.CHECK_CONDITION, b"\x7f"), OutcomeKind.CHECK_CONDITION, False),
    ((sense.ACA_ACTIVE,), OutcomeKind.CHECK_CONDITION, False),
    ((sense.TASK_ABORTED,), OutcomeKind.CHECK_CONDITION, True),
    ((0, b"", sense.DID_TRANSPORT_DISRUPTED), OutcomeKind.TRANSPORT_ERROR, True),
    ((0, b"", sense.DID_NO_CONNECT), OutcomeKind.TRANSPORT_ERROR, False),
    ((0, b"", sense.DID_TIME_OUT), OutcomeKind.TRANSPORT_ERROR, False),
    ((0, b"", 0, sense.DRIVER_TIMEOUT), OutcomeKind.TRANSPORT_ERROR, False),
    ((sense.RESERVATION_CONFLICT, b"", 0, sense.DRIVER_SENSE), OutcomeKind.RESERVATION_CONFLICT, False),
])
def test_classify(args, kind, retryable):
    outcome = sense.classify(*args)
    assert outcome.kind is kind
    assert outcome.retryable is retryable


def test_classify_carries_sense_fields_and_describes():
    outcome = sense.classify(sense.CHECK_CONDITION, UA_29_03)
    assert (outcome.status, outcome.sense_key, outcome.asc, outcome.ascq) == (2, 6, 0x29, 0x03)
    assert outcome.describe() == ("unit attention (unit attention, asc/ascq 29/03: "
                                  "bus device reset function occurred)")
    assert sense.classify(0x18).status == 0x18 and not sense.classify(0x18).ok
    transport = sense.classify(0, b"", sense.DID_TRANSPORT_DISRUPTED)
    assert transport.status is None and "host 0x0e" in transport.describe()
    assert sense.timed_out().kind is OutcomeKind.TRANSPORT_ERROR
