"""The witness server's abstract data model ([MS-SWN] 3.1.1) and its settings.

Class and field names follow the spec: ``Interface`` (3.1.1.2),
``WitnessRegistration`` (3.1.1.3), ``PendingChange`` (3.1.1.4).  Fields the
spec does not have are implementation state and say so.  Registrations are
in memory only: they are node-local and die with their RPC association, as
on Windows (3.1.6.5), so nothing here is persisted.
"""

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from uuid import UUID

from smbca.rpc.dcerpc import AssociationGroup, PendingCall
from witnessd.swn.types import WITNESS_V2, InterfaceState, Win32Error

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ResourceNameStyle(Enum):
    """What RESOURCE_CHANGE.ResourceName carries ([MS-SWN] 2.2.2.3 allows all three).

    IP: the IpAddress the client registered (Samba; works with Windows
    Server 2022 clients).  NET_NAME: the registered NetName (the [MS-SWN] 4.1
    Windows example).  GROUP: the InterfaceGroupName (the 3.1.6.1 text).
    """

    IP = "ip"
    NET_NAME = "net_name"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class WitnessSettings:
    """Administrator-defined behaviour of the service (from ``witnessd.config``).

    ``server_global_names``: ServerGlobalName (3.1.1.1) and its aliases; a
    NetName matches one case-insensitively, or by its first DNS label.
    ``shares``: the share list a RegisterEx ShareName is checked against
    (NetrShareEnum of 3.1.4.5).  ``nodes``: the pair's node names, which are
    the InterfaceGroupNames; ``local_node`` the one this server runs on (its
    interfaces carry no INTERFACE_WITNESS, 3.1.4.1).  Timers are in seconds.
    """

    server_global_names: tuple[str, ...]
    nodes: tuple[str, ...] = ()
    local_node: str | None = None
    witness_service_version: int = WITNESS_V2
    shares: tuple[str, ...] = ()
    unused_registration_timeout_s: float = 30.0
    forced_unregister_after_s: float = 5.0
    unknown_handle_unregister_error: int = Win32Error.INVALID_PARAMETER
    resource_name_style: ResourceNameStyle = ResourceNameStyle.IP
    max_registrations: int = 10_000

    def net_name_matches(self, net_name: str) -> bool:
        """Equal to a configured name, or its first DNS label equals a NetBIOS-style
        (dot-less) configured name, case-insensitively (as Samba's
        swn_server_check_net_name)."""
        wanted = net_name.casefold()
        first_label = wanted.split(".", 1)[0]
        names = [name.casefold() for name in self.server_global_names]
        return wanted in names or any("." not in name and name == first_label for name in names)

    def is_local(self, group: str) -> bool:
        """Whether interfaces of ``group`` are hosted on this node."""
        return self.local_node is not None and group.casefold() == self.local_node.casefold()

    def node_name(self, group: str) -> str | None:
        """The configured spelling of the node ``group`` names, or None."""
        return next((n for n in self.nodes if n.casefold() == group.casefold()), None)

    def share_exists(self, share_name: str) -> bool:
        wanted = share_name.casefold()
        return any(share.casefold() == wanted for share in self.shares)


@dataclass(slots=True)
class Interface:
    """Per Interface in InterfaceList ([MS-SWN] 3.1.1.2).

    ``local`` (implementation): the address is hosted on this node, so
    GetInterfaceList leaves INTERFACE_WITNESS clear for it (3.1.4.1).
    """

    interface_group_name: str
    state: InterfaceState
    ipv4_address: ipaddress.IPv4Address | None = None
    ipv6_address: ipaddress.IPv6Address | None = None
    local: bool = False

    @property
    def addresses(self) -> tuple[IPAddress, ...]:
        return tuple(a for a in (self.ipv4_address, self.ipv6_address) if a is not None)

    def has_address(self, address: IPAddress) -> bool:
        return address in self.addresses


@dataclass(frozen=True, slots=True)
class PendingChange:
    """Per Notification in PendingChangeNotifications ([MS-SWN] 3.1.1.4)."""

    resource_name: str
    new_state: InterfaceState


@dataclass(slots=True, eq=False)
class WitnessRegistration:
    """Per WitnessRegistration in WitnessRegistrationList ([MS-SWN] 3.1.1.3).

    V2 fields are kept for every registration: a V1 registration has
    ``keep_alive_time`` None (no AsyncNotify Pending Timer, 3.1.4.2) but a
    LastUseTime from its creation, so the Unused Registration Timer covers it
    too, as on Samba.  Implementation state: ``assoc_group`` (the RPC
    association owning the context handle), ``waiters`` (AsyncNotify calls
    not yet answered, oldest first) and ``forced_unregister_at``.
    """

    registration_key: UUID
    witness_client_name: str
    network_name: str
    ip_address: str
    witness_client_version: int
    last_use_time: float
    assoc_group: AssociationGroup
    share_name: str | None = None
    share_name_notification_required: bool = False
    ip_notification_required: bool = False
    keep_alive_time: int | None = None
    is_async_notify_registered: bool = False
    pending_change_notifications: list[PendingChange] = field(default_factory=list)
    pending_move_notification: str | None = None
    pending_share_move_notification: str | None = None
    pending_ip_notification: str | None = None
    waiters: deque[PendingCall] = field(default_factory=deque)
    forced_unregister_at: float | None = None

    @property
    def has_pending(self) -> bool:
        return bool(self.pending_change_notifications or self.pending_move_notification
                    or self.pending_share_move_notification or self.pending_ip_notification)

    @property
    def registered_address(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.ip_address)
        except ValueError:
            return None


def parse_address(text: str) -> IPAddress | None:
    """An IPv4 / IPv6 literal, or None (a host or group name)."""
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None
