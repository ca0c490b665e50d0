"""``LogEngine``: the handle store as an append-only log with one fdatasync
per group commit.

Files in the store's directory::

    lock                        flock'd while a process owns the store
    handles-<gen:016x>.log      the log; the highest complete generation wins
    handles-<gen:016x>.log.tmp  a compaction in progress (deleted at recovery)

A log file is a header, then frames, then zeros::

    header   magic "SMBCAHL1" | format u32 | generation u64 | crc32 u32   (24 bytes)
    frame    length u32 | crc32 u32 | sequence u64 | op count u32 | ops
    op       1 (put) u8 | DurableFileId u64 | length u32 | encoded record
             2 (remove) u8 | DurableFileId u64

``length`` counts the bytes after the crc; the crc covers the length and
those bytes.  One group commit is one frame, written with one pwrite and made
durable with one fdatasync, so a batch is atomic: a torn frame is discarded
whole.  Sequence numbers start at 1 in each file and go up by one per frame.

The file is kept preallocated (``preallocate_bytes`` of zeros written ahead
and synced), so that a commit overwrites blocks that already exist and the
fdatasync has no file size or extent change to journal: on ext4 here that is
the difference between ~120 µs and ~190 µs per sync (shared/reference/
benchmarking.md).  Zeros read as a frame of length 0: the end of the log.

Recovery reads the newest generation and replays frames until the first one
that is zero, overruns the file, fails its crc or breaks the sequence: that
is the torn tail of the last, unacknowledged batch (every acknowledged batch
was fdatasync'd before its callers were answered, so it precedes the tear).
Frames after a tear are never trusted.  Recovery then always compacts into a
new generation, so appending never resumes next to torn bytes.

Compaction writes the live records to a new ``.tmp`` file, syncs it, renames
it to the next generation, syncs the directory, then removes the old file and
syncs the directory again.  A crash at any step leaves either the old
generation (complete) or the new one (synced before its rename) as the
newest complete file.  It runs on the writer thread between batches, when the
log is ``compact_ratio`` times larger than the live records and at least
``compact_min_bytes``; commits queue meanwhile (it copies the live records
only, a few ms per thousand opens).
"""

import errno
import fcntl
import logging
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping

from smbcad.store.errors import StoreFailed

log = logging.getLogger("smbcad.store")

MAGIC = b"SMBCAHL1"
FORMAT_VERSION = 1
COMPACTION_STEPS = ("tmp-created", "tmp-partial", "tmp-written", "tmp-synced", "renamed",
                    "dir-synced", "old-removed")

_HEADER = struct.Struct("<8sIQ")
_HEADER_CRC = struct.Struct("<I")
_HEADER_SIZE = _HEADER.size + _HEADER_CRC.size
_FRAME_HEAD = struct.Struct("<II")       # length, crc
_FRAME_BODY = struct.Struct("<QI")       # sequence, op count
_PUT = struct.Struct("<BQI")
_REMOVE = struct.Struct("<BQ")
_OP_PUT, _OP_REMOVE = 1, 2
_U32 = struct.Struct("<I")
_MAX_FRAME = 1 << 30
_SNAPSHOT_FRAME_BYTES = 1 << 20
_ZEROS = bytes(1 << 20)
_NAME = re.compile(r"handles-([0-9a-f]{16})\.log(\.tmp)?\Z")


def _file_name(generation: int) -> str:
    return f"handles-{generation:016x}.log"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _frame(sequence: int, ops: list[bytes], count: int) -> bytes:
    body = b"".join([_FRAME_BODY.pack(sequence, count), *ops])
    length = _U32.pack(len(body))
    return b"".join((length, _U32.pack(zlib.crc32(body, zlib.crc32(length))), body))


def _put(key: int, blob: bytes) -> bytes:
    return _PUT.pack(_OP_PUT, key, len(blob)) + blob


