"""witnessd's control requests: JSON events onto the service, answers back (sans-IO)."""

import asyncio
import ipaddress
import json
from uuid import UUID

import pytest

from smbca import events
from smbca.admin import _parser, request_of
from smbca.control import ControlError, answer
from witnessd.control import (
    StatusRequest,
    UnregisterRequest,
    control_handler,
    parse_request,
)

from .client import (
    DceClient,
    notify,
    pending_answer,
    register,
    two_node_service,
    witness_connection,
)


def reply_to(handler, line: bytes) -> dict:
    return json.loads(asyncio.run(answer(handler, line)))


@pytest.mark.parametrize("message,request_", [
    ({"event": "node", "node": "NODE2", "state": "down"},
     events.InterfaceState("NODE2", events.Availability.UNAVAILABLE)),
    ({"event": "client-move", "client": "*", "destination": "NODE1"},
     events.ClientMove("*", "NODE1")),
    ({"event": "client-move", "client": "*", "destination": "NODE1",
      "addresses": ["10.0.0.2"]},
     events.ClientMove("*", "NODE1", (ipaddress.ip_address("10.0.0.2"),))),
    ({"event": "unregister", "registration": "00000000-0000-0000-0000-000000000001"},
     UnregisterRequest(UUID(int=1))),
    ({"event": "status"}, StatusRequest()),
])
def test_parse_request(message, request_) -> None:
    assert parse_request(message) == request_


@pytest.mark.parametrize("message,error", [
    ({"event": "reboot"}, "unknown event"),
    ({"event": "client-move", "client": "*", "destination": "N", "addresses": "10.0.0.2"},
     "'addresses'"),
    ({"event": "client-move", "client": "*", "destination": "N", "addresses": ["x"]},
     "'addresses'"),
    ({"event": "unregister", "registration": "x"}, "UUID"),
    ({"type": "aggregate", "event": "adopt", "aggregate": "a", "mount_point": "/a", "node": 1},
     "go to smbcad"),
])
def test_parse_request_errors(message, error) -> None:
    with pytest.raises(ControlError, match=error):
        parse_request(message)


def test_events_reach_a_pending_notify() -> None:
    service = two_node_service()
    client = DceClient(witness_connection(service))
    client.bind()
    handle = register(client)
    assert notify(client, handle) == []
    seen = []
    handler = control_handler(service, seen.append)
    line = json.dumps({"event": "node", "node": "NODE2", "state": "down"}).encode()
    assert reply_to(handler, line) == {"ok": True, "registrations": 1}
    assert seen == ["node"] and pending_answer(client).return_value == 0
    status = reply_to(handler, b'{"event": "status"}')
    assert status["interfaces"][1] == {"group": "NODE2", "state": "unavailable",
                                       "ipv4": "10.0.0.2", "ipv6": None, "local": False}
    (registration,) = status["registrations"]
    assert registration["client"] == "hv1.example.com" and registration["version"] == \
        "0x00010001"
    forced = {"event": "unregister", "registration": registration["registration"]}
    assert reply_to(handler, json.dumps(forced).encode())["ok"]
    assert service.registrations == {}
    assert seen == ["node", "status", "unregister"]


def test_takeover_makes_the_partner_address_local() -> None:
    service = two_node_service()
    event = {"event": "interface", "group": "NODE2", "state": "up", "ipv4": "10.0.0.2",
             "local": True}
    assert reply_to(control_handler(service), json.dumps(event).encode())["ok"]
    assert [i.flags & 4 for i in service._interface_list().interface_info] == [0, 0]


def test_errors_are_answered_not_raised() -> None:
    service = two_node_service()
    seen = []
    handler = control_handler(service, seen.append)
    assert reply_to(handler, b"{nope")["ok"] is False
    reply = reply_to(handler, b'{"event": "client-move", "client": "*", '
                              b'"destination": "NODE9"}')
    assert reply == {"ok": False, "error": "destination 'NODE9' names no interface"}
    assert seen == []                       # refused requests are not counted


@pytest.mark.parametrize("argv,message", [
    (["node", "NODE1", "down"], {"event": "node", "node": "NODE1", "state": "down"}),
    (["client-move", "NODE2"], {"event": "client-move", "destination": "NODE2", "client": "*"}),
    (["client-move", "--address", "10.0.0.2", "NODE1"],
     {"event": "client-move", "destination": "NODE1", "client": "*",
      "addresses": ["10.0.0.2"]}),
    (["share-move", "--share", "vm", "--client", "hv1", "NODE2"],
     {"event": "share-move", "destination": "NODE2", "client": "hv1", "share": "vm"}),
    (["interface", "NODE3", "up", "--ipv4", "10.0.0.3"],
     {"event": "interface", "group": "NODE3", "state": "up", "ipv4": "10.0.0.3"}),
    (["interface", "NODE2", "up", "--ipv4", "10.0.0.2", "--local", "yes"],
     {"event": "interface", "group": "NODE2", "state": "up", "ipv4": "10.0.0.2",
      "local": True}),
    (["unregister", "00000000-0000-0000-0000-000000000001"],
     {"event": "unregister", "registration": "00000000-0000-0000-0000-000000000001"}),
])
def test_admin_notify_builds_requests_witnessd_understands(argv, message) -> None:
    built = request_of(_parser().parse_args(["witness", "notify", "--socket", "/x", *argv]))
    assert built == message
    parse_request(built)


@pytest.mark.parametrize("event", [
    events.InterfaceState("NODE2", events.Availability.UNAVAILABLE,
                          (ipaddress.ip_address("10.0.0.2"),)),
    events.ClientMove("*", "NODE1"),
    events.ClientMove("*", "NODE1", (ipaddress.ip_address("10.0.0.2"),)),
    events.ShareMove("*", "vm", "NODE1"),
    events.IpChange("*", "NODE1"),
])
def test_what_clusdisk_sends_is_what_witnessd_applies(event) -> None:
    handler = control_handler(two_node_service())
    reply = reply_to(handler, json.dumps(event.to_json()).encode())
    assert reply == {"ok": True, "registrations": 0}
