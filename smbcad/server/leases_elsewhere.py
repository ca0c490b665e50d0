"""Leases and oplocks when worker processes share the node's files
(docs/multicore.md, "Caching across workers").

A worker may cache a file (hold a lease or an oplock on it) only while no
other worker has it open; the open-state records mark its entries
(``record.CACHING``, set by ``claim_caching`` at the grant, in
``Leasing._grantable``).  A CREATE through another worker that finds the
mark asks the others to break (``Leasing.break_elsewhere``, a
``BreakRequest`` to each), waits until the mark is gone and runs again; the
holding worker breaks every holder of the file to none (``break_for``), and
the mark goes when none holds anything (``sync_caching``).
"""

import asyncio
from typing import Callable

from smbcad.server.context import Pending
from smbcad.openstate import record
from smbcad.server import oplocks
from smbcad.server.oplocks import NONE, Event, Kind

POLL_S = 0.02                   # how often a waiting CREATE looks at the records
WAIT_LIMIT_S = 70.0             # twice the 35 s break timeout, as a local wait


def shared(leasing) -> bool:
    """Whether other processes see this one's records (worker processes)."""
    server = leasing.server
    return server is not None and server.opens.open_state.shared


def is_stat_open(access: int, overwrite: bool) -> bool:
    """An open that breaks no caching anywhere (decide_open's first test):
    it neither waits for another worker's holders nor stops their grants."""
    return not overwrite and oplocks.is_stat_open(access, against_lease=False)


def handle_caching(foreign: int) -> bool:
    """Whether ``OpenStateTable.foreign_caching``'s answer includes H."""
    return bool(foreign & record.CACHING_HANDLE)


def holds_handle(leasing, key: tuple) -> bool:
    """Whether one of this process's holders of ``key`` holds handle caching."""
    caching = leasing.files.get(key)
    return caching is not None and any(holder.state.held & oplocks.H
                                       for holder in caching.holders)


def sync_caching(leasing, key: tuple) -> None:
    """The mark stays only while one of this process's holders of ``key``
    holds something, its handle-caching part while one holds H."""
    caching = leasing.files.get(key)
    records = leasing.server.opens.open_state
    if caching is None or not any(holder.state.held for holder in caching.holders):
        records.drop_caching(key)
    else:
        records.set_handle_caching(key, holds_handle(leasing, key))


def break_for(leasing, key: tuple) -> None:
    """Another worker's client opens ``key``: every caching of it here
    breaks to none, through the same state machine and timers as a local
    break (the break timer bounds a client that never acknowledges)."""
    caching = leasing.files.get(key)
    for holder in list(caching.holders if caching is not None else ()):
        state = holder.state
        if state.held and not (state.breaking and state.breaking_to == NONE):
            leasing.apply(holder, Event(Kind.BREAK, NONE))
    if shared(leasing):
        sync_caching(leasing, key)


def wait_then_retry(leasing, ctx, key: tuple, retry: Callable) -> Pending:
    """A CREATE of a file another worker caches: ask for the break, wait
    (bounded) until the records show nobody else caching, then run the
    CREATE again."""
    leasing.break_elsewhere(key)

    async def waited():
        loop = asyncio.get_running_loop()
        records = leasing.server.opens.open_state
        deadline = loop.time() + WAIT_LIMIT_S
        while records.caching_elsewhere(key) and loop.time() < deadline:
            await asyncio.sleep(POLL_S)
        return await run_again(ctx, retry)
    return Pending(waited(), interim_after_s=0.0)


async def run_again(ctx, retry: Callable):
    """``retry(ctx)`` (the whole request again) after a wait, to its end."""
    if ctx.connection.closed:
        # Gone while it waited: an open made now would belong to no session
        # and never close.
        raise asyncio.CancelledError
    result = retry(ctx)
    while isinstance(result, Pending):
        result = await result.work
    return result
