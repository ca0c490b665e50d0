"""The arbitration table, exhaustively: every (state, input) pair in both
modes, graph properties, and random input sequences (Hypothesis)."""

import asyncio
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusdisk import arbitration as arb
from clusdisk.arbitration import (
    CLAIM_STATES,
    MEMBER_STATES,
    OWNER_STATES,
    TABLES,
    Arbiter,
    ArbitrationError,
    Input,
    Mode,
    State,
    Timer,
    Timings,
)

MODES = list(Mode)


def arbiter_in(mode: Mode, state: State) -> Arbiter:
    arbiter = Arbiter(mode)
    arbiter.state = state
    return arbiter


@pytest.mark.parametrize("mode", MODES)
def test_every_state_and_input(mode):
    table = TABLES[mode]
    for state in State:
        for event in Input:
            arbiter = arbiter_in(mode, state)
            transition = table.get((state, event))
            if transition is not None:
                actions = arbiter.handle(event)
                assert arbiter.state is transition.next_state
                assert len(actions) == len(transition.actions)
                assert all(a.seconds is not None for a in actions
                           if isinstance(a, arb.StartTimer))
            else:
                with pytest.raises(ArbitrationError) as info:
                    arbiter.handle(event)
                assert arbiter.state is State.ERROR
                assert (info.value.state, info.value.event) == (state, event)
                if state is State.ERROR:
                    assert info.value.actions == ()
                else:
                    kinds = [type(a) for a in info.value.actions]
                    assert kinds == [arb.GoOffline, arb.StopServices]


def reachable(mode: Mode) -> set:
    seen = {State.IDLE}
    queue = deque([State.IDLE])
    while queue:
        state = queue.popleft()
        for (source, _), transition in TABLES[mode].items():
            if source is state and transition.next_state not in seen:
                seen.add(transition.next_state)
                queue.append(transition.next_state)
    return seen


@pytest.mark.parametrize("mode", MODES)
def test_graph_properties(mode):
    table = TABLES[mode]
    states = reachable(mode)
    sources = {state for state, _ in table}
    assert sources <= states, "a row for an unreachable state"
    mode_only = {Mode.SCSI2: {State.REGISTERING, State.CHALLENGE_PREEMPT},
                 Mode.PR: {State.CHALLENGE_RESET}}[mode]
    assert states == set(State) - mode_only - {State.ERROR}
    for state in states - {State.STOPPED}:       # no dead ends: STOPPED is always reachable
        seen, queue = {state}, deque([state])
        while queue:
            current = queue.popleft()
            for (source, _), transition in table.items():
                if source is current and transition.next_state not in seen:
                    seen.add(transition.next_state)
                    queue.append(transition.next_state)
        assert State.STOPPED in seen, state
    assert all(table[(State.STOPPED, event)] == arb.Transition(State.STOPPED) for event in Input)
    assert not [k for k, t in table.items() if t.next_state is State.IDLE and k[0] is not State.IDLE]
    # every way into STOPPED stops the services, except from STOPPED itself
    for (state, event), transition in table.items():
        stops = any(isinstance(a, arb.StopServices) for a in transition.actions)
        assert stops == (transition.next_state is State.STOPPED and state is not State.STOPPED), \
            (state, event)


@pytest.mark.parametrize("mode", MODES)
def test_every_shutdown_leaves_cleanly(mode):
    for (state, event), transition in TABLES[mode].items():
        if event is Input.SHUTDOWN and state not in (State.STOPPED, State.IDLE):
            assert transition.next_state in (State.OFFLINING, State.OFFLINING_OWNER,
                                             State.RELEASING, State.RELEASING_OWNER), state
    for (state, event), transition in TABLES[mode].items():
        if event is Input.SHUTDOWN and state in OWNER_STATES - {State.OFFLINING_OWNER,
                                                                 State.RELEASING_OWNER}:
            assert transition.next_state is State.OFFLINING_OWNER


def resolved(mode, state, event):
    arbiter = arbiter_in(mode, state)
    return arbiter.handle(event), arbiter.state


