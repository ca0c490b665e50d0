"""The Python ``smbprotocol`` client's high-level ``smbclient`` API against the server.

Sessions are encrypted (``encrypt=True``) unless a test says otherwise; every
effect is also checked on disk in the share directory.
``SMBCA_INTEROP_TARGET=smbd`` runs the same tests against Samba's smbd.
"""

import os
import struct
import uuid

import pytest

from smbcad.vfs import volume_id

smbclient = pytest.importorskip("smbclient", reason="smbprotocol is not installed")
from smbprotocol.connection import Connection  # noqa: E402
from smbprotocol.create_contexts import (  # noqa: E402
    CreateContextName,
    SMB2CreateContextRequest,
    SMB2CreateQueryOnDiskIDResponse,
)
from smbprotocol.exceptions import LogonFailure, SMBOSError  # noqa: E402
from smbprotocol.open import (  # noqa: E402
    CreateDisposition,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    InfoType,
    Open,
    ShareAccess,
    SMB2QueryInfoRequest,
    SMB2QueryInfoResponse,
)
from smbprotocol.session import Session as SmbSession  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

# Not marked interop: the client is a Python package, not a binary.


class Session:
    """An smbclient session on its own connection cache, closed by ``close()``."""

    def __init__(self, server, encrypt: bool, password: str | None = None) -> None:
        self.server = server
        self.cache = {}
        self.kwargs = {"port": server.port, "connection_cache": self.cache}
        smbclient.register_session(server.host, username=server.user,
                                   password=server.password if password is None else password,
                                   encrypt=encrypt, connection_timeout=10, **self.kwargs)
        sessions = [s for conn in self.cache.values() for s in conn.session_table.values()]
        assert sessions and all(s.encrypt_data == encrypt for s in sessions), "encryption state"

    def path(self, *parts: str) -> str:
        return "\\".join([f"\\\\{self.server.host}\\{self.server.share.name}", *parts])

    def close(self) -> None:
        smbclient.reset_connection_cache(connection_cache=self.cache)


@pytest.fixture(scope="module")
def server(smb_server_module):
    return smb_server_module


@pytest.fixture(params=[True, False], ids=["encrypted", "signed"])
def session(request, server):
    session = Session(server, encrypt=request.param)
    yield session
    session.close()


def test_dialect_is_smb3(session):
    dialects = {conn.dialect for conn in session.cache.values()}
    assert dialects == {0x0311}, [hex(d) for d in dialects]


def test_directory_tree(session):
    top = f"tree-{id(session)}"
    disk = session.server.share.path / top
    smbclient.makedirs(session.path(top, "a", "b"), **session.kwargs)
    assert (disk / "a" / "b").is_dir()
    assert smbclient.listdir(session.path(top), **session.kwargs) == ["a"]
    smbclient.rmdir(session.path(top, "a", "b"), **session.kwargs)
    smbclient.rmdir(session.path(top, "a"), **session.kwargs)
    smbclient.rmdir(session.path(top), **session.kwargs)
    assert not disk.exists()


def test_write_read_stat_rename_remove(session):
    data = os.urandom(3 * 1024 * 1024 + 12345)   # several 1 MiB requests and a tail
    name = f"data-{id(session)}.bin"
    disk = session.server.share.path
    with smbclient.open_file(session.path(name), mode="wb", **session.kwargs) as handle:
        handle.write(data)
    assert (disk / name).read_bytes() == data
    assert smbclient.stat(session.path(name), **session.kwargs).st_size == len(data)
    with smbclient.open_file(session.path(name), mode="rb", **session.kwargs) as handle:
        assert handle.read() == data

    smbclient.rename(session.path(name), session.path(name + ".moved"), **session.kwargs)
    assert not (disk / name).exists() and (disk / (name + ".moved")).exists()
    assert name + ".moved" in smbclient.listdir(session.path(), **session.kwargs)
    smbclient.remove(session.path(name + ".moved"), **session.kwargs)
    assert not (disk / (name + ".moved")).exists()


