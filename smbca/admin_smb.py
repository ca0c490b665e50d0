"""The SMB side of ``smbca`` (issue 15 item 1), like Samba's ``smbstatus``
and ONTAP's ``vserver cifs session show`` / ``open show``::

  smbca sessions                     every session: user, client, dialect, signing
  smbca opens [--disconnected]       every open: client, user, kind (persistent,
                                     durable, resilient), lease or oplock, locks,
                                     and for a disconnected one the time left
  smbca shares                       every share: path, CA, online, tree connects
  smbca locks                        byte-range locks and lock requests waiting
  smbca close-open ID [--yes]        close one open (its DurableFileId)
  smbca close-session ID [--yes]     end a session and its opens, drop its connection
  smbca release-disconnected ID|--all [--yes]
                                     close disconnected opens now instead of at
                                     the end of their timeout (a file they keep
                                     answering STATUS_FILE_NOT_AVAILABLE opens again)

Each asks smbcad's control socket (``smbca.admin_node.locate``); ``--json``
prints smbcad's answer as it is.  The actions show what they will close and
ask before doing it, unless ``--yes``; smbcad logs every close.
"""

import json
import sys

from smbca import admin_node

QUERIES = ("sessions", "opens", "shares", "locks")
ACTIONS = ("close-open", "close-session", "release-disconnected")
COMMANDS = QUERIES + ACTIONS


def add_parsers(sub) -> None:
    helps = {"sessions": "every SMB session", "opens": "every open file (handle)",
             "shares": "every share", "locks": "byte-range locks",
             "close-open": "close one open by its DurableFileId",
             "close-session": "end one session (and its opens) by its id",
             "release-disconnected": "release disconnected durable/persistent opens now"}
    for name in COMMANDS:
        parser = sub.add_parser(name, help=helps[name])
        admin_node.add_location_arguments(parser, "smbcad")
        parser.add_argument("--json", action="store_true", help="smbcad's answer as JSON")
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


def run(args) -> int:
    """0: done; 1: smbcad refused (the reason is printed) or the admin said
    no; 2: smbcad cannot be reached."""
    try:
        where = admin_node.locate("smbcad", args.socket, args.config_dir)
        if args.command in ACTIONS and not args.yes and not _confirmed(args, where):
            print("smbca: nothing done", file=sys.stderr)
            return 1
        reply = admin_node.ask(where, request_of(args), timeout_s=60.0)
    except admin_node.NotRunning as exc:
        print(f"smbca: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(reply, indent=2))
    elif reply.get("ok"):
        lines = SHOW[args.command](reply)
        if args.command in QUERIES:
            lines += pair_note(args)
        if lines:
            print("\n".join(lines))
    if not reply.get("ok"):
        print(f"smbca: smbcad: {reply.get('error', 'no reason given')}", file=sys.stderr)
        return 1
    return 0


def pair_note(args) -> list[str]:
    """On a node of a pair (clusdisk answers): whose view this is, and whether
    the partner, which has its own sessions and opens, can be reached."""
    try:
        where = admin_node.locate("clusdisk", None, args.config_dir)
        status = admin_node.ask(where, {"command": "status"}, timeout_s=3.0).get("status", {})
    except admin_node.NotRunning:
        return []                        # a single node: nothing else to show
    node = status.get("node", {}).get("name", "?")
    partner = status.get("partner", {})
    reach = status.get("partner_reachable")
    state = ("reachable" if reach else "UNREACHABLE" if reach is not None else "unknown")
    return [f"(node {node} only; the partner {partner.get('name', '?')} is {state}, "
            f"heartbeat {'alive' if partner.get('alive') else 'lost'}: its clients are "
            f"listed by `smbca {args.command}` on {partner.get('name', 'it')})"]


def _confirmed(args, where) -> bool:
    """Show what the action will close and ask (stdin: y or yes)."""
    if args.command == "close-session":
        sessions = admin_node.ask(where, {"command": "sessions"}).get("sessions", [])
        targets = [s for s in sessions if _same_id(s["session_id"], args.id)]
        lines = _table(_SESSION_COLUMNS, targets)
        what = f"end session {args.id} and close its opens"
    else:
        opens = admin_node.ask(where, {"command": "opens"}).get("opens", [])
        if args.command == "release-disconnected" and args.all:
            targets = [o for o in opens if o["state"] == "disconnected"]
            what = f"release {len(targets)} disconnected opens"
        else:
            targets = [o for o in opens if _same_id(o["durable_file_id"], args.id)]
            what = f"{'close' if args.command == 'close-open' else 'release'} open {args.id}"
        lines = _table(_OPEN_COLUMNS, targets)
    if not targets:
        return True                      # smbcad says what is wrong with the id
    print("\n".join(lines))
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


def _table(columns, entries: list) -> list[str]:
    rows = [tuple(title for title, _ in columns)]
    rows += [tuple(_cell(key, entry.get(key)) for _, key in columns) for entry in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in rows]


def _listing(columns, key: str, nothing: str):
    def show(reply: dict) -> list[str]:
        entries = reply.get(key, [])
        return _table(columns, entries) if entries else [nothing]
    return show


def _closed(verb: str):
    def show(reply: dict) -> list[str]:
        entries = reply.get("closed", reply.get("released", []))
        lines = [f"{verb} {entry['durable_file_id']} {entry['share']}/{entry['path']}"
                 + (f" ({entry['client'] or entry['client_guid']})"
                    if entry.get("client") or entry.get("client_guid") else "")
                 for entry in entries]
        if reply.get("closed_session"):
            lines.insert(0, f"ended session {reply['closed_session']}")
        return lines or [f"no open was {verb}"]
    return show


SHOW = {"sessions": _listing(_SESSION_COLUMNS, "sessions", "no sessions"),
        "opens": _listing(_OPEN_COLUMNS, "opens", "no opens"),
        "shares": _listing(_SHARE_COLUMNS, "shares", "no shares"),
        "locks": _listing(_LOCK_COLUMNS, "locks", "no byte-range locks"),
        "close-open": _closed("closed"), "close-session": _closed("closed"),
        "release-disconnected": _closed("released")}
