"""Child process of test_cluster_crash.py: runs one scenario on real files and
SIGKILLs itself when it reaches the named step.  It prints "A <n>" after a
change is acknowledged (the point where the mirror would ACK or answer),
"S <name>" before a multi-step change starts and "I <name>" once it returned.

usage: cluster_crash_child.py SCENARIO ROOT KILL_STEP
"""

import os
import signal
import sys

from smbcad.cluster import aggregate_state as ags
from smbcad.cluster.mirror_core import META_KEY, encode_position
from smbcad.cluster.replica import ReplicaStore

AGG = "aggr1"


def say(line: str) -> None:
    print(line, flush=True)


class Killer:
    """Kill at the n-th time (``name#n``, default 1) the armed step is reached."""

    def __init__(self, target: str) -> None:
        name, _, nth = target.partition("#")
        self.target, self.left = name, int(nth or 1)
        self.armed = False

    def __call__(self, name: str) -> None:
        if self.armed and name == self.target:
            self.left -= 1
            if self.left == 0:
                os.kill(os.getpid(), signal.SIGKILL)


def frame(mseq: int, epoch: int = 1, generation: int = 1) -> dict:
    """Frame mseq puts key mseq % 4 + 1 = b"v<mseq>" and removes key mseq % 4 + 2."""
    return {mseq % 4 + 1: b"v%d" % mseq, mseq % 4 + 2: None,
            META_KEY: encode_position(epoch, generation, mseq)}


SNAPSHOT = {10: b"s10", 11: b"s11", 12: b"s12", META_KEY: encode_position(2, 5, 20)}


def replica(root: str, kill: Killer) -> None:
    store = ReplicaStore(os.path.join(root, "state"), AGG, on_step=kill,
                         preallocate_bytes=4096)
    store.open()
    kill.armed = True
    for mseq in range(1, 7):
        kill(f"write-{mseq}")
        store.write(tuple(frame(mseq).items()))
        kill(f"write-{mseq}-durable")       # written, ACK not sent yet
        say(f"A {mseq}")
    store.snapshot_start()
    store.snapshot_write(tuple(SNAPSHOT.items()))
    say("S snapshot")
    store.install(2, 5, 20)
    say("I snapshot")
    kill("write-21")
    store.write(tuple(frame(21, 2, 5).items()))
    say("A 21")
    store.close()


def journal(root: str, kill: Killer) -> None:
    mount = os.path.join(root, "mount")
    jr = ags.Journal(mount, on_step=kill, preallocate_bytes=4096)
    kill.armed = True
    image = {1: b"i1", 2: b"i2", META_KEY: encode_position(1, 1, 10)}
    say("S reset")
    jr.reset(image)
    say("I reset")
    say("A 10")
    for mseq in range(11, 15):
        kill(f"append-{mseq}")
        jr.append(tuple(frame(mseq).items()))
        say(f"A {mseq}")
    jr.close()


def marker(root: str, kill: Killer) -> None:
    mount = os.path.join(root, "mount")
    ags.write_marker(mount, ags.Marker(1, 1, True))
    kill.armed = True
    say("S marker")
    ags.write_marker(mount, ags.Marker(1, 2, False), kill)
    say("I marker")


def adoption(root: str, kill: Killer) -> None:
    """Set up a degraded aggregate (marker outdated, journal), then adopt it."""
    state, mount = os.path.join(root, "state"), os.path.join(root, "mount")
    if not os.path.exists(os.path.join(root, "ready")):
        store = ReplicaStore(state, AGG)
        store.open()
        store.write(tuple(frame(1).items()))
        store.close()
        jr = ags.Journal(mount)
        jr.reset({1: b"j1", 7: b"j7", META_KEY: encode_position(1, 1, 3)})
        jr.append(tuple(frame(4).items()))
        jr.close()
        ags.write_marker(mount, ags.Marker(1, 1, False))
        open(os.path.join(root, "ready"), "w").close()
    found = ags.load_for_adoption(state, AGG, mount)
    kill.armed = True
    say(f"S adopt {found.epoch}")
    ags.commit_adoption(state, mount, found, kill)
    say(f"I adopt {found.epoch}")


def main() -> None:
    scenario, root, target = sys.argv[1:4]
    {"replica": replica, "journal": journal, "marker": marker,
     "adoption": adoption}[scenario](root, Killer(target))


if __name__ == "__main__":
    main()
