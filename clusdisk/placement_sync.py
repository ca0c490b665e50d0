"""This node's placement (``clusdisk.placement``) and how the pair agrees on
the newest one (issue 11: stale placement after a cold start of both nodes;
a lost bring-up answer).

- Every change made here is stamped with a new generation (``set``), saved
  in ``state_dir`` and, while this node owns the quorum, written to the
  quorum LUN's record (``clusdisk.quorum_placement``, in the background:
  the changes happen under the aggregate lock, the write is SG_IO).
- The quorum owner ``claim``s before it brings anything up: the record on
  the quorum LUN replaces its own copy when newer.  A node that forms the
  cluster alone after a takeover it never saw thus learns that the partner
  holds its aggregates, and waits for it instead of bringing up an
  aggregate whose handle replica is stale.
- A standby ``learn``s the owner's placement when it joins, unless its own
  is newer (then the owner takes it at its next ``reconcile``).
- While both are members and idle, ``reconcile`` (run with every status
  refresh, once a second) takes the partner's placement when it supersedes
  this node's (``placement.supersedes``).  After a bring-up answer was
  lost, the pair thus converges on what the destination did; the source
  also asks the destination first (``destination_outcome``).

Peer protocol: the placement object and the status answer carry the
generation as an added key (``generation``, ``placement_record``); a peer
of the first version ignores both, and one that sends none is treated as
before (its placement is learnt as it is, never reconciled).
"""

import asyncio
import logging

from clusdisk import placement as pl
from clusdisk.errors import ClusdiskError
from clusdisk.placement import Placement, PlacementError
from clusdisk.scsi.errors import ScsiError

log = logging.getLogger("clusdisk.placement")

PEER_QUICK_S = 5.0


