"""The SMB side of ``smbca`` (issue 15 item 1), like Samba's ``smbstatus``
and ONTAP's ``vserver cifs session show`` / ``open show``::

  smbca sessions                     every session: user, client, dialect, signing
  smbca opens [--disconnected]       every open: client, user, kind (persistent,
                                     durable, resilient), lease or oplock, locks,
                                     and for a disconnected one the time left
  smbca shares                       every share: path, CA, online, tree connects
  smbca locks                        byte-range locks and lock requests waiting
  smbca close-open ID [--node N] [--yes]
                                     close one open (its DurableFileId)
  smbca close-session ID [--node N] [--yes]
                                     end a session and its opens, drop its connection
  smbca release-disconnected ID|--all [--node N] [--yes]
                                     close disconnected opens now instead of at
                                     the end of their timeout (a file they keep
                                     answering STATUS_FILE_NOT_AVAILABLE opens again)

Each asks smbcad's control socket (``smbca.admin_node.locate``).  On a node
of a pair (its clusdisk answers) the listings show both nodes, with a NODE
column (``"node"`` in ``--json``): the partner's smbcad is reached through
the two clusdisk daemons' peer channel (``clusdisk.smb_relay``).  When the
partner cannot be reached, the local rows are shown with the line
``partner NODE unreachable: REASON``, and the exit status is 3.  An action
goes to the node that holds the id (``--node`` chooses when both do;
``release-disconnected --all`` acts on both).  The actions show what they
will close and ask before doing it, unless ``--yes``; smbcad logs every close.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from smbca import admin_node

QUERIES = ("sessions", "opens", "shares", "locks")
ACTIONS = ("close-open", "close-session", "release-disconnected")
COMMANDS = QUERIES + ACTIONS
PARTNER_COMMAND = "partner-smb"            # clusdisk's control request (clusdisk.smb_relay)
QUERY_S, ACTION_S = 15.0, 75.0
EXIT_REFUSED, EXIT_NOT_RUNNING, EXIT_PARTNER_UNREACHABLE = 1, 2, 3
# where smbcad's answer lists the entries
_ENTRIES = {"close-open": "closed", "close-session": "closed",
            "release-disconnected": "released"}


def add_parsers(sub) -> None:
    helps = {"sessions": "every SMB session", "opens": "every open file (handle)",
             "shares": "every share", "locks": "byte-range locks",
             "close-open": "close one open by its DurableFileId",
             "close-session": "end one session (and its opens) by its id",
             "release-disconnected": "release disconnected durable/persistent opens now"}
    for name in COMMANDS:
        parser = sub.add_parser(name, help=helps[name])
        admin_node.add_location_arguments(parser, "smbcad")
        parser.add_argument("--clusdisk-socket",
                            help="clusdisk control socket, through which the partner is "
                                 "asked (default: from clusdisk.yaml, else "
                                 f"{admin_node.CLUSDISK_SOCKET})")
        parser.add_argument("--json", action="store_true", help="the answers as JSON")
        if name == "opens":
            parser.add_argument("--disconnected", action="store_true",
                                help="only opens kept for a reconnect")
        if name in ("close-open", "close-session"):
            parser.add_argument("id", help="as `smbca opens` / `smbca sessions` show it")
        if name == "release-disconnected":
            which = parser.add_mutually_exclusive_group(required=True)
            which.add_argument("id", nargs="?", help="the DurableFileId of one open")
            which.add_argument("--all", action="store_true", help="every disconnected open")
        if name in ACTIONS:
            parser.add_argument("--node", help="on a pair: the node whose open or session "
                                               "it is (default: the one that has the id)")
            parser.add_argument("--yes", "-y", action="store_true", help="do not ask")


def request_of(args) -> dict:
    message = {"command": args.command}
    if args.command == "opens" and args.disconnected:
        message["disconnected"] = True
    if args.command in ACTIONS:
        if getattr(args, "all", False):
            message["all"] = True
        else:
            message["id"] = args.id
    return message


# --- the nodes asked -------------------------------------------------------------------


class Unreachable(Exception):
    """A node whose smbcad cannot be asked; the message says why."""


class Refused(Exception):
    """An action that cannot be sent as given (which node?); exit 1."""


@dataclass
class Node:
    """One node's smbcad: this node's through its socket, the partner's
    through this node's clusdisk (``via``)."""

    name: str
    smbcad: admin_node.Where | None = None
    via: admin_node.Where | None = None
    answers: dict = field(default_factory=dict)

    def ask(self, message: dict, timeout_s: float) -> dict:
        if self.via is None:
            return admin_node.ask(self.smbcad, message, timeout_s)
        try:
            relayed = admin_node.ask(self.via, {"command": PARTNER_COMMAND,
                                                "request": message}, timeout_s + 5.0)
        except admin_node.NotRunning as exc:
            raise Unreachable(f"partner {self.name} unreachable: {exc}") from None
        if relayed.get("ok"):
            return relayed["reply"]
        error = relayed.get("error", "no reason given")
        if relayed.get("unsupported"):
            raise Unreachable(error)
        if "unknown command" in error:
            raise Unreachable(f"partner {self.name} not asked: clusdisk on this node does "
                              f"not relay SMB requests (an older release: {error})")
        raise Unreachable(f"partner {self.name} unreachable: {error}")


