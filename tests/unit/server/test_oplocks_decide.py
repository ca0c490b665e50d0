"""Open-time decisions of smbcad/server/oplocks.py: whom a new open breaks,
whether it waits, and what it is granted ([MS-FSA] 2.1.4.12, 2.1.5.18).

Expected values come from smbtorture's tables, which record Windows:
smb2.lease.request (request_results), smb2.lease.oplock (oplock_results,
oplock_results_2) and smb2.oplock.statopen1.
"""

import pytest

from smbcad.server.oplocks import (
    NONE, H, R, RH, RW, RWH, W, CacheState, HolderView, decide_open, grantable, is_stat_open,
    lease_of_oplock, normalise, oplock_of_lease)

READ_ATTRIBUTES, WRITE_ATTRIBUTES, SYNCHRONIZE = 0x80, 0x100, 0x100000
READ_CONTROL, WRITE_DATA, READ_DATA, ALL = 0x20000, 0x2, 0x1, 0x1F01FF
LEVEL_II, EXCLUSIVE, BATCH = 0x01, 0x08, 0x09


def lease(held, breaking_to=None, same=False):
    state = CacheState(held, breaking_to, breaking_to)
    return HolderView(object(), True, state, same)


def oplock(held):
    return HolderView(object(), False, CacheState(held))


def decide(*views, access=ALL, overwrite=False, violation=False, first=True, doc=False):
    return decide_open(views, access=access, overwrite=overwrite, sharing_violation=violation,
                       first_attempt=first, delete_on_close=doc)


@pytest.mark.parametrize("requested,granted", [
    (NONE, NONE), (R, R), (0x2, NONE), (0x4, NONE), (RH, RH), (RW, RW), (0x6, NONE),
    (RWH, RWH)])
def test_requested_lease_states(requested, granted):
    """smb2.lease.request: H, W and HW alone grant nothing."""
    assert normalise(requested) == granted
    assert grantable(requested, is_lease=True, other_opens=0, other_oplocks=0,
                     other_handle_leases=0, is_directory=False) == granted


def test_oplock_levels_map_to_lease_states():
    assert [lease_of_oplock(level) for level in (0, LEVEL_II, EXCLUSIVE, BATCH)] == [
        NONE, R, RW, RWH]
    assert [oplock_of_lease(level) for level in (NONE, R, RH, RW, RWH)] == [
        0, LEVEL_II, LEVEL_II, EXCLUSIVE, BATCH]


@pytest.mark.parametrize("held,contend,broken_to,granted", [
    (R, LEVEL_II, None, LEVEL_II), (R, EXCLUSIVE, None, LEVEL_II), (R, BATCH, None, LEVEL_II),
    (RH, LEVEL_II, None, 0), (RH, EXCLUSIVE, None, 0), (RH, BATCH, None, 0),
    (RW, LEVEL_II, R, LEVEL_II), (RW, EXCLUSIVE, R, LEVEL_II), (RW, BATCH, R, LEVEL_II),
    (RWH, LEVEL_II, RH, 0), (RWH, EXCLUSIVE, RH, 0), (RWH, BATCH, RH, 0)])
def test_an_oplock_request_against_a_lease(held, contend, broken_to, granted):
    """smb2.lease.oplock, first table: the lease loses W; no oplock next to H."""
    view = lease(held)
    decision = decide(view)
    assert decision.breaks == (((view.holder, broken_to),) if broken_to is not None else ())
    assert decision.wait == (broken_to is not None)
    after = broken_to if broken_to is not None else held
    level = grantable(lease_of_oplock(contend), is_lease=False, other_opens=1, other_oplocks=0,
                      other_handle_leases=int(bool(after & 2)), is_directory=False)
    assert oplock_of_lease(level) == granted


@pytest.mark.parametrize("held,contend,broken_to", [
    (LEVEL_II, R, None), (LEVEL_II, RH, None), (LEVEL_II, RW, None), (LEVEL_II, RWH, None),
    (EXCLUSIVE, R, R), (EXCLUSIVE, RH, R), (EXCLUSIVE, RW, R), (EXCLUSIVE, RWH, R),
    (BATCH, R, R), (BATCH, RH, R), (BATCH, RW, R), (BATCH, RWH, R)])
def test_a_lease_request_against_an_oplock(held, contend, broken_to):
    """smb2.lease.oplock, second table: oplocks break to level II, the lease
    gets R (no W next to another open, no H next to an oplock)."""
    view = oplock(lease_of_oplock(held))
    decision = decide(view)
    assert decision.breaks == (((view.holder, broken_to),) if broken_to is not None else ())
    assert grantable(contend, is_lease=True, other_opens=1, other_oplocks=1,
                     other_handle_leases=0, is_directory=False) == R