class PlacementKeeper:
    def __init__(self, *, node_id: int, node_names: dict[int, str], aggregates, store,
                 shared=None, owns_quorum=None) -> None:
        self.node_id = node_id
        self.partner_id = next(n for n in node_names if n != node_id)
        self.names = node_names
        self.aggregates = tuple(aggregates)
        self.store = store
        self.shared = shared                  # a QuorumPlacement, or None
        self.owns_quorum = owns_quorum or (lambda: False)
        self.placement: Placement = store.load()
        self.seen = self.placement.generation    # highest generation seen anywhere
        self.source = "this node's state file"   # where the current placement came from
        self.learned = False                  # standby: the owner's placement considered
        self.claimed = False                  # owner: the quorum record considered
        self.shared_error = ""
        self.taken_from: dict[str, tuple[int, int]] = {}   # takeover: previous owner, gen
        self._unwritten: Placement | None = None
        self._writer: asyncio.Task | None = None
        self._claiming = asyncio.Lock()

    def name(self, node_id) -> str:
        return self.names.get(node_id, str(node_id))

    # -- changing it ---------------------------------------------------------------

    def set(self, placement: Placement) -> None:
        """A change made here: one generation above everything seen."""
        stamped = Placement(placement.owner, placement.lif_node,
                            max(self.placement.generation, self.seen) + 1)
        for name, owner in stamped.owner.items():
            if owner != self.placement.owner.get(name):
                self.taken_from.pop(name, None)
        self._keep(stamped, "this node")

    def adopt(self, placement: Placement, source: str, *, publish: bool = True) -> None:
        """A newer placement from elsewhere, kept as it is (``publish``:
        also to the quorum record, unless it came from there)."""
        log.info("placement generation %d from %s replaces generation %d: %s",
                 placement.generation, source, self.placement.generation,
                 placement.to_json()["owner"])
        self.taken_from.clear()
        self._keep(placement, source, publish)

    def _keep(self, placement: Placement, source: str, publish: bool = True) -> None:
        self.placement, self.source = placement, source
        self.seen = max(self.seen, placement.generation)
        try:
            self.store.save(placement)
        except OSError as exc:
            log.error("cannot persist the placement: %s", exc)
        if publish and self.owns_quorum():
            self.publish()

    def take_over(self) -> None:
        """An unplanned takeover: everything here; remember who had what."""
        before = self.placement
        self.set(pl.take_over(before, self.aggregates, self.node_id))
        for name, owner in before.owner.items():
            if owner != self.node_id:
                self.taken_from[name] = (owner, before.generation)

    def owned(self, owns_quorum: bool) -> frozenset[str]:
        """This node's share; nothing before the owner has claimed or the
        standby has learnt (it never brings up on a placement that may be
        stale)."""
        if not (self.claimed if owns_quorum else self.learned):
            return frozenset()
        return self.placement.owned_by(self.node_id)

    def reset(self) -> None:
        """Left the cluster: claim or learn again before the next bring-up."""
        self.learned = self.claimed = False

    # -- the quorum LUN's record ---------------------------------------------------

    def publish(self) -> None:
        """Write the current placement to the quorum record (background)."""
        if self.shared is None:
            return
        self._unwritten = self.placement
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_all(), name="placement-record")

    async def flush(self) -> None:
        """Wait for the record writes under way (tests; a clean stop)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _write_all(self) -> None:
        while self._unwritten is not None:
            placement, self._unwritten = self._unwritten, None
            if not self.owns_quorum():
                return
            try:
                await self.shared.write(placement.to_json(), self.node_id)
                self.shared_error = ""
            except (ScsiError, OSError, ValueError) as exc:
                self.shared_error = f"cannot write the placement record: {exc}"
                log.error("quorum LUN: %s", self.shared_error)

    async def claim(self) -> None:
        """The quorum owner, before its first bring-up: the quorum record
        replaces this node's placement when newer; then the record says
        this node's placement."""
        async with self._claiming:
            if not self.claimed:
                await self._claim()

    async def _claim(self) -> None:
        if self.shared is not None:
            record = None
            try:
                data = await self.shared.read()
                self.shared_error = ""
            except (ScsiError, OSError) as exc:
                data = None
                self.shared_error = f"cannot read the placement record: {exc}"
                log.error("quorum LUN: %s; going by this node's placement", self.shared_error)
            if data is not None:
                try:
                    record = Placement.from_json(data, self.aggregates, self.names)
                except PlacementError as exc:
                    log.error("ignoring the quorum LUN's placement record: %s", exc)
            if record is not None:
                self.seen = max(self.seen, record.generation)
                if record.generation > self.placement.generation:
                    self.adopt(record, f"the quorum LUN (written by "
                                       f"{self.name(data.get('writer'))})", publish=False)
            if not self.shared_error and (record is None or record != self.placement):
                self.publish()
        self.claimed = True

    # -- the partner's ----------------------------------------------------------

    async def learn(self, peer) -> None:
        """A standby joining: the owner's placement unless this node's is
        newer (raises ClusdiskError, PlacementError)."""
        reply = await peer.call("placement", {}, PEER_QUICK_S)
        if not reply.get("ok"):
            raise ClusdiskError(f"partner refused the placement: {reply.get('error')}")
        message = reply.get("placement")
        theirs = Placement.from_json(message, self.aggregates, self.names)
        if not pl.has_generation(message) or theirs.generation >= self.placement.generation:
            self.adopt(theirs, self.name(self.partner_id))
        else:
            log.warning("this node's placement (generation %d) is newer than %s's (%d): "
                        "keeping it; %s takes it at its next reconcile",
                        self.placement.generation, self.name(self.partner_id),
                        theirs.generation, self.name(self.partner_id))
            self.seen = max(self.seen, theirs.generation)
        self.learned = True

    def reconcile(self, partner: dict | None, *, idle: bool) -> bool:
        """Take the partner's placement (from its status answer) when it
        supersedes this node's; only while both are members and idle.
        Returns whether the placement changed."""
        if not partner or not idle or partner.get("operation") or not partner.get("member"):
            return False
        message = partner.get("placement_record")
        if not pl.has_generation(message):
            return False                  # a peer of the first version
        try:
            theirs = Placement.from_json(message, self.aggregates, self.names)
        except PlacementError as exc:
            log.warning("partner's placement not usable: %s", exc)
            return False
        self.seen = max(self.seen, theirs.generation)
        if not pl.supersedes(theirs, self.placement,
                             tie_to_theirs=bool(partner.get("owns_quorum"))):
            return False
        self.adopt(theirs, self.name(self.partner_id))
        return True

    # -- status --------------------------------------------------------------------

    def why(self, name: str, *, up: bool, error: str, partner_alive: bool,
            member: bool) -> str:
        """Why ``name`` is not served here, in words ("" when nothing to say)."""
        if up or not member:
            return ""
        owner = self.placement.owner.get(name)
        where = f"placement generation {self.placement.generation} from {self.source}"
        if owner == self.partner_id and not partner_alive:
            return (f"placed on {self.name(owner)} ({where}), which holds its newest copy: "
                    f"waiting for {self.name(owner)}")
        if owner == self.node_id and error and name in self.taken_from:
            previous, generation = self.taken_from[name]
            return (f"taken over from {self.name(previous)} (placed there at generation "
                    f"{generation}): this node's copy may be older than "
                    f"{self.name(previous)}'s; start {self.name(previous)}, then relocate "
                    f"{name} to it (--force if its replica is not in sync)")
        return ""


async def destination_outcome(peer, name: str, destination: str, wait_s: float,
                              poll_s: float = 1.0) -> dict:
    """After the answer to a ``bring-up`` request was lost: what the
    destination says of ``name``, once it is idle.  ``{"up": bool, "error",
    "placement"}``, or ``{"up": None, "error"}`` when it cannot say within
    ``wait_s`` (unreachable, or still busy)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    last = f"{destination} unreachable"
    while True:
        try:
            reply = await peer.call("status", {"cached": True}, PEER_QUICK_S)
            status = reply.get("status") if reply.get("ok") else None
            if status is None:
                last = f"{destination} gave no status: {reply.get('error')}"
            elif status.get("operation"):
                last = f"{destination} is still busy ({status['operation']})"
            else:
                entry = next((a for a in status.get("aggregates", ()) if a.get("name") == name),
                             {})
                return {"up": bool(entry.get("up")), "error": entry.get("error") or "",
                        "placement": status.get("placement_record")}
        except ClusdiskError as exc:
            last = f"{destination} unreachable: {exc}"
        if loop.time() + poll_s > deadline:
            return {"up": None, "error": last}
        await asyncio.sleep(poll_s)
