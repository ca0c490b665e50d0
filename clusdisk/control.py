"""clusdisk's local Unix-socket plumbing: the control socket (membership and
ownership as JSON, for ``smbca status`` and ``clusdisk status``), the
one-way event notifications to smbcad and witnessd, and systemd's
sd_notify datagrams (READY=1, WATCHDOG=1, STOPPING=1; sd_notify(3)).

Wire format everywhere: one JSON object per line (UTF-8, ``\\n``), one
request and one reply per connection.

- control: request ``{"command": "status"}`` (or the bare word ``status``);
  reply ``{"ok": true, "status": {...}}``.
- to smbcad: ``{"type": "aggregate", "event": "adopt"|"release",
  "aggregate": NAME, "mount_point": PATH, "node": ID}``;
- to witnessd, one line per LIF, in witnessd's own control protocol
  (witnessd/control.py, [MS-SWN] 3.1.6.1): ``{"event": "interface", "group":
  NODE_NAME, "state": "available"|"unavailable", "ipv4"|"ipv6": ADDRESS}``;
  both answer ``{"ok": true, ...}`` or ``{"ok": false, "error": TEXT}``.
"""

import asyncio
import ipaddress
import json
import logging
import os
import socket

from clusdisk.errors import ClusdiskError

log = logging.getLogger("clusdisk.control")
MAX_LINE = 64 * 1024


class NotifyError(ClusdiskError):
    status = "notify"


def sd_notify(path: str | None, message: str) -> bool:
    """Send one datagram to systemd's NOTIFY_SOCKET without ever blocking the
    event loop; False if there is no socket or the message could not go."""
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                           | socket.SOCK_NONBLOCK) as sock:
            sock.connect(address)
            sock.send(message.encode())
    except OSError as exc:
        log.warning("sd_notify %s: %s", message, exc)
        return False
    return True


async def request(path: str, message: dict, timeout_s: float = 10.0) -> dict:
    """One request/reply exchange over a Unix stream socket."""
    async def exchange() -> dict:
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_LINE)
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        if not line:
            raise NotifyError(f"{path}: connection closed without a reply")
        return json.loads(line)

    try:
        return await asyncio.wait_for(exchange(), timeout_s)
    except TimeoutError:
        raise NotifyError(f"{path}: no reply within {timeout_s} s") from None
    except (OSError, ValueError) as exc:
        raise NotifyError(f"{path}: {exc}") from None


class ControlServer:
    """Answers ``status`` with ``status_provider()`` (a JSON-able dict)."""

    def __init__(self, path: str, status_provider) -> None:
        self.path = path
        self.status_provider = status_provider
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)                 # a stale socket from a previous run
        self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)
        os.chmod(self.path, 0o660)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            if os.path.exists(self.path):
                os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).strip()
            command = line.decode(errors="replace")
            if line.startswith(b"{"):
                command = json.loads(line).get("command", "")
            if command == "status":
                reply = {"ok": True, "status": self.status_provider()}
            else:
                reply = {"ok": False, "error": f"unknown command {command!r}"}
        except (ValueError, AttributeError, asyncio.LimitOverrunError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        try:
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


class Notifier:
    """Events to smbcad and witnessd.  A peer without a configured socket is
    skipped (logged); a configured peer that does not acknowledge raises
    NotifyError, which fails a bring-up step."""

    def __init__(self, node_id: int, smbcad_socket: str | None = None,
                 witnessd_socket: str | None = None, timeout_s: float = 10.0,
                 node_name: str | None = None) -> None:
        self.node_id = node_id
        self.node_name = node_name or f"node{node_id}"
        self.smbcad_socket = smbcad_socket
        self.witnessd_socket = witnessd_socket
        self.timeout_s = timeout_s

    async def _send(self, path: str | None, peer: str, message: dict) -> None:
        if path is None:
            log.debug("no %s socket configured; not sending %s", peer, message)
            return
        reply = await request(path, message, self.timeout_s)
        if not reply.get("ok"):
            raise NotifyError(f"{peer} refused {message}: {reply.get('error', 'no reason given')}")

    async def smbcad(self, event: str, aggregate) -> None:
        await self._send(self.smbcad_socket, "smbcad", {
            "type": "aggregate", "event": event, "aggregate": aggregate.name,
            "mount_point": aggregate.mount_point, "node": self.node_id})

    async def witness(self, event: str, aggregate) -> None:
        state = "available" if event == "online" else "unavailable"
        for lif in aggregate.lifs:
            ip = ipaddress.ip_interface(lif.address).ip
            await self._send(self.witnessd_socket, "witnessd", {
                "event": "interface", "group": self.node_name, "state": state,
                f"ipv{ip.version}": str(ip)})
