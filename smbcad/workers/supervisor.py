"""The smbcad supervisor (docs/multicore.md, "The design" and step 3): with
``server.workers: N`` above 1 the process systemd starts binds the
listening sockets once, makes the node's open-state records empty
(``smbcad.openstate.OpenStateDb``), starts N worker processes (``smbcad
... --worker K``, each today's daemon over those records, inheriting the
sockets) and keeps them running:

* a worker tells it READY=1, WATCHDOG=1 and STOPPING=1 as it would tell
  systemd: the supervisor is their NOTIFY_SOCKET (SO_PASSCRED names the
  sender).  The node is READY to systemd once every worker is; a worker
  silent for ``WORKER_WATCHDOG_S`` * 3 is killed;
* a worker that exits is replaced under the same index (so it finds its
  handle-store partition, ``partitions.partition_path``, and its clients'
  ClientGuids route to it again) after its entries are swept from the
  records (``forget_owner``: its share modes die with its opens).  A worker
  that fails before it was ever ready fails the start;
* SIGTERM and SIGINT: every worker drains (SIGTERM), then the supervisor
  exits; SIGHUP goes to every worker, which reloads as one process does;
* the control socket (``server.control_socket``) answers for the node,
  asking each worker's (``control_path``) and merging (``fanout``).
"""

import asyncio
import logging
import os
import signal
import socket
import struct
import sys

from smbca.config import systemd_environment, worker_environment, worker_listen_fds
from prometheus_client import CollectorRegistry

from smbca.config import ConfigError
from smbca.control import ControlError, ControlServer, request, request_blocking
from smbca.metrics import serve_metrics
from smbca.systemd import feed_watchdog, sd_notify
from smbcad.openstate.db import OpenStateDb
from smbcad.store import StoreError
from smbcad.openstate.table import OpenStateError
from smbcad.workers import fanout, partitions
from smbcad.workers.worker_metrics import WorkersCollector
from smbcad.workers.unix_path import SocketPathError, bind_at, unlink_if_own

log = logging.getLogger("smbcad")

WORKER_WATCHDOG_S = 10          # each worker pings every half of this
START_TIMEOUT_S = 120           # a worker not READY by then fails the start
RESTART_DELAYS_S = (0.5, 1, 2, 5, 10, 30)   # for a worker that keeps failing
CONTROL_TIMEOUT_S = 30.0        # a worker's answer to a control request
_UCRED = struct.Struct("iII")   # struct ucred: pid, uid, gid


def workers_directory(state_dir: str) -> str:
    return os.path.join(state_dir, "workers")


def control_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"control-{index}.sock")


def openstate_path(state_dir: str) -> str:
    return os.path.join(state_dir, "openstate")


def bind_listeners(addresses) -> list[socket.socket]:
    """The listening sockets every worker accepts on (the kernel wakes one)."""
    sockets = []
    try:
        for address in addresses:
            for family, kind, proto, _, where in socket.getaddrinfo(
                    address.host or None, address.port, type=socket.SOCK_STREAM,
                    flags=socket.AI_PASSIVE):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(where)
                sock.listen(256)
                sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def inherited_listeners() -> list[socket.socket]:
    """In a worker: the listening sockets its supervisor passed."""
    return [socket.socket(fileno=fd) for fd in worker_listen_fds()]


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.last_ping = 0.0
        self.failures = 0           # in a row, without getting ready in between
        self.predecessor: int | None = None     # the pid this worker replaces


