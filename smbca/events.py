"""Typed events between the daemons, with their JSON form on the control sockets.

clusdisk sends, smbcad and witnessd receive (ARCHITECTURE.md "Local
control": events flow one way; nothing polls).  Sender and receiver use the
same classes, so a field cannot go missing on one side only.

==================  ========================================  =========================
class               JSON object                               meaning
==================  ========================================  =========================
``AggregateAdopt``  ``{"type": "aggregate", "event":          to smbcad: the aggregate
                    "adopt", "aggregate", "mount_point",      is mounted here; bring
                    "node"}``                                 its shares online
``AggregateRelease``  the same with ``"event": "release"``    to smbcad: take them
                    and ``"planned"`` (bool)                  offline before unmount
``InterfaceState``  ``{"event": "interface", "group",         to witnessd, [MS-SWN]
                    "state", "ipv4"?, "ipv6"?, "local"?}``;   3.1.6.1
                    ``{"event": "node", "node", "state"}``
                    is read as every interface of a node
``ClientMove``      ``{"event": "client-move", "client",      [MS-SWN] 3.1.6.2
                    "destination", "addresses"?}``            (``addresses``: only the
                                                              clients of these LIFs)
``ShareMove``       ``{"event": "share-move", "client",       [MS-SWN] 3.1.6.3
                    "share", "destination"}``
``IpChange``        ``{"event": "ip-change", "client",        [MS-SWN] 3.1.6.4
                    "destination"}``
==================  ========================================  =========================

``client`` is a WitnessClientName or ``*`` (every client); ``destination``
an interface group, host name or IP address.  States: ``available`` (also
``up``, ``online``), ``unavailable`` (``down``, ``offline``), ``unknown``.
A malformed event raises ``ControlError`` naming the field.
"""

import ipaddress
from dataclasses import dataclass
from enum import Enum
from typing import Any

from smbca.control import ControlError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Availability(Enum):
    """An interface's state as the witness reports it ([MS-SWN] 2.2.2.5 State)."""

    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"


_STATE_WORDS = {
    "available": Availability.AVAILABLE, "up": Availability.AVAILABLE,
    "online": Availability.AVAILABLE,
    "unavailable": Availability.UNAVAILABLE, "down": Availability.UNAVAILABLE,
    "offline": Availability.UNAVAILABLE,
    "unknown": Availability.UNKNOWN,
}


