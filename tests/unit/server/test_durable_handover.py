"""Which durable opens one worker lets another adopt for a reconnect
(smbcad/server/durable_handover.py; the whole hand-over, with two worker
processes and real clients, is tests/interop/test_workers_durable.py)."""

from types import SimpleNamespace

import pytest

from smbcad.proto.constants import OplockLevel
from smbcad.server import durable_handover


def an_open(**fields):
    base = dict(closed=False, session=None, is_pipe=False, persistent=False, lease=None,
                file_key=(1, 2), resilient=False, durable=True,
                oplock_level=OplockLevel.BATCH)
    return SimpleNamespace(**{**base, **fields})


@pytest.mark.parametrize("fields, moves", [
    ({}, True),                                            # durable, batch, disconnected
    ({"session": object()}, False),                        # still connected
    ({"closed": True}, False),
    ({"persistent": True}, False),                         # its partition's record
    ({"lease": object()}, False),                          # the lease is its ClientGuid's
    ({"file_key": (1, 2, "stream")}, False),               # a named stream
    ({"oplock_level": OplockLevel.LEVEL_II}, False),       # lost its batch: no reconnect
    ({"oplock_level": OplockLevel.NONE, "durable": False, "resilient": True}, True),
    ({"durable": False}, False),
])
def test_what_may_move_to_another_worker(fields, moves):
    assert durable_handover.movable(an_open(**fields)) is moves
    assert durable_handover.movable(None) is False


def test_an_open_that_may_not_move_stays():
    open_ = an_open(lease=object())
    opens = SimpleNamespace(lookup=lambda open_id: open_,
                            hand_over=lambda o: pytest.fail("handed over"))
    assert durable_handover.on_release_request(SimpleNamespace(opens=opens), 7, 60_000) is None
