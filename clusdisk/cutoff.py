"""The daemon's watch of its public ports (issue 11: a node cut off from its
clients must not keep its aggregates): every ``READ_INTERVAL_S`` the ports'
link state (``clusdisk.linkwatch``) goes through the hysteresis and the
decision of ``clusdisk.public_links``, whose "hand over" verdicts run as
planned relocations to the partner (``Operations.hand_over``).

Each verdict is logged when it changes, each handover with its outcome; a
refused handover (say, the replica not in sync) is tried again after
``RETRY_S``.  The port states are the gauge ``clusdisk_public_link_up`` and
part of the status (``public_links``), which the partner reads.
"""

import asyncio
import logging

from clusdisk.errors import ClusdiskError
from clusdisk.linkwatch import READ_INTERVAL_S, LinkReader
from clusdisk.public_links import CUT, UP, PortWatch, decide, ports_of
from clusdisk.placement import PlacementError

log = logging.getLogger("clusdisk.public_links")

RETRY_S = 5.0


class CutOffMonitor:
    """``settings()`` -> the current ``FailoverSettings`` (a reload changes
    them); ``operations`` the daemon's Operations; ``up_here()`` the names
    of the aggregates up on this node; ``partner_member()`` whether the
    partner is heard and a member; ``clock()`` monotonic seconds."""

    def __init__(self, aggregates, settings, operations, metrics, *, up_here, partner_member,
                 clock, reader=None) -> None:
        self.aggregates = tuple(aggregates)
        self.settings = settings
        self.operations = operations
        self.metrics = metrics
        self.up_here = up_here
        self.partner_member = partner_member
        self.clock = clock
        ports = {port for aggregate in self.aggregates for port in ports_of(aggregate)}
        self.watch = PortWatch(ports, settings().public_link_down_s)
        self.reader = reader or LinkReader(ports)
        self.verdicts: dict[str, tuple[str, str]] = {}
        self._read_error = ""
        self._retry_at = 0.0
        self._last_failure = ""
        for port in self.watch.ports:
            metrics.public_link_up.labels(port).set(1)

    def report(self) -> dict:
        report = self.watch.report(self.clock())
        report["handover"] = self.settings().public_link_handover
        waiting = {name: reason for name, (action, reason) in self.verdicts.items()
                   if action != "stay"}
        if waiting:
            report["waiting"] = waiting
        if self._read_error:
            report["error"] = self._read_error
        return report

    async def run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(READ_INTERVAL_S)

    async def step(self) -> None:
        """One reading, its changes and the decision it leads to."""
        try:
            readings = await self.reader.read()
        except OSError as exc:           # netlink unusable: say so, decide nothing
            if str(exc) != self._read_error:
                log.error("cannot read the public ports' link state: %s", exc)
            self._read_error = str(exc)
            return
        self._read_error = ""
        self.watch.down_s = self.settings().public_link_down_s
        now = self.clock()
        for change in self.watch.update(readings, now):
            self.metrics.public_link_up.labels(change.port).set(1 if change.new == UP else 0)
            if change.new == UP:
                log.info("public port %s up", change.port)
            elif change.new == CUT:
                log.warning("public port %s down for %.1f s (%s): cut off", change.port,
                            change.down_for_s, change.detail)
            else:
                log.warning("public port %s down (%s)", change.port, change.detail)
        if not self.settings().public_link_handover:
            self.verdicts.clear()
            return
        await self._decide(now)

    async def _decide(self, now: float) -> None:
        ops = self.operations
        up = self.up_here()
        owned = [a for a in self.aggregates
                 if ops.placement.owner.get(a.name) == ops.node_id and a.name in up]
        verdicts = decide(owned, self.watch, ops.partner_status,
                          partner_member=self.partner_member(), busy=ops.operation or "")
        self.verdicts = {v.aggregate: self._logged(v) for v in verdicts}
        names = [v.aggregate for v in verdicts if v.action == "hand over"]
        if not names or now < self._retry_at:
            return
        log.warning("handing %s over to %s: %s", ", ".join(names),
                    ops.name(ops.partner_id), "; ".join(
                        v.reason for v in verdicts if v.action == "hand over"))
        try:
            answer = await ops.hand_over(names)
        except (ClusdiskError, PlacementError) as exc:
            answer = {"ok": False, "error": str(exc)}
        if answer.get("ok"):
            self.metrics.public_link_handovers.labels("ok").inc()
            log.warning("%s handed over to %s in %.3f s (public ports down here); it stays "
                        "there until an operator gives it back", ", ".join(names),
                        ops.name(ops.partner_id), answer.get("seconds", 0.0))
            self._last_failure = ""
            return
        self.metrics.public_link_handovers.labels("refused").inc()
        self._retry_at = now + RETRY_S
        if answer.get("error") != self._last_failure:
            log.error("handover of %s refused: %s (tried again every %.0f s)",
                      ", ".join(names), answer.get("error"), RETRY_S)
        self._last_failure = answer.get("error") or ""

    def _logged(self, verdict) -> tuple[str, str]:
        pair = (verdict.action, verdict.reason)
        if self.verdicts.get(verdict.aggregate) != pair and verdict.action == "wait":
            log.warning("%s stays here: %s", verdict.aggregate, verdict.reason)
        elif self.verdicts.get(verdict.aggregate, ("stay", ""))[0] != "stay" \
                and verdict.action == "stay":
            log.info("%s: its public ports are up again", verdict.aggregate)
        return pair
