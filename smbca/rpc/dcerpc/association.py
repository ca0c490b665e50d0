"""Sans-IO server end of one connection-oriented DCE/RPC connection.

``RpcConnection`` takes bytes in (``receive_data``) and hands whole PDUs out
(``pdus_to_send`` / ``data_to_send``); it never touches I/O (shared/STYLE.md
rule 1).  It negotiates presentation contexts and fragment sizes, joins an
association group, reassembles fragmented requests, dispatches them to the
registered interfaces and fragments the responses ([C706] ch. 11-12,
[MS-RPCE] 3.3.1 and 3.3.3).

Security (``security.AuthState``) runs the context legs of bind,
alter_context and auth3 with an injected ``SecurityProvider`` and signs or
seals requests and responses at the negotiated level.

A manager routine may defer its answer (``CallContext.defer()``); the
response is queued whenever the ``PendingCall`` completes, and ``on_output``
tells the transport there is something to send.  co_cancel answers a
pending call with nca_s_fault_cancel, orphaned drops it, and closing the
connection abandons all of them.

Errors follow [MS-RPCE] 3.3.3.5: a call that fails gets a fault PDU and the
connection lives on; a protocol violation gets a fault (or a bind_nak for a
bind), the connection moves to CLOSED and ``receive_data`` raises
``ProtocolError`` so the transport closes the pipe after sending what is
queued.  No other exception leaves ``receive_data``.
"""

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from smbca.rpc.dcerpc.constants import (
    RPC_VERS,
    RPC_VERS_MINORS,
    SINGLE_FRAGMENT,
    BindNakReason,
    FaultStatus,
    PfcFlags,
    PType,
)
from smbca.rpc.dcerpc.elements import AuthVerifier
from smbca.rpc.dcerpc.errors import PduDecodeError, ProtocolError, RpcFault
from smbca.rpc.dcerpc.interface import (
    AssociationGroup,
    AssociationGroups,
    CallContext,
    InterfaceHandler,
    InterfaceKey,
    PendingCall,
)
from smbca.rpc.dcerpc.negotiation import (
    MIN_FRAG_SIZE,
    BoundContext,
    ContextError,
    Negotiation,
    negotiate_contexts,
    negotiate_frag_size,
)
from smbca.rpc.dcerpc.pdu import (
    HEADER_SIZE,
    REQUEST_HEADER_SIZE,
    RESPONSE_HEADER_SIZE,
    AlterContext,
    AlterContextResp,
    Auth3,
    Bind,
    BindAck,
    BindNak,
    CoCancel,
    Fault,
    Orphaned,
    PduHeader,
    Request,
    Response,
    decode_pdu,
)
from smbca.rpc.dcerpc.security import (
    AUTH_PAD_ALIGNMENT,
    AuthRefused,
    AuthState,
    SecurityError,
    SecurityProvider,
)
from smbca.rpc.dcerpc.verification import VerificationTrailer, split_verification_trailer

_log = logging.getLogger(__name__)

HARD_MAX_FRAG_SIZE = 5840
"""Request fragments up to this size are accepted whatever was negotiated (as Samba does)."""
DEFAULT_MAX_CALL_SIZE = 4 * 1024 * 1024
"""Combined stub size of one request ([MS-RPCE] 3.3.3.5.4: 4 MB, else fault 5)."""
SEC_TRAILER_SIZE = 8


class ConnState(Enum):
    """Server connection states ([MS-RPCE] 3.3.3 server state machine, condensed)."""

    AWAIT_BIND = "await_bind"
    BOUND = "bound"  # CONTEXT_NEGOTIATED: requests, alter_context and auth legs allowed
    CLOSED = "closed"  # terminal: after bind_nak or a protocol error


