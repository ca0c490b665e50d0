"""Bringing persistent opens back after smbcad restarts (issue 4 item 8).

At start, before the listener accepts anyone, every record in the handle
store becomes a disconnected Open again: the file reopened by its share and
path and checked to be the same file (volume id and inode), its share modes,
byte-range locks, lease or oplock and lock sequences restored, and its
scavenger timer set to what is left of its timeout.  A client that
reconnects with DH2C in time gets it back ([MS-SMB2] 3.3.5.9.12); one that
does not finds the file free once the timeout passes (3.3.6.2).

A record that cannot come back (share gone from the config, file deleted or
replaced, timeout already over) is removed from the store and logged, so
the file is free.  This is also smbcad's non-disruptive upgrade: stop,
install, start, and the clients reconnect.
"""

import logging

from smbcad.proto.constants import AccessMask, OplockLevel
from smbcad.proto.errors import SmbError
from smbcad.server import durable, files, locks, oplocks
from smbcad.server.adm import Open, TreeConnect
from smbcad.server.leases import Lease, OplockGrant
from smbcad.server.oplocks import CacheState
from smbcad.store import ZERO_GUID

log = logging.getLogger("smbcad.restore")

_WRITE = (AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
          | AccessMask.FILE_WRITE_ATTRIBUTES | AccessMask.FILE_WRITE_EA)


async def restore_persistent_opens(server) -> tuple[int, int]:
    """Rebuild every stored open; returns (restored, dropped)."""
    store = server.handle_store
    now_ms = int(server.clock() * 1000)
    restored = dropped = 0
    ghost_trees: dict[str, TreeConnect] = {}
    for record in await store.traverse():
        try:
            why_not = _unusable(server, record, now_ms)
            open_ = None if why_not else _rebuild(server, record, ghost_trees)
        except (SmbError, OSError) as exc:
            why_not, open_ = f"cannot reopen the file: {exc}", None
        if open_ is None:
            log.warning("persistent open %#x on %s/%s not restored: %s",
                        record.durable_file_id, record.share_name, record.path, why_not)
            await store.close(record.durable_file_id)
            dropped += 1
            continue
        open_.store_version = record.record_version
        open_.disconnected_at_ms = record.disconnected_at_ms or now_ms
        left_ms = open_.disconnected_at_ms + record.timeout_ms - now_ms
        durable.start_scavenger(server, open_, left_ms / 1000)
        if record.disconnected_at_ms is None:
            await durable.persist(server, open_)       # it was connected when we stopped
        restored += 1
    if restored or dropped:
        log.info("handle store: %d persistent opens restored, %d dropped", restored, dropped)
    return restored, dropped


def _unusable(server, record, now_ms: int) -> str:
    if not record.is_persistent:
        return "not a persistent open"
    if server.find_share(record.share_name) is None:
        return "the share is no longer configured"
    disconnected_at = record.disconnected_at_ms or now_ms
    if disconnected_at + record.timeout_ms <= now_ms:
        return "its timeout passed while the server was down"
    return ""


def _rebuild(server, record, ghost_trees: dict) -> Open | None:
    share = server.find_share(record.share_name)
    fs = share.fs
    components = tuple(part for part in record.path.split("/") if part)
    resolved = fs.lookup(components)
    if not resolved.exists:
        raise SmbError(0xC0000034, "the file is gone")     # OBJECT_NAME_NOT_FOUND
    info = resolved.info
    if info.file_id != record.file_ino or not fs.volume.same_volume(record.file_dev,
                                                                    info.device_id):
        raise SmbError(0xC0000034, "another file has the name now")
    handle = fs.open(resolved, write=bool(record.granted_access & _WRITE),
                     directory=record.is_directory)
    tree = ghost_trees.get(share.name)
    if tree is None:
        tree = ghost_trees[share.name] = TreeConnect(tree_id=0, share=share, session=None)
    open_ = Open(
        persistent_id=record.durable_file_id, volatile_id=server.next_volatile_id(),
        session=None, tree=tree, path=handle.path, client_name=record.path.replace("/", "\\"),
        handle=handle, granted_access=record.granted_access, share_access=record.share_access,
        create_options=record.create_options, is_directory=record.is_directory,
        file_key=(info.device_id, info.file_id), delete_on_close=record.delete_on_close,
        position=record.position, durable=record.is_durable, persistent=True,
        resilient=record.is_resilient, durable_timeout_ms=record.durable_timeout_ms,
        resiliency_timeout_ms=record.resiliency_timeout_ms,
        durable_owner=(record.owner_user, record.owner_domain),
        client_guid=record.client_guid, create_guid=record.create_guid,
        desired_access=record.desired_access, file_attributes=record.file_attributes,
        app_instance_id=record.app_instance_id if record.app_instance_id != ZERO_GUID else b"",
        app_instance_version=record.app_instance_version,
        is_replay_eligible=record.is_replay_eligible,
        channel_sequence=record.channel_sequence,
        lock_sequences=bytearray(record.lock_sequences))
    _register(server, open_)
    if record.create_guid != ZERO_GUID:
        server.opens_by_create_guid[record.create_guid] = open_
    _restore_caching(server, open_, record)
    _restore_locks(server, open_, record)
    return open_


def _register(server, open_) -> None:
    """files.register_open without a session: the open is disconnected."""
    state = server.opens_by_file.get(open_.file_key)
    if state is None:
        state = server.opens_by_file[open_.file_key] = files.FileState(open_.file_key)
    state.opens.append(open_)
    server.opens_by_persistent_id[open_.persistent_id] = open_
    server.metrics.opens.inc()


def _restore_caching(server, open_, record) -> None:
    leasing = server.leasing
    if record.lease is not None:
        saved = record.lease
        lease = leasing.lease(record.client_guid, saved.lease_key)
        if lease is None:
            state = CacheState(saved.state)
            if saved.breaking:
                state = CacheState(saved.state, saved.break_to_state, saved.break_to_state)
            lease = Lease(record.client_guid, saved.lease_key, open_.file_key, saved.version,
                          state, epoch=saved.epoch, parent_lease_key=saved.parent_lease_key,
                          parked_break=saved.breaking)
            leasing.lease_tables.setdefault(record.client_guid, {})[saved.lease_key] = lease
            leasing.add_holder(open_.file_key, lease)
        lease.opens.append(open_)
        open_.lease = lease
        open_.oplock_level = OplockLevel.LEASE
    elif record.oplock_level in (OplockLevel.LEVEL_II, OplockLevel.EXCLUSIVE,
                                 OplockLevel.BATCH):
        grant = OplockGrant(open_, CacheState(oplocks.lease_of_oplock(record.oplock_level)))
        leasing.grants[open_] = grant
        leasing.add_holder(open_.file_key, grant)
        open_.oplock_level = record.oplock_level


def _restore_locks(server, open_, record) -> None:
    if not record.locks:
        return
    lock_list = locks.lock_list(server.opens_by_file[open_.file_key])
    for saved in record.locks:
        lock_list.locks.append(locks.ByteRangeLock(
            saved.offset, saved.length, saved.exclusive, open_,
            saved.offset + saved.length - 1))
