"""Node B for test_mirror_loopback.py: a MirrorLink listening on 127.0.0.1:PORT
with a ReplicaEndpoint for aggr1 in STATE_DIR.  Prints "PORT <n>" once it
listens, then runs until killed.

usage: mirror_node_child.py STATE_DIR PORT
"""

import asyncio
import sys

from smbcad.cluster.mirror_link import MirrorLink, ReplicaEndpoint

KEY = b"cluster-key-for-tests-0123456789"


async def main(state_dir: str, port: int) -> None:
    link = MirrorLink(node_id="b", cluster_key=KEY, incarnation=1,
                      listen=("127.0.0.1", port), peer=("127.0.0.1", 9), peer_node_id="a")
    link.register(await ReplicaEndpoint.open(state_dir, "aggr1", link))
    await link.start()
    print(f"PORT {link.listen[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
