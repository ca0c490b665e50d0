"""The operator's failover verbs of ``smbca`` (issue 11 item 6), like ONTAP's
``storage failover show|takeover|giveback``, ``storage aggregate relocation``
and ``network interface migrate``::

  smbca failover show                       both nodes: state, takeover and
                                            giveback possible (or why not),
                                            each aggregate's owner and mirror
  smbca takeover [--force]                  this node takes every aggregate
                                            of the partner (planned)
  smbca giveback                            the partner's home aggregates go home
  smbca aggregate relocate AGGR --to NODE   one aggregate moves
  smbca lif migrate LIF --to NODE           one LIF moves (only to the node
                                            that owns its aggregate)

They ask the local clusdisk (which coordinates with the partner's), wait
for the outcome and print every step with its duration.  ``--force``
skips only the check that the destination's copy of the handle store is in
sync (persistent handles not in that copy are lost).  Exit status: 0 done,
1 refused or failed (the reason is printed), 2 usage or clusdisk
unreachable.
"""

import argparse

from smbca.control import CLUSDISK_SOCKET

OPERATION_TIMEOUT_S = 900.0      # a move in the TCG lab takes minutes


def add_parsers(sub) -> None:
    def common(parser) -> None:
        parser.add_argument("--socket", help=f"clusdisk control socket (default: from "
                            f"/etc/smbca/clusdisk.yaml, else {CLUSDISK_SOCKET})")
        parser.add_argument("--config-dir", default="/etc/smbca",
                            help="where the daemons' configs are (default %(default)s)")
        parser.add_argument("--json", action="store_true", help="print clusdisk's JSON answer")
        parser.add_argument("--timeout", type=float, default=OPERATION_TIMEOUT_S,
                            help="seconds to wait for the outcome (default %(default)s)")

    failover = sub.add_parser("failover", help="takeover and giveback state of the pair")
    common(failover.add_subparsers(dest="verb", required=True).add_parser(
        "show", help="both nodes, what is possible, each aggregate's owner and mirror"))
    takeover = sub.add_parser("takeover", help="take every aggregate of the partner (planned)")
    takeover.add_argument("--force", action="store_true",
                          help="even if this node's copy of a handle store is not in sync")
    common(takeover)
    common(sub.add_parser("giveback", help="send the partner's home aggregates home"))
    aggregate = sub.add_parser("aggregate", help="aggregates").add_subparsers(
        dest="verb", required=True)
    relocate = aggregate.add_parser("relocate", help="move one aggregate to a node")
    relocate.add_argument("aggregate")
    relocate.add_argument("--to", required=True, metavar="NODE", help="node name or id")
    relocate.add_argument("--force", action="store_true",
                          help="even if the destination's handle store copy is not in sync")
    common(relocate)
    lif = sub.add_parser("lif", help="LIFs").add_subparsers(dest="verb", required=True)
    migrate = lif.add_parser("migrate", help="move one LIF to the node that owns its aggregate")
    migrate.add_argument("lif")
    migrate.add_argument("--to", required=True, metavar="NODE", help="node name or id")
    common(migrate)


COMMANDS = ("failover", "takeover", "giveback", "aggregate", "lif")


def request_of(args: argparse.Namespace) -> dict:
    if args.command == "failover":
        return {"command": "status"}
    if args.command == "takeover":
        return {"command": "takeover", "force": args.force}
    if args.command == "giveback":
        return {"command": "giveback"}
    if args.command == "aggregate":
        return {"command": "relocate", "aggregate": args.aggregate, "to": _node(args.to),
                "force": args.force}
    return {"command": "lif-migrate", "lif": args.lif, "to": _node(args.to)}


def _node(text: str) -> str | int:
    return int(text) if text.isdigit() else text


# --- what the operator reads ------------------------------------------------------


def _yes(value) -> str:
    return "?" if value is None else "yes" if value else "no"


def _possible(status: dict, what: str) -> str:
    possible = status.get(f"{what}_possible")
    veto = status.get(f"{what}_veto")
    text = f"{what} possible: {_yes(possible)}"
    return f"{text} ({veto})" if veto and not possible else text


