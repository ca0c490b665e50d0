"""Fuzzing: every decoder, fed arbitrary bytes, returns a record or raises SmbError.

Anything else (IndexError, struct.error, UnicodeDecodeError, ...) would escape the
dispatcher's status mapping, so it is a bug.  Findings are kept as named blobs in
REGRESSIONS below.
"""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import (SecurityDescriptor, Sid, decode_full_ea_list, decode_get_ea_list,
                               decode_set_info, match_pattern, posix_from_sd)

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def only_smb_errors(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except SmbError:
        pass


@FUZZ
@given(st.integers(0, 255), st.binary(max_size=128))
def test_set_info_decoders(level, data):
    only_smb_errors(decode_set_info, level, data)


@FUZZ
@given(st.sampled_from([4, 10, 11, 13, 14, 15, 16, 19, 20, 39, 64, 65]),
       st.binary(min_size=16, max_size=64))
def test_set_info_decoders_plausible_lengths(level, data):
    only_smb_errors(decode_set_info, level, data)


@FUZZ
@given(st.binary(max_size=256))
def test_security_descriptor(data):
    only_smb_errors(SecurityDescriptor.decode, data)
    only_smb_errors(posix_from_sd, data, current_uid=1, current_gid=2)


def sd_like():
    """Bytes that start like a self-relative descriptor, so the fuzzer gets past the header."""
    header = st.tuples(st.sampled_from([0x8004, 0x8014, 0x8000, 0x0004]),
                       *[st.sampled_from([0, 20, 28, 36, 44]) for _ in range(4)])
    return st.builds(lambda hd, body: bytes([1, 0]) + hd[0].to_bytes(2, "little")
                     + b"".join(o.to_bytes(4, "little") for o in hd[1:]) + body,
                     header, st.binary(max_size=96))


@FUZZ
@given(sd_like())
def test_security_descriptor_structured(data):
    only_smb_errors(SecurityDescriptor.decode, data)
    only_smb_errors(posix_from_sd, data)


@FUZZ
@given(st.binary(max_size=64), st.integers(-4, 80))
def test_sid(data, offset):
    only_smb_errors(Sid.decode, data, offset)


@FUZZ
@given(st.text(max_size=40))
def test_sid_strings(text):
    only_smb_errors(Sid.from_string, text)


@FUZZ
@given(st.binary(max_size=128))
def test_ea_lists(data):
    only_smb_errors(decode_full_ea_list, data)
    only_smb_errors(decode_get_ea_list, data)


@FUZZ
@given(st.text(max_size=12), st.text(max_size=16))
def test_match_pattern_total(pattern, name):
    assert match_pattern(pattern, name) in (True, False)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# Hand-made edge cases (the fuzzer has found nothing yet; add its finds here by name).
REGRESSIONS = {
    "ace_size_zero": (SecurityDescriptor.decode,
                      h("01 00 0480 00000000 00000000 00000000 14000000"
                        "02 00 0c00 0100 0000 00 00 0000 00000000")),
    "acl_claims_65535_aces": (SecurityDescriptor.decode,
                              h("01 00 0480 00000000 00000000 00000000 14000000"
                                "02 00 0800 ffff 0000")),
    "sid_at_last_byte": (SecurityDescriptor.decode,
                         h("01 00 0080 14000000 00000000 00000000 00000000 01")),
    "ea_next_offset_to_buffer_end": (decode_full_ea_list, h("08000000 00 01 0000 41 00 0000")),
    "rename_length_wraps": (lambda b: decode_set_info(10, b),
                            h("01 00000000000000 0000000000000000 ffffffff 4100")),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regressions(name):
    fn, blob = REGRESSIONS[name]
    only_smb_errors(fn, blob)
