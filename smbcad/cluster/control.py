"""smbcad's control requests: what clusdisk and the ``smbca`` admin command
ask of a running smbcad, over its Unix control socket (one JSON object per
line, one request and one reply per connection; root only).

Requests (``{"command": ...}``):

- ``adopt`` ``{"aggregate": NAME, "mount_point": PATH?}``: bring the aggregate's
  shares online here with the persistent opens of its store;
- ``release`` ``{"aggregate": NAME, "planned": BOOL}``: take them offline;
- ``status``: node, aggregates (phase, shares, last adoption, mirror state);
- ``sessions``: every session (user, client, dialect, trees, opens);
- ``opens`` ``{"disconnected": BOOL?}``: every open, connected or kept
  disconnected for a reconnect, with its persistence and timeout;
- ``tickles`` ``{"aggregate": NAME}``: the partner's client connections on
  the aggregate's LIFs, as its mirror last listed them (``"tickles"``:
  [client ip, client port, server ip, server port]; clusdisk tickles them
  when it moves a LIF here alone).

clusdisk's events ``smbca.events.AggregateAdopt`` / ``AggregateRelease``
(``{"type": "aggregate", "event": "adopt"|"release", "aggregate": NAME,
"mount_point": PATH, "node": ID, "planned": BOOL}``) are the same requests.

Replies: ``{"ok": true, ...}`` or ``{"ok": false, "error": TEXT}``.  A bad
request changes nothing.
"""

import logging

from smbca import events
from smbca.control import ControlError
from smbcad.server.aggregates import AggregateError
from smbcad.store import StoreError

log = logging.getLogger("smbcad.control")


class ControlHandler:
    """Maps a decoded request to the member's and the server's verbs."""

    def __init__(self, server, member) -> None:
        self.server = server
        self.member = member

    async def handle(self, request) -> dict:
        try:
            command, args = _parse(request)
            return {"ok": True, **await getattr(self, f"_{command}")(**args)}
        except ControlError as exc:                  # malformed: nothing was done
            return {"ok": False, "error": f"bad request: {exc}"}
        except (AggregateError, StoreError, OSError) as exc:
            log.warning("control request %s failed: %s", request, exc)
            return {"ok": False, "error": str(exc)}

    async def _adopt(self, aggregate: str, mount_point: str | None = None) -> dict:
        return await self.member.adopt(aggregate, mount_point)

    async def _release(self, aggregate: str, planned: bool = False) -> dict:
        return await self.member.release(aggregate, planned=planned)

    async def _tickles(self, aggregate: str) -> dict:
        self.server.aggregates.get(aggregate)          # an unknown name is an error
        return {"tickles": [list(t) for t in (self.member.partner_tickles(aggregate)
                                              if self.member is not None else ())]}

    async def _status(self) -> dict:
        return {"status": self.member.status() if self.member is not None else
                {"aggregates": []}}

    async def _sessions(self) -> dict:
        sessions = []
        for session in self.server.sessions.values():
            connection = session.connection
            sessions.append({
                "session_id": f"{session.session_id:#018x}", "user": session.user_name,
                "client": connection.peer, "server_address": connection.local_address,
                "client_guid": _guid(connection.client_guid), "dialect": f"{session.dialect:#06x}",
                "shares": sorted({tree.share.name for tree in session.trees.values()}),
                "opens": len(session.opens)})
        return {"sessions": sessions}

    async def _opens(self, disconnected: bool = False) -> dict:
        now_ms = int(self.server.clock() * 1000)
        opens = []
        for open_ in self.server.opens.by_persistent_id.values():
            if open_.is_pipe or (disconnected and open_.session is not None):
                continue
            entry = {
                "durable_file_id": f"{open_.persistent_id:#018x}",
                "share": open_.tree.share.name, "path": open_.path,
                "state": "disconnected" if open_.session is None else "connected",
                "persistent": open_.persistent, "durable": open_.durable,
                "resilient": open_.resilient, "client_guid": _guid(open_.client_guid),
                "user": "\\".join(reversed(open_.durable_owner)) if open_.durable_owner else ""}
            if open_.session is None and open_.disconnected_at_ms is not None:
                entry["expires_in_ms"] = max(
                    0, open_.disconnected_at_ms + open_.timeout_ms - now_ms)
            opens.append(entry)
        return {"opens": opens}


_COMMANDS = {"adopt": {"aggregate"}, "release": {"aggregate"}, "status": set(),
             "sessions": set(), "opens": set(), "tickles": {"aggregate"}}
_OPTIONAL = {"adopt": {"mount_point"}, "release": {"planned"}, "opens": {"disconnected"}}


def _parse(request) -> tuple[str, dict]:
    if isinstance(request, str):
        request = {"command": request.strip()}
    if not isinstance(request, dict):
        raise ControlError("a request is a JSON object")
    if events.is_event(request):                  # clusdisk's events
        event = events.from_json(request)
        if isinstance(event, events.AggregateAdopt):
            return "adopt", {"aggregate": event.aggregate, "mount_point": event.mount_point}
        if isinstance(event, events.AggregateRelease):
            return "release", {"aggregate": event.aggregate, "planned": event.planned}
        raise ControlError(f"{request.get('event')!r} events go to witnessd, not smbcad")
    request = dict(request)
    command = request.pop("command", None)
    if command not in _COMMANDS:
        raise ControlError(f"unknown command {command!r}; one of {', '.join(sorted(_COMMANDS))}")
    missing = _COMMANDS[command] - request.keys()
    if missing:
        raise ControlError(f"{command} needs {', '.join(sorted(missing))}")
    unknown = request.keys() - _COMMANDS[command] - _OPTIONAL.get(command, set())
    if unknown:
        raise ControlError(f"{command} takes no {', '.join(sorted(unknown))}")
    for key in ("aggregate", "mount_point"):
        if key in request and not isinstance(request[key], str):
            raise ControlError(f"{key} must be a string")
    for key in ("planned", "disconnected"):
        if key in request and not isinstance(request[key], bool):
            raise ControlError(f"{key} must be true or false")
    return command, request


def _guid(raw: bytes) -> str:
    return raw.hex() if raw else ""
