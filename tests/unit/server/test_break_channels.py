"""Breaks on a session with several channels ([MS-SMB2] 3.3.4.6, 3.3.4.7;
smbcad/server/channels.py, leases.py): which channel a break goes on, and
what happens when that channel's client stops acknowledging TCP.

Real Connections on one loop, a bound second channel, and sinks that model
the client's TCP (``MemorySink.stall``); timers are fakes the test fires.
"""

import asyncio
import uuid

import pytest

from smbcad import crypto
from smbcad.proto.constants import SigningAlgorithmId
from tests.unit.server.test_leases import (
    BATCH, LEASE, LEVEL_II, RH, RWH, LoopClient, create, created, lease_ack, lease_break,
    leasing_server, settle)
from tests.unit.server.test_multichannel import _bind

KEY = uuid.uuid4().bytes
RTO_S = 0.25
WATCH_S = 6 * RTO_S            # six retransmission timeouts, as Samba's smbd


def _client(server, loop, client_guid=None) -> LoopClient:
    client = LoopClient(server, loop)
    client.sink.rto_s = RTO_S
    client.client_guid = client_guid or uuid.uuid4().bytes
    client.negotiate()
    return client


def _bound(server, loop, first: LoopClient) -> LoopClient:
    second = _client(server, loop, first.client_guid)
    status, _, key = _bind(second, first)
    assert status == 0
    second.session_id, second.tree_id = first.session_id, first.tree_id
    second.signer = crypto.make_signer(SigningAlgorithmId.AES_GMAC, key)
    return second


@pytest.fixture
def world(tmp_path):
    """``one`` and ``one_b``: two channels of a session; ``two``: another client."""
    loop = asyncio.new_event_loop()
    server, timers = leasing_server(tmp_path, loop)
    server.leasing.server = server
    one = _client(server, loop)
    one.session_setup()
    assert one.tree_connect() == 0
    one_b = _bound(server, loop, one)
    two = _client(server, loop)
    two.session_setup()
    assert two.tree_connect() == 0
    yield server, one, one_b, two, timers
    loop.close()


def _fire(timers, delay: float, loop) -> None:
    """Fire the pending timers of ``delay`` seconds only."""
    due = [timer for timer in timers.pending if timer.delay == pytest.approx(delay)]
    timers.pending = [timer for timer in timers.pending if timer not in due]
    for timer in due:
        if not timer.cancelled:
            timer.callback()
    settle(loop)


def test_an_oplock_break_goes_to_the_newest_channel(world):
    """Windows sends it on the session's latest channel (smbtorture
    smb2.multichannel.oplocks.test3_windows), not on the open's own."""
    server, one, one_b, two, timers = world
    level, file_id, _ = created(one.final(create(one, "f", oplock=BATCH)))
    assert level == BATCH
    mid = create(two, "f", oplock=BATCH)
    assert two.final(mid) is None
    assert one.breaks() == [] and len(one_b.breaks()) == 1


def test_an_oplock_break_skips_a_closed_channel(world):
    server, one, one_b, two, timers = world
    created(one.final(create(one, "f", oplock=BATCH)))
    one_b.conn.connection_lost()
    create(two, "f", oplock=BATCH)
    assert len(one.breaks()) == 1 and one_b.breaks() == []


def test_an_oplock_break_the_channel_does_not_take_in_closes_it_and_is_not_resent(world):
    """The channel has stopped responding: it goes; Windows does not send the
    oplock break again, so the CREATE waits out the acknowledgment timer."""
    server, one, one_b, two, timers = world
    created(one.final(create(one, "f", oplock=BATCH)))
    one_b.sink.stall()
    mid = create(two, "f", oplock=BATCH)
    assert len(one_b.breaks()) == 1
    _fire(timers, WATCH_S, one.loop)
    assert one_b.conn.closed and not one.conn.closed
    assert one.breaks() == [] and two.final(mid) is None
    _fire(timers, 35.0, one.loop)
    level, _, _ = created(two.final(mid))
    assert level == LEVEL_II


def test_a_lease_break_the_channel_does_not_take_in_goes_again_on_the_next(world):
    """3.3.4.7, smbtorture smb2.multichannel.leases.test2/test4: the oldest
    channel first; when its TCP leaves the notification unacknowledged, it
    is closed and the same notification (same epoch) goes on the next."""
    server, one, one_b, two, timers = world
    created(one.final(create(one, "f", oplock=LEASE, lease=(KEY, RWH))))
    one.sink.stall()
    mid = create(two, "f")
    (first_try,) = one.breaks()
    assert one_b.breaks() == []
    _fire(timers, WATCH_S, one.loop)
    assert one.conn.closed and one.sink.was_reset
    (second_try,) = one_b.breaks()
    assert lease_break(second_try) == lease_break(first_try)
    assert two.final(mid) is None
    lease_ack(one_b, KEY, RH)
    level, _, _ = created(two.final(mid))
    assert level == 0


def test_a_lease_break_taken_in_is_not_sent_again(world):
    server, one, one_b, two, timers = world
    created(one.final(create(one, "f", oplock=LEASE, lease=(KEY, RWH))))
    mid = create(two, "f")
    _fire(timers, WATCH_S, one.loop)
    assert not one.conn.closed
    assert len(one.breaks()) == 1 and one_b.breaks() == []
    lease_ack(one, KEY, RH)
    assert created(two.final(mid))[0] == 0


def test_an_acknowledged_lease_break_is_not_sent_again_when_its_channel_dies(world):
    """The client answered on another channel (smb2.multichannel.leases.test3)
    before the first one was found dead: nothing more to send."""
    server, one, one_b, two, timers = world
    created(one.final(create(one, "f", oplock=LEASE, lease=(KEY, RWH))))
    one.sink.stall()
    mid = create(two, "f")
    lease_ack(one_b, KEY, RH)
    assert created(two.final(mid))[0] == 0
    _fire(timers, WATCH_S, one.loop)
    assert one.conn.closed and one_b.breaks() == []


def test_a_lease_break_goes_again_at_once_when_its_channel_closes(world):
    server, one, one_b, two, timers = world
    created(one.final(create(one, "f", oplock=LEASE, lease=(KEY, RWH))))
    mid = create(two, "f")
    (first_try,) = one.breaks()
    one.conn.connection_lost()
    settle(one.loop)
    (second_try,) = one_b.breaks()
    assert lease_break(second_try) == lease_break(first_try)
    assert server.leasing.delivery.tracked() == 1      # the new try is watched
    lease_ack(one_b, KEY, RH)
    assert created(two.final(mid))[0] == 0
