"""The events ``cluster_lab.py`` injects, and what each one waits for.

Unplanned (done to the processes and links, by PID and by ``ip``):

- ``kill-a`` / ``kill-b``: the node dies.  smbcad is frozen (SIGSTOP) until
  the client's sockets to the node have nothing left to send (bounded), then
  clusdisk, smbcad and witnessd get SIGKILL by PID, and the LIF addresses the
  node held leave its ``pub0`` (its kernel would be gone with it: otherwise
  it would keep answering ARP for them).  The freeze is the lab's answer to
  Debian 6.1's cifs client, which fails a request it was still *sending*
  when the connection broke (tests/lab/README.md); a real dead node sends no
  RST, so no request breaks that way.  Ends when the partner serves every
  aggregate (clusdisk reports it up, smbcad reports it online).
- ``cut-a`` / ``cut-b``: smbcad frozen as for a kill until the client's
  sockets to the node have nothing left to send, then every link of the
  node down (no RST) and smbcad running again (the node lives on, cut off);
  ends when the partner serves every aggregate.  The
  partition is decided on the quorum LUN, which both nodes still reach: the
  quorum owner preempts the standby's key and stays.  The owner is A at
  first (it formed the cluster) and the node that took over after a kill (the
  killed node rejoins as standby).  A cut of the standby moves its
  aggregates to the owner; a cut of the owner moves nothing: it keeps every
  aggregate on a node no client reaches (clusdisk hands aggregates over
  when its public ports are down only to a partner it hears and that reports
  its own ports up; here the heartbeat is cut too) and the event times out.
- ``restart-a`` / ``restart-b``: the node's daemons get SIGTERM (clusdisk
  first: its clean shutdown hands its aggregates to the partner) and are
  waited for, then start again; ends when the node is a member again and
  the partner serves every aggregate (until a ``giveback``).

Planned (a JSON request to a clusdisk control socket, after waiting, at
most ``PLANNED_WAIT_S``, until clusdisk's status says it is possible when
it has such a field): ``takeover-a`` / ``takeover-b`` (``takeover`` to A /
B: the rolling upgrade's first step), ``giveback`` (to
the node holding its partner's aggregates), ``relocate-aggr1`` (to aggr1's
owner, ``to`` the other node), ``lif-migrate-lif1`` (to the node holding
lif1, ``to`` the other).  An error answer fails the event, with the reason.

Each event leaves a record: name, planned time, ``start_s``/``end_s``
(seconds after COMMAND started), ``outcome`` ("ok" or "failed"),
``detail``, the request and the reply for planned events, and later the
daemons' log lines of its window (``log_steps``).  ``$SMBCA_EVENTS`` gets a
line at each event's start and end, and one when a kill is done.
"""

import json
import re
import signal
import subprocess
import threading
import time

from cluster_nodes import AGGREGATES, NODE_ADDRESS, OTHER, SIDES
from smbca.control import ControlError, request_blocking

PLANNED_WAIT_S = 120
PLANNED_REPLY_S = 300
TAKEOVER_S = 300                 # unplanned: partner loss -> everything served (TCG)
REJOIN_S = 420
FREEZE_S = 3
# Frozen this long before the send queues count: longer than the writers'
# gap between WRITEs (0.5 s), so the next WRITE is issued into the frozen
# server and is cut off by the kill (an empty queue at once only means the
# writer was between WRITEs).
FREEZE_SETTLE_S = 1.0
FREEZE_TRIES = 5
FINISH_S = 600
READY_S = 300                    # --after-ready: at most this long for COMMAND's clients
UNPLANNED = ("kill-a", "kill-b", "cut-a", "cut-b")
# what a planned event waits for in the target's clusdisk status, when present
POSSIBLE_FIELD = {"takeover-a": "takeover_possible", "takeover-b": "takeover_possible",
                  "giveback": "giveback_possible"}
# smbca.logs on stderr: "TIME NAME: MESSAGE" (info) or "TIME NAME: LEVEL: MESSAGE"
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (\S+): "
                      r"(?:(debug|warning|error|critical): )?(.*)$")
SMBCAD_STEP = re.compile(r"adopt|releas|marker|mirror link|reconnected persistent|restored|"
                         r"degrad|refused|journal", re.IGNORECASE)
MAX_LOG_LINES = 80


class EventFailed(Exception):
    pass


