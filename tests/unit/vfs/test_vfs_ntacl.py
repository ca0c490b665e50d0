"""vfs/ntacl.py: NT ACLs in root-only ``security.`` xattrs, the one-time move from
``user.smbca.ntacl``, and a local user's attempts to change a stored ACL.

Needs root (only root writes ``security.*``) and a file system with xattrs;
the unprivileged side runs as a uid no account uses, through setpriv(1).
"""

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from smbca.auth.identity import Identity
from smbcad.proto.errors import SmbError
from smbcad.proto.fscc import Ace, AceType, Acl, FullEa, SdControl, SecurityDescriptor, Sid
from smbcad.proto.status import NtStatus
from smbcad.server import security
from smbcad.vfs import ShareFs, ntacl

READ_DATA, FILE_ALL_ACCESS = 0x1, 0x001F01FF
EVERYONE = Sid.from_string("S-1-1-0")
ALICE = Identity("alice", "", uid=1000, gid=100)
# A uid and gid with no account: the "temporary unprivileged user".
NOBODY_UID = NOBODY_GID = 64_321

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="security.* xattrs need root")


def _descriptor(*aces) -> bytes:
    return SecurityDescriptor(SdControl.SELF_RELATIVE | SdControl.DACL_PRESENT,
                              Sid.from_string("S-1-22-1-0"), Sid.from_string("S-1-22-2-0"),
                              None, Acl(tuple(aces))).encode()


READ_ONLY = _descriptor(Ace(AceType.ACCESS_ALLOWED, 0, READ_DATA, EVERYONE))
EVERYTHING = _descriptor(Ace(AceType.ACCESS_ALLOWED, 0, FILE_ALL_ACCESS, EVERYONE))


@pytest.fixture
def share():
    """A share directory that an unprivileged uid can reach (not under pytest's 0700 tmp)."""
    path = Path(tempfile.mkdtemp(prefix="smbca-ntacl-"))
    os.chmod(path, 0o755)
    try:
        probe = path / ".probe"
        probe.write_bytes(b"")
        try:
            os.setxattr(probe, "security.smbca.probe", b"1")
            os.setxattr(probe, "user.smbca.probe", b"1")
        except OSError:
            pytest.skip("this file system keeps no security.* or user.* xattrs")
        probe.unlink()
        yield path
    finally:
        shutil.rmtree(path)


def test_read_write_use_the_security_namespace(share):
    (share / "f").write_bytes(b"")
    with ShareFs(str(share)) as fs:
        handle = fs.open(("f",), write=True)
        try:
            assert fs.get_security(handle) is None
            fs.set_security(handle, READ_ONLY)
            assert fs.get_security(handle) == READ_ONLY
        finally:
            handle.close()
    assert os.getxattr(share / "f", ntacl.SECURITY_XATTR) == READ_ONLY
    with pytest.raises(OSError) as missing:
        os.getxattr(share / "f", ntacl.LEGACY_XATTR)
    assert missing.value.errno == errno.ENODATA


def test_migration_moves_once_and_then_ignores_user_xattrs(share):
    (share / "d").mkdir()
    for name in ("old", "d/nested", "both"):
        (share / name).write_bytes(b"")
    os.setxattr(share / "old", ntacl.LEGACY_XATTR, READ_ONLY)
    os.setxattr(share / "d" / "nested", ntacl.LEGACY_XATTR, READ_ONLY)
    os.setxattr(share / "d", ntacl.LEGACY_XATTR, READ_ONLY)
    # A crash between the copy and the removal: the security copy is the one kept.
    os.setxattr(share / "both", ntacl.SECURITY_XATTR, READ_ONLY)
    os.setxattr(share / "both", ntacl.LEGACY_XATTR, EVERYTHING)
    os.symlink("old", share / "link")

    with ShareFs(str(share)):
        pass
    for name in ("old", "d/nested", "d", "both"):
        assert os.getxattr(share / name, ntacl.SECURITY_XATTR) == READ_ONLY, name
        assert ntacl.LEGACY_XATTR not in os.listxattr(share / name), name
    assert os.getxattr(share, ntacl.MIGRATED_XATTR) == b"1"

    # After the move, a user.smbca.ntacl planted anywhere is never read.
    (share / "fresh").write_bytes(b"")
    os.setxattr(share / "fresh", ntacl.LEGACY_XATTR, EVERYTHING)
    os.setxattr(share / "old", ntacl.LEGACY_XATTR, EVERYTHING)
    with ShareFs(str(share)) as fs:
        assert fs.stored_security_at("fresh") is None
        assert fs.stored_security_at("old") == READ_ONLY
    assert os.getxattr(share / "fresh", ntacl.LEGACY_XATTR) == EVERYTHING    # left alone


