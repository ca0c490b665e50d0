"""Related compound requests from ``smbprotocol`` ([MS-SMB2] 3.3.5.2.7.2, issue 16).

An operation flagged SMB2_FLAGS_RELATED_OPERATIONS takes SessionId, TreeId and
FileId from the operation before it, whatever its own fields hold.  Clients
differ in what they put there: all ones (Windows), zeros, or whatever the
first request carried.  Each test sends CREATE followed by related
QUERY_INFO / WRITE / IOCTL (server-side copy) / CLOSE with one of those
fillings and checks every reply and the file on disk.  A failed CREATE must
fail every related request after it with the CREATE's own status.

smbprotocol's ``send_compound`` always writes the real ids into every header,
so ``send_related`` below lays the headers out itself (signing or encrypting
them with smbprotocol's own keys and code) and leaves reply handling,
signature checks and decryption to smbprotocol's receive thread.
"""

import os
import uuid

import pytest

pytest.importorskip("smbprotocol", reason="smbprotocol is not installed")
from smbprotocol.connection import Connection, Request  # noqa: E402
from smbprotocol.exceptions import SMBResponseException  # noqa: E402
from smbprotocol.file_info import FileInformationClass, InfoType  # noqa: E402
from smbprotocol.header import NtStatus, SMB2HeaderRequest, Smb2Flags  # noqa: E402
from smbprotocol.ioctl import (  # noqa: E402
    CtlCode, IOCTLFlags, SMB2IOCTLRequest, SMB2IOCTLResponse, SMB2SrvCopyChunk,
    SMB2SrvCopyChunkCopy, SMB2SrvCopyChunkResponse, SMB2SrvRequestResumeKey)
from smbprotocol.open import (  # noqa: E402
    CreateDisposition, CreateOptions, FilePipePrinterAccessMask, ImpersonationLevel, Open,
    ShareAccess, SMB2CloseRequest, SMB2CreateRequest, SMB2CreateResponse, SMB2QueryInfoRequest,
    SMB2QueryInfoResponse, SMB2WriteRequest)
from smbprotocol.session import Session  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

# Not marked interop: the client is a Python package, not a binary.

WAIT_S = 10.0
ALL_ONES_FILE_ID = b"\xff" * 16
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
READ_WRITE = FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE

# What a related request carries in the fields it inherits: (SessionId, TreeId, FileId).
FILLINGS = {
    "zeros": (0, 0, bytes(16)),
    "all-ones": (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF, ALL_ONES_FILE_ID),
    "stale": (0x0123456789ABCDEF, 0x7654321, bytes(range(16))),
}


@pytest.fixture(scope="module")
def server(smb_server_module):
    return smb_server_module


@pytest.fixture(params=[False, True], ids=["signed", "encrypted"])
def client(request, server):
    if not request.param and request.node.callspec.params.get("filling") == "zeros" \
            and os.environ.get("SMBCA_INTEROP_TARGET") == "smbd":
        pytest.skip("smbd signs the reply to a related request with SessionId 0 so "
                    "that the signature does not verify")
    conn = Connection(uuid.uuid4(), server.host, server.port)
    conn.connect(timeout=WAIT_S)
    session = Session(conn, server.user, server.password, require_encryption=request.param)
    session.connect()
    tree = TreeConnect(session, rf"\\{server.host}\{server.share.name}")
    tree.connect()
    yield conn, session, tree
    conn.disconnect(close=False)


