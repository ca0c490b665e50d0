"""Alternate data streams kept in extended attributes ([MS-FSCC] 2.1.5.3, 2.4.49;
[MS-FSA] 2.1.1.5 Stream).

Linux files have one data stream.  Like Samba's ``vfs_streams_xattr``, each
named stream of a file or directory lives in one user xattr of it,

    user.smbca.stream.<name>  =  the stream's bytes

``<name>`` is spelled as the client created it; lookups are case-insensitive
(exact spelling first, then the same upper-casing as file names).

Limits, which Windows clients meet only with unusual streams (the common ones,
``Zone.Identifier``, ``AFP_AfpInfo``, ``encryptable`` ... are a few hundred
bytes at most):

- A stream holds at most 64 KiB (XATTR_SIZE_MAX), and the file system may
  allow less: ext4 without ``ea_inode`` keeps all xattrs of a file in one
  block (typically 4 KiB), XFS and Btrfs take 64 KiB per value.  A write or
  end-of-file that would grow a stream past what fits fails with
  STATUS_DISK_FULL and leaves the stream as it was.
- A stream name is at most 237 UTF-8 bytes (255 minus the prefix), else
  STATUS_OBJECT_NAME_INVALID.
- Every write rewrites the whole value: fine for small streams, not for
  databases.
- A share whose file system has no user xattrs has no named streams: opening
  one fails with STATUS_OBJECT_NAME_INVALID, what Windows answers on FAT.

An open stream is a ``StreamHandle``: an ``OpenFile`` whose ``fd`` is a
read-only descriptor of the base file (xattrs are read and written through it,
and file metadata, times and attributes stay the base file's) plus the stream
name.  ``ShareFs`` dispatches data calls on it here.  ``OpenStreams`` records
which streams of which files are open, so that a base file deleted while its
streams are open stays until the last of them closes ([MS-FSA] 2.1.5.4).
"""

import dataclasses
import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from smbcad.proto.errors import SmbError
from smbcad.proto.fileinfo import FileInfo
from smbcad.proto.fscc.file_info import StreamInfo
from smbcad.proto.status import NtStatus
from smbcad.vfs._resolve import MISSING_ERRNOS, fold
from smbcad.vfs.errors import smb_error
from smbcad.vfs.model import OpenFile, Resolved
from smbcad.vfs.volume_id import VolumeId

log = logging.getLogger("smbcad.vfs")

PREFIX = "user.smbca.stream."
MAX_NAME_BYTES = 255 - len(PREFIX)      # XATTR_NAME_MAX
MAX_STREAM_BYTES = 65536                # XATTR_SIZE_MAX
_CLUSTER = 4096                         # AllocationSize granularity reported for streams
# The value does not fit: too big for the kernel, or for the room the file system has.
_TOO_BIG = frozenset({errno.E2BIG, errno.ENOSPC, errno.EDQUOT})
_NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})


@dataclass(slots=True, eq=False)
class StreamHandle(OpenFile):
    """An open named stream ([MS-FSA] 2.1.1.5): ``fd`` is the base file's, ``path``
    its path, ``stream`` the name as stored, ``file_key`` its (volume id, inode)."""

    stream: str = ""
    file_key: tuple = ()
    exists: bool = False
    base_is_directory: bool = False
    registry: "OpenStreams | None" = None

    def close(self) -> None:
        """Close the descriptor, then tell the registry (it may finish a deferred delete)."""
        if self.fd >= 0:
            OpenFile.close(self)
            if self.registry is not None:
                self.registry.closed(self)


class OpenStreams:
    """Per share: the open stream handles of each file, and the base files whose
    removal waits for them ([MS-FSA] 2.1.5.4: the file goes with its last open)."""

    def __init__(self) -> None:
        self._by_file: dict[tuple, list[StreamHandle]] = {}
        self._unlink_later: dict[tuple, Callable[[], None]] = {}

    def __bool__(self) -> bool:
        return bool(self._by_file)

    def add(self, handle: StreamHandle) -> None:
        self._by_file.setdefault(handle.file_key, []).append(handle)

    def closed(self, handle: StreamHandle) -> None:
        handles = self._by_file.get(handle.file_key)
        if handles is None or handle not in handles:
            return
        handles.remove(handle)
        if handles:
            return
        del self._by_file[handle.file_key]
        action = self._unlink_later.pop(handle.file_key, None)
        if action is not None:
            action()

    def names(self, file_key: tuple) -> list[str]:
        """Stored names of the streams of ``file_key`` with open handles."""
        return sorted({h.stream for h in self._by_file.get(file_key, ())})

    def is_open(self, file_key: tuple) -> bool:
        return file_key in self._by_file

    def defer_unlink(self, file_key: tuple, action: Callable[[], None]) -> None:
        self._unlink_later[file_key] = action

    def unlink_pending(self, file_key: tuple) -> bool:
        """The base file is deleted and waits for its streams to close: DELETE_PENDING."""
        return bool(self._unlink_later) and file_key in self._unlink_later