def _public_ports(name: str, status: dict) -> list[str]:
    """One node's public (client-facing) ports, from its status's
    ``public_links`` (clusdisk.public_links); "unknown" when it has none."""
    links = status.get("public_links")
    if not isinstance(links, dict) or not links.get("ports"):
        return [f"public ports on {name}: unknown" + (
            "" if not status or isinstance(links, dict) else " (not reported: an older release)")]
    ports = []
    for port, entry in sorted(links["ports"].items()):
        text = f"{port} {entry.get('state', '?')}"
        if entry.get("detail"):
            text += f" ({entry['detail']}"
            if entry.get("down_for_s") is not None:
                text += f", {entry['down_for_s']:.1f} s"
            text += ")"
        ports.append(text)
    lines = [f"public ports on {name}: {', '.join(ports)}"
             + ("; handover when cut off: disabled" if links.get("handover") is False else "")]
    lines.extend(f"  {aggregate}: {reason}"
                 for aggregate, reason in sorted((links.get("waiting") or {}).items()))
    if links.get("error"):
        lines.append(f"  cannot read the link state: {links['error']}")
    return lines


def show_status(status: dict) -> list[str]:
    """``smbca failover show`` from clusdisk's status answer."""
    node = status.get("node", {})
    partner = status.get("partner", {})
    lines = [f"node {node.get('name', '?')} (id {node.get('id', '?')}, this node): "
             f"{status.get('state', '?')}, member {_yes(status.get('member'))}, "
             f"quorum owner {_yes(status.get('owns_quorum'))}, mode {status.get('mode', '?')}"]
    reach = status.get("partner_reachable")
    theirs = partner.get("status") or {}
    lines.append(f"node {partner.get('name', '?')} (id {partner.get('id', '?')}, partner): "
                 + (f"{theirs.get('state', '?')}, member {_yes(theirs.get('member'))}, "
                    if theirs else "state unknown, ")
                 + f"heartbeat {'alive' if partner.get('alive') else 'lost'}"
                 + ("" if reach is None else
                    f", control channel {'up' if reach else 'unreachable'}")
                 + (f" ({status['peer_protocol']})" if status.get("peer_protocol") else ""))
    lines.extend(_public_ports(node.get("name", "?"), status))
    lines.extend(_public_ports(partner.get("name", "?"), theirs))
    if status.get("operation"):
        lines.append(f"in progress: {status['operation']}")
    lines.append(_possible(status, "takeover"))
    lines.append(_possible(status, "giveback"))
    names = {node.get("id"): node.get("name"), partner.get("id"): partner.get("name")}
    rows = [("aggregate", "home", "owner", "up here", "in sync", "error")]
    for entry in status.get("aggregates", []):
        home = entry.get("home", "?")
        rows.append((entry.get("name", "?"), str(names.get(home) or home),
                     str(entry.get("owner", "?")), _yes(entry.get("up")),
                     _yes(entry.get("in_sync")), entry.get("error") or ""))
    lines.extend(_table(rows))
    lines.extend(f"{entry.get('name', '?')}: {entry['why']}"
                 for entry in status.get("aggregates", []) if entry.get("why"))
    if status.get("placement_error"):
        lines.append(f"placement record: {status['placement_error']}")
    lifs = status.get("lifs") or {}
    if lifs:
        lines.extend(_table([("lif", "on node")] + [(name, str(where or "down"))
                                                    for name, where in sorted(lifs.items())]))
    return lines


def show_operation(request: dict, reply: dict) -> list[str]:
    """The steps of a takeover, giveback, relocation or LIF migration."""
    what = request["command"]
    target = request.get("aggregate") or request.get("lif")
    title = " ".join(str(part) for part in (what, target) if part)
    if "to" in request:
        title += f" to {request['to']}"
    rows = [("node", "aggregate", "step", "seconds", "")]
    for step in reply.get("steps", []):
        seconds = step.get("seconds")
        rows.append((str(step.get("node", "")), str(step.get("aggregate") or ""),
                     str(step.get("step", "")),
                     "" if seconds is None else f"{seconds:.3f}",
                     ("ok" if step.get("ok", True) else "FAILED")
                     + (f": {step['detail']}" if step.get("detail") else "")))
    lines = _table(rows) if len(rows) > 1 else []
    if reply.get("ok"):
        seconds = reply.get("seconds")
        lines.append(f"{title}: done" + ("" if seconds is None else f" in {seconds:.3f} s"))
    else:
        lines.append(f"{title}: refused or failed: {reply.get('error', 'no reason given')}")
    return lines


def _table(rows: list[tuple]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in rows]
