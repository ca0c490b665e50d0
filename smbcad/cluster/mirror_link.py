"""The mirror's link to the partner: one authenticated TCP connection
carrying every aggregate's mirror traffic (issue 10 item 5;
shared/reference/cluster.md §7(a) "Ordering").

``MirrorLink`` keeps one connection per node pair over the heartbeat
interconnect, with TCP_NODELAY (a lone commit waits for one small frame each
way).  Both nodes listen; the node whose ``node_id`` sorts first dials and
redials with exponential backoff, so exactly one connection exists.  Each
connection runs a ``mirror_proto.MirrorConnection`` (fresh nonce, HELLO with
the positions of every registered aggregate); the link routes the peer's
HELLO and messages to the ``Endpoint`` registered for the aggregate
(APPEND/SNAPSHOT_* to a replica, ACK/REFUSE to a primary).  A dropped frame
(bad MAC, replayed counter) or a failed handshake closes the connection: a
clean TCP stream never produces one, and the mirror resyncs on the next.

Threads.  The event loop listens, dials and accepts; a connected socket is
handed to a ``mirror_wire.MirrorWire``, whose own thread reads it and calls
the link's ``wire_events``/``wire_closed`` there, so the endpoints' callbacks
(``on_connected``, ``on_message``, ``on_batch_end``, ``on_connection_lost``)
run on that connection thread (``on_connected`` also on the loop, from
``register``).  A replica (``replica_endpoint.ReplicaEndpoint``) writes and
ACKs right there; a primary (``MirroredEngine``) steps its core and wakes
the loop once per batch.  ``send``, ``drop`` and ``unregister`` may be called
from any thread.  ``_route_lock`` orders a connection's HELLO and its end
against ``register``, so an endpoint sees each connection open once and
close once, in that order; a connection starts only once the previous one's
thread has ended.
"""

import asyncio
import logging
import secrets
import socket
import threading
from typing import Protocol

from smbcad.cluster.mirror_proto import (
    FEATURE_TICKLES, FEATURES, NONCE_BYTES, AggregatePosition, ConnectionFailed, Event,
    FrameDropped, Hello, Message, MessageReceived, MirrorConnection, PeerHello, Role, Tickle,
    Tickles)
from smbcad.cluster.mirror_wire import MirrorWire
from smbcad.cluster.replica_endpoint import ReplicaEndpoint

__all__ = ["Endpoint", "MirrorLink", "ReplicaEndpoint"]

log = logging.getLogger("smbcad.cluster")
# A connection accepted while another is up must prove itself (an authenticated
# HELLO from the partner) within this, or it goes.
CANDIDATE_HELLO_S = 5.0


class Endpoint(Protocol):
    """One aggregate's side of the mirror, as the link sees it.  Called on
    the connection thread (module docstring), ``position`` also on the loop."""

    aggregate: str

    def position(self) -> AggregatePosition: ...

    def on_connected(self, peer: AggregatePosition) -> None: ...

    def on_message(self, message: Message) -> None: ...

    def on_batch_end(self) -> None:
        """Every message of one read has been given to ``on_message``."""

    def on_connection_lost(self) -> None: ...

    def waits_for_acks(self) -> bool:
        """A primary with commits the partner has not acknowledged yet (any
        thread, no lock: a hint for ``MirrorLink.may_write_inline``)."""


