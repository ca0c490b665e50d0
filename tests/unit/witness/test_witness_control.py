"""The control protocol: JSON events onto the service, answers back (sans-IO)."""

import ipaddress
import json
from uuid import UUID

import pytest

from witnessd.control import (
    MAX_LINE_BYTES,
    ControlError,
    ControlSession,
    InterfaceEvent,
    MoveEvent,
    StatusRequest,
    UnregisterEvent,
    handle_line,
    parse_event,
)
from witnessd.notify import _parser, request_of
from witnessd.swn import InterfaceState

from .client import (
    DceClient,
    notify,
    pending_answer,
    register,
    two_node_service,
    witness_connection,
)


@pytest.mark.parametrize("message,event", [
    ({"event": "node", "node": "NODE2", "state": "down"},
     InterfaceEvent("NODE2", InterfaceState.UNAVAILABLE)),
    ({"event": "interface", "group": "NODE3", "state": "online", "ipv4": "10.0.0.3",
      "ipv6": "fd00::3"},
     InterfaceEvent("NODE3", InterfaceState.AVAILABLE, (ipaddress.ip_address("10.0.0.3"),
                                                        ipaddress.ip_address("fd00::3")))),
    ({"event": "client-move", "client": "*", "destination": "NODE1"},
     MoveEvent("client-move", "*", "NODE1")),
    ({"event": "share-move", "client": "hv1", "share": "vm", "destination": "10.0.0.1"},
     MoveEvent("share-move", "hv1", "10.0.0.1", "vm")),
    ({"event": "unregister", "registration": "00000000-0000-0000-0000-000000000001"},
     UnregisterEvent(UUID(int=1))),
    ({"event": "status"}, StatusRequest()),
])
def test_parse_event(message, event) -> None:
    assert parse_event(message) == event


@pytest.mark.parametrize("message,error", [
    ([], "JSON object"),
    ({"event": "reboot"}, "unknown event"),
    ({"event": "node", "node": "N"}, "'state'"),
    ({"event": "node", "node": "", "state": "up"}, "'node'"),
    ({"event": "interface", "group": "N", "state": "up", "ipv4": "fd00::1"}, "IPv4"),
    ({"event": "interface", "group": "N", "state": "up", "ipv6": "nope"}, "not an IP"),
    ({"event": "share-move", "client": "*", "destination": "N"}, "'share'"),
    ({"event": "unregister", "registration": "x"}, "UUID"),
])
def test_parse_event_errors(message, error) -> None:
    with pytest.raises(ControlError, match=error):
        parse_event(message)


def test_events_reach_a_pending_notify() -> None:
    service = two_node_service()
    client = DceClient(witness_connection(service))
    client.bind()
    handle = register(client)
    assert notify(client, handle) == []
    seen = []
    line = json.dumps({"event": "node", "node": "NODE2", "state": "down"}).encode()
    assert json.loads(handle_line(service, line, seen.append)) == {"ok": True,
                                                                   "registrations": 1}
    assert seen == ["node"] and pending_answer(client).return_value == 0
    status = json.loads(handle_line(service, b'{"event": "status"}'))
    assert status["interfaces"][1] == {"group": "NODE2", "state": "unavailable",
                                       "ipv4": "10.0.0.2", "ipv6": None, "local": False}
    (registration,) = status["registrations"]
    assert registration["client"] == "hv1.example.com" and registration["version"] == \
        "0x00010001"
    forced = {"event": "unregister", "registration": registration["registration"]}
    assert json.loads(handle_line(service, json.dumps(forced).encode()))["ok"]
    assert service.registrations == {}


def test_takeover_makes_the_partner_address_local() -> None:
    service = two_node_service()
    event = {"event": "interface", "group": "NODE2", "state": "up", "ipv4": "10.0.0.2",
             "local": True}
    assert json.loads(handle_line(service, json.dumps(event).encode()))["ok"]
    assert [i.flags & 4 for i in service._interface_list().interface_info] == [0, 0]
    with pytest.raises(ControlError):
        parse_event(dict(event, local="yes"))


def test_errors_are_answered_not_raised() -> None:
    service = two_node_service()
    assert json.loads(handle_line(service, b"{nope")) ["ok"] is False
    answer = json.loads(handle_line(service, b'{"event": "client-move", "client": "*", '
                                             b'"destination": "NODE9"}'))
    assert answer == {"ok": False, "error": "destination 'NODE9' names no interface"}


def test_session_framing() -> None:
    session = ControlSession(two_node_service())
    assert session.receive_data(b'{"event": "sta') == b""
    out = session.receive_data(b'tus"}\n\n{"event": "x"}\n')
    assert [json.loads(line)["ok"] for line in out.splitlines()] == [True, False]
    assert session.receive_data(b"x" * (MAX_LINE_BYTES + 1)).endswith(b"too long\"}\n")
    assert session.closed


@pytest.mark.parametrize("argv,message", [
    (["node", "NODE1", "down"], {"event": "node", "node": "NODE1", "state": "down"}),
    (["client-move", "NODE2"], {"event": "client-move", "destination": "NODE2", "client": "*"}),
    (["share-move", "--share", "vm", "--client", "hv1", "NODE2"],
     {"event": "share-move", "destination": "NODE2", "client": "hv1", "share": "vm"}),
    (["interface", "NODE3", "up", "--ipv4", "10.0.0.3"],
     {"event": "interface", "group": "NODE3", "state": "up", "ipv4": "10.0.0.3"}),
    (["interface", "NODE2", "up", "--ipv4", "10.0.0.2", "--local", "yes"],
     {"event": "interface", "group": "NODE2", "state": "up", "ipv4": "10.0.0.2",
      "local": True}),
])
def test_notify_cli_builds_events_the_service_understands(argv, message) -> None:
    built = request_of(_parser().parse_args(["--socket", "/x", *argv]))
    assert built == message
    parse_event(built)
