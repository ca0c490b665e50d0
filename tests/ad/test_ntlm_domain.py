"""NTLM for domain users by pass-through to the DC over NETLOGON (issue 12
item 3), with real smbclient against a real Samba AD DC: Kerberos off, the
user named ``SMBCA\\user``.  The session's signing and encryption keys come
from the SessionBaseKey the DC returned, so a signed or encrypted session
that works proves the pass-through's key."""

import json
import os
import stat

import pytest

import samba_dc
from ad_member import LOCAL_PASSWORD, LOCAL_USER, MemberSmbcad, python_env, smbca_argv

pytestmark = pytest.mark.root

ALICE = f"{samba_dc.DOMAIN}\\alice"
SECOND_PORT = 1445          # a test's own smbcad, beside the module's on 445


def ntlm_smbclient(dc, user: str, password: str, commands: str, *options: str,
                   address: str | None = None, name: str = "fs1", port: int = 445):
    """smbclient in the member namespace with NTLM only (no Kerberos)."""
    argv = ["smbclient", f"//{name}/share", "-I", address or dc.member_address,
            "-p", str(port), "--use-kerberos=off", "-U", f"{user}%{password}", *options,
            "-c", commands]
    return dc.member_run(argv, check=False, timeout=60)


def output(result) -> str:
    return (result.stdout + result.stderr).decode(errors="replace")


def test_join_kept_the_machine_account_root_only(joined):
    record = joined["keytab"].with_name(joined["keytab"].name + ".machine.json")
    mode = os.stat(record).st_mode
    assert stat.S_IMODE(mode) == 0o600
    account = json.loads(record.read_text())
    assert account["netbios_domain"] == samba_dc.DOMAIN
    assert account["computer_name"] == samba_dc.SERVER_NAMES[0]
    assert account["password"] and account["domain_sid"].startswith("S-1-5-21-")


def test_status_checks_the_netlogon_secure_channel(dc, joined):
    result = dc.member_run(smbca_argv("domain", "status", "--config", str(joined["config"])),
                           env=python_env(dc), check=False)
    assert result.returncode == 0, output(result)
    assert "NETLOGON secure channel: ok (with dc1.smbca.test)" in output(result)


def test_status_says_when_the_record_has_a_stale_password(dc, joined, tmp_path):
    keytab = tmp_path / "stale.keytab"
    keytab.write_bytes(joined["keytab"].read_bytes())
    record = json.loads(joined["keytab"].with_name(joined["keytab"].name
                                                   + ".machine.json").read_text())
    record["password"] = "not the machine password"
    keytab.with_name(keytab.name + ".machine.json").write_text(json.dumps(record))
    result = dc.member_run(smbca_argv("domain", "status", "--config", str(joined["config"]),
                                      "--keytab", str(keytab)),
                           env=python_env(dc), check=False)
    assert result.returncode == 1, output(result)
    assert "NETLOGON secure channel: FAILS" in output(result)
    assert "STATUS_ACCESS_DENIED" in output(result)


def test_domain_user_writes_over_ntlm_with_signing(dc, member_smbcad, tmp_path):
    source = tmp_path / "ntlm.txt"
    source.write_bytes(b"written by a domain user over NTLM\n")
    result = ntlm_smbclient(dc, ALICE, dc.users["alice"], f"put {source} ntlm.txt; ls",
                            "--client-protection=sign")
    assert result.returncode == 0, output(result) + member_smbcad.log()
    assert "ntlm.txt" in output(result)
    assert (member_smbcad.share / "ntlm.txt").read_bytes() == source.read_bytes()
    assert "set up for SMBCA\\alice" in member_smbcad.log()
    assert "NETLOGON: secure channel to" in member_smbcad.log()


def test_the_dc_gives_the_users_sid_and_groups(dc, member_smbcad):
    result = ntlm_smbclient(dc, ALICE, dc.users["alice"], "ls")
    assert result.returncode == 0, output(result)
    user_sid = dc.object_sid("user", "alice")
    group_sid = dc.object_sid("group", dc.group)
    domain_sid = user_sid.rpartition("-")[0]
    line = next(line for line in member_smbcad.log().splitlines()
                if "NETLOGON: SMBCA\\alice is SMBCA\\alice" in line)
    assert f"SID {user_sid}," in line
    assert group_sid in line and f"{domain_sid}-513" in line      # Domain Users


def test_encrypted_session_with_the_dcs_session_key(dc, member_smbcad):
    result = ntlm_smbclient(dc, ALICE, dc.users["alice"], "ls", "--client-protection=encrypt")
    assert result.returncode == 0, output(result) + member_smbcad.log()


def test_dns_domain_name_goes_to_the_dc_too(dc, member_smbcad):
    result = ntlm_smbclient(dc, f"{samba_dc.DNS_DOMAIN}\\bob", dc.users["bob"], "ls",
                            "--client-protection=sign")
    assert result.returncode == 0, output(result) + member_smbcad.log()
    assert "set up for SMBCA\\bob" in member_smbcad.log()


def test_wrong_password_is_logon_failure(dc, member_smbcad):
    result = ntlm_smbclient(dc, ALICE, "not-the-password", "ls")
    assert result.returncode != 0
    assert "NT_STATUS_LOGON_FAILURE" in output(result), output(result)
    assert "the DC refused SMBCA\\alice: STATUS_WRONG_PASSWORD" in member_smbcad.log()


def test_unknown_domain_user_is_logon_failure(dc, member_smbcad):
    result = ntlm_smbclient(dc, f"{samba_dc.DOMAIN}\\nobody", "whatever", "ls")
    assert result.returncode != 0
    assert "NT_STATUS_LOGON_FAILURE" in output(result), output(result)


