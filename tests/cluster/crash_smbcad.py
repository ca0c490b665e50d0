"""``python -m smbcad`` that SIGKILLs itself at a fixed point of a persistent
CREATE on an aggregate's mirrored store: the CREATE's intent is committed
(durable here, acknowledged by the partner's replica) and the file is made,
then the commit of the open's own record starts and the process dies before
that record leaves it, so neither copy has it and the client has no answer.

Only opens whose file name starts with ``crash`` die (every other commit
passes), so the kill point is reached deterministically, not by timing.
Used by tests/cluster/test_cluster_create_replay.py; the arguments are
smbcad's.
"""

import os
import signal
import sys

from smbcad.cli import main
from smbcad.cluster.mirrored_engine import MirroredEngine
from smbcad.store import StoreError, decode

_begin = MirroredEngine.begin


def _open_record_of_a_crash_file(blob: bytes | None) -> bool:
    if blob is None:
        return False
    try:
        record = decode(blob)
    except (StoreError, ValueError):
        return False                      # the mirror's own position record
    return (record.create_intent is None
            and os.path.basename(record.path.replace("\\", "/")).startswith("crash"))


def begin_or_die(self, changes):
    if any(_open_record_of_a_crash_file(blob) for blob in changes.values()):
        os.kill(os.getpid(), signal.SIGKILL)
    return _begin(self, changes)


MirroredEngine.begin = begin_or_die

if __name__ == "__main__":
    sys.exit(main())
