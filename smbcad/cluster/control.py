"""smbcad's control requests: what clusdisk and the ``smbca`` admin command
ask of a running smbcad, over its Unix control socket (one JSON object per
line, one request and one reply per connection; root only).

Requests (``{"command": ...}``):

- ``adopt`` ``{"aggregate": NAME, "mount_point": PATH?}``: bring the aggregate's
  shares online here with the persistent opens of its store;
- ``release`` ``{"aggregate": NAME, "planned": BOOL, "clients_cut_off": BOOL?}``:
  take them offline (``clients_cut_off``: a planned release of a node whose
  public links are down, which waits for no client);
- ``status``: node, aggregates (phase, shares, last adoption, mirror state);
- ``tickles`` ``{"aggregate": NAME}``: the partner's client connections on
  the aggregate's LIFs, as its mirror last listed them (``"tickles"``:
  [client ip, client port, server ip, server port]; clusdisk tickles them
  when it moves a LIF here alone).

clusdisk's events ``smbca.events.AggregateAdopt`` / ``AggregateRelease``
(``{"type": "aggregate", "event": "adopt"|"release", "aggregate": NAME,
"mount_point": PATH, "node": ID, "planned": BOOL, "clients_cut_off": true?}``)
are the same requests.

Replies: ``{"ok": true, ...}`` or ``{"ok": false, "error": TEXT}``.  A bad
request changes nothing.  The SMB side (sessions, opens, shares, locks and
the admin's closes) is ``smbcad.admin_control``, which answers first on the
same socket and hands everything else to ``ControlHandler``.
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
            if self.member is None and command != "status":
                raise ControlError(f"{command}: this smbcad is a single node (no cluster "
                                   "section in its config)")
            return {"ok": True, **await getattr(self, f"_{command}")(**args)}
        except ControlError as exc:                  # malformed: nothing was done
            return {"ok": False, "error": f"bad request: {exc}"}
        except (AggregateError, StoreError, OSError) as exc:
            log.warning("control request %s failed: %s", request, exc)
            return {"ok": False, "error": str(exc)}

    async def _adopt(self, aggregate: str, mount_point: str | None = None) -> dict:
        return await self.member.adopt(aggregate, mount_point)

    async def _release(self, aggregate: str, planned: bool = False,
                       clients_cut_off: bool = False) -> dict:
        return await self.member.release(aggregate, planned=planned,
                                         clients_cut_off=clients_cut_off)

    async def _tickles(self, aggregate: str) -> dict:
        self.server.aggregates.get(aggregate)          # an unknown name is an error
        return {"tickles": [list(t) for t in (self.member.partner_tickles(aggregate)
                                              if self.member is not None else ())]}

    async def _status(self) -> dict:
        return {"status": self.member.status() if self.member is not None else
                {"aggregates": []}}

_COMMANDS = {"adopt": {"aggregate"}, "release": {"aggregate"}, "status": set(),
             "tickles": {"aggregate"}}
_OPTIONAL = {"adopt": {"mount_point"}, "release": {"planned", "clients_cut_off"}}


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
            return "release", {"aggregate": event.aggregate, "planned": event.planned,
                               "clients_cut_off": event.clients_cut_off}
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
    for key in ("planned", "clients_cut_off"):
        if key in request and not isinstance(request[key], bool):
            raise ControlError(f"{key} must be true or false")
    return command, request

