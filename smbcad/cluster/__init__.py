"""smbcad as a cluster member (issue 10): the partner mirror of the handle
store, one per aggregate (shared/reference/cluster.md §7(a)).

Modules (the first three are sans-IO; the layering test enforces it):

- ``mirror_proto``: frames, HMAC session keys, messages and the sans-IO
  ``MirrorConnection`` (handshake + framing).
- ``mirror_core``: the per-aggregate ``PrimaryMirror`` state machine
  (clock passed in), the actions and the resync decision table;
  ``replica_core``: ``ReplicaMirror``, the partner's side.
- ``aggregate_state``: the aggregate's files (local copy, state.json, the
  marker and the degraded journal on the LUN) and the adoption rule.
- ``replica``: ``ReplicaStore``, the replica's durable copy.
- ``mirror_link``: the link to the partner (listening, dialing and routing
  on the event loop); ``mirror_wire``: one connection on a thread of its own
  (reads, and thread-safe non-blocking sends);
  ``replica_endpoint``: ``ReplicaEndpoint``, the replica's driver, which
  writes and ACKs on that connection thread.
- ``mirrored_engine``: ``MirroredEngine``, the ``SplitEngine`` under
  ``LocalHandleStore`` for an aggregate this node owns: the APPEND leaves
  from the loop before the local write, the ACK is taken on the connection
  thread and wakes the loop once (its docstring has the latency measured
  against local-only, hop by hop, and what is left above the 1.3x target).

Wiring (the daemon owns these objects and injects them)::

    link = MirrorLink(node_id=..., cluster_key=..., incarnation=...,
                      listen=(ip, port), peer=(ip, port), peer_node_id=...)
    await link.start()
    # partner's aggregate: keep a replica
    link.register(await ReplicaEndpoint.open(state_dir, "aggrB", link))
    # adopt our aggregate (close its ReplicaEndpoint first, if any)
    commit_adoption(state_dir, mount, load_for_adoption(state_dir, "aggrA", mount))
    engine = MirroredEngine(state_dir=state_dir, aggregate="aggrA", mount_point=mount,
                            link=link, loop=asyncio.get_running_loop())
    store = await LocalHandleStore.open(engine)
"""

from smbcad.cluster.aggregate_state import (
    Adoption, AdoptionRefused, AggregateState, Journal, Marker, commit_adoption,
    load_for_adoption, read_marker, read_state)
from smbcad.cluster.mirror_core import (
    MirrorFenced, MirrorStatus, PrimaryMirror, decide_resync)
from smbcad.cluster.mirror_link import MirrorLink
from smbcad.cluster.mirror_proto import MirrorConnection
from smbcad.cluster.mirrored_engine import MirroredEngine
from smbcad.cluster.replica import ReplicaStore
from smbcad.cluster.replica_core import ReplicaMirror
from smbcad.cluster.replica_endpoint import ReplicaEndpoint

__all__ = [
    "Adoption",
    "AdoptionRefused",
    "AggregateState",
    "Journal",
    "Marker",
    "MirrorConnection",
    "MirrorFenced",
    "MirrorLink",
    "MirrorStatus",
    "MirroredEngine",
    "PrimaryMirror",
    "ReplicaEndpoint",
    "ReplicaMirror",
    "ReplicaStore",
    "commit_adoption",
    "decide_resync",
    "load_for_adoption",
    "read_marker",
    "read_state",
]
