"""MS-SWN data types: constants, NDR structures and notification messages ([MS-SWN] 2.2).

The NDR structures are declared field by field in IDL order with
``smbca.rpc.ndr`` types ([MS-SWN] 6 IDL; Samba ``librpc/idl/witness.idl``).
The contents of ``RESP_ASYNC_NOTIFY.MessageBuffer`` are *not* NDR: RESOURCE_CHANGE
and IPADDR_INFO_LIST are raw little-endian structures packed back to back with
no alignment ([MS-SWN] 2.2.2 preamble, 2.2.2.1-2.2.2.3).  The IDL cannot express
them (the buffer is a ``PBYTE``), so their codec is hand-written below, as
Samba's is in ``librpc/ndr/ndr_witness.c``.

Wire facts that are easy to get wrong, all pinned by tests: addresses are in
network byte order everywhere (Samba commit f2fcbf24576); ``Length`` of
RESOURCE_CHANGE / IPADDR_INFO_LIST counts the whole structure including
itself; ``InterfaceGroupName`` is a fixed WCHAR[260].
"""

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar

from smbca.rpc.ndr import (
    U8,
    U16,
    U32,
    ConformantArray,
    CountOf,
    FixedWideString,
    IPv4,
    IPv6,
    NdrError,
    Struct,
    Unique,
)

WITNESS_UUID = "ccd8c074-d0e5-4a40-92b4-d074faa6ba28"
"""Interface UUID ([MS-SWN] 1.9); version 1.1 ([MS-SWN] 6)."""

WITNESS_V1 = 0x00010001
WITNESS_V2 = 0x00020000
WITNESS_UNSPECIFIED_VERSION = 0xFFFFFFFF
"""Witness protocol versions ([MS-SWN] 1.7; the last is Samba's name)."""

INTERFACE_GROUP_NAME_CHARS = 260
NULL_IPV4 = ipaddress.IPv4Address(0)
NULL_IPV6 = ipaddress.IPv6Address(0)


class Win32Error(IntEnum):
    """DWORD results of the witness calls ([MS-ERREF] 2.2, [MS-SWN] 3.1.4)."""

    SUCCESS = 0x00000000
    ACCESS_DENIED = 0x00000005
    OUTOFMEMORY = 0x0000000E
    INVALID_PARAMETER = 0x00000057
    NO_MORE_ITEMS = 0x00000103
    NOT_FOUND = 0x00000490
    NOT_AUTHENTICATED = 0x000004DC
    REVISION_MISMATCH = 0x0000051A
    NO_SYSTEM_RESOURCES = 0x000005AA
    TIMEOUT = 0x000005B4
    INVALID_STATE = 0x0000139F


class InterfaceState(IntEnum):
    """WITNESS_INTERFACE_INFO.State, a USHORT ([MS-SWN] 2.2.2.5)."""

    UNKNOWN = 0x0000
    AVAILABLE = 0x0001
    UNAVAILABLE = 0x00FF


class InterfaceFlags(IntFlag):
    """WITNESS_INTERFACE_INFO.Flags ([MS-SWN] 2.2.2.5)."""

    IPV4 = 0x00000001
    IPV6 = 0x00000002
    INTERFACE_WITNESS = 0x00000004


class MessageType(IntEnum):
    """RESP_ASYNC_NOTIFY.MessageType ([MS-SWN] 2.2.2.4); 3 and 4 are V2 only."""

    RESOURCE_CHANGE = 1
    CLIENT_MOVE = 2
    SHARE_MOVE = 3
    IP_CHANGE = 4


class ResourceState(IntEnum):
    """RESOURCE_CHANGE.ChangeType, 4 octets ([MS-SWN] 2.2.2.3)."""

    UNKNOWN = 0x00000000
    AVAILABLE = 0x00000001
    UNAVAILABLE = 0x000000FF


class IpAddrFlags(IntFlag):
    """IPADDR_INFO.Flags ([MS-SWN] 2.2.2.1); undefined bits may be set by Windows (note <1>)."""

    V4 = 0x00000001
    V6 = 0x00000002
    ONLINE = 0x00000008
    OFFLINE = 0x00000010


