"""The client-facing (public) ports a node's LIFs live on, and whether a
node cut off from its clients hands its aggregates to the partner (issue
11).  Pure and standard library only: ``clusdisk.linkwatch`` reads the
ports with netlink, the daemon feeds the readings here and runs the moves
this decides through ``Operations`` (the planned relocation path).

The anchors: a Windows failover cluster fails a group over when its IP
Address resource fails (the network interface failed); ONTAP moves LIFs
when their port fails.  Here:

- a port is *down* once a reading says so (admin down, no carrier, or no
  such interface), and *cut* once it has stayed down for
  ``failover.public_link_down_ms`` without an up reading in between
  (hysteresis: a flapping link does not move anything);
- an aggregate this node owns is handed over when every port of its LIFs is
  cut here **and** the partner reports every one of those ports up.  A
  partner that reports no public ports (a release without this, or no fresh
  status) is "unknown": nothing moves.  Nor while the partner is not a
  member, while an operation runs, or when the aggregate has no LIF.  The
  partner's answer to the relocation's ``prepare`` looks at its own ports
  again (the owner decided on a status up to a second old);
- nothing comes back by itself when the link returns: the aggregate is on
  the partner, which does not give it back automatically either
  (``Operations.auto_giveback`` skips an aggregate handed over this way);
  the operator gives back, as after any takeover.
"""

from dataclasses import dataclass

UP, DOWN, CUT = "up", "down", "cut"


@dataclass(frozen=True)
class Reading:
    """One port as netlink showed it: ``up`` (admin up and carrier) and,
    when not, why ("admin down", "no carrier", "missing")."""

    up: bool
    detail: str = ""


@dataclass(frozen=True)
class PortChange:
    """A port's state changed (up -> down -> cut, or back to up)."""

    port: str
    old: str
    new: str
    detail: str
    down_for_s: float = 0.0


class PortWatch:
    """The hysteresis of every public port: feed ``update(readings, now)``."""

    def __init__(self, ports, down_s: float) -> None:
        if down_s <= 0:
            raise ValueError("down_s must be positive")
        self.ports = tuple(sorted(set(ports)))
        self.down_s = down_s
        self._state = {port: UP for port in self.ports}
        self._detail = {port: "not read yet" for port in self.ports}
        self._down_since: dict[str, float] = {}
        self.read = False                     # at least one reading came

    def update(self, readings: dict[str, Reading], now: float) -> list[PortChange]:
        """The states after ``readings`` (a port missing from them is
        "missing"), and the changes, for logs and metrics."""
        changes = []
        self.read = True
        for port in self.ports:
            reading = readings.get(port, Reading(False, "missing"))
            old = self._state[port]
            self._detail[port] = "" if reading.up else reading.detail
            if reading.up:
                self._down_since.pop(port, None)
                new = UP
            else:
                since = self._down_since.setdefault(port, now)
                new = CUT if now - since >= self.down_s else DOWN
            if new != old:
                self._state[port] = new
                changes.append(PortChange(port, old, new, self._detail[port],
                                          round(now - self._down_since.get(port, now), 3)))
        return changes

    def state(self, port: str) -> str:
        return self._state[port]

    def report(self, now: float) -> dict:
        """What the status carries (and the partner reads): per port its
        state, ``up`` (a bool), why not, and for how long; no port before
        the first reading."""
        ports = {}
        for port in self.ports if self.read else ():
            entry = {"state": self._state[port], "up": self._state[port] == UP}
            if self._detail[port]:
                entry["detail"] = self._detail[port]
            if port in self._down_since:
                entry["down_for_s"] = round(now - self._down_since[port], 3)
            ports[port] = entry
        return {"ports": ports, "down_ms": round(self.down_s * 1000)}


@dataclass(frozen=True)
class Verdict:
    """What to do with one aggregate owned here: ``action`` "stay" (its
    clients reach it, or it has no LIF), "wait" (cut off, but moving is not
    allowed or known to help yet: ``reason`` says why) or "hand over"."""

    aggregate: str
    action: str
    reason: str = ""


def ports_of(aggregate) -> tuple[str, ...]:
    return tuple(sorted({lif.interface for lif in aggregate.lifs}))


def partner_ports(partner_status) -> dict[str, bool] | None:
    """The partner's public ports from its status answer: port -> up, or
    None when it reports none (an older release, no fresh status)."""
    if not isinstance(partner_status, dict):
        return None
    links = partner_status.get("public_links")
    ports = links.get("ports") if isinstance(links, dict) else None
    if not isinstance(ports, dict):
        return None
    return {str(port): isinstance(entry, dict) and entry.get("up") is True
            for port, entry in ports.items()}


def decide(owned_aggregates, watch: PortWatch, partner_status, *, partner_member: bool,
           busy: str = "") -> list[Verdict]:
    """One verdict per aggregate owned here (``owned_aggregates``: config
    ``Aggregate`` objects).  ``partner_status``: the partner's last status
    answer (None when there is none); ``partner_member``: it is alive and a
    cluster member; ``busy``: an operation in progress ("" when none)."""
    verdicts = []
    theirs = partner_ports(partner_status)
    for aggregate in owned_aggregates:
        ports = ports_of(aggregate)
        if not ports or not watch.read or any(watch.state(p) != CUT for p in ports):
            verdicts.append(Verdict(aggregate.name, "stay"))
            continue
        cut = ", ".join(ports)
        if not partner_member:
            reason = "the partner is not heard, or not a cluster member"
        elif theirs is None:
            reason = ("the partner does not report its public ports (an older release, or "
                      "no status from it): unknown, nothing moves")
        elif not all(theirs.get(p) is True for p in ports):
            down = [p for p in ports if theirs.get(p) is not True]
            reason = f"the partner's public ports are not up either ({', '.join(down)})"
        elif busy:
            reason = f"operation {busy} in progress"
        else:
            verdicts.append(Verdict(aggregate.name, "hand over",
                                    f"every public port of its LIFs is down here ({cut}) "
                                    "and up on the partner"))
            continue
        verdicts.append(Verdict(aggregate.name, "wait",
                                f"every public port of its LIFs is down here ({cut}), but "
                                + reason))
    return verdicts
