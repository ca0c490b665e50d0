"""The mirror's asyncio side: one authenticated TCP connection to the partner
carrying every aggregate's mirror traffic, and the replica's driver
(issue 10 item 5; shared/reference/cluster.md §7(a) "Ordering").

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

``ReplicaEndpoint`` drives a ``ReplicaMirror`` on the loop and carries out its
disk actions with a ``ReplicaStore`` on one writer thread, in order, with
group commit: the APPENDs that arrive while the log is syncing are written
next as one frame with one fdatasync, their completions come back to the loop
in one wake-up, and only the last ACK is sent (ACKs are cumulative).

Everything here runs on the event loop thread; ``send`` must be called
there (``MirroredEngine`` sends from the loop, through its outbox).
"""

import asyncio
import logging
import secrets
import socket
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Protocol

from smbcad.cluster.mirror_core import Action, ReplicaWrite, Send
from smbcad.cluster.mirror_proto import (
    FEATURE_TICKLES, FEATURES, NONCE_BYTES, Ack, AggregatePosition, Append, ConnectionFailed,
    FrameDropped, Hello, Message, MessageReceived, MirrorConnection, PeerHello, ProtocolError,
    Refuse, Role, SnapshotBegin, SnapshotChunk, SnapshotEnd, Tickle, Tickles)
from smbcad.cluster.replica import ReplicaStore
from smbcad.cluster.replica_core import ReplicaMirror

log = logging.getLogger("smbcad.cluster")

_READ_BYTES = 1 << 16