def control(node, daemon: str, message: dict, timeout_s: float = 5.0) -> dict:
    return request_blocking(node.sockets[daemon], message, timeout_s)


def smbcad_status(node) -> dict:
    """smbcad's status (for the record), or {"error": why}."""
    try:
        reply = control(node, "smbcad", {"command": "status"}, 30)
    except ControlError as exc:
        return {"error": str(exc)}
    return reply.get("status") or {"error": reply.get("error", "no status")}


def serving(node, aggregates) -> bool:
    """``node``'s clusdisk has every one of ``aggregates`` up: it counts an
    aggregate up only after its whole bring-up (reserve, mount, smbcad
    adopted it, LIF up, witnessd told) succeeded."""
    try:
        status = control(node, "clusdisk", {"command": "status"}).get("status") or {}
    except ControlError:
        return False
    up = {a["name"] for a in status.get("aggregates", ()) if a.get("up")}
    return set(aggregates) <= up


def member(node) -> bool:
    """``node``'s clusdisk is a cluster member (standby or online)."""
    try:
        status = control(node, "clusdisk", {"command": "status"}).get("status") or {}
    except ControlError:
        return False
    return bool(status.get("member"))


def held_lifs(cluster, side: str) -> set[str]:
    """The LIF addresses on ``side``'s pub0."""
    out = subprocess.run(["ip", "-n", cluster.topology.pair.names[side], "-o", "addr", "show",
                          "pub0"], capture_output=True, text=True, timeout=30, check=False).stdout
    return {address for *_, address in AGGREGATES.values() if f" {address}/" in out}


def client_send_queues(cluster, side: str) -> list[int]:
    """Send-Q of the client namespace's TCP connections to ``side``'s
    addresses (its node address and the LIFs it holds)."""
    out = subprocess.run(cluster.topology.argv("client", "ss", "-tnH", "state", "established"),
                         capture_output=True, text=True, timeout=30, check=False).stdout
    addresses = {NODE_ADDRESS[side]} | held_lifs(cluster, side)
    return [int(fields[1]) for fields in map(str.split, out.splitlines())
            if len(fields) >= 4 and fields[3].rpartition(":")[0] in addresses]


