"""The open-state operations, over any store of record bytes (sans-IO).

``OpenStateTable`` says what each change does to a file's record
(``smbcad.openstate.record``) inside one transaction of its store; a
subclass gives the store:

* ``MemoryOpenState`` (here): a dict in this process.  A node of one worker
  process uses it: nothing else needs to see its records, and it costs a
  few dict operations where LMDB walks several pages that the rest of a
  request has pushed out of the caches (a CREATE's check and insert and its
  CLOSE's removal, with 4 MiB of other work between them: 15-30 µs of CPU
  through LMDB, 5-13 µs here; 6.5 and 3.3 µs when nothing comes between).
* ``smbcad.openstate.db.OpenStateDb``: LMDB, shared by every worker process
  of a node (docs/multicore.md).

Both run the same record code, so what one decides the other decides.
"""

import os

from smbcad.openstate import countrecord, dirleaserecord, lockrecord, record


class OpenStateError(Exception):
    """The state could not be made or opened (start-up: names the path)."""


class OpenStateFull(OpenStateError):
    """No room for another open: the store is full, or one file has 65535 opens."""


class OpenStateConflict(Exception):
    """``add_open(checked=True)`` found a conflicting open: ``status`` is the
    NtStatus the CREATE answers (SHARING_VIOLATION, DELETE_PENDING)."""

    def __init__(self, status) -> None:
        super().__init__(f"{status!r}")
        self.status = status


class CachingElsewhere(OpenStateError):
    """``add_open(checked=True)``: another process holds caching on the file
    that this open breaks; the CREATE has it broken and tries again.
    ``sharing_violation``: the share modes refused the open meanwhile."""

    def __init__(self, message: str, *, sharing_violation: bool = False) -> None:
        super().__init__(message)
        self.sharing_violation = sharing_violation


