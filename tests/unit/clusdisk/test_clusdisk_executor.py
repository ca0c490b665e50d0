"""ArbitrationExecutor details: stale timers are dropped, a table error fails
safe, results come back as inputs in order, a failing tear-down still
answers OFFLINE_DONE."""

import asyncio

from clusdisk.arbitration import Arbiter, Input, Mode, State, Timer
from clusdisk.executor import ArbitrationExecutor, QuorumCall, Step
from clusdisk.reservations import Answer, Verdict
from clusdisk_harness import FakeClock


class Hooks:
    def __init__(self, fail_offline=False):
        self.calls = []
        self.fail_offline = fail_offline

    async def go_online(self): self.calls.append("go_online")
    async def take_over_partner(self): self.calls.append("take_over_partner")
    async def partner_rejoined(self): self.calls.append("partner_rejoined")

    async def go_offline(self, planned=False):
        self.calls.append("go_offline" + (" planned" if planned else ""))
        if self.fail_offline:
            raise RuntimeError("umount hung")

    async def stop_services(self, clean, reason): self.calls.append(f"stop {clean} {reason}")
    async def announce_shutdown(self): self.calls.append("announce")


class Quorum:
    def __init__(self, verdicts=None):
        self.verdicts = verdicts or {}
        self.calls = []

    def __getattr__(self, verb):
        async def call():
            self.calls.append(verb)
            return Answer(self.verdicts.get(verb, Verdict.OK), f"{verb}!")
        return call


async def settle(executor):
    for _ in range(200):
        await asyncio.sleep(0)
        if executor.idle():
            return


def make(mode=Mode.SCSI2, hooks=None, quorum=None):
    clock = FakeClock()
    records = []
    executor = ArbitrationExecutor(Arbiter(mode), quorum or Quorum(), clock, hooks or Hooks(),
                                   observer=records.append)
    return executor, clock, records


def test_start_forms_through_timers():
    async def scenario():
        executor, clock, records = make()
        executor.start()
        await settle(executor)
        assert executor.arbiter.state is State.JOINING
        clock.t = 6.0
        clock.fire_due()
        await settle(executor)
        assert executor.arbiter.state is State.SETTLE_FORM
        assert [r.name for r in records if isinstance(r, QuorumCall)] == ["reserve"]
        clock.t = 16.0
        clock.fire_due()
        await settle(executor)
        assert executor.arbiter.state is State.ONLINE_PARTNER_LOST
        assert executor.reservations.calls == ["reserve", "renew"]     # one late expiry, re-armed
        await executor.stop()
    asyncio.run(scenario())


def test_a_cancelled_timer_already_queued_is_dropped():
    async def scenario():
        executor, clock, records = make()
        executor.start()
        await settle(executor)
        clock.t = 6.0
        clock.fire_due()                    # JOIN_TIMER queued ...
        executor._cancel(Timer.JOIN)        # ... then cancelled before it is taken
        executor.post(Input.PARTNER_OWNER)
        await settle(executor)
        assert executor.arbiter.state is State.STANDBY
        assert not [r for r in records if isinstance(r, Step) and r.error]
        await executor.stop()
    asyncio.run(scenario())


def test_table_error_fails_safe():
    async def scenario():
        hooks = Hooks()
        executor, clock, records = make(hooks=hooks)
        executor.start()
        executor.post(Input.RENEW_OK)       # impossible while joining
        await settle(executor)
        assert executor.arbiter.state is State.ERROR
        assert hooks.calls[0] == "go_offline" and hooks.calls[1].startswith("stop False")
        assert "no transition from joining on renew-ok" in records[-1].error
        await executor.stop()
    asyncio.run(scenario())


def test_failed_tear_down_still_reaches_stopped():
    async def scenario():
        hooks = Hooks(fail_offline=True)
        executor, clock, records = make(hooks=hooks)
        executor.start()
        await settle(executor)
        executor.post(Input.SHUTDOWN)
        await settle(executor)
        assert executor.arbiter.state is State.STOPPED
        assert hooks.calls == ["go_offline planned", "announce", "stop True clean shutdown"]
        assert executor.reservations.calls == ["release"]
        await executor.stop()
    asyncio.run(scenario())


def test_verdicts_map_to_inputs():
    async def scenario():
        quorum = Quorum({"register": Verdict.FAILED})
        hooks = Hooks()
        executor, clock, records = make(Mode.PR, hooks, quorum)
        executor.start()
        await settle(executor)
        assert executor.arbiter.state is State.STOPPED
        assert [r.event for r in records if isinstance(r, Step)] == [Input.START,
                                                                      Input.REGISTER_FAILED]
        assert hooks.calls == ["stop False cannot register the quorum key"]
        await executor.stop()
    asyncio.run(scenario())