# --- the xattrs -----------------------------------------------------------------------

def xattr_name(stream: str) -> str:
    """The xattr holding ``stream``; STATUS_OBJECT_NAME_INVALID if the name cannot fit."""
    try:
        size = len(stream.encode("utf-8"))
    except UnicodeEncodeError as err:
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "stream name not storable") from err
    if size > MAX_NAME_BYTES:
        raise SmbError(NtStatus.OBJECT_NAME_INVALID, "stream name too long to store")
    return PREFIX + stream


def stored_names(fd: int) -> list[str]:
    """Names of the streams stored on an open file, in xattr order."""
    try:
        names = os.listxattr(fd)
    except OSError as err:
        if err.errno in _NO_XATTRS:
            return []
        raise smb_error(err) from err
    found = []
    for name in names:
        if name.startswith(PREFIX) and len(name) > len(PREFIX):
            stream = name[len(PREFIX):]
            try:
                stream.encode("utf-8")      # skip names that are not UTF-8 (surrogateescape)
            except UnicodeEncodeError:
                continue
            found.append(stream)
    return found


def find(fd: int, stream: str) -> str | None:
    """The stored spelling of ``stream`` on the file, matched case-insensitively."""
    names = stored_names(fd)
    if stream in names:
        return stream
    key = fold(stream)
    matches = sorted(name for name in names if fold(name) == key)
    return matches[0] if matches else None


def read_value(fd: int, stream: str) -> bytes:
    """A stream's bytes; a stream gone meanwhile reads as empty."""
    try:
        return os.getxattr(fd, xattr_name(stream))
    except OSError as err:
        if err.errno == errno.ENODATA:
            return b""
        raise smb_error(err) from err


def store_value(fd: int, stream: str, data: bytes, flags: int = 0) -> None:
    """Write a stream's bytes; STATUS_DISK_FULL when the file system has no room."""
    if len(data) > MAX_STREAM_BYTES:
        raise SmbError(NtStatus.DISK_FULL, "stream larger than an xattr can hold")
    try:
        os.setxattr(fd, xattr_name(stream), data, flags)
    except OSError as err:
        if err.errno in _TOO_BIG:
            raise SmbError(NtStatus.DISK_FULL, "stream does not fit in the file's xattrs") from err
        if err.errno in _NO_XATTRS:
            raise SmbError(NtStatus.OBJECT_NAME_INVALID, "no streams on this file system") from err
        if err.errno != errno.EEXIST:
            raise smb_error(err) from err


def remove_value(fd: int, stream: str) -> bool:
    """Remove a stream; False if it was not there."""
    try:
        os.removexattr(fd, xattr_name(stream))
    except OSError as err:
        if err.errno == errno.ENODATA:
            return False
        raise smb_error(err) from err
    return True


def allocation(size: int) -> int:
    return (size + _CLUSTER - 1) // _CLUSTER * _CLUSTER


# --- data operations on a StreamHandle (ShareFs dispatches to these) -------------------

def read_into(handle: StreamHandle, offset: int, buffer: memoryview) -> int:
    data = read_value(handle.fd, handle.stream)
    if offset >= len(data):
        return 0
    piece = data[offset:offset + len(buffer)]
    buffer[:len(piece)] = piece
    return len(piece)


def write(handle: StreamHandle, offset: int, data: bytes | memoryview) -> int:
    """Write at ``offset`` (zero-filling a gap): the whole value is rewritten."""
    length = len(data)
    if not length:
        return 0
    if offset + length > MAX_STREAM_BYTES:
        raise SmbError(NtStatus.DISK_FULL, "stream larger than an xattr can hold")
    current = read_value(handle.fd, handle.stream)
    if offset > len(current):
        current += bytes(offset - len(current))
    updated = current[:offset] + bytes(data) + current[offset + length:]
    store_value(handle.fd, handle.stream, updated)
    return length


