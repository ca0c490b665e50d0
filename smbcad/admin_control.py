"""The SMB side of smbcad's control socket: what the ``smbca`` admin command
shows and does (like ``smbstatus`` and ONTAP's ``vserver cifs session|open
show``), next to the cluster verbs of ``smbcad.cluster.control``.

Queries (``{"command": ...}``), answered from the server's own tables:

- ``status``: the cluster handler's answer (aggregates, mirror) plus
  ``smb``: version, pid, uptime, listen addresses, counts of connections,
  sessions, opens and disconnected opens, and the shares online;
- ``sessions``: every session (id, user, client address, dialect, signing,
  encryption, trees, opens);
- ``opens`` ``{"disconnected": BOOL?}``: every open, connected or kept
  disconnected for a reconnect (3.3.7.1): DurableFileId, share, path,
  client, user, persistence, remaining timeout, lease or oplock, locks;
- ``shares``: every share (path, CA, online, tree connects, opens);
- ``locks``: every byte-range lock and the lock requests waiting.

Actions (each logged by smbcad with what it closed and for whom):

- ``close-open`` ``{"id": DURABLE_FILE_ID}``: close one open, connected or
  disconnected, as if its client had closed it; a persistent open's record
  leaves the handle store (and the partner's mirror of it);
- ``close-session`` ``{"id": SESSION_ID}``: end a session with its opens,
  persistent ones included, then close its connection (the client may
  reconnect with a new session);
- ``release-disconnected`` ``{"id": DURABLE_FILE_ID}`` or ``{"all": true}``:
  close disconnected durable, resilient or persistent opens now instead of
  at the end of their timeout, so the file they block (a CREATE meets
  STATUS_FILE_NOT_AVAILABLE, 3.3.5.9) opens again.

Every close goes through the OpenTable (``smbcad.server.opens``), which ends
the open's locks, lease and share mode and commits the removal of its
record before the answer is sent.  Ids are hex (``0x...``) or decimal.
"""

import logging
import os

from smbca.control import ControlError
from smbca.version import version
from smbcad.store import StoreError

log = logging.getLogger("smbcad.admin")

_OPLOCK_NAMES = {0x00: "", 0x01: "level2", 0x08: "exclusive", 0x09: "batch"}

# command → (required keys, optional keys); anything else goes to the cluster handler
_COMMANDS = {"status": ((), ()), "sessions": ((), ()), "opens": ((), ("disconnected",)),
             "shares": ((), ()), "locks": ((), ()), "close-open": (("id",), ()),
             "close-session": (("id",), ()), "release-disconnected": ((), ("id", "all")),
             "metrics": ((), ())}