def test_scsi2_challenge_is_reset_wait_reserve():
    t = Timings()
    actions, state = resolved(Mode.SCSI2, State.STANDBY, Input.PARTNER_LOST)
    assert (state, actions) == (State.CHALLENGE_RESET, (arb.ResetQuorum(),))
    actions, state = resolved(Mode.SCSI2, State.CHALLENGE_RESET, Input.RESET_DONE)
    assert (state, actions) == (State.CHALLENGE_WAIT,
                                (arb.StartTimer(Timer.CHALLENGE, t.challenge_wait_s),))
    actions, state = resolved(Mode.SCSI2, State.CHALLENGE_WAIT, Input.CHALLENGE_TIMER)
    assert (state, actions) == (State.CHALLENGE_RESERVE, (arb.ReserveQuorum(),))
    actions, state = resolved(Mode.SCSI2, State.CHALLENGE_RESERVE, Input.RESERVE_OK)
    assert state is State.SETTLE_TAKEOVER
    assert actions == (arb.StartTimer(Timer.SETTLE, 10.0), arb.StartTimer(Timer.RENEW, 3.0))
    actions, state = resolved(Mode.SCSI2, State.SETTLE_TAKEOVER, Input.SETTLE_TIMER)
    assert (state, actions) == (State.ONLINE_TAKEN_OVER, (arb.GoOnline(), arb.TakeOverPartner()))
    actions, state = resolved(Mode.SCSI2, State.CHALLENGE_RESERVE, Input.RESERVE_CONFLICT)
    assert state is State.STOPPED and isinstance(actions[-1], arb.StopServices)


def test_pr_challenge_is_delay_preempt_reserve():
    actions, state = resolved(Mode.PR, State.STANDBY, Input.PARTNER_LOST)
    assert (state, actions) == (State.CHALLENGE_WAIT, (arb.StartTimer(Timer.CHALLENGE, 2.0),))
    actions, state = resolved(Mode.PR, State.CHALLENGE_WAIT, Input.CHALLENGE_TIMER)
    assert (state, actions) == (State.CHALLENGE_PREEMPT, (arb.PreemptPartner(),))
    actions, state = resolved(Mode.PR, State.CHALLENGE_PREEMPT, Input.PREEMPT_OK)
    assert (state, actions) == (State.CHALLENGE_RESERVE, (arb.ReserveQuorum(),))
    actions, state = resolved(Mode.PR, State.CHALLENGE_RESERVE, Input.RESERVE_OK)
    assert actions[0] == arb.StartTimer(Timer.SETTLE, Timings().pr_settle_s)
    # the owner fences a lost partner at once
    actions, state = resolved(Mode.PR, State.ONLINE, Input.PARTNER_LOST)
    assert state is State.ONLINE_PARTNER_LOST
    assert actions == (arb.PreemptPartner(), arb.StartTimer(Timer.TAKEOVER, 20.0))
    actions, _ = resolved(Mode.SCSI2, State.ONLINE, Input.PARTNER_LOST)
    assert actions == (arb.StartTimer(Timer.TAKEOVER, 20.0),)


@pytest.mark.parametrize("state", [State.SETTLE_FORM, State.SETTLE_TAKEOVER,
                                   State.ONLINE_PARTNER_LOST, State.ONLINE_TAKEN_OVER])
def test_pr_owner_fences_a_lost_partner_in_every_owner_state(state):
    # The lab race: a heartbeat cut while the owner was still settling was
    # ignored, so the standby's 2 s challenge delay ran out first and it
    # preempted a live owner.  Every quorum holder fences at once.
    actions, new = resolved(Mode.PR, state, Input.PARTNER_LOST)
    assert (new, actions) == (state, (arb.PreemptPartner(),))
    actions, new = resolved(Mode.PR, state, Input.PREEMPT_CONFLICT)
    assert new is State.STOPPED and not actions[-1].clean
    assert resolved(Mode.PR, state, Input.PREEMPT_OK) == ((), state)
    # SCSI-2 owners defend by renewing; a loss while settling changes nothing
    assert resolved(Mode.SCSI2, state, Input.PARTNER_LOST) == ((), state)


