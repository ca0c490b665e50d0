"""smbcad as a cluster member (issue 10): the partner mirror of the handle
store, one per aggregate (shared/reference/cluster.md §7(a)).

Modules:

- ``mirror_proto``: frames, HMAC session keys, messages and the sans-IO
  ``MirrorConnection`` (handshake + framing).
- ``mirror_core``: the per-aggregate ``PrimaryMirror`` / ``ReplicaMirror``
  state machines (sans-IO, clock passed in) and the resync decision table.
"""
