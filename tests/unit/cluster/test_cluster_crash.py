"""Crash safety of the mirror's files: a child process is SIGKILLed at every
step of a replica append and its ACK, a snapshot install, a journal reset and
append, a marker write and an adoption; what it acknowledged survives, and
every file is the old or the new version, never a mix (the style of
tests/unit/store/test_store_crash.py)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from smbcad.cluster import aggregate_state as ags
from smbcad.cluster.mirror_core import META_KEY
from smbcad.cluster.replica import ReplicaStore
from smbcad.store.log_store import COMPACTION_STEPS
from tests.unit.cluster.cluster_crash_child import AGG, SNAPSHOT, frame

CHILD = Path(__file__).with_name("cluster_crash_child.py")
ROOT = Path(__file__).resolve().parents[3]
ATOMIC = ags.ATOMIC_STEPS


def run_child(scenario: str, root: Path, step: str) -> tuple[list[str], int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(CHILD), scenario, str(root), step],
                          capture_output=True, text=True, env=env, timeout=60)
    assert not proc.stderr.strip() or proc.returncode == -signal.SIGKILL, proc.stderr
    return proc.stdout.splitlines(), proc.returncode


def last_ack(lines: list[str]) -> int:
    acks = [int(line.split()[1]) for line in lines if line.startswith("A ")]
    return max(acks, default=0)


def applied(frames, start=None) -> dict:
    image = dict(start or {})
    for changes in frames:
        for key, blob in changes.items():
            if blob is None:
                image.pop(key, None)
            else:
                image[key] = blob
    return image


def load(directory: str) -> dict:
    engine = ags.KeyedLogEngine(directory, preallocate_bytes=0)
    try:
        return engine.load_keyed()
    finally:
        engine.close()


REPLICA_STEPS = ([f"write-{n}" for n in (1, 4)] + [f"write-{n}-durable" for n in (1, 6)]
                 + list(COMPACTION_STEPS) + [f"state-{s}" for s in ATOMIC] + ["write-21"])


@pytest.mark.parametrize("step", REPLICA_STEPS)
def test_replica_append_ack_and_snapshot_killed_at_each_step(tmp_path, step):
    lines, code = run_child("replica", tmp_path, step)
    assert code == -signal.SIGKILL, f"the child never reached {step}"
    records = load(ags.copy_dir(str(tmp_path / "state"), AGG))
    position = ags.position_of(records)
    if position[:2] in ((0, 0), (1, 1)):       # (0, 0): nothing written yet
        assert "I snapshot" not in lines
        mseq = position[2]
        assert mseq >= last_ack(lines)
        assert records == applied(frame(n) for n in range(1, mseq + 1))
    elif position == (2, 5, 20):
        assert "S snapshot" in lines and "A 21" not in lines
        assert records == SNAPSHOT
    else:
        assert position == (2, 5, 21)
        assert records == applied([frame(21, 2, 5)], SNAPSHOT)
    store = ReplicaStore(str(tmp_path / "state"), AGG)
    assert store.open() == position
    assert store.highest_epoch == position[0]
    store.close()


# The journal's first compaction is its (empty) recovery, the second its reset;
# an empty recovery writes no frame, so "tmp-partial" comes once.
JOURNAL_STEPS = (list(COMPACTION_STEPS)
                 + [f"{s}#2" for s in COMPACTION_STEPS if s != "tmp-partial"]
                 + ["append-11", "append-14"])


@pytest.mark.parametrize("step", JOURNAL_STEPS)
def test_journal_reset_and_append_killed_at_each_step(tmp_path, step):
    lines, code = run_child("journal", tmp_path, step)
    assert code == -signal.SIGKILL, f"the child never reached {step}"
    records = ags.read_journal(str(tmp_path / "mount"))
    if records is None:
        assert "I reset" not in lines
        return
    mseq = ags.position_of(records)[2]
    assert mseq >= last_ack(lines)
    image = {1: b"i1", 2: b"i2"}
    expected = applied((frame(n) for n in range(11, mseq + 1)), image)
    records.pop(META_KEY)
    expected.pop(META_KEY, None)
    assert records == expected


@pytest.mark.parametrize("step", [f"marker-{s}" for s in ATOMIC])
def test_marker_write_killed_at_each_step(tmp_path, step):
    lines, code = run_child("marker", tmp_path, step)
    assert code == -signal.SIGKILL
    found = ags.read_marker(str(tmp_path / "mount"))
    if step in ("marker-renamed", "marker-dir-synced"):
        assert found == ags.Marker(1, 2, False)
    else:
        assert found == ags.Marker(1, 1, True)


ADOPTION_STEPS = ([f"journal-{s}" for s in COMPACTION_STEPS]
                  + [f"journal-{s}#2" for s in ("tmp-created", "renamed", "old-removed")]
                  + ["journal-reset"] + [f"marker-{s}" for s in ATOMIC]
                  + ["marker-written", "copy-written"] + [f"state-{s}" for s in ATOMIC]
                  + ["state-written"])
ADOPTED = {1: b"v4", 7: b"j7"}      # journal image {1: j1, 7: j7} then frame 4


@pytest.mark.parametrize("step", ADOPTION_STEPS)
def test_adoption_killed_at_each_step_can_be_run_again(tmp_path, step):
    state, mount = str(tmp_path / "state"), str(tmp_path / "mount")
    lines, code = run_child("adoption", tmp_path, step)
    assert code == -signal.SIGKILL, f"the child never reached {step}"
    first = ags.load_for_adoption(state, AGG, mount)
    assert first.records == ADOPTED and first.epoch >= 2
    lines, code = run_child("adoption", tmp_path, "never")
    assert code == 0 and any(line.startswith("I adopt") for line in lines)
    again = ags.load_for_adoption(state, AGG, mount)
    assert again.records == ADOPTED
    assert again.epoch == int(lines[-1].split()[2]) + 1
    assert ags.read_marker(mount).in_sync is False
