"""Directory leases ([MS-SMB2] 3.3.5.9.11, 3.3.4.7; [MS-FSA] 2.1.4.13 oplock
breaks on a parent directory).

A directory lease lets a client cache the directory's listing (R) and keep
its handle open (H); W is never granted on a directory.  Only v2 lease
requests on a 3.x connection that negotiated SMB2_GLOBAL_CAP_DIRECTORY_LEASING
get one (a v1 request on a directory gets no lease, as before 3.0).

The holder is an ordinary ``leases.Lease`` keyed by the directory's
(volume id, inode), so opens of the directory itself break it through the
usual table (a sharing violation takes H, a delete-on-close open takes H).
What is particular to directories is the *parent* break: a change to the
directory's listing by an open whose lease's ParentLeaseKey is not the
directory lease's key breaks that lease to none, and nobody waits for the
acknowledgment (2.1.4.13).  Windows breaks on (smbtorture smb2.dirlease in
Samba master, and smb2.lease.v2_request):

=============================================  ==========================================
Change by an open in the directory             Parent directory lease
=============================================  ==========================================
a file or subdirectory created or overwritten  broken to none
set-info: basic information, end of file,      broken to none
allocation size
the first close after a write                  broken to none (the listing's times)
a rename (source and target directory)         each broken to none
the last close of a delete-pending entry       broken to none
=============================================  ==========================================

Only the lease whose key equals the acting open's ParentLeaseKey is spared
(whatever client holds it: smb2.dirlease.setinfo "second client").

With worker processes (docs/multicore.md) each worker publishes how many
directory leases it holds per directory (``OpenStateTable.publish_dir_leases``);
a change through one worker reads its directory's count and, when another
worker holds some, tells it (``Leasing.break_listing_elsewhere``), which
breaks them as a local change would (``break_listing``).
"""

from smbcad.proto.constants import Dialect, GlobalCaps
from smbcad.proto.create_contexts import ZERO_KEY
from smbcad.proto.fscc import FileAllocationInfo, FileBasicInfo, FileEndOfFileInfo
from smbcad.server.leases_elsewhere import shared
from smbcad.server.oplocks import NONE, Event, Kind

# SET_INFO classes that change what a directory listing shows of the file.
_LISTING_INFO = (FileBasicInfo, FileEndOfFileInfo, FileAllocationInfo)


def allowed(ctx, lease_request) -> bool:
    """3.3.5.9.11: a directory lease needs a v2 request on a 3.x connection
    whose server capabilities include directory leasing."""
    connection = ctx.connection
    return (lease_request.version == 2 and connection.dialect >= Dialect.SMB_3_0
            and bool(connection.server_capabilities & GlobalCaps.DIRECTORY_LEASING))


def parent_key_of(open_) -> bytes | None:
    """The ParentLeaseKey an open acts under: its v2 lease's, if it set one."""
    lease = open_.lease
    key = getattr(lease, "parent_lease_key", ZERO_KEY)
    return key if key != ZERO_KEY else None


def break_parent(leasing, share, path: str, acting_parent_key: bytes | None) -> None:
    """Break every directory lease on the directory holding ``path``
    (share-relative) to none, except the acting open's parent lease
    ([MS-FSA] 2.1.4.13: no wait for the acknowledgment); other workers'
    too."""
    if not path:
        return
    parent = path.rpartition("/")[0]
    if leasing.dir_leases:
        break_listing(leasing, share, parent, acting_parent_key)
    if shared(leasing) and leasing.server.opens.open_state.dir_leases_elsewhere(
            share.name, parent):
        leasing.break_listing_elsewhere(share.name, parent, acting_parent_key)


def break_listing(leasing, share, directory: str, acting_parent_key: bytes | None) -> None:
    """This process's part of ``break_parent``, for the directory itself."""
    for lease in list(leasing.dir_leases):
        if lease.lease_key == acting_parent_key or not lease.state.held:
            continue
        if any(open_.tree.share is share and not open_.closed and open_.handle.path == directory
               for open_ in lease.opens):
            leasing.apply(lease, Event(Kind.BREAK, NONE))


def granted(leasing, lease, open_) -> None:
    """A directory lease was granted on ``open_``'s directory."""
    leasing.dir_leases.add(lease)
    if shared(leasing):
        place = (open_.tree.share.name, open_.handle.path)
        leasing.dir_lease_places[lease] = place
        _publish(leasing, place)


def dropped(leasing, lease) -> None:
    """A directory lease ended (its last open closed)."""
    leasing.dir_leases.discard(lease)
    place = leasing.dir_lease_places.pop(lease, None)
    if place is not None:
        _publish(leasing, place)


def moved(leasing, opens) -> None:
    """Opens a rename moved (``renamed_opens.follow``): a directory lease
    among them is published at its new place."""
    if not leasing.dir_lease_places:
        return
    for open_ in opens:
        lease = open_.lease
        old_place = leasing.dir_lease_places.get(lease) if lease is not None else None
        new_place = (open_.tree.share.name, open_.handle.path)
        if old_place is None or old_place == new_place:
            continue
        leasing.dir_lease_places[lease] = new_place
        _publish(leasing, old_place)
        _publish(leasing, new_place)


def _publish(leasing, place: tuple[str, str]) -> None:
    count = sum(1 for other in leasing.dir_lease_places.values() if other == place)
    leasing.server.opens.open_state.publish_dir_leases(*place, count)


def _break_for(leasing, open_) -> None:
    if open_.tree is not None:
        break_parent(leasing, open_.tree.share, open_.handle.path, parent_key_of(open_))


def after_create(leasing, open_, created: bool, overwritten: bool) -> None:
    """A new entry, or an overwritten one, changes its directory's listing."""
    if created or overwritten:
        _break_for(leasing, open_)


def before_set_info(leasing, open_, info) -> None:
    """Times, attributes, sizes: what a listing shows of the entry."""
    if isinstance(info, _LISTING_INFO):
        _break_for(leasing, open_)


def after_rename(leasing, open_, old_path: str, new_path: str) -> None:
    """The entry left one listing and joined another (maybe the same)."""
    if not leasing.dir_leases and not shared(leasing):
        return
    share, key = open_.tree.share, parent_key_of(open_)
    break_parent(leasing, share, old_path, key)
    if old_path.rpartition("/")[0] != new_path.rpartition("/")[0]:
        break_parent(leasing, share, new_path, key)


def noted_write(leasing, open_) -> None:
    """A write: the directory hears of it at the open's close (the listing's
    last-write time is settled then; smb2.lease.v2_request waits 4 s for a
    break that must not come before the close).  With workers the close
    reads whether another worker leases the directory, once, rather than
    every WRITE (a lease granted there after the write saw the new times,
    so breaking it as well costs a break, not correctness)."""
    if leasing.dir_leases or shared(leasing):
        leasing.written.add(open_)


def on_close(leasing, open_, deleting: bool) -> None:
    """The last close of a delete-pending entry removes it from the listing;
    the first close after a write changes its times there."""
    written = open_ in leasing.written
    leasing.written.discard(open_)
    if deleting or written:
        _break_for(leasing, open_)
