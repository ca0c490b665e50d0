"""Open state shared by every process of a node (docs/multicore.md).

``record``: the per-file share-mode record as bytes and the decisions on it
(sans-IO).  ``db``: LMDB under it, one short transaction per change.
"""
