"""Crash safety: a writer SIGKILLed mid-stream, torn and corrupt log tails,
and compaction interrupted at every step.

The invariant, per DurableFileId: after recovery the record is either in the
state of the last change whose ``await`` returned before the kill, or in the
state of the one change that was in flight (never older, never garbage).
The child (``store_crash_child.py``) prints each change before it is made and
after it is acknowledged.
"""

import asyncio
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from smbcad.store import LocalHandleStore, LogEngine, SqliteEngine, StoreFailed, encode
from smbcad.store.log_store import COMPACTION_STEPS

CHILD = Path(__file__).with_name("store_crash_child.py")
ROOT = Path(__file__).resolve().parents[3]


def run_child(*args: str, kill_after_acks: int | None = None) -> tuple[list[str], int]:
    """Run the child; SIGKILL it once it has acknowledged that many changes
    (None: wait for it to die on its own).  Returns its output lines and exit code."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(CHILD), *args], stdout=subprocess.PIPE,
                            env=env, text=True)
    lines, acks = [], 0
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("A "):
                acks += 1
                if kill_after_acks is not None and acks >= kill_after_acks:
                    proc.send_signal(signal.SIGKILL)
                    break
        # lines the child wrote before it died are as good as the ones read so far
        lines += proc.stdout.read().splitlines()
    finally:
        proc.stdout.close()
        code = proc.wait(timeout=60)
    return lines, code


class Ledger:
    """What the child told us: per id, the acknowledged state and the one in flight."""

    def __init__(self) -> None:
        self.acked: dict[int, str] = {}
        self.in_flight: dict[int, str] = {}
        self.seen: dict[int, set[str]] = {}
        self.acks = 0

    def read(self, lines: list[str]) -> "Ledger":
        for line in lines:
            parts = line.split()
            if not parts or parts[0] not in ("S", "A"):
                continue
            if parts[0] == "S" and len(parts) == 3:
                key = int(parts[1])
                self.in_flight[key] = parts[2]
                self.seen.setdefault(key, {"closed"}).add(parts[2])
            elif parts[0] == "A" and len(parts) == 2:
                key = int(parts[1])
                self.acked[key] = self.in_flight.pop(key)
                self.acks += 1
            # else: a line cut by the kill
        return self

    def check(self, recovered: dict[int, str]) -> None:
        for key in set(self.acked) | set(self.in_flight) | set(recovered):
            allowed = {self.acked.get(key, "closed")}
            if key in self.in_flight:
                allowed.add(self.in_flight[key])
            assert recovered.get(key, "closed") in allowed, (
                f"id {key}: recovered {recovered.get(key, 'closed')}, acknowledged "
                f"{self.acked.get(key, 'closed')}, in flight {self.in_flight.get(key)}")


def recover(engine) -> dict[int, str]:
    async def load():
        store = await LocalHandleStore.open(engine)
        try:
            return {r.durable_file_id: str(zlib.crc32(encode(r))) for r in await store.traverse()}
        finally:
            await store.shutdown()
    return asyncio.run(load())


ENGINES = {
    "log": (lambda tmp: str(tmp / "log"), lambda path: LogEngine(path)),
    "sqlite": (lambda tmp: str(tmp / "handles.db"), lambda path: SqliteEngine(path)),
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_sigkill_mid_stream_loses_no_acknowledged_change(tmp_path, engine):
    path_of, make = ENGINES[engine]
    path = path_of(tmp_path)
    ledger = Ledger()
    for acks in (400, 250, 600):            # three crashes in a row on the same store
        lines, code = run_child(engine, path, kill_after_acks=acks)
        assert code == -signal.SIGKILL
        ledger.read(lines)
        recovered = recover(make(path))
        ledger.check(recovered)
        # the next run starts from what was recovered
        ledger.acked = {key: value for key, value in recovered.items()}
        ledger.in_flight = {}
    assert ledger.acks >= 1250


@pytest.mark.parametrize("step", COMPACTION_STEPS)
def test_compaction_killed_at_each_step_during_writes(tmp_path, step):
    path = str(tmp_path / "log")
    lines, code = run_child("log", path, "--compact-every-write", "--kill-at", step,
                            "--arm-after", "40")
    assert code == -signal.SIGKILL, "the child never reached the step"
    ledger = Ledger().read(lines)
    assert ledger.acks >= 40
    ledger.check(recover(LogEngine(path)))
    names = os.listdir(path)
    assert sum(name.endswith(".log") for name in names) == 1
    assert not any(name.endswith(".tmp") for name in names)


@pytest.mark.parametrize("step", COMPACTION_STEPS)
def test_compaction_killed_at_each_step_during_recovery(tmp_path, step):
    path = str(tmp_path / "log")
    lines, _ = run_child("log", path, kill_after_acks=300)
    ledger = Ledger().read(lines)
    # The next start dies inside the compaction that recovery does...
    again, code = run_child("log", path, "--kill-at", step, "--arm-after", "0")
    assert code == -signal.SIGKILL and "READY" not in again
    # ...and the one after that still finds every acknowledged change.
    ledger.check(recover(LogEngine(path)))


# --- torn and corrupt log tails, byte by byte ------------------------------------------------

def blob(key: int, n: int) -> bytes:
    from smbcad.store import PersistentOpen
    return encode(PersistentOpen(key, key.to_bytes(16, "little"), b"C" * 16, "u", "d", "s",
                                 f"file-{key}-{n}", position=n, record_version=n))


BATCHES = [
    {1: blob(1, 1), 2: blob(2, 1)},
    {1: blob(1, 2), 3: blob(3, 1)},
    {2: None, 4: blob(4, 1)},
    {1: blob(1, 3), 4: blob(4, 2), 5: blob(5, 1)},
]


def states() -> list[dict[int, bytes]]:
    """The live records after 0, 1, ... len(BATCHES) batches."""
    out, image = [{}], {}
    for batch in BATCHES:
        for key, value in batch.items():
            if value is None:
                image.pop(key, None)
            else:
                image[key] = value
        out.append(dict(image))
    return out


@pytest.fixture(scope="module")
def written_log(tmp_path_factory) -> tuple[bytes, list[int]]:
    """A log holding BATCHES, no preallocation, and the file offset after each frame."""
    directory = tmp_path_factory.mktemp("written")
    engine = LogEngine(str(directory), preallocate_bytes=0)
    engine.load()
    (name,) = [n for n in os.listdir(directory) if n.endswith(".log")]
    ends = [os.path.getsize(directory / name)]
    for batch in BATCHES:
        engine.write(batch)
        ends.append(os.path.getsize(directory / name))
    engine.close()
    return (directory / name).read_bytes(), ends


def load_bytes(tmp_path: Path, data: bytes, name: str = "handles-0000000000000001.log"
               ) -> dict[int, bytes]:
    directory = tmp_path / "case"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    (directory / name).write_bytes(data)
    engine = LogEngine(str(directory), preallocate_bytes=0)
    try:
        return {key: value for key, value in zip(*_keys_and_blobs(engine.load()))}
    finally:
        engine.close()


def _keys_and_blobs(blobs):
    blobs = list(blobs)
    return [struct.unpack_from("<Q", b, 18)[0] for b in blobs], blobs


def test_the_log_holds_every_batch(tmp_path, written_log):
    data, _ = written_log
    assert load_bytes(tmp_path, data) == states()[-1]


@pytest.mark.parametrize("padding", ["none", "zeros", "garbage"])
def test_a_torn_last_frame_is_discarded_at_every_byte(tmp_path, written_log, padding):
    data, ends = written_log
    before, expected = ends[-2], states()[-2]
    pad = {"none": b"", "zeros": bytes(4096), "garbage": bytes(range(256)) * 4}[padding]
    for cut in range(before, ends[-1]):
        torn = data[:cut] + pad
        # (a cut that only removed zeros, padded back with zeros, is no tear at all)
        whole = torn[:ends[-1]] == data[:ends[-1]]
        assert load_bytes(tmp_path, torn) == (states()[-1] if whole else expected), cut
    assert load_bytes(tmp_path, data + pad) == states()[-1]


def test_a_cut_inside_any_frame_keeps_exactly_the_frames_before_it(tmp_path, written_log):
    data, ends = written_log
    for frame in range(len(BATCHES)):
        for cut in range(ends[frame], ends[frame + 1], 5):
            torn = data[:cut] + bytes(64)
            whole = torn[:ends[frame + 1]] == data[:ends[frame + 1]]
            assert load_bytes(tmp_path, torn) == states()[frame + whole], cut


def test_a_flipped_bit_discards_its_frame_and_everything_after(tmp_path, written_log):
    data, ends = written_log
    for frame in range(len(BATCHES)):
        for where in range(ends[frame], ends[frame + 1], 3):
            broken = bytearray(data)
            broken[where] ^= 0x10
            assert load_bytes(tmp_path, bytes(broken)) == states()[frame], where


def test_a_valid_frame_after_a_torn_one_is_not_trusted(tmp_path, written_log):
    data, ends = written_log
    # frame 3 torn (a block that never reached the disk), frame 4 intact behind it
    broken = bytearray(data)
    broken[ends[2] + 10:ends[2] + 20] = bytes(10)
    assert load_bytes(tmp_path, bytes(broken)) == states()[2]


def test_appending_after_a_torn_tail_never_resurrects_it(tmp_path, written_log):
    data, ends = written_log
    directory = tmp_path / "resume"
    directory.mkdir()
    # torn in frame 3, with frame 4 complete behind it
    broken = bytearray(data)
    broken[ends[2] + 10] ^= 0xFF
    (directory / "handles-0000000000000001.log").write_bytes(bytes(broken))
    engine = LogEngine(str(directory), preallocate_bytes=0)
    engine.load()
    engine.write({9: blob(9, 1)})
    engine.close()
    engine = LogEngine(str(directory))
    _, blobs = _keys_and_blobs(engine.load())
    engine.close()
    assert sorted(blobs) == sorted([*states()[2].values(), blob(9, 1)])


def test_a_corrupt_header_is_refused_not_guessed(tmp_path, written_log):
    data, _ = written_log
    for where in (0, 9, 12, 20):
        broken = bytearray(data)
        broken[where] ^= 1
        with pytest.raises(StoreFailed, match="header"):
            load_bytes(tmp_path, bytes(broken))
    with pytest.raises(StoreFailed, match="header"):
        load_bytes(tmp_path, data[:10])
    # a file whose name and header disagree on the generation
    with pytest.raises(StoreFailed, match="header"):
        load_bytes(tmp_path, data, name="handles-0000000000000007.log")


def test_leftovers_of_an_interrupted_compaction(tmp_path, written_log):
    data, _ = written_log
    directory = tmp_path / "left"
    directory.mkdir()
    (directory / "handles-0000000000000001.log").write_bytes(data)
    (directory / "handles-0000000000000002.log.tmp").write_bytes(data[:40])
    engine = LogEngine(str(directory))
    _, blobs = _keys_and_blobs(engine.load())
    engine.close()
    assert sorted(blobs) == sorted(states()[-1].values())
    assert sorted(os.listdir(directory)) == ["handles-0000000000000002.log", "lock"]


def test_sqlite_torn_wal_tail_gives_an_earlier_state_never_garbage(tmp_path):
    path = str(tmp_path / "handles.db")
    lines, code = run_child("sqlite", path, kill_after_acks=300)
    assert code == -signal.SIGKILL
    ledger = Ledger().read(lines)
    wal = Path(path + "-wal")
    size = wal.stat().st_size
    assert size > 0
    saved = wal.read_bytes()
    for cut in (size - 1, size - 100, size - 4096 - 24 - 7, size // 2):
        wal.write_bytes(saved[:cut])
        shutil.copy(path, path + ".copy")
        recovered = recover(SqliteEngine(path))
        for key, value in recovered.items():
            assert value in ledger.seen[key]
        shutil.copy(path + ".copy", path)
