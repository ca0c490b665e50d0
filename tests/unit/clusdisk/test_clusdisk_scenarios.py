"""Two nodes, one fake quorum LUN, the real heartbeat, a fake clock: form,
defend, challenge won, challenge lost, reservation lost, clean handover, in
SCSI-2 and in PR mode.  ``Cluster.advance`` asserts after every step and
every transition that no two nodes believe they own the quorum."""

import asyncio

import pytest

from clusdisk.arbitration import Mode, State, Timings
from clusdisk_harness import Cluster

MODES = [Mode.SCSI2, Mode.PR]
OWNER = (State.ONLINE, State.ONLINE_PARTNER_LOST, State.ONLINE_TAKEN_OVER)


def run(coro):
    return asyncio.run(coro)


async def formed(mode: Mode, **kwargs) -> Cluster:
    """A forms alone, then B joins as standby."""
    cluster = Cluster(mode, **kwargs)
    cluster.a.start()
    await cluster.until(lambda: cluster.a.state in OWNER, 30)
    cluster.b.start()
    await cluster.until(lambda: cluster.b.state is State.STANDBY
                        and cluster.a.state is State.ONLINE, 10)
    return cluster


def commands(cluster: Cluster, nexus: int) -> list[str]:
    return [what for n, what in cluster.lun.journal if n == nexus]


@pytest.mark.parametrize("mode", MODES)
def test_form_alone_then_partner_joins(mode):
    async def scenario():
        cluster = Cluster(mode)
        cluster.a.start()
        formed_in = await cluster.until(lambda: cluster.a.state in OWNER, 30)
        timings = Timings()
        settle = timings.pr_settle_s if mode is Mode.PR else timings.settle_s
        assert formed_in == pytest.approx(timings.join_window_s + settle, abs=0.2)
        if mode is Mode.SCSI2:
            assert cluster.lun.scsi2_holder == 0
        else:
            assert cluster.lun.pr_holder == 0 and cluster.lun.pr_type == 5
        # alone for the takeover delay: A serves B's aggregates too
        await cluster.until(lambda: cluster.a.state is State.ONLINE_TAKEN_OVER, 25)
        cluster.b.start()
        await cluster.advance(5)
        assert (cluster.a.state, cluster.b.state) == (State.ONLINE, State.STANDBY)
        assert cluster.a.hooks.names() == ["go_online", "take_over_partner", "partner_rejoined"]
        assert cluster.b.hooks.names() == ["go_online"]
        if mode is Mode.PR:
            assert sorted(cluster.lun.registrations) == [0, 1]
        await cluster.close()
    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_simultaneous_start_elects_one_owner(mode):
    async def scenario():
        cluster = Cluster(mode)
        cluster.a.start()
        cluster.b.start()
        await cluster.advance(40)
        states = sorted([cluster.a.state.value, cluster.b.state.value])
        assert states == ["online", "standby"]
        assert len(cluster.owners()) == 1
        await cluster.close()
    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_defend_renews_every_period(mode):
    async def scenario():
        cluster = await formed(mode)
        before = len(cluster.a.quorum_calls)
        await cluster.advance(60)
        assert (cluster.a.state, cluster.b.state) == (State.ONLINE, State.STANDBY)
        renews = [c for c in cluster.a.quorum_calls[before:] if c.name == "renew"]
        assert len(renews) == pytest.approx(60 / 3, abs=1)
        assert all(c.verdict.value == "ok" for c in renews)
        gaps = [b.at - a.at for a, b in zip(renews, renews[1:])]
        assert max(gaps) <= 3.0 + 1e-6
        expected = "16" if mode is Mode.SCSI2 else "5e/01"          # RESERVE(6) / READ RESERVATION
        assert commands(cluster, 0)[-1] == expected
        assert not [c for c in commands(cluster, 1) if c.startswith("reset") or c == "5f/04"]
        await cluster.close()
    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_challenge_won_after_owner_crash(mode):
    async def scenario():
        cluster = await formed(mode)
        await cluster.a.crash()                    # its reservation stays on the LUN
        took = await cluster.until(lambda: cluster.b.state in OWNER, 40)
        t = Timings()
        if mode is Mode.SCSI2:
            expected = 5 + t.challenge_wait_s + t.settle_s        # miss window + 7 + 10
            assert "reset 1" in commands(cluster, 1)
            assert cluster.lun.scsi2_holder == 1
        else:
            expected = 5 + t.pr_challenge_delay_s + t.pr_settle_s
            assert "5f/04" in commands(cluster, 1)                # PREEMPT, not PREEMPT AND ABORT
            assert cluster.lun.pr_holder == 1 and list(cluster.lun.registrations) == [1]
        assert expected <= took <= expected + 1.2                 # + heartbeat poll granularity
        assert cluster.b.state is State.ONLINE_TAKEN_OVER
        assert cluster.b.hooks.names()[-2:] == ["go_online", "take_over_partner"]
        await cluster.close()
    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_challenge_lost_when_only_the_heartbeat_is_cut(mode):
    async def scenario():
        cluster = await formed(mode)
        cluster.network.cut_all()
        await cluster.until(lambda: cluster.b.state is State.STOPPED, 30)
        stop = cluster.b.hooks.calls[-1][1]
        if mode is Mode.SCSI2:
            assert "lost the challenge" in stop
            assert "reset 1" in commands(cluster, 1)
        else:
            assert "preempted" in stop
        assert cluster.b.hooks.names()[-2:] == ["go_offline", "stop_services"]
        assert cluster.a.state in OWNER
        await cluster.until(lambda: cluster.a.state is State.ONLINE_TAKEN_OVER, 30)
        takeover = [t for t, what in cluster.a.hooks.calls if what == "take_over_partner"][0]
        assert takeover > cluster.b.stopped_at                  # B was down before A took over
        await cluster.close()
    run(scenario())