def send_related(conn, session, tree, messages, filling):
    """``messages`` as one related compound: the first with the real ids, the
    others with ``filling``'s SessionId/TreeId (their FileId is the caller's).
    Returns the final reply headers, in order."""
    data = b""
    requests = []
    for index, message in enumerate(messages):
        last = index == len(messages) - 1
        body = message.pack()
        padding = b"" if last else b"\x00" * (-(64 + len(body)) % 8)
        with conn.sequence_lock:
            charge = conn._calculate_credit_charge(message)
            message_id = conn.sequence_window["low"]
            conn.sequence_window["low"] += max(charge, 1)
        header = SMB2HeaderRequest()
        header["credit_charge"] = charge
        header["command"] = message.COMMAND
        header["credit_request"] = max(charge, 1)
        header["message_id"] = message_id
        header["session_id"] = session.session_id if index == 0 else filling[0]
        header["tree_id"] = tree.tree_connect_id if index == 0 else filling[1]
        header["data"] = body
        header["next_command"] = 0 if last else 64 + len(body) + len(padding)
        if index:
            header["flags"].set_flag(Smb2Flags.SMB2_FLAGS_RELATED_OPERATIONS)
        raw = header.pack() + padding
        if not session.encrypt_data:
            header["flags"].set_flag(Smb2Flags.SMB2_FLAGS_SIGNED)
            raw = header.pack() + padding
            signature = conn._generate_signature(raw, session.signing_key, message_id, False,
                                                 message.COMMAND)
            raw = raw[:48] + signature + raw[64:]
        # Replies are matched, and verified, against the real session.
        request = Request(header, type(message), conn, session_id=session.session_id)
        conn.outstanding_requests[message_id] = request
        requests.append(request)
        data += raw
    if session.encrypt_data:
        data = conn._encrypt(data, session)
    conn.transport.send(data)
    replies = []
    for request in requests:
        try:
            replies.append(conn.receive(request, timeout=WAIT_S))
        except SMBResponseException:
            replies.append(request.response)      # a final error reply, kept for the test
        conn.outstanding_requests.pop(request.message["message_id"].get_value(), None)
    return replies


def create_request(name: str, disposition=CreateDisposition.FILE_OVERWRITE_IF):
    create = SMB2CreateRequest()
    create["impersonation_level"] = ImpersonationLevel.Impersonation
    create["desired_access"] = READ_WRITE
    create["file_attributes"] = 0x80
    create["share_access"] = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE
    create["create_disposition"] = disposition
    create["create_options"] = CreateOptions.FILE_NON_DIRECTORY_FILE
    create["buffer_path"] = name.encode("utf-16-le")
    return create


def query_standard_info(file_id: bytes):
    query = SMB2QueryInfoRequest()
    query["info_type"] = InfoType.SMB2_0_INFO_FILE
    query["file_info_class"] = FileInformationClass.FILE_STANDARD_INFORMATION
    query["output_buffer_length"] = 4096
    query["file_id"] = file_id
    return query


def write_request(file_id: bytes, data: bytes, offset: int = 0):
    write = SMB2WriteRequest()
    write["offset"] = offset
    write["file_id"] = file_id
    write["buffer"] = data
    return write


def close_request(file_id: bytes):
    close = SMB2CloseRequest()
    close["file_id"] = file_id
    return close


def statuses(replies) -> list[int]:
    return [reply["status"].get_value() for reply in replies]


def name_for(client, filling: str, what: str) -> str:
    conn, session, _ = client
    kind = "enc" if session.encrypt_data else "sig"
    return f"related-{what}-{filling}-{kind}.bin"


@pytest.mark.parametrize("filling", list(FILLINGS))
def test_create_query_write_close(client, server, filling, interop_target):
    conn, session, tree = client
    name = name_for(client, filling, "qwc")
    file_id = FILLINGS[filling][2]
    data = os.urandom(1000)
    replies = send_related(conn, session, tree, [
        create_request(name), query_standard_info(file_id), write_request(file_id, data),
        close_request(file_id)], FILLINGS[filling])
    assert statuses(replies) == [NtStatus.STATUS_SUCCESS] * 4
    created = SMB2CreateResponse()
    created.unpack(replies[0]["data"].get_value())
    info = SMB2QueryInfoResponse()
    info.unpack(replies[1]["data"].get_value())
    # FILE_STANDARD_INFORMATION of the file the CREATE just made: EndOfFile 0.
    assert int.from_bytes(info["buffer"].get_value()[8:16], "little") == 0
    if interop_target == "smbcad":
        # smbcad names the real session and tree in each reply, so a client
        # that finds the signing key by the reply's SessionId finds it
        # (Samba echoes whatever the request held).
        for reply in replies:
            assert reply["session_id"].get_value() == session.session_id
            assert reply["tree_id"].get_value() == tree.tree_connect_id
    assert (server.share.path / name).read_bytes() == data
    # The CLOSE closed the CREATE's open: its FileId is no longer valid.
    request = conn.send(close_request(created["file_id"].get_value()),
                        sid=session.session_id, tid=tree.tree_connect_id)
    with pytest.raises(SMBResponseException) as closed:
        conn.receive(request, timeout=WAIT_S)
    assert closed.value.status == NtStatus.STATUS_FILE_CLOSED


