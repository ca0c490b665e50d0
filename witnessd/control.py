"""witnessd's control requests: the events clusdisk posts, plus the
administrator's ``unregister`` and ``status`` (sans-IO).

Requests arrive on witnessd's Unix socket in the shared JSON-line protocol
(``smbca.control``); the events and their JSON form are ``smbca.events``:
``InterfaceState`` (``interface`` / ``node``, [MS-SWN] 3.1.6.1),
``ClientMove`` (3.1.6.2), ``ShareMove`` (3.1.6.3) and ``IpChange`` (3.1.6.4).
They come from clusdisk on this node and, forwarded, on the partner, and may
name any node's interfaces: an interface event matches its address whatever
the group, so a LIF that comes up on the other node moves there
(``WitnessService.interface_changed``).  witnessd's own requests:

=================  ==================================================================
``event``          fields
=================  ==================================================================
``unregister``     ``registration`` (UUID): administrative removal
``status``         none: interfaces and registrations
=================  ==================================================================

``smbca witness notify`` builds all of them from the command line.
"""

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from smbca import events
from smbca.control import ControlError, Handler
from witnessd.swn import EventError, InterfaceState, WitnessService

SWN_STATES = {
    events.Availability.AVAILABLE: InterfaceState.AVAILABLE,
    events.Availability.UNAVAILABLE: InterfaceState.UNAVAILABLE,
    events.Availability.UNKNOWN: InterfaceState.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class UnregisterRequest:
    registration: UUID


@dataclass(frozen=True, slots=True)
class StatusRequest:
    pass


Request = (events.InterfaceState | events.ClientMove | events.ShareMove | events.IpChange
           | UnregisterRequest | StatusRequest)


def parse_request(message: dict) -> Request:
    """The typed request of one decoded JSON object; ``ControlError`` if it is not one."""
    kind = message.get("event")
    if kind == "unregister":
        registration = message.get("registration")
        try:
            return UnregisterRequest(UUID(str(registration)))
        except ValueError:
            raise ControlError("'registration' is not a UUID") from None
    if kind == "status":
        return StatusRequest()
    event = events.from_json(message)
    if isinstance(event, (events.AggregateAdopt, events.AggregateRelease)):
        raise ControlError("aggregate events go to smbcad, not witnessd")
    return event


def apply_request(service: WitnessService, request: Request) -> dict:
    """Run ``request`` against the service; the answer's fields besides ``ok``."""
    match request:
        case events.InterfaceState():
            result = service.interface_changed(request.group, SWN_STATES[request.state],
                                               request.addresses, request.local)
        case events.ClientMove():
            result = service.client_move(request.client, request.destination,
                                         request.addresses)
        case events.ShareMove():
            result = service.share_move(request.client, request.share, request.destination)
        case events.IpChange():
            result = service.ip_change(request.client, request.destination)
        case UnregisterRequest():
            result = service.force_unregister(request.registration)
        case StatusRequest():
            return status(service)
        case _:
            raise ControlError(f"unhandled request {request!r}")
    return {"registrations": result.registrations}


def control_handler(service: WitnessService,
                    on_event: Callable[[str], None] | None = None) -> Handler:
    """The ``smbca.control`` handler of witnessd's socket; ``on_event`` counts
    each request that was carried out, by its ``event`` word."""
    def handle(message: dict) -> dict:
        try:
            fields = apply_request(service, parse_request(message))
        except EventError as exc:
            raise ControlError(str(exc)) from None
        if on_event is not None:
            on_event(str(message.get("event")))
        return fields
    return handle


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
