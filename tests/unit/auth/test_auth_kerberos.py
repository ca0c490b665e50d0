"""The Kerberos acceptor's pure parts: the PAC's SIDs ([MS-PAC] 2.5) and the
NTSTATUS each MIT failure maps to.  The exchange itself runs against a real
Samba AD DC in tests/ad/test_kerberos.py."""

import struct

import pytest

from smbca.auth import AuthError
from smbca.auth.pac import PAC_LOGON_INFO, pac_buffers, parse_logon_info
from smbca.ntstatus import NtStatus

# The PAC of alice@SMBCA.TEST (member of smbca-staff, RID 1105) in a service
# ticket from Samba 4.17.12's AD DC (Debian 12), provisioned by
# tests/ad/samba_dc.py; taken with gss_get_name_attribute("urn:mspac:")
# after MIT krb5 accepted the AP-REQ.
ALICE_PAC = bytes.fromhex(
    "070000000000000001000000b801000078000000000000000a0000001400000030020000000000000c000000"
    "7800000048020000000000000600000010000000c0020000000000000700000010000000d002000000000000"
    "1000000010000000e0020000000000001300000010000000f00200000000000001100800cccccccca8010000"
    "00000000000002005285317a5485dd01ffffffffffffff7fffffffffffffff7fb28204775485dd01b2426ea1"
    "1d86dd01b2025e6c55a6dd010a000a00040002000000000008000200000000000c0002000000000010000200"
    "00000000140002000000000018000200010000004f04000001020000020000001c0002002000000000000000"
    "00000000000000000000000006000800200002000a000c002400020028000200000000000000000010000000"
    "00000000000000000000000000000000000000000000000000000000010000002c0002000000000000000000"
    "0000000005000000000000000500000061006c00690063006500000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0200000001020000070000005104000007000000040000000000000003000000440043003100000006000000"
    "000000000500000053004d00420043004100000004000000010400000000000515000000894b9b38b915401d"
    "d63e3acd01000000300002000700000001000000010100000000001201000000800c06e15485dd010a006100"
    "6c00690063006500000000002000180014003800020000000a0050001c005a000000000061006c0069006300"
    "6500400073006d006200630061002e00740065007300740053004d004200430041002e005400450053005400"
    "0000000061006c00690063006500010500000000000515000000894b9b38b915401dd63e3acd4f0400000000"
    "1000000046304ec822d8b64588618df11000000094b47f716861baa09cb466d910000000ea23249683b18b2f"
    "b9de429d1000000047dde5aa6c969bec50940dd0"
)
DOMAIN_SID = "S-1-5-21-949701513-490739129-3443146454"


def test_pac_of_a_samba_dc_gives_user_and_group_sids():
    info = parse_logon_info(ALICE_PAC)
    assert (info.user, info.domain) == ("alice", "SMBCA")
    assert info.user_sid == f"{DOMAIN_SID}-1103"
    assert info.primary_group_sid == f"{DOMAIN_SID}-513"       # Domain Users
    # GroupIds (Domain Users, smbca-staff), then ExtraSids: "Authentication
    # authority asserted identity" ([MS-DTYP] 2.4.2.4, S-1-18-1).
    assert info.group_sids == (f"{DOMAIN_SID}-513", f"{DOMAIN_SID}-1105", "S-1-18-1")


def test_pac_buffers_by_type():
    buffers = pac_buffers(ALICE_PAC)
    assert PAC_LOGON_INFO in buffers
    assert 6 in buffers and 7 in buffers            # server and KDC signatures


@pytest.mark.parametrize("pac", [
    b"",
    struct.pack("<II", 50, 0),                                      # table past the end
    struct.pack("<II", 1, 0) + struct.pack("<IIQ", 1, 100, 24),     # buffer past the end
    struct.pack("<II", 1, 0) + struct.pack("<IIQ", 10, 0, 24),      # no logon info
    struct.pack("<II", 1, 0) + struct.pack("<IIQ", 1, 8, 24) + b"\x01" * 8,  # bad NDR
])
def test_malformed_pac_is_a_logon_failure(pac):
    with pytest.raises(AuthError) as caught:
        parse_logon_info(pac)
    assert caught.value.status == NtStatus.LOGON_FAILURE


gssapi = pytest.importorskip("gssapi", reason="python-gssapi (scripts/test.sh installs it)")


def _gss_error(minor: int):
    from gssapi.raw.misc import GSSError
    return GSSError(0xD0000, minor & 0xFFFFFFFF)        # GSS_S_FAILURE


@pytest.mark.parametrize(("minor", "status", "says"), [
    (-1765328347, NtStatus.TIME_DIFFERENCE_AT_DC, "clock skew"),     # KRB5KRB_AP_ERR_SKEW
    (-1765328351, NtStatus.TIME_DIFFERENCE_AT_DC, "clock skew"),     # KRB5KRB_AP_ERR_TKT_NYV
    (-1765328352, NtStatus.LOGON_FAILURE, "expired"),               # KRB5KRB_AP_ERR_TKT_EXPIRED
    (-1765328344, NtStatus.INVALID_PARAMETER, "not a valid AP-REQ"),  # KRB5KRB_AP_ERR_MSG_TYPE
    (-1765328377, NtStatus.LOGON_FAILURE, "refused"),       # any other: S_PRINCIPAL_UNKNOWN
])
def test_mit_failures_map_to_ntstatus(minor, status, says):
    from smbca.auth.kerberos import auth_error_of
    error = auth_error_of(_gss_error(minor))
    assert error.status == status
    assert says in str(error)