@pytest.mark.parametrize("mode", MODES)
def test_owner_stops_at_once(mode):
    for state in (State.ONLINE, State.ONLINE_PARTNER_LOST, State.ONLINE_TAKEN_OVER):
        for event in (Input.RENEW_CONFLICT, Input.RENEW_FAILED):
            actions, new = resolved(mode, state, event)
            assert new is State.STOPPED
            assert [type(a) for a in actions] == [arb.GoOffline, arb.StopServices]
            assert not actions[1].clean


@pytest.mark.parametrize("mode", MODES)
def test_clean_handover_rows(mode):
    actions, state = resolved(mode, State.STANDBY, Input.PARTNER_CLEAN_SHUTDOWN)
    assert (state, actions) == (State.HANDOVER_RESERVE, (arb.ReserveQuorum(),))
    actions, state = resolved(mode, State.HANDOVER_RESERVE, Input.RESERVE_OK)
    assert state is State.ONLINE_TAKEN_OVER
    assert actions == (arb.StartTimer(Timer.RENEW, 3.0), arb.GoOnline(), arb.TakeOverPartner())
    actions, state = resolved(mode, State.RELEASING_OWNER, Input.RELEASE_DONE)
    assert state is State.STOPPED
    assert actions == (arb.AnnounceShutdown(), arb.StopServices(True, "clean shutdown"))


def test_timings_per_mode():
    t = Timings(renew_s=1, join_window_s=2, challenge_wait_s=3, settle_s=4, takeover_delay_s=5,
                pr_challenge_delay_s=6, pr_settle_s=7)
    assert [t.seconds(x, Mode.SCSI2) for x in Timer] == [2, 1, 3, 4, 5]
    assert [t.seconds(x, Mode.PR) for x in Timer] == [2, 1, 6, 7, 5]
    assert {timer.input for timer in Timer} == {Input.JOIN_TIMER, Input.RENEW_TIMER,
                                                Input.CHALLENGE_TIMER, Input.SETTLE_TIMER,
                                                Input.TAKEOVER_TIMER}


@pytest.mark.parametrize("mode", MODES)
def test_dot_lists_every_real_transition(mode):
    dot = arb.to_dot(mode)
    assert dot.startswith("digraph") and dot.endswith("}")
    assert '"standby" -> "handover-reserve" [label="partner-clean-shutdown / ReserveQuorum"]' in dot
    real = [t for (s, _), t in TABLES[mode].items() if t.next_state is not s or t.actions]
    assert dot.count(" -> ") == len(real)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MODES), st.lists(st.sampled_from(list(Input)), max_size=60))
def test_random_inputs_keep_the_invariants(mode, events):
    arbiter = Arbiter(mode)
    for event in events:
        before = arbiter.state
        try:
            actions = arbiter.handle(event)
        except ArbitrationError as exc:
            assert arbiter.state is State.ERROR
            if before is not State.ERROR:
                assert isinstance(exc.actions[-1], arb.StopServices)
            continue
        state = arbiter.state
        assert arbiter.owns_quorum == (state in OWNER_STATES)
        assert OWNER_STATES <= CLAIM_STATES
        for action in actions:
            if isinstance(action, arb.GoOnline):
                assert state in MEMBER_STATES
            if isinstance(action, arb.TakeOverPartner):
                assert state is State.ONLINE_TAKEN_OVER
            if isinstance(action, arb.StopServices):
                assert state is State.STOPPED
            if isinstance(action, (arb.PreemptPartner, arb.RegisterKey)):
                assert mode is Mode.PR
            if isinstance(action, arb.ResetQuorum):
                assert mode is Mode.SCSI2


def test_invariant_checker_catches_a_design_without_settle_time():
    """With no settle time a hung owner and the challenger both believe they
    own the quorum: the 10 s of the Microsoft design is what prevents it."""
    from clusdisk_harness import Cluster, InvariantViolation

    async def scenario():
        cluster = Cluster(Mode.SCSI2, Timings(settle_s=0.0))
        cluster.a.start()
        await cluster.until(lambda: cluster.a.arbiter.owns_quorum, 30)
        cluster.b.start()
        await cluster.advance(5)
        cluster.a.freeze()
        with pytest.raises(InvariantViolation):
            await cluster.advance(20)
        await cluster.close()

    asyncio.run(scenario())
