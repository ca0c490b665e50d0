"""A resilient open (FSCTL_LMR_REQUEST_RESILIENCY, [MS-SMB2] 3.3.5.15.9)
whose connection is gone, meeting a second client (issue 16 item 3).

3.3.7.1 keeps the open.  When the second client's CREATE breaks its lease,
3.3.4.7 does not close it ("close every Open ... in one of the following
cases: Open.IsDurable, Open.IsResilient, and Open.IsPersistent are all
FALSE; [or] the new lease state ... does not contain HANDLE_CACHING and
Open.IsDurable is TRUE" -- a resilient open is not durable), and with
nobody to send the notification to, only a persistent open keeps the break
pending; any other is acknowledged to NONE at once (shared/reference/
smb3-ca.md 1.7).  So the second client does not wait for the 35 s
acknowledgment timer, and gets RH, not RWH: the resilient open is still
there, holding its share access, as it would be against Windows, whose
object store refuses W caching while another handle is open ([MS-FSA]
2.1.5.17.2).
"""

import struct

from smbcad.proto.constants import Command
from tests.unit.server.test_leases import (  # noqa: F401 - world is a fixture
    KEY1, KEY2, LEASE, RWH, _status, create, created, settle, world)

FSCTL_LMR_REQUEST_RESILIENCY = 0x001401D4
RH = 0x3


def resiliency_request(file_id, timeout_ms: int) -> bytes:
    """IOCTL (2.2.31) carrying NETWORK_RESILIENCY_REQUEST (2.2.31.3)."""
    payload = struct.pack("<II", timeout_ms, 0)
    return (struct.pack("<HHIQQIIIIIIII", 57, 0, FSCTL_LMR_REQUEST_RESILIENCY, *file_id,
                        120, len(payload), 0, 120, 0, 0, 1, 0) + payload)


def test_disconnected_resilient_open_stays_and_its_lease_yields_at_once(world):
    server, one, two, timers = world
    level, file_id, state = created(one.final(create(one, "vm.vhdx", oplock=LEASE,
                                                     lease=(KEY1, RWH))))
    assert (level, state) == (LEASE, RWH)
    assert _status(one.final(one.send(Command.IOCTL, resiliency_request(file_id, 60_000)))) == 0
    (open_one,) = [o for o in one.conn.sessions[one.session_id].opens.values()]
    assert open_one.resilient

    async def lose():
        one.conn.connection_lost()
    one.loop.run_until_complete(lose())
    settle(one.loop)
    assert not open_one.closed and open_one.session is None

    mid = create(two, "vm.vhdx", oplock=LEASE, lease=(KEY2, RWH))
    # Nothing to wait for but the immediate acknowledgment to NONE: no 35 s timer.
    due_now = [t for t in timers.pending if t.delay == 0 and not t.cancelled]
    assert due_now
    for timer in due_now:
        timers.pending.remove(timer)
        timer.callback()
    settle(one.loop)
    level, _, state = created(two.final(mid))
    assert (level, state) == (LEASE, RH)
    assert not open_one.closed
    assert server.leasing.lease(one.conn.client_guid, KEY1).state.held == 0
