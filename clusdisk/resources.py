"""The resource planner: membership and ownership in, ordered steps out.
Pure and standard library only (shared/STYLE.md rule 13: plan, then a thin
executor; ``clusdisk.aggregates`` executes these steps).

Bring-up of one aggregate, in the order ctdb's takeip/releaseip and the
Microsoft design imply (never expose what is not yet safe):

    reserve data LUN -> block device writable -> fsck -> mount
    -> smbcad adopts the shares -> LIFs up (gratuitous ARP) -> witnessd told

Tear-down (cluster.md 7(c); CTDB's releaseip also ends the connections
before it removes the address):

    witnessd told -> smbcad releases -> LIFs down -> unmount
    -> block device read-only -> release the data LUN

smbcad releases while the LIFs are still here, so what it sends its
clients last (the answers of requests in flight, then a FIN) can reach
them; meanwhile it refuses new connections to those addresses (a client
retries until the LIF answers on the new owner).

A takeover bring-up (the partner is fenced: cluster.md 7(b) step 3) first
tells the witness the LIFs are going away, then proceeds as above; a
planned tear-down (relocation, giveback: 7(c)) asks smbcad for a planned
release so in-flight requests finish first.

``desired`` says which aggregates this node should serve: none unless it is
a cluster member; every one once the arbitration says it took the partner
over; otherwise those the placement (``clusdisk.placement``) gives it (its
home aggregates when there is no placement).  ``plan`` turns (current,
desired) into steps: tear-downs first (reverse config order), then
bring-ups.  ``describe`` names a step for operators (the control answers).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Lif:
    """A floating address that moves with its aggregate."""

    name: str
    address: str           # "192.0.2.10/24" or "2001:db8::10/64"
    interface: str


@dataclass(frozen=True)
class Aggregate:
    name: str
    home_node: int
    disk: str              # the designator of its data LUN
    filesystem: str
    mount_point: str
    mount_options: str = ""
    lifs: tuple[Lif, ...] = ()


@dataclass(frozen=True)
class View:
    """What the arbitration says about this node right now."""

    node_id: int
    member: bool           # serving aggregates is allowed
    taken_over: bool       # the partner is fenced or gone: serve its aggregates too
    owned: frozenset[str] | None = None   # the placement's share; None: home aggregates


# -- steps ---------------------------------------------------------------------

@dataclass(frozen=True)
class ReserveDisk:
    aggregate: str
    break_foreign: bool    # reset/preempt another initiator's reservation


@dataclass(frozen=True)
class SetWritable:
    aggregate: str


@dataclass(frozen=True)
class CheckFilesystem:
    aggregate: str


@dataclass(frozen=True)
class Mount:
    aggregate: str


@dataclass(frozen=True)
class NotifySmbcad:
    aggregate: str
    event: str             # "adopt" | "release"
    planned: bool = False  # release: a relocation or giveback (in-flight requests finish)
    clients_cut_off: bool = False   # planned release: the public links are down


@dataclass(frozen=True)
class LifUp:
    aggregate: str
    lif: Lif


@dataclass(frozen=True)
class NotifyWitness:
    aggregate: str
    event: str             # "online" | "offline"
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class LifDown:
    aggregate: str
    lif: Lif


@dataclass(frozen=True)
class Unmount:
    aggregate: str


@dataclass(frozen=True)
class SetReadOnly:
    aggregate: str


@dataclass(frozen=True)
class ReleaseDisk:
    aggregate: str


Step = (ReserveDisk | SetWritable | CheckFilesystem | Mount | NotifySmbcad | LifUp
        | NotifyWitness | LifDown | Unmount | SetReadOnly | ReleaseDisk)


def _addresses(aggregate: Aggregate) -> tuple[str, ...]:
    return tuple(lif.address for lif in aggregate.lifs)


def bring_up(aggregate: Aggregate, break_foreign: bool = False) -> tuple:
    """``break_foreign``: a takeover of a fenced partner's aggregate, which
    starts by telling the witness its LIFs are unavailable (7(b) step 3)."""
    name = aggregate.name
    going_away = (NotifyWitness(name, "offline", _addresses(aggregate)),) if break_foreign else ()
    return (*going_away, ReserveDisk(name, break_foreign), SetWritable(name),
            CheckFilesystem(name), Mount(name), NotifySmbcad(name, "adopt"),
            *(LifUp(name, lif) for lif in aggregate.lifs),
            NotifyWitness(name, "online", _addresses(aggregate)))


def tear_down(aggregate: Aggregate, planned: bool = False, clients_cut_off: bool = False) -> tuple:
    """``clients_cut_off``: a planned tear-down of a node its clients cannot
    reach (``public_links``): smbcad hands everything over without waiting
    for them."""
    name = aggregate.name
    return (NotifyWitness(name, "offline", _addresses(aggregate)),
            NotifySmbcad(name, "release", planned, planned and clients_cut_off),
            *(LifDown(name, lif) for lif in reversed(aggregate.lifs)),
            Unmount(name), SetReadOnly(name), ReleaseDisk(name))


def describe(step) -> str:
    """An operator's name for a step ("smbcad release --planned", "LIF lif-a1 up")."""
    if isinstance(step, ReserveDisk):
        return "reserve data LUN" + (" (break foreign)" if step.break_foreign else "")
    if isinstance(step, NotifySmbcad):
        return f"smbcad {step.event}" + (" --planned" if step.planned else "") \
            + (" (clients cut off)" if step.clients_cut_off else "")
    if isinstance(step, (LifUp, LifDown)):
        return f"LIF {step.lif.name} {'up' if isinstance(step, LifUp) else 'down'}"
    if isinstance(step, NotifyWitness):
        return "witness " + ("AVAILABLE" if step.event == "online" else "UNAVAILABLE")
    return _NAMES[type(step)]