def test_sharing_violation_breaks_handle_caching_and_waits():
    """[MS-FSA] 2.1.5.1.2 OPEN_BREAK_H: a batch oplock goes to level II, an
    RWH lease to RW; the opener waits in case the holder closes."""
    batch, leased = oplock(RWH), lease(RWH)
    decision = decide(batch, leased, violation=True)
    assert decision.breaks == ((batch.holder, R), (leased.holder, RW)) and decision.wait


def test_overwrite_breaks_everyone_to_none_but_waits_only_for_write_or_handle():
    level2, read_handle, write = oplock(R), lease(RH), lease(RW)
    decision = decide(level2, read_handle, overwrite=True)
    assert decision.breaks == ((level2.holder, NONE), (read_handle.holder, NONE))
    assert not decision.wait
    assert decide(write, overwrite=True).wait


def test_the_openers_own_lease_is_not_broken():
    assert decide(lease(RWH, same=True)) == decide()


@pytest.mark.parametrize("access,stat", [
    (READ_DATA, False), (WRITE_DATA, False), (0x8, False), (0x10, False), (0x20, False),
    (READ_ATTRIBUTES, True), (WRITE_ATTRIBUTES, True), (0x10000, False),
    (READ_CONTROL, False), (0x40000, False), (0x80000, False), (SYNCHRONIZE, True)])
def test_stat_opens_do_not_break_oplocks(access, stat):
    """smb2.oplock.statopen1 (READ_CONTROL breaks an oplock, not a lease)."""
    assert is_stat_open(access, against_lease=False) == stat
    assert (decide(oplock(RWH), access=access).breaks == ()) == stat
    assert is_stat_open(READ_CONTROL | READ_ATTRIBUTES, against_lease=True)


def test_a_stat_open_that_overwrites_is_not_a_stat_open():
    """smb2.oplock.exclusive5 / batch13: OVERWRITE adds write access."""
    view = oplock(RW)
    assert decide(view, access=READ_ATTRIBUTES, overwrite=True).breaks == ((view.holder, NONE),)


def test_a_breaking_holder_holds_up_opens():
    """An open waits for a break in progress even when it needs nothing more
    from the holder; one that only narrows the break waits once it retried
    (Samba's delay_for_oplock: first_open_attempt)."""
    assert decide(lease(RH, breaking_to=R)).wait
    view = lease(RH, breaking_to=R)
    assert decide(view, overwrite=True).breaks == ((view.holder, NONE),)
    assert not decide(view, overwrite=True).wait
    assert decide(view, overwrite=True, first=False).wait


def test_delete_on_close_takes_handle_caching_from_leases():
    """smb2.lease.unlink: the deleting open breaks RH to R and waits."""
    view = lease(RH)
    decision = decide(view, doc=True)
    assert decision.breaks == ((view.holder, R),) and decision.wait


@pytest.mark.parametrize("requested, granted", [
    (RWH, RH), (RW, R), (RH, RH), (R, R), (H, NONE), (W, NONE), (NONE, NONE)])
def test_directory_leases_never_cache_writes(requested, granted):
    """[MS-SMB2] 3.3.5.9.11 (Samba master smb2.dirlease.leases): a directory
    lease is the request without W, whoever else has the directory open."""
    for other_opens in (0, 2):
        assert grantable(requested, is_lease=True, other_opens=other_opens, other_oplocks=0,
                         other_handle_leases=1, is_directory=True) == granted


@pytest.mark.parametrize("requested", [R, RW, RWH])
def test_directories_get_no_oplock(requested):
    """smb2.dirlease.oplocks: every oplock request on a directory gets none."""
    assert grantable(requested, is_lease=False, other_opens=0, other_oplocks=0,
                     other_handle_leases=0, is_directory=True) == NONE


def test_byte_range_locks_refuse_shared_caching():
    """[MS-FSA] 2.1.5.18: LEVEL_TWO and READ_CACHING fail while the stream
    has byte-range locks; a lone writer's RW/RWH is still granted."""
    common = dict(other_oplocks=0, other_handle_leases=0, is_directory=False, has_locks=True)
    assert grantable(RH, is_lease=True, other_opens=0, **common) == NONE
    assert grantable(RWH, is_lease=True, other_opens=0, **common) == RWH
    assert grantable(RWH, is_lease=False, other_opens=1, **common) == NONE
