"""The durable owner of a domain user's persistent open is its SID (issue 12
item 8), with real Kerberos logons: alice's open survives a restart of
smbcad (its store record carries the SID), bob's DH2C of it is refused and
alice's own reconnect finds it."""

import asyncio
import sys
import uuid
from pathlib import Path

import pytest

import samba_dc
from ad_member import MemberSmbcad, python_env
from smbcad.store import LocalHandleStore, LogEngine

pytestmark = pytest.mark.root

CLIENT = Path(__file__).with_name("durable_client.py")
PORT = 445


def run_client(dc, ccache, *args: str):
    env = python_env(dc)
    env["KRB5CCNAME"] = f"FILE:{ccache}"
    return dc.member_run([sys.executable, str(CLIENT), *args], env=env, check=False,
                         timeout=60)


def stored_records(state_dir: Path) -> list:
    """The handle store's records, read while no smbcad holds it."""
    async def read():
        store = await LocalHandleStore.open(LogEngine(str(state_dir / "handles")))
        try:
            return await store.traverse()
        finally:
            await store.shutdown()
    return asyncio.run(read())


def test_a_persistent_open_is_alices_by_sid_across_a_restart(dc, joined, tmp_path):
    ccaches = {}
    for user in ("alice", "bob"):
        ccaches[user] = tmp_path / f"{user}.ccache"
        dc.kinit(f"{user}@{samba_dc.REALM}", dc.users[user], ccaches[user])
    base = tmp_path / "smbcad"
    server = MemberSmbcad(dc, base, joined["keytab"], config_extra="", share_options=", ca: true")
    create_guid, client_guid = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        opened = run_client(dc, ccaches["alice"], "open", "vm.vhdx", create_guid, client_guid)
        assert opened.returncode == 0, (opened.stdout + opened.stderr).decode() + server.log()
        file_id = opened.stdout.decode().strip()
        server.stop()
        assert "reconnect" not in server.log()
        (record,) = stored_records(base / "state")
        assert record.owner_sid == dc.object_sid("user", "alice")
        server = MemberSmbcad(dc, base, joined["keytab"], config_extra="",
                              share_options=", ca: true")
        assert "1 persistent opens restored" in server.log(), server.log()
        refused = run_client(dc, ccaches["bob"], "reconnect", "vm.vhdx", create_guid,
                             client_guid, file_id)
        assert refused.returncode == 1, (refused.stdout + refused.stderr).decode()
        assert "reconnect by another user" in server.log()
        again = run_client(dc, ccaches["alice"], "reconnect", "vm.vhdx", create_guid,
                           client_guid, file_id)
        assert again.returncode == 0, (again.stdout + again.stderr).decode() + server.log()
        assert again.stdout.decode().strip() == "reconnected"
    finally:
        server.stop()
