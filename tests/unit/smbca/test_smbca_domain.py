"""``smbca domain``'s pure half (smbca.domain): the names and SPNs of the
pair's computer account, adcli's argument vectors, the keytab reader and the
machine account record (NETLOGON's secret) from adcli's join details.
The commands themselves run against a Samba AD DC in tests/ad."""

import struct

import pytest

from smbca.domain import (DomainError, MachineAccount, Membership, keytab_principals,
                          parse_join_details)

DOMAIN_SID = "S-1-5-21-945753774-1005190434-2987710616"
# adcli 0.9.1-2 (Debian) join --show-details --show-password against Samba
# 4.17's AD DC in the tests/ad fixture (the password replaced by one with a
# space and '=' in it, which adcli may print).
ADCLI_DETAILS = """[domain]
domain-name = smbca.test
domain-realm = SMBCA.TEST
domain-controller = dc1.smbca.test
domain-short = SMBCA
domain-SID = S-1-5-21-945753774-1005190434-2987710616
naming-context = DC=smbca,DC=test
domain-ou = (null)
[computer]
host-fqdn = dev2.smbca.test
computer-name = DEV2
computer-dn = CN=DEV2,CN=Computers,DC=smbca,DC=test
computer-password = ]&v^U m;=x
os-name = pc-linux-gnu
[keytab]
kvno = 2
keytab = /tmp/dev2.keytab
"""


def test_every_name_gets_cifs_and_host_spns_short_and_qualified():
    membership = Membership("SMBCA.TEST", ("FS1", "FS1ALT"))
    assert membership.service_principals() == (
        "cifs/FS1", "host/FS1", "cifs/fs1.smbca.test", "host/fs1.smbca.test",
        "cifs/FS1ALT", "host/FS1ALT", "cifs/fs1alt.smbca.test", "host/fs1alt.smbca.test")


def test_join_names_the_account_after_the_first_name_and_adds_the_others():
    membership = Membership("smbca.test", ("FS1", "FS1ALT"), "/k.keytab", "dc1.smbca.test")
    argv = membership.join_argv("Administrator")
    assert argv[:2] == ["adcli", "join"]
    for expected in ("--domain=smbca.test", "--domain-realm=SMBCA.TEST",
                     "--domain-controller=dc1.smbca.test", "--computer-name=FS1",
                     "--host-fqdn=fs1.smbca.test", "--host-keytab=/k.keytab",
                     "--login-user=Administrator", "--stdin-password",
                     "--service-name=cifs", "--service-name=host",
                     "--add-service-principal=cifs/FS1ALT",
                     "--add-service-principal=host/fs1alt.smbca.test"):
        assert expected in argv
    # adcli adds the first name's SPNs itself (--service-name).
    assert "--add-service-principal=cifs/FS1" not in argv


def test_leave_and_testjoin():
    membership = Membership("SMBCA.TEST", ("FS1",), "/k.keytab")
    assert membership.leave_argv("admin")[-1] == "FS1"
    assert membership.testjoin_argv() == ["adcli", "testjoin", "--domain=smbca.test",
                                          "--host-keytab=/k.keytab"]


@pytest.mark.parametrize(("realm", "names"), [
    ("SMBCA", ("FS1",)),                     # not a DNS name
    ("SMBCA.TEST", ()),                      # no name
    ("SMBCA.TEST", ("fs1.smbca.test",)),     # a dotted name
    ("SMBCA.TEST", ("A" * 16,)),             # past NetBIOS' 15 characters
])
def test_bad_membership_is_refused(realm, names):
    with pytest.raises(DomainError):
        Membership(realm, names)


