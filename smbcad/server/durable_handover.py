"""A durable open handed from one worker process to another (docs/multicore.md).

A client that lost its connection comes back with DHnC or DH2C ([MS-SMB2]
3.3.5.9.7, 3.3.5.9.12) on a new connection, which the node routes by the
new connection's ClientGuid.  Windows reconnects with its own ClientGuid,
so it meets the worker that holds its open; but an oplock open may be
reconnected by a client with another ClientGuid (smbtorture's
durable-open.reopen1a and lock-oplock do it), and that one half the time
lands on another worker.  That worker asks the others for the open
(``fetch_elsewhere``: a ReleaseDurable to each, the CREATE pending
meanwhile); the one holding it lets it go (``on_release_request``) and
answers with its record in the handle store's encoding; the asker rebuilds
it as a disconnected open of its own (``adopt``) and runs the reconnect
again, which then checks it as it checks any open.

What moves: only a disconnected durable or resilient open that is not
persistent (a persistent open's record belongs to its worker's partition
of the handle store, and a ClientGuid always routes it back there) and
holds no lease (a lease is the ClientGuid's, and a reconnect from another
ClientGuid fails on it anyway).  Its share-mode entry and byte-range
locks stay in the shared records throughout and change owner in place
(``OpenStateTable.adopt_open``, ``adopt_locks``), so no other client can
slip in between; its oplock ends in the holder and is claimed again by the
adopter (``Leasing.restore``, which breaks it if another worker took
caching meanwhile).  Its reconnect timer continues from its disconnect.
"""

import logging

from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server import durable, open_records
from smbcad.server.context import COMMIT_INTERIM_S, Pending
from smbcad.server.leases_elsewhere import run_again
from smbcad.store import records
from smbcad.store.errors import StoreError

log = logging.getLogger("smbcad.reconnect")


def fetch_elsewhere(ctx, open_id: int, retry) -> Pending | None:
    """With workers, a reconnect that found no open ``open_id`` here: ask
    the others for it, adopt it if one lets it go, then run ``retry(ctx)``
    (the reconnect again, ``ctx.asked_workers`` set).  None: nobody to ask."""
    peers = ctx.server.peers
    if peers is None or ctx.asked_workers:
        return None

    async def fetched():
        encoded = await peers.release_durable(open_id)
        ctx.asked_workers = True
        if encoded is not None:
            adopt(ctx.server, encoded)
        return await run_again(ctx, retry)
    return Pending(fetched(), COMMIT_INTERIM_S)


def movable(open_) -> bool:
    """Whether this process may let ``open_`` go to another worker."""
    if open_ is None or open_.closed or open_.session is not None or open_.is_pipe:
        return False
    if open_.persistent or open_.lease is not None or len(open_.file_key) != 2:
        return False                    # named streams: their key is not the file's
    if open_.resilient:
        return True
    return open_.durable and durable.holds_handle_caching(open_)


def on_release_request(server, open_id: int, max_record: int) -> bytes | None:
    """Another worker asks for open ``open_id`` (a ReleaseDurable): if it is
    here and may move, let it go; its record (at most ``max_record`` bytes,
    what a reply carries), or None."""
    opens = server.opens
    open_ = opens.lookup(open_id)
    if not movable(open_):
        return None
    # The file's delete-pending flag stays in the shared record: only the
    # open's own delete-on-close travels.
    try:
        encoded = records.encode(open_records.to_record(
            open_, opens.file_state(open_.file_key), 0, delete_pending=False))
    except ValueError as exc:
        log.warning("durable open %#x on %r not handed to another worker: %s",
                    open_.persistent_id, open_.path, exc)
        return None
    if len(encoded) > max_record:
        log.warning("durable open %#x on %r not handed to another worker: its record of %d "
                    "bytes does not fit a message", open_.persistent_id, open_.path, len(encoded))
        return None
    opens.hand_over(open_)
    log.info("durable open %#x on %r handed to another worker for its reconnect",
             open_.persistent_id, open_.path, extra={"open_id": f"{open_.persistent_id:#x}"})
    return encoded


def adopt(server, encoded: bytes):
    """Rebuild the open another worker let go of as a disconnected open of
    this process; the Open, or None when it cannot be (its share-mode entry
    and locks are then taken out of the shared records: nobody holds them)."""
    opens = server.opens
    try:
        record = records.decode(encoded)
    except StoreError as exc:
        log.error("a durable open handed over by another worker is unreadable: %s", exc)
        return None
    key = (record.file_dev, record.file_ino)
    share = server.find_share(record.share_name)
    try:
        if share is None:
            raise SmbError(NtStatus.BAD_NETWORK_NAME, "its share is gone")
        open_ = open_records.from_record(record, share, {}, opens.next_volatile_id())
        opens.rebuild(open_, record)
    except (SmbError, OSError) as exc:
        log.warning("durable open %#x on %s/%s handed over by another worker is lost: %s",
                    record.durable_file_id, record.share_name, record.path, exc)
        opens.open_state.remove_open(key, record.durable_file_id)
        opens.open_state.adopt_locks(key, record.durable_file_id, keep=False)
        return None
    disconnected_at_ms = record.disconnected_at_ms or int(opens.clock() * 1000)
    left_ms = disconnected_at_ms + record.timeout_ms - int(opens.clock() * 1000)
    opens.start_scavenger(open_, left_ms / 1000)
    return open_
