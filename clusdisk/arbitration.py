"""Quorum arbitration: a pure state machine declared as a table
(shared/STYLE.md rule 2).  Standard library only; no I/O, no clock: timers
are actions (``StartTimer``) and their expiry comes back as inputs.

``TABLES[mode][(state, input)] = Transition(next_state, actions)``.  An input
the table does not list for the current state is a bug or a broken peer:
the machine moves to ``State.ERROR`` and raises ``ArbitrationError`` carrying
fail-safe actions (go offline, stop services).  ``to_dot`` renders a table
for the docs.

The SCSI-2 mode follows the Microsoft cluster challenge/defense design
(KB 309186, "How the Cluster service reserves a disk and brings a disk
online"): the owner renews its reservation every 3 s; a node that loses the
heartbeat resets the quorum LUN, waits (7 s here, configurable), then tries
to reserve: success means the owner did not renew, so it waits another 10 s
(the old owner's renew finds the conflict and stops) and brings the quorum
online; failure means the owner is alive, so it stops its cluster services.
An owner whose renew meets RESERVATION CONFLICT stops at once.

The PR mode uses SCSI-3 persistent reservations (SPC-4 r17 5.7): every node
registers its key, the owner holds WRITE EXCLUSIVE - REGISTRANTS ONLY; on
heartbeat loss the owner at once PREEMPTs the lost node's key (fencing it),
while a standby waits ``pr_challenge_delay_s`` (giving a live owner the first
move) and then PREEMPTs the owner's key; no reset, no 7 s wait.  A preempted
node's verify (READ RESERVATION) shows another holder and it stops at once.

Clean handover: a node that shuts down tears down, releases, then announces
it; the partner reserves the quorum at once, without arbitration.
"""

import enum
from dataclasses import dataclass, replace


class Mode(enum.Enum):
    SCSI2 = "scsi2"
    PR = "pr"


