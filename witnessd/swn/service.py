"""The witness service: the six operations, the local events and the timers ([MS-SWN] 3.1).

Registrations are keyed by their context handle (RegistrationKey) and owned
by the RPC association that created them: another association's lookup of
the same handle fails as "not found", and the association's rundown deletes
them (context rundown, [MS-SWN] 3.1.6.5).  AsyncNotify and, with no
AVAILABLE interface, GetInterfaceList are deferred calls (``PendingCall``),
completed when an event arrives or a timer fires.  Time comes from the
injected ``clock`` (seconds), UUIDs from ``new_uuid``; the daemon calls
``tick()`` periodically.

Where the spec, Windows and Samba disagree, this service chooses:

* UnRegister of an unknown handle: ERROR_INVALID_PARAMETER (3.1.4.3 SHOULD,
  and what smbtorture, written against Windows Server 2012 R2, expects)
  rather than Windows Server 2012's / Samba's ERROR_NOT_FOUND; configurable.
* Register / RegisterEx with an IpAddress that is no cluster interface:
  ERROR_INVALID_STATE (Samba), although the spec asks for it only when a
  scale-out share exists.  A ShareName is checked against the configured
  shares, unknown or no shares giving ERROR_INVALID_STATE (3.1.4.5, all
  our shares being cluster shares); Samba accepts any name.
* KeepAliveTimeout 0: the call times out at the next timer check
  (3.1.5.2: LastUseTime + 0 is earlier than now), as smbtorture expects;
  Samba waits forever.  V1 registrations have no keep-alive and wait until
  an event (3.1.4.2 sets no KeepAliveTime).
* The Unused Registration Timer (30 s, note <7>) covers V1 registrations
  too, their LastUseTime starting at creation (Samba).
* Pending resource changes are answered together, several RESOURCE_CHANGE
  messages in one response (3.1.4.4); Samba sends one per call.  A change
  is queued only when an interface's state really changes.
* RESOURCE_CHANGE.ResourceName is the registered IpAddress by default
  (Samba, proven with Windows Server 2022); see ``ResourceNameStyle``.
* CLIENT_MOVE, SHARE_MOVE and IP_CHANGE entries all carry ONLINE/OFFLINE
  (the spec names them for CLIENT_MOVE only; Samba sets them for all).
* After delivering an UNAVAILABLE change, or a move to addresses that do not
  include the registered one, the registration is deleted
  ``forced_unregister_after_s`` later (5 s; 0 disables), so the pending or
  next AsyncNotify gets ERROR_NOT_FOUND: Samba found Windows Server 2022
  re-registers only after its old registration disappears.
* An interface event also sets PendingIPNotification (destination: the
  interface's group) on every registration that asked for IP
  notifications, 3.1.6.4 being "an IP address ... enabled or disabled".
* Deleting a registration answers its pending AsyncNotify calls with
  ERROR_NOT_FOUND (Samba).
* An interface is its address: an event naming a listed address under
  another group moves that interface to the group (a LIF taken over,
  relocated or migrated to the other node of the pair) rather than listing
  the address twice, and a move of an address that was not UNAVAILABLE is
  reported UNAVAILABLE first (Samba).  ``local`` (no INTERFACE_WITNESS)
  follows the group: hosted here iff it is the configured local node.
* CLIENT_MOVE for "*" goes to every registration (3.1.6.2 selects by client
  name only); a move event that names the moving LIFs' addresses reaches
  only the registrations made for them.
"""

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Protocol
from uuid import UUID

from smbca.rpc.dcerpc import CallContext, PendingCall
from smbca.rpc.ndr import NULL_HANDLE, ContextHandle
from witnessd.swn.interface import (
    AsyncNotifyRequest,
    AsyncNotifyResponse,
    GetInterfaceListRequest,
    GetInterfaceListResponse,
    RegisterExRequest,
    RegisterRequest,
    RegisterResponse,
    UnRegisterExRequest,
    UnRegisterExResponse,
    UnRegisterRequest,
    UnRegisterResponse,
    encode_response,
)
from witnessd.swn.messages import build_response, destination_interfaces
from witnessd.swn.model import (
    Interface,
    PendingChange,
    ResourceNameStyle,
    WitnessRegistration,
    WitnessSettings,
    parse_address,
)
from witnessd.swn.types import (
    WITNESS_V1,
    WITNESS_V2,
    InterfaceFlags,
    InterfaceState,
    RegisterFlags,
    Win32Error,
    WitnessInterfaceInfo,
    WitnessInterfaceList,
)