@pytest.mark.parametrize("mode, hang_s", [(Mode.SCSI2, 15.0), (Mode.PR, 9.0)])
def test_owner_that_finds_its_reservation_gone_stops_at_once(mode, hang_s):
    async def scenario():
        cluster = await formed(mode)
        cluster.a.freeze()                         # hung: no renew, no heartbeat
        await cluster.advance(hang_s)
        assert cluster.b.state is State.SETTLE_TAKEOVER          # reserved, not online yet
        thawed_at = cluster.clock.now()
        cluster.a.thaw()
        await cluster.advance(0.1)
        assert cluster.a.state is State.STOPPED
        assert cluster.a.stopped_at == pytest.approx(thawed_at)
        reason = cluster.a.hooks.calls[-1][1]   # its renew or its fence found the preemption
        assert "quorum reservation lost" in reason or "key was preempted" in reason
        await cluster.until(lambda: cluster.b.state is State.ONLINE_TAKEN_OVER, 15)
        await cluster.close()
    run(scenario())


def test_scsi2_short_hang_the_defender_keeps_the_quorum():
    async def scenario():
        cluster = await formed(Mode.SCSI2)
        cluster.a.freeze()
        await cluster.advance(8)                   # B has reset and waits its 7 s
        assert cluster.b.state is State.CHALLENGE_WAIT
        cluster.a.thaw()
        await cluster.advance(15)
        assert cluster.a.state in OWNER
        assert cluster.b.state in (State.STANDBY, State.STOPPED)
        assert cluster.lun.scsi2_holder == 0
        await cluster.close()
    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_clean_handover_without_arbitration(mode):
    async def scenario():
        cluster = await formed(mode)
        mark = len(cluster.lun.journal)
        cluster.a.shutdown()
        took = await cluster.until(lambda: cluster.b.state is State.ONLINE_TAKEN_OVER, 5)
        assert took <= 0.2
        assert cluster.a.state is State.STOPPED
        assert cluster.a.hooks.names()[-3:] == ["go_offline", "announce_shutdown",
                                                "stop_services"]
        assert "clean=True" in cluster.a.hooks.calls[-1][1]
        since = [what for _, what in cluster.lun.journal[mark:]]
        assert not [c for c in since if c.startswith("reset") or c in ("5f/04", "5f/05")]
        if mode is Mode.SCSI2:
            assert cluster.lun.scsi2_holder == 1
        else:
            assert cluster.lun.pr_holder == 1 and list(cluster.lun.registrations) == [1]
        await cluster.advance(20)                  # no late PartnerLost or challenge
        assert cluster.b.state is State.ONLINE_TAKEN_OVER
        await cluster.close()
    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_standby_clean_shutdown_hands_its_aggregates_over(mode):
    async def scenario():
        cluster = await formed(mode)
        cluster.b.shutdown()
        await cluster.advance(0.5)
        assert cluster.b.state is State.STOPPED
        assert cluster.a.state is State.ONLINE_TAKEN_OVER
        assert cluster.a.hooks.names()[-1] == "take_over_partner"
        await cluster.close()
    run(scenario())


def test_pr_preempt_and_abort_that_hangs_fails_safe():
    async def scenario():
        cluster = await formed(Mode.PR, preempt_abort=True)
        cluster.lun.hang_preempt_and_abort = True            # LIO tcm_loop on 6.1
        await cluster.a.crash()
        await cluster.until(lambda: cluster.b.state is State.STOPPED, 30)
        assert "cannot preempt" in cluster.b.hooks.calls[-1][1]
        assert "5f/05" in commands(cluster, 1)
        await cluster.close()
    run(scenario())


def test_owner_with_a_dead_path_stops_and_partner_takes_over():
    async def scenario():
        cluster = await formed(Mode.SCSI2)
        cluster.lun.offline.add(0)                # initiator A's path is down
        await cluster.until(lambda: cluster.a.state is State.STOPPED, 5)
        assert "cannot renew" in cluster.a.hooks.calls[-1][1]
        await cluster.until(lambda: cluster.b.state is State.ONLINE_TAKEN_OVER, 40)
        await cluster.close()
    run(scenario())


def test_one_link_of_two_lost_is_not_a_partner_loss():
    async def scenario():
        cluster = await formed(Mode.SCSI2, links=2)
        cluster.network.cut = {(1, 0), (2, 0)}
        await cluster.advance(20)
        assert (cluster.a.state, cluster.b.state) == (State.ONLINE, State.STANDBY)
        assert cluster.b.heartbeat.links_alive() == (False, True)
        cluster.network.cut_all()
        await cluster.until(lambda: cluster.b.state is not State.STANDBY, 10)
        await cluster.close()
    run(scenario())
