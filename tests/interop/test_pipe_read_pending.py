"""A READ of an empty named pipe goes async ([MS-SMB2] 3.3.5.12 for pipes,
3.3.4.2), as Windows and Samba's smbd answer it: interim STATUS_PENDING,
then the final response once the RPC server has something to say (here: the
bind_ack of a bind WRITE sent after the READ, as a pipelining client does).
A CANCEL ends the waiting READ with STATUS_CANCELLED, the pipe's CLOSE with
STATUS_PIPE_BROKEN.  smbprotocol's low-level API drives it, against smbcad
only: Samba 4.17's smbd answers the first case the same way, but its answer
to the CANCEL of a pipe READ was not worked out (the test waited).
"""

import uuid

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.connection import Connection  # noqa: E402
from smbprotocol.exceptions import SMBResponseException  # noqa: E402
from smbprotocol.open import (  # noqa: E402
    CreateDisposition, CreateOptions, FilePipePrinterAccessMask, ImpersonationLevel, Open,
    ShareAccess)
from smbprotocol.session import Session  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

STATUS_PENDING = 0x00000103
STATUS_CANCELLED = 0xC0000120
STATUS_PIPE_BROKEN = 0xC000014B
WAIT_S = 10


# An srvsvc bind (call 1, NDR): what impacket's MSRPCBind builds for srvs.MSRPC_UUID_SRVS.
BIND = bytes.fromhex(
    "05000b03100000004800000001000000b810b810000000000100000000000100"
    "c84f324b7016d30112785a47bf6ee18803000000045d888aeb1cc9119fe80800"
    "2b10486002000000")
BIND_ACK = 12      # the PDU type of its answer


@pytest.fixture
def pipe(smbcad_server):
    smb_server = smbcad_server
    connection = Connection(uuid.uuid4(), smb_server.host, smb_server.port)
    connection.connect(timeout=WAIT_S)
    try:
        session = Session(connection, smb_server.user, smb_server.password, require_encryption=False)
        session.connect()
        tree = TreeConnect(session, f"\\\\{smb_server.host}\\IPC$")
        tree.connect()
        opened = Open(tree, "srvsvc")
        opened.create(ImpersonationLevel.Impersonation,
                      FilePipePrinterAccessMask.FILE_READ_DATA
                      | FilePipePrinterAccessMask.FILE_WRITE_DATA,
                      0, ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                      CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE)
        yield connection, opened
    finally:
        connection.disconnect(True)


def pending_read(connection, opened):
    """A READ sent on the empty pipe, and its interim STATUS_PENDING received."""
    message, receive = opened.read(0, 4096, send=False)
    request = connection.send(message, sid=opened.tree_connect.session.session_id,
                              tid=opened.tree_connect.tree_connect_id)
    # Not receive(wait=False): it would forget the request and its final response.
    assert request.response_event.wait(WAIT_S), "no interim response"
    with request.response_event_lock:
        assert request.response["status"].get_value() == STATUS_PENDING
        assert request.async_id is not None
        request.response_event.clear()
    return request, receive


def test_a_read_of_an_empty_pipe_waits_for_the_answer_of_the_next_write(pipe):
    connection, opened = pipe
    request, receive = pending_read(connection, opened)
    assert opened.write(BIND) == len(BIND)
    answer = receive(request)
    assert answer[2] == BIND_ACK          # the PDU type of a bind_ack


@pytest.mark.parametrize("end, expected", [("cancel", STATUS_CANCELLED),
                                           ("close", STATUS_PIPE_BROKEN)])
def test_cancel_or_close_ends_the_waiting_read(pipe, end, expected):
    connection, opened = pipe
    request, receive = pending_read(connection, opened)
    request.cancel() if end == "cancel" else opened.close()
    with pytest.raises(SMBResponseException) as ended:
        receive(request)
    assert ended.value.status == expected
    if end == "cancel":                                 # the pipe still works
        assert opened.write(BIND) == len(BIND)
        assert opened.read(0, 4096)[2] == BIND_ACK
