"""Which worker's share of the pair's handle state a ``ClusterMember`` runs
(docs/multicore.md step 4; sans-IO).

With ``server.workers: N`` above 1 every worker process is a member of the
pair on its own: it owns partition ``worker-K`` of every aggregate (the
persistent opens of the clients that ``routing.owner_of`` gives it), with
its own copy (``<state_dir>/worker-K/``), marker and degraded journal
(``<mount_point>/.smbca/worker-K/``, ``aggregate_state``), and its own mirror
link to worker K of the partner, on the mirror ports plus K.  Both nodes
route a ClientGuid to the same index only when they run the same number of
workers with the same routing seed, so both are part of the link's node
names: a partner with another layout is refused at its HELLO (logged with
both names) instead of mirroring opens that the adopting worker would not
own.  One process (``workers: 1``) is the unnamed partition: today's paths
and node names, unchanged.
"""

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Partition:
    index: int = 0
    count: int = 1
    routing_seed: int = 0

    @property
    def name(self) -> str:
        return "" if self.count == 1 else f"worker-{self.index}"

    def state_dir(self, state_dir: str) -> str:
        return os.path.join(state_dir, self.name) if self.name else state_dir

    def link_name(self, node_id: int) -> str:
        """The mirror link's node name for ``node_id`` (this node's or the partner's)."""
        if self.count == 1:
            return str(node_id)
        seed = f"-seed-{self.routing_seed:x}" if self.routing_seed else ""
        return f"{node_id}:worker-{self.index}-of-{self.count}{seed}"

    def port(self, port: int) -> int:
        return port + self.index


SINGLE = Partition()
