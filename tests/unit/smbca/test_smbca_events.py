"""Typed inter-daemon events: every class round-trips through its JSON form,
the forms other daemons and tests already speak are read, and bad fields
are named."""

import ipaddress

import pytest

from smbca import events
from smbca.control import ControlError

EVENTS = [
    events.AggregateAdopt("aggr1", "/srv/aggr1", 1),
    events.AggregateRelease("aggr1", "/srv/aggr1", 2, planned=True),
    events.AggregateRelease("aggr1", "/srv/aggr1", 2),
    events.InterfaceState("NODE2", events.Availability.UNAVAILABLE),
    events.InterfaceState("NODE3", events.Availability.AVAILABLE,
                          (ipaddress.ip_address("10.0.0.3"), ipaddress.ip_address("fd00::3")),
                          local=True),
    events.ClientMove("*", "NODE1"),
    events.ShareMove("hv1", "vm", "10.0.0.1"),
    events.IpChange("hv1", "NODE2"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_round_trip(event):
    message = event.to_json()
    assert events.is_event(message)
    assert events.from_json(message) == event


@pytest.mark.parametrize("message,event", [
    ({"type": "aggregate", "event": "adopt", "aggregate": "aggr1", "mount_point": "/srv/aggr1",
      "node": 1}, events.AggregateAdopt("aggr1", "/srv/aggr1", 1)),
    ({"type": "aggregate", "event": "release", "aggregate": "aggr1",
      "mount_point": "/srv/aggr1", "node": 1},
     events.AggregateRelease("aggr1", "/srv/aggr1", 1, planned=False)),
    ({"event": "node", "node": "NODE2", "state": "down"},
     events.InterfaceState("NODE2", events.Availability.UNAVAILABLE)),
    ({"event": "interface", "group": "a", "state": "online", "ipv4": "192.0.2.10"},
     events.InterfaceState("a", events.Availability.AVAILABLE,
                           (ipaddress.ip_address("192.0.2.10"),))),
    ({"event": "client-move", "client": "*", "destination": "NODE1"},
     events.ClientMove("*", "NODE1")),
    ({"event": "share-move", "client": "hv1", "share": "vm", "destination": "10.0.0.1"},
     events.ShareMove("hv1", "vm", "10.0.0.1")),
])
def test_wire_forms_in_use(message, event):
    assert events.from_json(message) == event


def test_the_interface_form_clusdisk_sends():
    event = events.InterfaceState("a", events.Availability.AVAILABLE,
                                  (ipaddress.ip_address("192.0.2.10"),))
    assert event.to_json() == {"event": "interface", "group": "a", "state": "available",
                               "ipv4": "192.0.2.10"}


@pytest.mark.parametrize("message,error", [
    ([], "JSON object"),
    ({"event": "reboot"}, "unknown event"),
    ({"type": "aggregate", "event": "interface"}, "unknown event"),
    ({"event": "node", "node": "N"}, "'state'"),
    ({"event": "node", "node": "", "state": "up"}, "'node'"),
    ({"event": "interface", "group": "N", "state": "up", "ipv4": "fd00::1"}, "IPv4"),
    ({"event": "interface", "group": "N", "state": "up", "ipv6": "nope"}, "not an IP"),
    ({"event": "interface", "group": "N", "state": "up", "local": "yes"}, "'local'"),
    ({"event": "share-move", "client": "*", "destination": "N"}, "'share'"),
    ({"type": "aggregate", "event": "adopt", "aggregate": "a", "mount_point": "/a",
      "node": "1"}, "'node'"),
    ({"type": "aggregate", "event": "release", "aggregate": "a", "mount_point": "/a",
      "node": 1, "planned": "yes"}, "'planned'"),
])
def test_errors_name_the_field(message, error):
    with pytest.raises(ControlError, match=error):
        events.from_json(message)
