"""The files of one aggregate's mirrored handle store, and the adoption rule
(issue 10 items 5, 6; shared/reference/cluster.md §7(a) "Degrading",
"Phase 2 — degraded journal", §7(b) step 6).

Files::

    <state_dir>/handles/<aggregate>/             LogEngine: this node's copy
                                                 (primary or replica: a role
                                                 change moves no data)
    <state_dir>/handles/<aggregate>/state.json   role, epoch, generation, mseq,
                                                 in_sync, highest_epoch
    <mount_point>/.smbca/handles.state           the marker: epoch, generation,
                                                 in_sync (on the aggregate's LUN)
    <mount_point>/.smbca/handles-degraded/       LogEngine: the degraded journal

With worker processes (``server.workers`` above 1, docs/multicore.md step 4)
each worker owns a partition of every aggregate, named ``worker-K``: its copy
under ``<state_dir>/worker-K/handles/<aggregate>/`` (the member's state_dir)
and its marker and journal under ``<mount_point>/.smbca/worker-K/``.  Each
partition has its own mirror stream, so each is adopted by this table on
its own.  One process uses the unnamed partition: the paths above.

Each LogEngine holds the mirror's position record (``mirror_core.META_KEY``)
next to the handle records, written in the same frame, so its position is
never out of step with its contents.  ``state.json`` is written on role
changes and snapshot installs only (its ``mseq`` is informational; the
position record is authoritative).  Small files are replaced atomically:
write a ``.tmp``, fsync, rename, fsync the directory (``ATOMIC_STEPS``).

Adoption (``load_for_adoption``), first rule that applies:

===========================  ==================================================
marker                       the next owner adopts
===========================  ==================================================
unreadable                   nothing: refused
absent                       an empty store if its copy is empty (first
                             bring-up), else refused (the marker is written at
                             every adoption, so a copy without one is suspect)
in_sync false ("outdated")   the journal; refused if there is none or it is of
                             an older epoch than the marker (a newer one is an
                             adoption that died before its marker: complete)
in_sync true                 its copy; refused if the copy's epoch is not the
                             marker's or its generation is older
===========================  ==================================================

``commit_adoption`` then bumps the epoch durably, in an order where a crash at
any step leaves a state from which adoption can be run again: journal reset
to the adopted records (new epoch), marker {new epoch, outdated}, local copy,
``state.json``.
"""

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass

from smbcad.cluster.mirror_core import META_KEY, decode_position, encode_position
from smbcad.store.errors import StoreFailed
from smbcad.store.log_store import LogEngine
from smbcad.store.log_store import _fsync_dir  # noqa: PLC2701 - one dir-fsync for both

log = logging.getLogger("smbcad.cluster")

ATOMIC_STEPS = ("tmp-written", "tmp-synced", "renamed", "dir-synced")
MARKER_NAME = "handles.state"
JOURNAL_NAME = "handles-degraded"
STATE_NAME = "state.json"

Step = Callable[[str], None]


def atomic_write(path: str, data: bytes, on_step: Step | None = None) -> None:
    """Replace ``path`` by ``data`` so that a crash leaves the old or the new file."""
    step = on_step or (lambda name: None)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        step("tmp-written")
        os.fsync(fd)
        step("tmp-synced")
    finally:
        os.close(fd)
    os.rename(tmp, path)
    step("renamed")
    _fsync_dir(os.path.dirname(path) or ".")
    step("dir-synced")


def _prefixed(prefix: str, on_step: Step | None) -> Step | None:
    """Step names of the small files, told apart from the log's compaction steps."""
    if on_step is None:
        return None
    return lambda name: on_step(prefix + name)


def ensure_dir(path: str) -> None:
    """Create ``path`` (and its parent's entry) durably."""
    if os.path.isdir(path):
        return
    os.makedirs(path, mode=0o700, exist_ok=True)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def copy_dir(state_dir: str, aggregate: str) -> str:
    return os.path.join(state_dir, "handles", aggregate)


def smbca_dir(mount_point: str, partition: str = "") -> str:
    """Where a partition's marker and journal live on the aggregate."""
    base = os.path.join(mount_point, ".smbca")
    return os.path.join(base, partition) if partition else base


# --- the marker and the state file ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Marker:
    """``<mount_point>/.smbca/handles.state``."""

    epoch: int
    generation: int
    in_sync: bool


class MarkerUnreadable(Exception):
    pass