def truncate(handle: StreamHandle, size: int) -> None:
    """Set the stream's end of file ([MS-FSA] 2.1.5.15.4)."""
    if size < 0:
        raise SmbError(NtStatus.INVALID_PARAMETER, "negative size")
    current = read_value(handle.fd, handle.stream)
    if size == len(current):
        return
    resized = current[:size] if size < len(current) else current + bytes(size - len(current))
    store_value(handle.fd, handle.stream, resized)


def allocate(handle: StreamHandle, size: int) -> None:
    """Allocation size ([MS-FSA] 2.1.5.15.1): below end of file it truncates; above, a hint."""
    if size < 0:
        raise SmbError(NtStatus.INVALID_PARAMETER, "negative size")
    if size < len(read_value(handle.fd, handle.stream)):
        truncate(handle, size)


def zero_range(handle: StreamHandle, offset: int, length: int) -> None:
    """FSCTL_SET_ZERO_DATA on a stream: zeros up to its end, size unchanged."""
    current = read_value(handle.fd, handle.stream)
    end = min(offset + length, len(current))
    if end > offset >= 0:
        zeroed = current[:offset] + bytes(end - offset) + current[end:]
        store_value(handle.fd, handle.stream, zeroed)


def info(handle: StreamHandle, base: FileInfo) -> FileInfo:
    """The stream's ``FileInfo``: the file's times, attributes and ids, the stream's size."""
    size = len(read_value(handle.fd, handle.stream))
    return dataclasses.replace(base, end_of_file=size, allocation_size=allocation(size),
                               is_directory=False)


