"""Where each worker keeps its persistent opens (docs/multicore.md, step 4
in its first form): one handle-store partition per worker index, so a
worker that restarts (same index) finds its own opens again, and two
processes never share one store.

``server.workers: 1`` keeps today's ``STATE_DIR/handles``; N workers use
``STATE_DIR/handles-worker-K``.  A partition of another layout that still
holds records (the worker count changed while clients held persistent
opens) stops the start: those opens would otherwise be neither restored nor
released, and their clients' reconnects would fail.  The admin starts with
the earlier count until they are closed, or removes the directory.

On a cluster node each worker also has a partition of every aggregate
(``smbcad.cluster.partition``): ``STATE_DIR/worker-K/handles/<aggregate>``
(one process: ``STATE_DIR/handles/<aggregate>``).  The same two rules hold
for them: a dead worker's entries of the opens there are kept for its
successor, and copies of another layout that hold records stop the start.
"""

import os
import re

from smbcad.cluster.aggregate_state import KeyedLogEngine
from smbcad.cluster.mirror_core import META_KEY
from smbcad.cluster.partition import Partition
from smbcad.store import LogEngine, StoreError, decode

_WORKER_PARTITION = re.compile(r"handles-worker-(\d+)")
_CLUSTER_PARTITION = re.compile(r"worker-(\d+)")


def partition_path(state_dir: str, index: int, count: int) -> str:
    if count == 1:
        return os.path.join(state_dir, "handles")
    return os.path.join(state_dir, f"handles-worker-{index}")


def persistent_ids(path: str, cluster_copies: tuple[str, ...] = ()) -> frozenset[int]:
    """The DurableFileIds of the opens in one partition and in the worker's
    copies of the aggregates (a worker that died: their entries in the
    open-state records stay for its successor, which restores them).
    StoreError when one cannot be read."""
    engine = LogEngine(path)
    try:
        ids = {decode(blob).durable_file_id for blob in engine.load()}
    finally:
        engine.close()
    for copy in cluster_copies:
        ids.update(_copy_keys(copy))
    return frozenset(ids)


def _copy_keys(copy: str) -> set[int]:
    """The DurableFileIds in one aggregate copy (its keys; the mirror's
    position record is not an open)."""
    engine = KeyedLogEngine(copy, preallocate_bytes=0)
    try:
        return {key for key in engine.load_keyed() if key != META_KEY}
    finally:
        engine.close()


def _copies_in(handles_dir: str) -> list[str]:
    try:
        names = sorted(os.listdir(handles_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [os.path.join(handles_dir, name) for name in names
            if os.path.isdir(os.path.join(handles_dir, name))]


def cluster_copies(state_dir: str, index: int, count: int) -> tuple[str, ...]:
    """Worker ``index``'s copies of the aggregates (primary or replica)."""
    partition_dir = Partition(index, count).state_dir(state_dir)
    return tuple(_copies_in(os.path.join(partition_dir, "handles")))


def _other_cluster_layouts(state_dir: str, count: int) -> list[str]:
    """Aggregate copies in ``state_dir`` that ``count`` workers do not use."""
    found = _copies_in(os.path.join(state_dir, "handles")) if count > 1 else []
    try:
        names = sorted(os.listdir(state_dir))
    except FileNotFoundError:
        return found
    for name in names:
        match = _CLUSTER_PARTITION.fullmatch(name)
        if match is not None and (count == 1 or int(match.group(1)) >= count):
            found.extend(_copies_in(os.path.join(state_dir, name, "handles")))
    return found


def other_layouts(state_dir: str, count: int) -> list[str]:
    """The partitions in ``state_dir`` that ``count`` workers do not use."""
    try:
        names = sorted(os.listdir(state_dir))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = _WORKER_PARTITION.fullmatch(name)
        if name == "handles" and count > 1:
            found.append(os.path.join(state_dir, name))
        elif match is not None and (count == 1 or int(match.group(1)) >= count):
            found.append(os.path.join(state_dir, name))
    return found


def stranded(state_dir: str, count: int) -> list[tuple[str, int]]:
    """(path, records) of every other-layout partition that holds records;
    StoreError when one cannot be read (held by a running process)."""
    result = []
    for path in other_layouts(state_dir, count):
        engine = LogEngine(path)
        try:
            records = len(list(engine.load()))
        finally:
            engine.close()
        if records:
            result.append((path, records))
    for copy in _other_cluster_layouts(state_dir, count):
        records = len(_copy_keys(copy))
        if records:
            result.append((copy, records))
    return result


def stranded_error(state_dir: str, count: int) -> str | None:
    """The start-up refusal for ``count`` workers, naming the key, or None."""
    try:
        found = stranded(state_dir, count)
    except (StoreError, OSError) as exc:
        return f"server.workers: cannot read an earlier partition of the handle store: {exc}"
    if not found:
        return None
    where = ", ".join(f"{path} ({records} records)" for path, records in found)
    return (f"server.workers: {count} worker(s) do not use {where}: persistent opens of a run "
            f"with another worker count.  Start with that count until their clients closed "
            f"them, or remove the directory to drop them")
