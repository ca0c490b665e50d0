"""Declarative NDR 2.0 types: what an IDL file says, as Python objects ([C706] ch. 14).

An interface module describes each structure and each call's [in] / [out]
parameter list with these types, in IDL order (shared/STYLE.md rule 11);
``encode`` / ``decode`` walk the description.  Marshalling follows the
representation of [C706] 14.3 as Samba's generated code produces it:

* a constructed type writes all its scalars (including pointer referent
  ids) first, then the pointees of its embedded pointers in field order,
  each pointee complete (its own scalars, then its own pointees) before the
  next one ([C706] 14.3.12.3 "deferred" representation);
* top-level parameters are written one after the other, each with its
  pointees right behind it ([C706] 14.3.12.1 top-level pointers).

``push`` writes the scalars and returns a callable that writes the deferred
part (or None); ``pull`` reads the scalars and returns a callable that reads
the deferred part and yields the value.  Count fields (``CountOf``) are
computed on encode and checked against the array they count on decode.
"""

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from smbca.rpc.ndr._stream import NdrError, NdrReader, NdrWriter

Deferred = Callable[[], None] | None
Thunk = Callable[[], Any]


class NdrType(ABC):
    """One IDL type: its alignment, how to push a value and how to pull one."""

    alignment: int = 1

    @abstractmethod
    def push(self, w: NdrWriter, value: Any) -> Deferred:
        """Write the scalar part; return the writer of the deferred part, if any."""

    @abstractmethod
    def pull(self, r: NdrReader) -> Thunk:
        """Read the scalar part; return the reader of the deferred part."""


def _done(value: Any) -> Thunk:
    return lambda: value


