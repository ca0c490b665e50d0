"""One clusdisk process of the cluster tier, on LUNs served by lun_server.py
(no SCSI target on this machine): the real daemon (arbitration, heartbeat,
peer channel, control socket, placement, LIFs with the real LifMover in the
node's namespace), with only its disks and its host operations replaced.

    python clusdisk_node.py CONFIG LUN_SOCKET

- Disks: every LUN of the configuration through this node's nexus (its
  node id - 1), as the LUN lab's two initiators.
- Host operations: the aggregates have no filesystem; "mount" and the
  other block-device steps are recorded in ``<state_dir>/host.log``.  A mount
  waits while ``<state_dir>/hold-mount-<aggregate>`` exists (a test holds
  a bring-up half-way with it).
"""

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lun_server import RemoteLun  # noqa: E402

from clusdisk import config as config_mod  # noqa: E402
from clusdisk.daemon import Daemon  # noqa: E402
from clusdisk.disks import LunPath  # noqa: E402
from smbca.config import SystemdEnv  # noqa: E402

HOLD_POLL_S = 0.05


class DirectoryHost:
    """HostOps for aggregates without a filesystem: each step is a line in
    ``host.log``; a mount can be held by a file."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)

    def _log(self, step: str, aggregate) -> None:
        with open(os.path.join(self.state_dir, "host.log"), "a", encoding="utf-8") as log:
            log.write(f"{time.monotonic():.3f} {step} {aggregate.name}\n")

    def set_writable(self, aggregate, block):
        self._log("writable", aggregate)

    def set_read_only(self, aggregate, block):
        self._log("read-only", aggregate)

    def check_filesystem(self, aggregate, block):
        self._log("fsck", aggregate)

    def mount(self, aggregate, block):
        hold = os.path.join(self.state_dir, f"hold-mount-{aggregate.name}")
        if os.path.exists(hold):
            self._log("mount-held", aggregate)
            while os.path.exists(hold):
                time.sleep(HOLD_POLL_S)
        self._log("mount", aggregate)

    def unmount(self, aggregate, block):
        self._log("unmount", aggregate)


def lun_paths(cfg, names: dict[str, str]) -> list[LunPath]:
    """Every LUN through both nexuses: host 0 is node 1's, host 1 node 2's."""
    return [LunPath(f"/dev/sg{host}-{name}", f"{host}:0:0:{index}", f"/dev/sd-{host}-{name}",
                    designators=(designator,))
            for host in (0, 1) for index, (name, designator) in enumerate(names.items())]


def main(config_path: str, lun_socket: str) -> int:
    cfg = config_mod.load_yaml(config_path)
    logging.basicConfig(level=cfg.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {cfg.me.name} %(name)s %(levelname)s %(message)s")
    names = {"quorum": cfg.quorum_disk, **{a.name: a.disk for a in cfg.aggregates}}
    by_sg = {f"/dev/sg{host}-{name}": (host, name) for host in (0, 1) for name in names}
    remotes = {name: RemoteLun(lun_socket, name) for name in names}

    def device_factory(path, **kwargs):
        host, name = by_sg[path]
        return remotes[name].device(host, **kwargs)

    daemon = Daemon(cfg, SystemdEnv(), luns=lun_paths(cfg, names), device_factory=device_factory,
                    host=DirectoryHost(cfg.state_dir), mounted=lambda block: ())
    return asyncio.run(daemon.run())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