_NAMES = {SetWritable: "block device writable", CheckFilesystem: "fsck", Mount: "mount",
          Unmount: "unmount", SetReadOnly: "block device read-only",
          ReleaseDisk: "release data LUN"}


def undo(done: tuple) -> tuple:
    """The tear-down steps that reverse a partial bring-up, in reverse order
    (used when a bring-up step fails half-way).  A takeover's first
    "unavailable" needs no undo: the LIFs stay unavailable."""
    inverse = []
    for step in reversed(done):
        if isinstance(step, ReserveDisk):
            inverse.append(ReleaseDisk(step.aggregate))
        elif isinstance(step, SetWritable):
            inverse.append(SetReadOnly(step.aggregate))
        elif isinstance(step, Mount):
            inverse.append(Unmount(step.aggregate))
        elif isinstance(step, NotifySmbcad):
            inverse.append(NotifySmbcad(step.aggregate, "release"))
        elif isinstance(step, LifUp):
            inverse.append(LifDown(step.aggregate, step.lif))
        elif isinstance(step, NotifyWitness) and step.event == "online":
            inverse.append(NotifyWitness(step.aggregate, "offline", step.addresses))
    # as in tear_down: smbcad lets its clients go while the LIFs are still here
    release = [step for step in inverse if isinstance(step, NotifySmbcad)]
    lifs = [i for i, step in enumerate(inverse) if isinstance(step, LifDown)]
    if release and lifs:
        inverse.remove(release[0])
        inverse.insert(lifs[0], release[0])
    return tuple(inverse)


def desired(aggregates, view: View) -> frozenset:
    if not view.member:
        return frozenset()
    if view.taken_over:
        return frozenset(a.name for a in aggregates)
    if view.owned is not None:
        return frozenset(a.name for a in aggregates if a.name in view.owned)
    return frozenset(a.name for a in aggregates if a.home_node == view.node_id)


@dataclass(frozen=True)
class Plan:
    tear_down: tuple[tuple[Aggregate, tuple], ...]
    bring_up: tuple[tuple[Aggregate, tuple], ...]

    @property
    def empty(self) -> bool:
        return not self.tear_down and not self.bring_up

    def steps(self) -> tuple:
        return tuple(step for _, steps in self.tear_down + self.bring_up for step in steps)


def plan(aggregates, view: View, current: frozenset, planned: bool = False) -> Plan:
    """Steps from ``current`` (aggregates up on this node) to the desired set.
    A partner's aggregate is brought up with ``break_foreign`` only when the
    partner is taken over (fenced by the quorum arbitration); tear-downs are
    ``planned`` for a clean shutdown."""
    want = desired(aggregates, view)
    down = tuple((a, tear_down(a, planned)) for a in reversed(tuple(aggregates))
                 if a.name in current and a.name not in want)
    up = tuple((a, bring_up(a, break_foreign=view.taken_over)) for a in aggregates
               if a.name in want and a.name not in current)
    return Plan(down, up)