class StreamOps:
    """The stream half of ``ShareFs`` (mixed in, as ``FileOps`` is).

    ``ShareFs`` supplies ``_resolver``, ``open_streams``, ``volume`` and ``user_xattrs()``.
    """

    open_streams: OpenStreams
    volume: VolumeId

    def open_stream(self, base: Resolved, stream: str) -> StreamHandle:
        """Open stream ``stream`` of the existing file or directory ``base``.

        Nothing is created: ``handle.exists`` says whether the stream is there
        and ``create_stream`` makes it.  STATUS_OBJECT_NAME_INVALID when the
        share has no streams or the name cannot be stored.
        """
        xattr_name(stream)
        if not self.user_xattrs():
            raise SmbError(NtStatus.OBJECT_NAME_INVALID, "no streams on this file system")
        is_dir = base.info.is_directory
        flags = os.O_RDONLY | (os.O_DIRECTORY if is_dir else os.O_NONBLOCK | os.O_NOCTTY)
        try:
            fd = self._resolver.open_at(base.path, flags)
        except OSError as err:
            if err.errno in MISSING_ERRNOS:
                raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "file vanished") from err
            raise smb_error(err) from err
        try:
            st = os.fstat(fd)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                raise SmbError(NtStatus.ACCESS_DENIED, "not a regular file")
            stored = find(fd, stream)
        except OSError as err:
            os.close(fd)
            raise smb_error(err) from err
        except SmbError:
            os.close(fd)
            raise
        handle = StreamHandle(fd, base.path, False, stream=stored or stream,
                              file_key=self.volume.key_of(st), exists=stored is not None,
                              base_is_directory=stat.S_ISDIR(st.st_mode),
                              registry=self.open_streams)
        self.open_streams.add(handle)
        return handle

    def create_stream(self, handle: StreamHandle) -> None:
        """Make the missing stream of ``handle``, empty ([MS-FSA] 2.1.5.1.2, stream not found)."""
        if not handle.exists:
            store_value(handle.fd, handle.stream, b"", os.XATTR_CREATE)
            handle.exists = handle.created = True

    def delete_stream(self, handle: StreamHandle) -> None:
        """Remove the stream (last close of a delete-pending stream)."""
        if not remove_value(handle.fd, handle.stream):
            raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "stream already gone")

    def stream_list(self, open_file: OpenFile) -> tuple[StreamInfo, ...]:
        """FileStreamInformation entries ([MS-FSCC] 2.4.49): ``::$DATA`` for a file,
        then the named streams; a directory has only its named streams."""
        fd = open_file.fd
        try:
            st = os.fstat(fd)
        except OSError as err:
            raise smb_error(err) from err
        out = []
        if not stat.S_ISDIR(st.st_mode):
            out.append(StreamInfo("", st.st_size, st.st_blocks * 512))
        for name in stored_names(fd) if self.user_xattrs() else ():
            size = len(read_value(fd, name))
            out.append(StreamInfo(name, size, allocation(size)))
        return tuple(out)

    def remove_streams(self, open_file: OpenFile) -> None:
        """Drop the named streams whose handles are closed (overwrite of the file)."""
        st = os.fstat(open_file.fd)
        busy = set(self.open_streams.names(self.volume.key_of(st)))
        for name in stored_names(open_file.fd):
            if name not in busy:
                remove_value(open_file.fd, name)

    def rename_stream(self, handle: StreamHandle, new_name: str, replace: bool) -> None:
        """Rename a named stream to another named stream ([MS-FSA] 2.1.5.15.12.1).

        A case-insensitive match with the current name succeeds and changes
        nothing; an existing target needs ``replace`` (else
        STATUS_OBJECT_NAME_COLLISION) and must be empty (else
        STATUS_INVALID_PARAMETER).  The caller checks the target has no opens.
        """
        if fold(new_name) == fold(handle.stream):
            return
        xattr_name(new_name)
        target = find(handle.fd, new_name)
        if target is not None:
            if not replace:
                raise SmbError(NtStatus.OBJECT_NAME_COLLISION, "target stream exists")
            if read_value(handle.fd, target):
                raise SmbError(NtStatus.INVALID_PARAMETER, "target stream not empty")
            remove_value(handle.fd, target)
        store_value(handle.fd, new_name, read_value(handle.fd, handle.stream))
        remove_value(handle.fd, handle.stream)
        handle.stream = new_name

    def stream_to_default(self, handle: StreamHandle, replace: bool) -> OpenFile:
        """Rename a named stream onto the file's default stream (``::$DATA``,
        [MS-FSA] 2.1.5.15.12.1): allowed with ``replace`` into an empty file.
        Returns a new read-write ``OpenFile`` on the base file; the stream is gone
        and ``handle`` stays open (the caller closes it)."""
        if handle.base_is_directory:
            raise SmbError(NtStatus.INVALID_PARAMETER, "a directory has no default stream")
        if not replace:
            raise SmbError(NtStatus.OBJECT_NAME_COLLISION, "the default stream exists")
        if os.fstat(handle.fd).st_size:
            raise SmbError(NtStatus.INVALID_PARAMETER, "default stream not empty")
        data = read_value(handle.fd, handle.stream)
        try:
            fd = self._resolver.open_at(handle.path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as err:
            raise smb_error(err) from err
        base = OpenFile(fd, handle.path, False)
        try:
            st = os.fstat(fd)
            if self.volume.key_of(st) != handle.file_key:
                raise SmbError(NtStatus.OBJECT_NAME_NOT_FOUND, "file replaced meanwhile")
            os.set_blocking(fd, True)
            if data:
                os.pwrite(fd, data, 0)
            remove_value(handle.fd, handle.stream)
        except OSError as err:
            base.close()
            raise smb_error(err) from err
        except SmbError:
            base.close()
            raise
        return base

    def duplicate_stream(self, handle: StreamHandle) -> StreamHandle:
        """A second handle on the same stream (for work that outlives the client's)."""
        try:
            fd = os.dup(handle.fd)
        except OSError as err:
            raise smb_error(err) from err
        copy = StreamHandle(fd, handle.path, False, stream=handle.stream,
                            file_key=handle.file_key, exists=handle.exists,
                            base_is_directory=handle.base_is_directory, registry=self.open_streams)
        self.open_streams.add(copy)
        return copy

    def defer_delete(self, open_file: OpenFile, delete_now: Callable[[str, tuple], None]) -> bool:
        """A base file deleted while its streams are open waits for them: True if deferred."""
        if not self.open_streams:
            return False
        st = os.fstat(open_file.fd)
        key = self.volume.key_of(st)
        if not self.open_streams.is_open(key):
            return False
        path = open_file.path

        def later() -> None:
            try:
                delete_now(path, key)
            except SmbError as exc:
                log.info("deferred delete of %s failed: %s", path, exc)

        self.open_streams.defer_unlink(key, later)
        return True
