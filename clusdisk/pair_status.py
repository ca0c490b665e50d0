"""The status half of ``clusdisk.operations.Operations`` (a base class, to
keep the moves and the status in modules of their own size): what
``clusdisk status`` and ``smbca failover show`` print, the takeover and
giveback vetoes, and the once-a-second refresh that also reconciles the
placement with the partner's (``clusdisk.placement_sync``).

Per aggregate, ``why`` says in words why it is not served here when that is
not obvious: placed on a partner that is not there (and holds its newest
copy), or taken over from a partner whose copy may be newer than this
node's (the bring-up failed: smbcad refused a stale replica).
"""

import asyncio

from clusdisk.errors import ClusdiskError
from smbca.control import ControlError

QUICK_S = 5.0          # placement, status, prepare, witness, lif


class PairStatus:
    async def refresh(self) -> None:
        """Ask smbcad and the partner now, for the status requests to come.
        The daemon calls it every second: a status request is answered at
        once from what it gathered (the lab's sampler asks four times a
        second, and either may take seconds to answer during a move)."""
        self._gathered = await self._gather(True)
        _, partner = self._gathered
        if self.keeper.reconcile(partner, idle=self.operation is None and self.member()):
            self.keeper.learned = True

    @property
    def partner_status(self) -> dict | None:
        """The partner's status as the last ``refresh`` got it (None: none)."""
        return self._gathered[1] if self._gathered is not None else None

    async def _gather(self, ask_partner: bool) -> tuple[dict, dict | None]:
        local = await self._local_in_sync()
        partner = None
        if ask_partner and self.partner_alive():
            try:
                reply = await self.peer.call("status", {"cached": True}, QUICK_S)
                partner = reply.get("status") if reply.get("ok") else None
            except ClusdiskError:
                partner = None
        return local, partner

    async def status(self, ask_partner: bool = True, cached: bool = False) -> dict:
        """``cached``: smbcad's and the partner's parts as ``refresh`` last
        gathered them (this node's own parts are always current)."""
        status = self.base_status()
        if cached and self._gathered is not None:
            local, partner = self._gathered
        else:
            local, partner = await self._gather(ask_partner)
        remote = {a["name"]: a.get("in_sync") for a in (partner or {}).get("aggregates", ())}
        owner = self.placement.owner
        for entry in status["aggregates"]:
            entry["owner"] = self.name(owner[entry["name"]])
            entry["in_sync"] = (local.get(entry["name"]) if owner[entry["name"]] == self.node_id
                                else remote.get(entry["name"]))
            why = self.keeper.why(entry["name"], up=bool(entry.get("up")),
                                  error=entry.get("error") or "",
                                  partner_alive=self.partner_alive(), member=self.member())
            if not why and owner[entry["name"]] == self.node_id:
                why = self.pinned.get(entry["name"], "")
            if why:
                entry["why"] = why
        status.update({
            "placement": {name: self.name(node) for name, node in sorted(owner.items())},
            "lifs": {name: None if node is None else self.name(node)
                     for name, node in sorted(self.placement.lif_node.items())},
            "placement_record": self.placement.to_json(),
            "placement_source": self.keeper.source,
            "partner_reachable": self.peer.reachable if self.peer else False,
            "peer_protocol": self.peer.protocol if self.peer else None,
            "operation": self.operation,
        })
        if self.keeper.shared_error:
            status["placement_error"] = self.keeper.shared_error
        if ask_partner:
            status["partner"]["status"] = partner
            in_sync = {e["name"]: e["in_sync"] for e in status["aggregates"]}
            for verb, veto in (("takeover", self._takeover_veto(in_sync)),
                               ("giveback", self._giveback_veto(in_sync))):
                status[f"{verb}_possible"] = not veto
                status[f"{verb}_veto"] = veto or None
        return status

    async def _local_in_sync(self) -> dict:
        try:
            async with asyncio.timeout(QUICK_S):
                status = await self.smbcad_status()
        except (ControlError, ClusdiskError, TimeoutError):
            return {}
        return {e.get("name"): (e.get("mirror") or {}).get("in_sync")
                for e in status.get("aggregates", ())}

    def _common_veto(self) -> str:
        if not self.member():
            return "this node is not a cluster member"
        if self.peer is None or self.peer.reachable is False or not self.partner_alive():
            return "partner unreachable"
        if self.operation is not None:
            return f"operation {self.operation} in progress"
        return ""

    def _takeover_veto(self, in_sync: dict) -> str:
        names = sorted(self.placement.owned_by(self.partner_id))
        if not names:
            return f"{self.name(self.partner_id)} owns no aggregate"
        stale = [n for n in names if in_sync.get(n) is not True]
        return self._common_veto() or (
            f"replica not in sync: {', '.join(stale)}" if stale else "")

    def _giveback_veto(self, in_sync: dict) -> str:
        away = [a.name for a in self.aggregates if self.placement.owner[a.name] != a.home_node]
        if not away:
            return "every aggregate is on its home node"
        stale = [n for n in away if in_sync.get(n) is not True]
        return self._common_veto() or (
            f"replica not in sync: {', '.join(stale)}" if stale else "")