def read_marker(mount_point: str, partition: str = "") -> Marker | None:
    path = os.path.join(smbca_dir(mount_point, partition), MARKER_NAME)
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read())
        return Marker(int(data["epoch"]), int(data["generation"]), bool(data["in_sync"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MarkerUnreadable(f"{path}: {exc}") from exc


def write_marker(mount_point: str, marker: Marker, on_step: Step | None = None,
                 partition: str = "") -> None:
    """Durable on return.  On a fenced LUN the write or fsync fails: the
    caller must then fail the store (never acknowledge without it)."""
    directory = smbca_dir(mount_point, partition)
    ensure_dir(smbca_dir(mount_point))
    ensure_dir(directory)
    atomic_write(os.path.join(directory, MARKER_NAME),
                 json.dumps(asdict(marker), sort_keys=True).encode() + b"\n",
                 _prefixed("marker-", on_step))


@dataclass(frozen=True, slots=True)
class AggregateState:
    """``<state_dir>/handles/<aggregate>/state.json``."""

    role: str               # "primary" | "replica"
    epoch: int
    generation: int
    mseq: int
    in_sync: bool
    highest_epoch: int


def read_state(state_dir: str, aggregate: str) -> AggregateState | None:
    path = os.path.join(copy_dir(state_dir, aggregate), STATE_NAME)
    try:
        with open(path, "rb") as file:
            return AggregateState(**json.loads(file.read()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise StoreFailed(f"{path}: {exc}") from exc


def write_state(state_dir: str, aggregate: str, state: AggregateState,
                on_step: Step | None = None) -> None:
    directory = copy_dir(state_dir, aggregate)
    ensure_dir(directory)
    atomic_write(os.path.join(directory, STATE_NAME),
                 json.dumps(asdict(state), sort_keys=True).encode() + b"\n",
                 _prefixed("state-", on_step))


# --- log engines holding a position --------------------------------------------------


def position_of(records: Mapping[int, bytes]) -> tuple[int, int, int]:
    """(epoch, generation, mseq) of a record set; (0, 0, 0) if it has no position."""
    meta = records.get(META_KEY)
    return decode_position(meta) if meta is not None else (0, 0, 0)


class KeyedLogEngine(LogEngine):
    """A LogEngine whose recovery also gives the keys: the mirror needs
    records by DurableFileId without decoding them (12 µs a record), and
    ``Engine.load`` returns only the encoded bytes."""

    def load_keyed(self) -> dict[int, bytes]:
        self.load()
        return dict(self._image)


def replace_all(engine: LogEngine, current_keys: Iterable[int],
                records: Mapping[int, bytes]) -> None:
    """Make ``engine`` hold exactly ``records``, atomically (one frame), then
    compact it into a new generation."""
    changes: dict[int, bytes | None] = {key: None for key in current_keys
                                        if key not in records}
    changes.update(records)
    engine.write(changes)
    engine.compact()


class Journal:
    """The degraded journal: a LogEngine in ``<mount_point>/.smbca/handles-degraded``."""

    def __init__(self, mount_point: str, *, on_step: Step | None = None,
                 preallocate_bytes: int = 1 << 20, partition: str = "") -> None:
        self.directory = os.path.join(smbca_dir(mount_point, partition), JOURNAL_NAME)
        self._smbca_dir = smbca_dir(mount_point)
        self._on_step = on_step
        self._preallocate = preallocate_bytes
        self._engine: KeyedLogEngine | None = None
        self._keys: set[int] = set()

    def _open(self) -> KeyedLogEngine:
        if self._engine is None:
            ensure_dir(self._smbca_dir)
            ensure_dir(os.path.dirname(self.directory))
            engine = KeyedLogEngine(self.directory, preallocate_bytes=self._preallocate,
                                    on_compaction_step=self._on_step)
            self._keys = set(engine.load_keyed())
            _fsync_dir(os.path.dirname(self.directory))
            self._engine = engine
        return self._engine

    def reset(self, records: Mapping[int, bytes]) -> None:
        """The journal holds exactly ``records`` (a full image), durably."""
        engine = self._open()
        replace_all(engine, self._keys, records)
        self._keys = set(records)

    def append(self, ops) -> None:
        changes = dict(ops)
        self._open().write(changes)
        for key, blob in changes.items():
            if blob is None:
                self._keys.discard(key)
            else:
                self._keys.add(key)

    def delete(self) -> None:
        self.close()
        if not os.path.isdir(self.directory):
            return
        for entry in os.listdir(self.directory):
            os.unlink(os.path.join(self.directory, entry))
        os.rmdir(self.directory)
        _fsync_dir(os.path.dirname(self.directory))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def read_journal(mount_point: str, partition: str = "") -> dict[int, bytes] | None:
    """The journal's records, or None if there is none."""
    directory = os.path.join(smbca_dir(mount_point, partition), JOURNAL_NAME)
    if not os.path.isdir(directory):
        return None
    engine = KeyedLogEngine(directory, preallocate_bytes=0)
    try:
        records = engine.load_keyed()
    finally:
        engine.close()
    return records if META_KEY in records else None


# --- adoption ------------------------------------------------------------------------


class AdoptionRefused(Exception):
    """This node cannot trust what it has of the aggregate; ``reason`` says why."""

    def __init__(self, aggregate: str, reason: str) -> None:
        super().__init__(f"{aggregate}: adoption refused: {reason}")
        self.aggregate = aggregate
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Adoption:
    """What ``load_for_adoption`` found.  ``records`` are encoded handle
    records by DurableFileId (META_KEY removed); ``epoch`` is the new one."""

    aggregate: str
    source: str                     # "replica" | "journal" | "empty"
    records: dict[int, bytes]
    epoch: int
    generation: int
    mseq: int


def load_for_adoption(state_dir: str, aggregate: str, mount_point: str,
                      partition: str = "") -> Adoption:
    """Apply the adoption table (module docstring) to one partition of the
    aggregate (``state_dir`` is that partition's); raises AdoptionRefused."""
    try:
        marker = read_marker(mount_point, partition)
    except MarkerUnreadable as exc:
        raise AdoptionRefused(aggregate, f"marker unreadable: {exc}") from None
    engine = KeyedLogEngine(copy_dir(state_dir, aggregate), preallocate_bytes=0)
    try:
        copy = engine.load_keyed()
    finally:
        engine.close()
    copy_epoch, copy_generation, copy_mseq = position_of(copy)
    state = read_state(state_dir, aggregate)
    highest = max(copy_epoch, state.highest_epoch if state else 0)
    if marker is None:
        if len(copy) > (META_KEY in copy):
            raise AdoptionRefused(aggregate, "no marker on the aggregate, but this node "
                                  f"holds {len(copy) - (META_KEY in copy)} records of it")
        return Adoption(aggregate, "empty", {}, highest + 1, copy_generation, copy_mseq)
    if not marker.in_sync:
        journal = read_journal(mount_point, partition)
        if journal is None:
            raise AdoptionRefused(aggregate, "marker says outdated and there is no journal")
        epoch, generation, mseq = position_of(journal)
        # Higher is an adoption that died between its journal and its marker:
        # that journal is the full adopted image, so it is complete.
        if epoch < marker.epoch:
            raise AdoptionRefused(aggregate, f"journal is of epoch {epoch}, older than the "
                                  f"marker's {marker.epoch}")
        records, source = journal, "journal"
        highest = max(highest, epoch)
    else:
        if copy_epoch != marker.epoch:
            raise AdoptionRefused(aggregate, f"replica is of epoch {copy_epoch}, the marker "
                                  f"says {marker.epoch}")
        if copy_generation < marker.generation:
            raise AdoptionRefused(aggregate, f"generation mismatch: replica has "
                                  f"{copy_generation}, the marker {marker.generation}")
        records, source = copy, "replica"
        epoch, generation, mseq = copy_epoch, copy_generation, copy_mseq
    records = {key: blob for key, blob in records.items() if key != META_KEY}
    return Adoption(aggregate, source, records, max(highest, marker.epoch) + 1, generation,
                    mseq)


ADOPTION_STEPS = ("journal-reset", "marker-written", "copy-written", "state-written")


def commit_adoption(state_dir: str, mount_point: str, adoption: Adoption,
                    on_step: Step | None = None, partition: str = "") -> None:
    """Make the adoption durable: journal, marker (new epoch, outdated), the
    local copy, state.json.  The new ``PrimaryMirror`` then starts with
    ``outdated=True`` at (adoption.epoch, .generation, .mseq)."""
    step = on_step or (lambda name: None)
    meta = {META_KEY: encode_position(adoption.epoch, adoption.generation, adoption.mseq)}
    image = {**adoption.records, **meta}
    journal = Journal(mount_point, on_step=_prefixed("journal-", on_step), partition=partition)
    try:
        journal.reset(image)
    finally:
        journal.close()
    step("journal-reset")
    write_marker(mount_point, Marker(adoption.epoch, adoption.generation, False), on_step,
                 partition)
    step("marker-written")
    engine = KeyedLogEngine(copy_dir(state_dir, adoption.aggregate))
    try:
        replace_all(engine, engine.load_keyed(), image)
    finally:
        engine.close()
    step("copy-written")
    write_state(state_dir, adoption.aggregate, AggregateState(
        "primary", adoption.epoch, adoption.generation, adoption.mseq, False, adoption.epoch),
        on_step)
    step("state-written")
    log.info("%s: adopted %d records from the %s at epoch %d", adoption.aggregate,
             len(adoption.records), adoption.source, adoption.epoch)
