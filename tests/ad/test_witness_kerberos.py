"""witnessd accepts Kerberos binds (issue 12 item 2): rpcclient with a
domain user's ticket and no password calls GetInterfaceList over SPNEGO
(auth_type 9) and raw Kerberos (16), signed and sealed, against witnessd
holding the join's keytab and no local users; without a ticket it fails."""

import os
import signal
import subprocess
import sys
import time

import pytest

import samba_dc
from ad_member import REPO, python_env

pytestmark = pytest.mark.root

WITNESS_PORT = 5005
READY_LINE = "witnessd: witness listening on"
PARTNER_ADDRESS = "192.0.2.81"       # NODE2's interface: only listed, never used


@pytest.fixture(scope="module")
def kerberos_witnessd(dc, joined, tmp_path_factory):
    """witnessd in the member namespace, the EPM on 135 (rpcclient always
    asks it), authentication from the keytab alone."""
    base = tmp_path_factory.mktemp("witnessd")
    config = base / "witnessd.yaml"
    config.write_text(f"""server:
  listen: ["{dc.member_address}:{WITNESS_PORT}"]
  epm_listen: ["{dc.member_address}:135"]
  control_socket: {base / "control.sock"}
  log_level: debug
auth:
  keytab: {joined["keytab"]}
witness:
  net_name: {samba_dc.SERVER_NAMES[0]}
  local_node: NODE1
  shares: [share]
interfaces:
  - {{node: NODE1, ipv4: {dc.member_address}}}
  - {{node: NODE2, ipv4: {PARTNER_ADDRESS}}}
""")
    log_path = base / "witnessd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(dc.member_argv([sys.executable, "-m", "witnessd", "--config",
                                                str(config)]),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=python_env(dc), cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 30
    while READY_LINE not in log_path.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    yield log_path
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(20)


@pytest.fixture(scope="module")
def alice_ccache(dc, tmp_path_factory):
    ccache = tmp_path_factory.mktemp("alice-witness") / "ccache"
    dc.kinit(f"alice@{samba_dc.REALM}", dc.users["alice"], ccache)
    return ccache


def rpcclient(dc, ccache, options: str):
    argv = ["rpcclient", f"ncacn_ip_tcp:fs1.{samba_dc.DNS_DOMAIN}[{options}]",
            "--use-kerberos=required", "-N", "-c", "getinterfacelist"]
    return dc.member_run(argv, env=dc.env(KRB5CCNAME=f"FILE:{ccache}"), check=False,
                         timeout=60)


@pytest.mark.parametrize("options", ["sign", "seal", "krb5,sign", "krb5,seal"])
def test_rpcclient_with_a_ticket_gets_the_interface_list(dc, kerberos_witnessd, alice_ccache,
                                                         options):
    result = rpcclient(dc, alice_ccache, options)
    out = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, out + kerberos_witnessd.read_text()
    assert out.splitlines()[:2] == [f" + NODE1 {dc.member_address} V2",
                                    f"*+ NODE2 {PARTNER_ADDRESS} V2"], out
    assert "DCE/RPC bind authenticated SMBCA\\alice with Kerberos" in \
        kerberos_witnessd.read_text()


def test_without_a_ticket_the_bind_is_refused(dc, kerberos_witnessd, tmp_path):
    result = rpcclient(dc, tmp_path / "no-such-ccache", "sign")
    assert result.returncode != 0
    assert b"NODE1" not in result.stdout
