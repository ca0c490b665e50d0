"""Fixtures for the tests that run inside the lab guest.

These tests run only in the guest, started from the host by
``labvm.run_in_guest(["tests/lab/guest_tests/FILE.py"], timeout)`` (the
host's pytest never collects this directory; see ``tests/lab/conftest.py``).
Collected anywhere else, they skip.

- ``lab_map`` (session): the LUN map, ``guestlab.LabMap``;
- ``luns`` (function): the same map, after ``guestlab.reset_luns``: no
  reservations, registrations or pending unit attentions;
- ``nodes`` (function): ``guestlab.NetnsPair``, two network namespaces joined
  by two veth links; processes started through it are killed at teardown.
"""

import os

import pytest

import guestlab


def pytest_collection_modifyitems(items):
    if os.environ.get("LAB_GUEST") == "1":
        return
    skip = pytest.mark.skip(reason="runs only inside the lab guest (labvm.run_in_guest)")
    for item in items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def lab_map() -> guestlab.LabMap:
    return guestlab.load_map()


@pytest.fixture
def luns(lab_map) -> guestlab.LabMap:
    guestlab.reset_luns(lab_map)
    return lab_map


@pytest.fixture
def nodes():
    pair = guestlab.NetnsPair()
    try:
        yield pair
    finally:
        pair.close()
