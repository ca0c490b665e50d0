"""``lab.py cluster``: two smbca nodes (clusdisk, smbcad, witnessd each) and a
client namespace in one lab guest, COMMAND run in the client namespace while
events are injected (``guest_tests/cluster_lab.py`` does the guest side).

``run_cluster`` is what ``lab.py cluster`` and ``tests/lab/test_lab_cluster.py``
call; ``parse_timeline`` reads the JSON timeline back out of the output.
"""

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from labvm.guest import GUEST_TESTS, precompile
from labvm.vm import LabOptions, RunResult, run

DRIVER = GUEST_TESTS / "cluster_lab.py"
MODES = ("scsi2", "pr")
EVENTS = ("kill-a", "kill-b", "cut-a", "cut-b", "takeover-a", "takeover-b", "giveback",
          "relocate-aggr1", "lif-migrate-lif1", "restart-a", "restart-b")
LUNS = 3                          # quorum, data (aggr1), data2 (aggr2)
DATA_MB = 512                     # per data LUN: ext4 made in seconds under TCG
# cluster_lab.py says it is alive every minute: this much silence means the
# guest (or the harness in it) is stuck, and the run ends with the output so
# far instead of at ``timeout_s``
SILENCE_S = 300
TIMELINE_START = "==== cluster timeline (JSON) ===="
TIMELINE_END = "==== end of cluster timeline ===="


def parse_event(text: str) -> tuple[str, float]:
    """``EVENT@SECONDS`` -> (EVENT, SECONDS); ValueError naming the problem."""
    name, sep, at = text.rpartition("@")
    if not sep or name not in EVENTS:
        raise ValueError(f"--event {text!r}: EVENT@SECONDS, EVENT one of {', '.join(EVENTS)}")
    try:
        seconds = float(at)
    except ValueError:
        raise ValueError(f"--event {text!r}: {at!r} is not a number of seconds") from None
    if seconds < 0:
        raise ValueError(f"--event {text!r}: the time must not be negative")
    return name, seconds


def default_python() -> str:
    """The interpreter the guest runs the daemons with: it needs the
    project's dependencies (the test venv), which lab.py's own may lack."""
    venv = os.environ.get("SMBCA_VENV", "/opt/smbca/test-venv")
    candidate = Path(venv) / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def cluster_command(command: Sequence[str], mode: str, events: Sequence[str], workdir: str,
                    python: str | None = None, after_ready: bool = False,
                    settle_s: float = 0.0) -> list[str]:
    if mode not in MODES:
        raise ValueError(f"--mode {mode!r}: scsi2 or pr")
    for event in events:
        parse_event(event)
    if not command:
        raise ValueError("no COMMAND")
    argv = [python or default_python(), str(DRIVER), "--mode", mode, "--workdir", workdir]
    for event in events:
        argv += ["--event", event]
    if after_ready:
        argv.append("--after-ready")
    if settle_s:
        argv += ["--settle", str(settle_s)]
    return argv + ["--", *command]


def run_cluster(command: Sequence[str], *, mode: str = "scsi2", events: Sequence[str] = (),
                workdir: str, timeout_s: float = 1800, options: LabOptions | None = None,
                python: str | None = None, output: BinaryIO | None = None,
                on_ready=None, after_ready: bool = False, settle_s: float = 0.0) -> RunResult:
    """Boot a guest, bring the pair up, run ``command`` in the client
    namespace with ``events`` injected.  ``workdir`` (a host directory) is
    writable in the guest: COMMAND's ``SMBCA_WORKDIR``, and where the run's
    logs, configs and timeline.json land (``workdir/cluster-MODE/``).  ``after_ready``:
    the events' times count from when ``command`` creates ``$SMBCA_READY``;
    ``settle_s``: at least that long between one event's end and the next's start."""
    argv = cluster_command(command, mode, events, str(Path(workdir).resolve()), python,
                           after_ready, settle_s)
    base = options or LabOptions(data_mb=DATA_MB)
    writable = tuple(dict.fromkeys((*base.writable, str(Path(workdir).resolve()))))
    options = dataclasses.replace(base, luns=max(base.luns, LUNS), writable=writable,
                                  timeout_s=timeout_s, silence_s=base.silence_s or SILENCE_S)
    precompile()
    return run(argv, options, output=output, on_ready=on_ready)


def parse_timeline(text: str) -> dict | None:
    """The JSON timeline ``cluster_lab.py`` printed, or None."""
    start = text.rfind(TIMELINE_START)
    end = text.find(TIMELINE_END, start)
    if start < 0 or end < 0:
        return None
    try:
        return json.loads(text[start + len(TIMELINE_START):end])
    except ValueError:
        return None
