"""The oplock/lease break state machine, tested from its table
(shared/STYLE.md rule 2; smbcad/server/oplocks.py).

Every (state × event) pair of ``oplocks.TABLE`` is a test case checked
against the rules of [MS-SMB2] 3.3.4.7 / 3.3.5.22.2 and [MS-FSA] 2.1.4.12;
a few rows are pinned to the sequences smbtorture's smb2.lease suite
records from Windows (breaking3, breaking2, v2_epoch*); Hypothesis drives
random event sequences through ``step``.
"""

import pytest
from hypothesis import given, strategies as st

from smbcad.server import oplocks
from smbcad.server.oplocks import (
    EVENTS, LEVELS, NONE, R, RH, RW, RWH, STATES, TABLE, Action, CacheState, Event, Kind, W, H)

PAIRS = sorted(TABLE, key=lambda pair: (str(pair[0]), str(pair[1])))


def _subset(a, b):
    return a & ~b == 0


def _legal(state: CacheState) -> bool:
    if state.held not in LEVELS:
        return False
    if not state.breaking:
        return state.required is None
    return (state.held & (W | H) and state.breaking_to in LEVELS and state.required in LEVELS
            and _subset(state.required, state.breaking_to)
            and _subset(state.breaking_to, state.held) and state.breaking_to != state.held)


def test_the_table_is_total():
    assert len(TABLE) == len(STATES) * len(EVENTS)
    assert len(STATES) == len(set(STATES)) == 20
    assert all(_legal(state) for state in STATES)


def test_step_outside_the_table_raises():
    with pytest.raises(oplocks.InvalidTransition):
        oplocks.step(CacheState(H), Event(Kind.TIMEOUT))


@pytest.mark.parametrize("state,event", PAIRS, ids=[f"{s}|{e}" for s, e in PAIRS])
def test_every_transition(state, event):
    transition = oplocks.step(state, event)
    after, actions = transition.next, transition.actions
    assert after in STATES
    assert len(set(actions)) == len(actions)
    if transition.rejected:
        # A bad acknowledgment changes nothing (3.3.5.22.2).
        assert event.kind == Kind.ACK and after == state and len(actions) == 1
        assert (Action.NOT_BREAKING in actions) == (not state.breaking)
        return
    # A holder only ever gives up caching, except through GRANT.
    if event.kind != Kind.GRANT:
        assert _subset(after.held, state.held)
    # A notification asking for an acknowledgment goes out exactly when a
    # break starts from W or H, with its timer (3.3.4.7, 3.3.2.5).
    if Action.NOTIFY_ACK in actions:
        assert after.breaking and Action.START_TIMER in actions
    if Action.START_TIMER in actions:
        assert after.breaking and Action.NOTIFY_ACK in actions
    if Action.NOTIFY in actions:
        assert after == CacheState(NONE)
    if Action.STOP_TIMER in actions:
        assert state.breaking and not after.breaking
    if state.breaking and not after.breaking:
        assert Action.STOP_TIMER in actions and Action.WAKE in actions
    if not state.breaking and not after.breaking and after.held != state.held:
        assert Action.NEW_EPOCH in actions

    if event.kind == Kind.BREAK:
        if state.breaking:
            # One notification at a time; the need is remembered (breaking3).
            assert actions == ()
            assert after == CacheState(state.held, state.breaking_to,
                                       state.required & event.level)
        elif _subset(state.held, event.level):
            assert after == state and actions == ()
        elif state.held & (W | H):
            target = state.held & event.level
            assert after == CacheState(state.held, target, target)
            assert actions == (Action.NEW_EPOCH, Action.NOTIFY_ACK, Action.START_TIMER)
        else:
            assert state.held == R and after == CacheState(NONE)
            assert actions == (Action.NEW_EPOCH, Action.NOTIFY)
    elif event.kind == Kind.ACK:
        assert state.breaking and event.level in LEVELS
        assert _subset(event.level, state.breaking_to)
        if _subset(event.level, state.required):
            assert after == CacheState(event.level)
        elif event.level & (W | H):
            # Broken further from what the client kept, in steps through R.
            assert after.held == event.level and after.breaking
            assert _subset(after.required, state.required)
            assert Action.NOTIFY_ACK in actions
        else:
            assert after == CacheState(NONE) and Action.NOTIFY in actions
        assert Action.WAKE in actions
    elif event.kind == Kind.TIMEOUT:
        assert after == (CacheState(NONE) if state.breaking else state)
        assert (actions == ()) == (not state.breaking)
    else:
        upgrade = (not state.breaking and event.level != state.held
                   and _subset(state.held, event.level))
        assert after == (CacheState(event.level) if upgrade else state)
        assert actions == ((Action.NEW_EPOCH,) if upgrade else ())


def _run(state, *events):
    trail = []
    for event in events:
        transition = oplocks.step(state, event)
        trail.append((str(transition.next), transition.actions))
        state = transition.next
    return trail


def test_breaking3_breaks_again_in_steps():
    """smb2.lease.breaking3: RWH is broken to RH, then (while breaking) to
    none; the ack of RH is answered with RH→R, the ack of R with R→none."""
    assert _run(CacheState(RWH), Event(Kind.BREAK, RH), Event(Kind.BREAK, NONE),
                Event(Kind.ACK, RH), Event(Kind.ACK, R)) == [
        ("RWH>RH", (Action.NEW_EPOCH, Action.NOTIFY_ACK, Action.START_TIMER)),
        ("RWH>RH/-", ()),
        ("RH>R/-", (Action.NOTIFY_ACK, Action.START_TIMER, Action.WAKE)),
        ("-", (Action.STOP_TIMER, Action.NOTIFY, Action.WAKE)),
    ]