def _entry(principal: str, kvno: int, enctype: int = 18, kvno32: bool = True) -> bytes:
    """One keytab entry (MIT's doc/formats/keytab_file_format.rst, version 2)."""
    name, realm = principal.split("@")
    parts = name.split("/")

    def counted(value: bytes) -> bytes:
        return struct.pack(">H", len(value)) + value

    body = struct.pack(">H", len(parts)) + counted(realm.encode())
    body += b"".join(counted(part.encode()) for part in parts)
    body += struct.pack(">IIB", 1, 1_700_000_000, kvno & 0xFF)
    body += struct.pack(">H", enctype) + counted(bytes(32))
    if kvno32:
        body += struct.pack(">I", kvno)
    return struct.pack(">i", len(body)) + body


def test_keytab_principals_with_holes_and_both_kvno_forms():
    data = (b"\x05\x02" + _entry("FS1$@SMBCA.TEST", 2)
            + struct.pack(">i", -12) + bytes(12)                       # a deleted entry
            + _entry("cifs/FS1@SMBCA.TEST", 2, enctype=17, kvno32=False)
            + _entry("cifs/FS1@SMBCA.TEST", 300))
    assert keytab_principals(data) == {"FS1$@SMBCA.TEST": 2, "cifs/FS1@SMBCA.TEST": 300}


@pytest.mark.parametrize("data", [b"", b"\x05\x01", b"\x05\x02" + _entry("a@B", 1)[:-10]])
def test_bad_keytab_is_refused(data):
    with pytest.raises(DomainError):
        keytab_principals(data)


def test_status_without_a_keytab_says_not_joined(tmp_path, capsys):
    from smbca.admin import main
    config = tmp_path / "smbcad.yaml"
    config.write_text(f"server:\n  server_name: FS1\n  keytab: {tmp_path / 'none.keytab'}\n")
    assert main(["domain", "status", "--config", str(config)]) == 1
    assert "not joined" in capsys.readouterr().err


def test_join_needs_a_realm_and_a_user(capsys):
    from smbca.admin import main
    assert main(["domain", "join", "--user", "Administrator"]) == 2
    assert main(["domain", "join", "--realm", "SMBCA.TEST"]) == 2


def test_join_details_give_the_machine_account():
    account = parse_join_details(ADCLI_DETAILS, "smbca.test")
    assert account == MachineAccount(realm="SMBCA.TEST", netbios_domain="SMBCA",
                                     domain_sid=DOMAIN_SID, computer_name="DEV2",
                                     password="]&v^U m;=x",
                                     domain_controller="dc1.smbca.test")
    assert MachineAccount.from_json(account.to_json()) == account
    assert account.names_domain("smbca") and account.names_domain("smbca.TEST")
    assert not account.names_domain("DEV2") and not account.names_domain("")


def test_join_details_without_the_password_are_refused():
    text = "\n".join(line for line in ADCLI_DETAILS.splitlines()
                     if not line.startswith("computer-password"))
    with pytest.raises(DomainError, match="computer-password"):
        parse_join_details(text, "smbca.test")


def test_a_damaged_record_is_refused():
    with pytest.raises(DomainError, match="not a machine account record"):
        MachineAccount.from_json('{"realm": "X"}', "/etc/smbca/krb5.keytab.machine.json")


def test_update_keeps_the_names_and_forces_a_new_password():
    membership = Membership("SMBCA.TEST", ("FS1", "FS1ALT"), keytab="/etc/smbca/krb5.keytab")
    argv = membership.update_argv()
    assert argv[:2] == ["adcli", "update"]
    assert "--computer-password-lifetime=0" in argv and "--show-password" in argv
    assert "--host-fqdn=fs1.smbca.test" in argv and "--computer-name=FS1" in argv
    assert "--add-service-principal=cifs/fs1alt.smbca.test" in argv
    assert not any(arg.startswith(("--login-user", "--stdin-password", "--domain-realm"))
                   for arg in argv)


def test_details_of_an_update_that_changed_nothing_are_refused():
    """adcli update prints a password even when it did not set one (kvno -1)."""
    with pytest.raises(DomainError, match="did not change"):
        parse_join_details(ADCLI_DETAILS.replace("kvno = 2", "kvno = -1"), "smbca.test")
