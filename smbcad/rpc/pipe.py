"""Named pipes on IPC$: the SMB end of ncacn_np ([MS-RPCE] 2.1.1.2).

One ``NamedPipe`` per SMB2 CREATE of a pipe name.  It owns the
``RpcConnection`` of that open and behaves as a full-duplex message-mode
pipe ([MS-FSCC] 2.4.37): every PDU the RPC server produces is one message,
and a read returns at most the rest of the oldest message.  The SMB layer
maps the results as [MS-SMB2] asks:

* WRITE (3.3.5.13) -> ``write(data)``; the count is always all of ``data``.
* READ (3.3.5.12) -> ``read(max_len)``; ``more`` (``status`` is
  STATUS_BUFFER_OVERFLOW) means part of a message is still unread.  On an
  empty pipe the READ waits (``read_when_ready``): the pipe is a blocking one,
  and a pipelining client (Samba's dcerpc over SMB2) reads before it writes.
* IOCTL FSCTL_PIPE_TRANSCEIVE (3.3.5.15.2) -> ``transceive(data, max_out)``.
* IOCTL FSCTL_PIPE_PEEK (3.3.5.15.1) -> ``peek(max_out)``.
* QUERY_INFO FilePipeLocalInformation -> ``local_information()``.
* CLOSE -> ``close()``.

Failures raise ``SmbError`` with the pipe status ([MS-FSCC] 2.3.46, 2.3.48).
"""

import logging
import struct
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from smbca.rpc.dcerpc import AssociationGroups, ProtocolError, RpcConnection, interface_table
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.rpc.directory import Directory
from smbcad.rpc.handles import ContextHandles
from smbcad.rpc.lsarpc import lsarpc_interface
from smbcad.rpc.samr import samr_interface
from smbcad.rpc.srvsvc import ServerConfig, ShareProvider, srvsvc_interface

_log = logging.getLogger(__name__)

FSCTL_PIPE_PEEK = 0x0011400C
FSCTL_PIPE_TRANSCEIVE = 0x0011C017

# [MS-FSCC] 2.4.37, 2.4.38, 2.3.46 field values
FILE_PIPE_MESSAGE_TYPE = 0x00000001
FILE_PIPE_FULL_DUPLEX = 0x00000002
FILE_PIPE_CONNECTED_STATE = 0x00000003
FILE_PIPE_CLOSING_STATE = 0x00000004
FILE_PIPE_CLIENT_END = 0x00000000
PIPE_UNLIMITED_INSTANCES = 0xFFFFFFFF
PIPE_QUOTA_BYTES = 0x10000
"""Inbound and outbound quota we report; unread output beyond this refuses writes."""

_PEEK_HEAD = struct.Struct("<IIII")
_LOCAL_INFO = struct.Struct("<10I")


class PipeRead(NamedTuple):
    """Result of a pipe read: ``more`` means the message continues past ``data``."""

    data: bytes
    more: bool

    @property
    def status(self) -> int:
        return NtStatus.BUFFER_OVERFLOW if self.more else NtStatus.SUCCESS


class PipeTransceive(NamedTuple):
    """FSCTL_PIPE_TRANSCEIVE output and its status (SUCCESS or BUFFER_OVERFLOW)."""

    data: bytes
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PipePeek:
    """FSCTL_PIPE_PEEK reply ([MS-FSCC] 2.3.46)."""

    named_pipe_state: int
    read_data_available: int
    number_of_messages: int
    message_length: int
    data: bytes

    @property
    def status(self) -> int:
        """BUFFER_OVERFLOW when ``data`` is only the start of the first message."""
        truncated = len(self.data) < self.message_length
        return NtStatus.BUFFER_OVERFLOW if truncated else NtStatus.SUCCESS

    def encode(self) -> bytes:
        return _PEEK_HEAD.pack(self.named_pipe_state, self.read_data_available,
                               self.number_of_messages, self.message_length) + self.data


@dataclass(frozen=True, slots=True, kw_only=True)
class FilePipeLocalInformation:
    """FILE_PIPE_LOCAL_INFORMATION ([MS-FSCC] 2.4.38), as seen from the client's handle."""

    named_pipe_type: int = FILE_PIPE_MESSAGE_TYPE
    named_pipe_configuration: int = FILE_PIPE_FULL_DUPLEX
    maximum_instances: int = PIPE_UNLIMITED_INSTANCES
    current_instances: int = 1
    inbound_quota: int = PIPE_QUOTA_BYTES
    read_data_available: int = 0
    outbound_quota: int = PIPE_QUOTA_BYTES
    write_quota_available: int = PIPE_QUOTA_BYTES
    named_pipe_state: int = FILE_PIPE_CONNECTED_STATE
    named_pipe_end: int = FILE_PIPE_CLIENT_END

    def encode(self) -> bytes:
        return _LOCAL_INFO.pack(
            self.named_pipe_type, self.named_pipe_configuration, self.maximum_instances,
            self.current_instances, self.inbound_quota, self.read_data_available,
            self.outbound_quota, self.write_quota_available, self.named_pipe_state,
            self.named_pipe_end)


