"""An Open and its handle-store record, both directions, side by side.

``to_record`` is what a persistent open's commit stores (smbcad.store.records);
``from_record`` rebuilds the Open after a restart or a takeover (or in the
worker that adopts a durable open, ``durable_handover``), as a
disconnected open (3.3.7.1) with a ghost tree connect on its share until a
DH2C attaches it (3.3.5.9.12).  Lease, oplock and lock state are restored by
their owners (``Leasing.restore``, ``locks.restore``) from the same record.
"""

from smbcad.proto.constants import AccessMask
from smbcad.proto.errors import SmbError
from smbcad.proto.status import NtStatus
from smbcad.server.adm import Open, TreeConnect
from smbcad.store import ZERO_GUID, LeaseRecord, LockRecord, PersistentOpen

__all__ = ["ZERO_GUID", "from_record", "to_record"]

_WRITE = (AccessMask.FILE_WRITE_DATA | AccessMask.FILE_APPEND_DATA
          | AccessMask.FILE_WRITE_ATTRIBUTES | AccessMask.FILE_WRITE_EA)


def to_record(open_, file_state, version: int, *, delete_pending: bool) -> PersistentOpen:
    """The store's view of ``open_``; ``file_state`` is its file's entry in
    the open table (the byte-range locks it holds), ``delete_pending`` its
    file's flag."""
    lease = open_.lease
    lease_record = None
    if lease is not None:
        state = lease.state
        lease_record = LeaseRecord(
            lease_key=lease.lease_key, version=lease.version, state=state.held,
            epoch=lease.epoch, parent_lease_key=lease.parent_lease_key,
            breaking=state.breaking, break_to_state=state.breaking_to or 0,
            break_notification_pending=bool(getattr(lease, "parked_break", None)))
    locks = ()
    if file_state is not None and file_state.locks is not None:
        locks = tuple(LockRecord(lock.offset, lock.length, lock.exclusive)
                      for lock in file_state.locks.locks if lock.owner is open_)
    user, domain = open_.durable_owner or ("", "")
    return PersistentOpen(
        durable_file_id=open_.persistent_id, create_guid=open_.create_guid or ZERO_GUID,
        client_guid=open_.client_guid or ZERO_GUID, owner_user=user, owner_domain=domain,
        owner_sid=open_.durable_owner_sid,
        share_name=open_.tree.share.name, path=open_.path,
        file_dev=open_.file_key[0], file_ino=open_.file_key[1],
        desired_access=open_.desired_access, granted_access=open_.granted_access,
        share_access=open_.share_access, create_options=open_.create_options,
        file_attributes=open_.file_attributes, is_directory=open_.is_directory,
        oplock_level=open_.oplock_level, lease=lease_record,
        app_instance_id=open_.app_instance_id or ZERO_GUID,
        app_instance_version=open_.app_instance_version,
        is_durable=open_.durable, is_persistent=open_.persistent,
        is_resilient=open_.resilient, durable_timeout_ms=open_.durable_timeout_ms,
        resiliency_timeout_ms=open_.resiliency_timeout_ms,
        disconnected_at_ms=open_.disconnected_at_ms, locks=locks,
        lock_sequences=bytes(open_.lock_sequences),
        # a delete disposition set through the open is carried as its
        # delete-on-close: restored, the file goes at the open's last close
        delete_on_close=open_.delete_on_close or delete_pending,
        is_replay_eligible=open_.is_replay_eligible, channel_sequence=open_.channel_sequence,
        position=open_.position, record_version=version)


def from_record(record: PersistentOpen, share, ghost_trees: dict, volatile_id: int) -> Open:
    """Reopen the record's file on ``share`` and rebuild its Open.

    The file must be the one the record names: same path, and the same
    (volume id, inode), which the VFS derives from the filesystem, not the
    block device, so it holds on the partner node too.  SmbError otherwise."""
    fs = share.fs
    components = tuple(part for part in record.path.split("/") if part)
    resolved = fs.lookup(components)
    if not resolved.exists:
        raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "the file is gone")
    info = resolved.info
    if info.file_id != record.file_ino or not fs.volume.same_volume(record.file_dev,
                                                                    info.device_id):
        raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "another file has the name now")
    handle = fs.open(resolved, write=bool(record.granted_access & _WRITE),
                     directory=record.is_directory)
    tree = ghost_trees.get(share.name)
    if tree is None:
        tree = ghost_trees[share.name] = TreeConnect(tree_id=0, share=share, session=None)
    return Open(
        persistent_id=record.durable_file_id, volatile_id=volatile_id,
        session=None, tree=tree, path=handle.path, client_name=record.path.replace("/", "\\"),
        handle=handle, granted_access=record.granted_access, share_access=record.share_access,
        create_options=record.create_options, is_directory=record.is_directory,
        file_key=(info.device_id, info.file_id), delete_on_close=record.delete_on_close,
        position=record.position, durable=record.is_durable, persistent=record.is_persistent,
        resilient=record.is_resilient, durable_timeout_ms=record.durable_timeout_ms,
        resiliency_timeout_ms=record.resiliency_timeout_ms,
        durable_owner=(record.owner_user, record.owner_domain),
        durable_owner_sid=record.owner_sid,
        client_guid=record.client_guid, create_guid=record.create_guid,
        desired_access=record.desired_access, file_attributes=record.file_attributes,
        app_instance_id=record.app_instance_id if record.app_instance_id != ZERO_GUID else b"",
        app_instance_version=record.app_instance_version,
        is_replay_eligible=record.is_replay_eligible,
        channel_sequence=record.channel_sequence,
        lock_sequences=bytearray(record.lock_sequences),
        disconnected_at_ms=record.disconnected_at_ms, store_version=record.record_version)
