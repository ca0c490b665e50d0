"""witnessd in a pair: a LIF address is one interface whichever node hosts it, moves
reach the clients of the moving LIFs, a reload keeps registrations ([MS-SWN] 3.1.6).

The service plays node B's witnessd (NODE2 local, so clients of NODE1's LIF
10.0.0.1 register here); events are what clusdisk on either node posts.
"""

import ipaddress

import pytest

from witnessd.swn import (
    EventError,
    Interface,
    InterfaceFlags,
    InterfaceState,
    IpAddrFlags,
    IpAddrInfo,
    IpAddrInfoList,
    MessageType,
    ResourceChange,
    ResourceNameStyle,
    ResourceState,
    WitnessService,
    WitnessSettings,
    parse_messages,
)

from .client import DceClient, FakeClock, Uuids, answer, notify, pending_answer, register, \
    witness_connection

V4 = ipaddress.IPv4Address
UNAVAILABLE, AVAILABLE = InterfaceState.UNAVAILABLE, InterfaceState.AVAILABLE
LIF1, LIF2 = V4("10.0.0.1"), V4("10.0.0.2")


def settings(**overrides) -> WitnessSettings:
    values = dict(server_global_names=("CLUSTER",), nodes=("NODE1", "NODE2"),
                  local_node="NODE2", forced_unregister_after_s=0)
    values.update(overrides)
    return WitnessSettings(**values)


def interfaces() -> list[Interface]:
    return [Interface("NODE1", AVAILABLE, LIF1),
            Interface("NODE2", AVAILABLE, LIF2, local=True)]


@pytest.fixture
def service() -> WitnessService:
    return WitnessService(settings(), interfaces(), clock=FakeClock(), new_uuid=Uuids())


@pytest.fixture
def client(service) -> DceClient:
    c = DceClient(witness_connection(service))
    c.bind()
    return c


def witness_flags(service: WitnessService) -> dict[str, int]:
    return {str(info.ipv4): info.flags & InterfaceFlags.INTERFACE_WITNESS
            for info in service._interface_list().interface_info}


def test_takeover_moves_the_lif_instead_of_adding_an_interface(service, client) -> None:
    handle = register(client, ip="10.0.0.1")
    assert notify(client, handle) == []
    # clusdisk (either node) announces NODE1's LIF gone, then up under NODE2
    assert service.interface_changed("NODE1", UNAVAILABLE, (LIF1,)).registrations == 1
    assert parse_messages(pending_answer(client).response) == (
        ResourceChange(ResourceState.UNAVAILABLE, "10.0.0.1"),)
    assert notify(client, handle) == []
    assert service.interface_changed("node2", AVAILABLE, (LIF1,)).registrations == 1
    assert parse_messages(pending_answer(client).response) == (
        ResourceChange(ResourceState.AVAILABLE, "10.0.0.1"),)
    assert [(i.interface_group_name, i.addresses, i.local) for i in service.interfaces] == [
        ("NODE2", (LIF1,), True), ("NODE2", (LIF2,), True)]
    assert witness_flags(service) == {"10.0.0.1": 0, "10.0.0.2": 0}


def test_a_lif_moving_while_available_is_reported_gone_first(service, client) -> None:
    handle = register(client, ip="10.0.0.1")
    service.interface_changed("NODE2", AVAILABLE, (LIF1,))
    assert parse_messages(answer(client, notify(client, handle)).response) == (
        ResourceChange(ResourceState.UNAVAILABLE, "10.0.0.1"),
        ResourceChange(ResourceState.AVAILABLE, "10.0.0.1"))
    # giveback: it moves home again, becomes a witness address again
    service.interface_changed("NODE1", AVAILABLE, (LIF1,))
    assert len(parse_messages(answer(client, notify(client, handle)).response)) == 2
    assert witness_flags(service) == {"10.0.0.1": InterfaceFlags.INTERFACE_WITNESS,
                                      "10.0.0.2": 0}
    assert len(service.interfaces) == 2