class MirrorLink:
    def __init__(self, *, node_id: str, cluster_key: bytes, incarnation: int,
                 listen: tuple[str, int], peer: tuple[str, int], peer_node_id: str,
                 backoff_s: tuple[float, float] = (0.05, 2.0),
                 features: int = FEATURES) -> None:
        if node_id == peer_node_id:
            raise ValueError("node_id and peer_node_id must differ")
        self.node_id = node_id
        self.incarnation = incarnation
        self.listen = listen
        self.peer = peer
        self.peer_node_id = peer_node_id
        self.dials = node_id < peer_node_id
        self.backoff_s = backoff_s
        self.features = features                 # what our HELLO says we understand
        self._key = cluster_key
        self._loop: asyncio.AbstractEventLoop | None = None
        # Replaced, never changed in place: the connection thread reads it unlocked.
        self._endpoints: dict[str, Endpoint] = {}
        self._route_lock = threading.Lock()      # _endpoints, _open_wire, _peer_hello
        self._wire: MirrorWire | None = None     # the connection, from accept/dial to its end
        self._open_wire: MirrorWire | None = None   # ... once the peer's HELLO was taken
        # Accepted while another connection was up, not yet proven by a HELLO.
        self._candidates: set[MirrorWire] = set()
        self._peer_hello: Hello | None = None
        self._listener: socket.socket | None = None
        self._acceptor: asyncio.Task | None = None
        self._dialer: asyncio.Task | None = None
        self._runs: set[asyncio.Task] = set()
        self._connected = asyncio.Event()
        self._closed = False
        self.connects = 0
        self.drops = 0
        self.refused_peers = 0
        self.dropped_frames: dict[str, int] = {}    # bad MAC, replayed counter, ... → count
        # Tickle lists (cluster.md §1.3): ours go to the partner after every
        # change and again on each new connection; the partner's are kept
        # after its connection is gone, which is when they are needed.
        self._local_tickles: dict[str, tuple[Tickle, ...]] = {}
        self.partner_tickles: dict[str, tuple[Tickle, ...]] = {}

    # --- registration and sending ---------------------------------------------------

    def register(self, endpoint: Endpoint) -> None:
        """Add an aggregate (loop); if the link is up, it connects at once with
        the position the peer sent in its HELLO (a stale one only costs a
        REFUSE(GAP))."""
        with self._route_lock:
            self._endpoints = {**self._endpoints, endpoint.aggregate: endpoint}
            if self._peer_hello is not None:
                endpoint.on_connected(self._peer_position(self._peer_hello,
                                                          endpoint.aggregate))

    @staticmethod
    def _peer_position(hello: Hello, aggregate: str) -> AggregatePosition:
        for position in hello.aggregates:
            if position.aggregate == aggregate:
                return position
        return AggregatePosition(aggregate, Role.NONE, 0, 0, 0)

    def unregister(self, aggregate: str) -> None:
        """Any thread."""
        with self._route_lock:
            self._endpoints = {name: endpoint for name, endpoint in self._endpoints.items()
                               if name != aggregate}

    def send(self, message: Message) -> bool:
        """Queue a message on the connection (any thread); False if there is
        none or its handshake has not finished (the HELLO resyncs)."""
        wire = self._wire
        return wire is not None and wire.send(message)

    def set_tickles(self, aggregate: str, connections: tuple[Tickle, ...]) -> None:
        """This node's client connections on ``aggregate``'s LIFs, all of them."""
        self._local_tickles = {**self._local_tickles, aggregate: connections}
        self._send_tickles(aggregate)

    def _send_tickles(self, aggregate: str) -> None:
        wire = self._open_wire
        if wire is not None and wire.conn.peer_features & FEATURE_TICKLES:
            self.send(Tickles(aggregate, self._local_tickles[aggregate]))

    def take_partner_tickles(self, aggregate: str) -> tuple[Tickle, ...]:
        """The partner's last tickle list of ``aggregate``, forgotten once
        taken (the connections it names are gone once it is used)."""
        return self.partner_tickles.pop(aggregate, ())

    def drop(self, reason: str) -> None:
        """Close the connection (any thread); the dialer redials."""
        wire = self._wire
        if wire is not None and not wire.closing:
            log.warning("mirror link to %s: closing: %s", self.peer, reason)
            wire.close()

    def may_write_inline(self) -> bool:
        """Whether a replica may fdatasync on the connection thread: not while
        an aggregate this node owns waits for an ACK that would queue behind
        it (``replica_endpoint``)."""
        return not any(endpoint.waits_for_acks() for endpoint in self._endpoints.values())

    @property
    def is_open(self) -> bool:
        return self._peer_hello is not None

    async def wait_open(self) -> None:
        await self._connected.wait()

    # --- lifecycle (loop) -------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        host, port = self.listen
        family, _, _, _, address = (await self._loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE))[0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(8)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.listen = listener.getsockname()[:2]
        self._acceptor = self._loop.create_task(self._accept_forever())
        if self.dials:
            self._dialer = self._loop.create_task(self._dial_forever())

    async def stop(self) -> None:
        self._closed = True
        for task in (self._dialer, self._acceptor):
            if task is not None:
                task.cancel()
        if self._listener is not None:
            self._listener.close()
        wire = self._wire
        if wire is not None:
            wire.close()
            await asyncio.to_thread(wire.join)
        tasks = [task for task in (self._dialer, self._acceptor, *self._runs)
                 if task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _dial_forever(self) -> None:
        delay = self.backoff_s[0]
        while not self._closed:
            try:
                sock = await self._dial()
            except OSError as exc:
                log.debug("mirror link: dial %s failed: %s", self.peer, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            delay = self.backoff_s[0]
            await self._run(sock)
            if not self._closed:
                await asyncio.sleep(self.backoff_s[0])

    async def _dial(self) -> socket.socket:
        host, port = self.peer
        family, kind, proto, _, address = (await self._loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM))[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await self._loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _accept_forever(self) -> None:
        while not self._closed:
            try:
                sock, _ = await self._loop.sock_accept(self._listener)
            except OSError as exc:
                if self._closed:
                    return
                log.warning("mirror link: accept failed: %s", exc)
                await asyncio.sleep(self.backoff_s[0])
                continue
            if self.dials or self._candidates:
                # We dial; or a second new connection is already proving itself.
                sock.close()
                continue
            # A connection may exist already: a partner that lost power or its
            # link sent no FIN, and it dials again after its restart.  The new
            # one replaces the old once its HELLO is authenticated (``_hello``);
            # until then the old one keeps serving.
            task = self._loop.create_task(self._run(sock, candidate=self._wire is not None))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    # --- one connection ------------------------------------------------------------

    async def _run(self, sock: socket.socket, candidate: bool = False) -> None:
        """Hand ``sock`` to a connection thread and wait for its end; a
        ``candidate`` arrived while another connection was up."""
        loop = self._loop
        ended = loop.create_future()

        def exited() -> None:                    # the connection thread, last thing
            try:
                loop.call_soon_threadsafe(_resolve, ended)
            except RuntimeError:
                pass                             # the loop is gone: nobody waits
        hello = Hello(self.node_id, secrets.token_bytes(NONCE_BYTES), self.incarnation,
                      tuple(endpoint.position() for endpoint in self._endpoints.values()))
        try:
            wire = MirrorWire(sock, MirrorConnection(self._key, hello, self.features), self,
                              name=f"smbcad-mirror-{self.peer_node_id}", on_exit=exited)
        except OSError:
            sock.close()
            raise
        if candidate:
            self._candidates.add(wire)
        else:
            self._wire = wire
        wire.start()
        try:
            if candidate:
                try:
                    async with asyncio.timeout(CANDIDATE_HELLO_S):
                        await asyncio.shield(ended)
                except TimeoutError:
                    if wire in self._candidates:     # no authenticated HELLO: not our partner
                        log.warning("mirror link: a second connection sent no valid HELLO "
                                    "in %.0f s: closing it", CANDIDATE_HELLO_S)
                        wire.close()
            await ended
        finally:
            wire.close()
            self._candidates.discard(wire)
            if self._wire is wire:
                self._wire = None

    def wire_events(self, wire: MirrorWire, events: list[Event]) -> None:
        """Connection thread: route what one read brought."""
        touched: dict[str, Endpoint] = {}
        try:
            for event in events:
                if not self._event(wire, event, touched):
                    wire.close()
                    return
        finally:
            for endpoint in touched.values():
                endpoint.on_batch_end()

    def _event(self, wire: MirrorWire, event: Event, touched: dict[str, Endpoint]) -> bool:
        """One event; False closes the connection."""
        match event:
            case PeerHello(hello) if hello.node_id != self.peer_node_id:
                # Right key, wrong node (a miswired interconnect, a third node).
                log.warning("mirror link: HELLO from %r, expected %r: closing",
                            hello.node_id, self.peer_node_id)
                self.refused_peers += 1
                return False
            case PeerHello(hello):
                self._hello(wire, hello)
            case MessageReceived(Tickles(aggregate, connections)):
                self.partner_tickles[aggregate] = connections
            case MessageReceived(message):
                endpoint = self._endpoints.get(message.aggregate)
                if endpoint is None:
                    log.warning("mirror link: %s for unknown aggregate %s",
                                type(message).__name__, message.aggregate)
                    return True
                endpoint.on_message(message)
                touched[message.aggregate] = endpoint
            case FrameDropped(reason, counter):
                log.warning("mirror link: frame %d dropped (%s)", counter, reason.value)
                self.dropped_frames[reason.value] = self.dropped_frames.get(reason.value, 0) + 1
                return False
            case ConnectionFailed(reason):
                log.warning("mirror link: connection failed: %s", reason)
                return False
        return True

    def _hello(self, wire: MirrorWire, hello: Hello) -> None:
        old = self._open_wire if self._open_wire is not wire else None
        if old is not None:
            # The partner proved itself on a new connection: the old one is
            # dead (no FIN reached us) and goes, as if it had dropped.
            log.warning("mirror link: %s (incarnation %d) connected again: closing the old "
                        "connection", hello.node_id, hello.incarnation)
            old.close()
            self.wire_closed(old)
        self._candidates.discard(wire)
        self._wire = wire
        with self._route_lock:
            self._open_wire, self._peer_hello = wire, hello
            self.connects += 1
            log.info("mirror link: %s (incarnation %d) connected", hello.node_id,
                     hello.incarnation)
            for name, endpoint in self._endpoints.items():
                endpoint.on_connected(self._peer_position(hello, name))
        self._loop.call_soon_threadsafe(self._connected.set)
        for name in self._local_tickles:
            self._send_tickles(name)

    def wire_closed(self, wire: MirrorWire) -> None:
        """Connection thread, once its connection is over."""
        with self._route_lock:
            if self._open_wire is not wire:
                return
            self._open_wire = self._peer_hello = None
            self.drops += 1
            endpoints = list(self._endpoints.values())
        # Outside the lock (a failing replica unregisters itself); the next
        # connection starts only after this thread has ended (``_run``).
        for endpoint in endpoints:
            endpoint.on_connection_lost()
        try:
            self._loop.call_soon_threadsafe(self._connected.clear)
        except RuntimeError:
            pass                                 # the loop is gone


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
