"""The thin executor of the arbitration machine (shared/STYLE.md rule 13).

One worker task takes inputs from a FIFO queue, feeds them to the
``Arbiter`` and executes the returned actions in order:

- quorum verbs (reserve, renew, reset, preempt, release, register) are
  awaited inline on the ``reservations`` port, so the quorum LUN sees one
  command at a time, and their verdicts come back as inputs;
- timers go through the injected ``clock`` (``call_later``); a timer input
  already queued when its timer is cancelled or restarted is dropped, so the
  table never sees a stale expiry;
- cluster hooks (go online, take over, partner rejoined, go offline, stop) run as
  tasks so that a slow mount or fsck never delays a renew; go-offline
  answers with OFFLINE_DONE.

``observer`` (optional) is called with every ``Step`` taken, and with every
``QuorumCall`` (name, verdict, seconds): the daemon turns them into metrics
and logs, the tests into invariants.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable, Protocol

from clusdisk import arbitration as arb
from clusdisk.arbitration import Input, State
from clusdisk.reservations import Verdict

log = logging.getLogger("clusdisk.executor")


class Clock(Protocol):
    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]): ...


class LoopClock:
    """The event loop's monotonic clock."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop or asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    def call_later(self, delay: float, callback: Callable[[], None]):
        return self.loop.call_later(delay, callback)


class ClusterHooks(Protocol):
    async def go_online(self) -> None: ...

    async def take_over_partner(self) -> None: ...

    async def partner_rejoined(self) -> None: ...

    async def go_offline(self, planned: bool) -> None: ...

    async def stop_services(self, clean: bool, reason: str) -> None: ...

    async def announce_shutdown(self) -> None: ...


@dataclass(frozen=True)
class Step:
    at: float
    old: State
    event: Input
    new: State
    actions: tuple
    error: str = ""


@dataclass(frozen=True)
class QuorumCall:
    at: float
    name: str
    verdict: Verdict
    seconds: float
    detail: str = ""


_VERDICT_INPUTS = {
    "register": (Input.REGISTER_OK, Input.REGISTER_FAILED, Input.REGISTER_FAILED),
    "reserve": (Input.RESERVE_OK, Input.RESERVE_CONFLICT, Input.RESERVE_FAILED),
    "renew": (Input.RENEW_OK, Input.RENEW_CONFLICT, Input.RENEW_FAILED),
    "reset": (Input.RESET_DONE, Input.RESET_FAILED, Input.RESET_FAILED),
    "preempt": (Input.PREEMPT_OK, Input.PREEMPT_CONFLICT, Input.PREEMPT_FAILED),
    "release": (Input.RELEASE_DONE, Input.RELEASE_FAILED, Input.RELEASE_FAILED),
}
_QUORUM_VERBS = {arb.RegisterKey: "register", arb.ReserveQuorum: "reserve",
                 arb.RenewQuorum: "renew", arb.ResetQuorum: "reset",
                 arb.PreemptPartner: "preempt", arb.ReleaseQuorum: "release"}


class ArbitrationExecutor:
    def __init__(self, arbiter: arb.Arbiter, reservations, clock: Clock, hooks: ClusterHooks,
                 *, observer: Callable[[object], None] | None = None) -> None:
        self.arbiter = arbiter
        self.reservations = reservations
        self.clock = clock
        self.hooks = hooks
        self.observer = observer or (lambda record: None)
        self._queue: asyncio.Queue = asyncio.Queue()
        self._timers: dict = {}                  # Timer -> (token, handle)
        self._tasks: set = set()
        self._worker: asyncio.Task | None = None
        self._busy = False

    # -- feeding -----------------------------------------------------------

    def post(self, event: Input) -> None:
        """Queue an input (from the heartbeat, the daemon or a result)."""
        self._queue.put_nowait((event, None))

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())
        self.post(Input.START)

    def idle(self) -> bool:
        """Nothing queued, nothing running (for tests driving a fake clock)."""
        return (self._queue.empty() and not self._busy
                and all(task.done() for task in self._tasks))

    async def stop(self) -> None:
        """Stop at once, without actions (a crash, in tests; process exit)."""
        for timer in list(self._timers):
            self._cancel(timer)
        tasks = list(self._tasks) + ([self._worker] if self._worker else [])
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._worker = None

    # -- the worker ----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            event, token = await self._queue.get()
            if token is not None and not self._current(token):
                continue                                  # cancelled or restarted timer
            self._busy = True
            try:
                await self._step(event)
            finally:
                self._busy = False

    async def _step(self, event: Input) -> None:
        old = self.arbiter.state
        if old is State.ERROR:                # terminal: the fail-safe actions already ran
            log.debug("arbitration in error state: ignoring %s", event.value)
            return
        error = ""
        try:
            actions = self.arbiter.handle(event)
        except arb.ArbitrationError as exc:
            log.error("%s; failing safe", exc)
            actions, error = exc.actions, str(exc)
        new = self.arbiter.state
        if new is not old:
            log.info("arbitration %s --%s--> %s", old.value, event.value, new.value)
        self.observer(Step(self.clock.now(), old, event, new, actions, error))
        for action in actions:
            await self._execute(action)

    async def _execute(self, action) -> None:
        verb = _QUORUM_VERBS.get(type(action))
        if verb is not None:
            await self._quorum(verb)
        elif isinstance(action, arb.StartTimer):
            self._start_timer(action.timer, action.seconds)
        elif isinstance(action, arb.CancelTimer):
            self._cancel(action.timer)
        elif isinstance(action, arb.GoOnline):
            self._spawn(self.hooks.go_online())
        elif isinstance(action, arb.TakeOverPartner):
            self._spawn(self.hooks.take_over_partner())
        elif isinstance(action, arb.PartnerRejoined):
            self._spawn(self.hooks.partner_rejoined())
        elif isinstance(action, arb.GoOffline):
            self._spawn(self._go_offline(action.planned))
        elif isinstance(action, arb.StopServices):
            for timer in list(self._timers):
                self._cancel(timer)
            self._spawn(self.hooks.stop_services(action.clean, action.reason))
        elif isinstance(action, arb.AnnounceShutdown):
            await self.hooks.announce_shutdown()
        else:
            raise TypeError(f"unknown arbitration action {action!r}")

    async def _quorum(self, verb: str) -> None:
        started = self.clock.now()
        answer = await getattr(self.reservations, verb)()
        seconds = self.clock.now() - started
        self.observer(QuorumCall(self.clock.now(), verb, answer.verdict, seconds, answer.detail))
        if not answer.ok:
            log.warning("quorum %s: %s", verb, answer.detail)
        ok, conflict, failed = _VERDICT_INPUTS[verb]
        self.post({Verdict.OK: ok, Verdict.CONFLICT: conflict,
                   Verdict.FAILED: failed}[answer.verdict])

    async def _go_offline(self, planned: bool) -> None:
        try:
            await self.hooks.go_offline(planned)
        finally:                      # a failed tear-down must not wedge the machine
            self.post(Input.OFFLINE_DONE)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cluster hook failed", exc_info=task.exception())

    # -- timers ------------------------------------------------------------

    def _start_timer(self, timer: arb.Timer, seconds: float) -> None:
        self._cancel(timer)
        token = object()

        def fire() -> None:
            self._queue.put_nowait((timer.input, token))

        self._timers[timer] = (token, self.clock.call_later(seconds, fire))

    def _cancel(self, timer: arb.Timer) -> None:
        entry = self._timers.pop(timer, None)
        if entry is not None:
            entry[1].cancel()

    def _current(self, token: object) -> bool:
        return any(entry[0] is token for entry in self._timers.values())