class Endpoint(Protocol):
    """One aggregate's side of the mirror, as the link sees it (loop thread)."""

    aggregate: str

    def position(self) -> AggregatePosition: ...

    def on_connected(self, peer: AggregatePosition) -> None: ...

    def on_message(self, message: Message) -> None: ...

    def on_connection_lost(self) -> None: ...


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
        self._endpoints: dict[str, Endpoint] = {}
        self._conn: MirrorConnection | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.AbstractServer | None = None
        self._dialer: asyncio.Task | None = None
        self._readers: set[asyncio.Task] = set()
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

    # --- registration and sending (loop thread) -------------------------------------

    def register(self, endpoint: Endpoint) -> None:
        """Add an aggregate; if the link is up, it connects at once with the
        position the peer sent in its HELLO (a stale one only costs a REFUSE(GAP))."""
        self._endpoints[endpoint.aggregate] = endpoint
        if self.is_open:
            endpoint.on_connected(self._peer_position(self._conn.peer_hello,
                                                      endpoint.aggregate))

    @staticmethod
    def _peer_position(hello: Hello, aggregate: str) -> AggregatePosition:
        for position in hello.aggregates:
            if position.aggregate == aggregate:
                return position
        return AggregatePosition(aggregate, Role.NONE, 0, 0, 0)

    def unregister(self, aggregate: str) -> None:
        self._endpoints.pop(aggregate, None)

    def send(self, message: Message) -> bool:
        """Queue a message on the open connection; False if there is none."""
        if self._conn is None or self._writer is None or self._writer.is_closing():
            return False
        try:
            self._conn.send(message)
        except ProtocolError:
            return False                     # handshake not finished: the HELLO resyncs
        self._writer.write(self._conn.data_to_send())
        return True

    def set_tickles(self, aggregate: str, connections: tuple[Tickle, ...]) -> None:
        """This node's client connections on ``aggregate``'s LIFs, all of them."""
        self._local_tickles[aggregate] = connections
        self._send_tickles(aggregate)

    def _send_tickles(self, aggregate: str) -> None:
        if self.is_open and self._conn.peer_features & FEATURE_TICKLES:
            self.send(Tickles(aggregate, self._local_tickles[aggregate]))

    def take_partner_tickles(self, aggregate: str) -> tuple[Tickle, ...]:
        """The partner's last tickle list of ``aggregate``, forgotten once
        taken (the connections it names are gone once it is used)."""
        return self.partner_tickles.pop(aggregate, ())

    def drop(self, reason: str) -> None:
        if self._writer is not None:
            log.warning("mirror link to %s: closing: %s", self.peer, reason)
            self._writer.close()

    @property
    def is_open(self) -> bool:
        return (self._conn is not None and self._conn.peer_hello is not None
                and self._conn.peer_hello.node_id == self.peer_node_id)

    async def wait_open(self) -> None:
        await self._connected.wait()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, *self.listen)
        self.listen = self._server.sockets[0].getsockname()[:2]
        if self.dials:
            self._dialer = asyncio.get_running_loop().create_task(self._dial_forever())

    async def stop(self) -> None:
        self._closed = True
        if self._dialer is not None:
            self._dialer.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._writer is not None:
            self._writer.close()
        for task in list(self._readers):
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    async def _dial_forever(self) -> None:
        delay = self.backoff_s[0]
        while not self._closed:
            try:
                reader, writer = await asyncio.open_connection(*self.peer)
            except OSError as exc:
                log.debug("mirror link: dial %s failed: %s", self.peer, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            delay = self.backoff_s[0]
            await self._run(reader, writer)
            if not self._closed:
                await asyncio.sleep(self.backoff_s[0])

    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        if self.dials or self._conn is not None:
            writer.close()                   # we dial, or a connection exists already
            return
        await self._run(reader, writer)

    # --- one connection ------------------------------------------------------------

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._readers.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hello = Hello(self.node_id, secrets.token_bytes(NONCE_BYTES), self.incarnation,
                      tuple(endpoint.position() for endpoint in self._endpoints.values()))
        conn = MirrorConnection(self._key, hello, self.features)
        self._conn, self._writer = conn, writer
        writer.write(conn.data_to_send())
        try:
            while not writer.is_closing():
                data = await reader.read(_READ_BYTES)
                if not data:
                    break
                for event in conn.receive_data(data):
                    self._event(event, writer)
        except (ConnectionError, OSError) as exc:
            log.info("mirror link to %s lost: %s", self.peer, exc)
        finally:
            self._readers.discard(task)
            writer.close()
            if self._conn is conn:
                was_open = (conn.peer_hello is not None
                            and conn.peer_hello.node_id == self.peer_node_id)
                self._conn = self._writer = None
                self._connected.clear()
                if was_open:
                    self.drops += 1
                    for endpoint in list(self._endpoints.values()):
                        endpoint.on_connection_lost()

    def _event(self, event, writer: asyncio.StreamWriter) -> None:
        match event:
            case PeerHello(hello) if hello.node_id != self.peer_node_id:
                # Right key, wrong node (a miswired interconnect, a third node).
                log.warning("mirror link: HELLO from %r, expected %r: closing",
                            hello.node_id, self.peer_node_id)
                self.refused_peers += 1
                writer.close()
            case PeerHello(hello):
                self.connects += 1
                self._connected.set()
                log.info("mirror link: %s (incarnation %d) connected", hello.node_id,
                         hello.incarnation)
                for name, endpoint in list(self._endpoints.items()):
                    endpoint.on_connected(self._peer_position(hello, name))
                for name in list(self._local_tickles):
                    self._send_tickles(name)
            case MessageReceived(Tickles(aggregate, connections)):
                self.partner_tickles[aggregate] = connections
            case MessageReceived(message):
                endpoint = self._endpoints.get(message.aggregate)
                if endpoint is None:
                    log.warning("mirror link: %s for unknown aggregate %s",
                                type(message).__name__, message.aggregate)
                    return
                endpoint.on_message(message)
            case FrameDropped(reason, counter):
                log.warning("mirror link: frame %d dropped (%s)", counter, reason.value)
                self.dropped_frames[reason.value] = self.dropped_frames.get(reason.value, 0) + 1
                writer.close()
            case ConnectionFailed(reason):
                log.warning("mirror link: connection failed: %s", reason)
                writer.close()


_REPLICA_MESSAGES = (Append, SnapshotBegin, SnapshotChunk, SnapshotEnd)


class ReplicaEndpoint:
    """The replica of ``aggregate`` on this node: ``ReplicaMirror`` on the loop,
    ``ReplicaStore`` on one writer thread."""

    def __init__(self, store: ReplicaStore, link: MirrorLink,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.aggregate = store.aggregate
        self._store = store
        self._link = link
        self._loop = loop
        epoch, generation, mseq = store.position()
        self.core = ReplicaMirror(self.aggregate, epoch=epoch, generation=generation,
                                  mseq=mseq, highest_epoch=store.highest_epoch)
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix=f"smbcad-replica-{self.aggregate}")
        self._lock = threading.Lock()
        self._queue: deque[Action] = deque()     # disk actions not yet taken by the writer
        self._writing = False                    # a writer run is queued or running
        self.failure: BaseException | None = None

    @classmethod
    async def open(cls, state_dir: str, aggregate: str, link: MirrorLink) -> "ReplicaEndpoint":
        store = ReplicaStore(state_dir, aggregate)
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(store.open)
        return cls(store, link, loop)

    def position(self) -> AggregatePosition:
        return self.core.position()

    def on_connected(self, peer: AggregatePosition) -> None:
        self._do(self.core.connected())

    def on_message(self, message: Message) -> None:
        if self.failure is not None:
            return                   # never ACK after a failed write
        if isinstance(message, _REPLICA_MESSAGES):
            self._do(self.core.received_message(message))
        elif isinstance(message, (Ack, Refuse)):
            log.warning("%s: %s for a replica", self.aggregate, type(message).__name__)

    def on_connection_lost(self) -> None:
        self._do(self.core.connection_lost())

    def _do(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._link.send(action.message)
                continue
            with self._lock:
                self._queue.append(action)
                if self._writing:
                    continue                 # the writer takes it with its next group
                self._writing = True
            self._executor.submit(self._disk)

    def _disk(self) -> None:
        """Writer thread: every queued disk action, in order, consecutive
        ReplicaWrites as one frame (one fdatasync); then one wake-up of the
        loop with the completed actions."""
        while self.failure is None:
            with self._lock:
                if not self._queue:
                    self._writing = False
                    return
                queued = list(self._queue)
                self._queue.clear()
            completed: list[Action] = []
            try:
                for group in _groups(queued):
                    if isinstance(group, list):
                        self._store.write(tuple(chain.from_iterable(
                            write.ops for write in group)))
                        completed.extend(group)
                    elif self._store.apply(group):
                        completed.append(group)
            except Exception as exc:        # noqa: BLE001 - any failure: the copy is unknown
                self._loop.call_soon_threadsafe(self._failed, exc)
                return
            if completed:
                self._loop.call_soon_threadsafe(self._completed, completed)

    def _completed(self, completed: list[Action]) -> None:
        sends: list[Action] = []
        for action in completed:
            if isinstance(action, ReplicaWrite):
                sends.extend(self.core.write_done(action.mseq))
            else:
                sends.extend(self.core.snapshot_installed())
        if sends:
            # Each completion yields one cumulative ACK: the last one says it all.
            self._link.send(sends[-1].message)

    def _failed(self, exc: BaseException) -> None:
        log.error("%s: replica write failed, the replica stops: %s", self.aggregate, exc)
        self.failure = exc
        self._link.unregister(self.aggregate)
        self._link.drop(f"{self.aggregate}: replica write failed")

    def status(self):
        return self.core.status()

    def holds(self, durable_file_id: int) -> bool:
        return self._store.holds(durable_file_id)

    async def close(self) -> None:
        self._link.unregister(self.aggregate)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._store.close)
        self._executor.shutdown(wait=True)


def _groups(actions: list[Action]) -> list[Action | list[ReplicaWrite]]:
    """``actions`` in order, each run of consecutive ReplicaWrites as one list."""
    groups: list[Action | list[ReplicaWrite]] = []
    for action in actions:
        if isinstance(action, ReplicaWrite):
            if groups and isinstance(groups[-1], list):
                groups[-1].append(action)
            else:
                groups.append([action])
        else:
            groups.append(action)
    return groups