@dataclass
class Pair:
    """The nodes to ask, and what is known of a partner that cannot be."""

    nodes: list
    notes: list = field(default_factory=list)        # partner unreachable, ...
    single: bool = True


def nodes_of(args) -> Pair:
    """This node, and on a pair its partner.  A pair is a node whose clusdisk
    answers; a clusdisk configured (``--clusdisk-socket`` or clusdisk.yaml)
    but not running leaves the partner out, said in ``notes``."""
    smbcad = admin_node.locate("smbcad", args.socket, args.config_dir)
    clusdisk = admin_node.locate("clusdisk", args.clusdisk_socket, args.config_dir)
    configured = clusdisk.source != "default" or Path(clusdisk.path).exists()
    if not configured:
        return Pair([Node("", smbcad)])
    try:
        status = admin_node.ask(clusdisk, {"command": "status"}, 5.0).get("status") or {}
    except admin_node.NotRunning as exc:
        return Pair([Node("", smbcad)], [f"partner not asked: {exc}"], single=False)
    here = (status.get("node") or {}).get("name") or "this node"
    partner = (status.get("partner") or {}).get("name") or "partner"
    return Pair([Node(here, smbcad), Node(partner, via=clusdisk)], single=False)


def ask_all(pair: Pair, message: dict, timeout_s: float) -> list:
    """(node, answer) of every node that answers; the others go to ``notes``.
    This node's smbcad not answering raises NotRunning."""
    answered = []
    for node in pair.nodes:
        try:
            answered.append((node, node.ask(message, timeout_s)))
        except Unreachable as exc:
            pair.notes.append(str(exc))
    return answered


def merged(command: str, answered: list) -> dict:
    """One answer for all nodes: every listed entry carries its ``node``."""
    key = _ENTRIES.get(command, command)
    entries, refusals, nodes = [], [], {}
    for node, answer in answered:
        for entry in answer.get(key) or []:
            entries.append({"node": node.name, **entry} if node.name else entry)
        if answer.get("closed_session"):
            nodes.setdefault(node.name, {})["closed_session"] = answer["closed_session"]
        if answer.get("truncated"):
            nodes.setdefault(node.name, {})["truncated"] = answer["truncated"]
        if not answer.get("ok"):
            refusals.append((node.name, answer.get("error", "no reason given")))
    return {"ok": not refusals, key: entries, "refusals": refusals, "nodes": nodes}


