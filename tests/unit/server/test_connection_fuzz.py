"""Fuzz the connection core (issue 2: no exception escapes a connection, the
server keeps answering well-formed requests afterwards)."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from smbcad.proto.constants import Command
from smbcad.proto.header import Smb2Header
from tests.unit.proto import wire
from tests.unit.server.harness import Client, connected_client, make_server, status_of

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture
def server(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "f.txt").write_bytes(b"x" * 100)
    # Unsigned requests allowed, so mutated bodies reach decoders and handlers.
    return make_server(str(share), str(tmp_path / "state"), signing_required=False)


def _still_serves(server) -> None:
    client = connected_client(server)
    reply = client.request(Command.ECHO, struct.pack("<HH", 4, 0))
    assert status_of(reply) == 0


@FUZZ
@given(st.binary(min_size=0, max_size=600))
def test_random_frames_before_negotiate(server, frame):
    client = Client(server)
    client.exchange(frame)          # must not raise, whatever it does to this connection
    _still_serves(server)


def _valid_bodies():
    return [
        (Command.CREATE, wire.create_request("f.txt")),
        (Command.CREATE, wire.create_request("d", disposition=2, options=1)),
        (Command.READ, wire.read_request(1, 1, 10, 0)),
        (Command.WRITE, wire.write_request(1, 1, 0, b"data")),
        (Command.CLOSE, wire.close_request(1, 1)),
        (Command.QUERY_DIRECTORY, wire.query_directory_request(1, 1)),
        (Command.TREE_CONNECT, struct.pack("<HHHH", 9, 0, 72, 8) + "\\\\a\\b".encode("utf-16-le")),
        (Command.SESSION_SETUP, struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, 4, 0) + b"NTLM"),
        (Command.ECHO, struct.pack("<HH", 4, 0)),
    ]


@FUZZ
@given(index=st.integers(0, 8), flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                                max_size=8),
       cut=st.integers(0, 400), command=st.integers(0, 0x13))
def test_mutated_requests_after_login(server, caplog, index, flips, cut, command):
    caplog.clear()
    client = connected_client(server)
    real_command, body = _valid_bodies()[index]
    data = bytearray(body)
    for position, value in flips:
        if position < len(data):
            data[position] = value
    data = data[:cut] if cut < len(data) else data
    header = Smb2Header(command=command if flips else real_command, message_id=client.message_id,
                        credits=8, session_id=client.session_id, tree_id=client.tree_id)
    client.message_id += 1
    client.exchange(header.encode() + bytes(data))
    if not client.sink.closed:
        reply = client.request(Command.ECHO, struct.pack("<HH", 4, 0))
        assert status_of(reply) == 0
    # A handler that raised something other than SmbError is a bug, even though
    # the connection survived it (it answered STATUS_INTERNAL_ERROR).
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    _still_serves(server)


@FUZZ
@given(st.binary(min_size=64, max_size=300))
def test_random_compounds_after_login(server, tail):
    client = connected_client(server)
    header = Smb2Header(command=Command.ECHO, message_id=client.message_id, credits=8,
                        next_command=72, session_id=client.session_id)
    client.message_id += 1
    client.exchange(header.encode() + struct.pack("<HH", 4, 0) + b"\x00" * 4 + tail)
    _still_serves(server)
