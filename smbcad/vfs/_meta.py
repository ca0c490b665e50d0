"""stat(2) + the DOS xattr → ``FileInfo`` ([MS-FSCC] 2.4, 2.6).

Attribute rules follow Samba's defaults (``store dos attributes = yes``,
``hide dot files = yes``):

- DIRECTORY comes from the file type, never from the record.
- A file without a record is ARCHIVE (what Windows gives a new file).
- READONLY is the stored bit, or a file whose owner write bit is clear.
- HIDDEN is the stored bit, or a name starting with "." (not "." or "..").
- NORMAL stands alone when nothing else is set ([MS-FSCC] 2.6).

AllocationSize counts data only, as NTFS reports it: ``st_blocks``, or where
that may include a block of xattrs, the file's extent map (``_fiemap.py``).

``device_id`` is the share's volume id, not ``st_dev``, so a file's identity
(device_id, file_id) is the same on every node (``volume_id.py``).
"""

import os
import stat

from smbcad.proto.constants import FileAttributes as FA
from smbcad.proto.fileinfo import FileInfo, unix_ns_to_filetime
from smbcad.vfs import _fiemap, attrs
from smbcad.vfs.attrs import DosRecord
from smbcad.vfs.volume_id import VolumeId

_NOT_FOR_DIRECTORIES = FA.TEMPORARY | FA.SPARSE_FILE


def derived_creation_time(st: os.stat_result) -> int:
    """Creation FILETIME when none is stored: the older of mtime and ctime."""
    return unix_ns_to_filetime(min(st.st_mtime_ns, st.st_ctime_ns))


def attributes_of(st: os.stat_result, record: DosRecord | None, name: str) -> int:
    """FILE_ATTRIBUTE_* for one file (rules in the module docstring)."""
    if stat.S_ISDIR(st.st_mode):
        stored = record.attributes if record else 0
        value = (stored & ~_NOT_FOR_DIRECTORIES) | FA.DIRECTORY
    else:
        value = record.attributes if record else FA.ARCHIVE
        if not st.st_mode & stat.S_IWUSR:
            value |= FA.READONLY
    if name.startswith(".") and name not in (".", ".."):
        value |= FA.HIDDEN
    return value or FA.NORMAL


def file_info(st: os.stat_result, record: DosRecord | None, name: str, volume: VolumeId,
              allocation: int | None = None, ea_size: int = 0) -> FileInfo:
    """Build the ``FileInfo`` of one file of ``volume`` from its stat and DOS
    record; ``allocation`` (data bytes allocated) overrides ``st_blocks``."""
    is_dir = stat.S_ISDIR(st.st_mode)
    creation = record.creation_time if record and record.creation_time else derived_creation_time(st)
    return FileInfo(
        creation_time=creation,
        last_access_time=unix_ns_to_filetime(st.st_atime_ns),
        last_write_time=unix_ns_to_filetime(st.st_mtime_ns),
        change_time=unix_ns_to_filetime(st.st_ctime_ns),
        # Directories have no data stream: Windows reports 0 for both.
        end_of_file=0 if is_dir else st.st_size,
        allocation_size=0 if is_dir else (st.st_blocks * 512 if allocation is None
                                          else allocation),
        attributes=attributes_of(st, record, name),
        file_id=st.st_ino,
        number_of_links=st.st_nlink,
        is_directory=is_dir,
        device_id=volume.device_of(st.st_dev),
        ea_size=ea_size,
    )


def info_of_fd(fd: int, name: str, volume: VolumeId) -> FileInfo:
    """``FileInfo`` of a real (non-O_PATH) descriptor."""
    st = os.fstat(fd)
    allocation = _fiemap.data_allocation(fd, st) if _needs_extent_map(st) else None
    return file_info(st, attrs.read(fd), name, volume, allocation)


def info_of_path_fd(fd: int, name: str, volume: VolumeId) -> FileInfo:
    """``FileInfo`` of an O_PATH descriptor.

    fgetxattr refuses O_PATH fds, so the xattr is read through the fd's
    ``/proc/self/fd`` magic link, which names exactly the file the fd holds
    (no path is re-resolved).
    """
    st = os.fstat(fd)
    allocation = _allocation_at(f"/proc/self/fd/{fd}", st, follow=True) \
        if _needs_extent_map(st) else None
    return file_info(st, attrs.read(f"/proc/self/fd/{fd}", follow=True), name, volume,
                     allocation)


_UNREAD = object()


def info_of_entry(dir_fd: int, name: str, volume: VolumeId, st: os.stat_result | None = None,
                  ea_size: int = 0, dos_record=_UNREAD) -> FileInfo:
    """``FileInfo`` of a non-symlink entry of an open directory (never
    followed); ``st``: its lstat, when the caller has it already (a listing);
    ``dos_record``: its DOS attribute record, when the caller read it."""
    if st is None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if dos_record is _UNREAD:
        dos_record = read_dos_record(dir_fd, name)
    allocation = _allocation_at(name, st, dir_fd) if _needs_extent_map(st) else None
    return file_info(st, dos_record, name, volume, allocation, ea_size)


def read_dos_record(dir_fd: int, name: str):
    """The DOS attribute record of a non-symlink entry of an open directory."""
    return attrs.read(f"/proc/self/fd/{dir_fd}/{name}", follow=False)


def _needs_extent_map(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode) and _fiemap.needs_extent_map(st)


def _allocation_at(path: str, st: os.stat_result, dir_fd: int | None = None,
                   follow: bool = False) -> int | None:
    """``data_allocation`` of a regular file known by its name in ``dir_fd``
    (never following a symlink) or, ``follow``-ing it, by the ``/proc/self/fd``
    link of an O_PATH descriptor (which names exactly that file)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError:
        return None     # gone or unreadable meanwhile: st_blocks as it stands
    try:
        return _fiemap.data_allocation(fd, st)
    finally:
        os.close(fd)