@pytest.mark.parametrize("filling", list(FILLINGS))
def test_failed_create_fails_the_chain_with_its_status(client, filling, interop_target):
    conn, session, tree = client
    file_id = FILLINGS[filling][2]
    replies = send_related(conn, session, tree, [
        create_request(name_for(client, filling, "missing"), CreateDisposition.FILE_OPEN),
        query_standard_info(file_id), write_request(file_id, b"x"), close_request(file_id)],
        FILLINGS[filling])
    assert statuses(replies) == [STATUS_OBJECT_NAME_NOT_FOUND] * 4
    if interop_target == "smbcad":
        for reply in replies:
            assert reply["session_id"].get_value() == session.session_id
            assert reply["tree_id"].get_value() == tree.tree_connect_id


def _resume_key(tree, name: str, data: bytes) -> tuple[Open, bytes]:
    source = Open(tree, name)
    source.create(ImpersonationLevel.Impersonation, READ_WRITE, 0x80,
                  ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                  CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE)
    source.write(data, 0)
    ioctl = SMB2IOCTLRequest()
    ioctl["ctl_code"] = CtlCode.FSCTL_SRV_REQUEST_RESUME_KEY
    ioctl["file_id"] = source.file_id
    ioctl["max_input_response"] = 0
    ioctl["max_output_response"] = 32
    ioctl["flags"] = IOCTLFlags.SMB2_0_IOCTL_IS_FSCTL
    conn = tree.session.connection
    request = conn.send(ioctl, sid=tree.session.session_id, tid=tree.tree_connect_id)
    reply = conn.receive(request, timeout=WAIT_S)
    out = SMB2IOCTLResponse()
    out.unpack(reply["data"].get_value())
    key = SMB2SrvRequestResumeKey()
    key.unpack(out["buffer"].get_value())
    return source, key["resume_key"].get_value()


@pytest.mark.parametrize("filling", list(FILLINGS))
def test_create_then_server_side_copy_then_close(client, server, filling, interop_target):
    if interop_target == "smbd":
        pytest.skip("smbd fails an asynchronous FSCTL inside a compound with "
                    "STATUS_INTERNAL_ERROR")
    conn, session, tree = client
    data = os.urandom(200_000)
    source, key = _resume_key(tree, name_for(client, filling, "copy-src"), data)
    target = name_for(client, filling, "copy-dst")
    file_id = FILLINGS[filling][2]
    chunk = SMB2SrvCopyChunk()
    chunk["source_offset"] = 0
    chunk["target_offset"] = 0
    chunk["length"] = len(data)
    copy = SMB2SrvCopyChunkCopy()
    copy["source_key"] = key
    copy["chunks"] = [chunk]
    ioctl = SMB2IOCTLRequest()
    ioctl["ctl_code"] = CtlCode.FSCTL_SRV_COPYCHUNK_WRITE
    ioctl["file_id"] = file_id
    ioctl["max_input_response"] = 0
    ioctl["max_output_response"] = 12
    ioctl["flags"] = IOCTLFlags.SMB2_0_IOCTL_IS_FSCTL
    ioctl["buffer"] = copy
    try:
        replies = send_related(conn, session, tree, [
            create_request(target), ioctl, close_request(file_id)], FILLINGS[filling])
    finally:
        source.close()
    assert statuses(replies) == [NtStatus.STATUS_SUCCESS] * 3
    out = SMB2IOCTLResponse()
    out.unpack(replies[1]["data"].get_value())
    result = SMB2SrvCopyChunkResponse()
    result.unpack(out["buffer"].get_value())
    assert result["chunks_written"].get_value() == 1
    assert result["total_bytes_written"].get_value() == len(data)
    assert (server.share.path / target).read_bytes() == data
