"""Operations on an open file's descriptor: data I/O and metadata changes.

A base class of ``ShareFs`` (split out for size).  Nothing here resolves a
name; it only uses the fd an ``OpenFile`` holds, so containment is settled
when the file was opened.
"""

import dataclasses
import errno
import os
import stat

from smbcad.proto.constants import FileAttributes as FA
from smbcad.proto.errors import SmbError
from smbcad.proto.fileinfo import FileInfo, filetime_to_unix_ns
from smbcad.proto.status import NtStatus
from smbcad.vfs import _meta, attrs, ntacl, streams
from smbcad.vfs._openat2 import FALLOC_FL_KEEP_SIZE, Syscalls
from smbcad.vfs.errors import translated
from smbcad.vfs.model import OpenFile
from smbcad.vfs.streams import StreamHandle
from smbcad.vfs.volume_id import VolumeId

# [MS-FSCC] 2.4.7 FileBasicInformation: the bits a client may set.
SETTABLE_ATTRIBUTES = (FA.READONLY | FA.HIDDEN | FA.SYSTEM | FA.ARCHIVE | FA.TEMPORARY
                       | FA.OFFLINE | FA.NOT_CONTENT_INDEXED | FA.NORMAL)

_U64 = 1 << 64


def _time_arg(value: int) -> int | None:
    """A FILETIME from SET_INFO → the value to set, or None to leave it alone.

    [MS-FSA] 2.1.5.15.2: 0 = unchanged, -1 = stop automatic updates, -2 =
    resume them (both treated as unchanged here), below -2 is invalid.
    Accepts the wire's unsigned form too.
    """
    if value >= _U64 // 2:
        value -= _U64
    if value in (0, -1, -2):
        return None
    if value < -2:
        raise SmbError(NtStatus.INVALID_PARAMETER, "negative time")
    return value


class ChangeTimes:
    """Client-set ChangeTime values ([MS-FSA] 2.1.5.15.2), which Linux cannot
    store: each is reported while the file's real ctime is still the one seen
    right after it was set, i.e. until the next metadata change.  In memory,
    bounded; a restart forgets them, as the next change would anyway."""

    _LIMIT = 4096

    def __init__(self) -> None:
        self._by_file: dict[tuple[int, int], tuple[int, int]] = {}

    def remember(self, info: FileInfo, change_time: int) -> None:
        key = (info.device_id, info.file_id)
        self._by_file.pop(key, None)
        self._by_file[key] = (info.change_time, change_time)
        if len(self._by_file) > self._LIMIT:
            self._by_file.pop(next(iter(self._by_file)))

    def carry_over(self, before: FileInfo, after: FileInfo) -> None:
        """A change made through SET_INFO itself keeps a set ChangeTime, as
        Windows keeps a user-set time on the handle that set it ([MS-FSA]
        2.1.5.15.2 UserSetChangeTime)."""
        found = self._by_file.get((before.device_id, before.file_id))
        if found is not None and found[0] == before.change_time:
            self.remember(after, found[1])

    def apply(self, info: FileInfo) -> FileInfo:
        if not self._by_file:
            return info
        found = self._by_file.get((info.device_id, info.file_id))
        if found is None or found[0] != info.change_time:
            return info
        return dataclasses.replace(info, change_time=found[1])


