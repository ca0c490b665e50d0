"""Context handles of one pipe open ([MS-RPCE] 2.2.1.1.9 ndr_context_handle, [C706] 14.3.10.2).

The LSA and SAMR interfaces hand out policy, server and domain handles.
Each pipe open owns one ``ContextHandles`` that both interfaces share, so a
handle is valid only on the pipe that made it and dies with it (SMB2 CLOSE
of the pipe drops the table).  A handle is 20 bytes: attributes (0) and a
UUID; ours number the handles of the pipe after a random serial of the
pipe, so a handle from one pipe names nothing on another.

A handle the pipe does not know (never made, closed, another pipe's) fails
the call with the fault nca_s_fault_context_mismatch before any manager
routine runs ([MS-RPCE] 3.3.1.4.1; what Windows and Samba send, and
smbtorture's rpc.lsa.lookupnames checks); a known handle of another kind (a
SAMR domain handle passed as a server handle) is STATUS_INVALID_HANDLE.
A pipe holds at most ``MAX_HANDLES`` at a time so a client cannot grow the
table without bound.
"""

import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smbca.rpc.dcerpc import FaultStatus, RpcFault
from smbcad.proto.status import NtStatus

HANDLE_SIZE = 20
NULL_HANDLE = bytes(HANDLE_SIZE)
MAX_HANDLES = 256
_HANDLE = struct.Struct("<I4sQI")  # attributes, tag, pipe serial, counter


class HandleError(Exception):
    """The call fails with ``status`` in its return value (not a fault)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or f"NTSTATUS 0x{status:08X}")
        self.status = status


@dataclass(slots=True)
class HandleEntry:
    """What a handle stands for: its kind (b"lsap", b"samS", b"samD"), rights and object."""

    kind: bytes
    granted: int
    target: Any = None


class ContextHandles:
    """The open context handles of one pipe."""

    def __init__(self, pipe_serial: int | None = None, limit: int = MAX_HANDLES) -> None:
        serial = secrets.randbits(64) if pipe_serial is None else pipe_serial
        self._serial = serial & 0xFFFFFFFFFFFFFFFF
        self._limit = limit
        self._next = 1
        self._open: dict[bytes, HandleEntry] = {}

    def __len__(self) -> int:
        return len(self._open)

    def create(self, kind: bytes, granted: int, target: Any = None) -> bytes:
        if len(self._open) >= self._limit:
            raise HandleError(NtStatus.INSUFFICIENT_RESOURCES, "too many open handles")
        handle = _HANDLE.pack(0, kind, self._serial, self._next)
        self._next = (self._next + 1) & 0xFFFFFFFF or 1
        self._open[handle] = HandleEntry(kind, granted, target)
        return handle

    def get(self, handle: bytes, *kinds: bytes) -> HandleEntry:
        """The entry of ``handle``, which must be of one of ``kinds``."""
        entry = self._open.get(bytes(handle))
        if entry is None:
            raise RpcFault(FaultStatus.NCA_S_FAULT_CONTEXT_MISMATCH, "unknown context handle",
                           did_not_execute=True)
        if entry.kind not in kinds:
            raise HandleError(NtStatus.INVALID_HANDLE, "context handle of another kind")
        return entry

    def close(self, handle: bytes, *kinds: bytes) -> None:
        self.get(handle, *kinds)
        del self._open[bytes(handle)]

    def clear(self) -> None:
        self._open.clear()


def fill_open(response: Any, field: str, make: Callable[[], bytes]) -> None:
    """[out] handle and status of an open call: ``make()``'s new handle, or a NULL
    handle and the status of the ``HandleError`` it raised."""
    try:
        response[field] = make()
        response["ErrorCode"] = NtStatus.SUCCESS
    except HandleError as error:
        response[field] = NULL_HANDLE
        response["ErrorCode"] = error.status


def fill_close(response: Any, field: str, handles: ContextHandles, handle: bytes,
               *kinds: bytes) -> None:
    """[out] handle and status of a close call: zeroed once closed, echoed on failure."""
    try:
        handles.close(handle, *kinds)
        response[field] = NULL_HANDLE
        response["ErrorCode"] = NtStatus.SUCCESS
    except HandleError as error:
        response[field] = handle
        response["ErrorCode"] = error.status


def require(entry: HandleEntry, rights: int) -> None:
    """STATUS_ACCESS_DENIED unless the handle was opened with all of ``rights``."""
    if entry.granted & rights != rights:
        raise HandleError(NtStatus.ACCESS_DENIED, f"handle lacks 0x{rights:08x}")


def grant(desired: int, generic: tuple[int, int, int, int], allowed: int) -> int:
    """Rights for an open asking ``desired`` of an object whose users may have ``allowed``.

    ``generic`` maps GENERIC_READ, _WRITE, _EXECUTE, _ALL ([MS-DTYP] 2.4.3);
    MAXIMUM_ALLOWED asks for all of ``allowed``.  Asking for more raises
    STATUS_ACCESS_DENIED, as an access check of the object's descriptor would.
    """
    read, write, execute, everything = generic
    # ACCESS_SYSTEM_SECURITY (0x01000000; no SACLs here) is ignored, as Samba does.
    wanted = desired & 0x00FFFFFF
    for bit, rights in ((0x80000000, read), (0x40000000, write), (0x20000000, execute),
                        (0x10000000, everything)):
        if desired & bit:
            wanted |= rights
    if wanted & ~allowed:
        raise HandleError(NtStatus.ACCESS_DENIED, f"0x{wanted & ~allowed:08x} not granted")
    if desired & 0x02000000:
        wanted |= allowed
    return wanted