def test_group_resource_names_follow_the_move() -> None:
    service = WitnessService(settings(resource_name_style=ResourceNameStyle.GROUP),
                             interfaces(), clock=FakeClock(), new_uuid=Uuids())
    c = DceClient(witness_connection(service))
    c.bind()
    handle = register(c, ip="10.0.0.1")
    service.interface_changed("NODE2", AVAILABLE, (LIF1,))
    assert [m.resource_name for m in parse_messages(answer(c, notify(c, handle)).response)] \
        == ["NODE1", "NODE2"]


def test_explicit_local_overrides_the_group(service) -> None:
    service.interface_changed("NODE1", AVAILABLE, (LIF2,), local=True)
    assert [(i.interface_group_name, i.local) for i in service.interfaces] == [
        ("NODE1", False), ("NODE1", True)]


def test_a_node_without_interfaces_is_no_error(service) -> None:
    service.interface_changed("NODE2", AVAILABLE, (LIF1,))           # NODE1 has none left
    assert service.interface_changed("NODE1", UNAVAILABLE).registrations == 0
    with pytest.raises(EventError):
        service.interface_changed("NODE9", UNAVAILABLE)


def test_client_move_for_everyone_reaches_the_clients_of_a_moved_lif(service, client) -> None:
    """Planned relocation: LIF1 moves to NODE2, then every client is told to go there."""
    handle = register(client, ip="10.0.0.1")
    service.interface_changed("NODE2", AVAILABLE, (LIF1,))
    answer(client, notify(client, handle))
    assert notify(client, handle) == []
    assert service.client_move("*", "NODE2").registrations == 1
    response = pending_answer(client).response
    assert response.message_type == MessageType.CLIENT_MOVE
    assert parse_messages(response) == (IpAddrInfoList((
        IpAddrInfo(IpAddrFlags.V4 | IpAddrFlags.ONLINE, ipv4=LIF1),
        IpAddrInfo(IpAddrFlags.V4 | IpAddrFlags.ONLINE, ipv4=LIF2))),)


def test_client_move_naming_the_moving_lifs_leaves_the_others_alone(service, client) -> None:
    on_lif1 = register(client, ip="10.0.0.1", name="hv1")
    other = DceClient(witness_connection(service))
    other.bind()
    on_lif2 = register(other, ip="10.0.0.2", name="hv2")
    assert service.client_move("*", "10.0.0.1", (LIF1,)).registrations == 1
    assert answer(client, notify(client, on_lif1)).response.message_type == \
        MessageType.CLIENT_MOVE
    assert notify(other, on_lif2) == []              # LIF2 does not move: nothing for hv2
    assert service.client_move("hv2", "NODE2", (LIF1,)).registrations == 0


def test_reload_keeps_registrations_and_where_the_lifs_are(service, client) -> None:
    handle = register(client, ip="10.0.0.1")
    service.interface_changed("NODE2", UNAVAILABLE, (LIF1,))      # taken over, not yet up
    answer(client, notify(client, handle))
    lif3 = V4("10.0.0.3")
    service.reconfigure(settings(server_global_names=("CLUSTER", "ALIAS")),
                        interfaces() + [Interface("NODE1", AVAILABLE, lif3)])
    assert [(i.interface_group_name, i.addresses, i.state, i.local)
            for i in service.interfaces] == [
        ("NODE2", (LIF1,), UNAVAILABLE, True), ("NODE2", (LIF2,), AVAILABLE, True),
        ("NODE1", (lif3,), AVAILABLE, False)]
    assert service.settings.net_name_matches("alias")
    assert notify(client, handle) == []                          # still registered
    service.interface_changed("NODE2", AVAILABLE, (LIF1,))
    assert parse_messages(pending_answer(client).response) == (
        ResourceChange(ResourceState.AVAILABLE, "10.0.0.1"),)


def test_reload_that_changes_the_local_node_recomputes_local(service) -> None:
    service.reconfigure(settings(local_node="NODE1"), interfaces())
    assert [i.local for i in service.interfaces] == [True, False]
    service.reconfigure(settings(local_node="NODE1"), interfaces()[:1])
    assert [i.addresses for i in service.interfaces] == [(LIF1,)]
