"""Caching across worker processes, the decisions (smbcad/server/leases_elsewhere.py):
what another worker's open waits on and breaks, given the bits the holder's
worker published, and what the holder breaks to when asked ([MS-FSA] 2.1.4.12)."""

from types import SimpleNamespace

import pytest

from smbcad.openstate import record
from smbcad.proto.constants import CreateDisposition, CreateOptions
from smbcad.server import leases_elsewhere as elsewhere
from smbcad.server.leases import FileCaching, Lease, OplockGrant
from smbcad.server.oplocks import NONE, R, H, W, CacheState, Kind

READ_WRITE = 0x1 | 0x2
KEY = (1, 2)
BATCH = record.CACHING | record.CACHING_HANDLE | record.CACHING_WRITE | record.CACHING_OPLOCK
LEVEL_II = record.CACHING | record.CACHING_OPLOCK
RH_LEASE = record.CACHING | record.CACHING_HANDLE | record.CACHING_HANDLE_LEASE


@pytest.mark.parametrize("held,is_lease,bits", [
    (NONE, True, 0), (NONE, False, 0),
    (R | W | H, False, BATCH),
    (R, False, LEVEL_II),
    (R | H, True, RH_LEASE),
    (R | W, True, record.CACHING | record.CACHING_WRITE),
    (R, True, record.CACHING),
])
def test_a_holders_state_as_record_bits(held, is_lease, bits):
    assert elsewhere.bits_of(held, is_lease) == bits


@pytest.mark.parametrize("opener,foreign,breaks,waits", [
    # a second opener takes write caching; read and handle caching stay
    (elsewhere.ForeignOpen(READ_WRITE), BATCH, True, True),
    (elsewhere.ForeignOpen(READ_WRITE), LEVEL_II, False, False),
    (elsewhere.ForeignOpen(READ_WRITE), RH_LEASE, False, False),
    # a refused open breaks handle caching only (the holder may close)
    (elsewhere.ForeignOpen(READ_WRITE, sharing_violation=True), BATCH, True, True),
    (elsewhere.ForeignOpen(READ_WRITE, sharing_violation=True), RH_LEASE, True, True),
    (elsewhere.ForeignOpen(READ_WRITE, sharing_violation=True), LEVEL_II, False, False),
    # overwriting drops read caching too, without waiting for it
    (elsewhere.ForeignOpen(READ_WRITE, overwrite=True), LEVEL_II, True, False),
    # deleting on close takes H from leases, not from oplocks
    (elsewhere.ForeignOpen(READ_WRITE, delete_on_close=True), RH_LEASE, True, True),
    (elsewhere.ForeignOpen(READ_WRITE, delete_on_close=True),
     LEVEL_II | record.CACHING_HANDLE, False, False),
])
def test_what_an_open_through_another_worker_breaks_and_waits_on(opener, foreign, breaks,
                                                                   waits):
    assert opener.breaks(foreign) == breaks
    assert bool(foreign & opener.waits_on()) == waits


def test_the_opener_of_a_create_request():
    request = SimpleNamespace(create_disposition=CreateDisposition.OVERWRITE_IF,
                              create_options=CreateOptions.DELETE_ON_CLOSE)
    assert elsewhere.opener_of(request, 0x10000, True) == elsewhere.ForeignOpen(
        0x10000, overwrite=True, sharing_violation=True, delete_on_close=True)
    request = SimpleNamespace(create_disposition=CreateDisposition.OPEN, create_options=0)
    assert elsewhere.opener_of(request, 0x1, False) == elsewhere.ForeignOpen(0x1)


class RecordingLeasing:
    """The holder worker's side without a server: what it applies."""

    server = None

    def __init__(self, *holders) -> None:
        self.files = {KEY: FileCaching(holders=list(holders))}
        self.applied: list = []

    def apply(self, holder, event) -> None:
        self.applied.append((holder, event.kind, event.level))


