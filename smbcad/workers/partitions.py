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
"""

import os
import re

from smbcad.store import LogEngine, StoreError, decode

_WORKER_PARTITION = re.compile(r"handles-worker-(\d+)")


def partition_path(state_dir: str, index: int, count: int) -> str:
    if count == 1:
        return os.path.join(state_dir, "handles")
    return os.path.join(state_dir, f"handles-worker-{index}")


def persistent_ids(path: str) -> frozenset[int]:
    """The DurableFileIds of the opens in one partition (a worker that died:
    their entries in the open-state records stay for its successor, which
    restores them).  StoreError when it cannot be read."""
    engine = LogEngine(path)
    try:
        return frozenset(decode(blob).durable_file_id for blob in engine.load())
    finally:
        engine.close()


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
