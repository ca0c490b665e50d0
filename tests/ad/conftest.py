"""Fixtures of the AD tier: a Samba AD DC in a network namespace
(``samba_dc.py``), the server joined to it with ``smbca domain join``, and
smbcad serving Kerberos from the keytab that join wrote.  Needs root
(namespaces) and Debian's samba AD DC, adcli and krb5-user (scripts/test.sh);
outside CI a missing one skips, under CI=true it fails (tests/conftest.py).

The DC is provisioned and started once per test session and the join done
once; each test module gets its own smbcad."""

import os
import shutil

import pytest

import samba_dc
from ad_member import REPO, MemberSmbcad, python_env, smbca_argv
from samba_dc import SambaDc

TOOLS = ("samba", "samba-tool", "adcli", "kinit", "smbclient", "faketime")


@pytest.fixture(scope="session")
def dc(tmp_path_factory):
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        reason = (f"not installed: {', '.join(missing)} (bash scripts/test.sh installs them)"
                  if missing else "needs root")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason} (CI=true)", pytrace=False)
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("ad")
    samba_dc.provision(base / "provisioned")
    running = SambaDc.start(base, base / "provisioned")
    yield running
    running.close()


@pytest.fixture(scope="session")
def joined(dc, tmp_path_factory):
    """``smbca domain join`` (non-interactive) for FS1 and FS1ALT: the config
    it read and the keytab it wrote."""
    base = tmp_path_factory.mktemp("member")
    keytab = base / "krb5.keytab"
    config = base / "smbcad.yaml"
    config.write_text(f"server:\n  server_name: {samba_dc.SERVER_NAMES[0]}\n"
                      f"  keytab: {keytab}\n")
    password = base / "admin.pw"
    password.write_text(dc.admin_password + "\n")
    argv = smbca_argv("domain", "join", "--realm", dc.realm, "--user", "Administrator",
                      "--password-file", str(password), "--config", str(config),
                      *(arg for name in samba_dc.SERVER_NAMES[1:] for arg in ("--name", name)))
    result = dc.member_run(argv, env=python_env(dc), check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    return {"config": config, "keytab": keytab, "password_file": password,
            "output": result.stdout.decode()}


@pytest.fixture(scope="module")
def member_smbcad(dc, joined, tmp_path_factory):
    server = MemberSmbcad(dc, tmp_path_factory.mktemp("smbcad"), joined["keytab"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ccaches(dc, tmp_path_factory):
    """A Kerberos ticket cache for each of the DC's test users, by name."""
    base = tmp_path_factory.mktemp("users")
    caches = {}
    for user, password in dc.users.items():
        caches[user] = base / f"{user}.ccache"
        dc.kinit(f"{user}@{samba_dc.REALM}", password, caches[user])
    return caches