class LogEngine:
    """Engine (``smbcad.store.interface``) on an append-only log in ``directory``."""

    name = "log"

    def __init__(self, directory: str, *, preallocate_bytes: int = 4 << 20,
                 compact_min_bytes: int = 16 << 20, compact_ratio: float = 4.0,
                 on_compaction_step: Callable[[str], None] | None = None) -> None:
        """``on_compaction_step`` is called with each name of COMPACTION_STEPS
        as compaction passes it (crash tests stop the process there)."""
        self.directory = directory
        self.preallocate_bytes = preallocate_bytes
        self.compact_min_bytes = compact_min_bytes
        self.compact_ratio = compact_ratio
        self._on_step = on_compaction_step
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._generation = 0
        self._offset = 0                 # end of the last frame
        self._allocated = 0              # file size (zeros past _offset)
        self._sequence = 1               # of the next frame
        self._image: dict[int, bytes] = {}
        self._live_bytes = 0             # bytes a snapshot of _image takes
        self.compactions = 0
        self.discarded_bytes = 0         # torn tail found by the last recovery

    # --- Engine -------------------------------------------------------------------

    def load(self) -> Iterable[bytes]:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._lock()
            generation = self._recover()
            self._generation = generation
            self._compact()
        except OSError as exc:
            raise StoreFailed(f"log store {self.directory}: {exc}") from exc
        return list(self._image.values())

    def write(self, changes: Mapping[int, bytes | None]) -> None:
        ops = []
        for key, blob in changes.items():
            old = self._image.pop(key, None)
            if old is not None:
                self._live_bytes -= _PUT.size + len(old)
            if blob is None:
                if old is not None:
                    ops.append(_REMOVE.pack(_OP_REMOVE, key))
            else:
                ops.append(_put(key, blob))
                self._image[key] = blob
                self._live_bytes += _PUT.size + len(blob)
        if not ops:
            return
        frame = _frame(self._sequence, ops, len(ops))
        try:
            self._append(frame)
            self._sequence += 1
            if (self._offset >= self.compact_min_bytes
                    and self._offset >= self.compact_ratio * (self._live_bytes + _HEADER_SIZE)):
                self._compact()
        except OSError as exc:
            raise StoreFailed(f"log store {self.directory}: {exc}") from exc

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = None

    def compact(self) -> None:
        """Rewrite the live records into a new generation now."""
        try:
            self._compact()
        except OSError as exc:
            raise StoreFailed(f"log store {self.directory}: {exc}") from exc

    # --- appending ------------------------------------------------------------------

    def _append(self, frame: bytes) -> None:
        end = self._offset + len(frame)
        if self.preallocate_bytes and end > self._allocated:
            self._allocated = _zero_fill(self._fd, self._allocated,
                                         end + self.preallocate_bytes)
        _pwrite_all(self._fd, frame, self._offset)
        os.fdatasync(self._fd)
        self._offset = end
        self._allocated = max(self._allocated, end)

    # --- recovery -------------------------------------------------------------------

    def _lock(self) -> None:
        self._lock_fd = os.open(os.path.join(self.directory, "lock"),
                                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreFailed(f"log store {self.directory} is in use by another "
                                  "process") from None
            raise

    def _recover(self) -> int:
        """Load the newest complete generation into the image; return its number."""
        generations = []
        for entry in os.listdir(self.directory):
            match = _NAME.match(entry)
            if match is None:
                continue
            if match.group(2):
                # An interrupted compaction: the previous generation is complete.
                os.unlink(os.path.join(self.directory, entry))
                continue
            generations.append(int(match.group(1), 16))
        if not generations:
            return 0
        generation = max(generations)
        path = os.path.join(self.directory, _file_name(generation))
        with open(path, "rb") as file:
            data = file.read()
        self._replay(path, data, generation)
        return generation

    def _replay(self, path: str, data: bytes, generation: int) -> None:
        if len(data) < _HEADER_SIZE:
            raise StoreFailed(f"{path}: truncated header (the file was synced before "
                              "it got its name, so this is media corruption)")
        magic, version, stored_generation = _HEADER.unpack_from(data)
        (crc,) = _HEADER_CRC.unpack_from(data, _HEADER.size)
        if (magic != MAGIC or crc != zlib.crc32(data[:_HEADER.size])
                or stored_generation != generation):
            raise StoreFailed(f"{path}: bad header")
        if version != FORMAT_VERSION:
            raise StoreFailed(f"{path}: log format {version}, this smbcad reads "
                              f"{FORMAT_VERSION}")
        offset, sequence, end = _HEADER_SIZE, 1, len(data)
        image: dict[int, bytes] = {}
        while end - offset >= _FRAME_HEAD.size:
            length, crc = _FRAME_HEAD.unpack_from(data, offset)
            body_start = offset + _FRAME_HEAD.size
            if not _FRAME_BODY.size <= length <= min(_MAX_FRAME, end - body_start):
                break
            body = data[body_start:body_start + length]
            if crc != zlib.crc32(body, zlib.crc32(data[offset:offset + 4])):
                break
            frame_sequence, count = _FRAME_BODY.unpack_from(body)
            if frame_sequence != sequence:
                break
            _apply_ops(path, body, count, image)
            offset = body_start + length
            sequence += 1
        self.discarded_bytes = len(data[offset:].rstrip(b"\x00"))
        if self.discarded_bytes > 0:
            log.warning("%s: discarded a torn tail of %d bytes after frame %d", path,
                        self.discarded_bytes, sequence - 1)
        self._image = image
        self._live_bytes = sum(_PUT.size + len(blob) for blob in image.values())

    # --- compaction ------------------------------------------------------------------

    def _step(self, name: str) -> None:
        if self._on_step is not None:
            self._on_step(name)

    def _compact(self) -> None:
        old_generation = self._generation
        generation = old_generation + 1
        final = os.path.join(self.directory, _file_name(generation))
        tmp = final + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            self._step("tmp-created")
            head = _HEADER.pack(MAGIC, FORMAT_VERSION, generation)
            offset = _pwrite_all(fd, head + _HEADER_CRC.pack(zlib.crc32(head)), 0)
            sequence = 1
            for frame in self._snapshot_frames():
                offset += _pwrite_all(fd, frame, offset)
                sequence += 1
                if sequence == 2:
                    self._step("tmp-partial")
            self._step("tmp-written")
            allocated = offset
            if self.preallocate_bytes:
                allocated = _zero_fill(fd, offset, offset + self.preallocate_bytes)
            os.fsync(fd)
            self._step("tmp-synced")
            os.rename(tmp, final)
            self._step("renamed")
            _fsync_dir(self.directory)
            self._step("dir-synced")
        except BaseException:
            os.close(fd)
            raise
        old_fd, self._fd = self._fd, fd
        self._generation, self._offset, self._allocated = generation, offset, allocated
        self._sequence = sequence
        if old_fd is not None:
            os.close(old_fd)
        for entry in os.listdir(self.directory):
            match = _NAME.match(entry)
            if match is not None and not match.group(2) and int(match.group(1), 16) < generation:
                os.unlink(os.path.join(self.directory, entry))
        _fsync_dir(self.directory)
        self._step("old-removed")
        self.compactions += 1

    def _snapshot_frames(self):
        ops, size, sequence = [], 0, 1
        for key, blob in self._image.items():
            ops.append(_put(key, blob))
            size += _PUT.size + len(blob)
            if size >= _SNAPSHOT_FRAME_BYTES:
                yield _frame(sequence, ops, len(ops))
                ops, size, sequence = [], 0, sequence + 1
        if ops:
            yield _frame(sequence, ops, len(ops))


def _apply_ops(path: str, body: bytes, count: int, image: dict[int, bytes]) -> None:
    """Replay one frame's ops.  The crc matched, so a malformed op is a bug in
    the writer, not a torn write: fail loudly instead of guessing."""
    offset, end = _FRAME_BODY.size, len(body)
    for _ in range(count):
        if offset >= end:
            raise StoreFailed(f"{path}: frame holds fewer ops than it says")
        kind = body[offset]
        if kind == _OP_PUT and offset + _PUT.size <= end:
            _, key, length = _PUT.unpack_from(body, offset)
            offset += _PUT.size
            if offset + length > end:
                raise StoreFailed(f"{path}: record overruns its frame")
            image[key] = body[offset:offset + length]
            offset += length
        elif kind == _OP_REMOVE and offset + _REMOVE.size <= end:
            image.pop(_REMOVE.unpack_from(body, offset)[1], None)
            offset += _REMOVE.size
        else:
            raise StoreFailed(f"{path}: bad op {kind} in a frame")
    if offset != end:
        raise StoreFailed(f"{path}: trailing bytes in a frame")


def _zero_fill(fd: int, start: int, end: int) -> int:
    """Write real zeros, not fallocate: unwritten extents would turn every
    commit into an extent conversion that the fdatasync has to journal."""
    while start < end:
        size = min(len(_ZEROS), end - start)
        _pwrite_all(fd, _ZEROS[:size], start)
        start += size
    return end


def _pwrite_all(fd: int, data: bytes, offset: int) -> int:
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
    return done