class RegisterFlags(IntFlag):
    """WitnessrRegisterEx Flags ([MS-SWN] 3.1.4.5)."""

    NONE = 0x00000000
    IP_NOTIFICATION = 0x00000001


# -- NDR structures ([MS-SWN] 2.2.2.4-2.2.2.6) --------------------------------------


@dataclass(frozen=True, slots=True)
class WitnessInterfaceInfo:
    """WITNESS_INTERFACE_INFO ([MS-SWN] 2.2.2.5): 552 octets, 4-aligned."""

    interface_group_name: str
    version: int
    state: int
    ipv4: ipaddress.IPv4Address = NULL_IPV4
    ipv6: ipaddress.IPv6Address = NULL_IPV6
    flags: int = 0

    NDR: ClassVar[Struct]


WitnessInterfaceInfo.NDR = Struct(WitnessInterfaceInfo, (
    ("interface_group_name", FixedWideString(INTERFACE_GROUP_NAME_CHARS)),
    ("version", U32),
    ("state", U16),
    ("ipv4", IPv4()),
    ("ipv6", IPv6()),
    ("flags", U32),
))


@dataclass(frozen=True, slots=True)
class WitnessInterfaceList:
    """WITNESS_INTERFACE_LIST ([MS-SWN] 2.2.2.6); NumberOfInterfaces is computed."""

    interface_info: tuple[WitnessInterfaceInfo, ...] | None = ()

    NDR: ClassVar[Struct]


WitnessInterfaceList.NDR = Struct(WitnessInterfaceList, (
    ("number_of_interfaces", CountOf("interface_info")),
    ("interface_info", Unique(ConformantArray(WitnessInterfaceInfo.NDR))),
))


@dataclass(frozen=True, slots=True)
class RespAsyncNotify:
    """RESP_ASYNC_NOTIFY ([MS-SWN] 2.2.2.4); Length is the MessageBuffer size, computed.

    ``message_buffer`` holds the packed messages; ``build_notify`` and
    ``parse_messages`` convert from and to message objects.
    """

    message_type: int
    number_of_messages: int
    message_buffer: bytes | None

    NDR: ClassVar[Struct]


RespAsyncNotify.NDR = Struct(RespAsyncNotify, (
    ("message_type", U32),
    ("length", CountOf("message_buffer")),
    ("number_of_messages", U32),
    ("message_buffer", Unique(ConformantArray(U8))),
))


# -- MessageBuffer contents: hand-written, not NDR ([MS-SWN] 2.2.2.1-2.2.2.3) -------

_RESOURCE_HEAD = struct.Struct("<II")  # Length, ChangeType
_LIST_HEAD = struct.Struct("<III")  # Length, Reserved, IPAddrInstances
_IPADDR_FLAGS = struct.Struct("<I")
IPADDR_INFO_SIZE = 24


@dataclass(frozen=True, slots=True)
class ResourceChange:
    """RESOURCE_CHANGE ([MS-SWN] 2.2.2.3): Length | ChangeType | ResourceName with NUL.

    Length counts the whole structure: 8 + 2 * (characters + 1).
    """

    change_type: int
    resource_name: str

    def encode(self) -> bytes:
        name = self.resource_name.encode("utf-16-le") + b"\x00\x00"
        return _RESOURCE_HEAD.pack(_RESOURCE_HEAD.size + len(name), self.change_type) + name

    @classmethod
    def decode_from(cls, data: bytes, offset: int) -> tuple["ResourceChange", int]:
        if offset + _RESOURCE_HEAD.size > len(data):
            raise NdrError("RESOURCE_CHANGE header truncated")
        length, change_type = _RESOURCE_HEAD.unpack_from(data, offset)
        end = offset + length
        if length < _RESOURCE_HEAD.size or end > len(data) or (length - _RESOURCE_HEAD.size) % 2:
            raise NdrError(f"RESOURCE_CHANGE Length {length} is inconsistent")
        raw = data[offset + _RESOURCE_HEAD.size:end]
        nul = next((i for i in range(0, len(raw) - 1, 2) if raw[i:i + 2] == b"\x00\x00"),
                   len(raw))
        try:
            name = raw[:nul].decode("utf-16-le")
        except UnicodeDecodeError as exc:
            raise NdrError(f"RESOURCE_CHANGE name: {exc}") from None
        return cls(change_type, name), end


