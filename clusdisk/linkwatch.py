"""The public ports' link state, read with netlink (pyroute2): the thin
I/O side of ``clusdisk.public_links``.  One RTM_GETLINK dump per reading, in
a thread (the daemon reads every ``READ_INTERVAL_S``).

A port is up when it is administratively up (IFF_UP) and has its carrier
(IFF_LOWER_UP: the veth peer, the switch port, the bond's slaves); otherwise
the reading says why: "admin down", "no carrier", or "missing" (no such
interface in this namespace).
"""

import asyncio

from pyroute2 import IPRoute

from clusdisk.public_links import Reading

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
READ_INTERVAL_S = 0.5


def reading_of(flags: int) -> Reading:
    if not flags & IFF_UP:
        return Reading(False, "admin down")
    if not flags & IFF_LOWER_UP:
        return Reading(False, "no carrier")
    return Reading(True)


class LinkReader:
    """``await read()`` -> {port: Reading} for ``ports``.
    ``iproute_factory()`` returns an object with IPRoute's ``get_links`` and
    ``close`` (tests pass one of their own only where netlink cannot run)."""

    def __init__(self, ports, *, iproute_factory=IPRoute, run_blocking=asyncio.to_thread) -> None:
        self.ports = frozenset(ports)
        self._iproute_factory = iproute_factory
        self._run_blocking = run_blocking

    async def read(self) -> dict[str, Reading]:
        return await self._run_blocking(self._read)

    def _read(self) -> dict[str, Reading]:
        ipr = self._iproute_factory()
        try:
            found = {}
            for link in ipr.get_links():
                name = link.get_attr("IFLA_IFNAME")
                if name in self.ports:
                    found[name] = reading_of(link["flags"])
        finally:
            ipr.close()
        return {port: found.get(port, Reading(False, "missing")) for port in self.ports}