ReadDone = Callable[[PipeRead | int], None]
"""Ends a waiting READ: with the read, or with the status that fails it."""


class _WaitingRead(NamedTuple):
    max_len: int
    done: ReadDone


class NamedPipe:
    """The server end of one pipe open, carrying one DCE/RPC connection."""

    def __init__(self, name: str, connection: RpcConnection) -> None:
        self.name = name
        self._rpc = connection
        self._messages: deque[bytes] = deque()
        self._offset = 0  # bytes of _messages[0] already read
        self._broken = False
        self._closed = False
        self._waiting: deque[_WaitingRead] = deque()   # READs on an empty pipe, oldest first

    @property
    def readable_bytes(self) -> int:
        """Bytes the client can still read (ReadDataAvailable)."""
        return sum(len(message) for message in self._messages) - self._offset

    @property
    def broken(self) -> bool:
        """The RPC server dropped the connection; only queued output remains."""
        return self._broken

    @property
    def connection(self) -> RpcConnection:
        return self._rpc

    def _check_open(self) -> None:
        if self._closed:
            raise SmbError(NtStatus.FILE_CLOSED)

    def write(self, data: bytes) -> int:
        """Hand ``data`` to the RPC server; its answers become readable messages."""
        self._check_open()
        if self._broken:
            raise SmbError(NtStatus.PIPE_BROKEN)
        if self.readable_bytes > PIPE_QUOTA_BYTES:
            raise SmbError(NtStatus.INSUFFICIENT_RESOURCES, "client does not read its pipe")
        try:
            self._rpc.receive_data(bytes(data))
        except ProtocolError as exc:
            # The fault or bind_nak is queued; the pipe breaks once it is read.
            _log.info("pipe %s: DCE/RPC protocol error: %s", self.name, exc)
            self._broken = True
        self._messages.extend(self._rpc.pdus_to_send())
        self._serve_waiting()
        return len(data)

    @property
    def would_wait(self) -> bool:
        """A READ now would wait: nothing to read, and the pipe is open and whole."""
        return not self._messages and not self._broken and not self._closed

    def read_when_ready(self, max_len: int, done: ReadDone) -> Callable[[], bool]:
        """A READ on an empty pipe waits, as on a blocking pipe ([MS-FSCC]
        2.4.37; [MS-SMB2] 3.3.5.12: the server goes async, 3.3.4.2): ``done``
        gets the read once the RPC server answers a later WRITE, in the order
        the READs came, or STATUS_PIPE_BROKEN when the pipe closes or breaks.
        Returns the withdrawal (a CANCEL): True if the READ was still waiting."""
        waiting = _WaitingRead(max_len, done)
        self._waiting.append(waiting)
        self._serve_waiting()

        def withdraw() -> bool:
            try:
                self._waiting.remove(waiting)
            except ValueError:
                return False
            return True
        return withdraw

    def _serve_waiting(self) -> None:
        while self._waiting and self._messages:
            waiting = self._waiting.popleft()
            waiting.done(self.read(waiting.max_len))
        if self._waiting and (self._broken or self._closed):
            self._end_waiting(NtStatus.PIPE_BROKEN)

    def _end_waiting(self, status: int) -> None:
        while self._waiting:
            self._waiting.popleft().done(status)

    def read(self, max_len: int) -> PipeRead:
        """Up to ``max_len`` bytes of the oldest message.

        An empty pipe raises STATUS_PIPE_EMPTY (an SMB READ waits instead,
        ``read_when_ready``), or STATUS_PIPE_BROKEN once the RPC connection
        is gone.
        """
        self._check_open()
        if not self._messages:
            raise SmbError(NtStatus.PIPE_BROKEN if self._broken else NtStatus.PIPE_EMPTY)
        head = self._messages[0]
        data = head[self._offset:self._offset + max(0, max_len)]
        self._offset += len(data)
        if self._offset < len(head):
            return PipeRead(data, True)
        self._messages.popleft()
        self._offset = 0
        return PipeRead(data, False)

    def transceive(self, data: bytes, max_out: int) -> PipeTransceive:
        """FSCTL_PIPE_TRANSCEIVE: write ``data``, read the first answer ([MS-FSCC] 2.3.48)."""
        self._check_open()
        if self._messages or self._waiting:
            # A waiting READ would take the answer ([MS-FSCC] 2.3.48: busy).
            raise SmbError(NtStatus.PIPE_BUSY, "pipe holds unread data or a waiting READ")
        self.write(data)
        result = self.read(max_out)
        return PipeTransceive(result.data, result.status)

    def peek(self, max_len: int) -> PipePeek:
        """FSCTL_PIPE_PEEK: look at the oldest message without consuming it ([MS-FSCC] 2.3.46)."""
        self._check_open()
        head = self._messages[0][self._offset:] if self._messages else b""
        state = FILE_PIPE_CLOSING_STATE if self._broken else FILE_PIPE_CONNECTED_STATE
        return PipePeek(named_pipe_state=state, read_data_available=self.readable_bytes,
                        number_of_messages=len(self._messages), message_length=len(head),
                        data=head[:max(0, max_len)])

    def local_information(self) -> FilePipeLocalInformation:
        """QUERY_INFO FilePipeLocalInformation ([MS-FSCC] 2.4.38)."""
        state = FILE_PIPE_CLOSING_STATE if self._broken else FILE_PIPE_CONNECTED_STATE
        return FilePipeLocalInformation(
            read_data_available=self.readable_bytes, named_pipe_state=state,
            write_quota_available=max(0, PIPE_QUOTA_BYTES - self.readable_bytes))

    def close(self) -> None:
        """SMB2 CLOSE: tear the RPC connection down (leaves its association
        group); a READ still waiting ends with STATUS_PIPE_BROKEN, as a blocked
        read of a Windows pipe does when its handle closes."""
        if not self._closed:
            self._closed = True
            self._messages.clear()
            self._end_waiting(NtStatus.PIPE_BROKEN)
            self._rpc.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class PipeEnvironment:
    """What pipe factories need from the server, injected once (never a global)."""

    shares: ShareProvider
    server: ServerConfig
    assoc_groups: AssociationGroups
    max_recv_frag: int = 4280
    # DCE/RPC auth on the pipe (clients may sign/seal inside SMB, e.g. smbtorture).
    security: Any = None
    # Name and SID lookups (lsarpc, samr); without one those pipes do not exist.
    directory: Directory | None = None