_log = logging.getLogger(__name__)


class EventError(ValueError):
    """A local event that names nothing known (an unknown destination, say)."""


class ServiceObserver(Protocol):
    """Where the service reports what metrics count (``witnessd.metrics``)."""

    def registrations(self, count: int) -> None: ...

    def pending_notifies(self, count: int) -> None: ...

    def notification_sent(self, message_type: str) -> None: ...


class _NullObserver:
    def registrations(self, count: int) -> None:
        pass

    def pending_notifies(self, count: int) -> None:
        pass

    def notification_sent(self, message_type: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class EventResult:
    """How many registrations an event touched, for the control socket's answer."""

    registrations: int


class WitnessService:
    """Witness server state and behaviour ([MS-SWN] 3.1); implements ``WitnessOperations``."""

    def __init__(self, settings: WitnessSettings, interfaces: Iterable[Interface], *,
                 clock: Callable[[], float] = time.monotonic,
                 new_uuid: Callable[[], UUID] = uuid.uuid4,
                 observer: ServiceObserver | None = None) -> None:
        self.settings = settings
        self.interfaces: list[Interface] = list(interfaces)
        self.registrations: dict[UUID, WitnessRegistration] = {}
        self._clock = clock
        self._new_uuid = new_uuid
        self._observer = observer or _NullObserver()
        self._interface_waiters: list[PendingCall] = []

    # -- opnum 0 ([MS-SWN] 3.1.4.1) ---------------------------------------------

    def get_interface_list(self, request: GetInterfaceListRequest, call: CallContext
                           ) -> GetInterfaceListResponse | PendingCall:
        if not self.interfaces:
            return GetInterfaceListResponse(None, Win32Error.NO_MORE_ITEMS)
        if not any(i.state == InterfaceState.AVAILABLE for i in self.interfaces):
            pending = call.defer()  # MUST wait until one becomes AVAILABLE
            self._interface_waiters.append(pending)
            pending.on_abandon(self._interface_waiters.remove)
            return pending
        return GetInterfaceListResponse(self._interface_list(), Win32Error.SUCCESS)

    def _interface_list(self) -> WitnessInterfaceList:
        infos = []
        for interface in self.interfaces:
            flags = InterfaceFlags(0)
            if interface.ipv4_address is not None:
                flags |= InterfaceFlags.IPV4
            if interface.ipv6_address is not None:
                flags |= InterfaceFlags.IPV6
            if not interface.local:
                flags |= InterfaceFlags.INTERFACE_WITNESS
            info = WitnessInterfaceInfo(interface.interface_group_name,
                                        self.settings.witness_service_version,
                                        int(interface.state), flags=int(flags))
            if interface.ipv4_address is not None:
                info = replace(info, ipv4=interface.ipv4_address)
            if interface.ipv6_address is not None:
                info = replace(info, ipv6=interface.ipv6_address)
            infos.append(info)
        return WitnessInterfaceList(tuple(infos))

    # -- opnums 1 and 4 ([MS-SWN] 3.1.4.2, 3.1.4.5) ------------------------------

    def register(self, request: RegisterRequest, call: CallContext) -> RegisterResponse:
        if request.version != WITNESS_V1:
            return RegisterResponse(NULL_HANDLE, Win32Error.REVISION_MISMATCH)
        error = self._check_names(request.net_name, request.ip_address,
                                  request.client_computer_name)
        if error:
            return RegisterResponse(NULL_HANDLE, error)
        assert request.net_name and request.ip_address and request.client_computer_name
        return self._create(call, WITNESS_V1, request.net_name, request.ip_address,
                            request.client_computer_name)

    def register_ex(self, request: RegisterExRequest, call: CallContext) -> RegisterResponse:
        if request.version != WITNESS_V2:
            return RegisterResponse(NULL_HANDLE, Win32Error.REVISION_MISMATCH)
        error = self._check_names(request.net_name, request.ip_address,
                                  request.client_computer_name)
        if error:
            return RegisterResponse(NULL_HANDLE, error)
        if request.share_name is not None and not self.settings.share_exists(request.share_name):
            return RegisterResponse(NULL_HANDLE, Win32Error.INVALID_STATE)
        assert request.net_name and request.ip_address and request.client_computer_name
        return self._create(
            call, WITNESS_V2, request.net_name, request.ip_address,
            request.client_computer_name, share_name=request.share_name,
            ip_notification=bool(request.flags & RegisterFlags.IP_NOTIFICATION),
            keep_alive=request.keep_alive_timeout)

    def _check_names(self, net_name: str | None, ip_address: str | None,
                     client: str | None) -> int:
        if net_name is None or ip_address is None or client is None:
            return Win32Error.INVALID_PARAMETER
        if not self.settings.net_name_matches(net_name):
            return Win32Error.INVALID_PARAMETER
        address = parse_address(ip_address)
        if address is None or not any(i.has_address(address) for i in self.interfaces):
            return Win32Error.INVALID_STATE
        return Win32Error.SUCCESS

    def _create(self, call: CallContext, version: int, net_name: str, ip_address: str,
                client: str, *, share_name: str | None = None, ip_notification: bool = False,
                keep_alive: int | None = None) -> RegisterResponse:
        if len(self.registrations) >= self.settings.max_registrations:
            return RegisterResponse(NULL_HANDLE, Win32Error.NO_SYSTEM_RESOURCES)
        key = self._new_uuid()
        registration = WitnessRegistration(
            registration_key=key, witness_client_name=client, network_name=net_name,
            ip_address=ip_address, witness_client_version=version,
            last_use_time=self._clock(), assoc_group=call.assoc_group, share_name=share_name,
            share_name_notification_required=share_name is not None,
            ip_notification_required=ip_notification, keep_alive_time=keep_alive)
        self.registrations[key] = registration
        call.assoc_group.add_rundown(key, lambda: self._delete(registration, "rundown"))
        self._observer.registrations(len(self.registrations))
        _log.info("registered %s: client %s net %s ip %s share %s version 0x%08x", key, client,
                  net_name, ip_address, share_name, version)
        return RegisterResponse(ContextHandle(0, key), Win32Error.SUCCESS)

    def _lookup(self, handle: ContextHandle, call: CallContext) -> WitnessRegistration | None:
        registration = self.registrations.get(handle.uuid)
        if registration is None or registration.assoc_group is not call.assoc_group:
            return None
        return registration

    # -- opnums 2 and 5 ([MS-SWN] 3.1.4.3, 3.1.4.6) ------------------------------

    def unregister(self, request: UnRegisterRequest, call: CallContext) -> UnRegisterResponse:
        registration = self._lookup(request.context_handle, call)
        if registration is None:
            return UnRegisterResponse(self.settings.unknown_handle_unregister_error)
        self._delete(registration, "unregistered")
        return UnRegisterResponse(Win32Error.SUCCESS)

    def unregister_ex(self, request: UnRegisterExRequest, call: CallContext
                      ) -> UnRegisterExResponse:
        registration = self._lookup(request.context_handle, call)
        if registration is None:
            return UnRegisterExResponse(request.context_handle, Win32Error.INVALID_PARAMETER)
        self._delete(registration, "unregistered")
        return UnRegisterExResponse(NULL_HANDLE, Win32Error.SUCCESS)

    def _delete(self, registration: WitnessRegistration, reason: str) -> None:
        if self.registrations.pop(registration.registration_key, None) is None:
            return
        registration.assoc_group.remove_rundown(registration.registration_key)
        waiters, registration.waiters = list(registration.waiters), deque()
        for waiter in waiters:
            waiter.complete(encode_response(AsyncNotifyResponse(None, Win32Error.NOT_FOUND)))
        _log.info("registration %s removed: %s", registration.registration_key, reason)
        self._observer.registrations(len(self.registrations))
        self._report_pending()

    # -- opnum 3 ([MS-SWN] 3.1.4.4) ------------------------------------------------

    def async_notify(self, request: AsyncNotifyRequest, call: CallContext
                     ) -> AsyncNotifyResponse | PendingCall:
        registration = self._lookup(request.context_handle, call)
        if registration is None:
            return AsyncNotifyResponse(None, Win32Error.NOT_FOUND)
        registration.last_use_time = self._clock()
        registration.is_async_notify_registered = True
        if registration.has_pending and not registration.waiters:
            return self._take_response(registration)
        pending = call.defer()
        registration.waiters.append(pending)
        pending.on_abandon(lambda p: self._abandoned(registration, p))
        self._report_pending()
        return pending

    def _abandoned(self, registration: WitnessRegistration, pending: PendingCall) -> None:
        if pending in registration.waiters:
            registration.waiters.remove(pending)
        registration.is_async_notify_registered = bool(registration.waiters)
        registration.last_use_time = self._clock()
        self._report_pending()

    def _take_response(self, registration: WitnessRegistration) -> AsyncNotifyResponse:
        """One response from the pending notifications, removing what it carries."""
        kind, response, forced = build_response(registration, self.interfaces)
        registration.last_use_time = self._clock()
        registration.is_async_notify_registered = bool(registration.waiters)
        delay = self.settings.forced_unregister_after_s
        if forced and delay > 0 and registration.forced_unregister_at is None:
            registration.forced_unregister_at = self._clock() + delay
        self._observer.notification_sent(kind.name)
        return AsyncNotifyResponse(response, Win32Error.SUCCESS)

    def _deliver(self, registration: WitnessRegistration) -> None:
        while registration.waiters and registration.has_pending:
            waiter = registration.waiters.popleft()
            waiter.complete(encode_response(self._take_response(registration)))
        self._report_pending()

    def _report_pending(self) -> None:
        self._observer.pending_notifies(
            sum(len(r.waiters) for r in self.registrations.values())
            + len(self._interface_waiters))

    # -- local events ([MS-SWN] 3.1.6) ---------------------------------------------

    def interface_changed(self, group: str, state: InterfaceState, addresses: tuple = (),
                          local: bool | None = None) -> EventResult:
        """3.1.6.1: an interface (or, without addresses, every interface of a group) changed.

        An address belongs to one interface whatever group the event names:
        an event naming it under another group moves the interface there (the
        LIF came up on the partner, or went down with its old node), and its
        ``local`` follows the new group (hosted here iff the group is
        ``local_node``).  ``local``, when given, overrides that, e.g. after a
        takeover announced under the old node's group.  Registrations on the
        address hear every state change in order; an address that moves while
        not UNAVAILABLE is reported UNAVAILABLE first (Samba: an IP whose
        hosting node changes), so a LIF taken over is UNAVAILABLE, then
        AVAILABLE.  An address nobody listed is added to the group.
        """
        group = self.settings.node_name(group) or group
        if addresses:
            matched = [i for i in self.interfaces if any(i.has_address(a) for a in addresses)]
            if not matched:
                matched = [self._new_interface(group, addresses)]
        else:
            matched = [i for i in self.interfaces if _same(i.interface_group_name, group)]
            if not matched and self.settings.node_name(group) is None:
                raise EventError(f"no interface in group {group!r}")
        if self.settings.nodes and self.settings.node_name(group) is None:
            _log.warning("event for group %s, which is not a node of the pair (%s)", group,
                         ", ".join(self.settings.nodes))
        transitions: list[tuple[Interface, str, InterfaceState]] = []
        for interface in matched:
            old_group = interface.interface_group_name
            if not _same(old_group, group):
                _log.info("interface %s moves from %s to %s",
                          "/".join(map(str, interface.addresses)), old_group, group)
                interface.interface_group_name = group
                interface.local = self.settings.is_local(group)
                if InterfaceState.UNAVAILABLE not in (interface.state, state):
                    # its node changes: clients hear it gone before they hear it back
                    transitions.append((interface, old_group, InterfaceState.UNAVAILABLE))
                    interface.state = InterfaceState.UNAVAILABLE
            if local is not None:
                interface.local = local
            if interface.state != state:
                addresses_text = "/".join(map(str, interface.addresses))
                _log.info("interface %s (%s): %s -> %s", addresses_text, group,
                          interface.state.name, state.name,
                          extra={"interface": addresses_text, "node": group,
                                 "state": state.name})
                transitions.append((interface, group, state))
                interface.state = state
        touched = self._queue_changes(transitions)
        self._wake_interface_waiters()
        for key in touched:
            self._deliver(self.registrations[key])
        return EventResult(len(touched))

    def _queue_changes(self, transitions: list[tuple[Interface, str, InterfaceState]]
                       ) -> set[UUID]:
        """Queue each (interface, its group then, new state) for the registrations on
        its addresses, and an IP change for those that asked (3.1.6.4)."""
        touched = set()
        for interface, group, state in transitions:
            for registration in self.registrations.values():
                address = registration.registered_address
                if address is not None and interface.has_address(address):
                    registration.pending_change_notifications.append(
                        PendingChange(self._resource_name(registration, group), state))
                    touched.add(registration.registration_key)
                if registration.ip_notification_required:
                    registration.pending_ip_notification = interface.interface_group_name
                    touched.add(registration.registration_key)
        return touched

    def _new_interface(self, group: str, addresses: tuple) -> Interface:
        ipv4 = next((a for a in addresses if a.version == 4), None)
        ipv6 = next((a for a in addresses if a.version == 6), None)
        interface = Interface(group, InterfaceState.UNKNOWN, ipv4, ipv6,
                              local=self.settings.is_local(group))
        self.interfaces.append(interface)
        _log.info("interface %s added to %s by an event", "/".join(map(str, addresses)), group)
        return interface

    def _resource_name(self, registration: WitnessRegistration, group: str) -> str:
        style = self.settings.resource_name_style
        if style is ResourceNameStyle.NET_NAME:
            return registration.network_name
        if style is ResourceNameStyle.GROUP:
            return group
        return registration.ip_address

    def _wake_interface_waiters(self) -> None:
        if not any(i.state == InterfaceState.AVAILABLE for i in self.interfaces):
            return
        waiters, self._interface_waiters = self._interface_waiters, []
        response = encode_response(GetInterfaceListResponse(self._interface_list(),
                                                            Win32Error.SUCCESS))
        for waiter in waiters:
            waiter.complete(response)
        self._report_pending()

    def client_move(self, client: str, destination: str, addresses: tuple = ()) -> EventResult:
        """3.1.6.2: registrations of ``client`` ("*": all) should move to ``destination``.

        ``addresses`` (ours, for a planned move of some LIFs): only the
        registrations whose registered IpAddress is on the interface of one
        of them, i.e. the clients of the LIFs that move, hear it; clients of
        LIFs that stay are left alone.
        """
        self._check_destination(destination)
        moving = [i for i in self.interfaces if any(i.has_address(a) for a in addresses)]

        def on_moving_lif(registration: WitnessRegistration) -> bool:
            address = registration.registered_address
            return address is not None and (address in addresses or any(
                i.has_address(address) for i in moving))
        return self._mark(lambda r: _client_matches(r, client)
                          and (not addresses or on_moving_lif(r)),
                          "pending_move_notification", destination)

    def share_move(self, client: str, share: str, destination: str) -> EventResult:
        """3.1.6.3: ``share`` now belongs to ``destination`` (V2 registrations with ShareName)."""
        self._check_destination(destination)
        return self._mark(lambda r: (_client_matches(r, client)
                                     and r.share_name_notification_required
                                     and r.witness_client_version == WITNESS_V2
                                     and (r.share_name or "").casefold() == share.casefold()),
                          "pending_share_move_notification", destination)

    def ip_change(self, client: str, destination: str) -> EventResult:
        """3.1.6.4: the addresses of ``destination`` changed (registrations asking for IPs)."""
        self._check_destination(destination)
        return self._mark(lambda r: (_client_matches(r, client) and r.ip_notification_required
                                     and r.witness_client_version == WITNESS_V2),
                          "pending_ip_notification", destination)

    def _check_destination(self, destination: str) -> None:
        if not destination_interfaces(self.interfaces, destination):
            raise EventError(f"destination {destination!r} names no interface")

    def _mark(self, selector: Callable[[WitnessRegistration], bool], slot: str,
              destination: str) -> EventResult:
        selected = [r for r in self.registrations.values() if selector(r)]
        for registration in selected:
            setattr(registration, slot, destination)
        for registration in selected:
            if registration.registration_key in self.registrations:
                self._deliver(registration)
        return EventResult(len(selected))

    def force_unregister(self, key: UUID) -> EventResult:
        """Administrative removal of one registration (like Samba's net witness)."""
        registration = self.registrations.get(key)
        if registration is None:
            raise EventError(f"no registration {key}")
        self._delete(registration, "forced by the administrator")
        return EventResult(1)

    def reconfigure(self, settings: WitnessSettings, interfaces: Iterable[Interface]) -> None:
        """A reloaded configuration (SIGHUP); registrations stay as they are.

        A configured interface that is already listed (an address in common)
        keeps the group, state and ``local`` that events gave it, since the
        file says where a LIF lives at start-up, not where it is now; its
        addresses are the file's.  New entries come in as configured;
        entries no longer configured are dropped.
        """
        old_local, self.settings = self.settings.local_node, settings
        current, kept = list(self.interfaces), []
        for interface in interfaces:
            known = next((i for i in current
                          if any(interface.has_address(a) for a in i.addresses)), None)
            if known is not None:
                current.remove(known)
                interface.interface_group_name = settings.node_name(
                    known.interface_group_name) or known.interface_group_name
                interface.state = known.state
                interface.local = known.local if old_local == settings.local_node \
                    else settings.is_local(interface.interface_group_name)
            kept.append(interface)
        self.interfaces = kept
        for gone in current:
            orphans = sum(1 for r in self.registrations.values()
                          if r.registered_address in gone.addresses)
            _log.warning("interface %s is no longer configured (%d registrations on it)",
                         "/".join(map(str, gone.addresses)), orphans)
        self._wake_interface_waiters()

    # -- timers ([MS-SWN] 3.1.5) ---------------------------------------------------

    def tick(self) -> None:
        """Run the timers: AsyncNotify Pending, Unused Registration, forced unregistration."""
        now = self._clock()
        for registration in list(self.registrations.values()):
            if (registration.forced_unregister_at is not None
                    and registration.forced_unregister_at <= now):
                self._delete(registration, "forced unregistration after a failover notification")
                continue
            keep_alive = registration.keep_alive_time
            if (registration.waiters and keep_alive is not None
                    and registration.last_use_time + keep_alive < now):
                waiters, registration.waiters = list(registration.waiters), deque()
                timeout = encode_response(AsyncNotifyResponse(None, Win32Error.TIMEOUT))
                for waiter in waiters:
                    waiter.complete(timeout)
                registration.last_use_time = now
                registration.is_async_notify_registered = False
                self._report_pending()
                continue
            if (not registration.is_async_notify_registered and not registration.waiters
                    and registration.last_use_time + self.settings.unused_registration_timeout_s
                    < now):
                self._delete(registration, "unused")


def _same(group: str, other: str) -> bool:
    return group.casefold() == other.casefold()


def _client_matches(registration: WitnessRegistration, client: str) -> bool:
    return client == "*" or registration.witness_client_name.casefold() == client.casefold()


__all__ = ["EventError", "EventResult", "ServiceObserver", "WitnessService"]
