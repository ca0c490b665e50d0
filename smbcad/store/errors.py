"""Handle-store exceptions, each carrying the NTSTATUS a handler would answer
with if it let the error through (shared/STYLE.md rule 8).

Most of these are programming errors or a broken disk rather than client
mistakes; the status is what reaches the client when a handler has nothing
better to say.
"""

from smbcad.proto.status import NtStatus


class StoreError(Exception):
    """Base class of everything the handle store raises."""

    status = NtStatus.INTERNAL_ERROR


class RecordCorrupt(StoreError):
    """Bytes that do not decode to a record (truncated, bad lengths, bad flags)."""


class RecordTooNew(StoreError):
    """A record written by a newer smbcad whose envelope says this version
    cannot interpret it safely (``min_reader_version`` above ours).  Opening a
    store holding one fails: a downgrade must not silently drop state."""


class RecordExists(StoreError):
    """``create`` of a DurableFileId that is already in the store."""

    status = NtStatus.DUPLICATE_OBJECTID


class RecordNotFound(StoreError):
    """``update`` of a DurableFileId that is not in the store (closed or expired)."""

    status = NtStatus.OBJECT_NAME_NOT_FOUND


class VersionConflict(StoreError):
    """Compare-and-set failed: the caller's ``record_version`` is not the
    stored one, so the caller built its change on a stale copy (a lost update)."""

    def __init__(self, durable_file_id: int, expected: int, found: int) -> None:
        super().__init__(f"open {durable_file_id:#x}: caller has record version {expected}, "
                         f"store has {found}")
        self.durable_file_id = durable_file_id
        self.expected = expected
        self.found = found


class StoreFailed(StoreError):
    """The store could not make a change durable (I/O error, fsync failure,
    store held by another process).  After a failed commit the store is
    poisoned: whether the failed batch reached the disk is unknown, so every
    later call raises this too, until the daemon restarts and recovers from
    what is on disk (the PostgreSQL lesson: never retry a failed fsync)."""

    status = NtStatus.UNEXPECTED_IO_ERROR
