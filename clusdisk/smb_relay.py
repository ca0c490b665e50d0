"""The admin's SMB requests on a pair (issue 15 item 1: ``smbca sessions``,
``opens``, ``shares``, ``locks`` and the closing actions show and reach both
nodes): clusdisk carries them to the partner's smbcad over the peer channel
(``clusdisk.peer``: authenticated, versioned), as ``failover show`` reaches
the partner's status.

- Control socket: ``{"command": "partner-smb", "request": {"command":
  "sessions", ...}}`` asks the partner and answers ``{"ok": true, "node":
  THIS, "partner": NAME, "reply": SMBCAD'S ANSWER}``, or ``{"ok": false,
  "node", "partner", "unreachable": true, "error"}`` when the partner (its
  clusdisk or its smbcad) cannot be reached, or ``"unsupported": true`` when
  it runs a release without this request.
- Peer request ``smb`` ``{"request": {...}}``: this node's smbcad answers
  (``control.smbcad_socket``), ``{"ok": true, "node": THIS, "reply": ...}``.

Only the SMB admin requests pass (never adopt, release or the cluster's
events); each node's smbcad logs the closes it makes.  A peer frame carries
at most ``peer_proto.MAX_PAYLOAD``: a longer listing is cut, and says so
(``"truncated"``: the entries left out).
"""

import inspect
import json
import logging

from clusdisk.errors import ClusdiskError
from clusdisk.peer_proto import MAX_PAYLOAD
from smbca.control import ControlError, Handler, request

log = logging.getLogger("clusdisk.smb_relay")

CONTROL_COMMAND = "partner-smb"
PEER_OP = "smb"
QUERIES = {"sessions": "sessions", "opens": "opens", "shares": "shares", "locks": "locks"}
ACTIONS = frozenset({"close-open", "close-session", "release-disconnected"})
QUERY_S = 10.0
ACTION_S = 60.0              # a close commits to the handle store and its mirror
_ROOM = MAX_PAYLOAD - 4096   # the peer frame's own fields


def _checked(message) -> dict:
    smb = message.get("request") if isinstance(message, dict) else None
    if not isinstance(smb, dict) or (smb.get("command") not in QUERIES
                                     and smb.get("command") not in ACTIONS):
        raise ControlError("partner-smb needs a request: sessions, opens, shares, locks, "
                           "close-open, close-session or release-disconnected")
    return smb


def _timeout(smb: dict) -> float:
    return ACTION_S if smb["command"] in ACTIONS else QUERY_S


def _bounded(reply: dict, command: str) -> dict:
    """``reply`` cut to fit one peer frame (the entries of a listing)."""
    key = QUERIES.get(command)
    entries = reply.get(key) if key else None
    if not isinstance(entries, list) or len(json.dumps(reply)) <= _ROOM:
        return reply
    kept = len(entries)
    while kept and len(json.dumps({**reply, key: entries[:kept]})) > _ROOM:
        kept //= 2
    return {**reply, key: entries[:kept], "truncated": len(entries) - kept}


class SmbRelay:
    def __init__(self, peer, smbcad_socket: str | None, node: str, partner: str) -> None:
        self.peer = peer                    # a clusdisk.peer.PeerChannel
        self.smbcad_socket = smbcad_socket
        self.node = node
        self.partner = partner

    def control(self, inner: Handler) -> Handler:
        """The control socket's handler: ``partner-smb`` here, the rest to ``inner``."""
        async def handle(message) -> dict:
            if isinstance(message, dict) and message.get("command") == CONTROL_COMMAND:
                return await self.ask_partner(_checked(message))
            answer = inner(message)
            return await answer if inspect.isawaitable(answer) else answer
        return handle

    async def ask_partner(self, smb: dict) -> dict:
        names = {"node": self.node, "partner": self.partner}
        try:
            answer = await self.peer.call(PEER_OP, {"request": smb}, _timeout(smb))
        except ClusdiskError as exc:
            return {"ok": False, **names, "unreachable": True, "error": str(exc)}
        error = str(answer.get("error", ""))
        if not answer.get("ok") and error.startswith("unknown peer request"):
            return {"ok": False, **names, "unsupported": True,
                    "error": f"partner {self.partner} does not support listing or closing "
                             f"SMB sessions and opens for the other node (it runs an "
                             f"older release: {error})"}
        if not answer.get("ok") or not isinstance(answer.get("reply"), dict):
            return {"ok": False, **names, "unreachable": True,
                    "error": error or "no answer from its smbcad"}
        return {"ok": True, **names, "reply": answer["reply"]}

    async def answer_peer(self, args: dict) -> dict:
        """The partner's request, to this node's smbcad."""
        try:
            smb = _checked(args)
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        if self.smbcad_socket is None:
            return {"ok": False, "error": f"no smbcad on {self.node} "
                                          "(its clusdisk.yaml sets no control.smbcad_socket)"}
        if smb["command"] in ACTIONS:
            log.warning("the partner's admin asks smbcad: %s", smb)
        try:
            reply = await request(self.smbcad_socket, smb, _timeout(smb) - 2.0)
        except ControlError as exc:
            return {"ok": False, "error": f"smbcad on {self.node} does not answer: {exc}"}
        return {"ok": True, "node": self.node, "reply": _bounded(reply, smb["command"])}
