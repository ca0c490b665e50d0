"""The client side of bench/failover_bench.py: COMMAND of ``lab.py cluster``,
run in the lab's client namespace (not a test; nothing is asserted).

    python bench/failover_probe.py EVENT_COUNT

Mounts ``//$SMBCA_LIF1/vms`` (aggr1) and ``//$SMBCA_LIF2/sql`` (aggr2) with
``vers=3.1.1,persistenthandles,hard`` and runs one O_DIRECT writer per mount
(64 KiB writes over a 16 MiB file, ``PAUSE_S`` apart; every write an SMB2
WRITE acknowledged before the next), noting the CLOCK_MONOTONIC time of
every acknowledged write.  Once EVENT_COUNT events ended
(``$SMBCA_EVENTS``) and ``TAIL_S`` more seconds passed, it prints one
``failover-probe-json:`` line: per event, the longest pause between two
acknowledged writes of each writer that began in the event's window (from
``LEAD_S`` before its start to ``TAIL_S`` after its end, or the next
event's), and the write errors seen (a hard mount should show none); every
acknowledgement time goes to ``$SMBCA_WORKDIR/probe-acks.json``.
"""

import json
import mmap
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

CHUNK = 64 << 10
FILE_BYTES = 16 << 20
PAUSE_S = 0.05
TAIL_S = 5.0
LEAD_S = 1.0
WAIT_S = 3600
MOUNTS = {"aggr1": ("SMBCA_LIF1", "vms"), "aggr2": ("SMBCA_LIF2", "sql")}


class Writer(threading.Thread):
    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.acks: list[float] = []
        self.errors: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        buffer = mmap.mmap(-1, CHUNK)
        buffer[:] = os.urandom(CHUNK)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
        index = 0
        while not self.stop.is_set():
            try:
                os.pwrite(fd, buffer, (index * CHUNK) % FILE_BYTES)
                self.acks.append(time.monotonic())
            except OSError as exc:
                self.errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                time.sleep(0.5)
            index += 1
            time.sleep(PAUSE_S)
        os.close(fd)


def longest_gap(acks: list[float], start: float, end: float) -> float:
    """The longest pause between consecutive acknowledged writes that began
    in [start - LEAD_S, end): a pause belongs to the event during which the
    writer last got an answer (the write before the event's first effect is
    acknowledged at most a pace before it), not to the next event during
    which it may end."""
    gaps = [b - a for a, b in zip(acks, acks[1:]) if start - LEAD_S <= a < end]
    return round(max(gaps, default=0.0), 3)


def ended(events_path: str) -> list[dict]:
    try:
        lines = Path(events_path).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [record for record in map(json.loads, filter(None, lines))
            if record["phase"] == "end"]


def main(argv: list[str]) -> int:
    count = int(argv[0])
    env = os.environ
    clock0 = float(env["SMBCA_CLOCK0"])
    run_dir = Path(env["SMBCA_RUN_DIR"])
    options = (f"vers=3.1.1,persistenthandles,hard,username={env['SMBCA_USER']},"
               f"password={env['SMBCA_PASSWORD']}")
    writers, points = {}, []
    try:
        for aggregate, (variable, share) in MOUNTS.items():
            point = run_dir / f"probe-{aggregate}"
            point.mkdir(exist_ok=True)
            subprocess.run(["mount", "-t", "cifs", f"//{env[variable]}/{share}", str(point),
                            "-o", options], check=True, timeout=120)
            points.append(point)
            writers[aggregate] = Writer(point / "probe.bin")
            writers[aggregate].start()
        while not all(len(w.acks) > 10 for w in writers.values()):
            time.sleep(0.2)
        Path(env["SMBCA_READY"]).touch()         # lab.py cluster --after-ready: events go
        print(f"failover-probe: writers on {', '.join(MOUNTS)} running", flush=True)
        deadline = time.monotonic() + WAIT_S
        while len(ended(env["SMBCA_EVENTS"])) < count and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(TAIL_S)
        for writer in writers.values():
            writer.stop.set()
        for writer in writers.values():
            writer.join(120)
        out = []
        records = [r for r in ended(env["SMBCA_EVENTS"]) if "start_s" in r]
        for record, following in zip(records, [*records[1:], None]):
            # the window: the event, then TAIL_S, but not into the next event
            start = clock0 + record["start_s"]
            end = clock0 + min(record["end_s"] + TAIL_S,
                               following["start_s"] - LEAD_S if following else float("inf"))
            out.append({"event": record["event"], "outcome": record["outcome"],
                        "start_s": record["start_s"], "took_s": record.get("took_s"),
                        "pause_s": {name: longest_gap(w.acks, start, end)
                                    for name, w in writers.items()},
                        "errors": {name: [e for t, e in w.errors if start <= t <= end]
                                   for name, w in writers.items()}})
        # every acknowledgement (seconds after COMMAND started), for the host
        (Path(env["SMBCA_WORKDIR"]) / "probe-acks.json").write_text(json.dumps(
            {name: [round(t - clock0, 4) for t in w.acks] for name, w in writers.items()}))
        print("failover-probe-json: " + json.dumps(
            {"events": out, "writes": {name: len(w.acks) for name, w in writers.items()},
             "errors": {name: len(w.errors) for name, w in writers.items()}}), flush=True)
        return 0
    finally:
        for writer in writers.values():
            writer.stop.set()
        for point in points:
            for flags in ((), ("-f",), ("-l",)):
                if subprocess.run(["mountpoint", "-q", str(point)]).returncode != 0:
                    break
                subprocess.run(["umount", *flags, str(point)], timeout=60, check=False)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