class Supervisor:
    def __init__(self, cfg, argv: list[str]) -> None:
        """``argv``: smbcad's own arguments, which every worker gets too."""
        self.cfg = cfg
        self.argv = list(argv)
        self.count = cfg.server.workers
        self.directory = workers_directory(cfg.server.state_dir)
        self.workers = [_Worker(index) for index in range(self.count)]
        self.records: OpenStateDb | None = None
        self._sockets: list[socket.socket] = []
        self._notify: socket.socket | None = None
        self._notify_bound = None
        self._stop = asyncio.Event()
        self._stopping = False
        self._failed_start = False
        self._tasks: set = set()
        # The aggregates this node adopted (name → mount point, or None), for
        # a worker that was not there to adopt its partition (``_catch_up``).
        self._adopted: dict[str, str | None] = {}

    # --- start and stop ---------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._signal_workers, signal.SIGHUP)
        state_dir = self.cfg.server.state_dir
        refusal = partitions.stranded_error(state_dir, self.count)
        if refusal is not None:
            log.error("%s", refusal)
            return 2
        metrics_at = self.cfg.server.metrics_listen
        if metrics_at is not None:
            # First, as one process does: a port in use is a config error (exit 2).
            registry = CollectorRegistry()
            registry.register(WorkersCollector(self.count, self._metrics_of))
            try:
                serve_metrics(metrics_at, registry, "server.metrics_listen")
            except ConfigError as exc:
                log.error("%s", exc)
                return 2
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._sockets = bind_listeners(self.cfg.server.listen)
        except OSError as exc:
            log.error("server.listen: cannot listen: %s", exc.strerror or exc)
            return 1
        try:
            self.records = OpenStateDb(openstate_path(state_dir), create_empty=True)
            self._open_notify_socket(loop)
        except (OpenStateError, SocketPathError) as exc:
            log.error("server.state_dir: %s", exc)
            self._close_sockets()
            return 1
        control = None
        try:
            for worker in self.workers:
                await self._start(worker)
            if not await self._all_ready():
                return 1
            if self.cfg.server.control_socket is not None:
                control = ControlServer(self.cfg.server.control_socket, self._answer)
                try:
                    await control.start()
                except OSError as exc:
                    log.error("server.control_socket: cannot listen on %s: %s", control.path,
                              exc.strerror or exc)
                    return 1
            for sock in self._sockets:
                host, port = sock.getsockname()[:2]
                log.info("listening on %s:%s (%d workers)", host, port, self.count)
            systemd = systemd_environment()
            sd_notify(systemd.notify_socket, "READY=1")
            watchdog = loop.create_task(feed_watchdog(systemd.notify_socket,
                                                      systemd.watchdog_usec, self._healthy))
            checker = loop.create_task(self._check_pings())
            await self._stop.wait()
            sd_notify(systemd.notify_socket, "STOPPING=1")
            checker.cancel()
            if control is not None:
                await control.close()
                control = None
            await self._stop_workers()
            watchdog.cancel()
            return 0
        finally:
            self._stopping = True
            if control is not None:
                await control.close()
            await self._stop_workers()
            self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        if self._notify is not None:
            asyncio.get_running_loop().remove_reader(self._notify.fileno())
            self._notify.close()
            unlink_if_own(self._notify_path(), self._notify_bound)
            self._notify = None
        if self.records is not None:
            self.records.close()
            self.records = None

    async def _all_ready(self) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while not all(worker.ready.is_set() for worker in self.workers):
            if self._failed_start or self._stop.is_set():
                return False
            if loop.time() > deadline:
                log.error("workers not ready within %d s: %s", START_TIMEOUT_S,
                          ", ".join(str(w.index) for w in self.workers if not w.ready.is_set()))
                return False
            await asyncio.sleep(0.05)
        return True

    async def _stop_workers(self) -> None:
        self._stopping = True
        running = [w.process for w in self.workers
                   if w.process is not None and w.process.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        grace = self.cfg.server.drain_timeout_s + 15
        for process in running:
            try:
                async with asyncio.timeout(grace):
                    await process.wait()
            except TimeoutError:
                log.error("worker pid %d did not stop within %d s: killing it",
                          process.pid, grace)
                process.kill()
                await process.wait()

    # --- workers ----------------------------------------------------------------------

    async def _start(self, worker: _Worker) -> None:
        fds = [sock.fileno() for sock in self._sockets]
        env = worker_environment(self._notify_path(), WORKER_WATCHDOG_S * 1_000_000, fds,
                                 worker.predecessor)
        worker.ready.clear()
        worker.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smbcad", *self.argv, "--worker", str(worker.index),
            pass_fds=fds, env=env, stdin=asyncio.subprocess.DEVNULL)
        worker.last_ping = asyncio.get_running_loop().time()
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)
        task = asyncio.get_running_loop().create_task(self._watch(worker, worker.process))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, worker: _Worker, process) -> None:
        status = await process.wait()
        swept = self._sweep(worker, process.pid)
        if self._stopping:
            return
        log.error("worker %d (pid %d) exited with status %d; its entries swept from %d "
                  "files' records, its persistent opens' kept (disconnected) for its "
                  "successor", worker.index,
                  process.pid, status, swept)
        worker.predecessor = process.pid
        if not worker.ready.is_set() and not any(w.ready.is_set() for w in self.workers):
            self._failed_start = True           # never served: a broken start, not a crash
            return
        worker.failures = 0 if worker.ready.is_set() else worker.failures + 1
        delay = RESTART_DELAYS_S[min(worker.failures, len(RESTART_DELAYS_S) - 1)]
        await asyncio.sleep(delay)
        if not self._stopping:
            await self._start(worker)

    def _sweep(self, worker: _Worker, pid: int) -> int:
        """The records without a dead worker's opens, except its persistent
        ones: its successor restores them from its partition and adopts their
        entries (until then they keep their share modes, as a restarting
        node does), then sweeps what is left of ``pid``."""
        if self.records is None:
            return 0
        partition = partitions.partition_path(self.cfg.server.state_dir, worker.index,
                                              self.count)
        try:
            keep = partitions.persistent_ids(partition, partitions.cluster_copies(
                self.cfg.server.state_dir, worker.index, self.count))
        except (StoreError, OSError, struct.error) as exc:
            log.warning("worker %d's partition %s unreadable (%s): its successor sweeps "
                        "after restoring", worker.index, partition, exc)
            return 0
        return self.records.forget_owner(pid, keep)

    def _signal_workers(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signum)

    def _healthy(self) -> bool:
        return all(w.process is not None and w.process.returncode is None
                   for w in self.workers)

    async def _check_pings(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(WORKER_WATCHDOG_S / 2)
            for worker in self.workers:
                process = worker.process
                if (process is not None and process.returncode is None and worker.ready.is_set()
                        and loop.time() - worker.last_ping > 3 * WORKER_WATCHDOG_S):
                    log.error("worker %d (pid %d) sent no watchdog ping for %d s: killing it",
                              worker.index, process.pid, 3 * WORKER_WATCHDOG_S)
                    process.kill()

    # --- the workers' notifications -----------------------------------------------------

    def _notify_path(self) -> str:
        return os.path.join(self.directory, "notify.sock")

    def _open_notify_socket(self, loop) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._notify_bound = bind_at(self._notify_path(), sock, "the workers' notify socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.setblocking(False)
        self._notify = sock
        loop.add_reader(sock.fileno(), self._read_notifications)

    def _read_notifications(self) -> None:
        loop = asyncio.get_running_loop()
        while self._notify is not None:
            try:
                data, ancillary, _, _ = self._notify.recvmsg(
                    4096, socket.CMSG_SPACE(_UCRED.size))
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("workers' notify socket: %s", exc)
                return
            pid = next((_UCRED.unpack(payload[:_UCRED.size])[0]
                        for level, kind, payload in ancillary
                        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
                        and len(payload) >= _UCRED.size), None)
            worker = next((w for w in self.workers
                           if w.process is not None and w.process.pid == pid), None)
            if worker is None:
                continue
            worker.last_ping = loop.time()
            for line in data.decode(errors="replace").splitlines():
                if line == "READY=1":
                    worker.ready.set()
                    worker.failures = 0
                    log.info("worker %d (pid %d) ready", worker.index, pid)
                    if self._adopted:
                        task = loop.create_task(self._catch_up(worker))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)

    # --- the control socket -------------------------------------------------------------

    async def _answer(self, message: dict) -> dict:
        command = fanout.command_of(message)
        timeout_s = self._timeout_for(command)
        answers = await asyncio.gather(*(self._ask(index, message, timeout_s)
                                         for index in range(self.count)))
        if command in ("adopt", "release"):
            self._note_aggregate(command, message, answers)
        return fanout.merge(command, list(answers), os.getpid())

    def _timeout_for(self, command: str) -> float:
        """An adoption restores a partition's opens, a planned release waits
        for in-flight requests (drain_timeout_s): longer than a query."""
        if command in ("adopt", "release"):
            return max(CONTROL_TIMEOUT_S, self.cfg.server.drain_timeout_s + 60.0)
        return CONTROL_TIMEOUT_S

    def _note_aggregate(self, command: str, message: dict, answers: list) -> None:
        name = message.get("aggregate")
        if not isinstance(name, str):
            return
        if command == "release":
            self._adopted.pop(name, None)
        elif any(not isinstance(answer, ControlError) for answer in answers):
            mount_point = message.get("mount_point")
            self._adopted[name] = mount_point if isinstance(mount_point, str) else None

    async def _catch_up(self, worker: _Worker) -> None:
        """A worker that (re)started while this node owns aggregates adopts
        its partition of each.  Its own start took back what its partition
        says is still its (``ClusterMember.start``): then this changes
        nothing; it matters when the worker was down when the node adopted
        (that adoption was refused for its partition: those clients' opens
        would otherwise stay offline until the next move)."""
        for name, mount_point in list(self._adopted.items()):
            request = {"command": "adopt", "aggregate": name}
            if mount_point is not None:
                request["mount_point"] = mount_point
            answer = await self._ask(worker.index, request, self._timeout_for("adopt"))
            if isinstance(answer, ControlError):
                log.error("worker %d: cannot adopt its partition of %s: %s", worker.index,
                          name, answer)
            elif answer.get("restored") or answer.get("source"):
                log.info("worker %d adopted its partition of %s: %s persistent opens",
                         worker.index, name, answer.get("restored", 0))

    def _metrics_of(self, index: int) -> str | None:
        """Worker ``index``'s exposition, from the metrics endpoint's thread."""
        try:
            answer = request_blocking(control_path(self.directory, index),
                                      {"command": "metrics"}, timeout_s=5.0)
        except ControlError:
            return None
        return answer.get("text") if answer.get("ok") else None

    async def _ask(self, index: int, message: dict, timeout_s: float = CONTROL_TIMEOUT_S):
        try:
            answer = await request(control_path(self.directory, index), message,
                                   timeout_s=timeout_s)
        except ControlError as exc:
            return exc
        if answer.pop("ok", None) is not True:
            return ControlError(str(answer.get("error", "refused")))
        return answer
