"""Two real arbiters (Arbiter + ArbitrationExecutor + reservations over
SgDevice) on one FakeLun, heartbeating with the real sans-IO
HeartbeatProtocol over a fake network, under a fake clock
(shared/STYLE.md rule 14: wire two real state machines together).

``Cluster.advance(seconds)`` moves time in small steps, fires due timers,
lets the event loop run until every node is idle, and checks after every
step and every arbitration transition that no two nodes believe they own
the quorum.  A crashed node believes nothing; a frozen (hung) node keeps
believing what it believed.
"""

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

from clusdisk.arbitration import Arbiter, Mode, State, Timings
from clusdisk.executor import ArbitrationExecutor, QuorumCall, Step
from clusdisk.heartbeat import (
    HeartbeatConfig,
    HeartbeatProtocol,
    PartnerLost,
    PartnerSeen,
    PartnerShutdown,
)
from clusdisk.arbitration import Input
from clusdisk.reservations import PrReservation, Scsi2Reservation
from fake_lun import FakeLun

KEY = b"k" * 32
PR_KEYS = {1: 0x736D626300000001, 2: 0x736D626300000002}


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self._heap: list = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def call_later(self, delay: float, callback):
        entry = [self.t + max(delay, 0.0), next(self._seq), callback, False]
        heapq.heappush(self._heap, entry)
        return _Handle(entry)

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0][3]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def fire_due(self) -> int:
        fired = 0
        while self._heap and self._heap[0][0] <= self.t + 1e-9:
            entry = heapq.heappop(self._heap)
            if not entry[3]:
                entry[3] = True
                entry[2]()
                fired += 1
        return fired


class _Handle:
    def __init__(self, entry) -> None:
        self._entry = entry

    def cancel(self) -> None:
        self._entry[3] = True


class NodeClock:
    """A node's view of the shared clock: while the node is frozen its
    callbacks wait, and run (late) when it thaws."""

    def __init__(self, clock: FakeClock, node: "Node") -> None:
        self.clock = clock
        self.node = node

    def now(self) -> float:
        return self.clock.now()

    def call_later(self, delay, callback):
        def guarded() -> None:
            if self.node.crashed:
                return
            if self.node.frozen:
                self.node.backlog.append(callback)
            else:
                callback()
        return self.clock.call_later(delay, guarded)


@dataclass
class Hooks:
    node: "Node"
    calls: list = field(default_factory=list)

    def _record(self, what: str) -> None:
        self.calls.append((round(self.node.clock.now(), 3), what))

    async def go_online(self) -> None:
        self._record("go_online")

    async def take_over_partner(self) -> None:
        self._record("take_over_partner")

    async def partner_rejoined(self) -> None:
        self._record("partner_rejoined")

    async def go_offline(self, planned: bool = False) -> None:
        self._record("go_offline")

    async def stop_services(self, clean: bool, reason: str) -> None:
        self._record(f"stop_services clean={clean}: {reason}")
        self.node.stopped_at = self.node.clock.now()

    async def announce_shutdown(self) -> None:
        self._record("announce_shutdown")
        for _ in range(3):
            self.node.send_heartbeat(clean_shutdown=True)

    def names(self) -> list[str]:
        return [what.split(":")[0].split(" ")[0] for _, what in self.calls]


