"""What a directory listing reads of each entry's extended attributes, kept
between listings (issue 14 item 5, large directories).

Per entry a listing reads the DOS attribute record (a getxattr through
``/proc/self/fd/N/name``, ~2.7 µs: there is no getxattrat before Linux
6.13) and, for the classes that report EaSize, lists the xattrs (~2 µs):
together a third of an entry's cost.  Both change only with the inode's
ctime, which every setxattr, removexattr, chmod, chown and rename moves, so
what was read is kept under (device, inode, ctime in ns) and a listing of
an unchanged entry reads nothing but its lstat.

The kernel stamps ctime from a coarse clock (one tick, 1-10 ms), so a
change in the same tick as the read that was kept could leave ctime as it
was.  An entry whose ctime is younger than ``RACY_NS`` is therefore not
kept (git's "racily clean" rule): any later change gets a later ctime.  A
file deleted and another made on the same inode has the new one's ctime.
The cache is bounded; the oldest entries go first.  Sans-IO apart from the
clock, which the caller may give.
"""

import time

# Several coarse clock ticks (CONFIG_HZ=100: 10 ms per tick).
RACY_NS = 50_000_000
MAX_ENTRIES = 1 << 18          # ~60 MB at most; a 100k-file directory fits
UNKNOWN = None                 # an EaSize not read yet (a class without it listed)


class EntryXattrs:
    """One share's kept reads: ``(dos_record, ea_size)`` per entry."""

    __slots__ = ("_kept", "_clock_ns", "_max")

    def __init__(self, clock_ns=time.time_ns, max_entries: int = MAX_ENTRIES) -> None:
        self._kept: dict[tuple[int, int, int], tuple] = {}
        self._clock_ns = clock_ns
        self._max = max_entries

    def get(self, st) -> tuple | None:
        """What was kept for this lstat's entry, or None."""
        return self._kept.get((st.st_dev, st.st_ino, st.st_ctime_ns))

    def keep(self, st, dos_record, ea_size: int | None) -> None:
        """Keep what was read for ``st``'s entry, unless its ctime is too
        recent to tell a later change apart."""
        if st.st_ctime_ns >= self._clock_ns() - RACY_NS:
            return
        kept = self._kept
        if len(kept) >= self._max:
            del kept[next(iter(kept))]
        kept[(st.st_dev, st.st_ino, st.st_ctime_ns)] = (dos_record, ea_size)

    def __len__(self) -> int:
        return len(self._kept)