def test_disabled_account_gets_the_dcs_status(dc, member_smbcad):
    password = "Car0l-Pass.word"
    dc.samba_tool("user", "create", "carol", password)
    dc.samba_tool("user", "disable", "carol")
    result = ntlm_smbclient(dc, f"{samba_dc.DOMAIN}\\carol", password, "ls")
    assert result.returncode != 0
    assert "NT_STATUS_ACCOUNT_DISABLED" in output(result), output(result)


def test_local_user_still_works_beside_the_domain(dc, member_smbcad):
    for user in (LOCAL_USER, f"{samba_dc.SERVER_NAMES[0]}\\{LOCAL_USER}"):
        result = ntlm_smbclient(dc, user, LOCAL_PASSWORD, "ls", "--client-protection=sign")
        assert result.returncode == 0, output(result) + member_smbcad.log()
    result = ntlm_smbclient(dc, LOCAL_USER, "wrong", "ls")
    assert "NT_STATUS_LOGON_FAILURE" in output(result)


def test_both_nodes_pass_through_as_the_one_computer_account(dc, joined, member_smbcad,
                                                             tmp_path):
    """The partner with copies of the keytab and the machine account record:
    each node keeps its own secure channel as FS1$, and logons on one do not
    break the other's channel (NetrLogonSamLogonEx needs no credential chain)."""
    partner_address = "192.0.2.82"
    dc.member_run(["ip", "addr", "add", f"{partner_address}/{samba_dc.PREFIX}", "dev", "ad0"])
    keytab = tmp_path / "partner.keytab"
    for source, target in ((joined["keytab"], keytab),
                           (joined["keytab"].with_name(joined["keytab"].name + ".machine.json"),
                            keytab.with_name(keytab.name + ".machine.json"))):
        target.write_bytes(source.read_bytes())
        target.chmod(0o600)
    partner = MemberSmbcad(dc, tmp_path / "partner", keytab, address=partner_address)
    try:
        for address in (dc.member_address, partner_address, dc.member_address,
                        partner_address):
            result = ntlm_smbclient(dc, ALICE, dc.users["alice"], "ls",
                                    "--client-protection=encrypt", address=address)
            assert result.returncode == 0, output(result) + partner.log()
        assert "set up for SMBCA\\alice" in partner.log()
        assert partner.log().count("NETLOGON: secure channel to") == 1
        assert member_smbcad.log().count("NETLOGON: secure channel to") == 1
    finally:
        partner.stop()
        dc.member_run(["ip", "addr", "del", f"{partner_address}/{samba_dc.PREFIX}", "dev",
                       "ad0"], check=False)


def test_update_sets_a_new_machine_password_that_netlogon_uses(dc, tmp_path):
    """``smbca domain update`` twice (so the join's password is neither the
    DC's current nor its previous one): the running server keeps its
    channel, and a server started afterwards sets one up with the newest
    password from the record."""
    keytab = tmp_path / "fs8.keytab"
    record = keytab.with_name(keytab.name + ".machine.json")
    config = tmp_path / "smbcad.yaml"
    config.write_text(f"server:\n  server_name: FS8\n  keytab: {keytab}\n")
    admin = tmp_path / "admin.pw"
    admin.write_text(dc.admin_password + "\n")
    common = ("--config", str(config))
    login = ("--user", "Administrator", "--password-file", str(admin))

    def smbca(*args: str):
        result = dc.member_run(smbca_argv("domain", *args, *common), env=python_env(dc),
                               check=False)
        assert result.returncode == 0, output(result)
        return result

    def logon_works(server):
        result = ntlm_smbclient(dc, ALICE, dc.users["alice"], "ls",
                                "--client-protection=sign", port=SECOND_PORT)
        assert result.returncode == 0, output(result) + server.log()

    smbca("join", "--realm", dc.realm, *login)
    passwords = [json.loads(record.read_text())["password"]]
    server = MemberSmbcad(dc, tmp_path / "before", keytab, port=SECOND_PORT)
    try:
        logon_works(server)
        for _ in range(2):
            assert "new machine password for FS8$" in output(smbca("update"))
            assert stat.S_IMODE(os.stat(record).st_mode) == 0o600
            passwords.append(json.loads(record.read_text())["password"])
        assert len(set(passwords)) == 3
        status = json.loads(smbca("status", "--json").stdout)
        assert status["machine_password_ok"] and status["missing"] == []
        assert status["netlogon"]["ok"], status
        logon_works(server)
    finally:
        server.stop()
    server = MemberSmbcad(dc, tmp_path / "after", keytab, port=SECOND_PORT)
    try:
        logon_works(server)
    finally:
        server.stop()
        smbca("leave", *login)


def test_a_broken_channel_is_set_up_again(dc, joined, tmp_path):
    """The server's connections to the DC are killed (ss -K) between two
    logons: the second finds its channel broken, sets up a new one, and
    the client never sees the failure."""
    server = MemberSmbcad(dc, tmp_path / "broken", joined["keytab"], port=SECOND_PORT)
    try:
        for attempt in range(2):
            result = ntlm_smbclient(dc, ALICE, dc.users["alice"], "ls",
                                    "--client-protection=sign", port=SECOND_PORT)
            assert result.returncode == 0, output(result) + server.log()
            if attempt == 0:
                killed = dc.member_run(["ss", "-K", "-t", "dst", dc.dc_address], check=False)
                assert killed.returncode == 0, output(killed)
        assert server.log().count("NETLOGON: secure channel to") == 2, server.log()
        assert "NETLOGON: the secure channel to" in server.log()
    finally:
        server.stop()
