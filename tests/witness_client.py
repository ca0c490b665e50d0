"""A witness client ([MS-SWN] over DCE/RPC) for the tests of every tier: the
unit tests (tests/unit/witness, in-process or over a socket) and the lab
(tests/lab/guest_tests/cluster_witness.py, registered with the other node's
witnessd while the pair moves a LIF).

``DceClient`` builds PDUs with ``smbca.rpc.dcerpc`` and authenticates, signs
and seals with pyspnego, an independent NTLM / SPNEGO implementation, so the
server's security layer is checked against someone else's arithmetic.  It
drives anything with ``receive_data`` / ``pdus_to_send``: an in-process
``RpcConnection`` (two real state machines wired together, shared/STYLE.md
rule 14) or ``SocketConnection``, a TCP connection to a running witnessd.
"""

import socket
import struct
import time
from dataclasses import dataclass, field

import spnego
from spnego.iov import BufferType

from smbca.rpc.dcerpc import (
    NDR20,
    AlterContext,
    AlterContextResp,
    AuthLevel,
    AuthType,
    AuthVerifier,
    Auth3,
    Bind,
    BindAck,
    PresentationContext,
    Request,
    Response,
    SyntaxId,
    decode_pdu,
)
from smbca.rpc.ndr import decode, encode
from witnessd.swn import (
    WITNESS_SYNTAX,
    WITNESS_V1,
    WITNESS_V2,
    AsyncNotifyRequest,
    AsyncNotifyResponse,
    RegisterExRequest,
    RegisterRequest,
    RegisterResponse,
    Win32Error,
)

USER, PASSWORD = "alice", "Secret1"      # the unit tests' account (tests/unit/witness/client.py)
RESPONSE_HEADER = 24
SIG = 16


