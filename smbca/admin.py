"""``smbca``: the admin command for a node (ARCHITECTURE.md "Local control").

It only talks to the daemons' control sockets (``smbca.control``; where it
finds them: ``smbca.admin_node``) and adds nothing of its own:

  smbca status [--json]                 this node's daemons (what is not running,
                                        and where it looked) and, on a pair, both
                                        nodes and who owns what
  smbca sessions | opens [--disconnected] | shares | locks [--json]
  smbca close-open ID | close-session ID | release-disconnected ID|--all [--node N] [--yes]
                                        the SMB side, like smbstatus (smbca.admin_smb);
                                        on a pair both nodes (exit 3: partner unreachable)
  smbca smbcad status|sessions [--socket PATH]
                                        smbcad: aggregates (phase, mirror state), sessions
  smbca smbcad opens [--disconnected]   every open, or the disconnected persistent ones
  smbca smbcad adopt|release AGGREGATE [--planned]
                                        what clusdisk asks of smbcad (for recovery by hand)
  smbca witness status [--socket PATH]  witnessd interfaces and registrations
  smbca witness notify [--socket PATH] EVENT ...
                                        post an event to witnessd:
      node NODE up|down|available|unavailable|unknown
      interface GROUP STATE [--ipv4 A] [--ipv6 A] [--local yes|no]
      client-move [--client NAME|*] [--address LIF]... DESTINATION
      share-move --share NAME [--client NAME|*] DESTINATION
      ip-change [--client NAME|*] DESTINATION
      unregister REGISTRATION-UUID

  smbca failover show | takeover [--force] | giveback
  smbca aggregate relocate AGGR --to NODE | lif migrate LIF --to NODE
                                        the pair's planned moves, through
                                        clusdisk (smbca.admin_failover)
  smbca domain join --realm R --user ADMIN [--password-file F|-] | leave | status
                                        the pair's Active Directory account and
                                        keytab, through adcli (smbca.admin_domain)

SCSI disks are listed by ``clusdisk scan`` (it needs no daemon).  The
``smbcad`` and ``witness`` verbs print the daemon's JSON answer; the others
a table, or JSON with --json.  Exits 0 if the daemon says ok, 1 if not, 2 on
a usage error or when the daemon cannot be reached.  ``--version`` prints
the installed release.
"""

import argparse
import json
import sys

from smbca import admin_domain, admin_failover, admin_node, admin_smb
from smbca.version import add_version_argument

_STATES = ("up", "down", "available", "unavailable", "unknown")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smbca", description="smbca node administration",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n")[2])
    add_version_argument(p)
    sub = p.add_subparsers(dest="command", required=True)
    admin_node.add_status_parser(sub)
    admin_smb.add_parsers(sub)
    witness = sub.add_parser("witness", help="witnessd").add_subparsers(dest="verb",
                                                                          required=True)
    witness_status = witness.add_parser("status", help="interfaces and registrations")
    admin_node.add_location_arguments(witness_status, "witnessd")
    notify = witness.add_parser("notify", help="post an event to witnessd")
    admin_node.add_location_arguments(notify, "witnessd")
    _event_parsers(notify.add_subparsers(dest="event", required=True))
    _smbcad_parsers(sub.add_parser("smbcad", help="smbcad").add_subparsers(dest="verb",
                                                                          required=True))
    admin_failover.add_parsers(sub)
    admin_domain.add_parsers(sub)
    return p


def _smbcad_parsers(verbs) -> None:
    for name, text in (("status", "aggregates, their phase and mirror state"),
                       ("sessions", "every session"), ("opens", "every open")):
        verb = verbs.add_parser(name, help=text)
        admin_node.add_location_arguments(verb, "smbcad")
        if name == "opens":
            verb.add_argument("--disconnected", action="store_true",
                              help="only opens kept for a reconnect")
    for name in ("adopt", "release"):
        verb = verbs.add_parser(name, help=f"{name} an aggregate's shares on this node")
        verb.add_argument("aggregate")
        admin_node.add_location_arguments(verb, "smbcad")
        if name == "release":
            verb.add_argument("--planned", action="store_true",
                              help="let requests finish and commit every disconnect first")


def _event_parsers(events) -> None:
    node = events.add_parser("node", help="every interface of a node changes state")
    node.add_argument("node")
    node.add_argument("state", choices=_STATES)
    iface = events.add_parser("interface", help="one interface changes state (or is added)")
    iface.add_argument("group")
    iface.add_argument("state", choices=_STATES)
    iface.add_argument("--ipv4")
    iface.add_argument("--ipv6")
    iface.add_argument("--local", choices=("yes", "no"),
                       help="whether this node now hosts the interface")
    for name in ("client-move", "share-move", "ip-change"):
        move = events.add_parser(name)
        move.add_argument("destination", help="interface group, host name or IP address")
        move.add_argument("--client", default="*", help="WitnessClientName (default: all)")
        if name == "share-move":
            move.add_argument("--share", required=True)
        if name == "client-move":
            move.add_argument("--address", dest="addresses", action="append",
                              help="only the clients registered for this LIF (repeatable)")
    unregister = events.add_parser("unregister", help="remove one registration")
    unregister.add_argument("registration")
    events.add_parser("status", help="show interfaces and registrations")


def request_of(args: argparse.Namespace) -> dict:
    """The control request an invocation stands for."""
    if args.command == "smbcad":
        message = {"command": args.verb}
        for key in ("aggregate", "planned", "disconnected"):
            if getattr(args, key, None) not in (None, False):
                message[key] = getattr(args, key)
        return message
    if args.verb == "status":
        return {"event": "status"}
    message = {key: value for key, value in vars(args).items()
               if key not in ("command", "verb", "socket", "config_dir") and value is not None}
    if "local" in message:
        message["local"] = message["local"] == "yes"
    return message


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:            # argparse: --help is 0, a usage error 2
        return int(exc.code or 0)
    if args.command in admin_failover.COMMANDS:
        return _failover(args)
    if args.command == "status":
        return admin_node.status(args)
    if args.command == "domain":
        return admin_domain.run(args)
    if args.command in admin_smb.COMMANDS:
        return admin_smb.run(args)
    daemon = "smbcad" if args.command == "smbcad" else "witnessd"
    try:
        where = admin_node.locate(daemon, args.socket, args.config_dir)
        reply = admin_node.ask(where, request_of(args))
    except admin_node.NotRunning as exc:
        print(f"smbca: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1


def _failover(args: argparse.Namespace) -> int:
    request = admin_failover.request_of(args)
    try:
        where = admin_node.locate("clusdisk", args.socket, args.config_dir)
        reply = admin_node.ask(where, request, args.timeout)
    except admin_node.NotRunning as exc:
        print(f"smbca: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(reply, indent=2))
    elif args.command == "failover":
        if reply.get("ok"):
            print("\n".join(admin_failover.show_status(reply.get("status", {}))))
        else:
            print(f"smbca: clusdisk: {reply.get('error', 'no reason given')}", file=sys.stderr)
    else:
        *steps, outcome = admin_failover.show_operation(request, reply)
        if steps:
            print("\n".join(steps))
        print(outcome if reply.get("ok") else f"smbca: {outcome}",
              file=sys.stdout if reply.get("ok") else sys.stderr)
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