def test_migration_is_counted_and_repeatable(share):
    (share / "f").write_bytes(b"")
    os.setxattr(share / "f", ntacl.LEGACY_XATTR, READ_ONLY)
    fd = os.open(share, os.O_PATH | os.O_DIRECTORY)
    try:
        os.setxattr(share, ntacl.MIGRATED_XATTR, b"1")
        assert ntacl.migrate_share(fd) == 0         # marked: nothing is looked at
        os.removexattr(share, ntacl.MIGRATED_XATTR)
        assert ntacl.migrate_share(fd) == 1
        os.removexattr(share, ntacl.MIGRATED_XATTR)     # as if the mark never landed
        assert ntacl.migrate_share(fd) == 0
    finally:
        os.close(fd)
    assert os.getxattr(share / "f", ntacl.SECURITY_XATTR) == READ_ONLY


_ATTEMPT = """
import errno, os, sys
path, name, value = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
try:
    if value:
        os.setxattr(path, name, value)
    else:
        os.removexattr(path, name)
except OSError as err:
    print(errno.errorcode[err.errno])
else:
    print("OK")
"""


def _as_nobody(path: Path, name: str, value: bytes) -> str:
    """setxattr (removexattr for an empty value) as the unprivileged uid."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv(1) is not installed")
    result = subprocess.run(
        ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_GID}", "--clear-groups",
         "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c", _ATTEMPT, str(path),
         name, value.hex()], capture_output=True, text=True, check=True, timeout=60)
    return result.stdout.strip()


def test_a_local_user_cannot_change_a_stored_nt_acl(share):
    """Even the file's owner, with write access to it, cannot rewrite or remove
    the descriptor; what it can write (user.*) is never read."""
    target = share / "guarded"
    target.write_bytes(b"")
    os.chown(target, NOBODY_UID, NOBODY_GID)
    os.chmod(target, 0o666)
    with ShareFs(str(share)) as fs:
        handle = fs.open(("guarded",), write=True)
        try:
            fs.set_security(handle, READ_ONLY)
        finally:
            handle.close()

        assert _as_nobody(target, ntacl.SECURITY_XATTR, EVERYTHING) == "EPERM"
        assert _as_nobody(target, ntacl.SECURITY_XATTR, b"") == "EPERM"
        assert _as_nobody(target, ntacl.LEGACY_XATTR, EVERYTHING) == "OK"
        assert _as_nobody(target, "user.smbca.ea.X", EVERYTHING) == "OK"   # an EA: harmless

        assert os.getxattr(target, ntacl.SECURITY_XATTR) == READ_ONLY
        token = security.session_token(fs, ALICE)
        assert security.check_open(fs, "guarded", token, READ_DATA) == READ_DATA
        with pytest.raises(SmbError) as denied:
            security.check_open(fs, "guarded", token, 0x2)      # FILE_WRITE_DATA
        assert denied.value.status == NtStatus.ACCESS_DENIED


def test_client_eas_never_reach_the_security_namespace(share):
    """EA names are stored under user.smbca.ea. whatever they say (vfs/eas.py)."""
    (share / "f").write_bytes(b"")
    with ShareFs(str(share)) as fs:
        handle = fs.open(("f",), write=True)
        try:
            fs.set_security(handle, READ_ONLY)
            fs.set_eas(handle, [FullEa("security.smbca.ntacl", EVERYTHING, 0),
                                FullEa("SECURITY.SMBCA.NTACL-MIGRATED", b"1", 0)])
            assert fs.get_security(handle) == READ_ONLY
        finally:
            handle.close()
    names = os.listxattr(share / "f")
    assert sorted(name for name in names if not name.startswith("user.smbca.ea.")) == [
        ntacl.SECURITY_XATTR]


def test_an_unlistable_directory_fails_the_walk_and_leaves_no_mark(share, monkeypatch):
    (share / "d").mkdir()
    (share / "d" / "f").write_bytes(b"")
    os.setxattr(share / "d" / "f", ntacl.LEGACY_XATTR, READ_ONLY)
    real_scandir = os.scandir

    def failing_scandir(target):
        if isinstance(target, int) and os.path.samefile(f"/proc/self/fd/{target}", share / "d"):
            raise PermissionError(errno.EACCES, "not listable")
        return real_scandir(target)

    monkeypatch.setattr(os, "scandir", failing_scandir)
    with pytest.raises(OSError):
        ShareFs(str(share))
    monkeypatch.undo()
    assert ntacl.MIGRATED_XATTR not in os.listxattr(share)
    with ShareFs(str(share)) as fs:
        assert fs.stored_security_at("d/f") == READ_ONLY
