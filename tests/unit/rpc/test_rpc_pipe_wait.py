"""A READ on an empty pipe waits ([MS-SMB2] 3.3.5.12 on a named pipe; Samba's
smbd and Windows answer STATUS_PENDING): ``NamedPipe.read_when_ready`` and the
SMB glue ``smbcad.server.pipes.read``, driven by impacket's bind PDU as a
pipelining client (Samba's dcerpc over SMB2) sends it: the READ first, then
the WRITE whose answer completes it; a CANCEL ends it with STATUS_CANCELLED,
the pipe's CLOSE with STATUS_PIPE_BROKEN.
"""

import asyncio
import struct
from types import SimpleNamespace

import pytest

from smbca.rpc.dcerpc import BindAck, decode_pdu
from smbcad.proto.constants import Command
from smbcad.proto.errors import SmbError
from smbcad.proto.header import Smb2Header
from smbcad.proto.status import NtStatus
from smbcad.rpc import open_pipe
from smbcad.server import pipes
from smbcad.server.context import Pending, Reply

from .client import bind_pdu, environment


# --- the pipe (sans-IO) ------------------------------------------------------------------


def test_a_waiting_read_gets_the_answer_of_the_next_write() -> None:
    pipe = open_pipe("srvsvc", environment())
    assert pipe.would_wait
    got = []
    pipe.read_when_ready(4096, got.append)
    assert got == []
    pipe.write(bind_pdu())
    assert len(got) == 1 and not got[0].more
    assert isinstance(decode_pdu(got[0].data), BindAck)
    assert pipe.would_wait and pipe.readable_bytes == 0     # the answer went to the READ


def test_waiting_reads_are_served_in_order_and_a_short_one_overflows() -> None:
    pipe = open_pipe("srvsvc", environment())
    first, second = [], []
    pipe.read_when_ready(10, first.append)
    pipe.read_when_ready(4096, second.append)
    pipe.write(bind_pdu())
    assert first[0].status == NtStatus.BUFFER_OVERFLOW and len(first[0].data) == 10
    assert second[0].status == NtStatus.SUCCESS
    assert isinstance(decode_pdu(first[0].data + second[0].data), BindAck)


def test_a_withdrawn_read_gets_nothing_and_the_answer_stays_readable() -> None:
    pipe = open_pipe("srvsvc", environment())
    got = []
    withdraw = pipe.read_when_ready(4096, got.append)
    assert withdraw() is True and withdraw() is False
    pipe.write(bind_pdu())
    assert got == [] and pipe.readable_bytes > 0


def test_close_ends_a_waiting_read_with_pipe_broken() -> None:
    pipe = open_pipe("srvsvc", environment())
    got = []
    withdraw = pipe.read_when_ready(4096, got.append)
    pipe.close()
    assert got == [NtStatus.PIPE_BROKEN] and withdraw() is False


def test_a_broken_pipe_serves_the_fault_then_breaks_the_other_reads() -> None:
    pipe = open_pipe("srvsvc", environment())
    first, second = [], []
    pipe.read_when_ready(4096, first.append)
    pipe.read_when_ready(4096, second.append)
    pipe.write(b"\x05\x00\x02\x03\x10\x00\x00\x00\x10\x00\x00\x00\x07\x00\x00\x00")
    assert decode_pdu(first[0].data).call_id == 7           # the fault
    assert second == [NtStatus.PIPE_BROKEN]
    assert not pipe.would_wait


def test_transceive_with_a_waiting_read_is_busy() -> None:
    pipe = open_pipe("srvsvc", environment())
    pipe.read_when_ready(4096, lambda result: None)
    with pytest.raises(SmbError) as busy:
        pipe.transceive(bind_pdu(), 4096)
    assert busy.value.status == NtStatus.PIPE_BUSY


# --- the SMB READ of a pipe (smbcad.server.pipes) ----------------------------------------


def read_context(pipe, next_command: int = 0):
    header = Smb2Header(command=Command.READ, message_id=7, next_command=next_command)
    request = SimpleNamespace(length=4096)
    return (SimpleNamespace(header=header), SimpleNamespace(handle=pipe, is_pipe=True),
            request)


def read_status(reply: Reply) -> tuple[int, bytes]:
    body = bytes(reply.body)
    length = struct.unpack_from("<I", body, 4)[0]
    return reply.status, body[16:16 + length]


def test_an_smb_read_with_data_answers_at_once() -> None:
    pipe = open_pipe("srvsvc", environment())
    pipe.write(bind_pdu())
    reply = pipes.read(*read_context(pipe))
    assert isinstance(reply, Reply)
    status, data = read_status(reply)
    assert status == NtStatus.SUCCESS and isinstance(decode_pdu(data), BindAck)


def test_an_smb_read_on_an_empty_pipe_goes_async_until_the_write() -> None:
    async def scenario():
        pipe = open_pipe("srvsvc", environment())
        pending = pipes.read(*read_context(pipe))
        assert isinstance(pending, Pending)
        assert pending.interim_after_s == 0.0 and pending.on_cancel is not None
        work = asyncio.ensure_future(pending.work)
        await asyncio.sleep(0)
        assert not work.done()
        pipe.write(bind_pdu())
        status, data = read_status(await work)
        assert status == NtStatus.SUCCESS and isinstance(decode_pdu(data), BindAck)
    asyncio.run(scenario())


@pytest.mark.parametrize("end, expected", [
    ("cancel", NtStatus.CANCELLED), ("close", NtStatus.PIPE_BROKEN)])
def test_cancel_or_close_ends_the_async_smb_read(end, expected) -> None:
    async def scenario():
        pipe = open_pipe("srvsvc", environment())
        pending = pipes.read(*read_context(pipe))
        work = asyncio.ensure_future(pending.work)
        await asyncio.sleep(0)
        pending.on_cancel() if end == "cancel" else pipe.close()
        with pytest.raises(SmbError) as ended:
            await work
        assert ended.value.status == expected
        if end == "cancel":                 # the answer of a later WRITE stays readable
            pipe.write(bind_pdu())
            assert pipe.readable_bytes > 0
    asyncio.run(scenario())


def test_an_smb_read_mid_compound_does_not_go_async() -> None:
    async def scenario():
        pipe = open_pipe("srvsvc", environment())
        with pytest.raises(SmbError) as refused:
            pipes.read(*read_context(pipe, next_command=80))
        assert refused.value.status == NtStatus.INTERNAL_ERROR
        assert pipe.would_wait
        pipe.write(bind_pdu())
        assert pipe.readable_bytes > 0      # no READ left waiting
    asyncio.run(scenario())
