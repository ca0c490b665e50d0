"""NamedPipe: the SMB verbs of an IPC$ pipe, driven by impacket's real DCE/RPC client.

The first tests replay what ``smbclient -L`` does over SMB2 (CREATE
"srvsvc", WRITE bind, READ bind_ack, then the NetrShareEnum call by WRITE +
READ or by FSCTL_PIPE_TRANSCEIVE).
"""

import pytest
from impacket.dcerpc.v5 import rpcrt, srvs

from smbca.rpc.dcerpc import AssociationGroups, BindAck, Fault, FaultStatus, decode_pdu
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.rpc import PIPE_NAMES, open_pipe, pipe_key

from .client import PipeTransport, bind_pdu, environment, srvsvc_client


def names(response) -> list[str]:
    buffer = response["InfoStruct"]["ShareInfo"]["Level1"]["Buffer"]
    return [entry["shi1_netname"].rstrip("\x00") for entry in buffer]


def test_smbclient_share_listing_over_write_and_read() -> None:
    client, pipe_transport = srvsvc_client(read_size=64)
    response = srvs.hNetrShareEnum(client, 1, serverName="\\\\127.0.0.1")
    assert names(response) == ["IPC$", "data", "scratch"]
    assert pipe_transport.overflows > 0  # reads of 64 bytes hit STATUS_BUFFER_OVERFLOW


def test_share_listing_over_transceive() -> None:
    client, pipe_transport = srvsvc_client(read_size=100, transceive=True)
    response = srvs.hNetrShareEnum(client, 1)
    assert names(response) == ["IPC$", "data", "scratch"]
    assert pipe_transport.overflows > 0
    info = srvs.hNetrServerGetInfo(client, 101)
    assert info["InfoStruct"]["ServerInfo101"]["sv101_name"] == "SMBCA\x00"


def test_undecodable_call_faults_on_the_pipe() -> None:
    pipe = open_pipe("srvsvc", environment())
    pipe_transport = PipeTransport(pipe)
    client = rpcrt.DCERPC_v5(pipe_transport)
    client.bind(srvs.MSRPC_UUID_SRVS)
    assert pipe.readable_bytes == 0
    client.call(15, b"")  # empty stub: impacket cannot parse it, we fault
    fault = decode_pdu(pipe.read(4096).data)
    assert isinstance(fault, Fault) and fault.status == FaultStatus.RPC_X_BAD_STUB_DATA


def test_read_returns_one_message_at_a_time() -> None:
    pipe = open_pipe("srvsvc", environment())
    bind = bind_pdu()
    assert pipe.write(bind + bind[:10]) == len(bind) + 10
    first = pipe.read(30)
    assert (len(first.data), first.more, first.status) == (30, True, NtStatus.BUFFER_OVERFLOW)
    rest = pipe.read(4096)
    assert not rest.more and rest.status == NtStatus.SUCCESS
    ack = decode_pdu(first.data + rest.data)
    assert isinstance(ack, BindAck) and ack.sec_addr == "\\PIPE\\srvsvc"
    with pytest.raises(SmbError) as empty:
        pipe.read(4096)  # the second, partial PDU has no answer yet
    assert empty.value.status == NtStatus.PIPE_EMPTY


def test_transceive_refuses_when_unread_data_waits() -> None:
    pipe = open_pipe("srvsvc", environment())
    client = rpcrt.DCERPC_v5(PipeTransport(pipe))
    client.bind(srvs.MSRPC_UUID_SRVS)
    pipe.write(b"\x05\x00\x00\x03\x10\x00\x00\x00\x18\x00\x00\x00\x02\x00\x00\x00"
               b"\x00\x00\x00\x00\x00\x00\x2a\x00")  # request opnum 42 -> a fault to read
    with pytest.raises(SmbError) as busy:
        pipe.transceive(b"", 1024)
    assert busy.value.status == NtStatus.PIPE_BUSY


def test_peek_does_not_consume() -> None:
    client, _ = srvsvc_client()
    pipe = client.get_rpc_transport().pipe
    pipe.write(b"\x05\x00\x00\x03\x10\x00\x00\x00\x18\x00\x00\x00\x02\x00\x00\x00"
               b"\x00\x00\x00\x00\x00\x00\x2a\x00")
    peek = pipe.peek(8)
    assert (peek.named_pipe_state, peek.read_data_available, peek.number_of_messages,
            peek.message_length) == (3, 32, 1, 32)
    assert peek.status == NtStatus.BUFFER_OVERFLOW and peek.data == pipe.peek(100).data[:8]
    assert peek.encode()[:16] == bytes.fromhex("03000000" "20000000" "01000000" "20000000")
    assert len(pipe.read(100).data) == 32


def test_protocol_error_breaks_the_pipe_after_the_fault() -> None:
    pipe = open_pipe("srvsvc", environment())
    garbage = b"\x05\x00\x02\x03\x10\x00\x00\x00\x10\x00\x00\x00\x07\x00\x00\x00"
    assert pipe.write(garbage) == 16  # a response from the client: protocol error
    assert pipe.broken and pipe.local_information().named_pipe_state == 4  # closing
    fault = decode_pdu(pipe.read(1024).data)
    assert (fault.call_id, fault.status) == (7, FaultStatus.NCA_S_PROTO_ERROR)
    for operation in (lambda: pipe.read(1024), lambda: pipe.write(b"x")):
        with pytest.raises(SmbError) as broken:
            operation()
        assert broken.value.status == NtStatus.PIPE_BROKEN


def test_close_releases_the_association_group() -> None:
    groups = AssociationGroups()
    env = environment(groups=groups)
    first = open_pipe("srvsvc", env)
    srvsvc_client(first)
    second = open_pipe("\\PIPE\\SRVSVC", env)
    assert len(groups) == 1
    first.close()
    first.close()  # idempotent
    assert len(groups) == 0
    with pytest.raises(SmbError) as closed:
        first.read(10)
    assert closed.value.status == NtStatus.FILE_CLOSED
    second.close()


def test_local_information_bytes() -> None:
    pipe = open_pipe("srvsvc", environment())
    assert pipe.local_information().encode() == bytes.fromhex(
        "01000000" "02000000" "ffffffff" "01000000"  # message type, full duplex, unlimited, 1
        "00000100" "00000000" "00000100" "00000100"  # quotas 64 KiB, nothing to read
        "03000000" "00000000")  # connected, client end


@pytest.mark.parametrize("name", ["srvsvc", "SRVSVC", "\\srvsvc", "\\PIPE\\srvsvc", "pipe\\SrvSvc"])
def test_pipe_names(name: str) -> None:
    assert pipe_key(name) == "srvsvc" and open_pipe(name, environment()).name == "srvsvc"


def test_unknown_pipe_name() -> None:
    with pytest.raises(SmbError) as missing:
        open_pipe("winreg", environment())
    assert missing.value.status == NtStatus.OBJECT_NAME_NOT_FOUND
    assert set(PIPE_NAMES) == {"srvsvc", "lsarpc", "samr", "lsass"}


def test_lookup_pipes_need_a_directory() -> None:
    """Without name services (no ``directory``) lsarpc and samr do not exist."""
    for name in ("lsarpc", "samr", "lsass"):
        with pytest.raises(SmbError) as missing:
            open_pipe(name, environment())
        assert missing.value.status == NtStatus.OBJECT_NAME_NOT_FOUND