def run(args) -> int:
    """0: done; 1: smbcad refused (the reason is printed) or the admin said
    no; 2: this node's smbcad cannot be reached; 3: on a pair, the partner
    could not be asked (this node's part is shown)."""
    try:
        pair = nodes_of(args)
        if args.command in QUERIES:
            answered = ask_all(pair, request_of(args), QUERY_S)
        else:
            answered = _act(args, pair)
            if answered is None:
                print("smbca: nothing done", file=sys.stderr)
                return EXIT_REFUSED
    except admin_node.NotRunning as exc:
        print(f"smbca: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except Unreachable as exc:
        print(f"smbca: {exc}", file=sys.stderr)
        return EXIT_PARTNER_UNREACHABLE
    except Refused as exc:
        print(f"smbca: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    answer = merged(args.command, answered)
    _print(args, pair, answer)
    if answer["refusals"]:
        return EXIT_REFUSED
    return EXIT_PARTNER_UNREACHABLE if pair.notes else 0


def _print(args, pair: Pair, answer: dict) -> None:
    key = _ENTRIES.get(args.command, args.command)
    if args.json:
        if pair.single:                      # a single node: smbcad's answer as it is
            body = {"ok": answer["ok"], key: answer[key], **answer["nodes"].get("", {})}
        else:
            body = {"ok": answer["ok"] and not pair.notes, key: answer[key],
                    "nodes": {node.name: answer["nodes"].get(node.name, {}) for node in
                              pair.nodes}, "unreachable": pair.notes}
        if answer["refusals"]:
            body["errors"] = [f"{name or 'smbcad'}: {error}"
                              for name, error in answer["refusals"]]
        print(json.dumps(body, indent=2))
    else:
        lines = SHOW[args.command](answer, with_node=not pair.single)
        for name, details in answer["nodes"].items():
            if details.get("truncated"):
                lines.append(f"({details['truncated']} more on {name}: the listing was cut "
                             "to fit the peer channel)")
        if lines:
            print("\n".join(lines))
    for note in pair.notes:
        print(f"smbca: {note}", file=sys.stderr)
    for name, error in answer["refusals"]:
        print(f"smbca: smbcad{' on ' + name if name else ''}: {error}", file=sys.stderr)


def _act(args, pair: Pair) -> list | None:
    """The action on the node(s) concerned, after the admin said yes; None
    if they said no."""
    targets = _where_to_act(args, pair)
    if not args.yes and not _confirmed(args, targets):
        return None
    return [(node, node.ask(request_of(args), ACTION_S)) for node, _ in targets]


def _where_to_act(args, pair: Pair) -> list:
    """[(node, entries the action will close)]: ``--node``, else every node
    that has the id (``--all``: every node)."""
    listing = "sessions" if args.command == "close-session" else "opens"
    nodes = pair.nodes
    if args.node is not None:
        nodes = [node for node in nodes if node.name == args.node]
        if not nodes:
            raise Refused(f"no node {args.node!r} here (nodes: "
                              f"{', '.join(n.name for n in pair.nodes if n.name) or 'this one'})")
    found = []
    for node, answer in ask_all(Pair(nodes, pair.notes), {"command": listing}, QUERY_S):
        entries = answer.get(listing) or []
        if args.command == "release-disconnected" and args.all:
            chosen = [e for e in entries if e.get("state") == "disconnected"]
        else:
            field_name = "session_id" if listing == "sessions" else "durable_file_id"
            chosen = [e for e in entries if _same_id(e.get(field_name, ""), args.id)]
        found.append((node, chosen))
    if args.command == "release-disconnected" and args.all:
        return found
    holding = [(node, chosen) for node, chosen in found if chosen]
    if len(holding) > 1:
        raise Refused(f"{args.id} is on {' and '.join(n.name for n, _ in holding)}: "
                          "choose one with --node")
    if holding:
        return holding
    if pair.notes and args.node is None:
        raise Unreachable(f"{args.id} is not on this node, and " + "; ".join(pair.notes))
    return found[:1] or [(nodes[0], [])]      # that smbcad says what is wrong with the id


def _confirmed(args, targets: list) -> bool:
    """Show what the action will close and ask (stdin: y or yes)."""
    columns = _SESSION_COLUMNS if args.command == "close-session" else _OPEN_COLUMNS
    with_node = any(node.name for node, _ in targets)
    entries = [{"node": node.name, **entry} for node, chosen in targets for entry in chosen]
    if not entries:
        return True                      # smbcad says what is wrong with the id
    if args.command == "close-session":
        what = f"end session {args.id} and close its opens"
    elif args.command == "release-disconnected" and args.all:
        what = f"release {len(entries)} disconnected opens"
    else:
        what = f"{'close' if args.command == 'close-open' else 'release'} open {args.id}"
    print("\n".join(_table(columns, entries, with_node)))
    print(f"{what}? [y/N] ", end="", flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _same_id(shown: str, given: str) -> bool:
    try:
        return int(shown, 0) == int(given, 0)
    except ValueError:
        return False


# --- what the operator reads ---------------------------------------------------------

_SESSION_COLUMNS = (("session id", "session_id"), ("user", "user"), ("client", "client"),
                    ("dialect", "dialect"), ("signed", "signed"), ("encrypted", "encrypted"),
                    ("shares", "shares"), ("opens", "opens"))
_OPEN_COLUMNS = (("durable file id", "durable_file_id"), ("share", "share"), ("path", "path"),
                 ("state", "state"), ("kind", "kind"), ("client", "client"), ("user", "user"),
                 ("lease", "lease"), ("oplock", "oplock"), ("locks", "locks"),
                 ("expires in", "expires_in_ms"))
_SHARE_COLUMNS = (("share", "name"), ("path", "path"), ("ca", "ca"), ("online", "online"),
                  ("aggregate", "aggregate"), ("trees", "tree_connects"), ("opens", "opens"),
                  ("comment", "comment"))
_LOCK_COLUMNS = (("durable file id", "durable_file_id"), ("share", "share"), ("path", "path"),
                 ("offset", "offset"), ("length", "length"), ("type", "exclusive"),
                 ("client", "client"), ("waiting", "waiting"))


def _cell(key: str, value) -> str:
    if key == "expires_in_ms":
        return "" if value is None else f"{value / 1000:.1f} s"
    if key == "exclusive":
        return "exclusive" if value else "shared"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return "" if value is None else str(value)


def _table(columns, entries: list, with_node: bool = False) -> list[str]:
    if with_node:
        columns = (("node", "node"),) + tuple(columns)
    rows = [tuple(title for title, _ in columns)]
    rows += [tuple(_cell(key, entry.get(key)) for _, key in columns) for entry in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in rows]


def _listing(columns, key: str, nothing: str):
    def show(reply: dict, with_node: bool = False) -> list[str]:
        entries = reply.get(key, [])
        return _table(columns, entries, with_node) if entries else [nothing]
    return show


def _closed(verb: str):
    def show(reply: dict, with_node: bool = False) -> list[str]:
        lines = [(f"{entry['node']}: " if with_node else "")
                 + f"{verb} {entry['durable_file_id']} {entry['share']}/{entry['path']}"
                 + (f" ({entry['client'] or entry['client_guid']})"
                    if entry.get("client") or entry.get("client_guid") else "")
                 for entry in reply.get("closed", reply.get("released", []))]
        for name, details in reply.get("nodes", {}).items():
            if details.get("closed_session"):
                lines.insert(0, (f"{name}: " if with_node else "")
                             + f"ended session {details['closed_session']}")
        return lines or [f"no open was {verb}"]
    return show


SHOW = {"sessions": _listing(_SESSION_COLUMNS, "sessions", "no sessions"),
        "opens": _listing(_OPEN_COLUMNS, "opens", "no opens"),
        "shares": _listing(_SHARE_COLUMNS, "shares", "no shares"),
        "locks": _listing(_LOCK_COLUMNS, "locks", "no byte-range locks"),
        "close-open": _closed("closed"), "close-session": _closed("closed"),
        "release-disconnected": _closed("released")}