def _text(message: dict, key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ControlError(f"{key!r} must be a non-empty string")
    return value.strip()


def _flag(message: dict, key: str) -> bool | None:
    value = message.get(key)
    if value is not None and not isinstance(value, bool):
        raise ControlError(f"{key!r} must be true or false")
    return value


def _node_id(message: dict) -> int:
    value = message.get("node")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ControlError("'node' must be a node id")
    return value


@dataclass(frozen=True, slots=True)
class AggregateAdopt:
    aggregate: str
    mount_point: str
    node: int

    def to_json(self) -> dict:
        return {"type": "aggregate", "event": "adopt", "aggregate": self.aggregate,
                "mount_point": self.mount_point, "node": self.node}

    @classmethod
    def from_json(cls, message: dict) -> "AggregateAdopt":
        return cls(_text(message, "aggregate"), _text(message, "mount_point"),
                   _node_id(message))


@dataclass(frozen=True, slots=True)
class AggregateRelease:
    """``planned``: a giveback or relocation, so in-flight requests may finish
    first; otherwise the aggregate is going away now.  ``clients_cut_off``
    (planned only): this node's public links are down, so no client can send
    or answer: nothing is waited for from them (sent only when true, so the
    previous release's messages are unchanged)."""

    aggregate: str
    mount_point: str
    node: int
    planned: bool = False
    clients_cut_off: bool = False

    def to_json(self) -> dict:
        message = {"type": "aggregate", "event": "release", "aggregate": self.aggregate,
                   "mount_point": self.mount_point, "node": self.node, "planned": self.planned}
        if self.clients_cut_off:
            message["clients_cut_off"] = True
        return message

    @classmethod
    def from_json(cls, message: dict) -> "AggregateRelease":
        return cls(_text(message, "aggregate"), _text(message, "mount_point"),
                   _node_id(message), bool(_flag(message, "planned")),
                   bool(_flag(message, "clients_cut_off")))


@dataclass(frozen=True, slots=True)
class InterfaceState:
    """One interface group changes state; with no address, every interface
    of the group.  ``local``: whether this node now hosts it (after a takeover)."""

    group: str
    state: Availability
    addresses: tuple[IpAddress, ...] = ()
    local: bool | None = None

    def to_json(self) -> dict:
        message: dict[str, Any] = {"event": "interface", "group": self.group,
                                   "state": self.state.value}
        for address in self.addresses:
            message[f"ipv{address.version}"] = str(address)
        if self.local is not None:
            message["local"] = self.local
        return message

    @classmethod
    def from_json(cls, message: dict) -> "InterfaceState":
        state = _STATE_WORDS.get(str(message.get("state", "")).lower())
        if state is None:
            raise ControlError(f"'state' must be one of {', '.join(sorted(_STATE_WORDS))}")
        if message.get("event") == "node":
            return cls(_text(message, "node"), state)
        addresses = []
        for key, version in (("ipv4", 4), ("ipv6", 6)):
            if message.get(key) is not None:
                try:
                    address = ipaddress.ip_address(_text(message, key))
                except ValueError:
                    raise ControlError(f"{key!r} is not an IP address") from None
                if address.version != version:
                    raise ControlError(f"{key!r} is not an IPv{version} address")
                addresses.append(address)
        return cls(_text(message, "group"), state, tuple(addresses), _flag(message, "local"))


@dataclass(frozen=True, slots=True)
class ClientMove:
    """``addresses``: when given, only registrations made for one of these
    LIF addresses move (a planned move of some LIFs, not of every client)."""

    client: str
    destination: str
    addresses: tuple[IpAddress, ...] = ()

    def to_json(self) -> dict:
        message: dict[str, Any] = {"event": "client-move", "client": self.client,
                                   "destination": self.destination}
        if self.addresses:
            message["addresses"] = [str(address) for address in self.addresses]
        return message

    @classmethod
    def from_json(cls, message: dict) -> "ClientMove":
        raw = message.get("addresses") or []
        if not isinstance(raw, list):
            raise ControlError("'addresses' must be a list of IP addresses")
        try:
            addresses = tuple(ipaddress.ip_address(str(text).strip()) for text in raw)
        except ValueError:
            raise ControlError("'addresses' must be a list of IP addresses") from None
        return cls(_text(message, "client"), _text(message, "destination"), addresses)


@dataclass(frozen=True, slots=True)
class ShareMove:
    client: str
    share: str
    destination: str

    def to_json(self) -> dict:
        return {"event": "share-move", "client": self.client, "share": self.share,
                "destination": self.destination}

    @classmethod
    def from_json(cls, message: dict) -> "ShareMove":
        return cls(_text(message, "client"), _text(message, "share"),
                   _text(message, "destination"))


@dataclass(frozen=True, slots=True)
class IpChange:
    client: str
    destination: str

    def to_json(self) -> dict:
        return {"event": "ip-change", "client": self.client, "destination": self.destination}

    @classmethod
    def from_json(cls, message: dict) -> "IpChange":
        return cls(_text(message, "client"), _text(message, "destination"))


Event = AggregateAdopt | AggregateRelease | InterfaceState | ClientMove | ShareMove | IpChange

_AGGREGATE_EVENTS = {"adopt": AggregateAdopt, "release": AggregateRelease}
_WITNESS_EVENTS = {"interface": InterfaceState, "node": InterfaceState, "client-move": ClientMove,
                   "share-move": ShareMove, "ip-change": IpChange}


def is_event(message: dict) -> bool:
    """Whether ``message`` names one of the events above (it may still be malformed)."""
    kinds = _AGGREGATE_EVENTS if message.get("type") == "aggregate" else _WITNESS_EVENTS
    return message.get("event") in kinds


def from_json(message: object) -> Event:
    """The typed event of one decoded JSON object."""
    if not isinstance(message, dict):
        raise ControlError("an event is a JSON object")
    kinds = _AGGREGATE_EVENTS if message.get("type") == "aggregate" else _WITNESS_EVENTS
    kind = kinds.get(message.get("event"))
    if kind is None:
        raise ControlError(f"unknown event {message.get('event')!r}")
    return kind.from_json(message)
