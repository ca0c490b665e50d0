"""Planned moves between the two nodes: aggregate relocation, planned
takeover, giveback and LIF migration (issue 11 items 2-3;
shared/reference/cluster.md 7(c)), the placement they change, and the
requests the partner's clusdisk sends over the peer channel.

One operation at a time per pair: the coordinator holds ``operation``, and
asks the destination to ``prepare`` (member, idle, its smbcad reachable)
before anything moves, so a second operation on either node is refused
("operation relocate aggr1 to b in progress").  A relocation runs on the
aggregate's owner (the other node forwards the verb there): veto checks
(destination ready, replica in sync on the owner's smbcad unless
``force``), then the source's planned tear-down (witness UNAVAILABLE on
both witnessd, LIFs down, smbcad planned release, unmount, read-only,
release), the placement moved on both nodes, and the destination's
``bring-up``; if that fails the source brings the aggregate back.  If its
answer is lost, the source first asks the destination what it did
(``placement_sync.destination_outcome``): up there is a success; down there,
or no word within ``ANSWER_LOST_WAIT_S``, and the source tries to bring it
back, taking the placement back only if it succeeds (a destination that
holds the aggregate fences that attempt).  The placements' generations then
converge at the next status refresh (``placement_sync``).

Control requests (JSON lines, ``"version": 1`` or none) and their answers
are in ``Operations.control``; answers of the moving verbs are
``{"ok", "operation", "steps": [{"node", "aggregate", "step", "seconds",
"ok", "detail"}], "seconds"}`` or ``{"ok": false, "error", "steps"}``.
"""

import asyncio
import dataclasses
import logging
import time

from clusdisk import placement as pl
from clusdisk.aggregates import StepRecord
from clusdisk.errors import ClusdiskError
from clusdisk.pair_status import QUICK_S, PairStatus    # QUICK_S: the quick requests
from clusdisk.placement import PlacementError
from clusdisk.placement_sync import PlacementKeeper, destination_outcome
from clusdisk.public_links import partner_ports, ports_of
from smbca import events
from smbca.control import ControlError

log = logging.getLogger("clusdisk.operations")

BRING_UP_S = 600.0            # an fsck may be long
ANSWER_LOST_WAIT_S = 30.0     # the destination's word after a lost bring-up answer
MOVE_S = 3600.0               # a forwarded takeover or giveback, one aggregate at a time
HANDOVER = "public-link handover"    # clusdisk.public_links: the owner's clients are cut off


class Refused(ClusdiskError):
    status = "refused"


def _step(node: str, record: StepRecord) -> dict:
    return {"node": node, "aggregate": record.aggregate, "step": record.step,
            "seconds": round(record.seconds, 3), "ok": record.ok, "detail": record.detail}