TRANSITIONS: Mapping[tuple[ConnState, PType], ConnState] = MappingProxyType({
    (ConnState.AWAIT_BIND, PType.BIND): ConnState.BOUND,
    (ConnState.BOUND, PType.ALTER_CONTEXT): ConnState.BOUND,
    (ConnState.BOUND, PType.AUTH3): ConnState.BOUND,
    (ConnState.BOUND, PType.REQUEST): ConnState.BOUND,
    (ConnState.BOUND, PType.CO_CANCEL): ConnState.BOUND,
    (ConnState.BOUND, PType.ORPHANED): ConnState.BOUND,
})
"""Every (state, PTYPE) pair not listed is a protocol error that ends in CLOSED."""


def state_diagram() -> str:
    """Mermaid state diagram generated from ``TRANSITIONS`` (for the docs)."""
    lines = ["stateDiagram-v2", f"    [*] --> {ConnState.AWAIT_BIND.name}"]
    for (state, ptype), target in TRANSITIONS.items():
        lines.append(f"    {state.name} --> {target.name}: {ptype.name.lower()}")
    lines.append(f"    {ConnState.AWAIT_BIND.name} --> {ConnState.CLOSED.name}: bind_nak / error")
    lines.append(f"    {ConnState.BOUND.name} --> {ConnState.CLOSED.name}: protocol error")
    return "\n".join(lines)


@dataclass(slots=True)
class _PartialCall:
    """A request whose fragments are still arriving ([MS-RPCE] 3.3.3.1.5 STATE_RECEIVE_PDU)."""

    first: Request
    context: BoundContext
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