def test_text_append_and_seek(session):
    name = f"text-{id(session)}.txt"
    with smbclient.open_file(session.path(name), mode="w", **session.kwargs) as handle:
        handle.write("first line\n")
    with smbclient.open_file(session.path(name), mode="a", **session.kwargs) as handle:
        handle.write("second line\n")
    with smbclient.open_file(session.path(name), mode="rb", **session.kwargs) as handle:
        handle.seek(6)
        assert handle.read(4) == b"line"
    assert (session.server.share.path / name).read_text() == "first line\nsecond line\n"
    smbclient.remove(session.path(name), **session.kwargs)


def test_missing_file_raises(session):
    with pytest.raises(SMBOSError) as info:
        smbclient.stat(session.path("no-such-file"), **session.kwargs)
    assert info.value.errno == 2   # ENOENT, from STATUS_OBJECT_NAME_NOT_FOUND


def test_wrong_password_is_refused(server):
    with pytest.raises(LogonFailure):
        Session(server, encrypt=True, password="not-the-password").close()


# --- file identity on the wire: QFid, FileIdInformation, the volume serial -------------

_FILE_ID_INFORMATION = 59           # [MS-FSCC] 2.4.26 (not in smbprotocol's enum)
_FILE_FS_VOLUME_INFORMATION = 1     # [MS-FSCC] 2.5.9


def _query(conn, session, tree, handle, info_type: int, info_class: int, length: int) -> bytes:
    request = SMB2QueryInfoRequest()
    request["info_type"] = info_type
    request.fields["file_info_class"].enum_strict = False
    request["file_info_class"] = info_class
    request["output_buffer_length"] = length
    request["file_id"] = handle.file_id
    response = SMB2QueryInfoResponse()
    response.unpack(conn.receive(conn.send(request, sid=session.session_id,
                                           tid=tree.tree_connect_id))["data"].get_value())
    return response["buffer"].get_value()


def test_file_identity_is_the_volume_id_and_inode(server, interop_target):
    """QFid's VolumeId, FILE_ID_INFORMATION's 64-bit VolumeSerialNumber and the
    32-bit FileFsVolumeInformation serial (its low word) all come from the
    share's volume id (smbcad/vfs/volume_id.py), never st_dev; the file id is
    the inode."""
    if interop_target != "smbcad":
        pytest.skip("smbcad's volume id; smbd has its own (st_dev based)")
    name = f"identity-{os.getpid()}.bin"
    (server.share.path / name).write_bytes(b"x")
    fd = os.open(server.share.path, os.O_PATH | os.O_DIRECTORY)
    try:
        expected = volume_id.identify(fd)
    finally:
        os.close(fd)
    conn = Connection(uuid.uuid4(), server.host, server.port)
    conn.connect(timeout=10)
    try:
        session = SmbSession(conn, server.user, server.password, require_encryption=False)
        session.connect()
        tree = TreeConnect(session, rf"\\{server.host}\{server.share.name}")
        tree.connect()
        handle = Open(tree, name)
        qfid = SMB2CreateContextRequest()
        qfid["buffer_name"] = CreateContextName.SMB2_CREATE_QUERY_ON_DISK_ID
        contexts = handle.create(ImpersonationLevel.Impersonation,
                                 FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES, 0,
                                 ShareAccess.FILE_SHARE_READ, CreateDisposition.FILE_OPEN, 0,
                                 create_contexts=[qfid])
        (on_disk,) = [c for c in contexts if isinstance(c, SMB2CreateQueryOnDiskIDResponse)]
        file_id_info = _query(conn, session, tree, handle, InfoType.SMB2_0_INFO_FILE,
                              _FILE_ID_INFORMATION, 24)
        volume_info = _query(conn, session, tree, handle, InfoType.SMB2_0_INFO_FILESYSTEM,
                             _FILE_FS_VOLUME_INFORMATION, 88)
        handle.close()
    finally:
        conn.disconnect()
    inode = os.stat(server.share.path / name).st_ino
    assert on_disk["volume_id"].get_value() == expected.volume_id
    assert on_disk["disk_file_id"].get_value() == inode
    assert file_id_info == struct.pack("<Q", expected.volume_id) + struct.pack("<QQ", inode, 0)
    assert struct.unpack_from("<I", volume_info, 8)[0] == expected.volume_id & 0xFFFFFFFF
    os.remove(server.share.path / name)
