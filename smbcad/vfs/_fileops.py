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
from smbcad.vfs import _meta, attrs
from smbcad.vfs._openat2 import FALLOC_FL_KEEP_SIZE, Syscalls
from smbcad.vfs.errors import translated
from smbcad.vfs.model import OpenFile

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
    """fd-level methods; ``ShareFs`` supplies ``_sys`` and ``change_times``."""

    _sys: Syscalls
    change_times: ChangeTimes

    def stat(self, open_file: OpenFile) -> FileInfo:
        """``FileInfo`` of an open file, from fstat and its DOS record."""
        with translated():
            return self.change_times.apply(_meta.info_of_fd(open_file.fd, open_file.name))

    def posix_identity(self, open_file: OpenFile) -> tuple[int, int, int]:
        """(uid, gid, mode) for the security descriptor mapping."""
        with translated():
            st = os.fstat(open_file.fd)
        return st.st_uid, st.st_gid, st.st_mode

    def set_posix_mode(self, open_file: OpenFile, mode: int) -> None:
        """Apply permission bits mapped from a DACL (SET_INFO security)."""
        with translated():
            os.fchmod(open_file.fd, mode & 0o7777)

    def read_into(self, open_file: OpenFile, offset: int, buffer: memoryview) -> int:
        """Read at ``offset`` into ``buffer``; returns the bytes read (short only at EOF)."""
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

    def truncate(self, open_file: OpenFile, size: int) -> None:
        """Set end of file ([MS-FSA] 2.1.5.15.4); directories are STATUS_INVALID_PARAMETER."""
        self._require_file(open_file, size)
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
                self.change_times.remember(_meta.info_of_fd(open_file.fd, open_file.name), change_t)

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
            before = _meta.info_of_fd(open_file.fd, open_file.name)
            record = self._record(open_file.fd)
            stored = (attributes & SETTABLE_ATTRIBUTES & attrs.STORABLE) | (record.attributes & FA.SPARSE_FILE)
            attrs.write(open_file.fd, attrs.DosRecord(stored, record.creation_time))
            mode = os.fstat(open_file.fd).st_mode
            if not attributes & FA.READONLY and not stat.S_ISDIR(mode) and not mode & stat.S_IWUSR:
                os.fchmod(open_file.fd, stat.S_IMODE(mode) | stat.S_IWUSR)
            self.change_times.carry_over(before, _meta.info_of_fd(open_file.fd, open_file.name))

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