class FileOps:
    """fd-level methods; ``ShareFs`` supplies ``_sys``, ``change_times``,
    ``volume`` and ``_owner``."""

    _sys: Syscalls
    change_times: ChangeTimes
    volume: VolumeId
    _owner: tuple[int, int]

    def _fd_info(self, open_file: OpenFile) -> FileInfo:
        """Uncached ``FileInfo`` of an open file (no remembered change time)."""
        return _meta.info_of_fd(open_file.fd, open_file.name, self.volume)

    def stat(self, open_file: OpenFile) -> FileInfo:
        """``FileInfo`` of an open file, from fstat and its DOS record (a stream:
        its file's, with the stream's size)."""
        with translated():
            info = self.change_times.apply(self._fd_info(open_file))
        if isinstance(open_file, StreamHandle):
            return streams.info(open_file, info)
        return info

    def posix_identity(self, open_file: OpenFile) -> tuple[int, int, int]:
        """(uid, gid, mode) for the security descriptor mapping."""
        with translated():
            st = os.fstat(open_file.fd)
        return st.st_uid, st.st_gid, st.st_mode

    def get_security(self, open_file: OpenFile) -> bytes | None:
        """The security descriptor stored on the file, if any (``ntacl.py``)."""
        return ntacl.read(open_file.fd)

    def set_security(self, open_file: OpenFile, descriptor: bytes) -> None:
        """Keep a self-relative descriptor beside the POSIX mode, so it reads back
        exactly (as Samba's acl_xattr does), in a namespace only root may write
        (``ntacl.py``).  Without xattrs the mode mapping alone stands."""
        ntacl.write(open_file.fd, descriptor)

    def set_posix_owner(self, open_file: OpenFile, uid: int | None, gid: int | None) -> None:
        """chown an open file (SET_INFO owner/group mapped to POSIX ids); None keeps one."""
        with translated():
            os.fchown(open_file.fd, -1 if uid is None else uid, -1 if gid is None else gid)

    def default_owner(self) -> tuple[int, int]:
        """(uid, gid) that files this server creates are owned by: its own
        (read when the share was opened; smbcad never changes its ids)."""
        return self._owner

    def set_posix_mode(self, open_file: OpenFile, mode: int) -> None:
        """Apply permission bits mapped from a DACL (SET_INFO security)."""
        with translated():
            os.fchmod(open_file.fd, mode & 0o7777)

    def read_into(self, open_file: OpenFile, offset: int, buffer: memoryview) -> int:
        """Read at ``offset`` into ``buffer``; returns the bytes read (short only at EOF)."""
        if isinstance(open_file, StreamHandle):
            return streams.read_into(open_file, offset, buffer)
        total = 0
        size = len(buffer)
        with translated():
            while total < size:
                count = os.preadv(open_file.fd, [buffer[total:]], offset + total)
                if count == 0:
                    break
                total += count
        return total

    def write(self, open_file: OpenFile, offset: int, data: bytes | memoryview) -> int:
        """Write all of ``data`` at ``offset`` (looping over short writes); returns its length."""
        if isinstance(open_file, StreamHandle):
            return streams.write(open_file, offset, data)
        view = memoryview(data)
        total = 0
        with translated():
            while total < len(view):
                count = os.pwrite(open_file.fd, view[total:], offset + total)
                if count == 0:
                    raise SmbError(NtStatus.DISK_FULL, "write made no progress")
                total += count
        return total

    def flush(self, open_file: OpenFile) -> None:
        """fsync; blocking, so the server calls it through ``asyncio.to_thread``."""
        with translated():
            os.fsync(open_file.fd)

    def sync_data(self, open_file: OpenFile) -> None:
        """fdatasync: what a write-through WRITE needs (the data and the size,
        not the timestamps); blocking, like ``flush``."""
        with translated():
            os.fdatasync(open_file.fd)

    def truncate(self, open_file: OpenFile, size: int) -> None:
        """Set end of file ([MS-FSA] 2.1.5.15.4); directories are STATUS_INVALID_PARAMETER."""
        self._require_file(open_file, size)
        if isinstance(open_file, StreamHandle):
            return streams.truncate(open_file, size)
        with translated():
            os.ftruncate(open_file.fd, size)

    def allocate(self, open_file: OpenFile, size: int) -> None:
        """Set the allocation size ([MS-FSA] 2.1.5.15.1).

        Below end of file it truncates, as Windows does.  Above, blocks are
        reserved with fallocate(FALLOC_FL_KEEP_SIZE) so EOF does not move; a
        file system without fallocate just skips the reservation (allocation
        is a hint) but ENOSPC is STATUS_DISK_FULL.
        """
        self._require_file(open_file, size)
        if isinstance(open_file, StreamHandle):
            return streams.allocate(open_file, size)
        with translated():
            if size < os.fstat(open_file.fd).st_size:
                os.ftruncate(open_file.fd, size)
                return
            if size == 0:
                return
            try:
                self._sys.fallocate(open_file.fd, FALLOC_FL_KEEP_SIZE, 0, size)
            except OSError as err:
                if err.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                    raise

    @staticmethod
    def _require_file(open_file: OpenFile, size: int) -> None:
        if open_file.is_directory or size < 0:
            raise SmbError(NtStatus.INVALID_PARAMETER, "directory or negative size")

    def set_times(self, open_file: OpenFile, creation: int, access: int, write: int,
                  change: int) -> None:
        """Apply FileBasicInformation times ([MS-FSA] 2.1.5.15.2).

        Access and write times go to the inode (utimensat); creation time to
        the DOS record.  Linux owns ctime, so a set change time is reported
        only until the inode changes again (``ChangeTimes``).
        """
        creation_t, access_t, write_t = _time_arg(creation), _time_arg(access), _time_arg(write)
        change_t = _time_arg(change)
        with translated():
            if access_t is not None or write_t is not None:
                st = os.fstat(open_file.fd)
                os.utime(open_file.fd, ns=(
                    st.st_atime_ns if access_t is None else filetime_to_unix_ns(access_t),
                    st.st_mtime_ns if write_t is None else filetime_to_unix_ns(write_t)))
            if creation_t is not None:
                record = self._record(open_file.fd)
                attrs.write(open_file.fd, attrs.DosRecord(record.attributes, creation_t))
            if change_t is not None:
                # Last: the override holds only while the inode's ctime stays put.
                self.change_times.remember(self._fd_info(open_file), change_t)

    def set_attributes(self, open_file: OpenFile, attributes: int) -> None:
        """Apply FileBasicInformation.FileAttributes ([MS-FSA] 2.1.5.15.2).

        0 leaves them unchanged; NORMAL alone clears them.  DIRECTORY on a file
        or TEMPORARY on a directory is STATUS_INVALID_PARAMETER.  SPARSE_FILE
        is kept as it was (``set_sparse`` owns it).  Clearing READONLY also
        restores the owner write bit, which otherwise would keep reporting it.
        Without xattr support only that mode change takes effect.
        """
        if attributes == 0:
            return
        if (not open_file.is_directory and attributes & FA.DIRECTORY) or \
                (open_file.is_directory and attributes & FA.TEMPORARY):
            raise SmbError(NtStatus.INVALID_PARAMETER, "attribute invalid for this file type")
        with translated():
            before = self._fd_info(open_file)
            record = self._record(open_file.fd)
            stored = (attributes & SETTABLE_ATTRIBUTES & attrs.STORABLE) | (record.attributes & FA.SPARSE_FILE)
            attrs.write(open_file.fd, attrs.DosRecord(stored, record.creation_time))
            mode = os.fstat(open_file.fd).st_mode
            if not attributes & FA.READONLY and not stat.S_ISDIR(mode) and not mode & stat.S_IWUSR:
                os.fchmod(open_file.fd, stat.S_IMODE(mode) | stat.S_IWUSR)
            self.change_times.carry_over(before, self._fd_info(open_file))

    def set_sparse(self, open_file: OpenFile, sparse: bool) -> None:
        """Record FILE_ATTRIBUTE_SPARSE_FILE ([MS-FSCC] 2.3.71 FSCTL_SET_SPARSE).

        Linux files are sparse whenever holes exist; this only sets the flag.
        """
        if open_file.is_directory:
            raise SmbError(NtStatus.INVALID_PARAMETER, "directories cannot be sparse")
        with translated():
            record = self._record(open_file.fd)
            stored = record.attributes | FA.SPARSE_FILE if sparse else record.attributes & ~FA.SPARSE_FILE
            attrs.write(open_file.fd, attrs.DosRecord(stored, record.creation_time))

    @staticmethod
    def _record(fd: int) -> attrs.DosRecord:
        """The current record, or the derived one (freezing today's creation time)."""
        record = attrs.read(fd)
        if record is not None and record.creation_time:
            return record
        st = os.fstat(fd)
        stored = record.attributes if record else (0 if stat.S_ISDIR(st.st_mode) else FA.ARCHIVE)
        return attrs.DosRecord(stored, _meta.derived_creation_time(st))

    # --- server-side copy, holes and clones (issue 3 FSCTLs) ---------------------------
    # <linux/falloc.h> and <linux/fs.h>, kept here so this block only appends.
    _FALLOC_FL_PUNCH_HOLE = 0x02
    _FALLOC_FL_ZERO_RANGE = 0x10
    _FICLONERANGE = 0x4020940D              # _IOW(0x94, 13, struct file_clone_range)
    _FALLOC_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOSYS)
    _COPY_FALLBACK = (errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS)
    _COPY_PIECE = 1 << 20

    def duplicate(self, open_file: OpenFile) -> OpenFile:
        """A second descriptor on the same open file, for work that runs on in a
        worker thread (a server-side copy): if the client closes its handle
        meanwhile, that work keeps a descriptor of its own instead of one whose
        number may already belong to another file.  The caller closes it."""
        if open_file.closed:
            raise SmbError(NtStatus.FILE_CLOSED, "handle closed")
        if isinstance(open_file, StreamHandle):
            return self.duplicate_stream(open_file)
        with translated():
            return OpenFile(os.dup(open_file.fd), open_file.path, open_file.is_directory)

    def copy_range(self, source: OpenFile, source_offset: int, target: OpenFile,
                   target_offset: int, length: int) -> int:
        """Copy ``length`` bytes from ``source`` to ``target`` in the kernel
        (copy_file_range(2), which shares extents where the file system can),
        looping over short copies.  Where the kernel refuses (EXDEV: another file
        system; EINVAL: overlapping ranges of one file; EOPNOTSUPP/ENOSYS) the
        rest goes through pread/pwrite in 1 MiB pieces, each read whole before it
        is written, so an overlapping copy of up to 1 MiB behaves as if the
        source had been read first (smbtorture copy_chunk_src_is_dest_overlap).
        Returns the bytes copied, short only when the source ends first.
        Blocking: the server calls it through ``asyncio.to_thread``.  A named
        stream on either side (its bytes are in an xattr) copies through a buffer."""
        if isinstance(source, StreamHandle) or isinstance(target, StreamHandle):
            return self._copy_through_buffer(source, source_offset, target, target_offset, length)
        done = 0
        with translated():
            while done < length:
                try:
                    count = os.copy_file_range(source.fd, target.fd, length - done,
                                               source_offset + done, target_offset + done)
                except OSError as err:
                    if err.errno not in self._COPY_FALLBACK:
                        raise
                    return done + self._copy_through_buffer(
                        source, source_offset + done, target, target_offset + done, length - done)
                if count == 0:
                    break
                done += count
        return done

    def _copy_through_buffer(self, source: OpenFile, source_offset: int, target: OpenFile,
                             target_offset: int, length: int) -> int:
        done = 0
        while done < length:
            piece = bytearray(min(self._COPY_PIECE, length - done))
            piece = piece[:self.read_into(source, source_offset + done, memoryview(piece))]
            if not piece:
                break
            self.write(target, target_offset + done, piece)
            done += len(piece)
        return done

    def punch_hole(self, open_file: OpenFile, offset: int, length: int,
                   keep_allocated: bool = False) -> None:
        """Zero ``length`` bytes at ``offset`` without changing the file size
        ([MS-FSA] 2.1.5.10.39 FSCTL_SET_ZERO_DATA, 2.1.5.10.6 FSCTL_FILE_LEVEL_TRIM).

        The blocks are freed (fallocate PUNCH_HOLE|KEEP_SIZE), leaving a hole that
        SEEK_DATA skips.  ``keep_allocated`` (a file not marked sparse) keeps them
        reserved: ZERO_RANGE|KEEP_SIZE, else a punch followed by a KEEP_SIZE
        reservation.  A file system with neither gets zeros written, up to EOF.
        """
        if length <= 0:
            return
        self._require_file(open_file, offset)
        if isinstance(open_file, StreamHandle):
            return streams.zero_range(open_file, offset, length)
        fd = open_file.fd
        with translated():
            if keep_allocated:
                try:
                    self._sys.fallocate(fd, self._FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                        offset, length)
                    return
                except OSError as err:
                    if err.errno not in self._FALLOC_UNSUPPORTED:
                        raise
            try:
                self._sys.fallocate(fd, self._FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                    offset, length)
            except OSError as err:
                if err.errno not in self._FALLOC_UNSUPPORTED:
                    raise
                end = min(offset + length, os.fstat(fd).st_size)
                zeros = bytes(min(self._COPY_PIECE, max(end - offset, 0)))
                for start in range(offset, end, len(zeros) or 1):
                    self.write(open_file, start, memoryview(zeros)[:end - start])
                return
            if keep_allocated:
                try:
                    self._sys.fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length)
                except OSError as err:
                    if err.errno not in self._FALLOC_UNSUPPORTED:
                        raise

    def allocated_ranges(self, open_file: OpenFile, offset: int,
                         length: int) -> list[tuple[int, int]]:
        """(offset, length) of the data extents inside ``[offset, offset + length)``,
        clipped to it, found with lseek SEEK_DATA/SEEK_HOLE ([MS-FSA] 2.1.5.10.22
        FSCTL_QUERY_ALLOCATED_RANGES).  Adjacent extents come merged, as the
        kernel reports them.  Without SEEK_DATA support the whole range counts
        as data.  The caller clips ``length`` to the end of file."""
        self._require_file(open_file, max(offset, 0))
        if isinstance(open_file, StreamHandle):
            return [(offset, length)] if length > 0 else []     # xattrs have no holes
        end = offset + length
        found = []
        with translated():
            position = offset
            while position < end:
                try:
                    data = os.lseek(open_file.fd, position, os.SEEK_DATA)
                except OSError as err:
                    if err.errno == errno.ENXIO:        # only a hole up to EOF remains
                        break
                    if err.errno in (errno.EINVAL, errno.EOPNOTSUPP) and not found:
                        return [(offset, length)] if length > 0 else []
                    raise
                if data >= end:
                    break
                hole = os.lseek(open_file.fd, data, os.SEEK_HOLE)
                found.append((data, min(hole, end) - data))
                position = hole
        return found

    def clone_range(self, source: OpenFile, source_offset: int, target: OpenFile,
                    target_offset: int, length: int) -> None:
        """Make the target's range share the source's blocks (FICLONERANGE, the
        reflink behind [MS-FSA] 2.1.5.10.4 FSCTL_DUPLICATE_EXTENTS_TO_FILE) on XFS,
        Btrfs and other file systems with shared extents.  Where the file system
        has none (ext4, tmpfs) it is STATUS_INVALID_DEVICE_REQUEST, what NTFS
        answers ([MS-FSA] <89>); across file systems STATUS_INVALID_PARAMETER."""
        # The share port's one ioctl; imported here to keep this block append-only.
        import fcntl
        if isinstance(source, StreamHandle) or isinstance(target, StreamHandle):
            raise SmbError(NtStatus.INVALID_DEVICE_REQUEST, "named streams have no extents")
        request = struct_file_clone_range(source.fd, source_offset, length, target_offset)
        try:
            fcntl.ioctl(target.fd, self._FICLONERANGE, request)
        except OSError as err:
            if err.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.ENOSYS):
                raise SmbError(NtStatus.INVALID_DEVICE_REQUEST,
                               "no reflink on this file system") from err
            if err.errno == errno.EXDEV:
                raise SmbError(NtStatus.INVALID_PARAMETER, "source on another file system") from err
            with translated():
                raise


def struct_file_clone_range(source_fd: int, source_offset: int, length: int,
                            target_offset: int) -> bytes:
    """struct file_clone_range (<linux/fs.h>): s64 src_fd, u64 src_offset,
    u64 src_length, u64 dest_offset."""
    return (source_fd.to_bytes(8, "little", signed=True) + source_offset.to_bytes(8, "little")
            + length.to_bytes(8, "little") + target_offset.to_bytes(8, "little"))