class OpenStateTable:
    """Share modes and delete-pending of every open file; one transaction per call."""

    owner: int                          # names this process in its entries
    _full_errors: tuple = ()            # the store's own "no room" exceptions

    # Whether other processes see these records: then this process's
    # byte-range locks are published to them (``claim_locks``).
    shared = False

    def _begin(self, write: bool = False, locks: bool = False, dirleases: bool = False,
               connections: bool = False):
        """A transaction of the store: a context manager whose value has
        ``get``, ``put``, ``delete`` and ``pop`` (and what ``_scan`` reads);
        ``locks``: of the byte-range locks' records, not the opens';
        ``dirleases``: of the directory leases' (``dirleaserecord``);
        ``connections``: of the connection counts (``countrecord``)."""
        raise NotImplementedError

    # --- reads -----------------------------------------------------------------------

    def value(self, key: tuple) -> bytes | None:
        with self._begin() as txn:
            return txn.get(record.encode_key(key))

    def entries(self, key: tuple) -> tuple[record.OpenEntry, ...]:
        """Every process's opens of ``key``."""
        value = self.value(key)
        return () if value is None else record.decode(value).entries

    def is_open(self, key: tuple) -> bool:
        """Whether any process has an open of ``key``."""
        return self.value(key) is not None

    def delete_pending(self, key: tuple) -> bool:
        return record.delete_pending(self.value(key))

    def sharing_conflict(self, key: tuple, access: int, share: int):
        """The share access check of [MS-FSA] 2.1.5.1.2 against every
        process's opens: an NtStatus, or None when the open may go ahead."""
        return record.sharing_conflict(self.value(key), access, share)

    # --- changes ---------------------------------------------------------------------

    def add_open(self, key: tuple, open_id: int, access: int, share: int, *,
                 checked: bool = False, stat_open: bool = False) -> None:
        """OpenStateFull, with nothing changed, when there is no room.
        ``checked``: the share access check again, in the same transaction
        (OpenStateConflict): another process may have added a conflicting
        open since this one's CREATE checked; and, unless ``stat_open``,
        CachingElsewhere when another process's caching must be broken
        first: write caching (its holder must be alone), or handle caching
        when the share modes refuse (its holder may close)."""
        combine = record.with_packed_entry
        if checked:
            def combine(value, packed):
                status = record.sharing_conflict(value, access, share)
                foreign = 0 if stat_open else record.foreign_caching(value, self.owner)
                if foreign & record.CACHING_WRITE or (
                        foreign & record.CACHING_HANDLE and status is not None):
                    # Its holder must be asked first: a break, then this CREATE again.
                    raise CachingElsewhere(f"another process caches {key}",
                                           sharing_violation=status is not None)
                if status is not None:
                    raise OpenStateConflict(status)
                return record.with_packed_entry(value, packed)
        self._put_entry(key, record.ENTRY.pack(self.owner, open_id, access, share), combine)

    def _put_entry(self, key: tuple, packed: bytes, combine) -> None:
        db_key = record.encode_key(key)
        try:
            with self._begin(write=True) as txn:
                txn.put(db_key, combine(txn.get(db_key), packed))
        except (record.RecordError, *self._full_errors) as exc:
            raise OpenStateFull(f"no room for another open of {key}: {exc}") from None

    def remove_open(self, key: tuple, open_id: int, *,
                    mark_delete_pending: bool = False) -> tuple[int, bool]:
        """Take ``open_id`` out of ``key``'s record, first marking the file
        delete-pending when asked (its delete-on-close, [MS-FSA] 2.1.5.4).
        Returns (opens left, delete pending): the last one out deletes."""
        db_key = record.encode_key(key)
        with self._begin(write=True) as txn:
            value = txn.get(db_key)
            if value is None:
                return 0, False
            pending = mark_delete_pending or record.delete_pending(value)
            left, _removed = record.without_entry(value, open_id)
            if left is None:
                txn.delete(db_key)
                return 0, pending
            if pending:
                left = record.with_delete_pending(left, True)
            txn.put(db_key, left)
            return record.entry_count(left), pending

    def set_delete_pending(self, key: tuple, pending: bool) -> None:
        """FileDispositionInformation ([MS-FSA] 2.1.5.15.3) on an open file."""
        db_key = record.encode_key(key)
        with self._begin(write=True) as txn:
            value = txn.get(db_key)
            if value is not None:
                txn.put(db_key, record.with_delete_pending(value, pending))

    def move_open(self, old_key: tuple, new_key: tuple, open_id: int) -> None:
        """An open now names another file key (a stream renamed onto the default stream)."""
        old, new = record.encode_key(old_key), record.encode_key(new_key)
        with self._begin(write=True) as txn:
            value = txn.get(old)
            if value is None:
                return
            left, removed = record.without_entry(value, open_id)
            if removed is None:
                return
            if left is None:
                txn.delete(old)
            else:
                txn.put(old, left)
            txn.put(new, record.with_entry(txn.get(new), removed))

    def rekey(self, old_key: tuple, new_key: tuple) -> None:
        """A file's record moves to a new key (a stream renamed), whole."""
        old, new = record.encode_key(old_key), record.encode_key(new_key)
        with self._begin(write=True) as txn:
            value = txn.pop(old)
            if value is not None:
                txn.put(new, value)

    def held_disconnected(self, key: tuple) -> bool:
        """Whether a disconnected persistent open, in any process, holds ``key``."""
        with self._begin() as txn:
            return record.held_disconnected(txn.get(record.encode_key(key)))

    def set_disconnected(self, key: tuple, open_id: int, disconnected: bool) -> None:
        """A persistent open lost its client, or got it back."""
        db_key = record.encode_key(key)
        with self._begin(write=True) as txn:
            value = txn.get(db_key)
            if value is not None:
                txn.put(db_key, record.with_disconnected(value, open_id, disconnected))

    def adopt_open(self, key: tuple, open_id: int, access: int, share: int, *,
                   disconnected: bool = False) -> None:
        """``add_open`` for a persistent open restored from the handle store:
        an entry its earlier owner left for it becomes this process's."""
        if disconnected:
            share |= record.HELD_DISCONNECTED
        self._put_entry(key, record.ENTRY.pack(self.owner, open_id, access, share),
                        record.with_entry_replaced)

    def forget_owner(self, owner: int, keep: frozenset = frozenset()) -> int:
        """Remove every entry of a process that is gone, except those of the
        opens in ``keep`` (persistent ones its successor restores and
        adopts); returns how many records changed."""
        changed = 0
        for store, without in (({}, record.without_owner),
                               ({"locks": True}, lockrecord.without_owner),
                               ({"dirleases": True}, countrecord.without_owner),
                               ({"connections": True}, countrecord.without_owner)):
            with self._begin(write=True, **store) as txn:
                updates = []
                for db_key, value in self._scan(txn):
                    left = without(value, owner, keep)
                    if left != value:
                        updates.append((db_key, left))
                for db_key, left in updates:
                    if left is None:
                        txn.delete(db_key)
                    else:
                        txn.put(db_key, left)
            if not store:
                changed = len(updates)
        return changed

    # --- caching across processes (record.CACHING) ---------------------------------

    def caching_elsewhere(self, key: tuple) -> bool:
        return self.foreign_caching(key) != 0

    def foreign_caching(self, key: tuple) -> int:
        """The record.CACHING_BITS other processes hold on ``key`` (0: none)."""
        with self._begin() as txn:
            return record.foreign_caching(txn.get(record.encode_key(key)), self.owner)

    def foreign_state(self, key: tuple) -> tuple[int, bool]:
        """(``foreign_caching``, whether another process has ``key`` open)."""
        with self._begin() as txn:
            return record.foreign_state(txn.get(record.encode_key(key)), self.owner)

    def set_caching(self, key: tuple, bits: int) -> None:
        """This process's caching of ``key`` is now ``bits`` (record.CACHING_BITS;
        0: none): it changes with grants, breaks and closes."""
        db_key = record.encode_key(key)
        with self._begin(write=True) as txn:
            value = txn.get(db_key)
            if value is not None:
                changed = record.with_caching(value, self.owner, bits)
                if changed != value:
                    txn.put(db_key, changed)

    def claim_caching(self, key: tuple, bits: int, expected: tuple[int, bool] | None = None
                      ) -> bool:
        """Mark this process's entries of ``key`` as caching ``bits``, in one
        transaction, unless (then nothing changes) another process now has
        what ``expected`` (a ``foreign_state`` read when the level was
        decided) did not say; without ``expected``: unless write caching is
        claimed and another process has the file open, or another process
        holds write caching.  So no other process's open or grant slips in
        unseen."""
        db_key = record.encode_key(key)
        with self._begin(write=True) as txn:
            value = txn.get(db_key)
            if value is None:
                return False
            foreign, opened = record.foreign_state(value, self.owner)
            if expected is not None:
                if (foreign, opened) != expected:
                    return False
            elif (bits & record.CACHING_WRITE and opened) or foreign & record.CACHING_WRITE:
                return False
            txn.put(db_key, record.with_caching(value, self.owner, bits))
        return True

    # --- directory leases (smbcad.openstate.dirleaserecord) -------------------------

    def publish_dir_leases(self, share: str, path: str, count: int) -> None:
        """This process now holds ``count`` directory leases on ``path``."""
        db_key = dirleaserecord.encode_key(share, path)
        with self._begin(write=True, dirleases=True) as txn:
            value = countrecord.with_owner_count(txn.get(db_key), self.owner, count)
            if value is None:
                txn.pop(db_key)
            else:
                txn.put(db_key, value)

    def dir_leases_elsewhere(self, share: str, path: str) -> bool:
        """Whether another process holds a directory lease on ``path``."""
        with self._begin(dirleases=True) as txn:
            return dirleaserecord.held_elsewhere(
                txn.get(dirleaserecord.encode_key(share, path)), self.owner)

    # --- connections (server.max_connections*, smbcad.openstate.countrecord) --------

    def admit_connection(self, host: str, max_total: int | None = None,
                         max_from_host: int | None = None) -> tuple[str, int] | None:
        """Count one more connection of this process from ``host``, unless
        every process of the node together already has ``max_total``, or
        ``max_from_host`` from ``host``: then which limit ("connections" or
        "connections_per_client") and the node's count, and nothing is
        counted.  No limits: a connection the node already admitted (passed
        here by another worker) is counted in."""
        host_key = countrecord.client_key(host)
        owner = self.owner
        with self._begin(write=True, connections=True) as txn:
            node, from_host = txn.get(countrecord.NODE_CONNECTIONS), txn.get(host_key)
            if max_total is not None and (held := countrecord.total(node)) >= max_total:
                return "connections", held
            if max_from_host is not None and (
                    held := countrecord.total(from_host)) >= max_from_host:
                return "connections_per_client", held
            txn.put(countrecord.NODE_CONNECTIONS, countrecord.with_owner_count(
                node, owner, countrecord.count_of(node, owner) + 1))
            txn.put(host_key, countrecord.with_owner_count(
                from_host, owner, countrecord.count_of(from_host, owner) + 1))
        return None

    def connection_closed(self, host: str) -> None:
        """A connection of this process from ``host`` that was counted in is gone."""
        owner = self.owner
        with self._begin(write=True, connections=True) as txn:
            for db_key in (countrecord.NODE_CONNECTIONS, countrecord.client_key(host)):
                value = txn.get(db_key)
                left = countrecord.with_owner_count(
                    value, owner, max(countrecord.count_of(value, owner) - 1, 0))
                if left is None:
                    txn.pop(db_key)
                else:
                    txn.put(db_key, left)

    def node_connections(self) -> int:
        """Every process's connections together."""
        with self._begin(connections=True) as txn:
            return countrecord.total(txn.get(countrecord.NODE_CONNECTIONS))

    # --- byte-range locks (smbcad.openstate.lockrecord) -----------------------------

    def foreign_lock_conflict(self, key: tuple, offset: int, length: int,
                              exclusive: bool) -> bool:
        """Whether another process's lock stops this READ (``exclusive``
        False), WRITE or lock request ([MS-FSA] 2.1.4.10)."""
        with self._begin(locks=True) as txn:
            return lockrecord.foreign_conflict(txn.get(record.encode_key(key)), self.owner,
                                               offset, length, exclusive)

    def claim_locks(self, key: tuple, wanted, mine) -> bool:
        """Take the ranges ``wanted`` ((offset, length, exclusive)) unless
        another process's lock stops one, and publish ``mine`` (every lock
        this process then holds on ``key``: (open id, offset, length,
        exclusive)), in one transaction: two processes cannot both win."""
        db_key = record.encode_key(key)
        try:
            with self._begin(write=True, locks=True) as txn:
                value = txn.get(db_key)
                if any(lockrecord.foreign_conflict(value, self.owner, offset, length, exclusive)
                       for offset, length, exclusive in wanted):
                    return False
                self._put_locks(txn, db_key, lockrecord.with_owner_locks(
                    value, self.owner, lockrecord.pack(self.owner, mine)))
        except self._full_errors as exc:
            raise OpenStateFull(f"no room for another lock of {key}: {exc}") from None
        return True

    def publish_locks(self, key: tuple, mine) -> None:
        """This process's locks on ``key`` are now ``mine`` (fewer: released)."""
        db_key = record.encode_key(key)
        with self._begin(write=True, locks=True) as txn:
            self._put_locks(txn, db_key, lockrecord.with_owner_locks(
                txn.get(db_key), self.owner, lockrecord.pack(self.owner, mine)))

    def adopt_locks(self, key: tuple, open_id: int, *, keep: bool = True) -> None:
        """The locks of ``open_id``, published by the process that held the
        open, become this process's: it adopted the open (a durable open
        handed between workers), and they never left the record meanwhile.
        ``keep`` False: they go (the open could not be adopted)."""
        db_key = record.encode_key(key)
        with self._begin(write=True, locks=True) as txn:
            value = txn.get(db_key)
            if value:
                self._put_locks(txn, db_key, lockrecord.with_open_owned_by(
                    value, open_id, self.owner if keep else None))

    def locks_of(self, key: tuple) -> list:
        with self._begin(locks=True) as txn:
            return lockrecord.decode(txn.get(record.encode_key(key)))

    @staticmethod
    def _put_locks(txn, db_key: bytes, value: bytes | None) -> None:
        if value is not None:
            txn.put(db_key, value)
        else:
            txn.pop(db_key)

    def count(self) -> int:
        """How many files have a record."""
        with self._begin() as txn:
            return sum(1 for _ in self._scan(txn))

    @staticmethod
    def _scan(txn):
        """Every (key, value) of the store, as a list (changes may follow)."""
        return list(txn.items())


