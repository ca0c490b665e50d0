"""MS-SWN operations, events and timers through a real, authenticated connection ([MS-SWN] 3.1).

Every scenario wires the pyspnego-backed ``DceClient`` to a real
``RpcConnection`` serving the real service; time comes from ``FakeClock``.
"""

import ipaddress

import pytest

from smbca.rpc.dcerpc import AssociationGroups, CoCancel, FaultStatus, Orphaned, decode_pdu
from smbca.rpc.ndr import NULL_HANDLE, ContextHandle
from witnessd.swn import (
    WITNESS_V1,
    WITNESS_V2,
    AsyncNotifyResponse,
    EventError,
    GetInterfaceListRequest,
    GetInterfaceListResponse,
    InterfaceFlags,
    InterfaceState,
    IpAddrFlags,
    IpAddrInfo,
    IpAddrInfoList,
    MessageType,
    RegisterExRequest,
    RegisterRequest,
    RegisterResponse,
    ResourceChange,
    ResourceNameStyle,
    ResourceState,
    UnRegisterExRequest,
    UnRegisterExResponse,
    UnRegisterRequest,
    UnRegisterResponse,
    Win32Error,
    parse_messages,
)

from .client import (
    DceClient,
    FakeClock,
    answer,
    fault_status,
    notify,
    pending_answer,
    register,
    register_ex,
    two_node_service,
    witness_connection,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(clock):
    return two_node_service(clock)


@pytest.fixture
def client(service) -> DceClient:
    c = DceClient(witness_connection(service))
    c.bind()
    return c


# -- opnum 0 ---------------------------------------------------------------------------

def test_interface_list_flags_local_node_is_not_a_witness(client) -> None:
    response = client.call(0, GetInterfaceListRequest(), GetInterfaceListResponse)
    node1, node2 = response.interface_list.interface_info
    assert node1.interface_group_name == "NODE1" and node1.version == WITNESS_V2
    assert node1.flags == InterfaceFlags.IPV4 | InterfaceFlags.IPV6
    assert (node1.ipv4, node1.ipv6) == (V4("10.0.0.1"), V6("fd00::1"))
    assert node2.flags == InterfaceFlags.IPV4 | InterfaceFlags.INTERFACE_WITNESS
    assert node2.state == InterfaceState.AVAILABLE and node2.ipv6 == V6("::")


def test_empty_interface_list_is_no_more_items(service, client) -> None:
    service.interfaces.clear()
    response = client.call(0, GetInterfaceListRequest(), GetInterfaceListResponse)
    assert response == GetInterfaceListResponse(None, Win32Error.NO_MORE_ITEMS)


def test_interface_list_waits_until_an_interface_is_available(service, client) -> None:
    service.interface_changed("NODE1", InterfaceState.UNAVAILABLE)
    service.interface_changed("NODE2", InterfaceState.UNAVAILABLE)
    assert client.send_call(0, GetInterfaceListRequest()) == []
    service.interface_changed("NODE2", InterfaceState.AVAILABLE)
    response = client.decode_answer(client.conn.pdus_to_send(), GetInterfaceListResponse)
    assert [i.state for i in response.interface_list.interface_info] == [0xFF, 1]


# -- opnums 1 and 4: the smbtorture error matrix and more -------------------------------

@pytest.mark.parametrize("version,net,ip,name,expected", [
    (0, None, None, None, Win32Error.REVISION_MISMATCH),
    (1, None, None, None, Win32Error.REVISION_MISMATCH),
    (123456, None, None, None, Win32Error.REVISION_MISMATCH),
    (0xFFFFFFFF, None, None, None, Win32Error.REVISION_MISMATCH),
    (WITNESS_V2, None, None, "C", Win32Error.REVISION_MISMATCH),
    (WITNESS_V1, "", "", "", Win32Error.INVALID_PARAMETER),
    (WITNESS_V1, None, None, "C", Win32Error.INVALID_PARAMETER),
    (WITNESS_V1, "127.0.0.1", None, "C", Win32Error.INVALID_PARAMETER),
    (WITNESS_V1, "OTHER", "10.0.0.2", "C", Win32Error.INVALID_PARAMETER),
    (WITNESS_V1, "CLUSTER", "10.9.9.9", "C", Win32Error.INVALID_STATE),
    (WITNESS_V1, "CLUSTER", "not-an-ip", "C", Win32Error.INVALID_STATE),
    (WITNESS_V1, "cluster", "10.0.0.2", "C", Win32Error.SUCCESS),
    (WITNESS_V1, "CLUSTER.example.com", "10.0.0.2", "C", Win32Error.SUCCESS),
    (WITNESS_V1, "CLUSTER", "fd00::1", "C", Win32Error.SUCCESS),
])
def test_register_checks(client, version, net, ip, name, expected) -> None:
    response = client.call(1, RegisterRequest(version, net, ip, name), RegisterResponse)
    assert response.return_value == expected
    assert response.context_handle.is_null == (expected != Win32Error.SUCCESS)


@pytest.mark.parametrize("version,share,expected", [
    (WITNESS_V1, None, Win32Error.REVISION_MISMATCH),
    (WITNESS_V2, "any_invalid_share_name", Win32Error.INVALID_STATE),
    (WITNESS_V2, "VM", Win32Error.SUCCESS),
    (WITNESS_V2, None, Win32Error.SUCCESS),
])
def test_register_ex_checks(client, version, share, expected) -> None:
    response = client.call(4, RegisterExRequest(version, "CLUSTER", share, "10.0.0.2", "C", 0,
                                                0), RegisterResponse)
    assert response.return_value == expected


def test_register_ex_without_shares_configured_refuses_any_share(clock) -> None:
    c = DceClient(witness_connection(two_node_service(clock, shares=())))
    c.bind()
    response = c.call(4, RegisterExRequest(WITNESS_V2, "CLUSTER", "vm", "10.0.0.2", "C", 0, 0),
                      RegisterResponse)
    assert response.return_value == Win32Error.INVALID_STATE


def test_registrations_are_limited(clock) -> None:
    c = DceClient(witness_connection(two_node_service(clock, max_registrations=1)))
    c.bind()
    register(c)
    response = c.call(1, RegisterRequest(WITNESS_V1, "CLUSTER", "10.0.0.2", "C"),
                      RegisterResponse)
    assert response.return_value == Win32Error.NO_SYSTEM_RESOURCES


# -- opnums 2 and 5 ------------------------------------------------------------------------

def test_unregister_twice_is_invalid_parameter(client) -> None:
    handle = register(client)
    assert client.call(2, UnRegisterRequest(handle), UnRegisterResponse).return_value == 0
    assert client.call(2, UnRegisterRequest(handle), UnRegisterResponse).return_value == \
        Win32Error.INVALID_PARAMETER


def test_unknown_handle_error_is_configurable(clock) -> None:
    c = DceClient(witness_connection(two_node_service(
        clock, unknown_handle_unregister_error=Win32Error.NOT_FOUND)))
    c.bind()
    assert c.call(2, UnRegisterRequest(ContextHandle(0, register(c).uuid.__class__(int=99))),
                  UnRegisterResponse).return_value == Win32Error.NOT_FOUND


def test_unregister_ex(client) -> None:
    handle = register_ex(client)
    assert client.call(5, UnRegisterExRequest(handle), UnRegisterExResponse) == \
        UnRegisterExResponse(NULL_HANDLE, Win32Error.SUCCESS)
    assert client.call(5, UnRegisterExRequest(handle), UnRegisterExResponse) == \
        UnRegisterExResponse(handle, Win32Error.INVALID_PARAMETER)


def test_unregister_answers_pending_notify_with_not_found(client) -> None:
    handle = register(client)
    assert notify(client, handle) == []
    unregistered = client.send_call(2, UnRegisterRequest(handle))
    notify_answer, unregister_answer = unregistered
    assert answer(client, [notify_answer]) == AsyncNotifyResponse(None, Win32Error.NOT_FOUND)
    assert client.decode_answer([unregister_answer], UnRegisterResponse).return_value == 0


# -- opnum 3 and the events -------------------------------------------------------------------

def test_async_notify_unknown_handle_is_not_found(client) -> None:
    response = answer(client, notify(client, ContextHandle(0, register(client).uuid.__class__(
        int=77))))
    assert response == AsyncNotifyResponse(None, Win32Error.NOT_FOUND)


def test_node_down_completes_pending_notify_with_resource_change(service, client) -> None:
    handle = register(client)
    assert notify(client, handle) == []
    assert service.interface_changed("NODE2", InterfaceState.UNAVAILABLE).registrations == 1
    response = pending_answer(client)
    assert response.return_value == 0
    assert response.response.message_type == MessageType.RESOURCE_CHANGE
    assert parse_messages(response.response) == (
        ResourceChange(ResourceState.UNAVAILABLE, "10.0.0.2"),)


def test_changes_before_the_poll_are_all_delivered_in_order(service, client) -> None:
    handle = register(client)
    service.interface_changed("NODE2", InterfaceState.UNAVAILABLE)
    service.interface_changed("NODE2", InterfaceState.AVAILABLE)
    service.interface_changed("NODE2", InterfaceState.AVAILABLE)  # no change, no message
    response = answer(client, notify(client, handle))
    assert response.response.number_of_messages == 2
    assert parse_messages(response.response) == (
        ResourceChange(ResourceState.UNAVAILABLE, "10.0.0.2"),
        ResourceChange(ResourceState.AVAILABLE, "10.0.0.2"))


@pytest.mark.parametrize("style,name", [(ResourceNameStyle.NET_NAME, "CLUSTER"),
                                        (ResourceNameStyle.GROUP, "NODE2")])
def test_resource_name_styles(clock, style, name) -> None:
    service = two_node_service(clock, resource_name_style=style)
    c = DceClient(witness_connection(service))
    c.bind()
    handle = register(c)
    service.interface_changed("NODE2", InterfaceState.UNAVAILABLE, (V4("10.0.0.2"),))
    (message,) = parse_messages(answer(c, notify(c, handle)).response)
    assert message.resource_name == name


def test_other_nodes_changes_do_not_notify(service, client) -> None:
    register(client)
    assert service.interface_changed("NODE1", InterfaceState.UNAVAILABLE).registrations == 0


def test_client_move_lists_the_destination_addresses(service, client) -> None:
    handle = register(client)
    assert notify(client, handle) == []
    assert service.client_move("HV1.EXAMPLE.COM", "node1").registrations == 1
    response = pending_answer(client)
    assert response.response.message_type == MessageType.CLIENT_MOVE
    assert parse_messages(response.response) == (IpAddrInfoList((
        IpAddrInfo(IpAddrFlags.V4 | IpAddrFlags.ONLINE, ipv4=V4("10.0.0.1")),
        IpAddrInfo(IpAddrFlags.V6 | IpAddrFlags.ONLINE, ipv6=V6("fd00::1")))),)


def test_client_move_to_an_address_and_offline_interfaces(service, client) -> None:
    handle = register(client)
    service.interface_changed("NODE1", InterfaceState.UNAVAILABLE)
    assert notify(client, handle) == []  # nothing for NODE1: not our registered IP
    service.client_move("*", "fd00::1")
    (listing,) = parse_messages(pending_answer(client).response)
    assert listing.addresses == (IpAddrInfo(IpAddrFlags.V6 | IpAddrFlags.OFFLINE,
                                            ipv6=V6("fd00::1")),)


def test_move_to_an_unknown_destination_is_refused(service, client) -> None:
    register(client)
    with pytest.raises(EventError):
        service.client_move("*", "NODE9")


def test_share_move_only_for_registrations_with_that_share(service, client) -> None:
    plain = register(client)
    with_share = register_ex(client, share="vm")
    assert service.share_move("*", "VM", "NODE1").registrations == 1
    response = answer(client, notify(client, with_share))
    assert response.response.message_type == MessageType.SHARE_MOVE
    assert notify(client, plain) == []


def test_ip_change_for_registrations_that_asked(service, client) -> None:
    asked = register_ex(client, flags=1)
    register_ex(client, flags=0)
    assert service.ip_change("*", "NODE1").registrations == 1
    response = answer(client, notify(client, asked))
    assert response.response.message_type == MessageType.IP_CHANGE
    (listing,) = parse_messages(response.response)
    assert [str(e.ipv4 if e.flags & 1 else e.ipv6) for e in listing.addresses] == [
        "10.0.0.1", "fd00::1"]


def test_interface_event_also_queues_ip_change(service, client) -> None:
    handle = register_ex(client, flags=1)
    service.interface_changed("NODE1", InterfaceState.UNAVAILABLE)
    response = answer(client, notify(client, handle))
    assert response.response.message_type == MessageType.IP_CHANGE
    (listing,) = parse_messages(response.response)
    assert all(e.flags & IpAddrFlags.OFFLINE for e in listing.addresses)


def test_resource_change_comes_before_move_in_separate_answers(service, client) -> None:
    handle = register(client)
    service.client_move("*", "NODE1")
    service.interface_changed("NODE2", InterfaceState.UNAVAILABLE)
    first = answer(client, notify(client, handle)).response.message_type
    second = answer(client, notify(client, handle)).response.message_type
    assert (first, second) == (MessageType.RESOURCE_CHANGE, MessageType.CLIENT_MOVE)


def test_new_interface_from_an_event(service) -> None:
    service.interface_changed("NODE3", InterfaceState.AVAILABLE, (V4("10.0.0.3"),))
    assert service.interfaces[-1].interface_group_name == "NODE3"
    assert service.interfaces[-1].state == InterfaceState.AVAILABLE


# -- timers ([MS-SWN] 3.1.5) ---------------------------------------------------------------

def test_keep_alive_zero_times_out_at_the_next_tick(service, clock, client) -> None:
    handle = register_ex(client, timeout=0)
    assert notify(client, handle) == []
    service.tick()
    assert client.conn.pdus_to_send() == []  # not yet later than LastUseTime + 0
    clock.now += 0.25
    service.tick()
    assert pending_answer(client) == AsyncNotifyResponse(None, Win32Error.TIMEOUT)


def test_keep_alive_timeout(service, clock, client) -> None:
    handle = register_ex(client, timeout=10)
    assert notify(client, handle) == []
    clock.now += 9
    service.tick()
    assert client.conn.pdus_to_send() == []
    clock.now += 2
    service.tick()
    assert pending_answer(client).return_value == Win32Error.TIMEOUT
    assert notify(client, handle) == []  # the client re-issues; the registration lives


def test_v1_registration_has_no_keep_alive(service, clock, client) -> None:
    handle = register(client)
    assert notify(client, handle) == []
    clock.now += 3600
    service.tick()
    assert client.conn.pdus_to_send() == [] and len(service.registrations) == 1


def test_unused_registration_expires_after_30_seconds(service, clock, client) -> None:
    register_ex(client)
    clock.now += 30
    service.tick()
    assert len(service.registrations) == 1
    clock.now += 1
    service.tick()
    assert service.registrations == {}


def test_forced_unregistration_after_unavailable(service, clock, client) -> None:
    handle = register_ex(client)
    assert notify(client, handle) == []
    service.interface_changed("NODE2", InterfaceState.UNAVAILABLE)
    assert pending_answer(client).return_value == 0
    assert notify(client, handle) == []
    clock.now += 5
    service.tick()
    assert pending_answer(client) == AsyncNotifyResponse(None, Win32Error.NOT_FOUND)
    assert service.registrations == {}


def test_no_forced_unregistration_when_the_move_keeps_the_address(service, clock,
                                                                  client) -> None:
    handle = register_ex(client)
    service.client_move("*", "NODE2")
    answer(client, notify(client, handle))
    assert notify(client, handle) == []
    clock.now += 60
    service.tick()
    assert len(service.registrations) == 1


def test_forced_unregistration_can_be_disabled(clock) -> None:
    service = two_node_service(clock, forced_unregister_after_s=0)
    c = DceClient(witness_connection(service))
    c.bind()
    handle = register_ex(c)
    service.interface_changed("NODE2", InterfaceState.UNAVAILABLE)
    answer(c, notify(c, handle))
    assert notify(c, handle) == []
    clock.now += 60
    service.tick()
    assert len(service.registrations) == 1


# -- associations, cancellation, errors -------------------------------------------------------

def test_handles_belong_to_their_association(service) -> None:
    groups = AssociationGroups()
    first = DceClient(witness_connection(service, groups))
    first.bind()
    handle = register(first)
    other = DceClient(witness_connection(service, groups))
    other.bind()
    assert answer(other, notify(other, handle)).return_value == Win32Error.NOT_FOUND
    joined = DceClient(witness_connection(service, groups), assoc_group_id=first.assoc_group_id)
    joined.bind()
    assert notify(joined, handle) == []  # same association: allowed
    service.interface_changed("NODE2", InterfaceState.UNAVAILABLE)
    assert pending_answer(joined).return_value == 0


def test_association_rundown_deletes_registrations(service, client) -> None:
    handle = register(client)
    assert notify(client, handle) == []
    client.conn.close()
    assert service.registrations == {}
    assert all(not r.waiters for r in service.registrations.values())


def test_co_cancel_answers_the_pending_notify(service, client) -> None:
    handle = register(client)
    assert notify(client, handle) == []
    call_id = client.call_id
    client.conn.receive_data(CoCancel(call_id=call_id).encode())
    (fault,) = client.conn.pdus_to_send()
    assert decode_pdu(fault).call_id == call_id
    assert fault_status(fault) == FaultStatus.NCA_S_FAULT_CANCEL
    registration = service.registrations[handle.uuid]
    assert not registration.waiters and not registration.is_async_notify_registered


def test_orphaned_drops_the_pending_notify_silently(service, client) -> None:
    handle = register(client)
    assert notify(client, handle) == []
    client.conn.receive_data(Orphaned(call_id=client.call_id).encode())
    assert client.conn.pdus_to_send() == []
    service.interface_changed("NODE2", InterfaceState.UNAVAILABLE)
    assert client.conn.pdus_to_send() == []  # kept for the next AsyncNotify
    assert answer(client, notify(client, handle)).response.number_of_messages == 1


def test_unknown_opnum_faults_with_op_rng_error(client) -> None:
    (fault,) = client._send(client.request_pdu(6, b""))
    assert fault_status(fault) == FaultStatus.NCA_S_OP_RNG_ERROR


def test_garbage_stub_faults_with_bad_stub_data(client) -> None:
    (fault,) = client._send(client.request_pdu(1, b"\x01\x00"))
    assert fault_status(fault) == 0x6F7