class RpcConnection:
    """Server end of one DCE/RPC connection (one named pipe open, or one TCP socket).

    ``interfaces`` maps (uuid, major version) to handlers; ``assoc_groups`` is
    the endpoint's shared association table; ``max_recv_frag`` caps the
    fragment size we negotiate; ``secondary_address`` goes into bind_ack (the
    pipe name, e.g. ``\\PIPE\\srvsvc``, or the TCP port); ``transport`` is
    handed to every call in ``CallContext.transport``; ``security`` starts
    security contexts (None: binds with a verifier are refused);
    ``on_output`` is called when a deferred call queued PDUs.
    """

    def __init__(
        self,
        interfaces: Mapping[InterfaceKey, InterfaceHandler],
        assoc_groups: AssociationGroups,
        *,
        max_recv_frag: int = 4280,
        max_call_size: int = DEFAULT_MAX_CALL_SIZE,
        secondary_address: str = "",
        concurrent_multiplex: bool = True,
        transport: Any = None,
        security: SecurityProvider | None = None,
        on_output: Callable[[], None] | None = None,
    ) -> None:
        if max_recv_frag < MIN_FRAG_SIZE or max_recv_frag > 0xFFFF:
            raise ValueError(f"max_recv_frag {max_recv_frag} out of range")
        self._interfaces = interfaces
        self._assoc_groups = assoc_groups
        self._server_max_frag = max_recv_frag & ~7
        self._max_call_size = max_call_size
        self._secondary_address = secondary_address
        self._concurrent_multiplex = concurrent_multiplex
        self._transport = transport
        self._max_contexts = 4000 * max(1, len(interfaces))  # [MS-RPCE] 3.3.3.5.5
        self._state = ConnState.AWAIT_BIND
        self._inbox = bytearray()
        self._outbox: list[bytes] = []
        self._contexts: dict[int, BoundContext] = {}
        self._partial: _PartialCall | None = None
        self._discard_call_id: int | None = None
        self._group: AssociationGroup | None = None
        self._auth = AuthState(security)
        self._pending: dict[int, PendingCall] = {}
        self._on_output = on_output
        self.header_signing = False
        self.max_xmit_frag = self._server_max_frag
        self.max_recv_frag = self._server_max_frag
        self.multiplexed = False

    # -- public surface ---------------------------------------------------

    @property
    def state(self) -> ConnState:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is ConnState.CLOSED

    @property
    def assoc_group(self) -> AssociationGroup | None:
        return self._group

    @property
    def contexts(self) -> Mapping[int, BoundContext]:
        return MappingProxyType(self._contexts)

    @property
    def auth(self) -> AuthState:
        return self._auth

    @property
    def pending_calls(self) -> int:
        """Deferred calls still waiting for their answer."""
        return len(self._pending)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; answers queue up for ``pdus_to_send``.

        Raises ``ProtocolError`` (after queueing the fault or bind_nak that
        answers it) when the client broke the protocol; the connection is then
        CLOSED and the caller closes the transport once the queue is sent.
        """
        if self._state is ConnState.CLOSED:
            raise ProtocolError("data received on a closed DCE/RPC connection")
        self._inbox += data
        try:
            while (raw := self._next_fragment()) is not None:
                self._process(raw)
        except ProtocolError:
            self.close()
            raise

    def pdus_to_send(self) -> list[bytes]:
        """Whole PDUs queued for the client, oldest first; the queue is emptied."""
        pdus, self._outbox = self._outbox, []
        return pdus

    def data_to_send(self) -> bytes:
        """All queued PDUs as one byte string (stream transports)."""
        return b"".join(self.pdus_to_send())

    def close(self) -> None:
        """The transport went away: abandon deferred calls, leave the association group."""
        self._state = ConnState.CLOSED
        self._inbox.clear()
        self._partial = None
        pending, self._pending = list(self._pending.values()), {}
        for call in pending:
            call.abandon("connection closed")
        self._leave_group()

    # -- framing and the state table ------------------------------------

    def _next_fragment(self) -> bytes | None:
        if len(self._inbox) < HEADER_SIZE:
            return None
        header = PduHeader.decode(bytes(self._inbox[:HEADER_SIZE]))
        if header.frag_length < HEADER_SIZE:
            raise self._refuse(header, BindNakReason.REASON_NOT_SPECIFIED,
                               "frag_length shorter than the header")
        if len(self._inbox) < header.frag_length:
            return None
        raw = bytes(self._inbox[:header.frag_length])
        del self._inbox[:header.frag_length]
        return raw

    def _process(self, raw: bytes) -> None:
        header = PduHeader.decode(raw)
        if header.rpc_vers != RPC_VERS or header.rpc_vers_minor not in RPC_VERS_MINORS:
            raise self._refuse(header, BindNakReason.PROTOCOL_VERSION_NOT_SUPPORTED,
                               f"protocol version {header.rpc_vers}.{header.rpc_vers_minor}")
        if not header.drep_supported:
            raise self._refuse(header, BindNakReason.REASON_NOT_SPECIFIED,
                               f"data representation {header.packed_drep.hex()} not supported")
        target = TRANSITIONS.get((self._state, header.ptype))
        if target is None:
            raise self._refuse(header, BindNakReason.REASON_NOT_SPECIFIED,
                               f"PTYPE {header.ptype} not allowed in state {self._state.name}")
        try:
            pdu = decode_pdu(raw)
        except PduDecodeError as exc:
            raise self._refuse(header, BindNakReason.REASON_NOT_SPECIFIED, str(exc)) from exc
        match pdu:
            case AlterContext():
                self._on_alter_context(pdu)
            case Bind():
                self._on_bind(pdu)
            case Request():
                self._on_request(pdu, raw)
            case Auth3():
                self._on_auth3(pdu)
            case Orphaned():
                self._check_control(pdu, raw)
                if self._partial is not None and self._partial.first.call_id == pdu.call_id:
                    self._partial = None  # the client abandoned it ([C706] 12.6.4.8)
                pending = self._pending.pop(pdu.call_id, None)
                if pending is not None:
                    pending.abandon("orphaned")
            case CoCancel():
                self._check_control(pdu, raw)
                pending = self._pending.pop(pdu.call_id, None)
                if pending is not None:  # answered as Samba's witness AsyncNotify cancel
                    pending.abandon("cancelled")
                    self._queue_fault(pdu.call_id, FaultStatus.NCA_S_FAULT_CANCEL)
        self._state = target

    # -- answers ----------------------------------------------------------

    def _queue_fault(self, call_id: int, status: int, p_cont_id: int = 0,
                     did_not_execute: bool = False) -> None:
        flags = SINGLE_FRAGMENT | (PfcFlags.DID_NOT_EXECUTE if did_not_execute else 0)
        self._outbox.append(Fault(call_id=call_id, pfc_flags=flags, p_cont_id=p_cont_id,
                                  status=status).encode())

    def _fatal(self, call_id: int, status: int, message: str, p_cont_id: int = 0,
               did_not_execute: bool = True) -> ProtocolError:
        """Queue a fault and build the error that closes the connection ([MS-RPCE] 3.3.3.5.7)."""
        self._queue_fault(call_id, status, p_cont_id, did_not_execute)
        return ProtocolError(message, status)

    def _nak(self, call_id: int, reason: int, message: str) -> ProtocolError:
        """Queue a bind_nak; the connection closes after it, as in Samba's dcesrv_bind_nak."""
        self._outbox.append(BindNak(call_id=call_id, provider_reject_reason=reason).encode())
        return ProtocolError(f"bind rejected: {message}")

    def _refuse(self, header: PduHeader, reason: int, message: str) -> ProtocolError:
        """Answer an unacceptable PDU: bind_nak for a bind, a proto_error fault otherwise."""
        if header.ptype == PType.BIND:
            return self._nak(header.call_id, reason, message)
        return self._fatal(header.call_id, FaultStatus.NCA_S_PROTO_ERROR, message)

    # -- security ([MS-RPCE] 3.3.1.5.2) -----------------------------------

    def _refused(self, call_id: int, exc: AuthRefused) -> ProtocolError:
        return self._fatal(call_id, exc.status, str(exc))

    def _on_auth3(self, pdu: Auth3) -> None:
        """Last NTLM leg: never answered; a failure shows at the next request."""
        try:
            self._auth.auth3(pdu.auth)
        except AuthRefused as exc:
            _log.info("auth3 refused: %s", exc)
            if exc.status not in (FaultStatus.RPC_S_SEC_PKG_ERROR,
                                  FaultStatus.RPC_S_ACCESS_DENIED):
                raise self._refused(pdu.call_id, exc) from exc

    def _check_control(self, pdu: CoCancel, raw: bytes) -> None:
        """A signed co_cancel / orphaned consumes a sequence number: verify it too."""
        if pdu.auth is not None and self._auth.protects_packets:
            try:
                self._auth.unprotect(raw, HEADER_SIZE, pdu.auth)
            except AuthRefused as exc:
                raise self._refused(pdu.call_id, exc) from exc

    def _unprotect(self, pdu: Request, raw: bytes) -> Request:
        """Check the verifier, verify or unseal a request fragment ([MS-RPCE] 3.3.1.5.2.2)."""
        first = bool(pdu.pfc_flags & PfcFlags.FIRST_FRAG)
        try:
            self._auth.check_request(pdu.auth, first)
            if not self._auth.protects_packets or pdu.auth is None:
                return pdu
            offset = REQUEST_HEADER_SIZE + (16 if pdu.object is not None else 0)
            stub = self._auth.unprotect(raw, offset, pdu.auth)
        except AuthRefused as exc:
            raise self._refused(pdu.call_id, exc) from exc
        return dataclasses.replace(pdu, stub_data=stub)

    # -- bind and alter_context -------------------------------------------

    def _on_bind(self, pdu: Bind) -> None:
        if not pdu.p_context_elem:
            raise self._nak(pdu.call_id, BindNakReason.PROTOCOL_VERSION_NOT_SUPPORTED,
                            "no presentation contexts")
        try:
            leg = self._auth.bind(pdu.auth, bool(pdu.pfc_flags & PfcFlags.SUPPORT_HEADER_SIGN))
        except AuthRefused as exc:
            raise self._nak(pdu.call_id, exc.bind_nak_reason, str(exc)) from exc
        try:
            outcome = self._negotiate(pdu, allow_features=True)
        except ContextError as exc:
            raise self._nak(pdu.call_id, BindNakReason.REASON_NOT_SPECIFIED, str(exc)) from exc
        if pdu.assoc_group_id == 0:
            group = self._assoc_groups.create()
        else:
            group = self._assoc_groups.join(pdu.assoc_group_id)
            if group is None:
                raise self._nak(pdu.call_id, BindNakReason.REASON_NOT_SPECIFIED,
                                f"unknown association group 0x{pdu.assoc_group_id:08x}")
        if outcome.features is not None:
            group.bind_time_features = outcome.features
        self._group = group
        self._contexts.update(outcome.new_contexts)
        size = negotiate_frag_size(pdu.max_xmit_frag, pdu.max_recv_frag, self._server_max_frag)
        self.max_xmit_frag = self.max_recv_frag = size
        self.multiplexed = bool(pdu.pfc_flags & PfcFlags.CONC_MPX) and self._concurrent_multiplex
        # Header signing is echoed as Samba does; NTLM signs the whole PDU anyway.
        self.header_signing = bool(pdu.pfc_flags & PfcFlags.SUPPORT_HEADER_SIGN)
        self._outbox.append(BindAck(
            call_id=pdu.call_id, pfc_flags=self._ack_flags(), max_xmit_frag=size,
            max_recv_frag=size, assoc_group_id=group.assoc_group_id,
            sec_addr=self._secondary_address, p_result_list=outcome.results,
            auth=leg.verifier).encode())

    def _ack_flags(self) -> int:
        return (SINGLE_FRAGMENT | (PfcFlags.CONC_MPX if self.multiplexed else 0)
                | (PfcFlags.SUPPORT_HEADER_SIGN if self.header_signing else 0))

    def _on_alter_context(self, pdu: AlterContext) -> None:
        try:
            leg = self._auth.alter(pdu.auth)
        except AuthRefused as exc:
            raise self._refused(pdu.call_id, exc) from exc
        if not pdu.p_context_elem:
            raise self._fatal(pdu.call_id, FaultStatus.NCA_S_PROTO_ERROR,
                              "no presentation contexts")
        try:
            outcome = self._negotiate(pdu, allow_features=False)
        except ContextError as exc:
            raise self._fatal(pdu.call_id, FaultStatus.NCA_S_PROTO_ERROR, str(exc)) from exc
        self._contexts.update(outcome.new_contexts)
        assert self._group is not None  # BOUND implies a successful bind
        self._outbox.append(AlterContextResp(
            call_id=pdu.call_id, pfc_flags=self._ack_flags(), max_xmit_frag=self.max_xmit_frag,
            max_recv_frag=self.max_recv_frag, assoc_group_id=self._group.assoc_group_id,
            p_result_list=outcome.results, auth=leg.verifier).encode())

    def _negotiate(self, pdu: Bind, *, allow_features: bool) -> Negotiation:
        return negotiate_contexts(pdu.p_context_elem, self._interfaces, self._contexts,
                                  allow_features=allow_features, max_contexts=self._max_contexts)

    # -- requests -----------------------------------------------------------

    def _on_request(self, pdu: Request, raw: bytes) -> None:
        pdu = self._unprotect(pdu, raw)
        if len(raw) > max(self.max_recv_frag, HARD_MAX_FRAG_SIZE):
            raise self._fatal(pdu.call_id, FaultStatus.NCA_S_PROTO_ERROR,
                              f"request fragment of {len(raw)} bytes", did_not_execute=False)
        first = bool(pdu.pfc_flags & PfcFlags.FIRST_FRAG)
        last = bool(pdu.pfc_flags & PfcFlags.LAST_FRAG)
        if first:
            self._first_fragment(pdu, last)
        else:
            self._next_request_fragment(pdu, last)

    def _first_fragment(self, pdu: Request, last: bool) -> None:
        self._discard_call_id = None
        if self._partial is not None:
            # All fragments of call N come before call N+1 ([MS-RPCE] 3.3.1.5.8).
            partial = self._partial.first
            raise self._fatal(partial.call_id, FaultStatus.NCA_S_PROTO_ERROR,
                              f"call {pdu.call_id} started inside call {partial.call_id}",
                              p_cont_id=partial.p_cont_id, did_not_execute=False)
        context = self._contexts.get(pdu.p_cont_id)
        if context is None:
            self._queue_fault(pdu.call_id, FaultStatus.NCA_S_UNK_IF, pdu.p_cont_id,
                              did_not_execute=True)
            self._discard_call_id = None if last else pdu.call_id
            return
        if pdu.alloc_hint > self._max_call_size:
            raise self._fatal(pdu.call_id, FaultStatus.RPC_S_ACCESS_DENIED,
                              f"alloc_hint {pdu.alloc_hint} over the call size limit",
                              p_cont_id=pdu.p_cont_id, did_not_execute=False)
        if last:
            self._dispatch(pdu, context, pdu.stub_data)
            return
        self._partial = _PartialCall(first=pdu, context=context, chunks=[pdu.stub_data],
                                     size=len(pdu.stub_data))

    def _next_request_fragment(self, pdu: Request, last: bool) -> None:
        partial = self._partial
        if partial is None:
            if pdu.call_id == self._discard_call_id:  # rest of a call we already faulted
                if last:
                    self._discard_call_id = None
                return
            raise self._fatal(pdu.call_id, FaultStatus.NCA_S_PROTO_ERROR,
                              f"fragment of unknown call {pdu.call_id}")
        first = partial.first
        if pdu.call_id != first.call_id:
            raise self._fatal(first.call_id, FaultStatus.NCA_S_PROTO_ERROR,
                              f"fragment of call {pdu.call_id} inside call {first.call_id}",
                              p_cont_id=first.p_cont_id, did_not_execute=False)
        available = self._max_call_size - partial.size  # alloc_hint counts this fragment too
        if pdu.alloc_hint > available or len(pdu.stub_data) > available:
            raise self._fatal(first.call_id, FaultStatus.RPC_S_ACCESS_DENIED,
                              "request exceeds the call size limit",
                              p_cont_id=first.p_cont_id, did_not_execute=False)
        partial.size += len(pdu.stub_data)
        partial.chunks.append(pdu.stub_data)
        if last:
            self._partial = None
            self._dispatch(first, partial.context, b"".join(partial.chunks))

    def _dispatch(self, first: Request, context: BoundContext, stub: bytes) -> None:
        """Run the manager routine and queue its response or fault ([MS-RPCE] 3.3.3.4.1)."""
        assert self._group is not None
        stub, trailer = split_verification_trailer(stub)
        p_cont_id = context.p_cont_id
        call = CallContext(
            call_id=first.call_id, opnum=first.opnum, p_cont_id=p_cont_id,
            abstract_syntax=context.abstract_syntax, transfer_syntax=context.transfer_syntax,
            assoc_group=self._group, object=first.object, auth=first.auth,
            verification_trailer=trailer, transport=self._transport,
            auth_level=self._auth.auth_level, auth_type=self._auth.auth_type,
            identity=self._auth.identity,
            deferrer=lambda: PendingCall(first.call_id, first.opnum,
                                         lambda call, stub, status: self._finish(
                                             call, p_cont_id, stub, status)))
        try:
            if trailer is not None:
                _check_trailer(trailer, first, context)
            result = context.handler(first.opnum, stub, call)
            if isinstance(result, PendingCall):
                if not result.done:
                    self._pending[result.call_id] = result
                return
            if not isinstance(result, bytes | bytearray | memoryview):
                raise TypeError(f"handler returned {type(result).__name__}, not bytes")
            result = bytes(result)
        except RpcFault as fault:
            self._queue_fault(first.call_id, fault.status, context.p_cont_id, fault.did_not_execute)
            return
        except Exception:  # manager bugs become a fault, never a dropped connection
            _log.exception("DCE/RPC call %s opnum %d failed", context.abstract_syntax.if_uuid,
                           first.opnum)
            self._queue_fault(first.call_id, FaultStatus.NCA_S_FAULT_UNSPEC, context.p_cont_id)
            return
        self._queue_response(first.call_id, context.p_cont_id, result)

    def _finish(self, call: PendingCall, p_cont_id: int, stub: bytes | None,
                status: int) -> None:
        """A deferred call completed: queue its response or fault, tell the transport."""
        if self._state is ConnState.CLOSED:
            return
        self._pending.pop(call.call_id, None)
        if stub is None:
            self._queue_fault(call.call_id, status, p_cont_id)
        else:
            self._queue_response(call.call_id, p_cont_id, stub)
        if self._on_output is not None:
            self._on_output()

    def _queue_response(self, call_id: int, p_cont_id: int, stub: bytes) -> None:
        """Response PDUs no larger than max_xmit_frag ([C706] 12.6.4.10, [MS-RPCE] 2.2.2.6).

        With packet protection every fragment carries auth padding, a
        sec_trailer and a signature, and is signed (or sealed) in send order.
        """
        protect = self._auth.protects_packets
        overhead = SEC_TRAILER_SIZE + self._auth.signature_size if protect else 0
        chunk = self.max_xmit_frag - RESPONSE_HEADER_SIZE - overhead
        chunk -= chunk % AUTH_PAD_ALIGNMENT
        offset = 0
        while True:
            piece = stub[offset:offset + chunk]
            flags = PfcFlags.FIRST_FRAG if offset == 0 else PfcFlags(0)
            if offset + len(piece) >= len(stub):
                flags |= PfcFlags.LAST_FRAG
            verifier: AuthVerifier | None = None
            if protect:
                verifier = self._auth.response_verifier(len(piece))
            # Windows truncates p_cont_id to 8 bits in responses; Samba copies it.
            raw = Response(call_id=call_id, pfc_flags=flags, alloc_hint=len(stub) - offset,
                           p_cont_id=p_cont_id & 0xFF, stub_data=piece, auth=verifier).encode()
            if protect:
                try:
                    raw = self._auth.protect(raw, RESPONSE_HEADER_SIZE)
                except SecurityError as exc:
                    _log.warning("cannot protect the response to call %d: %s", call_id, exc)
                    self._queue_fault(call_id, exc.status, p_cont_id)
                    return
            self._outbox.append(raw)
            offset += len(piece)
            if flags & PfcFlags.LAST_FRAG:
                return

    def _leave_group(self) -> None:
        if self._group is not None:
            self._assoc_groups.leave(self._group)
            self._group = None


def _check_trailer(trailer: VerificationTrailer, first: Request, context: BoundContext) -> None:
    """Commands that must match what was negotiated ([MS-RPCE] 2.2.2.13.3, 2.2.2.13.4).

    A mismatch, or an unknown command flagged MUST_PROCESS, fails the call
    with status 5 (2.2.2.13).  BITMASK_1 only matters once header signing
    exists.
    """
    if trailer.unknown_must_process:
        raise RpcFault(FaultStatus.RPC_S_ACCESS_DENIED, "unknown MUST_PROCESS verification command")
    if trailer.pcontext is not None and trailer.pcontext != (context.abstract_syntax,
                                                            context.transfer_syntax):
        raise RpcFault(FaultStatus.RPC_S_ACCESS_DENIED, "verification trailer pcontext mismatch")
    header2 = trailer.header2
    if header2 is not None and (header2.ptype, header2.call_id, header2.p_cont_id,
                                header2.opnum) != (PType.REQUEST, first.call_id,
                                                   first.p_cont_id, first.opnum):
        raise RpcFault(FaultStatus.RPC_S_ACCESS_DENIED, "verification trailer header2 mismatch")
