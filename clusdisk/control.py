"""clusdisk's side of the local control protocol (``smbca.control``): what its
own socket answers, and the one-way events it sends to smbcad and witnessd
(``smbca.events``).

- its socket answers ``{"command": "status"}`` (or the bare word
  ``status``) with ``{"ok": true, "status": {...}}`` (membership and
  ownership, for ``smbca status`` and ``clusdisk status``);
- to smbcad: ``AggregateAdopt`` / ``AggregateRelease`` of an aggregate;
- to witnessd: one ``InterfaceState`` per LIF of the aggregate ([MS-SWN]
  3.1.6.1).

A peer answers ``{"ok": true, ...}`` or ``{"ok": false, "error": TEXT}``.
"""

import ipaddress
import logging
from collections.abc import Callable

from clusdisk.errors import ClusdiskError
from smbca import events
from smbca.control import ControlError, Handler, request

log = logging.getLogger("clusdisk.control")


def status_handler(status_provider: Callable[[], dict]) -> Handler:
    """A control socket handler that answers ``status`` only (the planned
    operations' handler is ``clusdisk.operations.Operations.control``)."""
    def handle(message: dict) -> dict:
        command = message.get("command")
        if command != "status":
            raise ControlError(f"unknown command {command!r}")
        return {"status": status_provider()}
    return handle


class Notifier:
    """Events to smbcad and witnessd.  A peer without a configured socket is
    skipped (logged); a configured peer that does not acknowledge raises
    ControlError, which fails a bring-up step."""

    def __init__(self, node_id: int, smbcad_socket: str | None = None,
                 witnessd_socket: str | None = None, timeout_s: float = 10.0,
                 node_name: str | None = None) -> None:
        self.node_id = node_id
        self.node_name = node_name or f"node{node_id}"
        self.smbcad_socket = smbcad_socket
        self.witnessd_socket = witnessd_socket
        self.timeout_s = timeout_s

    async def _send(self, path: str | None, peer: str, event: events.Event) -> dict:
        message = event.to_json()
        if path is None:
            log.debug("no %s socket configured; not sending %s", peer, message)
            return {}
        reply = await request(path, message, self.timeout_s)
        if not reply.get("ok"):
            raise ControlError(f"{peer} refused {message}: "
                               f"{reply.get('error', 'no reason given')}")
        return reply

    async def smbcad(self, event: str, aggregate, *, planned: bool = False,
                     clients_cut_off: bool = False) -> dict:
        """``event``: "adopt" or "release" (``planned``: a giveback or
        relocation; ``clients_cut_off``: this node's public links are down).
        Returns smbcad's reply (an adopt's may list ``"tickles"``: [client
        ip, client port, server ip, server port])."""
        if event == "adopt":
            message = events.AggregateAdopt(aggregate.name, aggregate.mount_point, self.node_id)
        else:
            message = events.AggregateRelease(aggregate.name, aggregate.mount_point,
                                              self.node_id, planned, clients_cut_off)
        return await self._send(self.smbcad_socket, "smbcad", message)

    async def partner_tickles(self, aggregate) -> list:
        """smbcad's copy of the partner's client connections on ``aggregate``'s
        LIFs (for a LIF moved alone); [] when smbcad cannot say."""
        if self.smbcad_socket is None:
            return []
        try:
            reply = await request(self.smbcad_socket, {"command": "tickles",
                                                       "aggregate": aggregate.name},
                                  self.timeout_s)
        except ControlError as exc:
            log.warning("no tickle list for %s from smbcad: %s", aggregate.name, exc)
            return []
        if not reply.get("ok"):
            log.warning("no tickle list for %s from smbcad: %s", aggregate.name,
                        reply.get("error", "no reason given"))
            return []
        return reply.get("tickles") or []

    async def witness_event(self, event: events.Event) -> None:
        """One event to the local witnessd as it is (forwarded by the partner)."""
        await self._send(self.witnessd_socket, "witnessd", event)

    async def witness(self, event: str, aggregate) -> None:
        """``event``: "online" or "offline"; one message per LIF."""
        state = events.Availability.AVAILABLE if event == "online" \
            else events.Availability.UNAVAILABLE
        for lif in aggregate.lifs:
            address = ipaddress.ip_interface(lif.address).ip
            await self._send(self.witnessd_socket, "witnessd",
                             events.InterfaceState(self.node_name, state, (address,)))


PEER_TIMEOUT_S = 5.0


class PairNotifier:
    """The local notifier, with every witness event also forwarded to the
    partner's witnessd (best effort, while its heartbeat is heard), so both
    witnessd instances hear every event (issue 11 items 2, 5)."""

    def __init__(self, notifier, peer, partner_alive) -> None:
        self.notifier = notifier
        self.peer = peer
        self.partner_alive = partner_alive

    async def smbcad(self, event: str, aggregate, *, planned: bool = False,
                     clients_cut_off: bool = False) -> dict:
        return await self.notifier.smbcad(event, aggregate, planned=planned,
                                          clients_cut_off=clients_cut_off)

    async def partner_tickles(self, aggregate) -> list:
        return await self.notifier.partner_tickles(aggregate)

    async def witness(self, event: str, aggregate) -> None:
        await self.notifier.witness(event, aggregate)
        if self.peer is None or not self.partner_alive():
            return
        state = events.Availability.AVAILABLE if event == "online" \
            else events.Availability.UNAVAILABLE
        for lif in aggregate.lifs:
            message = events.InterfaceState(self.notifier.node_name, state,
                                            (ipaddress.ip_interface(lif.address).ip,))
            try:
                await self.peer.call("witness", {"event": message.to_json()}, PEER_TIMEOUT_S)
            except ClusdiskError as exc:
                log.warning("witness event not forwarded to the partner: %s", exc)