def test_breaking2_rejects_every_state_but_the_one_asked():
    """smb2.lease.breaking2: RWH breaking to none refuses RWH, RW, WH, RH,
    W, H and R (REQUEST_NOT_ACCEPTED); none is accepted, a second ack is
    UNSUCCESSFUL."""
    state = oplocks.step(CacheState(RWH), Event(Kind.BREAK, NONE)).next
    for level in (RWH, RW, W | H, RH, W, H, R):
        assert oplocks.step(state, Event(Kind.ACK, level)).actions == (Action.BAD_LEVEL,)
    state = oplocks.step(state, Event(Kind.ACK, NONE)).next
    assert oplocks.step(state, Event(Kind.ACK, NONE)).actions == (Action.NOT_BREAKING,)


def test_level_ii_oplock_breaks_to_none_without_ack():
    """[MS-FSA] 2.1.4.12 WRITE: level II (R) holders are told, never waited for."""
    transition = oplocks.step(CacheState(R), Event(Kind.BREAK, NONE))
    assert transition.next == CacheState(NONE)
    assert Action.NOTIFY in transition.actions and Action.START_TIMER not in transition.actions


def test_upgrade_only_to_a_superset_and_never_while_breaking():
    """3.3.5.9.8: smb2.lease.upgrade (R → RH → RWH, no RWH → RH)."""
    assert oplocks.step(CacheState(R), Event(Kind.GRANT, RH)).next == CacheState(RH)
    assert oplocks.step(CacheState(RWH), Event(Kind.GRANT, RH)).next == CacheState(RWH)
    assert oplocks.step(CacheState(RH), Event(Kind.GRANT, RW)).next == CacheState(RH)
    breaking = CacheState(RWH, RH, RH)
    assert oplocks.step(breaking, Event(Kind.GRANT, RWH)).next == breaking


# Directory leases (server/dirleases.py) use the same machine; these rows are
# the ones their traffic goes through (smb2.lease.v2_request, Samba master
# smb2.dirlease.*), pinned with the actions the runtime carries out.
DIRECTORY_ROWS = [
    # a child created/renamed/deleted/changed without the parent key: to none, ack needed
    (CacheState(RH), Event(Kind.BREAK, NONE),
     CacheState(RH, NONE, NONE), (Action.NEW_EPOCH, Action.NOTIFY_ACK, Action.START_TIMER)),
    (CacheState(RH, NONE, NONE), Event(Kind.ACK, NONE),
     CacheState(NONE), (Action.STOP_TIMER, Action.WAKE)),
    # an R-only directory lease is told, never waited for
    (CacheState(R), Event(Kind.BREAK, NONE), CacheState(NONE), (Action.NEW_EPOCH, Action.NOTIFY)),
    # a sharing violation on the directory itself, or a rename into it while
    # it is open for DELETE (rename_dst_parent): H only
    (CacheState(RH), Event(Kind.BREAK, R),
     CacheState(RH, R, R), (Action.NEW_EPOCH, Action.NOTIFY_ACK, Action.START_TIMER)),
    (CacheState(RH, R, R), Event(Kind.ACK, R), CacheState(R), (Action.STOP_TIMER, Action.WAKE)),
    # a child change while that H break is outstanding: asked for once acknowledged
    (CacheState(RH, R, R), Event(Kind.BREAK, NONE), CacheState(RH, R, NONE), ()),
    (CacheState(RH, R, NONE), Event(Kind.ACK, R),
     CacheState(NONE), (Action.STOP_TIMER, Action.NOTIFY, Action.WAKE)),
    # re-arming after a break ("test_rearm_dirlease"): a new epoch
    (CacheState(NONE), Event(Kind.GRANT, RH), CacheState(RH), (Action.NEW_EPOCH,)),
    (CacheState(R), Event(Kind.GRANT, RH), CacheState(RH), (Action.NEW_EPOCH,)),
    # the client never acknowledges: nothing is left
    (CacheState(RH, NONE, NONE), Event(Kind.TIMEOUT), CacheState(NONE),
     (Action.STOP_TIMER, Action.WAKE)),
]


@pytest.mark.parametrize("state,event,after,actions", DIRECTORY_ROWS,
                         ids=[f"{s}|{e}" for s, e, _, _ in DIRECTORY_ROWS])
def test_directory_lease_rows(state, event, after, actions):
    transition = oplocks.step(state, event)
    assert (transition.next, transition.actions) == (after, actions)
    assert not transition.next.held & W


def test_render_table_has_one_line_per_pair():
    text = oplocks.render_table()
    assert len(text.splitlines()) == len(TABLE)
    assert "RWH          break:RH   → RWH>RH       new_epoch notify_ack start_timer" in text


@given(st.lists(st.sampled_from(EVENTS), max_size=40), st.sampled_from(STATES))
def test_random_sequences_stay_legal_and_a_timeout_always_settles(events, state):
    for event in events:
        state = oplocks.step(state, event).next
        assert _legal(state)
    settled = oplocks.step(state, Event(Kind.TIMEOUT)).next
    assert not settled.breaking