class EventRunner(threading.Thread):
    """Runs the events at their times, one after the other; ``records``."""

    def __init__(self, cluster, sampler, events: list[tuple[str, float]],
                 ready_file=None, settle_s: float = 0.0) -> None:
        super().__init__(name="cluster-events", daemon=True)
        self.cluster = cluster
        self.sampler = sampler
        self.pending = list(events)
        self.ready_file = ready_file       # times count from its creation (--after-ready)
        self.ready_s = 0.0
        self.settle_s = settle_s           # at least this long between two events
        self.records: list[dict] = []
        self.command: subprocess.Popen | None = None   # COMMAND, killed if never ready
        self._command_done = threading.Event()

    def _publish(self, record: dict, phase: str) -> None:
        with open(self.cluster.events_file, "a", encoding="utf-8") as out:
            out.write(json.dumps({"phase": phase, **record}) + "\n")

    def run(self) -> None:
        if self.ready_file is not None:
            deadline = time.monotonic() + READY_S
            while not self.ready_file.exists() and time.monotonic() < deadline:
                if self._command_done.wait(0.25):
                    break
            self.ready_s = round(self.cluster.clock(), 3)
            if not self.ready_file.exists() and not self._command_done.is_set():
                self._never_ready()
                return
            print(f"cluster: COMMAND ready at {self.ready_s:.1f} s; the events' times count "
                  f"from there", flush=True)
        previous_end = float("-inf")
        for name, at in self.pending:
            record = {"event": name, "at_s": at + self.ready_s}
            self.records.append(record)
            wait = max(at + self.ready_s, previous_end + self.settle_s) - self.cluster.clock()
            if self._command_done.is_set() or (wait > 0 and self._command_done.wait(wait)):
                record.update(outcome="skipped", detail="COMMAND ended before its time")
                continue
            record["start_s"] = round(self.cluster.clock(), 3)
            self._publish(record, "start")
            try:
                detail = getattr(self, "_" + name.replace("-", "_"))(record)
                record.update(outcome="ok", detail=detail)
            except (EventFailed, ControlError, OSError, subprocess.SubprocessError,
                    AssertionError) as exc:
                record.update(outcome="failed", detail=str(exc))
            record["end_s"] = round(self.cluster.clock(), 3)
            previous_end = record["end_s"]
            record["took_s"] = round(record["end_s"] - record["start_s"], 3)
            self._publish(record, "end")
            print(f"cluster: event {name} at {record['start_s']:.1f} s: {record['outcome']} "
                  f"after {record['took_s']:.1f} s: {record['detail']}", flush=True)

    def _never_ready(self) -> None:
        """COMMAND's clients were not ready after READY_S (they take 20-60 s):
        say what the guest's tasks are blocked on, then end COMMAND, so the
        run fails now with the evidence instead of at the lab's deadline."""
        print(f"cluster: COMMAND not ready after {READY_S} s; its events are skipped and "
              f"it is killed.  Tasks in uninterruptible sleep:", flush=True)
        try:
            with open("/proc/sysrq-trigger", "w") as trigger:
                trigger.write("w")               # blocked tasks' stacks into the kernel log
        except OSError as exc:
            print(f"cluster: sysrq-trigger: {exc}", flush=True)
        for argv in (["ps", "-eo", "pid,stat,wchan:32,etimes,args"], ["dmesg"]):
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
            except (OSError, subprocess.SubprocessError) as exc:
                out = f"{argv[0]}: {exc}"
            lines = out.splitlines()
            if argv[0] == "ps":
                lines = [line for line in lines[1:] if line.split()[1].startswith("D")]
            for line in lines[-150:]:
                print(f"cluster: {argv[0]}| {line}", flush=True)
        for name, at in self.pending:
            self.records.append({"event": name, "at_s": at, "outcome": "skipped",
                                 "detail": f"COMMAND not ready after {READY_S} s"})
        if self.command is not None and self.command.poll() is None:
            self.command.kill()

    def finish(self) -> None:
        """COMMAND ended: events not yet due are skipped; the one running is
        waited for (bounded)."""
        self._command_done.set()
        self.join(FINISH_S)

    # -- helpers -----------------------------------------------------------------------

    def _wait(self, predicate, timeout_s: float, what: str) -> float:
        began = time.monotonic()
        deadline = began + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise EventFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(0.25)
        return time.monotonic() - began

    def _all_served_by(self, side: str, record: dict, what: str) -> str:
        node = self.cluster.nodes[side]
        waited = self._wait(lambda: serving(node, AGGREGATES), TAKEOVER_S,
                            f"node {side} to serve {', '.join(AGGREGATES)}")
        record["served_s"] = round(self.cluster.clock(), 3)
        return f"{what}; node {side} serves every aggregate {waited:.1f} s later"

    def _freeze(self, side: str) -> str:
        """SIGSTOP smbcad until the client's sockets to ``side`` have nothing
        left to send.  A WRITE larger than the socket buffers never drains
        into a frozen server: then let it run a moment and try again."""
        node = self.cluster.nodes[side]
        queues: list[int] = []
        for attempt in range(1, FREEZE_TRIES + 1):
            node.signal("smbcad", signal.SIGSTOP)
            time.sleep(FREEZE_SETTLE_S)
            deadline = time.monotonic() + FREEZE_S
            queues = client_send_queues(self.cluster, side)
            while any(queues) and time.monotonic() < deadline:
                time.sleep(0.05)
                queues = client_send_queues(self.cluster, side)
            if not any(queues):
                seen = queues or "no connection"
                return f"smbcad frozen until the client's send queues were empty ({seen}, " \
                       f"attempt {attempt})"
            node.signal("smbcad", signal.SIGCONT)
            time.sleep(0.3)
        node.signal("smbcad", signal.SIGSTOP)
        return f"smbcad frozen; the client's send queues never drained ({queues}), killed anyway"

    def _kill(self, side: str, record: dict) -> str:
        node, cluster = self.cluster.nodes[side], self.cluster
        frozen = self._freeze(side)
        pids = node.kill()
        record["killed_s"] = round(cluster.clock(), 3)
        self._publish(record, "killed")
        dropped = cluster.topology.drop_lifs(side)
        what = (f"{frozen}, then SIGKILL {pids}; LIFs {dropped or 'none'} removed from "
                f"{side}'s pub0")
        return self._all_served_by(OTHER[side], record, what)

    def _kill_a(self, record: dict) -> str:
        return self._kill("A", record)

    def _kill_b(self, record: dict) -> str:
        return self._kill("B", record)

    def _cut(self, side: str, record: dict) -> str:
        # as for a kill: no request half sent when the links go (Debian 6.1
        # fails it with ECONNABORTED once the tickle ACK resets the connection)
        frozen = self._freeze(side)
        self.cluster.topology.links_down(side)
        self.cluster.nodes[side].signal("smbcad", signal.SIGCONT)   # the node lives on, cut off
        record["killed_s"] = round(self.cluster.clock(), 3)
        self._publish(record, "killed")
        return self._all_served_by(OTHER[side], record, f"{frozen}, then every link of {side} "
                                                        f"down and smbcad running again")

    def _cut_a(self, record: dict) -> str:
        return self._cut("A", record)

    def _cut_b(self, record: dict) -> str:
        return self._cut("B", record)

    def _restart(self, side: str, record: dict) -> str:
        node = self.cluster.nodes[side]
        statuses = node.stop()
        record["stopped_s"] = round(self.cluster.clock(), 3)
        node.unmount_stale()
        # as the units order them (clusdisk.service: After=smbcad witnessd, Type=notify)
        node.start(("witnessd", "smbcad"))
        node.wait_sockets(("witnessd", "smbcad"))
        node.start(("clusdisk",))
        node.wait_sockets(("clusdisk",))
        record["started_s"] = round(self.cluster.clock(), 3)
        # the clean shutdown handed the node's aggregates to its partner, and
        # they stay there (no automatic giveback): the node is back once it
        # is a member again.
        other = OTHER[side]
        partner = self.cluster.nodes[other]
        waited = self._wait(lambda: member(node) and serving(partner, list(AGGREGATES)),
                            REJOIN_S, f"{side} to rejoin as a member with {other} serving "
                                      f"everything")
        return f"stopped (exit statuses {statuses}), started again; {side} a member again " \
               f"after {waited:.1f} s ({other} serves every aggregate until a giveback)"

    def _restart_a(self, record: dict) -> str:
        return self._restart("A", record)

    def _restart_b(self, record: dict) -> str:
        return self._restart("B", record)

    # -- planned -----------------------------------------------------------------------

    def _planned(self, record: dict, side: str, message: dict) -> str:
        node = self.cluster.nodes[side]
        field = POSSIBLE_FIELD.get(record["event"])
        if field is not None:
            def possible():
                status = self.sampler.latest[side] or {}
                return field not in status or bool(status[field])
            try:
                self._wait(possible, PLANNED_WAIT_S, f"{field} on node {side}")
            except EventFailed as exc:
                status = self.sampler.latest[side] or {}
                why = {k: v for k, v in status.items() if k.startswith(field.split("_")[0])}
                raise EventFailed(f"{exc}: {why}") from None
        record["request"] = {"node": side.lower(), **message}
        record["sent_s"] = round(self.cluster.clock(), 3)
        reply = control(node, "clusdisk", message, PLANNED_REPLY_S)
        record["reply"] = reply
        if not reply.get("ok"):
            raise EventFailed(f"clusdisk {side} refused {message['command']}: "
                              f"{reply.get('error', 'no reason given')}")
        return f"clusdisk {side} answered ok"

    def _fresh_statuses(self) -> dict:
        """Both clusdisk statuses asked now (the sampler's may be a round old,
        more when the host is loaded: right after a move it can still show
        the aggregates where they were)."""
        out = {}
        for side in SIDES:
            try:
                reply = control(self.cluster.nodes[side], "clusdisk", {"command": "status"})
            except ControlError:
                reply = {}
            out[side] = reply.get("status") or {}
        return out

    def _find(self, choose, what: str) -> str:
        """The side ``choose(statuses)`` names, waiting (bounded) until it names one."""
        found: list[str] = []

        def named() -> bool:
            side = choose(self._fresh_statuses())
            if side:
                found.append(side)
            return bool(side)
        try:
            self._wait(named, PLANNED_WAIT_S, what)
        except EventFailed as exc:
            raise EventFailed(f"{exc}: {self._fresh_statuses()}") from None
        return found[-1]

    def _holder_of_partner_aggregates(self) -> str:
        def holder(statuses: dict) -> str | None:
            for side, status in statuses.items():
                if any(a.get("up") and a.get("home") != status.get("node", {}).get("id")
                       for a in status.get("aggregates", ())):
                    return side
            return None
        return self._find(holder, "a node holding its partner's aggregates (to give back)")

    def _owner_of(self, aggregate: str) -> str:
        def owner(statuses: dict) -> str | None:
            return next((side for side, status in statuses.items()
                         if any(a["name"] == aggregate and a.get("up")
                                for a in status.get("aggregates", ()))), None)
        return self._find(owner, f"{aggregate} up on a node")

    def _takeover_a(self, record: dict) -> str:
        return self._planned(record, "A", {"command": "takeover", "version": 1})

    def _takeover_b(self, record: dict) -> str:
        return self._planned(record, "B", {"command": "takeover", "version": 1})

    def _giveback(self, record: dict) -> str:
        return self._planned(record, self._holder_of_partner_aggregates(),
                             {"command": "giveback", "version": 1})

    def _relocate_aggr1(self, record: dict) -> str:
        owner = self._owner_of("aggr1")
        return self._planned(record, owner, {"command": "relocate", "version": 1,
                                             "aggregate": "aggr1", "to": OTHER[owner].lower()})

    def _lif_migrate_lif1(self, record: dict) -> str:
        address = AGGREGATES["aggr1"][4]
        holder = next((side for side in SIDES if address in held_lifs(self.cluster, side)),
                      None)
        if holder is None:
            raise EventFailed(f"lif1 ({address}) is up on no node")
        return self._planned(record, holder, {"command": "lif-migrate", "version": 1,
                                              "lif": "lif1", "to": OTHER[holder].lower()})


