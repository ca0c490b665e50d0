"""The asyncio shell of the clusdisk peer channel (``clusdisk.peer_proto``):
TCP over the heartbeat interconnect, one listener per heartbeat link's
local address (port ``heartbeat.peer_port``), and a client that reaches the
partner at the first of its link addresses that answers.

A call is one connection: connect, hellos both ways, one request, its
response, close.  The requests a node answers are the ``handler``'s
(``clusdisk.operations``): placement, status, prepare, bring-up, witness,
and the forwarded operator verbs.  ``reachable`` and ``protocol`` say how
the last exchange with the partner went, for ``failover show``.
"""

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from clusdisk.errors import ClusdiskError
from clusdisk.peer_proto import (
    PROTOCOL_VERSION,
    Established,
    PeerRefused,
    PeerSession,
    Request,
    Response,
    derive_key,
)
from smbca.control import ControlError

log = logging.getLogger("clusdisk.peer")

PeerHandler = Callable[[str, dict], Awaitable[dict]]
READ_CHUNK = 65536


class PeerError(ClusdiskError):
    status = "peer"


class PeerChannel:
    def __init__(self, cluster_key: bytes, node_id: int, partner_id: int,
                 listen: tuple[tuple[str, int], ...], partner: tuple[tuple[str, int], ...],
                 handler: PeerHandler, *, version: int = PROTOCOL_VERSION,
                 connect_timeout_s: float = 2.0, nonce=lambda: os.urandom(16)) -> None:
        self.key = derive_key(cluster_key)
        self.node_id = node_id
        self.partner_id = partner_id
        self.listen = listen
        self.partner = partner
        self.handler = handler
        self.version = version
        self.connect_timeout_s = connect_timeout_s
        self._nonce = nonce
        self._servers: list[asyncio.AbstractServer] = []
        self.reachable: bool | None = None        # None: never tried
        self.protocol = f"v{version}"             # or the version mismatch, in words
        self.last_error = ""

    def _session(self) -> PeerSession:
        return PeerSession(self.key, self.node_id, self.partner_id, self._nonce(), self.version)

    # -- server ---------------------------------------------------------------------

    async def start(self) -> None:
        for host, port in self.listen:
            self._servers.append(await asyncio.start_server(self._serve, host, port))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()
        self._servers.clear()

    def bound_ports(self) -> list[int]:
        return [s.sockets[0].getsockname()[1] for s in self._servers]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        session = self._session()
        try:
            writer.write(session.hello())
            while data := await reader.read(READ_CHUNK):
                for event in session.receive(data):
                    if isinstance(event, Request):
                        writer.write(session.respond(event.id, await self._answer(event)))
                    elif isinstance(event, Established):
                        self._heard(f"v{event.partner_version}")
                await writer.drain()
        except PeerRefused as exc:
            self._refused(exc, peer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, request: Request) -> dict:
        try:
            return await self.handler(request.op, request.args)
        except (ClusdiskError, ControlError, ValueError, OSError) as exc:
            log.warning("peer request %s failed: %s", request.op, exc)
            return {"ok": False, "error": str(exc)}

    def _heard(self, protocol: str) -> None:
        self.reachable, self.protocol, self.last_error = True, protocol, ""

    def _refused(self, exc: PeerRefused, peer) -> None:
        if exc.reason == "version":
            log.error("clusdisk peer %s refused: %s", peer, exc)
            self.protocol = str(exc)
        else:
            log.warning("clusdisk peer %s refused (%s): %s", peer, exc.reason, exc)
        self.last_error = str(exc)

    # -- client ---------------------------------------------------------------------

    async def _connect(self):
        errors = []
        for host, port in self.partner:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    return await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as exc:
                errors.append(f"{host}:{port}: {exc or 'timed out'}")
        raise PeerError("partner unreachable on every link (" + "; ".join(errors) + ")")

    async def call(self, op: str, args: dict | None = None, timeout_s: float = 10.0) -> dict:
        """The partner's reply to one request (raises PeerError)."""
        try:
            reader, writer = await self._connect()
        except PeerError as exc:
            self.reachable, self.last_error = False, str(exc)
            raise
        session = self._session()
        try:
            async with asyncio.timeout(timeout_s):
                return await self._exchange(session, reader, writer, op, args)
        except PeerRefused as exc:
            self._refused(exc, writer.get_extra_info("peername"))
            self.reachable = False
            raise PeerError(str(exc)) from None
        except TimeoutError:
            self.reachable, self.last_error = False, f"no answer to {op} within {timeout_s} s"
            raise PeerError(self.last_error) from None
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self.reachable, self.last_error = False, f"{op}: connection lost ({exc})"
            raise PeerError(self.last_error) from None
        finally:
            writer.close()

    async def _exchange(self, session, reader, writer, op, args) -> dict:
        writer.write(session.hello())
        await writer.drain()
        sent = None
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                raise ConnectionResetError("closed by the partner")
            for event in session.receive(data):
                if isinstance(event, Established) and sent is None:
                    self._heard(f"v{event.partner_version}")
                    sent, frame = session.request(op, args)
                    writer.write(frame)
                    await writer.drain()
                elif isinstance(event, Response) and event.id == sent:
                    return event.reply
