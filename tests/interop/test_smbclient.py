"""Samba's smbclient against the server: every dialect, signing, encryption, a 256 MiB file.

Each command's effect is checked twice: in smbclient's output and on disk in
the share directory. ``SMBCA_INTEROP_TARGET=smbd`` runs the same tests
against Samba's smbd.
"""

import hashlib
import os
import re
import time

import pytest

from clients import DIALECTS, ENCRYPTION_REQUIRED, SIGNING_REQUIRED, check_smbclient, run_smbclient
from servers import Share

pytestmark = pytest.mark.interop("smbclient")

BIG_FILE_BYTES = 256 * 1024 * 1024
LS_LINE = re.compile(r"^  (?P<name>.+?)\s+(?P<attrs>[ADHSRNL]*)\s+(?P<size>\d+)\s+"
                     r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$", re.M)


def ls_entries(output: str) -> dict[str, tuple[str, int]]:
    """``{name: (attributes, size)}`` from smbclient's ``ls`` output."""
    return {m["name"]: (m["attrs"], int(m["size"])) for m in LS_LINE.finditer(output)}


@pytest.fixture(scope="module")
def server(server_factory_module, tmp_path_factory):
    base = tmp_path_factory.mktemp("shares")
    (base / "share").mkdir()
    (base / "secure").mkdir()
    return server_factory_module(shares=[Share("share", base / "share"),
                                         Share("secure", base / "secure", encrypt=True)])


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    path = tmp_path_factory.mktemp("payload") / "payload.bin"
    path.write_bytes(os.urandom(300_000))
    return path


@pytest.mark.parametrize("dialect", ["SMB2_02", "SMB3_11"])
def test_list_shares(server, dialect):
    output = check_smbclient(server, dialect=dialect, list_shares=True, options=SIGNING_REQUIRED)
    assert re.search(r"^\s+share\s+Disk", output, re.M), output
    assert re.search(r"^\s+IPC\$\s+IPC", output, re.M), output


@pytest.mark.parametrize("dialect", DIALECTS)
def test_file_operations(server, payload, tmp_path, dialect):
    share = server.share.path
    sub = f"ops-{dialect}"
    back = tmp_path / "back.bin"

    out = check_smbclient(server, f"mkdir {sub}; cd {sub}; put {payload} a.bin; "
                                  f"mkdir d1; rename a.bin b.bin; get b.bin {back}; ls",
                          dialect=dialect)
    entries = ls_entries(out)
    assert entries.get("b.bin") == ("A", payload.stat().st_size), out
    assert "a.bin" not in entries and entries["d1"][0] == "D", out
    assert back.read_bytes() == payload.read_bytes()
    assert (share / sub / "b.bin").read_bytes() == payload.read_bytes()
    assert (share / sub / "d1").is_dir() and not (share / sub / "a.bin").exists()

    check_smbclient(server, f"cd {sub}; del b.bin; rmdir d1", dialect=dialect)
    assert sorted(os.listdir(share / sub)) == []
    check_smbclient(server, f"rmdir {sub}", dialect=dialect)
    assert not (share / sub).exists()


def test_missing_file_reports_status(server, tmp_path):
    result = run_smbclient(server, f"get no-such-file {tmp_path / 'x'}")
    assert "NT_STATUS_OBJECT_NAME_NOT_FOUND" in result.stdout + result.stderr


def test_wrong_password_is_refused(server):
    result = run_smbclient(server, "ls", password="not-the-password")
    assert result.returncode != 0
    assert "NT_STATUS_LOGON_FAILURE" in result.stdout + result.stderr


@pytest.mark.parametrize("dialect", ["SMB2_02", "SMB3_00", "SMB3_11"])
def test_signing_required(server, payload, tmp_path, dialect):
    name = f"signed-{dialect}.bin"
    check_smbclient(server, f"put {payload} {name}; get {name} {tmp_path / name}; ls",
                    dialect=dialect, options=SIGNING_REQUIRED)
    assert (tmp_path / name).read_bytes() == payload.read_bytes()
    check_smbclient(server, f"del {name}", dialect=dialect, options=SIGNING_REQUIRED)
    assert not (server.share.path / name).exists()


@pytest.mark.parametrize("dialect", ["SMB3_00", "SMB3_02", "SMB3_11"])
def test_encryption_required(server, payload, tmp_path, dialect):
    name = f"sealed-{dialect}.bin"
    check_smbclient(server, f"put {payload} {name}; get {name} {tmp_path / name}; ls",
                    dialect=dialect, options=ENCRYPTION_REQUIRED)
    assert (tmp_path / name).read_bytes() == payload.read_bytes()
    assert (server.share.path / name).read_bytes() == payload.read_bytes()
    check_smbclient(server, f"del {name}", dialect=dialect, options=ENCRYPTION_REQUIRED)


def test_encrypted_share(server, payload):
    """A share with ``encrypt`` serves SMB 3 clients encrypted and refuses SMB 2."""
    check_smbclient(server, f"put {payload} p.bin; ls", share="secure")
    assert (server.shares[1].path / "p.bin").read_bytes() == payload.read_bytes()
    result = run_smbclient(server, "ls", share="secure", dialect="SMB2_10")
    assert result.returncode != 0
    assert "NT_STATUS_ACCESS_DENIED" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for _ in range(BIG_FILE_BYTES // (4 << 20)):
            chunk = os.urandom(4 << 20)
            digest.update(chunk)
            handle.write(chunk)
    yield path, digest.hexdigest()
    path.unlink()


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("options", [(), ENCRYPTION_REQUIRED], ids=["signed", "encrypted"])
def test_256mib_round_trip(server, big_file, tmp_path, options, capsys):
    source, expected = big_file
    name = f"big-{len(options)}.bin"
    back = tmp_path / "back.bin"
    start = time.monotonic()
    check_smbclient(server, f"put {source} {name}", options=options, timeout=600)
    put_s = time.monotonic() - start
    assert _sha256(server.share.path / name) == expected
    start = time.monotonic()
    check_smbclient(server, f"get {name} {back}", options=options, timeout=600)
    get_s = time.monotonic() - start
    assert _sha256(back) == expected
    back.unlink()
    check_smbclient(server, f"del {name}", options=options)
    with capsys.disabled():
        mib = BIG_FILE_BYTES / (1 << 20)
        print(f"\n  256 MiB {server.kind} {'encrypted' if options else 'signed'}: "
              f"put {put_s:.1f} s ({mib / put_s:.0f} MiB/s), "
              f"get {get_s:.1f} s ({mib / get_s:.0f} MiB/s)")
