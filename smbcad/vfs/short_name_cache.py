"""A cache of 8.3 short-name maps for QUERY_DIRECTORY's "Both" classes
(issue 14 item 5): ``proto.fscc.short_names`` over a large directory costs
~4 µs a name, every time Explorer lists it."""

import threading
from collections import OrderedDict
from collections.abc import Sequence

from smbcad.proto.fscc import short_names


class ShortNameCache:
    """``short_names`` of the last few large directories listed, kept by
    their whole name list (issue 14 item 5).  A directory's map depends only
    on its set of names, so a listing of an unchanged directory reuses it
    (one tuple compare instead of ~4 µs a name) and any change to the names
    misses: nothing can be stale.  Callers pass the names in one canonical
    order (``ShareFs.list_names`` sorts them) and never change the map.

    Bounded: directories under ``min_names`` names are not kept (computing
    is cheap there), and at most ``max_names`` names over ``max_dirs``
    directories are (least recently used go first; ~250 bytes a name, so
    ~25 MB at the default).  Thread-safe: large listings run in worker
    threads; the lock is held for dict work only."""

    def __init__(self, max_names: int = 100_000, max_dirs: int = 8,
                 min_names: int = 256) -> None:
        self._max_names, self._max_dirs, self._min_names = max_names, max_dirs, min_names
        self._maps: OrderedDict[tuple[str, ...], dict[str, str]] = OrderedDict()
        self._names = 0
        self._lock = threading.Lock()

    def short_names(self, names: Sequence[str]) -> dict[str, str]:
        """``short_names(names)``, from the cache when ``names`` were seen."""
        if not self._min_names <= len(names) <= self._max_names:
            return short_names(names)
        key = tuple(names)
        with self._lock:
            found = self._maps.get(key)
            if found is not None:
                self._maps.move_to_end(key)
                return found
        result = short_names(key)
        with self._lock:
            if key not in self._maps:
                self._maps[key] = result
                self._names += len(key)
                while self._names > self._max_names or len(self._maps) > self._max_dirs:
                    evicted, _ = self._maps.popitem(last=False)
                    self._names -= len(evicted)
        return result

    def __len__(self) -> int:
        return len(self._maps)