class Operations(PairStatus):
    def __init__(self, *, node_id: int, node_names: dict[int, str], aggregates, manager,
                 store, peer, notifier, smbcad_status, member, partner_alive,
                 base_status, shared=None, owns_quorum=None) -> None:
        self.node_id = node_id
        self.partner_id = next(n for n in node_names if n != node_id)
        self.names = node_names
        self.aggregates = tuple(aggregates)
        self.by_name = {a.name: a for a in self.aggregates}
        self.manager = manager
        self.store = store
        self.keeper = PlacementKeeper(node_id=node_id, node_names=node_names,
                                      aggregates=aggregates, store=store, shared=shared,
                                      owns_quorum=owns_quorum)
        self.peer = peer
        self.notifier = notifier              # a PairNotifier
        self.smbcad_status = smbcad_status    # async () -> smbcad's status dict
        self.member = member
        self.partner_alive = partner_alive
        self.base_status = base_status
        self.operation: str | None = None
        # aggregates the partner handed over here because its public ports
        # were down: never given back automatically (no ping-pong)
        self.pinned: dict[str, str] = {}
        self._gathered: tuple[dict, dict | None] | None = None    # see refresh

    # -- placement (clusdisk.placement_sync) -----------------------------------------

    def name(self, node_id) -> str:
        return self.names.get(node_id, str(node_id))

    @property
    def placement(self) -> pl.Placement:
        return self.keeper.placement

    def set_placement(self, placement: pl.Placement) -> None:
        self.keeper.set(placement)

    def owned(self, owns_quorum: bool) -> frozenset[str]:
        return self.keeper.owned(owns_quorum)

    def take_over(self) -> None:
        self.keeper.take_over()

    async def learn(self) -> None:
        """Adopt the partner's placement unless ours is newer (raises ClusdiskError)."""
        try:
            await self.keeper.learn(self.peer)
        except ClusdiskError as exc:
            raise Refused(str(exc)) from None

    async def claim(self) -> None:
        await self.keeper.claim()

    @property
    def learned(self) -> bool:
        return self.keeper.learned

    @learned.setter
    def learned(self, value: bool) -> None:
        self.keeper.learned = value

    def _node(self, value) -> int:
        for node_id, name in self.names.items():
            if value in (node_id, name) or str(value) == str(node_id):
                return node_id
        raise Refused(f"unknown node {value!r}")

    # -- the control socket ------------------------------------------------------------

    async def control(self, message: dict) -> dict:
        # smbca.control.decode_request has checked and removed "version".
        command = message.get("command")
        try:
            if command == "status":
                return {"ok": True, "status": await self.status(cached=True)}
            if command == "relocate":
                name = message.get("aggregate")
                if name not in self.by_name:
                    raise Refused(f"unknown aggregate {name!r}")
                return await self._moves(f"relocate {name}", [name], self._node(message.get("to")),
                                         bool(message.get("force")))
            if command == "takeover":
                names = sorted(self.placement.owned_by(self.partner_id))
                if not names:
                    raise Refused(f"{self.name(self.partner_id)} owns no aggregate: "
                                  "nothing to take over")
                return await self._moves("takeover", names, self.node_id,
                                         bool(message.get("force")))
            if command == "giveback":
                return await self._giveback()
            if command == "lif-migrate":
                return await self._lif_migrate(message.get("lif"),
                                               self._node(message.get("to")))
        except (Refused, PlacementError) as exc:
            return {"ok": False, "error": str(exc), "steps": []}
        raise ControlError(f"unknown command {command!r}")

    async def _moves(self, operation: str, names: list, to: int, force: bool) -> dict:
        """Move ``names`` to ``to``: those this node owns here, the rest on
        the partner (forwarded)."""
        mine = [n for n in names if self.placement.owner[n] == self.node_id]
        theirs = [n for n in names if n not in mine]
        answers = []
        if mine:
            answers.append(await self.move(operation, mine, to, force))
        if theirs:
            try:
                answers.append(await self.peer.call("move", {
                    "operation": operation, "aggregates": theirs, "to": to, "force": force},
                    MOVE_S))
            except ClusdiskError as exc:
                answers.append({"ok": False, "error": f"partner unreachable: {exc}",
                                "steps": []})
        return _combine(operation, answers)

    async def _giveback(self) -> dict:
        away = [a.name for a in self.aggregates if self.placement.owner[a.name] != a.home_node]
        if not away:
            raise Refused("every aggregate is on its home node: nothing to give back")
        # Who holds what, before anything moves (a move changes the placement).
        groups = [[n for n in away if self.placement.owner[n] == source]
                  for source in (self.node_id, self.partner_id)]
        answers = []
        for names in filter(None, groups):
            target = self.by_name[names[0]].home_node
            answers.append((await self._moves("giveback", names, target, False)))
        return _combine("giveback", answers)

    # -- moves coordinated here ----------------------------------------------------------

    async def move(self, operation: str, names: list, to: int, force: bool) -> dict:
        """Relocate ``names`` (owned here) to ``to``, one at a time."""
        if self.operation is not None:
            raise Refused(f"operation {self.operation} in progress")
        self.operation = f"{operation} to {self.name(to)}"
        started, steps, errors = time.monotonic(), [], []
        try:
            for name in names:
                error = await self._relocate(name, to, force, steps)
                if error:
                    errors.append(error)
        finally:
            self.operation = None
        if errors:
            return {"ok": False, "operation": operation, "error": "; ".join(errors),
                    "steps": steps}
        return {"ok": True, "operation": operation, "steps": steps,
                "seconds": round(time.monotonic() - started, 3)}

    async def _veto(self, name: str, to: int, force: bool) -> str:
        owner = self.placement.owner[name]
        if owner == to:
            return f"{name} is already on {self.name(to)}"
        if owner != self.node_id:
            return f"{name} is owned by {self.name(owner)}, not by this node"
        if not self.member():
            return f"{self.name(self.node_id)} is not a cluster member"
        try:
            ready = await self.peer.call("prepare", {"aggregate": name,
                                                     "operation": self.operation}, QUICK_S)
        except ClusdiskError as exc:
            return f"partner unreachable: {exc}"
        if not ready.get("ok"):
            return f"{self.name(to)} cannot take {name}: {ready.get('error')}"
        if not force:
            in_sync, detail = await self._in_sync(name)
            if not in_sync:
                return (f"the replica of {name} on {self.name(to)} is not in sync ({detail}); "
                        "force moves it anyway")
        return ""

    async def _in_sync(self, name: str) -> tuple[bool | None, str]:
        """The owner's (this node's) smbcad's word on ``name``'s replica."""
        try:
            status = await self.smbcad_status()
        except (ControlError, ClusdiskError) as exc:
            return None, f"smbcad status unavailable: {exc}"
        for entry in status.get("aggregates", ()):
            if entry.get("name") == name:
                mirror = entry.get("mirror") or {}
                if mirror.get("in_sync") is True:
                    return True, ""
                return False, f"in_sync {mirror.get('in_sync')}, lag {mirror.get('lag_frames')} frames"
        return None, f"smbcad does not report {name}"

    async def _relocate(self, name: str, to: int, force: bool, steps: list) -> str:
        me = self.name(self.node_id)
        veto = await self._veto(name, to, force)
        if veto:
            log.info("relocation of %s refused: %s", name, veto)
            return veto
        records: list = []
        down = await self.manager.tear_down(
            name, records, planned=True,
            clients_cut_off=str(self.operation or "").startswith(HANDOVER),
            after=lambda: self.set_placement(pl.move(self.placement, self.by_name[name], to)))
        steps += [_step(me, r) for r in records]
        if not down:
            return f"{name} could not be taken down on {me}: {self.manager.errors.get(name)}"
        try:
            reply = await self.peer.call("bring-up", {"aggregate": name, "from": self.node_id,
                                                      "operation": self.operation}, BRING_UP_S)
        except ClusdiskError as exc:
            reply = await self._answer_lost(name, to, exc)
        steps += reply.get("steps", [])
        if reply.get("ok"):
            log.info("%s relocated to %s", name, self.name(to))
            self.pinned.pop(name, None)
            return ""
        records = []
        # The placement comes back here only if the aggregate does: when the
        # destination's outcome is unknown, it may hold the aggregate (then
        # this bring-up fails on its reservation and both placements agree).

        def placed_back(up: bool) -> None:
            if up:
                self.set_placement(pl.move(self.placement, self.by_name[name], self.node_id))

        back = await self.manager.bring_up(name, records, after=placed_back)
        steps += [_step(me, r) for r in records]
        return (f"bring-up of {name} on {self.name(to)} failed ({reply.get('error')}); "
                + (f"{name} is back up on {me}" if back else f"{name} is down: "
                   f"{self.manager.errors.get(name)}"))

    async def _answer_lost(self, name: str, to: int, exc: ClusdiskError) -> dict:
        """The bring-up request's answer did not come: ask the destination
        what it did before undoing anything (issue 11)."""
        log.warning("no answer to the bring-up of %s on %s (%s): asking it", name,
                    self.name(to), exc)
        started = time.monotonic()
        outcome = await destination_outcome(self.peer, name, self.name(to), ANSWER_LOST_WAIT_S)
        step = {"node": self.name(to), "aggregate": name, "step": "bring-up answer lost: "
                "asked for its status", "seconds": round(time.monotonic() - started, 3),
                "ok": outcome["up"] is True, "detail": outcome["error"]}
        if outcome["up"]:
            theirs = outcome.get("placement")
            if theirs is not None:
                self.keeper.reconcile({"placement_record": theirs, "member": True},
                                      idle=True)
            return {"ok": True, "steps": [step]}
        what = "down there" if outcome["up"] is False else "unknown"
        return {"ok": False, "steps": [step],
                "error": f"answer lost ({exc}); {name} is {what}: {outcome['error']}"}

    async def auto_giveback(self, partner_back_for_s: float | None, delay_s: float) -> dict | None:
        """``failover.auto_giveback_s``: once the partner has been back for
        ``delay_s``, give it back the aggregates of its home held here; a
        replica not in sync is refused (and tried again later).  None when
        there is nothing to do."""
        if delay_s <= 0 or partner_back_for_s is None or partner_back_for_s < delay_s \
                or self.operation is not None or not self.member():
            return None
        names = sorted(a.name for a in self.aggregates if a.home_node == self.partner_id
                       and self.placement.owner[a.name] == self.node_id
                       and a.name not in self.pinned)
        if not names:
            return None
        return await self.move("giveback", names, self.partner_id, False)

    async def hand_over(self, names: list) -> dict:
        """Every public port of ``names``' LIFs is down here and up on the
        partner (``clusdisk.public_links.decide``): move them there the
        planned way, with a relocation's vetoes (the replica in sync)."""
        return await self.move(HANDOVER, names, self.partner_id, False)

    async def _lif_migrate(self, lif_name, to: int) -> dict:
        operation = f"lif-migrate {lif_name}"
        veto = pl.lif_move_veto(self.placement, self.aggregates, lif_name, to, self.names)
        if veto:
            raise Refused(veto)
        if self.operation is not None:
            raise Refused(f"operation {self.operation} in progress")
        self.operation = f"{operation} to {self.name(to)}"
        started, steps = time.monotonic(), []
        try:
            ready = await self.peer.call("prepare", {"operation": self.operation}, QUICK_S)
            if not ready.get("ok"):
                raise Refused(f"{self.name(self.partner_id)}: {ready.get('error')}")
            source = self.placement.lif_node.get(lif_name)
            for node, up in ((source, False), (to, True)):
                if node is None:
                    continue
                args = {"lif": lif_name, "up": up, "to": to}
                reply = await (self.lif(args) if node == self.node_id
                               else self.peer.call("lif", args, QUICK_S))
                steps += reply.get("steps", [])
                if not reply.get("ok"):
                    return {"ok": False, "operation": operation, "steps": steps,
                            "error": f"LIF {lif_name} {'up' if up else 'down'} on "
                                     f"{self.name(node)} failed: {reply.get('error')}"}
        except ClusdiskError as exc:
            return {"ok": False, "operation": operation, "error": str(exc), "steps": steps}
        finally:
            self.operation = None
        return {"ok": True, "operation": operation, "steps": steps,
                "seconds": round(time.monotonic() - started, 3)}

    # -- requests from the partner -------------------------------------------------------

    async def peer_request(self, op: str, args: dict) -> dict:
        if op == "placement":
            return {"ok": True, "placement": self.placement.to_json()}
        if op == "status":
            return {"ok": True, "status": await self.status(ask_partner=False,
                                                            cached=bool(args.get("cached")))}
        if op == "prepare":
            return await self._prepare(args)
        if op == "bring-up":
            return await self._bring_up(args["aggregate"], int(args["from"]),
                                        args.get("operation"))
        if op == "move":
            return await self.move(args["operation"], list(args["aggregates"]),
                                   int(args["to"]), bool(args.get("force")))
        if op == "lif":
            return await self.lif(args)
        if op == "witness":
            await self.notifier.notifier.witness_event(events.from_json(args.get("event")))
            return {"ok": True}
        return {"ok": False, "error": f"unknown peer request {op!r}"}

    async def _prepare(self, args: dict) -> dict:
        if not self.member():
            return {"ok": False, "error": "not a cluster member"}
        if self.operation is not None:
            return {"ok": False, "error": f"operation {self.operation} in progress"}
        if str(args.get("operation") or "").startswith(HANDOVER) \
                and args.get("aggregate") in self.by_name:
            # the owner decided on our last status: check our ports now
            mine = partner_ports(self.base_status()) or {}
            down = [p for p in ports_of(self.by_name[args["aggregate"]]) if not mine.get(p)]
            if down:
                return {"ok": False, "error": f"its public ports are not up ({', '.join(down)})"}
        try:
            await self.smbcad_status()
        except (ControlError, ClusdiskError) as exc:
            return {"ok": False, "error": f"its smbcad is not reachable: {exc}"}
        return {"ok": True}

    async def _bring_up(self, name: str, source: int, operation) -> dict:
        if name not in self.by_name:
            return {"ok": False, "error": f"unknown aggregate {name!r}", "steps": []}
        self.operation = operation or f"bring-up {name}"
        records: list = []
        try:
            up = await self.manager.bring_up(
                name, records,
                before=lambda: self.set_placement(pl.move(self.placement, self.by_name[name],
                                                          self.node_id)))
            if not up:
                self.set_placement(pl.move(self.placement, self.by_name[name], source))
            elif str(operation or "").startswith(HANDOVER) \
                    and self.by_name[name].home_node != self.node_id:
                self.pinned[name] = (f"handed over by {self.name(source)}, whose public ports "
                                     "were down: no automatic giveback, the operator gives it "
                                     "back")
        finally:
            self.operation = None
        steps = [_step(self.name(self.node_id), r) for r in records]
        if up:
            return {"ok": True, "steps": steps}
        return {"ok": False, "error": self.manager.errors.get(name, "bring-up failed"),
                "steps": steps}

    async def lif(self, args: dict) -> dict:
        """This node's half of a LIF migration: down (witness first) or up
        (witness after); the placement says ``to`` once done."""
        aggregate = pl.aggregate_of_lif(self.aggregates, args["lif"])
        lif = next(x for x in aggregate.lifs if x.name == args["lif"])
        alone = dataclasses.replace(aggregate, lifs=(lif,))
        me, records = self.name(self.node_id), []

        async def witness(event: str) -> None:
            started = time.monotonic()
            await self.notifier.witness(event, alone)
            records.append(StepRecord(aggregate.name, "witness " + (
                "AVAILABLE" if event == "online" else "UNAVAILABLE"),
                time.monotonic() - started, True))

        try:
            if not args["up"]:
                await witness("offline")
            ok = await self.manager.lif(lif, bool(args["up"]), records)
            if ok and args["up"]:
                await witness("online")
        except (ClusdiskError, ControlError, OSError) as exc:
            records.append(StepRecord(aggregate.name, "witness", 0.0, False, str(exc)))
            ok = False
        if ok:
            self.set_placement(pl.move_lif(self.placement, lif.name, int(args["to"])))
        steps = [_step(me, r) for r in records]
        return {"ok": ok, "steps": steps, "error": "" if ok else records[-1].detail}


def _combine(operation: str, answers: list) -> dict:
    steps = [step for answer in answers for step in answer.get("steps", [])]
    errors = [answer["error"] for answer in answers if not answer.get("ok")]
    if errors:
        return {"ok": False, "operation": operation, "error": "; ".join(errors), "steps": steps}
    return {"ok": True, "operation": operation, "steps": steps,
            "seconds": round(sum(a.get("seconds", 0.0) for a in answers), 3)}