def test_the_holder_breaks_as_for_a_local_open():
    batch = OplockGrant(object(), CacheState(R | W | H))
    lease = Lease(b"g" * 16, b"k" * 16, KEY, 2, CacheState(R | W | H))
    for holder, opener, level in (
            (batch, elsewhere.ForeignOpen(READ_WRITE), R),                 # to level II
            (batch, elsewhere.ForeignOpen(READ_WRITE, overwrite=True), NONE),
            (lease, elsewhere.ForeignOpen(READ_WRITE), R | H),
            (lease, elsewhere.ForeignOpen(READ_WRITE, sharing_violation=True), R | W)):
        leasing = RecordingLeasing(holder)
        elsewhere.break_for_open(leasing, KEY, opener)
        assert leasing.applied == [(holder, Kind.BREAK, level)]
    level_ii = OplockGrant(object(), CacheState(R))
    leasing = RecordingLeasing(level_ii)
    elsewhere.break_for_open(leasing, KEY, elsewhere.ForeignOpen(READ_WRITE))
    assert leasing.applied == []                                   # shared: nothing breaks
    elsewhere.break_for(leasing, KEY)                              # a write elsewhere
    assert leasing.applied == [(level_ii, Kind.BREAK, NONE)]


def test_a_rename_or_delete_elsewhere_takes_handle_caching():
    take = elsewhere.TAKE_HANDLE
    assert take.breaks(RH_LEASE) and take.breaks(BATCH) and not take.breaks(LEVEL_II)
    assert take.waits_on() == record.CACHING_HANDLE
    rh = Lease(b"g" * 16, b"k" * 16, KEY, 2, CacheState(R | H))
    batch = OplockGrant(object(), CacheState(R | W | H))
    level_ii = OplockGrant(object(), CacheState(R))
    leasing = RecordingLeasing(rh, batch, level_ii)
    elsewhere.break_for_open(leasing, KEY, take)
    assert leasing.applied == [(rh, Kind.BREAK, R), (batch, Kind.BREAK, R)]


def test_another_workers_read_caching_is_broken_after_the_data_changed(tmp_path):
    """A WRITE (or a new end of file) tells the workers that cache the file
    once its data has changed: a level II grant there that was claimed
    before the change shows in the record read after it, and one claimed
    after the change reads the new data.  Read before the change, a grant
    claimed between the read and the write would keep stale data unbroken."""
    import copy
    import os
    import struct

    from smbcad.proto.constants import Command
    from smbcad.proto.status import NtStatus
    from tests.unit.proto import wire
    from tests.unit.server.harness import connected_client, make_server, status_of

    share = tmp_path / "share"
    share.mkdir()
    server = make_server(str(share), str(tmp_path / "state"))
    client = connected_client(server)
    created = client.request(Command.CREATE, wire.create_request("cached.bin", disposition=3))
    assert status_of(created) == NtStatus.SUCCESS
    file_id = struct.unpack_from("<QQ", created, 64 + 64)
    key = server.find_share("share").fs.volume.key_of(os.stat(share / "cached.bin"))
    other = copy.copy(server.opens.open_state)          # another worker, caching level II
    other.owner = 4242
    other.add_open(key, 99, 0x1, 0x7)
    other.set_caching(key, LEVEL_II)
    seen = []
    server.leasing.break_elsewhere = lambda file_key, opener: seen.append(
        (file_key, (share / "cached.bin").read_bytes()))

    reply = client.request(Command.WRITE, wire.write_request(*file_id, 0, b"new data"))
    assert status_of(reply) == NtStatus.SUCCESS
    assert seen == [(key, b"new data")]
    body = struct.pack("<HBBIHHI", 33, 1, 20, 8, 96, 0, 0) + wire.file_id_bytes(*file_id)
    reply = client.request(Command.SET_INFO, body + struct.pack("<q", 3))  # end of file 3
    assert status_of(reply) == NtStatus.SUCCESS
    assert seen[1:] == [(key, b"new")]