class AdminControl:
    """smbcad's control socket handler: the SMB-admin requests here, the
    rest (adopt, release, tickles, clusdisk's events) to ``cluster``, the
    ``smbcad.cluster.control.ControlHandler``."""

    def __init__(self, server, cluster, listen=(), metrics_text=None) -> None:
        """``metrics_text``: this process's metrics in the Prometheus text
        format (a worker's, for its supervisor's endpoint), or None."""
        self.server = server
        self.cluster = cluster
        self.listen = tuple(str(address) for address in listen)
        self.metrics_text = metrics_text
        self.pid = os.getpid()

    async def handle(self, request) -> dict:
        command = (request.get("command") if isinstance(request, dict)
                   else request.strip() if isinstance(request, str) else None)
        if not isinstance(command, str) or command not in _COMMANDS:
            return await self.cluster.handle(request)
        try:
            args = _arguments(command, request if isinstance(request, dict) else {})
            return {"ok": True, **await getattr(self, "_" + command.replace("-", "_"))(**args)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        except (StoreError, OSError) as exc:
            log.warning("control request %s failed: %s", request, exc)
            return {"ok": False, "error": str(exc)}

    # --- queries --------------------------------------------------------------------

    async def _status(self) -> dict:
        reply = await self.cluster.handle({"command": "status"})
        opens = [open_ for open_ in self.server.opens.by_persistent_id.values()
                 if not open_.is_pipe]
        server = self.server
        reply["smb"] = {
            "version": version(), "pid": self.pid, "listen": list(self.listen),
            "server_name": server.config.server.server_name,
            "uptime_s": int(server.clock() - server.start_time),
            "connections": len(list(server.connections)), "sessions": len(server.sessions),
            "opens": len(opens),
            "disconnected_opens": sum(1 for open_ in opens if open_.session is None),
            "shares_online": sorted(share.name for share in server.shares.values()
                                    if not share.is_ipc and share.fs is not None),
            "shares_offline": sorted(share.name for share in server.shares.values()
                                     if not share.is_ipc and share.fs is None)}
        return reply

    async def _metrics(self) -> dict:
        if self.metrics_text is None:
            raise ControlError("no metrics here")
        return {"text": self.metrics_text()}

    async def _sessions(self) -> dict:
        sessions = []
        for session in self.server.sessions.values():
            connection = session.connection
            sessions.append({
                "session_id": _hex(session.session_id), "user": session.user_name,
                "client": connection.peer, "server_address": connection.local_address,
                "client_guid": _guid(connection.client_guid),
                "dialect": f"{session.dialect:#06x}", "state": session.state,
                "signed": session.signing_required, "encrypted": session.encrypt_data,
                "guest": session.is_guest_or_anonymous,
                "shares": sorted({tree.share.name for tree in session.trees.values()}),
                "opens": len(session.opens)})
        return {"sessions": sessions}

    async def _opens(self, disconnected: bool = False) -> dict:
        return {"opens": [self._describe(open_) for open_ in self._opens_now()
                          if not disconnected or open_.session is None]}

    async def _shares(self) -> dict:
        trees: dict[int, int] = {}
        for session in self.server.sessions.values():
            for tree in session.trees.values():
                trees[id(tree.share)] = trees.get(id(tree.share), 0) + 1
        opens: dict[int, int] = {}
        for open_ in self._opens_now():
            opens[id(open_.tree.share)] = opens.get(id(open_.tree.share), 0) + 1
        return {"shares": [{
            "name": share.name, "path": share.path, "comment": share.comment,
            "ca": share.is_ca, "encrypt": share.encrypt_data, "read_only": share.read_only,
            "ca_timeout_ms": share.ca_timeout_ms, "aggregate": share.aggregate,
            "online": share.fs is not None, "tree_connects": trees.get(id(share), 0),
            "opens": opens.get(id(share), 0)}
            for share in self.server.shares.values() if not share.is_ipc]}

    async def _locks(self) -> dict:
        entries = []
        for state in list(self.server.opens.by_file.values()):
            table = state.locks
            if table is None:
                continue
            for lock in table.locks:
                entries.append({**self._lock_owner(lock.owner), "offset": lock.offset,
                                "length": lock.length, "exclusive": lock.exclusive,
                                "waiting": False})
            for waiter in table.waiters:
                entries.append({**self._lock_owner(waiter.owner), "offset": waiter.want.offset,
                                "length": waiter.want.length,
                                "exclusive": waiter.want.exclusive, "waiting": True})
        return {"locks": entries}

    # --- actions ----------------------------------------------------------------------

    async def _close_open(self, id) -> dict:
        open_ = self._open(id)
        described = self._describe(open_)
        await self._close(open_, "closed")
        return {"closed": [described]}

    async def _close_session(self, id) -> dict:
        session_id = _number(id, "id")
        session = self.server.sessions.get(session_id)
        if session is None:
            raise ControlError(f"no session {_hex(session_id)}")
        opens = [self._describe(open_) for open_ in session.opens.values()
                 if not open_.is_pipe]
        connection = session.connection
        log.warning("admin: closing session %s of %s (user %r) with %d opens",
                    _hex(session_id), connection.peer, session.user_name, len(opens))
        self.server.drop_session(session, keep_durable=False)
        await self.server.settle()               # the closed opens' store commits
        connection.close()                       # the client reconnects afresh
        return {"closed_session": _hex(session_id), "closed": opens}

    async def _release_disconnected(self, id=None, all=False) -> dict:
        if (id is None) == (not all):
            raise ControlError("release-disconnected needs an id or all: true, not both")
        if not isinstance(all, bool):
            raise ControlError("all must be true or false")
        if id is not None:
            targets = [self._open(id)]
            if targets[0].session is not None:
                raise ControlError(f"open {_hex(targets[0].persistent_id)} is connected "
                                   "(its client holds it; close-open closes it anyway)")
        else:
            targets = [open_ for open_ in self._opens_now() if open_.session is None]
        released = []
        for open_ in targets:
            released.append(self._describe(open_))
            await self._close(open_, "released disconnected")
        return {"released": released}

    # --- helpers ----------------------------------------------------------------------

    def _opens_now(self) -> list:
        return [open_ for open_ in list(self.server.opens.by_persistent_id.values())
                if not open_.is_pipe]

    def _open(self, id):
        persistent_id = _number(id, "id")
        open_ = self.server.opens.lookup(persistent_id)
        if open_ is None or open_.is_pipe:
            raise ControlError(f"no open {_hex(persistent_id)}")
        return open_

    async def _close(self, open_, what: str) -> None:
        """Through the OpenTable; a persistent open's record removal is
        committed (local store, and the partner's mirror) before we answer."""
        log.warning("admin: %s %s open %s on %s/%s (client %s, user %s)", what,
                    _kind(open_), _hex(open_.persistent_id), open_.tree.share.name,
                    open_.path, _client(open_) or _guid(open_.client_guid) or "?",
                    _user(open_) or "?")
        commit = self.server.opens.close(open_)
        if commit is not None:
            await commit

    def _describe(self, open_) -> dict:
        entry = {
            "durable_file_id": _hex(open_.persistent_id), "share": open_.tree.share.name,
            "path": open_.path, "directory": open_.is_directory,
            "state": "disconnected" if open_.session is None else "connected",
            "kind": _kind(open_), "persistent": open_.persistent, "durable": open_.durable,
            "resilient": open_.resilient, "client": _client(open_),
            "client_guid": _guid(open_.client_guid), "user": _user(open_),
            "session_id": _hex(open_.session.session_id) if open_.session is not None else "",
            "access": f"{open_.granted_access:#010x}",
            "share_access": _share_access(open_.share_access),
            "lease": _lease(open_), "oplock": _OPLOCK_NAMES.get(open_.oplock_level, ""),
            "locks": self._lock_count(open_), "timeout_ms": open_.timeout_ms}
        if open_.session is None and open_.disconnected_at_ms is not None:
            now_ms = int(self.server.clock() * 1000)
            entry["expires_in_ms"] = max(0, open_.disconnected_at_ms + open_.timeout_ms - now_ms)
        return entry

    def _lock_count(self, open_) -> int:
        state = self.server.opens.file_state(open_.file_key)
        if state is None or state.locks is None:
            return 0
        return sum(1 for lock in state.locks.locks if lock.owner is open_)

    @staticmethod
    def _lock_owner(open_) -> dict:
        return {"durable_file_id": _hex(open_.persistent_id), "share": open_.tree.share.name,
                "path": open_.path, "client": _client(open_), "user": _user(open_)}


def _arguments(command: str, request: dict) -> dict:
    required, optional = _COMMANDS[command]
    args = {key: value for key, value in request.items() if key != "command"}
    missing = set(required) - args.keys()
    if missing:
        raise ControlError(f"bad request: {command} needs {', '.join(sorted(missing))}")
    unknown = args.keys() - set(required) - set(optional)
    if unknown:
        raise ControlError(f"bad request: {command} takes no {', '.join(sorted(unknown))}")
    if "disconnected" in args and not isinstance(args["disconnected"], bool):
        raise ControlError("bad request: disconnected must be true or false")
    return args


def _number(value, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise ControlError(f"bad request: {key} must be a number (hex 0x... or decimal)")


def _hex(number: int) -> str:
    return f"{number:#018x}"


def _guid(raw: bytes) -> str:
    return raw.hex() if raw else ""


def _kind(open_) -> str:
    return ("persistent" if open_.persistent else "resilient" if open_.resilient
            else "durable" if open_.durable else "plain")


def _client(open_) -> str:
    return open_.session.connection.peer if open_.session is not None else ""


def _user(open_) -> str:
    if open_.session is not None and open_.session.user_name:
        return open_.session.user_name
    return "\\".join(reversed(open_.durable_owner)) if open_.durable_owner else ""


def _lease(open_) -> str:
    return str(open_.lease.state) if open_.lease is not None else ""


def _share_access(bits: int) -> str:
    return "".join(letter for bit, letter in ((1, "R"), (2, "W"), (4, "D")) if bits & bit) or "-"