def log_steps(cluster, record: dict) -> list[dict]:
    """The daemons' log lines in the event's window (every clusdisk line,
    smbcad's adoption, release and mirror lines), each with its time after
    COMMAND started and the time since the previous line."""
    start = cluster.wall0 + record["start_s"] - 0.5
    end = cluster.wall0 + record.get("end_s", record["start_s"]) + 2.0
    lines = []
    for side, node in cluster.nodes.items():
        for daemon in ("clusdisk", "smbcad"):
            try:
                text = node.log_path(daemon).read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                match = LOG_TIME.match(line)
                if not match:
                    continue
                at = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")) \
                    + int(match.group(2)) / 1000
                if not start <= at <= end:
                    continue
                if daemon == "smbcad" and not SMBCAD_STEP.search(match.group(5)):
                    continue
                lines.append((at, side.lower(), daemon, match.group(4) or "info",
                              match.group(5)))
    lines.sort()
    steps, previous = [], None
    for at, node, daemon, level, message in lines[:MAX_LOG_LINES]:
        steps.append({"t": round(at - cluster.wall0, 3),
                      "dt": round(at - previous, 3) if previous is not None else 0.0,
                      "node": node, "daemon": daemon, "level": level, "message": message})
        previous = at
    return steps


def phases(record: dict) -> dict:
    """For an unplanned event, where the time went, from its ``log``:
    ``detect_s`` (the kill or cut to the partner's "partner lost"),
    ``arbitration_s`` (to its quorum state online-taken-over),
    ``bring_up_s`` (to the last "aggregate ... is up": reserve, fsck, mount,
    smbcad's adoption, LIF), ``adopt_s`` (smbcad's own figure) and
    ``total_s`` (the kill or cut to the last aggregate up)."""
    began = record.get("killed_s", record.get("start_s"))
    marks: dict[str, float] = {}
    for step in record.get("log", ()):
        message = step["message"]
        if "partner lost" in message:
            marks.setdefault("lost", step["t"])
        elif "--> online-taken-over" in message:
            marks.setdefault("online", step["t"])
        elif re.match(r"aggregate \S+ is up on node", message):
            marks["up"] = step["t"]
        adopted = re.search(r"adopted \S+ from its \w+ copy: \d+ persistent opens in ([0-9.]+) s",
                            message)
        if adopted:
            marks["adopt"] = float(adopted.group(1))
    out = {}
    if began is not None and "lost" in marks:
        out["detect_s"] = round(marks["lost"] - began, 3)
    if "lost" in marks and "online" in marks:
        out["arbitration_s"] = round(marks["online"] - marks["lost"], 3)
    if "online" in marks and "up" in marks:
        out["bring_up_s"] = round(marks["up"] - marks["online"], 3)
    if "adopt" in marks:
        out["adopt_s"] = marks["adopt"]
    if began is not None and "up" in marks:
        out["total_s"] = round(marks["up"] - began, 3)
    return out
