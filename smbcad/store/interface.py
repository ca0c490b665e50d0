"""The handle store's two interfaces: ``HandleStore`` (what the server calls)
and ``Engine`` (what a durable backend implements).

``HandleStore`` is the port of ARCHITECTURE.md ("handle store: local +
partner mirror").  Its verbs follow Samba's smbXsrv_open_global
(``smbXsrv_open.h``): create, update, close, lookup, lookup by CreateGuid
(Samba's lookup-replay), traverse and expire.  Samba's "recreate" (a reconnect
taking the record over) is an ``update`` here: the server writes the record
with ``disconnected_at_ms=None``.  The partner mirror is the
same ``LocalHandleStore`` on a ``SplitEngine`` (``smbcad.cluster.mirrored_engine``)
that also waits for the partner's acknowledgment, so the command handlers
never change.

Durability contract
-------------------
When ``await store.create(...)``, ``update``, ``update_many``, ``close`` or
``expire`` returns, the change is on stable storage of this node (written and
fdatasync'd or committed with SQLite synchronous=FULL); with the partner
mirror, also acknowledged by the partner.  The server sends the SMB response
only after that (issue 4 item 7).  Changes are applied in call order, each
call atomically (``update_many`` atomically across its records), and
concurrent callers share one fsync (group commit).  If the await raises,
nothing is promised: the change may or may not be on disk, and the store is
poisoned (``StoreFailed``) until the daemon restarts and recovers.

Reads (``lookup``, ``lookup_by_create_guid``, ``traverse``) see every change
already requested, durable or not yet (the same read-your-writes view the
server's in-memory tables have).  ``commit_barrier()`` returns once every
change requested before it is durable.  A change is requested when the call
starts: cancelling the await does not withdraw it.

Compare-and-set: every stored record has a ``record_version``, 1 after
``create`` and bumped by each ``update``.  ``update`` takes the record as the
caller last got it from the store (with that version) and fails with
``VersionConflict`` if the store has moved on: a lost update is reported, not
silently applied.  The calls return the record as stored, with its new
version; callers keep that one.
"""

import asyncio
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from smbcad.store.records import PersistentOpen


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counters for the daemon's metrics module (smbcad_store_*)."""

    records: int
    commits: int          # changes callers asked for
    batches: int          # group commits (each one fsync, or one SQLite commit)
    written: int          # record writes and deletes after coalescing within a batch
    max_batch: int        # largest number of caller changes sharing one fsync


class HandleStore(Protocol):
    """Durable table of persistent, durable and resilient opens, by DurableFileId."""

    async def create(self, record: PersistentOpen) -> PersistentOpen:
        """Add a new open (RecordExists if its DurableFileId is taken).
        Returns it as stored, with ``record_version`` 1."""

    def begin_create(self, record: PersistentOpen) -> asyncio.Future:
        """``create`` started in the caller's turn of the event loop: the
        future is done when the record is durable, or fails as ``create``
        would.  A CREATE answered after it needs no task of its own."""

    async def update(self, record: PersistentOpen) -> PersistentOpen:
        """Replace an open; ``record.record_version`` must be the stored one
        (VersionConflict, RecordNotFound).  Returns it with the next version."""

    async def update_many(self, records: Sequence[PersistentOpen]) -> tuple[PersistentOpen, ...]:
        """``update`` of several opens at once, all or none: a lease change
        rewrites every open of the lease, and no crash may leave their copies
        of the lease disagreeing."""

    async def close(self, durable_file_id: int, *,
                    record_version: int | None = None) -> PersistentOpen | None:
        """Remove an open; returns what was removed, None if it was not there.
        With ``record_version``, compare-and-set as in ``update``."""

    def begin_close(self, durable_file_id: int) -> asyncio.Future:
        """``close`` started now, as ``begin_create``."""

    async def lookup(self, durable_file_id: int) -> PersistentOpen | None:
        """The open with this DurableFileId (DHnC, DH2C: 3.3.5.9.7/.12 step 1)."""

    async def lookup_by_create_guid(self, create_guid: bytes, client_guid: bytes | None = None
                                    ) -> tuple[PersistentOpen, ...]:
        """Opens created with this CreateGuid (and ClientGuid, if given),
        newest first: DH2C by CreateGuid on a surviving node (3.3.5.9.12) and
        CREATE replay (3.3.5.9, 3.3.5.9.10).  The server applies the rest of
        the spec's filter (IsReplayEligible, IsPersistent)."""

    async def traverse(self) -> tuple[PersistentOpen, ...]:
        """Every open: startup recovery and takeover adoption."""

    async def expire(self, now_ms: int) -> tuple[PersistentOpen, ...]:
        """Remove, durably, every disconnected open whose timeout has passed
        (``disconnected_at_ms + timeout_ms <= now_ms``) and return them, for
        the scavenger (3.3.2.2, 3.3.6.2) to release their files and locks."""

    async def commit_barrier(self) -> None:
        """Return once every change requested before this call is durable."""

    async def shutdown(self) -> None:
        """Finish pending commits and release the backend."""

    def stats(self) -> StoreStats:
        """Counters for metrics; no I/O."""


class Engine(Protocol):
    """A durable backend.  Every method runs on the store's single writer
    thread (never on the event loop) and may block on disk I/O."""

    name: str

    def load(self) -> Iterable[bytes]:
        """Recover after a clean stop or a crash: take exclusive ownership of
        the store's files (StoreFailed if another process holds them) and
        return the encoded bytes of every live record."""

    def write(self, changes: Mapping[int, bytes | None]) -> None:
        """Apply one group commit: DurableFileId → encoded record (bytes) or
        removal (None).  Atomic, and durable when it returns; raises
        StoreFailed (or OSError) otherwise."""

    def close(self) -> None:
        """Release files and locks."""


class BegunCommit(Protocol):
    """One batch of a ``SplitEngine``, between ``begin`` and its durability."""

    def write_local(self) -> None:
        """Writer thread: the local write; durable when it returns (raises
        StoreFailed or OSError otherwise)."""

    def finish(self) -> Awaitable[None]:
        """Event loop, after ``write_local`` returned: done when the whole
        commit is durable (the partner's part too); raises StoreFailed."""


class SplitEngine(Protocol):
    """A durable backend whose commits also have a part on the event loop:
    the partner mirror sends a batch from the loop before the local write
    starts, so the send costs no thread hop (a wake-up is ~25-100 µs on a
    small VM, the size of a local fsync); the partner's acknowledgment is
    taken on the mirror connection's own thread, which wakes the loop once
    per read (``smbcad.cluster.mirror_wire``).
    Instead of ``Engine.write``, ``LocalHandleStore`` calls ``begin``, runs
    ``write_local`` on the writer thread, then awaits ``finish``; ``load``
    and ``close`` are as in ``Engine``."""

    name: str

    def load(self) -> Iterable[bytes]:
        """As ``Engine.load`` (writer thread)."""

    def begin(self, changes: Mapping[int, bytes | None]) -> BegunCommit:
        """Event loop, once per group commit, in batch order: start the
        commit (StoreFailed if it cannot be)."""

    def close(self) -> None:
        """As ``Engine.close`` (writer thread)."""
