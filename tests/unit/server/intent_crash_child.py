"""smbcad's server and handle store in a process that SIGKILLs itself when
the store is about to write the record of the open a persistent CREATE
made: after its intent is durable and the file is made (or overwritten),
before the open's record reaches the disk and before any answer.

    python intent_crash_child.py SHARE_DIR STATE_DIR NAME DISPOSITION [USER PASSWORD]

Prints ``INTENT <DurableFileId>`` once the intent is written, then dies by
SIGKILL inside the engine's write of the open's record (the kill point is
reached deterministically: no timing).  The parent restarts a server on the
same directories and replays the CREATE.
"""

import asyncio
import os
import signal
import sys

from smbcad.store import LocalHandleStore, LogEngine, decode
from tests.unit.server import harness
from tests.unit.server.ca_client import CaClient, make_ca_server


class KillBeforeOpenRecord(LogEngine):
    """The real log engine; it dies at the first write carrying an open's record."""

    def write(self, changes) -> None:
        for key, blob in changes.items():
            if blob is None:
                continue
            if decode(blob).create_intent is None:
                os.kill(os.getpid(), signal.SIGKILL)
            super().write(changes)
            print(f"INTENT {key}", flush=True)
            return
        super().write(changes)


async def main(share_dir: str, state_dir: str, name: str, disposition: int,
               user: str = harness.USER, password: str = harness.PASSWORD) -> None:
    server = make_ca_server(share_dir, state_dir, user, password)
    await server.start_local_shares(
        await LocalHandleStore.open(KillBeforeOpenRecord(os.path.join(state_dir, "handles"))))
    client = await CaClient(server).login(user, password)
    reply = await client.create(name, disposition)
    print(f"ANSWERED {reply[8:12].hex()}", flush=True)      # must not happen


if __name__ == "__main__":
    share, state, name, disposition, *login = sys.argv[1:]
    sys.exit(asyncio.run(main(share, state, name, int(disposition), *login)))