class UInt(NdrType):
    """Unsigned integer of 1, 2 or 4 octets (byte, unsigned short, unsigned long)."""

    def __init__(self, size: int) -> None:
        if size not in (1, 2, 4):
            raise ValueError(f"no {size}-octet NDR integer")
        self.alignment = size
        self._size = size

    def push(self, w: NdrWriter, value: int) -> Deferred:
        value = int(value)
        if not 0 <= value < 1 << (8 * self._size):
            raise ValueError(f"{value} does not fit in {self._size} octets")
        (w.u8, w.u16, w.u32)[self._size // 2](value)
        return None

    def pull(self, r: NdrReader) -> Thunk:
        return _done((r.u8, r.u16, r.u32)[self._size // 2]())


U8 = UInt(1)
U16 = UInt(2)
U32 = UInt(4)


class FixedBytes(NdrType):
    """A fixed array of octets (``byte x[n]``), alignment 1 unless stated."""

    def __init__(self, size: int, alignment: int = 1) -> None:
        self._size = size
        self.alignment = alignment

    def push(self, w: NdrWriter, value: bytes) -> Deferred:
        if len(value) != self._size:
            raise ValueError(f"expected {self._size} octets, got {len(value)}")
        w.align(self.alignment)
        w.raw(bytes(value))
        return None

    def pull(self, r: NdrReader) -> Thunk:
        r.align(self.alignment)
        return _done(r.raw(self._size))


class IPv4(NdrType):
    """An IPv4 address carried as a ULONG whose octets are in network order.

    Samba's IDL marks the field ``[flag(NDR_BIG_ENDIAN)] ipv4address``; the
    spec calls it ULONG.  ``None`` is sent as 0.0.0.0.
    """

    alignment = 4

    def push(self, w: NdrWriter, value: ipaddress.IPv4Address | None) -> Deferred:
        w.align(4)
        w.raw(value.packed if value is not None else bytes(4))
        return None

    def pull(self, r: NdrReader) -> Thunk:
        r.align(4)
        return _done(ipaddress.IPv4Address(r.raw(4)))


class IPv6(NdrType):
    """An IPv6 address carried as USHORT[8] in network order (Samba: NDR_BIG_ENDIAN)."""

    alignment = 2

    def push(self, w: NdrWriter, value: ipaddress.IPv6Address | None) -> Deferred:
        w.align(2)
        w.raw(value.packed if value is not None else bytes(16))
        return None

    def pull(self, r: NdrReader) -> Thunk:
        r.align(2)
        return _done(ipaddress.IPv6Address(r.raw(16)))


class FixedWideString(NdrType):
    """``WCHAR name[n]``: a fixed array, NUL-terminated inside, zero-filled after."""

    alignment = 2

    def __init__(self, chars: int) -> None:
        self._chars = chars

    def push(self, w: NdrWriter, value: str) -> Deferred:
        data = value.encode("utf-16-le")
        if len(data) >= 2 * self._chars:
            raise ValueError(f"{value!r} does not fit in WCHAR[{self._chars}]")
        w.align(2)
        w.raw(data + bytes(2 * self._chars - len(data)))
        return None

    def pull(self, r: NdrReader) -> Thunk:
        r.align(2)
        return _done(_utf16_to_nul(r.raw(2 * self._chars)))


def _utf16_to_nul(data: bytes) -> str:
    """Text up to the first NUL code unit (or all of it)."""
    for at in range(0, len(data) - 1, 2):
        if data[at] == 0 and data[at + 1] == 0:
            data = data[:at]
            break
    try:
        return data.decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise NdrError(f"invalid UTF-16 string: {exc}") from None


@dataclass(frozen=True, slots=True)
class ContextHandle:
    """``[context_handle] void*`` on the wire ([C706] 14.3.13 ndr_context_handle).

    20 octets: ``attributes`` (0 for a live handle) and a UUID in the
    little-endian GUID layout.  The NULL handle is all zeros.
    """

    attributes: int = 0
    uuid: UUID = UUID(int=0)

    @property
    def is_null(self) -> bool:
        return self.attributes == 0 and self.uuid.int == 0


NULL_HANDLE = ContextHandle()


class ContextHandleType(NdrType):
    alignment = 4

    def push(self, w: NdrWriter, value: ContextHandle) -> Deferred:
        w.u32(value.attributes)
        w.raw(value.uuid.bytes_le)
        return None

    def pull(self, r: NdrReader) -> Thunk:
        attributes = r.u32()
        return _done(ContextHandle(attributes, UUID(bytes_le=r.raw(16))))


CONTEXT_HANDLE = ContextHandleType()


class WideString(NdrType):
    """``[string] wchar_t*`` pointee: conformant varying UTF-16 string ([C706] 14.3.4).

    max_count, offset (0), actual_count (code units including the NUL),
    then the code units.  Decoding stops at the first NUL; a missing NUL is
    tolerated.
    """

    alignment = 4

    def push(self, w: NdrWriter, value: str) -> Deferred:
        data = value.encode("utf-16-le") + b"\x00\x00"
        count = len(data) // 2
        w.u32(count)
        w.u32(0)
        w.u32(count)
        w.raw(data)
        return None

    def pull(self, r: NdrReader) -> Thunk:
        max_count, offset, actual = r.u32(), r.u32(), r.u32()
        if offset != 0 or actual > max_count:
            raise NdrError(f"bad string counts max={max_count} offset={offset} actual={actual}")
        return _done(_utf16_to_nul(r.raw(2 * actual)))


WSTRING = WideString()


class Unique(NdrType):
    """``[unique]`` (or ``[ptr]``) pointer: a referent id, 0 for NULL; pointee deferred."""

    alignment = 4

    def __init__(self, target: NdrType) -> None:
        self.target = target

    def push(self, w: NdrWriter, value: Any) -> Deferred:
        if value is None:
            w.u32(0)
            return None
        w.u32(w.referent())

        def pointee() -> None:
            deferred = self.target.push(w, value)
            if deferred is not None:
                deferred()
        return pointee

    def pull(self, r: NdrReader) -> Thunk:
        if r.u32() == 0:
            return _done(None)

        def pointee() -> Any:
            return self.target.pull(r)()
        return pointee


class ConformantArray(NdrType):
    """``[size_is(n)] T x[]`` as a pointee: max_count, then n elements ([C706] 14.3.3.2).

    Octet arrays are returned as ``bytes``, others as tuples.
    """

    def __init__(self, element: NdrType) -> None:
        self.element = element
        self.alignment = max(4, element.alignment)

    def push(self, w: NdrWriter, value: Sequence[Any]) -> Deferred:
        w.u32(len(value))
        if self.element is U8:
            w.raw(bytes(value))
            return None
        deferred = [self.element.push(w, item) for item in value]
        return _run_all(deferred)

    def pull(self, r: NdrReader) -> Thunk:
        count = r.u32()
        if self.element is U8:
            return _done(r.raw(count))
        if count * max(1, self.element.alignment) > r.remaining:
            raise NdrError(f"array of {count} elements exceeds the stub")
        thunks = [self.element.pull(r) for _ in range(count)]
        return lambda: tuple(thunk() for thunk in thunks)


def _run_all(deferred: Sequence[Deferred]) -> Deferred:
    pending = [d for d in deferred if d is not None]
    if not pending:
        return None

    def run() -> None:
        for d in pending:
            d()
    return run


class CountOf(NdrType):
    """A ULONG count field (``NumberOfX``, ``Length``) computed from an array field.

    Encoding writes ``len`` of the named field (0 for NULL); decoding checks
    that the array pulled for that field has exactly this many elements.
    """

    alignment = 4

    def __init__(self, field: str) -> None:
        self.field = field

    def push(self, w: NdrWriter, value: int) -> Deferred:
        w.u32(value)
        return None

    def pull(self, r: NdrReader) -> Thunk:
        return _done(r.u32())


Field = tuple[str, NdrType]


class _Record(NdrType):
    """Shared machinery of Struct and Params: named fields mapped onto a dataclass."""

    def __init__(self, cls: type, fields: Sequence[Field]) -> None:
        self.cls = cls
        self.fields = tuple(fields)
        names = {name for name, _ in self.fields}
        for name, kind in self.fields:
            if isinstance(kind, CountOf) and kind.field not in names:
                raise ValueError(f"{cls.__name__}.{name} counts unknown field {kind.field}")
        self.alignment = max((kind.alignment for _, kind in self.fields), default=1)

    def _values(self, value: Any) -> list[tuple[NdrType, Any]]:
        out = []
        for name, kind in self.fields:
            if isinstance(kind, CountOf):
                counted = getattr(value, kind.field)
                out.append((kind, 0 if counted is None else len(counted)))
            else:
                out.append((kind, getattr(value, name)))
        return out

    def _build(self, pulled: dict[str, Any]) -> Any:
        kwargs = {}
        for name, kind in self.fields:
            if isinstance(kind, CountOf):
                counted = pulled[kind.field]
                if (0 if counted is None else len(counted)) != pulled[name]:
                    raise NdrError(f"{self.cls.__name__}.{name} = {pulled[name]} does not "
                                   f"match the {kind.field} array")
            else:
                kwargs[name] = pulled[name]
        return self.cls(**kwargs)


class Struct(_Record):
    """An IDL ``struct``: scalars of all fields, then their pointees ([C706] 14.3.12.3)."""

    def push(self, w: NdrWriter, value: Any) -> Deferred:
        w.align(self.alignment)
        return _run_all([kind.push(w, item) for kind, item in self._values(value)])

    def pull(self, r: NdrReader) -> Thunk:
        r.align(self.alignment)
        thunks = [(name, kind.pull(r)) for name, kind in self.fields]
        return lambda: self._build({name: thunk() for name, thunk in thunks})


class Params(_Record):
    """The [in] or [out] parameter list of one call: each parameter with its pointees."""

    def push(self, w: NdrWriter, value: Any) -> Deferred:
        for kind, item in self._values(value):
            deferred = kind.push(w, item)
            if deferred is not None:
                deferred()
        return None

    def pull(self, r: NdrReader) -> Thunk:
        pulled = {name: kind.pull(r)() for name, kind in self.fields}
        return _done(self._build(pulled))


def encode(kind: NdrType, value: Any) -> bytes:
    """NDR 2.0 octets of ``value``, starting at offset 0 of a stub."""
    w = NdrWriter()
    deferred = kind.push(w, value)
    if deferred is not None:
        deferred()
    return w.getvalue()


def decode(kind: NdrType, data: bytes) -> Any:
    """Value of ``kind`` at the start of ``data``; trailing octets are ignored.

    Request stubs may end in padding or a verification trailer the
    connection did not strip ([MS-RPCE] 2.2.2.13), so they are not errors.
    """
    try:
        return kind.pull(NdrReader(data))()
    except (ValueError, TypeError) as exc:  # ipaddress, dataclass validation
        if isinstance(exc, NdrError):
            raise
        raise NdrError(str(exc)) from exc