class SocketConnection:
    """What DceClient needs from a connection, over a TCP socket."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.closed = False

    def receive_data(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _pdu(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            header = self.sock.recv(16, socket.MSG_PEEK)
        except TimeoutError:
            return None
        if not header:
            self.closed = True            # the server closed the connection
        if len(header) < 16:
            return None
        (length,) = struct.unpack_from("<H", header, 8)
        data = b""
        self.sock.settimeout(5)
        while len(data) < length:
            chunk = self.sock.recv(length - len(data))
            if not chunk:
                self.closed = True
                raise ConnectionError("the server closed the connection inside a PDU")
            data += chunk
        return data

    def pdus_to_send(self, first_timeout: float = 2.0) -> list[bytes]:
        pdus = []
        pdu = self._pdu(first_timeout)
        while pdu is not None:
            pdus.append(pdu)
            flags = pdu[3]
            pdu = self._pdu(0.05 if flags & 0x02 else 2.0)
        return pdus


@dataclass
class DceClient:
    """One client connection; ``auth_type`` 9 (SPNEGO) or 10 (raw NTLM), or None."""

    conn: object                       # RpcConnection or SocketConnection
    auth_type: int | None = AuthType.GSS_NEGOTIATE
    level: int = AuthLevel.PKT_INTEGRITY
    password: str = PASSWORD
    user: str = USER
    syntax: SyntaxId = WITNESS_SYNTAX
    max_frag: int = 5840
    assoc_group_id: int = 0
    call_id: int = 1
    ctx: object = None
    received: list[bytes] = field(default_factory=list)

    def _send(self, pdu: bytes) -> list[bytes]:
        try:
            self.conn.receive_data(pdu)
        finally:
            out = self.conn.pdus_to_send()
            self.received += out
        return out

    def _verifier(self, token: bytes, pad: int = 0) -> AuthVerifier:
        return AuthVerifier(auth_type=self.auth_type, auth_level=self.level,
                            auth_pad_length=pad, auth_context_id=1, auth_value=token)

    def bind(self) -> BindAck:
        contexts = (PresentationContext(p_cont_id=0, abstract_syntax=self.syntax,
                                        transfer_syntaxes=(NDR20,)),)
        verifier = None
        if self.auth_type is not None:
            protocol = "negotiate" if self.auth_type == AuthType.GSS_NEGOTIATE else "ntlm"
            self.ctx = spnego.client(self.user, self.password, hostname="node1", protocol=protocol)
            verifier = self._verifier(self.ctx.step())
        (raw,) = self._send(Bind(call_id=self._next(), pfc_flags=0x07, max_xmit_frag=self.max_frag,
                                 max_recv_frag=self.max_frag, assoc_group_id=self.assoc_group_id,
                                 p_context_elem=contexts, auth=verifier).encode())
        ack = decode_pdu(raw)
        assert isinstance(ack, BindAck), ack
        self.assoc_group_id = ack.assoc_group_id
        if self.auth_type is None:
            return ack
        token = self.ctx.step(ack.auth.auth_value)
        if self.auth_type == AuthType.WINNT:
            assert self._send(Auth3(call_id=self._next(), auth=self._verifier(token)).encode()) == []
        else:
            (raw,) = self._send(AlterContext(
                call_id=self._next(), max_xmit_frag=self.max_frag, max_recv_frag=self.max_frag,
                assoc_group_id=self.assoc_group_id, p_context_elem=contexts,
                auth=self._verifier(token)).encode())
            resp = decode_pdu(raw)
            assert isinstance(resp, AlterContextResp) and resp.auth is not None, resp
            self.ctx.step(resp.auth.auth_value)
        assert self.ctx.complete
        return ack

    def _next(self) -> int:
        self.call_id += 1
        return self.call_id

    def request_pdu(self, opnum: int, stub: bytes, call_id: int | None = None) -> bytes:
        call_id = self._next() if call_id is None else call_id
        if self.auth_type is None or self.level < AuthLevel.PKT:
            return Request(call_id=call_id, alloc_hint=len(stub), opnum=opnum,
                           stub_data=stub).encode()
        pad = -len(stub) % 16
        raw = Request(call_id=call_id, alloc_hint=len(stub), opnum=opnum, stub_data=stub,
                      auth=self._verifier(bytes(SIG), pad)).encode()
        return self.protect(raw, 24)

    def protect(self, raw: bytes, offset: int) -> bytes:
        header, payload = raw[:offset], raw[offset:-SIG - 8]
        trailer = raw[-SIG - 8:-SIG]
        if self.level == AuthLevel.PKT_PRIVACY:
            result = self.ctx.wrap_iov([(BufferType.sign_only, header), payload,
                                        (BufferType.sign_only, trailer), BufferType.header])
            sealed, signature = result.buffers[1].data, result.buffers[3].data
            return header + sealed + trailer + signature
        return raw[:-SIG] + self.ctx.sign(raw[:-SIG])

    def response_stub(self, raw: bytes) -> bytes:
        """Verify / unseal one response PDU and return its stub."""
        pdu = decode_pdu(raw)
        assert isinstance(pdu, Response), pdu
        if pdu.auth is None:
            return pdu.stub_data
        header, payload = raw[:RESPONSE_HEADER], raw[RESPONSE_HEADER:-SIG - 8]
        trailer, signature = raw[-SIG - 8:-SIG], raw[-SIG:]
        if self.level == AuthLevel.PKT_PRIVACY:
            result = self.ctx.unwrap_iov([(BufferType.sign_only, header), payload,
                                          (BufferType.sign_only, trailer),
                                          (BufferType.header, signature)])
            payload = result.buffers[1].data
        else:
            self.ctx.verify(raw[:-SIG], signature)
        return payload[:len(payload) - pdu.auth.auth_pad_length]

    def call(self, opnum: int, request: object, response_type: type) -> object:
        """Send one call and decode its (immediate) answer."""
        out = self._send(self.request_pdu(opnum, encode(type(request).NDR, request)))
        return self.decode_answer(out, response_type)

    def send_call(self, opnum: int, request: object) -> list[bytes]:
        return self._send(self.request_pdu(opnum, encode(type(request).NDR, request)))

    def decode_answer(self, pdus: list[bytes], response_type: type) -> object:
        assert pdus, "no answer"
        stub = b"".join(self.response_stub(raw) for raw in pdus)
        return decode(response_type.NDR, stub)


# -- witness call helpers --------------------------------------------------------------

def register(client, net="CLUSTER", ip="10.0.0.2", name="hv1.example.com") -> object:
    response = client.call(1, RegisterRequest(WITNESS_V1, net, ip, name), RegisterResponse)
    assert response.return_value == Win32Error.SUCCESS
    return response.context_handle


def register_ex(client, share=None, flags=0, timeout=120, ip="10.0.0.2",
                name="hv1.example.com") -> object:
    response = client.call(4, RegisterExRequest(WITNESS_V2, "CLUSTER", share, ip, name, flags,
                                                timeout), RegisterResponse)
    assert response.return_value == Win32Error.SUCCESS, response
    return response.context_handle


def notify(client, handle) -> list[bytes]:
    """Send AsyncNotify; return whatever came back at once (nothing if it pends)."""
    return client.send_call(3, AsyncNotifyRequest(handle))


def answer(client, pdus) -> AsyncNotifyResponse:
    return client.decode_answer(pdus, AsyncNotifyResponse)


def pending_answer(client) -> AsyncNotifyResponse:
    return answer(client, client.conn.pdus_to_send())


def fault_status(raw: bytes) -> int:
    pdu = decode_pdu(raw)
    return getattr(pdu, "status")


def flags_of(raw: bytes) -> int:
    return raw[3]




def wait_pending(client, timeout_s: float) -> list[bytes]:
    """The PDUs of a call that pended (AsyncNotify) once they come, over a
    ``SocketConnection``; [] after ``timeout_s``; ConnectionError when the
    server closed the connection."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pdus = client.conn.pdus_to_send(first_timeout=min(1.0, deadline - time.monotonic()))
        if pdus:
            client.received += pdus
            return pdus
        if client.conn.closed:
            raise ConnectionError("the witness server closed the connection")
    return []
