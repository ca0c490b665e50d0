"""smbtorture's smb2.session tests that exercise the keys, over Kerberos:
signing with each algorithm and encryption with each cipher (the AES-256
ones take the full 32-byte Kerberos session key, [MS-SMB2] 3.3.5.5.3),
re-authentication and reconnects on the same ticket."""

import re

import pytest

import samba_dc

pytestmark = pytest.mark.root

TESTS = ("reauth1", "reconnect1", "reconnect2", "two_logoff",
         "signing-hmac-sha-256", "signing-aes-128-cmac", "signing-aes-128-gmac",
         "encryption-aes-128-ccm", "encryption-aes-128-gcm",
         "encryption-aes-256-ccm", "encryption-aes-256-gcm")


def test_session_keys_over_kerberos(dc, member_smbcad, tmp_path):
    ccache = tmp_path / "ccache"
    password = dc.users["alice"]
    dc.kinit(f"alice@{samba_dc.REALM}", password, ccache)
    argv = ["smbtorture", "//fs1/share", "-U", f"alice%{password}",
            f"--realm={samba_dc.REALM}", f"--workgroup={samba_dc.DOMAIN}",
            "--use-kerberos=required", *(f"smb2.session.{name}" for name in TESTS)]
    result = dc.member_run(argv, env=dc.env(KRB5CCNAME=f"FILE:{ccache}"), check=False,
                           timeout=300)
    text = (result.stdout + result.stderr).decode(errors="replace")
    passed = set(re.findall(r"^success: (\S+)", text, re.MULTILINE))
    assert passed == set(TESTS), text[-3000:] + member_smbcad.log()[-3000:]
    assert "set up for SMBCA\\alice" in member_smbcad.log()
