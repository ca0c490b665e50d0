"""The local control protocol: JSON events in, JSON answers out (sans-IO).

clusdisk (and, for now, an admin command: ``python3 -m witnessd.notify``)
posts events on witnessd's Unix socket, one JSON object per line; every line
gets one JSON answer line: ``{"ok": true, ...}`` or ``{"ok": false, "error":
"..."}``.  Events map onto [MS-SWN] 3.1.6:

=================  ==================================================================
``event``          fields
=================  ==================================================================
``node``           ``node``, ``state``: every interface of a node (3.1.6.1)
``interface``      ``group``, ``state``, optional ``ipv4`` / ``ipv6``: one interface,
                   created if it is new (3.1.6.1); optional ``local`` (bool):
                   whether this node now hosts it (after a takeover)
``client-move``    ``client`` (a WitnessClientName or ``*``), ``destination``
                   (group, host name or IP address) (3.1.6.2)
``share-move``     ``client``, ``share``, ``destination`` (3.1.6.3)
``ip-change``      ``client``, ``destination`` (3.1.6.4)
``unregister``     ``registration`` (UUID): administrative removal
``status``         none: interfaces and registrations
=================  ==================================================================

States: ``available`` / ``up`` / ``online``, ``unavailable`` / ``down`` /
``offline``, ``unknown``.  Nothing here touches sockets; ``witnessd.transport``
feeds bytes to ``ControlSession``.
"""

import ipaddress
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from witnessd.swn import EventError, InterfaceState, WitnessService

_log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
_STATES = {
    "available": InterfaceState.AVAILABLE, "up": InterfaceState.AVAILABLE,
    "online": InterfaceState.AVAILABLE,
    "unavailable": InterfaceState.UNAVAILABLE, "down": InterfaceState.UNAVAILABLE,
    "offline": InterfaceState.UNAVAILABLE,
    "unknown": InterfaceState.UNKNOWN,
}


class ControlError(ValueError):
    """A malformed or unknown control request; its message goes back to the sender."""


@dataclass(frozen=True, slots=True)
class InterfaceEvent:
    """node / interface: [MS-SWN] 3.1.6.1."""

    group: str
    state: InterfaceState
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    local: bool | None = None


@dataclass(frozen=True, slots=True)
class MoveEvent:
    """client-move / share-move / ip-change: [MS-SWN] 3.1.6.2-3.1.6.4."""

    kind: str
    client: str
    destination: str
    share: str = ""


@dataclass(frozen=True, slots=True)
class UnregisterEvent:
    registration: UUID


@dataclass(frozen=True, slots=True)
class StatusRequest:
    pass


Event = InterfaceEvent | MoveEvent | UnregisterEvent | StatusRequest


def _text(message: dict, key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ControlError(f"{key!r} must be a non-empty string")
    return value.strip()


def _state(message: dict) -> InterfaceState:
    state = _STATES.get(str(message.get("state", "")).lower())
    if state is None:
        raise ControlError(f"'state' must be one of {', '.join(sorted(_STATES))}")
    return state


def parse_event(message: Any) -> Event:
    """The typed event of one decoded JSON object; ``ControlError`` if it is not one."""
    if not isinstance(message, dict):
        raise ControlError("a control request is a JSON object")
    kind = message.get("event")
    if kind == "node":
        return InterfaceEvent(_text(message, "node"), _state(message))
    if kind == "interface":
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
        local = message.get("local")
        if local is not None and not isinstance(local, bool):
            raise ControlError("'local' must be true or false")
        return InterfaceEvent(_text(message, "group"), _state(message), tuple(addresses), local)
    if kind in ("client-move", "ip-change"):
        return MoveEvent(kind, _text(message, "client"), _text(message, "destination"))
    if kind == "share-move":
        return MoveEvent(kind, _text(message, "client"), _text(message, "destination"),
                         _text(message, "share"))
    if kind == "unregister":
        try:
            return UnregisterEvent(UUID(_text(message, "registration")))
        except ValueError:
            raise ControlError("'registration' is not a UUID") from None
    if kind == "status":
        return StatusRequest()
    raise ControlError(f"unknown event {kind!r}")


def apply_event(service: WitnessService, event: Event) -> dict:
    """Run ``event`` against the service; the answer's fields besides ``ok``."""
    match event:
        case InterfaceEvent():
            result = service.interface_changed(event.group, event.state, event.addresses,
                                               event.local)
            return {"registrations": result.registrations}
        case MoveEvent(kind="client-move"):
            return {"registrations": service.client_move(event.client,
                                                         event.destination).registrations}
        case MoveEvent(kind="share-move"):
            return {"registrations": service.share_move(event.client, event.share,
                                                        event.destination).registrations}
        case MoveEvent(kind="ip-change"):
            return {"registrations": service.ip_change(event.client,
                                                       event.destination).registrations}
        case UnregisterEvent():
            return {"registrations": service.force_unregister(event.registration).registrations}
        case StatusRequest():
            return status(service)
    raise ControlError(f"unhandled event {event!r}")


def status(service: WitnessService) -> dict:
    """A JSON-ready view of InterfaceList and WitnessRegistrationList."""
    return {
        "interfaces": [{
            "group": i.interface_group_name, "state": i.state.name.lower(),
            "ipv4": str(i.ipv4_address) if i.ipv4_address else None,
            "ipv6": str(i.ipv6_address) if i.ipv6_address else None, "local": i.local,
        } for i in service.interfaces],
        "registrations": [{
            "registration": str(r.registration_key), "client": r.witness_client_name,
            "net_name": r.network_name, "ip_address": r.ip_address, "share": r.share_name,
            "version": f"0x{r.witness_client_version:08x}",
            "ip_notification": r.ip_notification_required,
            "keep_alive_s": r.keep_alive_time, "waiting_calls": len(r.waiters),
            "pending": r.has_pending,
        } for r in service.registrations.values()],
    }


def handle_line(service: WitnessService, line: bytes,
                on_event: Callable[[str], None] | None = None) -> bytes:
    """One request line in, one answer line (with newline) out."""
    try:
        message = json.loads(line)
        event = parse_event(message)
        answer = {"ok": True, **apply_event(service, event)}
        if on_event is not None:
            on_event(str(message.get("event")))
    except (ValueError, EventError) as exc:  # JSONDecodeError, ControlError, EventError
        _log.info("control request refused: %s", exc)
        answer = {"ok": False, "error": str(exc)}
    return json.dumps(answer).encode() + b"\n"


class ControlSession:
    """Line framing for one control connection: bytes in, answer bytes out."""

    def __init__(self, service: WitnessService,
                 on_event: Callable[[str], None] | None = None) -> None:
        self._service = service
        self._on_event = on_event
        self._buffer = bytearray()
        self.closed = False

    def receive_data(self, data: bytes) -> bytes:
        """Answers for every complete line in ``data``; closes on an over-long line."""
        self._buffer += data
        out = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            if line.strip():
                out.append(handle_line(self._service, line, self._on_event))
        if len(self._buffer) > MAX_LINE_BYTES:
            self._buffer.clear()
            self.closed = True
            out.append(b'{"ok": false, "error": "request line too long"}\n')
        return b"".join(out)
