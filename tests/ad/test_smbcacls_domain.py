"""smbcacls edits a file's DACL by the names of domain users and groups,
which smbcad's lsarpc translates through the DC (smbca.auth.dc_names, as
the machine account), and the next open obeys it (issue 12 item 7).  The
well-known and local names are tests/interop/test_lsa_names.py's.

smbcacls runs as the member's local NTLM user, which an ACE for Everyone
lets read and write the descriptor (smbcacls --add writes the owner back
too) and nothing else;
alice (in smbca-staff) and bob (not) open the file
with Kerberos ccaches."""

import re

import pytest

import samba_dc
from ad_member import LOCAL_PASSWORD, LOCAL_USER

pytestmark = pytest.mark.root

DOMAIN = samba_dc.DOMAIN
STAFF = f"{DOMAIN}\\{samba_dc.GROUP}"
EDIT_DACL = 0x000E0000          # READ_CONTROL | WRITE_DAC | WRITE_OWNER (smbcacls --add)


def output(result) -> str:
    return (result.stdout + result.stderr).decode(errors="replace")


def smbcacls(dc, *args: str):
    argv = ["smbcacls", "//fs1/share", "f.txt", "-U", f"{LOCAL_USER}%{LOCAL_PASSWORD}",
            "--use-kerberos=off", *args]
    return dc.member_run(argv, check=False, timeout=60)


def aces(dc) -> set[str]:
    listing = smbcacls(dc)
    assert listing.returncode == 0, output(listing)
    return set(re.findall(r"^ACL:.*$", listing.stdout.decode(), re.MULTILINE))


def opens(dc, ccaches, user: str):
    argv = ["smbclient", "//fs1/share", "-N", "-I", dc.member_address,
            "--use-kerberos=required", "-c", "get f.txt /dev/null"]
    return dc.member_run(argv, env=dc.env(KRB5CCNAME=f"FILE:{ccaches[user]}"), check=False,
                         timeout=60)


def test_domain_names_in_smbcacls_are_the_dcs_and_enforced(dc, member_smbcad, ccaches):
    (member_smbcad.share / "f.txt").write_bytes(b"data")
    staff_sid = dc.object_sid("group", dc.group)
    bob_sid = dc.object_sid("user", "bob")
    granted = smbcacls(dc, "--set", f"ACL:{STAFF}:ALLOWED/0/FULL,"
                       f"ACL:Everyone:ALLOWED/0/{EDIT_DACL:#010x},"
                       "ACL:BUILTIN\\Administrators:ALLOWED/0/FULL")
    assert granted.returncode == 0, output(granted) + member_smbcad.log()[-2000:]
    listed = aces(dc)
    assert f"ACL:{STAFF}:ALLOWED/0x0/FULL" in listed, listed
    numeric = smbcacls(dc, "--numeric").stdout.decode()
    assert f"ACL:{staff_sid}:0/0x0/0x001f01ff" in numeric, numeric

    assert opens(dc, ccaches, "alice").returncode == 0     # through smbca-staff
    refused = opens(dc, ccaches, "bob")
    assert "NT_STATUS_ACCESS_DENIED" in output(refused), output(refused)

    # A domain user by name, isolated and qualified.
    for ace in ("ACL:bob:ALLOWED/0/READ", f"ACL:{DOMAIN}\\bob:ALLOWED/0/READ"):
        added = smbcacls(dc, "--add", ace)
        assert added.returncode == 0, output(added)
        assert f"ACL:{DOMAIN}\\bob:ALLOWED/0x0/READ" in aces(dc)
        assert f"ACL:{bob_sid}:0/0x0/0x001200a9" in smbcacls(dc, "--numeric").stdout.decode()
        assert opens(dc, ccaches, "bob").returncode == 0
        removed = smbcacls(dc, "--delete", f"ACL:{DOMAIN}\\bob:ALLOWED/0/READ")
        assert removed.returncode == 0, output(removed)
        assert f"ACL:{DOMAIN}\\bob:ALLOWED/0x0/READ" not in aces(dc)
        assert "NT_STATUS_ACCESS_DENIED" in output(opens(dc, ccaches, "bob"))

    removed = smbcacls(dc, "--delete", f"ACL:{STAFF}:ALLOWED/0/FULL")
    assert removed.returncode == 0, output(removed)
    assert f"ACL:{STAFF}:ALLOWED/0x0/FULL" not in aces(dc)
    assert "NT_STATUS_ACCESS_DENIED" in output(opens(dc, ccaches, "alice"))


def test_an_unknown_domain_name_is_refused_by_smbcacls(dc, member_smbcad):
    (member_smbcad.share / "f.txt").write_bytes(b"data")
    result = smbcacls(dc, "--add", f"ACL:{DOMAIN}\\nosuchuser:ALLOWED/0/FULL")
    assert result.returncode != 0
    assert f"failed to convert '{DOMAIN}\\nosuchuser' to SID" in output(result)