PipeFactory = Callable[[PipeEnvironment, Any], NamedPipe]
"""Builds the pipe for one open; the second argument is the opener's identity (SMB session)."""


def _srvsvc_pipe(env: PipeEnvironment, transport: Any) -> NamedPipe:
    interfaces = interface_table(srvsvc_interface(env.shares, env.server))
    connection = RpcConnection(interfaces, env.assoc_groups, max_recv_frag=env.max_recv_frag,
                               secondary_address="\\PIPE\\srvsvc", transport=transport,
                               security=env.security)
    return NamedPipe("srvsvc", connection)


def _lsass_pipe(env: PipeEnvironment, transport: Any, name: str) -> NamedPipe:
    """lsarpc, samr and lsass are one endpoint on Windows (lsass.exe serves all
    three names), so each carries both interfaces; the context handles belong
    to this open and go with it."""
    if env.directory is None:
        raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, f"no pipe named {name!r}")
    handles = ContextHandles()
    directory = env.directory
    interfaces = interface_table(
        lsarpc_interface(directory.names, directory.policy, handles),
        samr_interface(directory.sam, handles))
    connection = RpcConnection(interfaces, env.assoc_groups, max_recv_frag=env.max_recv_frag,
                               secondary_address=f"\\PIPE\\{name}", transport=transport,
                               security=env.security)
    return NamedPipe(name, connection)


def _lsarpc_pipe(env: PipeEnvironment, transport: Any) -> NamedPipe:
    return _lsass_pipe(env, transport, "lsarpc")


def _samr_pipe(env: PipeEnvironment, transport: Any) -> NamedPipe:
    return _lsass_pipe(env, transport, "samr")


def _lsass_alias_pipe(env: PipeEnvironment, transport: Any) -> NamedPipe:
    return _lsass_pipe(env, transport, "lsass")


PIPE_NAMES: Mapping[str, PipeFactory] = MappingProxyType({
    "srvsvc": _srvsvc_pipe, "lsarpc": _lsarpc_pipe, "samr": _samr_pipe,
    "lsass": _lsass_alias_pipe})
"""Pipe names served on IPC$ (lower case, without the ``\\PIPE\\`` prefix)."""


def pipe_key(name: str) -> str:
    """``srvsvc``, ``\\srvsvc`` and ``\\PIPE\\srvsvc`` all name the same pipe, in any case."""
    key = name.lstrip("\\").casefold()
    return key.removeprefix("pipe\\")


def open_pipe(name: str, env: PipeEnvironment, transport: Any = None) -> NamedPipe:
    """SMB2 CREATE of a pipe on IPC$; unknown names fail STATUS_OBJECT_NAME_NOT_FOUND."""
    factory = PIPE_NAMES.get(pipe_key(name))
    if factory is None:
        raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, f"no pipe named {name!r}")
    return factory(env, transport)
