"""The resource planner: membership and ownership in, ordered steps out.
Pure and standard library only (shared/STYLE.md rule 13: plan, then a thin
executor; ``clusdisk.aggregates`` executes these steps).

Bring-up of one aggregate, in the order ctdb's takeip/releaseip and the
Microsoft design imply (never expose what is not yet safe):

    reserve data LUN -> block device writable -> fsck -> mount
    -> smbcad adopts the shares -> LIFs up (gratuitous ARP) -> witnessd told

Tear-down is the exact reverse:

    witnessd told -> LIFs down -> smbcad releases -> unmount
    -> block device read-only -> release the data LUN

``desired`` says which aggregates this node should serve: its home
aggregates while it is a cluster member, plus the partner's once the
arbitration says it took them over.  ``plan`` turns (current, desired) into
steps: tear-downs first (reverse config order), then bring-ups.
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
    member: bool           # serving its home aggregates is allowed
    taken_over: bool       # the partner is fenced or gone: serve its aggregates too


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
    name = aggregate.name
    return (ReserveDisk(name, break_foreign), SetWritable(name), CheckFilesystem(name),
            Mount(name), NotifySmbcad(name, "adopt"),
            *(LifUp(name, lif) for lif in aggregate.lifs),
            NotifyWitness(name, "online", _addresses(aggregate)))


def tear_down(aggregate: Aggregate) -> tuple:
    name = aggregate.name
    return (NotifyWitness(name, "offline", _addresses(aggregate)),
            *(LifDown(name, lif) for lif in reversed(aggregate.lifs)),
            NotifySmbcad(name, "release"), Unmount(name), SetReadOnly(name), ReleaseDisk(name))


def undo(done: tuple) -> tuple:
    """The tear-down steps that reverse a partial bring-up, in reverse order
    (used when a bring-up step fails half-way)."""
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
        elif isinstance(step, NotifyWitness):
            inverse.append(NotifyWitness(step.aggregate, "offline", step.addresses))
    return tuple(inverse)


def desired(aggregates, view: View) -> frozenset:
    if not view.member:
        return frozenset()
    return frozenset(a.name for a in aggregates
                     if a.home_node == view.node_id or view.taken_over)


@dataclass(frozen=True)
class Plan:
    tear_down: tuple[tuple[Aggregate, tuple], ...]
    bring_up: tuple[tuple[Aggregate, tuple], ...]

    @property
    def empty(self) -> bool:
        return not self.tear_down and not self.bring_up

    def steps(self) -> tuple:
        return tuple(step for _, steps in self.tear_down + self.bring_up for step in steps)


def plan(aggregates, view: View, current: frozenset) -> Plan:
    """Steps from ``current`` (aggregates up on this node) to the desired set.
    A partner's aggregate is brought up with ``break_foreign`` only when the
    partner is taken over (fenced by the quorum arbitration)."""
    want = desired(aggregates, view)
    down = tuple((a, tear_down(a)) for a in reversed(tuple(aggregates))
                 if a.name in current and a.name not in want)
    up = tuple((a, bring_up(a, break_foreign=view.taken_over)) for a in aggregates
               if a.name in want and a.name not in current)
    return Plan(down, up)
