"""A server, session and tree around a real ShareFs on tmp_path, for driving
FSCTL handlers and the IOCTL command without a connection.

Imported by the other test_fsctl_* modules (pytest puts this directory on
sys.path); holds no tests of its own beyond checking the encoder it offers.
"""

import itertools
import struct
from types import SimpleNamespace

import pytest

from smbcad.proto.constants import AccessMask, Command
from smbcad.proto.create_contexts import FileId
from smbcad.proto.errors import SmbError
from smbcad.proto.header import Smb2Header
from smbcad.proto.ioctl import IoctlFlags, IoctlRequest
from smbcad.server.adm import Open, Session, TreeConnect
from smbcad.server.context import CompoundState, RequestContext

from .harness import make_server

ALL = AccessMask.FILE_ALL_ACCESS
NO_FILE_ID = FileId(0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
_REQUEST = struct.Struct("<HHIQQIIIIIIII")


def ioctl_message(ctl_code: int, file_id, data: bytes = b"", max_output: int = 65536,
                  flags: int = IoctlFlags.IS_FSCTL, max_input: int = 0) -> bytes:
    """An SMB2 IOCTL request ([MS-SMB2] 2.2.31) behind a zeroed 64-byte header."""
    body = _REQUEST.pack(57, 0, ctl_code, file_id[0], file_id[1], 120 if data else 0,
                         len(data), max_input, 0, 0, max_output, flags, 0)
    return bytes(64) + body + data


class Harness:
    """One server, one share (``root``), one session with one tree."""

    def __init__(self, root, state_dir) -> None:
        self.root = root
        self.server = make_server(str(root), str(state_dir))
        self.server.server_guid = bytes(range(16))
        self.metrics = self.server.metrics
        self.share = self.server.find_share("share")
        self.fs = self.share.fs
        self.connection = SimpleNamespace(max_transact_size=8 << 20, dialect=0x0311)
        self.session = Session(7, self.connection)
        self.tree = TreeConnect(1, self.share, self.session)
        self._ids = itertools.count(100)

    def new_tree(self, session=None) -> TreeConnect:
        return TreeConnect(next(self._ids), self.share, session or self.session)

    def new_session(self) -> Session:
        return Session(next(self._ids), self.connection)

    def open(self, name: str, data: bytes = b"", access: int = ALL, tree=None,
             directory: bool = False, create_options: int = 0) -> Open:
        if directory:
            handle = self.fs.mkdir((name,)) if not (self.root / name).exists() \
                else self.fs.open((name,), directory=True)
        else:
            handle = self.fs.open((name,), write=True, create=True)
            if data:
                self.fs.write(handle, 0, data)
        info = self.fs.stat(handle)
        tree = tree or self.tree
        volatile = next(self._ids)
        open_ = Open(volatile + 1000, volatile, tree.session, tree, name, name, handle, access,
                     7, create_options, directory, file_key=(info.device_id, info.file_id))
        self.server.opens.register(open_)
        return open_

    def close(self, open_) -> None:
        self.server.opens.close(open_)

    def ctx(self, message: bytes = b"", tree=None) -> RequestContext:
        tree = tree or self.tree
        header = Smb2Header(command=Command.IOCTL, message_id=1, session_id=tree.session.session_id)
        return RequestContext(self.connection, self.server, header, memoryview(message), False,
                              CompoundState(), tree.session, tree)

    @staticmethod
    def request(ctl_code: int, data: bytes = b"", max_output: int = 65536,
                file_id=NO_FILE_ID) -> IoctlRequest:
        return IoctlRequest(ctl_code, FileId(*file_id), memoryview(data), 0, max_output,
                            IoctlFlags.IS_FSCTL)


@pytest.fixture
def harness(tmp_path):
    root = tmp_path / "share"
    root.mkdir()
    made = Harness(root, tmp_path / "state")
    yield made
    for open_ in list(made.server.opens.by_persistent_id.values()):
        made.close(open_)
    made.fs.close()


def status_of(call, *args, **kwargs) -> int:
    try:
        call(*args, **kwargs)
    except SmbError as err:
        return err.status
    pytest.fail("expected an SmbError")
    return 0


def test_ioctl_message_layout():
    message = ioctl_message(0x00140078, (1, 2), b"abc", max_output=32)
    request = IoctlRequest.decode(message)
    assert (request.ctl_code, tuple(request.file_id), bytes(request.input),
            request.max_output_response) == (0x00140078, (1, 2), b"abc", 32)
