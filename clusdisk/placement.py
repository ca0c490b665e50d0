"""Placement: which node serves each aggregate and each LIF, as explicit state
(issue 11 items 2-3; shared/reference/cluster.md 7(c)).  Pure and standard
library only; ``clusdisk.placement_file`` persists it in ``state_dir``.

``owner[aggregate] -> node id`` and ``lif_node[lif] -> node id | None``
(None: the LIF is up nowhere).  Defaults: the home node.  Rules:

- an unplanned takeover (the arbitration fenced the partner) moves every
  aggregate the partner owns, with its LIFs, to this node (``take_over``);
- nothing moves back by itself when the partner rejoins: a rejoining node
  adopts the partner's placement (``Placement.from_json`` of its answer)
  before bringing anything up;
- a relocation moves one aggregate and its LIFs (``move``); a LIF migration
  moves one LIF, only to the node that owns its aggregate (``move_lif``:
  smbcad serves a LIF's shares only where it owns the aggregate).

``generation`` orders placements across the pair (a logical clock): every
change made here takes one more than the highest generation this node has
seen (its own, the partner's, the quorum disk's record), and a placement of a
higher generation replaces this node's own (``supersedes``).  The peer
protocol carries it as one more key of the placement object, which a node
of the first version ignores (``from_json`` reads only what it knows).
"""

from dataclasses import dataclass, field

from clusdisk.resources import Aggregate


class PlacementError(ValueError):
    """A placement that does not fit the configuration, or a refused move."""


@dataclass(frozen=True)
class Placement:
    owner: dict[str, int] = field(default_factory=dict)
    lif_node: dict[str, int | None] = field(default_factory=dict)
    generation: int = 0

    def owned_by(self, node_id: int) -> frozenset[str]:
        return frozenset(name for name, owner in self.owner.items() if owner == node_id)

    def to_json(self) -> dict:
        return {"owner": dict(sorted(self.owner.items())),
                "lif_node": dict(sorted(self.lif_node.items())),
                "generation": self.generation}

    def same_places(self, other: "Placement") -> bool:
        """The same aggregates and LIFs on the same nodes (generations aside)."""
        return self.owner == other.owner and self.lif_node == other.lif_node

    @classmethod
    def from_json(cls, message: object, aggregates, node_ids) -> "Placement":
        """The placement a peer sent or the state file held, checked against
        this node's configuration; aggregates or LIFs it does not name get
        their home (a configuration that grew)."""
        if not isinstance(message, dict):
            raise PlacementError("a placement is a JSON object")
        owner, lif_node = message.get("owner"), message.get("lif_node")
        if not isinstance(owner, dict) or not isinstance(lif_node, dict):
            raise PlacementError("a placement has 'owner' and 'lif_node' objects")
        known = set(node_ids)
        for name, node in owner.items():
            if isinstance(node, bool) or node not in known:
                raise PlacementError(f"owner of {name!r}: {node!r} is not a configured node")
        for name, node in lif_node.items():
            if node is not None and (isinstance(node, bool) or node not in known):
                raise PlacementError(f"node of LIF {name!r}: {node!r} is not a configured node")
        generation = message.get("generation", 0)
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
            raise PlacementError(f"generation {generation!r} is not a count")
        base = default(aggregates)
        return cls({name: owner.get(name, home) for name, home in base.owner.items()},
                   {name: lif_node.get(name, home) for name, home in base.lif_node.items()},
                   generation)


def has_generation(message: object) -> bool:
    """Whether a placement object carries a generation (a peer of the first
    version sends none: its placement cannot be ordered against ours)."""
    return isinstance(message, dict) and "generation" in message


def supersedes(theirs: Placement, mine: Placement, *, tie_to_theirs: bool) -> bool:
    """Whether ``theirs`` replaces ``mine``: a higher generation, or the same
    generation with other places when ``tie_to_theirs`` (the quorum owner's
    placement wins a tie: two changes made apart, e.g. during a partition)."""
    if theirs.generation != mine.generation:
        return theirs.generation > mine.generation
    return tie_to_theirs and not theirs.same_places(mine)


def default(aggregates) -> Placement:
    """Every aggregate and LIF on its home node."""
    return Placement({a.name: a.home_node for a in aggregates},
                     {lif.name: a.home_node for a in aggregates for lif in a.lifs})


def take_over(placement: Placement, aggregates, node_id: int) -> Placement:
    """An unplanned takeover: every aggregate (and its LIFs) on this node."""
    moved = placement
    for aggregate in aggregates:
        if moved.owner.get(aggregate.name) != node_id:
            moved = move(moved, aggregate, node_id)
    return moved


def move(placement: Placement, aggregate: Aggregate, to: int) -> Placement:
    """``aggregate`` and its LIFs to node ``to`` (a relocation)."""
    lifs = {lif.name: to for lif in aggregate.lifs}
    return Placement({**placement.owner, aggregate.name: to}, {**placement.lif_node, **lifs},
                     placement.generation)


def aggregate_of_lif(aggregates, lif_name: str) -> Aggregate:
    for aggregate in aggregates:
        if any(lif.name == lif_name for lif in aggregate.lifs):
            return aggregate
    raise PlacementError(f"no LIF named {lif_name!r}")


def lif_move_veto(placement: Placement, aggregates, lif_name: str, to: int,
                  node_names: dict[int, str]) -> str:
    """Why ``lif_name`` cannot move to ``to`` ("" when it can)."""
    aggregate = aggregate_of_lif(aggregates, lif_name)
    owner = placement.owner.get(aggregate.name, aggregate.home_node)
    if owner != to:
        return (f"{aggregate.name} is owned by {node_names.get(owner, owner)}: "
                "relocate the aggregate instead")
    if placement.lif_node.get(lif_name) == to:
        return f"LIF {lif_name} is already on {node_names.get(to, to)}"
    return ""


def move_lif(placement: Placement, lif_name: str, to: int | None) -> Placement:
    return Placement(dict(placement.owner), {**placement.lif_node, lif_name: to},
                     placement.generation)
