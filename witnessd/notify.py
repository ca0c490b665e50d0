"""Post an event to a running witnessd: ``python3 -m witnessd.notify --socket PATH ...``.

For tests and administrators until ``smbca witness notify`` wraps it::

    python3 -m witnessd.notify --socket /run/witnessd/control.sock node NODE1 down
    ... interface NODE1 unavailable --ipv4 10.0.0.11
    ... client-move [--client NAME|*] DESTINATION
    ... share-move --share NAME [--client NAME|*] DESTINATION
    ... ip-change [--client NAME|*] DESTINATION
    ... unregister REGISTRATION-UUID
    ... status

Prints witnessd's JSON answer; exits 0 if it says ok, 1 if not, 2 if
witnessd cannot be reached.
"""

import argparse
import json
import sys

from witnessd.config import DEFAULT_CONTROL_SOCKET
from witnessd.transport import control_request


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="witnessd.notify", description=__doc__.splitlines()[0])
    p.add_argument("--socket", default=DEFAULT_CONTROL_SOCKET, help="witnessd control socket")
    sub = p.add_subparsers(dest="event", required=True)
    node = sub.add_parser("node", help="every interface of a node changes state")
    node.add_argument("node")
    node.add_argument("state", choices=("up", "down", "available", "unavailable", "unknown"))
    iface = sub.add_parser("interface", help="one interface changes state (or is added)")
    iface.add_argument("group")
    iface.add_argument("state", choices=("up", "down", "available", "unavailable", "unknown"))
    iface.add_argument("--ipv4")
    iface.add_argument("--ipv6")
    iface.add_argument("--local", choices=("yes", "no"),
                       help="whether this node now hosts the interface")
    for name in ("client-move", "share-move", "ip-change"):
        move = sub.add_parser(name)
        move.add_argument("destination", help="interface group, host name or IP address")
        move.add_argument("--client", default="*", help="WitnessClientName (default: all)")
        if name == "share-move":
            move.add_argument("--share", required=True)
    unregister = sub.add_parser("unregister", help="remove one registration")
    unregister.add_argument("registration")
    sub.add_parser("status", help="show interfaces and registrations")
    return p


def request_of(args: argparse.Namespace) -> dict:
    message = {key: value for key, value in vars(args).items()
               if key != "socket" and value is not None}
    if "local" in message:
        message["local"] = message["local"] == "yes"
    return message


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        answer = control_request(args.socket, json.dumps(request_of(args)).encode())
    except OSError as exc:
        print(f"witnessd.notify: cannot reach {args.socket}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    try:
        decoded = json.loads(answer)
    except ValueError:
        print(f"witnessd.notify: bad answer {answer!r}", file=sys.stderr)
        return 2
    print(json.dumps(decoded, indent=2))
    return 0 if decoded.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
