"""Building AsyncNotify answers from a registration's pending notifications ([MS-SWN] 3.1.4.4).

One response carries one MessageType; the pending kinds are served in the
order the spec lists them: resource changes (all of them, as several
RESOURCE_CHANGE messages), then the client move, the share move and the IP
change (one IPADDR_INFO_LIST each).  What a response carried is removed
from the registration.  SHARE_MOVE and IP_CHANGE are only ever pending on
V2 registrations (the service selects them so, 3.1.4.4).
"""

from witnessd.swn.model import (
    IPAddress,
    Interface,
    WitnessRegistration,
    parse_address,
)
from witnessd.swn.types import (
    InterfaceState,
    IpAddrFlags,
    IpAddrInfo,
    IpAddrInfoList,
    MessageType,
    ResourceChange,
    ResourceState,
    RespAsyncNotify,
    build_notify,
)


def destination_interfaces(interfaces: list[Interface], destination: str
                           ) -> list[tuple[Interface, tuple[IPAddress, ...]]]:
    """Interfaces a move destination names, each with the addresses to list.

    A destination is an IP address (that address only), or an interface
    group / host name (every address of the group's interfaces),
    case-insensitively ([MS-SWN] 3.1.6.2).
    """
    address = parse_address(destination)
    if address is not None:
        return [(i, (address,)) for i in interfaces if i.has_address(address)]
    wanted = destination.casefold()
    return [(i, i.addresses) for i in interfaces if i.interface_group_name.casefold() == wanted]


def address_list(interfaces: list[Interface], destination: str) -> IpAddrInfoList:
    """IPADDR_INFO_LIST of a destination: V4 or V6 plus ONLINE / OFFLINE per address."""
    entries = []
    for interface, addresses in destination_interfaces(interfaces, destination):
        online = IpAddrFlags.ONLINE if interface.state == InterfaceState.AVAILABLE \
            else IpAddrFlags.OFFLINE
        for address in addresses:
            if address.version == 4:
                entries.append(IpAddrInfo(int(IpAddrFlags.V4 | online), ipv4=address))
            else:
                entries.append(IpAddrInfo(int(IpAddrFlags.V6 | online), ipv6=address))
    return IpAddrInfoList(tuple(entries))


def build_response(registration: WitnessRegistration, interfaces: list[Interface]
                   ) -> tuple[MessageType, RespAsyncNotify, bool]:
    """(type, response, leads to forced unregistration) for the first pending kind."""
    if registration.pending_change_notifications:
        changes, registration.pending_change_notifications = (
            registration.pending_change_notifications, [])
        messages = tuple(ResourceChange(int(ResourceState.UNAVAILABLE
                                            if change.new_state == InterfaceState.UNAVAILABLE
                                            else ResourceState.AVAILABLE),
                                        change.resource_name) for change in changes)
        forced = any(change.new_state != InterfaceState.AVAILABLE for change in changes)
        return (MessageType.RESOURCE_CHANGE, build_notify(MessageType.RESOURCE_CHANGE, messages),
                forced)
    for kind, slot in ((MessageType.CLIENT_MOVE, "pending_move_notification"),
                       (MessageType.SHARE_MOVE, "pending_share_move_notification"),
                       (MessageType.IP_CHANGE, "pending_ip_notification")):
        destination = getattr(registration, slot)
        if destination is None:
            continue
        setattr(registration, slot, None)
        listing = address_list(interfaces, destination)
        forced = kind != MessageType.IP_CHANGE and not _lists(listing, registration)
        return kind, build_notify(kind, (listing,)), forced
    raise ValueError("no pending notification")


def _lists(listing: IpAddrInfoList, registration: WitnessRegistration) -> bool:
    """Whether a move keeps the client on its registered address."""
    address = registration.registered_address
    return any(address in (entry.ipv4, entry.ipv6) for entry in listing.addresses)