@dataclass(frozen=True, slots=True)
class IpAddrInfo:
    """IPADDR_INFO ([MS-SWN] 2.2.2.1): Flags | IPV4 | IPV6, 24 octets, addresses in network order.

    One address per entry (V4 xor V6); the unused field is sent as zeros and
    ignored on input (Windows may leave it uninitialised).
    """

    flags: int
    ipv4: ipaddress.IPv4Address = NULL_IPV4
    ipv6: ipaddress.IPv6Address = NULL_IPV6

    def encode(self) -> bytes:
        return _IPADDR_FLAGS.pack(self.flags) + self.ipv4.packed + self.ipv6.packed

    @classmethod
    def decode_from(cls, data: bytes, offset: int) -> tuple["IpAddrInfo", int]:
        end = offset + IPADDR_INFO_SIZE
        if end > len(data):
            raise NdrError("IPADDR_INFO truncated")
        (flags,) = _IPADDR_FLAGS.unpack_from(data, offset)
        return cls(flags, ipaddress.IPv4Address(data[offset + 4:offset + 8]),
                   ipaddress.IPv6Address(data[offset + 8:end])), end


@dataclass(frozen=True, slots=True)
class IpAddrInfoList:
    """IPADDR_INFO_LIST ([MS-SWN] 2.2.2.2): Length | Reserved | IPAddrInstances | entries.

    Length is 12 + 24 * IPAddrInstances (36 for one address, 12 for none).
    """

    addresses: tuple[IpAddrInfo, ...] = ()
    reserved: int = 0

    def encode(self) -> bytes:
        body = b"".join(address.encode() for address in self.addresses)
        return _LIST_HEAD.pack(_LIST_HEAD.size + len(body), self.reserved,
                               len(self.addresses)) + body

    @classmethod
    def decode_from(cls, data: bytes, offset: int) -> tuple["IpAddrInfoList", int]:
        if offset + _LIST_HEAD.size > len(data):
            raise NdrError("IPADDR_INFO_LIST header truncated")
        length, reserved, count = _LIST_HEAD.unpack_from(data, offset)
        if length != _LIST_HEAD.size + IPADDR_INFO_SIZE * count or offset + length > len(data):
            raise NdrError(f"IPADDR_INFO_LIST Length {length} does not fit {count} entries")
        at = offset + _LIST_HEAD.size
        addresses = []
        for _ in range(count):
            address, at = IpAddrInfo.decode_from(data, at)
            addresses.append(address)
        return cls(tuple(addresses), reserved), at


Message = ResourceChange | IpAddrInfoList


def build_notify(message_type: MessageType, messages: tuple[Message, ...]) -> RespAsyncNotify:
    """A RESP_ASYNC_NOTIFY carrying ``messages`` packed back to back ([MS-SWN] 3.1.4.4)."""
    expected = ResourceChange if message_type == MessageType.RESOURCE_CHANGE else IpAddrInfoList
    if not all(isinstance(message, expected) for message in messages):
        raise ValueError(f"{message_type.name} carries {expected.__name__} messages only")
    return RespAsyncNotify(int(message_type), len(messages),
                           b"".join(message.encode() for message in messages))


def parse_messages(response: RespAsyncNotify) -> tuple[Message, ...]:
    """The NumberOfMessages messages of ``response``; unknown types and bad lengths fail.

    Rejecting unknown MessageTypes up front avoids the zero-length loop of
    Samba's oss-fuzz 482968113; ``IPAddrInstances = 0`` is valid (Samba bug 14452).
    """
    try:
        kind = MessageType(response.message_type)
    except ValueError:
        raise NdrError(f"unknown MessageType 0x{response.message_type:x}") from None
    decoder = ResourceChange if kind == MessageType.RESOURCE_CHANGE else IpAddrInfoList
    data = response.message_buffer or b""
    offset = 0
    messages: list[Message] = []
    for _ in range(response.number_of_messages):
        message, offset = decoder.decode_from(data, offset)
        messages.append(message)
    return tuple(messages)