class State(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"                  # PR: registering our key
    JOINING = "joining"                          # listening for the partner
    STANDBY = "standby"                          # member; the partner owns the quorum
    FORM_RESERVE = "form-reserve"
    FORM_CONFLICT_WAIT = "form-conflict-wait"    # reserved by someone: listen once more
    CHALLENGE_RESET = "challenge-reset"          # SCSI-2
    CHALLENGE_WAIT = "challenge-wait"
    CHALLENGE_PREEMPT = "challenge-preempt"      # PR
    CHALLENGE_RESERVE = "challenge-reserve"
    SETTLE_FORM = "settle-form"                  # reserved after forming, not online yet
    SETTLE_TAKEOVER = "settle-takeover"          # reserved after a won challenge
    HANDOVER_RESERVE = "handover-reserve"        # the partner left cleanly
    ONLINE = "online"                            # owner, partner alive
    ONLINE_PARTNER_LOST = "online-partner-lost"  # owner, takeover timer running
    ONLINE_TAKEN_OVER = "online-taken-over"      # owner, serving the partner's aggregates
    OFFLINING = "offlining"                      # leaving: tearing down (not owner)
    OFFLINING_OWNER = "offlining-owner"          # leaving: tearing down (owner)
    RELEASING = "releasing"
    RELEASING_OWNER = "releasing-owner"
    STOPPED = "stopped"                          # terminal: left the cluster
    ERROR = "error"                              # terminal: the table had no answer


class Input(enum.Enum):
    START = "start"
    SHUTDOWN = "shutdown"
    PARTNER_OWNER = "partner-owner"              # a heartbeat claiming the quorum
    PARTNER_STANDBY = "partner-standby"          # a heartbeat not claiming it
    PARTNER_LOST = "partner-lost"                # every heartbeat link timed out
    PARTNER_CLEAN_SHUTDOWN = "partner-clean-shutdown"
    JOIN_TIMER = "join-timer"
    RENEW_TIMER = "renew-timer"
    CHALLENGE_TIMER = "challenge-timer"
    SETTLE_TIMER = "settle-timer"
    TAKEOVER_TIMER = "takeover-timer"
    REGISTER_OK = "register-ok"
    REGISTER_FAILED = "register-failed"
    RESERVE_OK = "reserve-ok"
    RESERVE_CONFLICT = "reserve-conflict"
    RESERVE_FAILED = "reserve-failed"
    RENEW_OK = "renew-ok"
    RENEW_CONFLICT = "renew-conflict"
    RENEW_FAILED = "renew-failed"
    RESET_DONE = "reset-done"
    RESET_FAILED = "reset-failed"
    PREEMPT_OK = "preempt-ok"
    PREEMPT_CONFLICT = "preempt-conflict"
    PREEMPT_FAILED = "preempt-failed"
    RELEASE_DONE = "release-done"
    RELEASE_FAILED = "release-failed"
    OFFLINE_DONE = "offline-done"


class Timer(enum.Enum):
    JOIN = "join"
    RENEW = "renew"
    CHALLENGE = "challenge"
    SETTLE = "settle"
    TAKEOVER = "takeover"

    @property
    def input(self) -> Input:
        return _TIMER_INPUTS[self]


_TIMER_INPUTS = {Timer.JOIN: Input.JOIN_TIMER, Timer.RENEW: Input.RENEW_TIMER,
                 Timer.CHALLENGE: Input.CHALLENGE_TIMER, Timer.SETTLE: Input.SETTLE_TIMER,
                 Timer.TAKEOVER: Input.TAKEOVER_TIMER}


@dataclass(frozen=True)
class Timings:
    """Arbitration timings in seconds.  Defaults: the Microsoft design for
    SCSI-2 (renew 3 s, challenge wait 7 s, settle 10 s).

    ``pr_settle_s`` is longer than ``renew_s`` on purpose: PREEMPT fences the
    old owner's storage at once, but its LIFs and services stay up until its
    next verify; the settle time lets that verify run (and stop it) before
    the new owner brings the same addresses up.  ``takeover_delay_s`` is how
    long an owner waits after losing the partner before adopting the
    partner's aggregates: it must exceed the partner's challenge (config
    derives it per mode)."""

    renew_s: float = 3.0
    join_window_s: float = 6.0
    challenge_wait_s: float = 7.0
    settle_s: float = 10.0
    takeover_delay_s: float = 20.0
    pr_challenge_delay_s: float = 2.0
    pr_settle_s: float = 4.0

    def seconds(self, timer: Timer, mode: Mode) -> float:
        pr = mode is Mode.PR
        return {Timer.JOIN: self.join_window_s, Timer.RENEW: self.renew_s,
                Timer.CHALLENGE: self.pr_challenge_delay_s if pr else self.challenge_wait_s,
                Timer.SETTLE: self.pr_settle_s if pr else self.settle_s,
                Timer.TAKEOVER: self.takeover_delay_s}[timer]


# -- actions (executed by clusdisk.executor) --------------------------------

@dataclass(frozen=True)
class RegisterKey:
    """PR: register this node's key on the quorum LUN."""


@dataclass(frozen=True)
class ReserveQuorum:
    pass


@dataclass(frozen=True)
class RenewQuorum:
    """SCSI-2: RESERVE again; PR: verify we hold the reservation."""


@dataclass(frozen=True)
class ResetQuorum:
    pass


@dataclass(frozen=True)
class PreemptPartner:
    pass


@dataclass(frozen=True)
class ReleaseQuorum:
    pass


@dataclass(frozen=True)
class StartTimer:
    timer: Timer
    seconds: float | None = None     # filled in from Timings when emitted


@dataclass(frozen=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True)
class GoOnline:
    """This node is a cluster member: bring its home aggregates up."""


@dataclass(frozen=True)
class TakeOverPartner:
    """The partner is out (fenced or gone cleanly): adopt its aggregates."""


@dataclass(frozen=True)
class PartnerRejoined:
    """The partner is back after a takeover.  Nothing is given back here: its
    aggregates stay where the placement says until an operator (or the
    auto-giveback delay, once its replica is in sync) moves them
    (shared/reference/cluster.md 7(c))."""


@dataclass(frozen=True)
class GoOffline:
    """Tear every aggregate down; answer with OFFLINE_DONE.  ``planned``: a
    clean shutdown (the partner takes over at once), so smbcad's releases are
    planned (in-flight requests finish, every disconnect is committed);
    otherwise the node lost the cluster and lets go at once."""

    planned: bool = False


@dataclass(frozen=True)
class StopServices:
    """Leave the cluster (the daemon exits once offline)."""

    clean: bool
    reason: str


@dataclass(frozen=True)
class AnnounceShutdown:
    """Tell the partner (heartbeat flag) that we left cleanly."""


Action = (RegisterKey | ReserveQuorum | RenewQuorum | ResetQuorum | PreemptPartner
          | ReleaseQuorum | StartTimer | CancelTimer | GoOnline | TakeOverPartner
          | PartnerRejoined | GoOffline | StopServices | AnnounceShutdown)


@dataclass(frozen=True)
class Transition:
    next_state: State
    actions: tuple = ()


class ArbitrationError(Exception):
    """No transition for (state, input).  ``actions`` are the fail-safe
    actions the caller must still execute."""

    status = "no-transition"

    def __init__(self, state: State, event: Input, actions: tuple) -> None:
        super().__init__(f"no transition from {state.value} on {event.value}")
        self.state = state
        self.event = event
        self.actions = actions


# -- the tables ---------------------------------------------------------------

S, I = State, Input
PARTNER_INPUTS = (I.PARTNER_OWNER, I.PARTNER_STANDBY, I.PARTNER_LOST, I.PARTNER_CLEAN_SHUTDOWN)
RESULT_INPUTS = (I.REGISTER_OK, I.REGISTER_FAILED, I.RESERVE_OK, I.RESERVE_CONFLICT,
                 I.RESERVE_FAILED, I.RENEW_OK, I.RENEW_CONFLICT, I.RENEW_FAILED, I.RESET_DONE,
                 I.RESET_FAILED, I.PREEMPT_OK, I.PREEMPT_CONFLICT, I.PREEMPT_FAILED,
                 I.RELEASE_DONE, I.RELEASE_FAILED, I.OFFLINE_DONE)
TIMER_INPUTS = tuple(_TIMER_INPUTS.values())
OWNER_STATES = frozenset({S.ONLINE, S.ONLINE_PARTNER_LOST, S.ONLINE_TAKEN_OVER,
                          S.OFFLINING_OWNER, S.RELEASING_OWNER})
CLAIM_STATES = OWNER_STATES | {S.SETTLE_FORM, S.SETTLE_TAKEOVER}
MEMBER_STATES = frozenset({S.STANDBY, S.ONLINE, S.ONLINE_PARTNER_LOST, S.ONLINE_TAKEN_OVER})
TERMINAL_STATES = frozenset({S.STOPPED, S.ERROR})


def _lost(reason: str) -> tuple:
    return (GoOffline(), StopServices(False, reason))


_LEAVE = (CancelTimer(Timer.JOIN), CancelTimer(Timer.CHALLENGE), CancelTimer(Timer.SETTLE),
          CancelTimer(Timer.TAKEOVER), GoOffline(planned=True))
_RENEW = (RenewQuorum(), StartTimer(Timer.RENEW))
_HOLD = (StartTimer(Timer.SETTLE), StartTimer(Timer.RENEW))


def _build(mode: Mode) -> dict:
    pr = mode is Mode.PR
    table: dict = {}

    def row(state: State, event: Input, nxt: State, *actions) -> None:
        assert (state, event) not in table, (state, event)
        table[(state, event)] = Transition(nxt, tuple(actions))

    def ignore(state: State, *events: Input) -> None:
        for event in events:
            if (state, event) not in table:
                table[(state, event)] = Transition(state)

    challenge = ((S.CHALLENGE_WAIT, StartTimer(Timer.CHALLENGE)) if pr
                 else (S.CHALLENGE_RESET, ResetQuorum()))
    after_wait = ((S.CHALLENGE_PREEMPT, PreemptPartner()) if pr
                  else (S.CHALLENGE_RESERVE, ReserveQuorum()))
    back_to_standby = (GoOnline(), RegisterKey()) if pr else (GoOnline(),)

    row(S.IDLE, I.START, *((S.REGISTERING, RegisterKey()) if pr
                          else (S.JOINING, StartTimer(Timer.JOIN))))
    row(S.IDLE, I.SHUTDOWN, S.STOPPED, StopServices(True, "stopped before starting"))
    ignore(S.IDLE, *PARTNER_INPUTS)

    if pr:
        row(S.REGISTERING, I.REGISTER_OK, S.JOINING, StartTimer(Timer.JOIN))
        row(S.REGISTERING, I.REGISTER_FAILED, S.STOPPED,
            StopServices(False, "cannot register the quorum key"))
        ignore(S.REGISTERING, *PARTNER_INPUTS)

    row(S.JOINING, I.PARTNER_OWNER, S.STANDBY, CancelTimer(Timer.JOIN), GoOnline())
    row(S.JOINING, I.JOIN_TIMER, S.FORM_RESERVE, ReserveQuorum())
    ignore(S.JOINING, *PARTNER_INPUTS)

    row(S.FORM_RESERVE, I.RESERVE_OK, S.SETTLE_FORM, *_HOLD)
    row(S.FORM_RESERVE, I.RESERVE_CONFLICT, S.FORM_CONFLICT_WAIT, StartTimer(Timer.JOIN))
    row(S.FORM_RESERVE, I.RESERVE_FAILED, S.STOPPED,
        StopServices(False, "quorum disk unreachable"))
    ignore(S.FORM_RESERVE, *PARTNER_INPUTS)

    row(S.FORM_CONFLICT_WAIT, I.PARTNER_OWNER, S.STANDBY, CancelTimer(Timer.JOIN), GoOnline())
    row(S.FORM_CONFLICT_WAIT, I.JOIN_TIMER, *(after_wait if pr else challenge))
    ignore(S.FORM_CONFLICT_WAIT, *PARTNER_INPUTS)

    row(S.STANDBY, I.PARTNER_LOST, *challenge)
    row(S.STANDBY, I.PARTNER_CLEAN_SHUTDOWN, S.HANDOVER_RESERVE, ReserveQuorum())
    ignore(S.STANDBY, *PARTNER_INPUTS, I.RESET_DONE, I.RESET_FAILED, I.REGISTER_OK,
           I.REGISTER_FAILED)

    if not pr:
        row(S.CHALLENGE_RESET, I.RESET_DONE, S.CHALLENGE_WAIT, StartTimer(Timer.CHALLENGE))
        # a refused reset cannot break a live owner's reservation: the reserve decides
        row(S.CHALLENGE_RESET, I.RESET_FAILED, S.CHALLENGE_WAIT, StartTimer(Timer.CHALLENGE))
        row(S.CHALLENGE_RESET, I.PARTNER_OWNER, S.STANDBY, *back_to_standby)
        ignore(S.CHALLENGE_RESET, *PARTNER_INPUTS)

    row(S.CHALLENGE_WAIT, I.CHALLENGE_TIMER, *after_wait)
    row(S.CHALLENGE_WAIT, I.PARTNER_OWNER, S.STANDBY, CancelTimer(Timer.CHALLENGE),
        *back_to_standby)
    ignore(S.CHALLENGE_WAIT, *PARTNER_INPUTS)

    if pr:
        row(S.CHALLENGE_PREEMPT, I.PREEMPT_OK, S.CHALLENGE_RESERVE, ReserveQuorum())
        row(S.CHALLENGE_PREEMPT, I.PREEMPT_CONFLICT, S.STOPPED,
            *_lost("our quorum key was preempted: the partner is alive"))
        row(S.CHALLENGE_PREEMPT, I.PREEMPT_FAILED, S.STOPPED,
            *_lost("cannot preempt the partner's quorum key"))
        ignore(S.CHALLENGE_PREEMPT, *PARTNER_INPUTS)

    row(S.CHALLENGE_RESERVE, I.RESERVE_OK, S.SETTLE_TAKEOVER, *_HOLD)
    row(S.CHALLENGE_RESERVE, I.RESERVE_CONFLICT, S.STOPPED,
        *_lost("lost the challenge for the quorum disk"))
    row(S.CHALLENGE_RESERVE, I.RESERVE_FAILED, S.STOPPED, *_lost("quorum disk unreachable"))
    ignore(S.CHALLENGE_RESERVE, *PARTNER_INPUTS)

    renewing = (S.SETTLE_FORM, S.SETTLE_TAKEOVER, S.ONLINE, S.ONLINE_PARTNER_LOST,
                S.ONLINE_TAKEN_OVER)
    for state in renewing:
        row(state, I.RENEW_TIMER, state, *_RENEW)
        row(state, I.RENEW_CONFLICT, S.STOPPED, *_lost("quorum reservation lost"))
        row(state, I.RENEW_FAILED, S.STOPPED,
            *_lost("cannot renew the quorum reservation"))
        ignore(state, I.RENEW_OK)
    # PR: whoever holds the quorum fences a lost partner at once, whatever
    # owner state it is in; otherwise a standby whose challenge delay runs out
    # first preempts a live owner that was still settling.
    fence = (PreemptPartner(),) if pr else ()
    if pr:
        for state in renewing:
            if state is not S.ONLINE:
                row(state, I.PARTNER_LOST, state, *fence)
            row(state, I.PREEMPT_CONFLICT, S.STOPPED, *_lost("our quorum key was preempted"))
            ignore(state, I.PREEMPT_OK, I.PREEMPT_FAILED)
    row(S.SETTLE_FORM, I.SETTLE_TIMER, S.ONLINE_PARTNER_LOST, GoOnline(),
        StartTimer(Timer.TAKEOVER))
    row(S.SETTLE_TAKEOVER, I.SETTLE_TIMER, S.ONLINE_TAKEN_OVER, GoOnline(), TakeOverPartner())
    ignore(S.SETTLE_FORM, *PARTNER_INPUTS)
    ignore(S.SETTLE_TAKEOVER, *PARTNER_INPUTS)

    row(S.HANDOVER_RESERVE, I.RESERVE_OK, S.ONLINE_TAKEN_OVER, StartTimer(Timer.RENEW),
        GoOnline(), TakeOverPartner())
    row(S.HANDOVER_RESERVE, I.RESERVE_CONFLICT, *(after_wait if pr else challenge))
    row(S.HANDOVER_RESERVE, I.RESERVE_FAILED, S.STOPPED, *_lost("quorum disk unreachable"))
    ignore(S.HANDOVER_RESERVE, *PARTNER_INPUTS, I.RESET_DONE, I.RESET_FAILED, I.REGISTER_OK,
           I.REGISTER_FAILED)

    row(S.ONLINE, I.PARTNER_OWNER, S.ONLINE, RenewQuorum())
    row(S.ONLINE, I.PARTNER_LOST, S.ONLINE_PARTNER_LOST, *fence, StartTimer(Timer.TAKEOVER))
    row(S.ONLINE, I.PARTNER_CLEAN_SHUTDOWN, S.ONLINE_TAKEN_OVER, TakeOverPartner())
    row(S.ONLINE_PARTNER_LOST, I.TAKEOVER_TIMER, S.ONLINE_TAKEN_OVER, TakeOverPartner())
    row(S.ONLINE_PARTNER_LOST, I.PARTNER_OWNER, S.ONLINE, CancelTimer(Timer.TAKEOVER),
        RenewQuorum())
    row(S.ONLINE_PARTNER_LOST, I.PARTNER_STANDBY, S.ONLINE, CancelTimer(Timer.TAKEOVER))
    row(S.ONLINE_PARTNER_LOST, I.PARTNER_CLEAN_SHUTDOWN, S.ONLINE_TAKEN_OVER,
        CancelTimer(Timer.TAKEOVER), TakeOverPartner())
    row(S.ONLINE_TAKEN_OVER, I.PARTNER_OWNER, S.ONLINE_TAKEN_OVER, RenewQuorum())
    # partner back, still holding its aggregates: ONLINE is "owner, partner
    # alive"; which aggregates this node serves is the placement's business
    row(S.ONLINE_TAKEN_OVER, I.PARTNER_STANDBY, S.ONLINE, PartnerRejoined())
    for state in (S.ONLINE, S.ONLINE_PARTNER_LOST, S.ONLINE_TAKEN_OVER):
        row(state, I.SHUTDOWN, S.OFFLINING_OWNER, *_LEAVE)
        ignore(state, *PARTNER_INPUTS)

    leaving = [S.REGISTERING, S.JOINING, S.FORM_RESERVE, S.FORM_CONFLICT_WAIT, S.STANDBY,
               S.CHALLENGE_WAIT, S.CHALLENGE_RESERVE, S.SETTLE_FORM, S.SETTLE_TAKEOVER,
               S.HANDOVER_RESERVE]
    leaving += [S.CHALLENGE_PREEMPT] if pr else [S.CHALLENGE_RESET]
    for state in leaving:
        if pr or state is not S.REGISTERING:
            row(state, I.SHUTDOWN, S.OFFLINING, *_LEAVE)

    for offlining, releasing in ((S.OFFLINING, S.RELEASING),
                                 (S.OFFLINING_OWNER, S.RELEASING_OWNER)):
        row(offlining, I.OFFLINE_DONE, releasing, CancelTimer(Timer.RENEW), ReleaseQuorum())
        row(offlining, I.RENEW_TIMER, offlining, *_RENEW)
        row(offlining, I.RENEW_CONFLICT, S.STOPPED,
            StopServices(False, "quorum reservation lost while leaving"))
        ignore(offlining, I.SHUTDOWN, *PARTNER_INPUTS, *RESULT_INPUTS, *TIMER_INPUTS)
        for release in (I.RELEASE_DONE, I.RELEASE_FAILED):
            row(releasing, release, S.STOPPED, AnnounceShutdown(),
                StopServices(True, "clean shutdown"))
        ignore(releasing, I.SHUTDOWN, *PARTNER_INPUTS, *RESULT_INPUTS, *TIMER_INPUTS)

    ignore(S.STOPPED, *Input)
    return table


TABLES = {mode: _build(mode) for mode in Mode}


class Arbiter:
    """One node's arbitration state.  ``handle(input)`` returns the actions
    to execute, in order; timers carry their durations from ``timings``."""

    def __init__(self, mode: Mode, timings: Timings = Timings()) -> None:
        self.mode = mode
        self.timings = timings
        self.table = TABLES[mode]
        self.state = State.IDLE

    def handle(self, event: Input) -> tuple:
        transition = self.table.get((self.state, event))
        if transition is None:
            previous, self.state = self.state, State.ERROR
            fail_safe = () if previous is State.ERROR else _lost(
                f"arbitration error: no transition from {previous.value} on {event.value}")
            raise ArbitrationError(previous, event, fail_safe)
        self.state = transition.next_state
        return tuple(self._resolve(action) for action in transition.actions)

    def _resolve(self, action):
        if isinstance(action, StartTimer) and action.seconds is None:
            return replace(action, seconds=self.timings.seconds(action.timer, self.mode))
        return action

    @property
    def owns_quorum(self) -> bool:
        return self.state in OWNER_STATES

    @property
    def claims_quorum(self) -> bool:
        """Advertised in heartbeats: we hold or are about to own the quorum."""
        return self.state in CLAIM_STATES

    @property
    def member(self) -> bool:
        return self.state in MEMBER_STATES


def to_dot(mode: Mode) -> str:
    """Graphviz source of one table (self-loops without actions left out)."""
    lines = [f'digraph "clusdisk arbitration ({mode.value})" {{', "  rankdir=LR;"]
    for (state, event), transition in sorted(TABLES[mode].items(),
                                             key=lambda kv: (kv[0][0].value, kv[0][1].value)):
        if transition.next_state is state and not transition.actions:
            continue
        names = ", ".join(type(a).__name__ for a in transition.actions)
        label = event.value + (f" / {names}" if names else "")
        lines.append(f'  "{state.value}" -> "{transition.next_state.value}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines)