class Node:
    def __init__(self, cluster: "Cluster", node_id: int, nexus: int) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.nexus = nexus
        self.peer_id = 3 - node_id
        self.crashed = False
        self.frozen = False
        self.backlog: list = []
        self.stopped_at: float | None = None
        self.clock = NodeClock(cluster.clock, self)
        self.arbiter = Arbiter(cluster.mode, cluster.timings)
        device = cluster.lun.device(nexus)
        if cluster.mode is Mode.PR:
            self.reservations = PrReservation(device, PR_KEYS[node_id], PR_KEYS[self.peer_id],
                                              preempt_abort=cluster.preempt_abort)
        else:
            self.reservations = Scsi2Reservation(device)
        self.hooks = Hooks(self)
        self.steps: list[Step] = []
        self.quorum_calls: list[QuorumCall] = []
        self.executor = ArbitrationExecutor(self.arbiter, self.reservations, self.clock,
                                            self.hooks, observer=self._observe)
        self.heartbeat = HeartbeatProtocol(
            HeartbeatConfig(node_id, self.peer_id, KEY, links=cluster.links,
                            interval_s=cluster.hb_interval_s, miss_count=cluster.hb_miss),
            incarnation=int(cluster.clock.now() * 1000) + 1)
        self.started = False

    @property
    def name(self) -> str:
        return "AB"[self.node_id - 1]

    @property
    def state(self) -> State:
        return self.arbiter.state

    def believes_owner(self) -> bool:
        return not self.crashed and self.arbiter.owns_quorum

    def _observe(self, record) -> None:
        if isinstance(record, Step):
            self.steps.append(record)
            self.cluster.record_overlap()
        elif isinstance(record, QuorumCall):
            self.quorum_calls.append(record)

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        self.started = True
        self.executor.start()
        self._heartbeat_tick()

    def _heartbeat_tick(self) -> None:
        if self.stopped_at is not None or self.crashed:
            return
        self.send_heartbeat()
        self.deliver(self.heartbeat.poll(self.clock.now()))
        self.clock.call_later(self.cluster.hb_interval_s, self._heartbeat_tick)

    def send_heartbeat(self, clean_shutdown: bool = False) -> None:
        datagrams = self.heartbeat.send(self.clock.now(),
                                        claims_quorum=self.arbiter.claims_quorum,
                                        clean_shutdown=clean_shutdown)
        self.cluster.network.carry(self, datagrams)

    def receive(self, link: int, data: bytes) -> None:
        if self.crashed or self.frozen or self.stopped_at is not None:
            return
        self.deliver(self.heartbeat.receive(link, data, self.clock.now()))

    def deliver(self, events) -> None:
        for event in events:
            if isinstance(event, PartnerSeen):
                self.executor.post(Input.PARTNER_OWNER if event.claims_quorum
                                   else Input.PARTNER_STANDBY)
            elif isinstance(event, PartnerLost):
                self.executor.post(Input.PARTNER_LOST)
            elif isinstance(event, PartnerShutdown):
                self.executor.post(Input.PARTNER_CLEAN_SHUTDOWN)

    def shutdown(self) -> None:
        self.executor.post(Input.SHUTDOWN)

    async def crash(self) -> None:
        self.crashed = True
        await self.executor.stop()

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False
        backlog, self.backlog = self.backlog, []
        for callback in backlog:
            callback()


class Network:
    """Per-direction, per-link switches; datagrams are delivered at once."""

    def __init__(self, cluster: "Cluster") -> None:
        self.cluster = cluster
        self.cut: set = set()          # (from_node_id, link)

    def carry(self, sender: Node, datagrams) -> None:
        peer = self.cluster.nodes[sender.peer_id]
        if not peer.started:
            return
        for link, data in datagrams:
            if (sender.node_id, link) not in self.cut:
                peer.receive(link, data)

    def cut_all(self) -> None:
        self.cut = {(n, link) for n in (1, 2) for link in range(self.cluster.links)}

    def heal(self) -> None:
        self.cut.clear()


class InvariantViolation(AssertionError):
    pass


class Cluster:
    def __init__(self, mode: Mode, timings: Timings = Timings(), *, links: int = 1,
                 hb_interval_s: float = 1.0, hb_miss: int = 5,
                 preempt_abort: bool = False, lun: FakeLun | None = None) -> None:
        self.mode = mode
        self.timings = timings
        self.links = links
        self.hb_interval_s = hb_interval_s
        self.hb_miss = hb_miss
        self.preempt_abort = preempt_abort
        self.clock = FakeClock()
        self.lun = lun or FakeLun()
        self.network = Network(self)
        self.nodes = {1: Node(self, 1, 0), 2: Node(self, 2, 1)}
        self.a, self.b = self.nodes[1], self.nodes[2]
        self.overlaps: list = []

    def owners(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.believes_owner()]

    def record_overlap(self) -> None:
        """Called on every transition (inside an executor: never raises)."""
        owners = self.owners()
        if len(owners) > 1:
            self.overlaps.append((self.clock.now(), [(n.name, n.state.value) for n in owners]))

    def check_invariant(self) -> None:
        self.record_overlap()
        if self.overlaps:
            at, owners = self.overlaps[0]
            raise InvariantViolation(f"t={at:.2f}: both believe they own the quorum: {owners}")

    async def settle(self) -> None:
        for _ in range(10_000):
            await asyncio.sleep(0)
            if all(n.executor.idle() for n in self.nodes.values() if n.started and not n.crashed):
                await asyncio.sleep(0)
                if all(n.executor.idle() for n in self.nodes.values()
                       if n.started and not n.crashed):
                    return
        raise AssertionError("executors never went idle")

    async def advance(self, seconds: float, step: float = 0.1) -> None:
        end = self.clock.t + seconds
        await self.settle()
        while self.clock.t < end - 1e-9:
            nxt = self.clock.next_deadline()
            target = min(end, self.clock.t + step)
            if nxt is not None and nxt < target:
                target = max(nxt, self.clock.t)
            self.clock.t = target
            self.clock.fire_due()
            await self.settle()
            self.check_invariant()

    async def until(self, predicate, limit_s: float, step: float = 0.1) -> float:
        """Advance until ``predicate()`` holds; returns the elapsed time."""
        start = self.clock.t
        while not predicate():
            if self.clock.t - start > limit_s:
                raise AssertionError(f"condition not met within {limit_s} s")
            await self.advance(step, step)
        return self.clock.t - start

    async def close(self) -> None:
        for node in self.nodes.values():
            if not node.crashed:
                await node.executor.stop()
