"""``smbca``: the admin command for a node (ARCHITECTURE.md "Local control").

It only talks to the daemons' control sockets (``smbca.control``) and adds
nothing of its own:

  smbca status [--socket PATH]          clusdisk membership and ownership
  smbca witness status [--socket PATH]  witnessd interfaces and registrations
  smbca witness notify [--socket PATH] EVENT ...
                                        post an event to witnessd:
      node NODE up|down|available|unavailable|unknown
      interface GROUP STATE [--ipv4 A] [--ipv6 A] [--local yes|no]
      client-move [--client NAME|*] DESTINATION
      share-move --share NAME [--client NAME|*] DESTINATION
      ip-change [--client NAME|*] DESTINATION
      unregister REGISTRATION-UUID

SCSI disks are listed by ``clusdisk scan`` (it needs no daemon).  takeover,
giveback, relocate, lif migrate, sessions and opens arrive with smbcad's
control socket.  Prints the daemon's JSON answer; exits 0 if it says ok,
1 if not, 2 on a usage error or when the daemon cannot be reached.
"""

import argparse
import json
import sys

from smbca.control import CLUSDISK_SOCKET, WITNESSD_SOCKET, ControlError, request_blocking

_STATES = ("up", "down", "available", "unavailable", "unknown")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smbca", description="smbca node administration",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n")[2])
    sub = p.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="clusdisk membership and ownership")
    status.add_argument("--socket", default=CLUSDISK_SOCKET, help="clusdisk control socket")
    witness = sub.add_parser("witness", help="witnessd").add_subparsers(dest="verb",
                                                                          required=True)
    witness_status = witness.add_parser("status", help="interfaces and registrations")
    witness_status.add_argument("--socket", default=WITNESSD_SOCKET,
                                help="witnessd control socket")
    notify = witness.add_parser("notify", help="post an event to witnessd")
    notify.add_argument("--socket", default=WITNESSD_SOCKET, help="witnessd control socket")
    _event_parsers(notify.add_subparsers(dest="event", required=True))
    return p


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
    unregister = events.add_parser("unregister", help="remove one registration")
    unregister.add_argument("registration")
    events.add_parser("status", help="show interfaces and registrations")


def request_of(args: argparse.Namespace) -> dict:
    """The control request an invocation stands for."""
    if args.command == "status":
        return {"command": "status"}
    if args.verb == "status":
        return {"event": "status"}
    message = {key: value for key, value in vars(args).items()
               if key not in ("command", "verb", "socket") and value is not None}
    if "local" in message:
        message["local"] = message["local"] == "yes"
    return message


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:            # argparse: --help is 0, a usage error 2
        return int(exc.code or 0)
    try:
        reply = request_blocking(args.socket, request_of(args))
    except ControlError as exc:
        print(f"smbca: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(reply.get("status", reply) if args.command == "status" else reply,
                     indent=2))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