class _DictTransaction:
    """A dict as a store transaction: the event loop runs one call at a time."""

    __slots__ = ("get", "put", "delete", "pop", "items")  # those of lmdb.Transaction

    def __init__(self, records: dict) -> None:
        self.get = records.get
        self.put = records.__setitem__
        self.delete = records.__delitem__
        self.pop = lambda key: records.pop(key, None)
        self.items = lambda: list(records.items())

    def __enter__(self) -> "_DictTransaction":
        return self

    def __exit__(self, *exc_info) -> None:
        return None


class MemoryOpenState(OpenStateTable):
    """The records of a node that runs one process, in that process."""

    def __init__(self, owner: int | None = None) -> None:
        self.owner = os.getpid() if owner is None else owner
        self._records: dict[bytes, bytes] = {}
        self._locks: dict[bytes, bytes] = {}
        self._dir_leases: dict[bytes, bytes] = {}
        self._connections: dict[bytes, bytes] = {}
        self._transaction = _DictTransaction(self._records)
        self._lock_transaction = _DictTransaction(self._locks)
        self._dir_lease_transaction = _DictTransaction(self._dir_leases)
        self._connection_transaction = _DictTransaction(self._connections)

    def _begin(self, write: bool = False, locks: bool = False, dirleases: bool = False,
               connections: bool = False) -> _DictTransaction:
        if connections:
            return self._connection_transaction
        if dirleases:
            return self._dir_lease_transaction
        return self._lock_transaction if locks else self._transaction

    def count(self) -> int:
        return len(self._records)

    def close(self) -> None:
        self._records.clear()
        self._locks.clear()
        self._dir_leases.clear()
        self._connections.clear()
